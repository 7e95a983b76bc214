"""docker-compose.yml cannot be started here (no Docker engine): parse and check it."""

from __future__ import annotations

import re

import yaml

from tests.conftest import REPO


def _compose():
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_has_the_airflow_3_services_on_postgres_with_local_executor():
    services = _compose()["services"]
    assert {"airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
            "airflow-db", "airflow-init", "sandbox"} <= set(services)
    for name in ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/retailpulse/dags"
        assert "./:/opt/retailpulse" in services[name]["volumes"], "the project is mounted"


def test_published_ports_bind_loopback_and_no_default_passwords():
    text = (REPO / "docker-compose.yml").read_text()
    for service in _compose()["services"].values():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), port
    # passwords must be supplied, never defaulted
    assert re.search(r"POSTGRES_PASSWORD: \$\{AIRFLOW_DB_PASSWORD:\?", text)
    assert "postgres:postgres@" not in text and "airflow:airflow@" not in text


def test_requirements_are_pinned_exactly():
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][A-Za-z0-9.]*", line), line
