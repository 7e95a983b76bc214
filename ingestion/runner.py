"""Extract (to landing files) and load (validated, into bronze) one source for an interval."""

from __future__ import annotations

import logging
import time

from ingestion.bronze import LoadReport, load_batch
from ingestion.connectors import get_connector
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
        window = connector.window(obj, interval, state)
        began = time.monotonic()
        manifest = zone.write_batch(source, obj, interval, connector.extract(obj, window), extract_window=window,
                                    stats={"seconds": None})
        seconds = round(time.monotonic() - began, 3)
        manifest.stats["seconds"] = seconds
        last = state.get("last_extracted_end")
        if last is None or to_utc(last) < interval.end:
            states.update(source, obj, last_extracted_end=interval.end.isoformat())
        log.info("extracted %s.%s %s: %d records in %.1fs (window %s)", source, obj, interval.key,
                 manifest.record_count, seconds, window)
        manifests.append(manifest)
    return manifests


def load_source(settings: Settings, source: str, interval: Interval, objects: list[str] | None = None) -> list[LoadReport]:
    """Validate and load every landed object batch of ``source`` for ``interval``."""
    connector_specs = _specs(source)
    wh = get_warehouse(settings)
    zone = LandingZone(settings.landing_path)
    return [load_batch(wh, zone, connector_specs[obj], interval) for obj in objects or list(connector_specs)]


def _specs(source: str):  # type: ignore[no-untyped-def]
    if source == "stripe":
        from ingestion.connectors.stripe import SPECS

        return SPECS
    raise ValueError(f"unknown source {source!r}")
