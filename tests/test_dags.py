"""DAG integrity: every DAG file imports cleanly; every task retries and has a timeout."""

from __future__ import annotations

import pytest

from retailpulse.airflow_setup import POOL


@pytest.fixture(scope="module")
def dagbag():
    from retailpulse.airflow_setup import apply_env
    from retailpulse.settings import load_settings

    apply_env(load_settings())
    from airflow.dag_processing.dagbag import DagBag
    from tests.conftest import REPO

    return DagBag(dag_folder=str(REPO / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "retailpulse_daily" in dagbag.dags


def test_every_task_retries_with_a_timeout(dagbag):
    for dag in dagbag.dags.values():
        for t in dag.tasks:
            assert t.retries >= 1, f"{dag.dag_id}.{t.task_id} has no retries"
            assert t.execution_timeout is not None, f"{dag.dag_id}.{t.task_id} has no execution_timeout"


def test_warehouse_writers_share_the_one_slot_pool(dagbag):
    dag = dagbag.dags["retailpulse_daily"]
    for t in dag.tasks:
        if t.task_id.startswith("extract_"):
            assert t.pool != POOL, "extract tasks only write landing files and run in parallel"
        else:
            assert t.pool == POOL, f"{t.task_id} writes the warehouse and must use the {POOL} pool"
    assert dag.max_active_runs == 1


def test_daily_dag_shape(dagbag):
    dag = dagbag.dags["retailpulse_daily"]
    ids = {t.task_id for t in dag.tasks}
    from ingestion.connectors import SOURCES

    assert {"dbt_build", "ml_score", "publish"} <= ids
    for source in SOURCES:
        assert dag.get_task(f"load_{source}").upstream_task_ids == {f"extract_{source}"}
        assert f"load_{source}" in dag.get_task("dbt_build").upstream_task_ids
    assert dag.get_task("ml_score").upstream_task_ids == {"dbt_build"}
    assert dag.get_task("publish").upstream_task_ids == {"ml_score"}


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
