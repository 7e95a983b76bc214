"""Ingestion tasks in warm worker processes, as a scheduler's workers run a DAG's tasks.

The pipeline benchmark's concurrent schedule submits each source's extract and load to a
pool of worker processes started (and their imports done) before the clock starts, so the
sources' Python work runs on separate interpreters, as it does under Airflow, while the stage
functions are the same direct calls. Settings come from the environment the pool was started
with (the benchmark's warehouse, landing zone and connector variables).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any


def warm(pause: float = 0.0) -> int:
    """Import what the tasks use; returns this worker's pid (``pause`` keeps the worker busy so
    that simultaneous warm-ups land on different workers)."""
    import importlib

    import great_expectations  # noqa: F401  (about 10 s of imports on its own)

    import ingestion.runner  # noqa: F401
    import ingestion.validation  # noqa: F401
    import retailpulse.pipeline  # noqa: F401
    from ingestion.connectors import SOURCES

    for source in SOURCES:  # the client libraries
        importlib.import_module(f"ingestion.connectors.{source}")

    time.sleep(pause)
    return os.getpid()


def run_stage(stage: str, source: str, first: str, last: str) -> dict[str, Any]:
    """pipeline.stage_extract or stage_load for one source over first..last (ISO dates);
    returns the worker's pid, seconds and peak resident memory during the call."""
    from bench._common import timed
    from ingestion.interval import Interval
    from retailpulse import pipeline
    from retailpulse.memory import release_memory
    from retailpulse.settings import load_settings

    settings = load_settings()
    interval = Interval.for_dates(dt.date.fromisoformat(first), dt.date.fromisoformat(last))
    fn = {"extract": pipeline.stage_extract, "load": pipeline.stage_load}[stage]
    _, seconds, peak_mb = timed(fn, settings, source, interval)
    # a task process under a scheduler exits here; this warm worker lives on, so hand the task's
    # memory back now -- else the next task's peak starts from this one's leftovers
    release_memory()
    return {"pid": os.getpid(), "seconds": seconds, "peak_rss_mb": peak_mb}
