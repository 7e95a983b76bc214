"""Shared pieces of the reliability tests (tests/test_reliability_*.py).

The daily pipeline is run by calling its stages (retailpulse.pipeline) directly, in the order
the retailpulse_daily DAG runs them: extract + load per configured source, dbt build, ML
scores, publish. No Airflow: the DAG wiring is covered by tests/test_e2e_pipeline.py; here
only the data semantics matter, and skipping the scheduler saves a lot of time.

Gold is compared with an order-independent checksum per table over every table in the gold
schema, minus the columns that legitimately differ between two runs over the same data
(:data:`RUN_SPECIFIC_COLUMNS`, each one justified there).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

UTC = dt.timezone.utc

# The reliability world: the small world over seven months. The ML stage trains its first
# champion as of the run's last day and needs 2 x 90 days of order history, so seven months is
# the shortest period for which gold is complete (customer_scores, dim_customers' scores).
WORLD_SEED = 11
WORLD_START = dt.date(2025, 6, 1)
WORLD_END = dt.date(2025, 12, 31)

# Columns of gold that hold when or under which id something ran, not what the data says. Two
# runs over the same data must agree on every other column of every gold table.
# (tests/test_reliability_pipeline.py checks that each still exists, so the list cannot go stale.)
RUN_SPECIFIC_COLUMNS: dict[str, str] = {
    # gold.data_health mirrors ops.load_audit: the wall-clock time the batch was loaded, and the
    # landing batch id, which is minted per extract (ingestion/landing.py: uuid4 suffix)
    "loaded_at": "wall-clock time of the load (data_health)",
    "batch_id": "landing batch id, minted per extract with a uuid4 (data_health)",
    # gold.data_health_rejections: when the rejects were written, not a property of the records
    "last_rejected_at": "wall-clock time the rejects were written (data_health_rejections)",
    # gold.ml_model_runs: when the champion was trained / promoted (ml.jobs._now())
    "trained_at": "wall-clock time of training (ml_model_runs)",
    "promoted_at": "wall-clock time of promotion (ml_model_runs)",
    # gold.customer_identity_map: the start of the dbt run that last changed the identifier's
    # resolution (daily runs: the day it changed; one run over the days: that run)
    "changed_at": "dbt run that last changed the identifier's resolution (customer_identity_map)",
}

def sandbox_settings(root: Path, server: Any, **overrides: Any):
    """Settings for an isolated warehouse under ``root`` with every source pointed at ``server``."""
    from retailpulse.settings import Settings

    from tests.conftest import REPO

    kw: dict[str, Any] = {k[len("RETAILPULSE_"):].lower(): v for k, v in server.env().items() if v}
    kw.update(
        home=REPO,
        data_dir=root / "data",
        warehouse_path=root / "warehouse" / "retailpulse.duckdb",
        serving_dir=root / "warehouse" / "serving",
        reports_dir=root / "reports",
        http_max_requests_per_second=500.0,
        _env_file=None,
    )
    kw.update(overrides)
    return Settings(**kw)


def run_pipeline(settings: Any, start: dt.date, end: dt.date) -> dict[str, Any]:
    """One daily-pipeline run over the inclusive dates start..end (the DAG's stages, in order)."""
    from ingestion.interval import Interval
    from retailpulse.dbt_runner import run_dbt
    from retailpulse.pipeline import (configured_sources, dbt_build_args, init_warehouse, stage_extract, stage_load,
                                      stage_ml, stage_publish)

    interval = Interval.for_dates(start, end)
    init_warehouse(settings)
    summary: dict[str, Any] = {"loads": {}, "seconds": {}}
    began = time.monotonic()
    for source in configured_sources(settings):
        stage_extract(settings, source, interval)
        summary["loads"][source] = stage_load(settings, source, interval)
    summary["seconds"]["extract+load"] = round(time.monotonic() - began, 1)
    began = time.monotonic()
    # the DAG's dbt.build task is `dbt build` of all but the ML-fed marts (stage_ml builds those
    # after scoring); its data and unit tests write nothing (no store_failures in the project)
    # and are proven by the dbt and e2e tests, so they are left out here: the same models, seeds
    # and snapshot are built, at a third of the time
    run_dbt(settings, [*dbt_build_args(before_ml=True), "--exclude-resource-type", "test", "unit_test"])
    summary["seconds"]["dbt"] = round(time.monotonic() - began, 1)
    began = time.monotonic()
    summary["ml"] = stage_ml(settings, interval)
    summary["seconds"]["ml"] = round(time.monotonic() - began, 1)
    summary["publish"] = stage_publish(settings)
    return summary


def clone_state(src: Any, dst_root: Path, server: Any) -> Any:
    """Settings for a copy of ``src``'s data dir (landing, state, models) and warehouse file."""
    dst = sandbox_settings(dst_root, server)
    shutil.copytree(src.data_path, dst.data_path)
    dst.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src.duckdb_path, dst.duckdb_path)
    wal = src.duckdb_path.with_name(src.duckdb_path.name + ".wal")
    if wal.exists():
        shutil.copy2(wal, dst.duckdb_path.with_name(dst.duckdb_path.name + ".wal"))
    return dst


def _canonical(series: pd.Series) -> pd.Series:
    """Text form of a column that does not depend on float noise (values rounded to 6 places)."""
    if pd.api.types.is_float_dtype(series):
        series = series.round(6)
    text = series.astype("string")
    return text.fillna("\x00null")


def table_checksum(frame: pd.DataFrame) -> str:
    """Order-independent checksum: a 64-bit hash per row (pandas' hash of the canonical text of
    every column, in column-name order), the row hashes sorted, then hashed with SHA-256."""
    cols = sorted(frame.columns)
    digest = hashlib.sha256(("|".join(cols) + f"#{len(frame)}#").encode())
    if len(frame):
        canon = pd.DataFrame({c: _canonical(frame[c]) for c in cols})
        rows = np.sort(pd.util.hash_pandas_object(canon, index=False).to_numpy())
        digest.update(rows.tobytes())
    return digest.hexdigest()


def frames_equal(a: pd.DataFrame, b: pd.DataFrame, rel: float = 1e-9) -> bool:
    """Same rows, in any order. The checksum decides when it can; when it differs, the rows are
    matched again with floats compared to a relative tolerance: sums and averages computed in
    another order can differ in the last bits and straddle the checksum's 6th decimal (e.g.
    68.9290275 read as ...027 in one run and ...028 in the other)."""
    if table_checksum(a) == table_checksum(b):
        return True
    if sorted(a.columns) != sorted(b.columns) or len(a) != len(b):
        return False
    cols = sorted(a.columns)
    floats = [c for c in cols if pd.api.types.is_float_dtype(a[c]) or pd.api.types.is_float_dtype(b[c])]
    exact = [c for c in cols if c not in floats]

    def ordered(f: pd.DataFrame) -> pd.DataFrame:
        keys = pd.DataFrame({c: _canonical(f[c]) for c in exact})
        for c in floats:  # coarse float keys only to order rows that agree on everything else
            keys[c] = f[c].astype("float64").round(3).astype("string").fillna("")
        return f.iloc[keys.sort_values(list(keys.columns)).index.map(keys.index.get_loc)].reset_index(drop=True)

    x, y = ordered(a[cols]), ordered(b[cols])
    if not all((_canonical(x[c]) == _canonical(y[c])).all() for c in exact):
        return False
    return all(np.allclose(x[c].astype("float64"), y[c].astype("float64"), rtol=rel, atol=1e-9, equal_nan=True)
               for c in floats)


def gold_frames(settings: Any) -> dict[str, pd.DataFrame]:
    """Every gold table, without the run-specific columns."""
    from retailpulse.warehouse import get_warehouse

    wh = get_warehouse(settings)
    out = {}
    for table in sorted(wh.list_tables("gold")):
        df = wh.query_df(f'select * from gold."{table}"')
        out[table] = df.drop(columns=[c for c in df.columns if c in RUN_SPECIFIC_COLUMNS])
    return out


def gold_checksums(settings: Any) -> dict[str, str]:
    return {t: table_checksum(df) for t, df in gold_frames(settings).items()}


def diff_tables(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame], table: str, limit: int = 5) -> str:
    """A short description of how one gold table differs between two runs (for assert messages)."""
    x, y = a.get(table), b.get(table)
    if x is None or y is None:
        return f"{table}: only in one run"
    if sorted(x.columns) != sorted(y.columns):
        return f"{table}: columns differ {sorted(set(x.columns) ^ set(y.columns))}"
    cols = sorted(x.columns)
    xs = pd.DataFrame({c: _canonical(x[c]) for c in cols})
    ys = pd.DataFrame({c: _canonical(y[c]) for c in cols})
    merged = xs.merge(ys, how="outer", indicator=True)
    only = merged[merged["_merge"] != "both"]
    differing = [c for c in cols if sorted(xs[c]) != sorted(ys[c])]
    return (f"{table}: {len(x)} vs {len(y)} rows, {len(only)} rows differ; columns with differences {differing}; "
            f"e.g. {only.head(limit).to_dict('records')}")
