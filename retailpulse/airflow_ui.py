"""``make airflow``: airflow standalone on 127.0.0.1 with the project's DAGs.

Airflow 3's simple auth manager generates the admin password at first start and writes it to
``<AIRFLOW_HOME>/simple_auth_manager_passwords.json.generated``; we print where it is, never
the password itself in logs we own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from retailpulse import airflow_setup
from retailpulse.settings import Settings


def serve(settings: Settings, port: int = 8080) -> int:
    airflow_setup.init(settings)
    env = {**os.environ, **airflow_setup.airflow_env(settings)}
    env["AIRFLOW__API__HOST"] = "127.0.0.1"
    env["AIRFLOW__API__PORT"] = str(port)
    env["AIRFLOW__CORE__AUTH_MANAGER"] = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
    env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = "admin:admin"
    env["AIRFLOW__CORE__EXECUTOR"] = "LocalExecutor"
    pw_file = settings.airflow_home / "simple_auth_manager_passwords.json.generated"
    print(f"Airflow UI: http://127.0.0.1:{port}  (user: admin)", flush=True)
    print(f"The generated admin password is in {pw_file} (created at first start).", flush=True)
    print("The retailpulse_* DAGs start paused: unpause retailpulse_daily to schedule it. Ctrl-C stops Airflow.", flush=True)
    exe = Path(sys.executable).with_name("airflow")
    try:
        return subprocess.call([str(exe), "standalone"], env=env)
    except KeyboardInterrupt:
        return 0
