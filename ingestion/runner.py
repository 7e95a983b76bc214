"""Extract (to landing files) and load (validated, into bronze) one source for an interval."""

from __future__ import annotations

import logging
import time

from ingestion.bronze import LoadReport, load_batches
from ingestion.connectors import get_connector, get_specs
from ingestion.interval import Interval, to_utc
from ingestion.landing import LandingZone, Manifest
from ingestion.state import StateStore
from retailpulse.settings import Settings
from retailpulse.warehouse import get_warehouse

log = logging.getLogger(__name__)


def extract_source(settings: Settings, source: str, interval: Interval, objects: list[str] | None = None) -> list[Manifest]:
    """Extract every object of ``source`` for ``interval`` into the landing zone."""
    connector = get_connector(source, settings)
    zone = LandingZone(settings.landing_path)
    states = StateStore(settings.state_path)
    manifests = []
    for obj in objects or connector.objects():
        state = states.get(source).get(obj, {})
        for batch in connector.batches(obj, interval):
            window = connector.window(obj, batch, state)
            began = time.monotonic()
            land = getattr(connector, "land", None)  # a connector that lands files in bulk (GA4)
            if land is not None:
                manifest = land(zone, obj, batch, window)
            else:
                manifest = zone.write_batch(source, obj, batch, connector.extract(obj, window), extract_window=window)
            log.info("extracted %s.%s %s: %d records in %.1fs (window %s)", source, obj, batch.key,
                     manifest.record_count, time.monotonic() - began, window)
            manifests.append(manifest)
        last = state.get("last_extracted_end")
        if last is None or to_utc(last) < interval.end:
            states.update(source, obj, last_extracted_end=interval.end.isoformat())
    return manifests


def load_source(settings: Settings, source: str, interval: Interval, objects: list[str] | None = None) -> list[LoadReport]:
    """Validate and load every landed batch of ``source`` that a run over ``interval`` wrote."""
    connector_cls_specs = get_specs(source)
    wh = get_warehouse(settings)
    zone = LandingZone(settings.landing_path)
    connector = get_connector(source, settings, for_load=True)
    reports = []
    for obj in objects or list(connector_cls_specs):
        reports.extend(load_batches(wh, zone, connector_cls_specs[obj], connector.batches(obj, interval)))
    return reports
