"""retailpulse_daily: sources -> landing -> validate + bronze -> dbt silver/gold -> ML scores -> publish.

Wiring only; every step is a function in retailpulse.pipeline. A run covers its data interval,
or the inclusive dates ``{"start": "YYYY-MM-DD", "end": "YYYY-MM-DD"}`` given in the run conf
(backfills and the demo use that). Extract tasks write landing files only and run in
parallel; every task that writes the warehouse takes the one slot of the
``retailpulse_warehouse`` pool (DuckDB allows one writing process).

dbt: the ``dbt`` task group. ``dbt.build`` runs ``dbt build`` once (one dbt process, in-process)
for every node except the ML-fed marts (dim_customers, fct_attribution, channel_performance_daily:
the models reading the tables ML writes, and everything below them) and keeps dbt's
run_results.json for the run; ``ml_score`` scores, then builds those marts once, with their tests
(their run_results go beside the first). One task per model, seed and snapshot (``dbt.<name>``),
wired like the dbt graph in ``dbt/target/manifest.json`` (ML-fed ones after ``ml_score``),
reports that node's status, timing and tests and fails when the node or one of its tests failed.
Without a manifest (``retailpulse init`` parses one) the group is ``dbt.build`` alone, and the DAG
file logs why.
The final ``publish`` updates the Asset ``retailpulse://warehouse/gold``, which schedules
``retailpulse_gold_consumers``.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Asset, CronDataIntervalTimetable, TaskGroup, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from ingestion.connectors import SOURCES
from retailpulse.dag_support import GOLD_ASSET_URI, WAREHOUSE_POOL, default_args, task_settings
from retailpulse.dbt_graph import load_graph, task_name

GOLD_ASSET = Asset(GOLD_ASSET_URI)
DBT_GRAPH = load_graph()  # None (logged) without a manifest: dbt.build alone


DEFAULTS = default_args("retailpulse_daily", timeout=dt.timedelta(hours=2))


def _interval():
    from retailpulse.pipeline import resolve_interval

    ctx = get_current_context()
    dag_run = ctx.get("dag_run")
    conf = (getattr(dag_run, "conf", None) or {}) if dag_run else {}
    return resolve_interval(ctx.get("data_interval_start"), ctx.get("data_interval_end"), conf)


_settings = task_settings


@dag(
    dag_id="retailpulse_daily",
    # a data-interval timetable: the run for day D covers [D, D+1) and starts at D+1 00:00 UTC
    # (a plain "@daily" is a trigger timetable in Airflow 3, whose runs have an empty interval)
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULTS,
    tags=["retailpulse"],
    doc_md=__doc__,
)
def retailpulse_daily():
    @task
    def extract(source: str) -> dict:
        from ingestion.connectors import is_configured
        from retailpulse.pipeline import stage_extract

        settings = _settings()
        interval = _interval()  # a bad run conf fails every extract, configured or not
        if not is_configured(source, settings):
            raise AirflowSkipException(f"{source} is not configured (no credentials or location); skipped")
        return stage_extract(settings, source, interval)

    @task(pool=WAREHOUSE_POOL)
    def load(source: str) -> list:
        from retailpulse.pipeline import stage_load

        return stage_load(_settings(), source, _interval())

    @task(pool=WAREHOUSE_POOL, trigger_rule="none_failed")
    def build() -> dict:
        from retailpulse.dag_support import dbt_build_for_run

        return dbt_build_for_run(_settings(), get_current_context()["run_id"])

    @task(execution_timeout=dt.timedelta(minutes=5))
    def dbt_node(unique_id: str, resource_type: str, tests: list[str], after_ml: bool = False) -> dict:
        """One model/seed/snapshot of this run's dbt build (``after_ml``: of the ML-fed marts'
        build in ml_score): status, timing, its tests (reads run_results.json only; no
        warehouse, no pool)."""
        import json
        import logging

        from retailpulse.dbt_graph import DbtNode, NodeFailed, node_report, run_results_path

        path = run_results_path(_settings().data_path, get_current_context()["run_id"], "ml" if after_ml else "build")
        if not path.exists():
            # the build did not run (an upstream task failed) or died before writing results:
            # fail, so that the run fails instead of ending "success" with skipped leaves
            builder = "ml_score" if after_ml else "dbt.build"
            raise AirflowFailException(f"{builder} left no dbt results for this run: an upstream task failed "
                                       f"or {builder} crashed (see its log)")
        node = DbtNode(unique_id, unique_id.split(".")[-1], resource_type, (), tuple(tests), after_ml)
        try:
            report = node_report(json.loads(path.read_text()), node)
        except NodeFailed as exc:  # the build is done: retrying a report cannot change it
            raise AirflowFailException(str(exc)) from exc
        t = report["tests"]
        logging.getLogger(__name__).info(
            "%s %s: %s in %.2fs (rows %s); tests: %d passed, %d warned, %d failed of %d (%.2fs)",
            resource_type, node.name, report["status"], report["seconds"], report["rows_affected"],
            t["passed"], t["warned"], t["failed"], t["total"], t["seconds"])
        return report

    @task(pool=WAREHOUSE_POOL)
    def ml_score() -> dict:
        from retailpulse.dag_support import ml_score_for_run

        return ml_score_for_run(_settings(), get_current_context()["run_id"], _interval())

    @task(pool=WAREHOUSE_POOL, outlets=[GOLD_ASSET])
    def publish() -> dict:
        from retailpulse.pipeline import stage_publish

        result = stage_publish(_settings())
        # what the consumers of the gold Asset can check the serving copy against
        get_current_context()["outlet_events"][GOLD_ASSET].extra = {
            "tables": {k: int(v) for k, v in (result.get("tables") or {}).items()},
            "serving_file": str(result.get("serving_file")),
        }
        return result

    loads = []
    for source in SOURCES:
        extracted = extract.override(task_id=f"extract_{source}")(source)
        loaded = load.override(task_id=f"load_{source}")(source)
        extracted >> loaded
        loads.append(loaded)
    scored = ml_score()
    published = publish()
    with TaskGroup("dbt", tooltip="dbt build once; one task per model with its tests") as dbt_group:
        built = build()
        before_ml = [built]  # what ml_score waits for
        after_ml = []  # the ML-fed marts' leaves: what publish waits for, besides ml_score
        if DBT_GRAPH:
            tasks = {}
            for node in DBT_GRAPH:
                report = dbt_node.override(
                    task_id=task_name(node),
                    # the first layer, and the marts ml_score builds, report even after a failed
                    # build (which nodes or tests failed; without results they fail, saying why)
                    trigger_rule="all_done" if not node.parents or node.after_ml else "all_success",
                    doc_md=f"dbt {node.resource_type} `{node.unique_id}` and its {len(node.tests)} tests"
                           + (" (built by ml_score, after scoring)" if node.after_ml else ""),
                )(node.unique_id, node.resource_type, list(node.tests), node.after_ml)
                for parent in node.parents:
                    tasks[parent] >> report
                if node.after_ml:
                    scored >> report
                elif not node.parents:
                    built >> report
                tasks[node.unique_id] = report
            ml_fed = {n.unique_id for n in DBT_GRAPH if n.after_ml}
            pre_ml_children = {p for n in DBT_GRAPH if n.unique_id not in ml_fed for p in n.parents}
            ml_children = {p for n in DBT_GRAPH if n.unique_id in ml_fed for p in n.parents}
            before_ml = [tasks[n.unique_id] for n in DBT_GRAPH
                         if n.unique_id not in ml_fed and n.unique_id not in pre_ml_children]
            after_ml = [tasks[u] for u in sorted(ml_fed - ml_children)]
    loads >> dbt_group
    before_ml >> scored
    scored >> published
    after_ml >> published


retailpulse_daily()
