"""The load audit reaches gold (aggregates only) so the data-health page has data."""

from __future__ import annotations

import datetime as dt

from ingestion.bronze import load_batch
from ingestion.connectors.stripe import SPECS
from ingestion.interval import Interval
from ingestion.landing import LandingZone
from retailpulse.pipeline import init_warehouse, refresh_data_health
from retailpulse.warehouse import get_warehouse
from tests.test_ingestion_core import charge


def test_data_health_in_gold_counts_batches_and_rejections_without_records(settings):
    init_warehouse(settings)
    zone = LandingZone(settings.landing_path)
    day = Interval.for_dates(dt.date(2025, 3, 1), dt.date(2025, 3, 1))
    zone.write_batch("stripe", "charges", day, [charge(i) for i in range(20)] + [charge(99, currency="dollars")])
    wh = get_warehouse(settings)
    load_batch(wh, zone, SPECS["charges"], day)
    assert refresh_data_health(settings) == {"data_health": 1, "data_health_rejections": 1}
    assert wh.query("select source, object, status, extracted, loaded, rejected from gold.data_health") == [
        ("stripe", "charges", "loaded", 21, 20, 1)]
    assert wh.query("select rule, rejected_records from gold.data_health_rejections") == [
        ("expect_column_values_to_match_regex(currency)", 1)]
    columns = {r[0] for r in wh.query(
        "select column_name from information_schema.columns where table_name like 'data_health%'")}
    assert "record" not in columns  # the rejected rows themselves stay in bronze
