"""``make airflow``: the Airflow UI and scheduler with the project's DAGs, on 127.0.0.1 only.

Runs what ``airflow standalone`` runs — api-server, scheduler, dag-processor, triggerer — but
with the API server bound to 127.0.0.1 and the workers' log servers switched off (standalone
binds those to every interface; on one machine the API server reads task logs from the files).
Airflow 3's simple auth manager generates the admin password at first start and writes it to
``<AIRFLOW_HOME>/simple_auth_manager_passwords.json.generated``; we print where it is.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from retailpulse import airflow_setup
from retailpulse.settings import Settings

COMPONENTS = (
    ("api-server", ["api-server", "--host", "127.0.0.1", "--port", "{port}"]),
    ("scheduler", ["scheduler", "--skip-serve-logs"]),
    ("dag-processor", ["dag-processor"]),
    ("triggerer", ["triggerer", "--skip-serve-logs"]),
)


def ui_env(settings: Settings, port: int) -> dict[str, str]:
    env = {**os.environ, **airflow_setup.airflow_env(settings)}
    env["AIRFLOW__API__HOST"] = "127.0.0.1"
    env["AIRFLOW__API__PORT"] = str(port)
    env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://127.0.0.1:{port}/execution/"
    env["AIRFLOW__CORE__AUTH_MANAGER"] = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
    env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = "admin:admin"
    env["AIRFLOW__CORE__EXECUTOR"] = "LocalExecutor"
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def serve(settings: Settings, port: int = 8080) -> int:
    airflow_setup.init(settings)
    env = ui_env(settings, port)
    exe = str(Path(sys.executable).with_name("airflow"))
    pw_file = settings.airflow_home / "simple_auth_manager_passwords.json.generated"
    log_dir = settings.airflow_home / "logs" / "components"
    log_dir.mkdir(parents=True, exist_ok=True)
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    for name, args in COMPONENTS:
        log = (log_dir / f"{name}.log").open("ab")
        cmd = [exe, *[a.format(port=port) for a in args]]
        procs.append((name, subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)))
    print(f"Airflow UI: http://127.0.0.1:{port}  (user: admin)", flush=True)
    print(f"The generated admin password is in {pw_file} (written at first start).", flush=True)
    print(f"Component logs: {log_dir}. The DAGs start paused: unpause retailpulse_daily to schedule it.", flush=True)
    print("Ctrl-C stops Airflow.", flush=True)
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    code = 0
    try:
        while not stopping:
            for name, p in procs:
                if p.poll() is not None:
                    print(f"retailpulse: error: airflow {name} exited with {p.returncode}; see {log_dir / (name + '.log')}",
                          file=sys.stderr, flush=True)
                    stopping, code = True, 1
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    for _, p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for _, p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
    return code
