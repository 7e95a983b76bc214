"""The Airflow 3 API server, started as `make airflow` starts it (127.0.0.1, simple auth manager),
lists the project's DAGs with no import errors, checked over HTTP with a token for the generated
admin password. Own AIRFLOW_HOME in tmp; every process is killed in teardown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_dags import PROJECT_DAGS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers (uvicorn workers may ignore SIGTERM)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # anything left in the group (workers)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def api_server(tmp_path_factory):
    import requests

    from retailpulse.airflow_setup import ensure_dbt_manifest
    from retailpulse.airflow_ui import ui_env
    from retailpulse.settings import load_settings

    settings = load_settings()
    ensure_dbt_manifest(settings)  # retailpulse_daily renders its dbt models from it
    home = tmp_path_factory.mktemp("airflow_home")
    port = _free_port()
    env = ui_env(settings, port)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__API__WORKERS": "1",
    })
    exe = str(Path(sys.executable).with_name("airflow"))
    for args in (["db", "migrate"], ["dags", "reserialize"]):  # the dag-processor's parse, once
        done = subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, f"airflow {' '.join(args)}: {done.stderr[-2000:]}"
    log = (home / "api-server.log").open("wb")
    proc = subprocess.Popen([exe, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"api-server exited: {(home / 'api-server.log').read_text()[-2000:]}"
            try:
                if requests.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "api-server did not answer within 120 s"
            time.sleep(1)
        passwords = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
        token = requests.post(f"{base}/auth/token", json={"username": "admin", "password": passwords["admin"]},
                              timeout=10)
        assert token.status_code in (200, 201), token.text
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        yield base, session, proc
    finally:
        _stop(proc)
        log.close()


def test_api_server_is_healthy_and_bound_to_localhost(api_server):
    import requests

    base, session, proc = api_server
    health = requests.get(f"{base}/api/v2/monitor/health", timeout=10).json()
    assert health["metadatabase"]["status"] == "healthy"
    import psutil

    port = int(base.rsplit(":", 1)[1])
    listening = {c.laddr.ip for c in psutil.net_connections(kind="tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    assert listening == {"127.0.0.1"}


def test_api_lists_the_project_dags_without_import_errors(api_server):
    import requests

    base, session, _ = api_server
    assert requests.get(f"{base}/api/v2/dags", timeout=10).status_code == 401  # auth is enforced
    dags = session.get(f"{base}/api/v2/dags", params={"limit": 100}, timeout=30)
    assert dags.status_code == 200, dags.text
    assert PROJECT_DAGS <= {d["dag_id"] for d in dags.json()["dags"]}
    errors = session.get(f"{base}/api/v2/importErrors", timeout=30)
    assert errors.status_code == 200, errors.text
    assert errors.json()["total_entries"] == 0, errors.json()["import_errors"]
    # the dbt models are visible as tasks of retailpulse_daily
    tasks = session.get(f"{base}/api/v2/dags/retailpulse_daily/tasks", timeout=30).json()["tasks"]
    ids = {t["task_id"] for t in tasks}
    assert {"dbt.build", "dbt.fct_orders", "dbt.dim_customers", "publish"} <= ids
    assert sum(i.startswith("dbt.") for i in ids) > 40
    # the gold Asset: produced by retailpulse_daily.publish, scheduling retailpulse_gold_consumers
    assets = session.get(f"{base}/api/v2/assets", params={"uri_pattern": "retailpulse://warehouse/gold"},
                         timeout=30).json()["assets"]
    assert len(assets) == 1, assets
    assert [(t["dag_id"], t["task_id"]) for t in assets[0]["producing_tasks"]] == [("retailpulse_daily", "publish")]
    assert [d["dag_id"] for d in assets[0]["scheduled_dags"]] == ["retailpulse_gold_consumers"]
