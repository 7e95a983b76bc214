"""What rendering dbt per model in Airflow costs: retailpulse_daily (dag.test) with the ``dbt``
task group rendered from the manifest (``dbt.build`` + one report task per model) against the
same DAG with ``dbt.build`` alone (no manifest), on the same small world and clock.

Each variant gets its own warehouse and runs the full period, then two incremental days.
Results: ``bench/results/orchestration_overhead.json``.

    python -m bench.orchestration_overhead
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
UTC = dt.timezone.utc
START, END = dt.date(2025, 4, 1), dt.date(2025, 12, 31)  # the e2e test's small world
DAYS = [dt.date(2025, 12, 30), dt.date(2025, 12, 31)]


def _run(settings: Any, start: dt.date, end: dt.date) -> tuple[float, int, dict[str, float]]:
    from retailpulse.airflow_setup import load_dag

    dag = load_dag(settings)
    began = time.perf_counter()
    dr = dag.test(logical_date=dt.datetime.now(UTC), run_conf={"start": start.isoformat(), "end": end.isoformat()})
    seconds = time.perf_counter() - began
    assert "success" in str(dr.state), f"run {start}..{end} ended {dr.state}"
    durations = {ti.task_id: float(ti.duration or 0.0) for ti in dr.get_task_instances()}
    return seconds, len(dag.tasks), durations


def main() -> None:
    from retailpulse.airflow_setup import apply_env, init
    from retailpulse.settings import load_settings
    from sandbox.server import SandboxServer
    from sandbox.world import generate_world

    base = load_settings()
    apply_env(base)
    init(base)
    out: dict[str, Any] = {"world": "small seed 7, 2025-04-01..2025-12-31", "machine": platform.machine(),
                           "cpus": os.cpu_count(), "variants": {}}
    with tempfile.TemporaryDirectory(prefix="rp_orch_") as tmp:
        root = Path(tmp)
        world = Path(generate_world("small", 7, root / "world", start=START, end=END))
        server = SandboxServer(world, ga4_export_dir=root / "ga4")
        server.start()
        saved = dict(os.environ)
        envs: dict[str, dict[str, str]] = {}
        for variant in ("per_model", "single_task"):
            envs[variant] = {
                "RETAILPULSE_DATA_DIR": str(root / variant / "data"),
                "RETAILPULSE_WAREHOUSE_PATH": str(root / variant / "warehouse" / "retailpulse.duckdb"),
                "RETAILPULSE_SERVING_DIR": str(root / variant / "warehouse" / "serving"),
                **server.env(),
            }
        envs["single_task"]["RETAILPULSE_DBT_MANIFEST"] = str(root / "no-manifest.json")
        # the same runs for both variants, alternating which goes first (the machine is shared)
        plan = [("full period", START, DAYS[0] - dt.timedelta(days=1), DAYS[0]),
                *[(f"day {d}", d, d, d + dt.timedelta(days=1)) for d in DAYS],
                (f"day {DAYS[-1]} again", DAYS[-1], DAYS[-1], DAYS[-1] + dt.timedelta(days=1))]
        try:
            for i, (label, first, last, clock) in enumerate(plan):
                server.set_clock(dt.datetime.combine(clock, dt.time(0), tzinfo=UTC))
                server.wait_ga4()
                order = ("per_model", "single_task") if i % 2 == 0 else ("single_task", "per_model")
                for variant in order:
                    os.environ.clear()
                    os.environ.update(saved)
                    os.environ.update(envs[variant])
                    settings = load_settings(_env_file=None)
                    seconds, ntasks, d = _run(settings, first, last)
                    v = out["variants"].setdefault(variant, {"tasks": ntasks, "runs": []})
                    v["runs"].append({
                        "run": label, "seconds": round(seconds, 2),
                        "dbt_build_task_seconds": round(d.get("dbt.build", 0.0), 2),
                        "dbt_model_tasks": sum(1 for k in d if k.startswith("dbt.") and k != "dbt.build"),
                        "dbt_model_tasks_seconds_sum": round(sum(x for k, x in d.items()
                                                                 if k.startswith("dbt.") and k != "dbt.build"), 2),
                        "other_tasks_seconds_sum": round(sum(x for k, x in d.items() if not k.startswith("dbt.")), 2),
                    })
                    print(variant, label, round(seconds, 1), flush=True)
        finally:
            os.environ.clear()
            os.environ.update(saved)
            server.stop()
    per, single = out["variants"]["per_model"]["runs"], out["variants"]["single_task"]["runs"]
    out["overhead_seconds"] = {p["run"]: round(p["seconds"] - s["seconds"], 2) for p, s in zip(per, single)}
    # the part that does not depend on how busy the shared machine is at that moment: what the
    # run spends outside its work (dbt, extract, load, ML, publish) per variant
    out["non_work_seconds"] = {
        v: [round(r["seconds"] - r["dbt_build_task_seconds"] - r["other_tasks_seconds_sum"], 2) for r in x["runs"]]
        for v, x in out["variants"].items()}
    out["overhead_note"] = ("overhead_seconds: wall time of the same dag.test run with one report task per dbt node "
                            "minus the run with dbt.build alone (dbt runs once in both; alternating order on a shared "
                            "2-core machine, so dbt/ML times vary run to run); non_work_seconds: wall time minus the "
                            "durations of the working tasks, i.e. the report tasks plus Airflow's per-task cost")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "orchestration_overhead.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["overhead_seconds"]), flush=True)


if __name__ == "__main__":
    main()
