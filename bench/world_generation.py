"""Benchmark: sandbox world generation time at several sizes.

    python -m bench.world_generation                       # small + medium -> bench/results/world_generation.json
    python -m bench.world_generation --sizes small --output /tmp/wg.json

Each size is generated once in a fresh subprocess (so peak memory is per size) into a temporary
directory that is removed afterwards. Timings are wall-clock seconds; per-step timings come from
the generator's own step clock. The machine is shared, so treat a few seconds of noise as normal.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "world_generation.json"


def _one(size: str, seed: int) -> dict[str, Any]:
    """Generate one world in this process and report timings (run in a subprocess)."""
    from sandbox import world as W

    with tempfile.TemporaryDirectory(prefix="rp-world-bench-") as tmp:
        steps = W._Steps(False, 6, size)
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        orig = W._Steps
        W._Steps = lambda *a, **k: steps       # reuse our step clock inside generate_world
        try:
            path = W.generate_world(size, seed, Path(tmp))
        finally:
            W._Steps = orig
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        meta = json.loads((path / "world.json").read_text())
        disk = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return {
        "size": size, "seed": seed,
        "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
        "steps_seconds": steps.timings,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "disk_mb": round(disk / 1e6, 1),
        "people": meta["counts"]["truth_people"],
        "ga4_events": meta["counts"]["ga4_events"],
        "ga4_sessions": meta["n_ga4_sessions"],
        "counts": meta["counts"],
    }


def run(sizes: list[str], seed: int = 42) -> dict[str, Any]:
    results = []
    for size in sizes:
        out = subprocess.run([sys.executable, "-m", "bench.world_generation", "--one", size, "--seed", str(seed)],
                             check=True, capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent.parent)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{size:7s} {res['seconds']:8.1f}s  cpu {res['cpu_seconds']:7.1f}s  rss {res['peak_rss_mb']:8.0f} MB  "
              f"{res['people']:>9,} people  {res['ga4_events']:>11,} GA4 events", file=sys.stderr)
        results.append(res)
    return {
        "benchmark": "world_generation",
        "recorded_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "numpy": version("numpy"), "pyarrow": version("pyarrow"),
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.world_generation", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="small,medium", help="comma-separated: small,medium,large")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        print(json.dumps(_one(a.one, a.seed)))
        return 0
    result = run([s.strip() for s in a.sizes.split(",") if s.strip()], a.seed)
    a.output.parent.mkdir(parents=True, exist_ok=True)
    a.output.write_text(json.dumps(result, indent=2) + "\n")
    print(a.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
