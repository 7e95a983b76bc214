"""Ingestion throughput per source through the real client libraries against the same pages
fetched raw: the client's own overhead.

The sandbox serves a world (``sandbox/server.py``, no faults, clock at the world's end). For each
source and object the connector's ``extract`` (stripe SDK, simple-salesforce, the Google Ads and
Meta REST clients on ``ingestion.http.RetryingSession``, fsspec for the GA4 export) is drained
over the full period, with every HTTP request it sends recorded at ``requests.Session.send``.
Then, timed:

- client: ``list(connector.extract(obj, window))`` again (records as the connector yields them;
  nothing is landed);
- raw: the recorded requests replayed in order on a bare ``requests.Session`` with
  ``json.loads`` of each body (no SDK objects, retries, rate limiter or pagination logic).
  For GA4 (files, not HTTP): the same export files read whole, gunzipped and ``json.loads``-ed
  per line.

The connectors' rate limiter is lifted for the run (``RETAILPULSE_HTTP_MAX_REQUESTS_PER_SECOND``
= 1e6, recorded) so the client numbers are the libraries' cost, not the configured throttle (the
throttle's floor is ``requests / http_max_requests_per_second``, 50/s by default).

    python -m bench.ingestion_clients [--size small] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import machine, now, write_result

UNTHROTTLED = 1e6


class _Recorder:
    """Records the requests every ``requests.Session`` sends while ``active``."""

    def __init__(self) -> None:
        import requests

        self.calls: list[tuple[Any, dict[str, Any]]] = []
        self.bytes = 0
        self.active = False
        self._orig = requests.Session.send
        rec = self

        def send(session, request, **kwargs):  # type: ignore[no-untyped-def]
            resp = rec._orig(session, request, **kwargs)
            if rec.active:
                rec.calls.append((request.copy(), {k: kwargs[k] for k in ("verify", "cert", "timeout") if k in kwargs}))
                rec.bytes += len(resp.content)
            return resp

        requests.Session.send = send

    def uninstall(self) -> None:
        import requests

        requests.Session.send = self._orig


def _count(body: Any) -> int:
    if isinstance(body, list):  # Google Ads searchStream: a list of result batches
        return sum(len(b.get("results", [])) for b in body if isinstance(b, dict))
    if isinstance(body, dict):
        for key in ("data", "records", "results"):
            if isinstance(body.get(key), list):
                return len(body[key])
    return 0


def _raw_http(calls: list[tuple[Any, dict[str, Any]]]) -> int:
    import requests

    n = 0
    with requests.Session() as s:
        for req, kwargs in calls:
            resp = s.send(req.copy(), **kwargs)
            resp.raise_for_status()
            n += _count(json.loads(resp.content))
    return n


def _raw_files(fs: Any, paths: list[str]) -> int:
    n = 0
    for path in paths:
        with fs.open(path, "rb") as fh:
            data = fh.read()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        for line in data.splitlines():
            if line.strip():
                json.loads(line)
                n += 1
    return n


def _median(xs: list[float]) -> float:
    return round(statistics.median(xs), 3)


def run(size: str, seed: int, repeat: int, workdir: Path) -> dict[str, Any]:
    from ingestion.connectors import SOURCES, get_connector, is_configured
    from ingestion.interval import Interval
    from retailpulse.settings import load_settings
    from sandbox.server import SandboxServer
    from sandbox.world import World, ensure_world

    load_at_start = machine()["load_avg"]
    world_path = Path(ensure_world(load_settings().sandbox_path, size, seed))
    meta = World.load(world_path).meta
    start, end = dt.date.fromisoformat(meta["start"]), dt.date.fromisoformat(meta["end"])
    server = SandboxServer(world_path, ga4_export_dir=workdir / "ga4").start()
    server.set_clock(dt.datetime.combine(end, dt.time(0), tzinfo=dt.timezone.utc))
    if hasattr(server, "wait_ga4"):
        server.wait_ga4()
    saved = dict(os.environ)
    rec = _Recorder()
    results: list[dict[str, Any]] = []
    try:
        os.environ.update({"RETAILPULSE_DATA_DIR": str(workdir / "data"), **server.env(),
                           "RETAILPULSE_HTTP_MAX_REQUESTS_PER_SECOND": str(UNTHROTTLED)})
        settings = load_settings()
        full = Interval.for_dates(start, end - dt.timedelta(days=1))
        for source in SOURCES:
            if not is_configured(source, settings):
                continue
            for obj in get_connector(source, settings, for_load=True).objects():
                conn = get_connector(source, settings)
                window = conn.window(obj, full, {})
                rec.calls, rec.bytes, rec.active = [], 0, True
                records = sum(1 for _ in conn.extract(obj, window))  # warm-up + recording
                rec.active = False
                calls, nbytes = rec.calls, rec.bytes
                paths: list[str] = []
                if source == "ga4":
                    paths = [p for d in window.days() for p in conn.day_files(d)]
                    nbytes = sum(conn.fs.size(p) for p in paths)
                client_s, raw_s, raw_records = [], [], 0
                for _ in range(repeat):
                    conn = get_connector(source, settings)
                    began = time.perf_counter()
                    for _rec in conn.extract(obj, window):
                        pass
                    client_s.append(time.perf_counter() - began)
                    began = time.perf_counter()
                    raw_records = _raw_files(conn.fs, paths) if source == "ga4" else _raw_http(calls)
                    raw_s.append(time.perf_counter() - began)
                c, r = _median(client_s), _median(raw_s)
                row = {"source": source, "object": obj, "records": records, "raw_records": raw_records,
                       "requests": len(calls), "files": len(paths), "bytes": nbytes,
                       "client_seconds": c, "raw_seconds": r,
                       "client_records_per_second": round(records / c) if c else None,
                       "raw_records_per_second": round(raw_records / r) if r else None,
                       "client_over_raw": round(c / r, 2) if r else None}
                results.append(row)
                print(f"  {source:<10} {obj:<22} {records:>9} rec  client {c:7.2f} s  raw {r:7.2f} s  "
                      f"x{row['client_over_raw']}", flush=True)
    finally:
        rec.uninstall()
        os.environ.clear()
        os.environ.update(saved)
        server.stop()
    per_source: dict[str, dict[str, Any]] = {}
    for row in results:
        agg = per_source.setdefault(row["source"], {"records": 0, "requests": 0, "files": 0,
                                                     "client_seconds": 0.0, "raw_seconds": 0.0})
        for k in ("records", "requests", "files", "client_seconds", "raw_seconds"):
            agg[k] += row[k]
    for agg in per_source.values():
        agg["client_seconds"] = round(agg["client_seconds"], 3)
        agg["raw_seconds"] = round(agg["raw_seconds"], 3)
        agg["client_records_per_second"] = round(agg["records"] / agg["client_seconds"]) if agg["client_seconds"] else None
        agg["client_over_raw"] = round(agg["client_seconds"] / agg["raw_seconds"], 2) if agg["raw_seconds"] else None
    return {
        "benchmark": "ingestion_clients",
        "recorded_at": now(),
        "machine": {**machine(), "load_avg_at_start": load_at_start},
        "size": size, "seed": seed, "repeat": repeat,
        "http_max_requests_per_second": UNTHROTTLED,
        "objects": results,
        "per_source": per_source,
        "note": "client = connector.extract drained (no landing); raw = the same recorded requests on a bare "
                "requests.Session + json.loads (GA4: the same export files, gunzip + json.loads per line); "
                "both against the in-process sandbox server (its serving cost is in both); medians of `repeat`.",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ingestion_clients")
    ap.add_argument("--size", default="small", choices=["small", "medium"])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rp-bench-ingest-") as tmp:
        result = run(args.size, args.seed, args.repeat, Path(tmp))
    write_result("ingestion_clients" if args.size == "small" else f"ingestion_clients_{args.size}", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
