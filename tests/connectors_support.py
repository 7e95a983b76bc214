"""Helpers shared by the connector tests (tests/test_connectors_*.py): settings pointing at the
running sandbox, one extract+load run, the world's expected state at a clock, bronze frames."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

import pandas as pd
import pyarrow as pa

from ingestion.interval import Interval
from ingestion.runner import extract_source, load_source
from retailpulse.warehouse import get_warehouse

UTC = dt.timezone.utc
VOLATILE = ("_batch_id", "_extracted_at", "_loaded_at")


def sandbox_settings(settings_factory, server, **overrides):
    """Settings with every source pointed at ``server`` (sandbox env vars as keyword arguments)."""
    kw = {k[len("RETAILPULSE_"):].lower(): v for k, v in server.env().items() if v}
    kw.update(http_max_retries=8, http_max_requests_per_second=500.0)
    kw.update(overrides)
    return settings_factory(**kw)


def run(settings, source: str, interval: Interval, objects: list[str] | None = None):
    """Extract then load ``source`` for ``interval`` (what the DAG's two tasks do)."""
    wh = get_warehouse(settings)
    wh.ensure_schemas()
    manifests = extract_source(settings, source, interval, objects)
    reports = load_source(settings, source, interval, objects)
    return manifests, reports


def day(d: str) -> Interval:
    x = dt.date.fromisoformat(d)
    return Interval.for_dates(x, x)


@contextlib.contextmanager
def clock(server, when: str):
    """Move the sandbox clock for the block, then put the session's default back."""
    server.set_clock(when)
    try:
        yield
    finally:
        server.set_clock(server.default_as_of)


def world_state(table: pa.Table, keys: tuple[str, ...], as_of: str | dt.datetime) -> pd.DataFrame:
    """The served state at ``as_of``: the latest version per key among rows visible then."""
    t = pd.Timestamp(as_of)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    df = table.to_pandas()
    df = df[df["_visible_at"] <= t]
    return df.sort_values(list(keys) + ["_visible_at"]).drop_duplicates(list(keys), keep="last")


def bronze(settings, table: str, interval: Interval | None = None) -> pd.DataFrame:
    wh = get_warehouse(settings)
    sql = f"select * from bronze.{table}"
    params: list[Any] | None = None
    if interval is not None:
        sql += " where _interval_key = ?"
        params = [interval.key]
    return wh.query_df(sql + " order by _interval_key, _row_number", params)


def stable(frame: pd.DataFrame) -> pd.DataFrame:
    """A bronze frame without the wall-clock / batch-id columns (for re-run comparisons)."""
    return frame.drop(columns=[c for c in VOLATILE if c in frame.columns]).reset_index(drop=True)


def reconcile(settings, source: str) -> list[tuple]:
    """Per batch: (object, interval, extracted, loaded, rejected, bronze rows, rejected rows)."""
    wh = get_warehouse(settings)
    out = []
    for obj, key, extracted, loaded, rejected in wh.query(
            "select object, interval_key, extracted, loaded, rejected from ops.load_audit where source = ? "
            "order by 1, 2", [source]):
        in_bronze = wh.scalar(f"select count(*) from bronze.{source}__{obj} where _interval_key = ?", [key])
        in_rejects = wh.scalar("select count(*) from bronze.rejected_records where source = ? and object = ? "
                               "and interval_key = ?", [source, obj, key])
        out.append((obj, key, extracted, loaded, rejected, in_bronze, in_rejects))
    return out
