"""The same dbt project built on Postgres (pg_settings: a schema prefix unique to the test),
on the first two months of the small sandbox world: every model, unit test and data test."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tests.dbt_fixtures import WorldBronze, load_bronze


def test_dbt_build_on_postgres(pg_settings, small_world: Path):
    from retailpulse.pipeline import stage_dbt
    from retailpulse.warehouse import get_warehouse

    bronze = WorldBronze.cached(small_world)
    frames = bronze.as_of(bronze.start + dt.timedelta(days=61))
    counts = load_bronze(pg_settings, small_world, frames=frames)
    assert counts["ga4__events"] > 1000 and counts["stripe__charges"] > 50

    summary = stage_dbt(pg_settings)  # raises DbtError naming the failed nodes
    assert summary["nodes"].get("model", 0) >= 40
    assert summary["nodes"].get("unit_test", 0) >= 4

    wh = get_warehouse(pg_settings)
    gold = wh.schema_name("gold")
    assert set(wh.list_tables("gold")) >= {"dim_customers", "fct_orders", "fct_sessions", "fct_attribution",
                                           "channel_performance_daily", "customer_identity_map", "kpi_daily"}
    # net revenue equals the Stripe charges minus refunds landed in bronze
    ch = frames["stripe__charges"].drop_duplicates("id")
    ch = ch[(ch["status"] == "succeeded") & ch["metadata__order_id"].notna()]
    rf = frames["stripe__refunds"].drop_duplicates("id")
    fx = {"usd": 1.0, "eur": 1.08, "gbp": 1.27}
    refunded = rf.groupby("charge")["amount"].sum()
    net = ((ch["amount"] - ch["id"].map(refunded).fillna(0)) * ch["currency"].map(fx) / 100.0).sum()
    got = wh.scalar(f'select sum(net_revenue) from "{gold}".fct_orders where order_source = \'stripe\'')
    assert float(got) == pytest.approx(float(net), abs=0.01)
    bad = wh.scalar(f'select count(*) from (select order_id, model from "{gold}".fct_attribution '
                    f'group by order_id, model having abs(sum(credit) - 1) > 1e-6) as x')
    assert bad == 0
    assert wh.scalar(f'select count(*) from "{gold}".fct_sessions') > 100
    assert wh.scalar(f'select count(*) from "{gold}".customer_identity_map where match_rule = \'ga4_login\'') > 0
