"""The sandbox world: a seeded, deterministic, vectorised simulation of one online retailer.

``generate_world(size, seed, out_dir)`` writes the files described in
``docs/sandbox_world_format.md`` (``world.json``, ``<table>.parquet``, ``truth/<table>.parquet``);
``World.load(path)`` reads them back (lazily, one ``pyarrow.Table`` per attribute).

    python -m sandbox.world --size small --seed 42 --out data/sandbox

Same size + seed (+ period) => byte-identical files. The generator is split into
:mod:`sandbox.world_people` (campaigns, ad spend, people, orders = the hidden truth),
:mod:`sandbox.world_ga4` (devices, sessions, events) and :mod:`sandbox.world_sources`
(Stripe, Salesforce, ads, ground-truth tables).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

FORMAT_VERSION = 1
DEFAULT_START = dt.date(2024, 1, 1)
DEFAULT_END = dt.date(2025, 12, 31)
SIZES = {
    # people; anonymous-traffic multiplier
    "small": dict(people=3_000, anon_factor=1.0),
    "medium": dict(people=100_000, anon_factor=1.0),
    "large": dict(people=1_000_000, anon_factor=1.0),
}
SOURCE_TABLES = ["campaigns", "stripe_customers", "stripe_charges", "stripe_refunds", "sf_account", "sf_contact",
                 "sf_lead", "sf_opportunity", "sf_case", "ga4_events", "google_ads_campaign_daily",
                 "meta_campaign_daily"]
TRUTH_TABLES = ["truth_people", "truth_identity", "truth_orders", "truth_person_horizon"]


def _as_date(d) -> dt.date | None:
    if d is None or isinstance(d, dt.date):
        return d
    return dt.date.fromisoformat(str(d))


def _token(seed: int, name: str, n: int = 32) -> str:
    return hashlib.sha256(f"retailpulse-sandbox:{seed}:{name}".encode()).hexdigest()[:n]


ROW_GROUP = 1_000_000


def _plain(table: pa.Table) -> pa.Table:
    """Dictionary-encoded columns decoded to plain strings (the generator builds GA4 columns as
    indices into vocabularies; parquet's writer is not byte-reproducible for dictionary input)."""
    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(field.type.value_type))
    return table


class _Writer:
    """Parquet file written in pieces: row groups of at most 1M rows, dictionary columns decoded one
    row group at a time (bounded memory); an empty table still gets a file with the schema."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.schema = schema
        self.rows = 0
        self._w = pq.ParquetWriter(path, schema, compression="zstd", write_statistics=True, use_dictionary=True,
                                   store_schema=False)

    def write(self, table: pa.Table) -> None:
        for off in range(0, table.num_rows, ROW_GROUP):
            piece = _plain(table.slice(off, ROW_GROUP))
            self._w.write_table(piece.cast(self.schema), row_group_size=ROW_GROUP)
        self.rows += table.num_rows

    def __enter__(self) -> "_Writer":
        return self

    def __exit__(self, *exc) -> None:
        if self.rows == 0 and exc[0] is None:
            self._w.write_table(self.schema.empty_table())
        self._w.close()


def _write_parquet(table: pa.Table, path: Path) -> None:
    schema = pa.schema([pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
                        for f in table.schema])
    with _Writer(path, schema) as w:
        w.write(table)


class _Steps:
    """Optional rich progress display of the generation steps."""

    def __init__(self, enabled: bool, total: int, label: str):
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self.timings: dict[str, float] = {}
        self._last = self.t0
        if enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(),
                                     transient=False)
            self.progress.start()
            self.task = self.progress.add_task(label, total=total)

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._last, 3)
        self._last = now
        if self.enabled:
            self.progress.update(self.task, advance=1, description=f"world: {name}")

    def close(self) -> None:
        if self.enabled:
            self.progress.stop()


def build_tables(size: str, seed: int, start: dt.date, end: dt.date, horizon_days: int,
                 steps: _Steps | None = None, ga4_sink=None) -> tuple[dict, dict, dict]:
    """Simulate the world in memory: (source tables, truth tables, meta extras). With ``ga4_sink``
    the GA4 events are streamed to it chunk by chunk and left out of the returned tables."""
    from sandbox.world_ga4 import make_ga4
    from sandbox.world_people import Ctx, make_campaigns, make_orders, make_people
    from sandbox.world_sources import make_sources

    if size not in SIZES:
        raise ValueError(f"unknown world size {size!r} (expected one of {', '.join(SIZES)})")
    if end < start:
        raise ValueError("world end date is before its start date")
    cfg = SIZES[size]
    ctx = Ctx(size=size, seed=seed, start=start, end=end, horizon_days=horizon_days, n_people=cfg["people"],
              anon_factor=cfg["anon_factor"])
    step = steps.done if steps else (lambda name: None)
    step("imports")
    camps = make_campaigns(ctx); step("campaigns")
    ppl = make_people(ctx, camps); step("people")
    ords = make_orders(ctx, camps, ppl); step("orders")
    ga4 = make_ga4(ctx, camps, ppl, ords, sink=ga4_sink); step("ga4 events")
    tables = {} if ga4_sink is not None else {"ga4_events": ga4.events}
    src, truth = make_sources(ctx, camps, ppl, ords, ga4)
    tables.update(src); step("stripe, salesforce, ads, truth")
    extras = {"campaigns": camps.table.to_pylist(), "n_sessions": ga4.n_sessions, "n_events": ga4.n_events}
    return tables, truth, extras


def generate_world(size: str, seed: int, out_dir: Path, start: dt.date | None = None, end: dt.date | None = None,
                   horizon_days: int = 365, progress: bool = False) -> Path:
    """Generate the world ``<out_dir>/<size>-<seed>`` and return its path.

    Built in a temporary directory next to the target and renamed into place, so a crash never
    leaves a half-written world; an existing world at the target is replaced."""
    start = _as_date(start) or DEFAULT_START
    end = _as_date(end) or DEFAULT_END
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{size}-{seed}"
    steps = _Steps(progress, 8, f"world {size}-{seed}")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{size}-{seed}.tmp-", dir=out_dir))
        try:
            from sandbox.world_ga4 import GA4_SCHEMA
            (tmp / "truth").mkdir()
            with _Writer(tmp / "ga4_events.parquet", GA4_SCHEMA) as ga4_writer:
                tables, truth, extras = build_tables(size, seed, start, end, horizon_days, steps,
                                                     ga4_sink=ga4_writer.write)
            counts = {}
            for name in SOURCE_TABLES:
                if name == "ga4_events":
                    counts[name] = ga4_writer.rows
                    continue
                _write_parquet(tables[name], tmp / f"{name}.parquet")
                counts[name] = tables[name].num_rows
            for name in TRUTH_TABLES:
                _write_parquet(truth[name], tmp / "truth" / f"{name}.parquet")
                counts[name] = truth[name].num_rows
            steps.done("write parquet")
            meta = {
                "size": size, "seed": seed, "format_version": FORMAT_VERSION,
                "start": start.isoformat(), "end": end.isoformat(), "horizon_days": horizon_days,
                "reporting_currency": "USD",
                "fx_to_usd": {"USD": 1.0, "EUR": 1.08, "GBP": 1.27},
                "channels": ["organic_search", "paid_search", "paid_social", "email", "direct", "referral",
                             "affiliate"],
                "campaigns": [{k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in c.items()}
                              for c in extras["campaigns"]],
                "stripe_api_key": f"sk_test_sandbox_{seed}",
                "salesforce_session_id": f"00Dsandbox{seed}!{_token(seed, 'salesforce', 40)}",
                "google_ads_developer_token": _token(seed, "google-ads-dev", 22),
                "google_ads_access_token": f"ya29.sandbox-{_token(seed, 'google-ads-access', 32)}",
                "google_ads_customer_id": "1234567890",
                "meta_access_token": f"EAAsandbox{_token(seed, 'meta', 40)}",
                "meta_account_id": "987654321012345",
                "ga4_property_id": "321654987",
                "n_ga4_sessions": extras["n_sessions"],
                "counts": counts,
            }
            (tmp / "world.json").write_text(json.dumps(meta, indent=1, sort_keys=False) + "\n")
            _replace_dir(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        steps.done("done")
    finally:
        steps.close()
    return target


def _replace_dir(tmp: Path, target: Path) -> None:
    """Atomically put ``tmp`` at ``target`` (moving an existing world aside first)."""
    try:
        os.rename(tmp, target)
        return
    except OSError:
        if not target.exists():
            raise
    old = target.parent / f".{target.name}.old-{os.getpid()}-{time.time_ns()}"
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _read_meta(path: Path) -> dict | None:
    try:
        return json.loads((Path(path) / "world.json").read_text())
    except (OSError, ValueError):
        return None


def ensure_world(settings_like_dir: Path, size: str, seed: int, start: dt.date | None = None,
                 end: dt.date | None = None, horizon_days: int = 365, progress: bool = False) -> Path:
    """Return ``<dir>/<size>-<seed>``, generating it only if missing, of another format version or
    (when given) of another period."""
    base = Path(getattr(settings_like_dir, "sandbox_path", settings_like_dir))
    target = base / f"{size}-{seed}"
    meta = _read_meta(target)
    want_start = (_as_date(start) or DEFAULT_START).isoformat()
    want_end = (_as_date(end) or DEFAULT_END).isoformat()
    fresh = (meta is not None and meta.get("format_version") == FORMAT_VERSION
             and meta.get("start") == want_start and meta.get("end") == want_end
             and meta.get("horizon_days") == horizon_days
             and all((target / f"{t}.parquet").exists() for t in SOURCE_TABLES))
    if fresh:
        return target
    base.mkdir(parents=True, exist_ok=True)
    lock = base / f".{size}-{seed}.lock"
    with _file_lock(lock):
        meta = _read_meta(target)   # someone else may have built it meanwhile
        if (meta is not None and meta.get("format_version") == FORMAT_VERSION and meta.get("start") == want_start
                and meta.get("end") == want_end and meta.get("horizon_days") == horizon_days):
            return target
        return generate_world(size, seed, base, start=start, end=end, horizon_days=horizon_days, progress=progress)


@contextlib.contextmanager
def _file_lock(path: Path):
    import fcntl
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class World:
    """A generated world on disk: ``world.stripe_charges`` etc. are ``pyarrow.Table`` (read on first
    access and cached), ``world.meta`` is ``world.json``, ``world.truth("people")`` the ground truth."""

    def __init__(self, path: Path, meta: dict):
        self.path = Path(path)
        self.meta = meta
        self._cache: dict[str, pa.Table] = {}

    @classmethod
    def load(cls, path: Path) -> "World":
        path = Path(path)
        meta = _read_meta(path)
        if meta is None:
            raise FileNotFoundError(f"no sandbox world at {path} (world.json missing)")
        return cls(path, meta)

    @property
    def tables(self) -> list[str]:
        return sorted(p.stem for p in self.path.glob("*.parquet"))

    def table(self, name: str) -> pa.Table:
        if name not in self._cache:
            f = self.path / f"{name}.parquet"
            if not f.exists():
                f = self.path / "truth" / f"{name}.parquet"
            if not f.exists():
                raise AttributeError(f"world has no table {name!r}")
            self._cache[name] = pq.read_table(f)
        return self._cache[name]

    def truth(self, name: str) -> pa.Table:
        name = name if name.startswith("truth_") else f"truth_{name}"
        return self.table(name)

    def __getattr__(self, name: str) -> pa.Table:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.table(name)

    def __repr__(self) -> str:
        return f"World({self.path})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sandbox.world", description="Generate a sandbox world.")
    ap.add_argument("--size", default="small", choices=sorted(SIZES))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, default=Path("data/sandbox"))
    ap.add_argument("--start", type=dt.date.fromisoformat, default=None)
    ap.add_argument("--end", type=dt.date.fromisoformat, default=None)
    ap.add_argument("--horizon-days", type=int, default=365)
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        path = generate_world(a.size, a.seed, a.out, a.start, a.end, a.horizon_days, progress=not a.quiet)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    took = time.perf_counter() - t0
    print(path)
    for k, v in _read_meta(path)["counts"].items():
        print(f"  {k:28s} {v:>12,}")
    print(f"  generated in {took:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
