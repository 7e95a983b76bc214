"""``make run`` / ``retailpulse demo``: the sandbox world through the whole pipeline.

Ensures the configured sandbox world exists, serves it on 127.0.0.1 (random free ports), points
every connector at it through RETAILPULSE_* variables in this process only, runs the
retailpulse_daily DAG once over the world's observation period, and stops the sandbox.
A fingerprint of the world and the pipeline code makes a second run with nothing changed a
no-op (``--force`` runs anyway).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from retailpulse.settings import Settings, load_settings

CODE_DIRS = ("dbt/models", "dbt/macros", "dbt/seeds", "dbt/snapshots", "dbt/tests", "ingestion", "dags", "ml", "retailpulse")


def _fingerprint(settings: Settings, world_meta: dict) -> str:
    h = hashlib.sha256(json.dumps(world_meta, sort_keys=True, default=str).encode())
    h.update(settings.target.encode())
    h.update(str(settings.duckdb_path).encode())
    for d in CODE_DIRS:
        base = settings.home / d
        if not base.exists():
            continue
        for p in sorted(base.rglob("*")):
            if p.is_file() and p.suffix in (".py", ".sql", ".yml", ".yaml", ".csv") and "__pycache__" not in p.parts:
                h.update(str(p.relative_to(settings.home)).encode())
                h.update(p.read_bytes())
    return h.hexdigest()[:16]


def ensure_demo_world(settings: Settings) -> Path:
    from sandbox.world import ensure_world

    return Path(ensure_world(settings.sandbox_path, settings.sandbox_world, settings.sandbox_seed, progress=True))


def run_demo(settings: Settings, force: bool = False, progress: Callable[[str], None] = print) -> bool:
    """Returns True when the pipeline ran, False when nothing had changed since the last run."""
    from retailpulse import airflow_setup
    from retailpulse.pipeline import gold_counts
    from sandbox.server import SandboxServer
    from sandbox.world import World

    progress(f"sandbox world: {settings.sandbox_world} (seed {settings.sandbox_seed})")
    world_path = ensure_demo_world(settings)
    meta = World.load(world_path).meta
    start, end = dt.date.fromisoformat(meta["start"]), dt.date.fromisoformat(meta["end"])
    stamp = settings.data_path / "demo-run.json"
    fingerprint = _fingerprint(settings, meta)
    if not force and stamp.exists():
        previous = json.loads(stamp.read_text())
        try:
            built = gold_counts(settings).get("fct_orders", 0) > 0
        except Exception:
            built = False
        if previous.get("fingerprint") == fingerprint and built:
            progress(f"nothing changed since the last demo run ({previous.get('finished_at')}); "
                     "use `retailpulse demo --force` to run again")
            return False
    airflow_setup.init(settings)
    ga4_dir = settings.sandbox_path / "ga4_export" / world_path.name
    progress("starting the sandbox APIs on 127.0.0.1 ...")
    saved = {k: v for k, v in os.environ.items() if k.startswith("RETAILPULSE_")}
    with SandboxServer(world_path, port=0, ga4_export_dir=ga4_dir) as server:
        if hasattr(server, "wait_ga4"):
            server.wait_ga4()
        progress(f"  Stripe/Ads/Meta {server.http_url}, Salesforce {server.https_url}, GA4 files {ga4_dir}")
        os.environ.update(server.env())
        try:
            run_settings = load_settings()
            progress(f"running retailpulse_daily over {start}..{end} (one DAG run; this takes a few minutes) ...")
            airflow_setup.run_daily(run_settings, start, end)
        finally:
            for k in list(os.environ):
                if k.startswith("RETAILPULSE_") and k not in saved:
                    del os.environ[k]
            os.environ.update(saved)
    progress("sandbox stopped.")
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({
        "fingerprint": fingerprint, "world": world_path.name, "start": str(start), "end": str(end),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }, indent=2))
    return True
