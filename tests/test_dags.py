"""DAG integrity: every DAG file imports cleanly; every task retries with backoff and has a
timeout and a failure alert; dbt is rendered per model from the manifest; the gold Asset wiring."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from retailpulse.airflow_setup import POOL

PROJECT_DAGS = {"retailpulse_daily", "retailpulse_weekly_train", "retailpulse_weekly_report",
                "retailpulse_gdpr_erasure", "retailpulse_gold_consumers"}


def _bag():
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import REPO

    return DagBag(dag_folder=str(REPO / "dags"))


@pytest.fixture(scope="module")
def manifest():
    """dbt/target/manifest.json (``retailpulse init`` parses it when missing)."""
    from retailpulse.airflow_setup import apply_env, ensure_dbt_manifest
    from retailpulse.dbt_graph import manifest_path
    from retailpulse.settings import load_settings

    settings = load_settings()
    apply_env(settings)
    ensure_dbt_manifest(settings)
    return json.loads(manifest_path().read_text())


@pytest.fixture(scope="module")
def dagbag(manifest):
    return _bag()


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert PROJECT_DAGS <= set(dagbag.dags)


def test_every_task_retries_with_backoff_and_a_timeout(dagbag):
    for dag in dagbag.dags.values():
        assert dag.max_active_runs == 1, dag.dag_id
        for t in dag.tasks:
            assert t.retries >= 1, f"{dag.dag_id}.{t.task_id} has no retries"
            assert t.retry_exponential_backoff, f"{dag.dag_id}.{t.task_id} retries without backoff"
            assert t.max_retry_delay is not None and t.retry_delay >= dt.timedelta(seconds=30), t.task_id
            assert t.execution_timeout is not None, f"{dag.dag_id}.{t.task_id} has no execution_timeout"


def test_warehouse_writers_share_the_one_slot_pool(dagbag):
    dag = dagbag.dags["retailpulse_daily"]
    for t in dag.tasks:
        if t.task_id.startswith("extract_"):
            assert t.pool != POOL, "extract tasks only write landing files and run in parallel"
        elif t.task_id.startswith("dbt.") and t.task_id != "dbt.build":
            assert t.pool != POOL, "per-model dbt tasks only read run_results.json"
        else:
            assert t.pool == POOL, f"{t.task_id} writes the warehouse and must use the {POOL} pool"
    assert dag.max_active_runs == 1


def test_daily_dag_shape(dagbag):
    dag = dagbag.dags["retailpulse_daily"]
    ids = {t.task_id for t in dag.tasks}
    from ingestion.connectors import SOURCES

    assert {"dbt.build", "ml_score", "publish"} <= ids
    for source in SOURCES:
        assert dag.get_task(f"load_{source}").upstream_task_ids == {f"extract_{source}"}
    assert dag.get_task("dbt.build").upstream_task_ids == {f"load_{s}" for s in SOURCES}
    # publish waits for ML and the reports of the marts ML builds (with a manifest)
    assert "ml_score" in dag.get_task("publish").upstream_task_ids
    assert dag.get_task("publish").upstream_task_ids <= {"ml_score"} | {t.task_id for t in dag.tasks
                                                                          if t.task_id.startswith("dbt.")}


def test_daily_runs_are_driven_by_a_daily_data_interval(dagbag):
    """A scheduled (or backfilled) run for day D covers [D, D+1): contiguous days, no gaps."""
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.interval import CronDataIntervalTimetable

    from retailpulse.pipeline import resolve_interval

    dag = dagbag.dags["retailpulse_daily"]
    assert dag.catchup is False  # past days run through explicit backfills (`retailpulse run --start/--end`)
    core = CronDataIntervalTimetable("0 0 * * *", timezone="UTC")
    assert coerce_to_core_timetable(dag.timetable).serialize() == core.serialize()
    utc = dt.timezone.utc
    for day in (dt.date(2025, 1, 31), dt.date(2025, 12, 31)):
        run_after = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=utc)
        interval = core.infer_manual_data_interval(run_after=run_after)
        covered = resolve_interval(interval.start, interval.end)
        assert (covered.start, covered.end) == (dt.datetime.combine(day, dt.time(0), tzinfo=utc), run_after)


def test_dbt_is_rendered_per_model_following_the_manifest(dagbag, manifest):
    dag = dagbag.dags["retailpulse_daily"]
    rendered = {uid: n for uid, n in manifest["nodes"].items()
                if n["resource_type"] in ("model", "seed", "snapshot")
                and n["config"].get("materialized") != "ephemeral"}
    assert len(rendered) >= 40
    by_task = {f"dbt.{n['name']}": uid for uid, n in rendered.items()}
    assert {t.task_id for t in dag.tasks if t.task_id.startswith("dbt.")} == {"dbt.build", *by_task}
    # the ML-fed marts: models reading the ML stage's tables (dbt source "ml") and all below them
    ml_sources = {u for u, s in manifest["sources"].items() if s["source_name"] == "ml"}
    ml_fed: set[str] = set()
    changed = True
    while changed:
        changed = False
        for uid, n in rendered.items():
            deps = set(n["depends_on"].get("nodes", []))
            if uid not in ml_fed and deps & (ml_sources | ml_fed):
                ml_fed.add(uid)
                changed = True
    assert {rendered[u]["name"] for u in ml_fed} == {"dim_customers", "int_attribution__data_driven", "fct_attribution",
                                                    "channel_performance_daily"}
    for task_id, uid in by_task.items():
        t = dag.get_task(task_id)
        parents = {f"dbt.{rendered[p]['name']}" for p in manifest["nodes"][uid]["depends_on"].get("nodes", []) if p in rendered}
        if uid in ml_fed:  # built by ml_score after scoring; reported after it, even when it failed
            assert t.upstream_task_ids == parents | {"ml_score"}, task_id
            assert t.op_args[3] is True and t.trigger_rule == "all_done"
        else:
            assert t.upstream_task_ids == (parents or {"dbt.build"}), task_id
            assert t.op_args[3] is False
        assert t.op_args[0] == uid
    # fct_orders selects from int_orders only; a staging view hangs off the build
    assert dag.get_task("dbt.fct_orders").upstream_task_ids == {"dbt.int_orders"}
    # every data test and unit test is reported by exactly one node task
    tested = [t for tid in by_task for t in dag.get_task(tid).op_args[2]]
    assert len(tested) == len(set(tested))
    assert set(tested) == {u for u, n in manifest["nodes"].items() if n["resource_type"] == "test"} | set(manifest.get("unit_tests", {}))
    assert "not_null_columns_fct_orders" in " ".join(dag.get_task("dbt.fct_orders").op_args[2])
    # a test over an ML-fed mart runs in the after-ML build: an ML-fed node reports it
    fed_tasks = {f"dbt.{rendered[u]['name']}" for u in ml_fed}
    for u, n in manifest["nodes"].items():
        if n["resource_type"] == "test" and set(n["depends_on"].get("nodes", [])) & ml_fed:
            assert any(u in dag.get_task(t).op_args[2] for t in fed_tasks), u
    assert any("relationships_fct_orders_customer_id" in x for x in dag.get_task("dbt.dim_customers").op_args[2])
    # ML scoring waits for the leaves of the dbt graph without the ML-fed marts (a failed model
    # fails the leaves below it); publish for ML and the ML-fed marts' leaves
    pre = set(by_task) - fed_tasks
    leaves = pre - {p for t in pre for p in dag.get_task(t).upstream_task_ids}
    assert dag.get_task("ml_score").upstream_task_ids == leaves
    assert {"dbt.fct_sessions", "dbt.fct_conversion_paths"} <= leaves
    fed_leaves = fed_tasks - {p for t in fed_tasks for p in dag.get_task(t).upstream_task_ids}
    assert fed_leaves == {"dbt.dim_customers", "dbt.channel_performance_daily"}
    assert dag.get_task("publish").upstream_task_ids == {"ml_score"} | fed_leaves


def test_without_a_manifest_dbt_is_one_task(tmp_path, monkeypatch, caplog, dagbag):
    monkeypatch.setenv("RETAILPULSE_DBT_MANIFEST", str(tmp_path / "missing" / "manifest.json"))
    with caplog.at_level("WARNING"):
        bag = _bag()
    assert bag.import_errors == {}
    dag = bag.dags["retailpulse_daily"]
    assert [t.task_id for t in dag.tasks if t.task_id.startswith("dbt.")] == ["dbt.build"]
    assert dag.get_task("ml_score").upstream_task_ids == {"dbt.build"}
    assert dag.get_task("publish").upstream_task_ids == {"ml_score"}
    assert "dbt runs as a single task" in caplog.text


def test_gold_asset_schedules_the_consumers(dagbag):
    """publish's outlet is the Asset the consumer DAG is scheduled on, in the serialized DAGs too."""
    from airflow.serialization.serialized_objects import DagSerialization

    from retailpulse.dag_support import GOLD_ASSET_URI

    publish = dagbag.dags["retailpulse_daily"].get_task("publish")
    assert [a.uri for a in publish.outlets] == [GOLD_ASSET_URI]
    producer = DagSerialization.to_dict(dagbag.dags["retailpulse_daily"])["dag"]["dag_dependencies"]
    consumer_dag = DagSerialization.to_dict(dagbag.dags["retailpulse_gold_consumers"])["dag"]
    assert {"source": "retailpulse_daily", "target": "asset", "label": GOLD_ASSET_URI} \
        in [{k: d[k] for k in ("source", "target", "label")} for d in producer]
    assert [{k: d[k] for k in ("source", "target", "label")} for d in consumer_dag["dag_dependencies"]] == \
        [{"source": "asset", "target": "retailpulse_gold_consumers", "label": GOLD_ASSET_URI}]
    timetable = consumer_dag["timetable"]
    assert timetable["__type"].endswith("AssetTriggeredTimetable")
    assert [o["uri"] for o in timetable["__var"]["asset_condition"]["objects"]] == [GOLD_ASSET_URI]


def test_failure_callback_writes_one_clear_alert_line(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from retailpulse.dag_support import failure_alert

    monkeypatch.setenv("RETAILPULSE_DATA_DIR", str(tmp_path))
    failure_alert("retailpulse_daily")({
        "task_instance": SimpleNamespace(task_id="load_stripe"), "run_id": "manual__1",
        "exception": RuntimeError("stripe.charges not loaded: expect_column_to_exist(currency) failed"),
    })
    lines = (tmp_path / "alerts.log").read_text().splitlines()
    assert len(lines) == 1
    assert "retailpulse_daily task load_stripe failed for run manual__1: RuntimeError: stripe.charges not loaded" in lines[0]


def test_every_dag_alerts_on_failure(dagbag):
    for dag in dagbag.dags.values():
        for t in dag.tasks:
            assert t.on_failure_callback, f"{dag.dag_id}.{t.task_id} has no failure alert"


def test_a_model_task_fails_on_its_model_or_tests_and_reports_timing():
    from retailpulse.dbt_graph import DbtNode, NodeFailed, node_report

    node = DbtNode("model.retailpulse.fct_orders", "fct_orders", "model", ("model.retailpulse.int_orders",),
                   ("test.retailpulse.not_null_fct_orders_order_id.1a", "test.retailpulse.unique_fct_orders_order_id.2b",
                    "unit_test.retailpulse.fct_orders.nets_refunds"))

    def results(model="success", tests=("pass", "pass", "pass")):
        rows = [{"unique_id": node.unique_id, "status": model, "execution_time": 1.25, "message": "OK",
                 "adapter_response": {"rows_affected": 1200}}]
        rows += [{"unique_id": t, "status": s, "execution_time": 0.5, "message": f"Got 3 results" if s != "pass" else None}
                 for t, s in zip(node.tests, tests)]
        rows.append({"unique_id": "model.retailpulse.other", "status": "error", "execution_time": 1, "message": "boom"})
        return {"results": rows}

    ok = node_report(results(), node)
    assert (ok["status"], ok["seconds"], ok["rows_affected"]) == ("success", 1.25, 1200)
    assert ok["tests"] == {"total": 3, "passed": 3, "warned": 0, "failed": 0, "skipped": 0, "seconds": 1.5}
    assert node_report(results(tests=("pass", "warn", "pass")), node)["tests"]["warned"] == 1  # warnings pass
    with pytest.raises(NodeFailed, match="test unique_fct_orders_order_id fail: Got 3 results"):
        node_report(results(tests=("pass", "fail", "pass")), node)
    with pytest.raises(NodeFailed, match="test nets_refunds error"):
        node_report(results(tests=("pass", "pass", "error")), node)
    with pytest.raises(NodeFailed, match="model fct_orders error"):
        node_report(results(model="error"), node)
    with pytest.raises(NodeFailed, match="not in this run's dbt results"):
        node_report({"results": []}, node)


def test_the_serving_check_compares_the_copy_with_what_publish_announced(settings):
    import duckdb

    from retailpulse.dag_support import check_serving_copy
    from retailpulse.serving import serving_file

    path = serving_file(settings)
    path.parent.mkdir(parents=True)
    con = duckdb.connect(str(path))
    con.execute("create schema gold")
    con.execute("create table gold.fct_orders as select timestamp '2025-12-30 10:00:00' + i * interval 1 hour "
                "as ordered_at from range(20) t(i)")
    con.close()
    report = check_serving_copy(settings, {"fct_orders": 20})
    assert report["last_order_date"] == "2025-12-31" and report["problems"] == []
    assert json.loads((settings.data_path / "serving_freshness.json").read_text())["tables"] == 1
    with pytest.raises(RuntimeError, match="fct_orders has 20 rows, publish announced 21; kpi_daily missing"):
        check_serving_copy(settings, {"fct_orders": 21, "kpi_daily": 5})


def test_a_failed_extract_fails_the_run_and_nothing_is_published(settings, monkeypatch, manifest):
    """No successful-looking run with skipped leaves: when the extracts fail, dbt.build never runs,
    its model tasks fail for want of results, ML and publish are upstream_failed and the run fails.
    (A bad run conf makes every extract fail at once; retries are switched off for the test.)"""
    from retailpulse.airflow_setup import apply_env, load_dag

    for key, value in {"RETAILPULSE_DATA_DIR": settings.data_dir, "RETAILPULSE_WAREHOUSE_PATH": settings.warehouse_path,
                       "RETAILPULSE_SERVING_DIR": settings.serving_dir}.items():
        monkeypatch.setenv(key, str(value))
    apply_env(settings)
    dag = load_dag(settings)
    for t in dag.tasks:
        t.retries = 0
    dr = dag.test(logical_date=dt.datetime.now(dt.timezone.utc), run_conf={"start": "2025-02-30", "end": "2025-03-01"})
    states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}
    assert "failed" in str(dr.state), states
    assert all("failed" in v for k, v in states.items() if k.startswith("extract_")), states
    assert "upstream_failed" in states["dbt.build"]
    assert "upstream_failed" in states["ml_score"] and "upstream_failed" in states["publish"], states
    reports = [k for k in states if k.startswith("dbt.") and k != "dbt.build"]
    assert reports and not any("success" in states[k] or "skipped" in states[k] for k in reports), states
    assert states["dbt.dim_customers"] == "failed", states  # ran: "ml_score left no dbt results"
    assert not (settings.serving_dir / "retailpulse_serving.duckdb").exists()
    assert "retailpulse_daily task extract_stripe failed" in (settings.data_dir / "alerts.log").read_text()


def test_the_graph_marks_ml_fed_nodes_and_reports_their_tests_after_ml():
    """Models reading the ML stage's tables (directly, or through an ephemeral model or another
    model) are built after scoring; a test over one of them and an earlier model runs in that
    build, so an ML-fed node reports it, whatever dbt attached it to."""
    from retailpulse.dbt_graph import graph_from_manifest

    def model(name, deps, materialized="table"):
        return {"resource_type": "model", "name": name, "config": {"materialized": materialized},
                "depends_on": {"nodes": deps}}

    m = "model.p."
    manifest = {
        "sources": {"source.p.ml.customer_scores": {"source_name": "ml"},
                    "source.p.raw.orders": {"source_name": "raw"}},
        "nodes": {
            m + "stg_orders": model("stg_orders", ["source.p.raw.orders"], "view"),
            m + "fct_orders": model("fct_orders", [m + "stg_orders"]),
            m + "scores_eph": model("scores_eph", ["source.p.ml.customer_scores"], "ephemeral"),
            m + "dim_customers": model("dim_customers", [m + "fct_orders", m + "scores_eph"]),
            m + "customer_kpis": model("customer_kpis", [m + "dim_customers"]),
            "test.p.not_null_fct_orders_id.1": {"resource_type": "test", "attached_node": m + "fct_orders",
                                                "depends_on": {"nodes": [m + "fct_orders"]}},
            "test.p.relationships_fct_orders_customer_id.2": {
                "resource_type": "test", "attached_node": m + "fct_orders",
                "depends_on": {"nodes": [m + "dim_customers", m + "fct_orders"]}},
            "test.p.assert_kpis_reconcile.3": {"resource_type": "test", "attached_node": None,
                                               "depends_on": {"nodes": [m + "customer_kpis", m + "fct_orders"]}},
        },
    }
    nodes = {n.name: n for n in graph_from_manifest(manifest)}
    assert {k: v.after_ml for k, v in nodes.items()} == {
        "stg_orders": False, "fct_orders": False, "dim_customers": True, "customer_kpis": True}
    assert nodes["fct_orders"].tests == ("test.p.not_null_fct_orders_id.1",)
    assert nodes["dim_customers"].tests == ("test.p.relationships_fct_orders_customer_id.2",)
    assert nodes["customer_kpis"].tests == ("test.p.assert_kpis_reconcile.3",)
    assert nodes["dim_customers"].parents == (m + "fct_orders",)  # the ephemeral model folded in


def test_the_daily_builds_run_every_node_once(manifest):
    """dbt.build (``dbt build --exclude source:ml+``) and ml_score's build (``--select source:ml+``)
    together select every model, seed, snapshot, data test and unit test of the project exactly once,
    as dbt itself resolves the selectors (tests over an ML-fed and an earlier model included)."""
    from dbt.cli.main import dbtRunner

    from retailpulse.dbt_graph import ML_FED_SELECTOR
    from retailpulse.dbt_runner import write_profiles
    from retailpulse.pipeline import dbt_build_args
    from retailpulse.settings import load_settings

    settings = load_settings()
    common = ["--project-dir", str(settings.dbt_project_dir), "--profiles-dir", str(write_profiles(settings)),
              "--resource-type", "model", "seed", "snapshot", "test", "unit_test",
              "--output", "json", "--output-keys", "unique_id", "--quiet"]

    def ls(args: list[str]) -> list[str]:
        res = dbtRunner().invoke(["ls", *args, *common])
        assert res.success, res.exception
        return [json.loads(line)["unique_id"] for line in res.result]

    first = ls(dbt_build_args(before_ml=True)[1:])  # the selection arguments of dbt.build
    after_ml = ls(["--select", ML_FED_SELECTOR])
    everything = ls([])
    assert len(everything) > 200 and not set(first) & set(after_ml)
    assert sorted(first + after_ml) == sorted(everything)
    names = {u.split(".")[2] for u in after_ml}
    assert {"dim_customers", "fct_attribution", "channel_performance_daily"} <= names
    assert any(n.startswith("relationships_fct_orders_customer_id") for n in names)
