"""The retailpulse command: help, one-line errors, read-only queries."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from retailpulse.cli import main
from retailpulse.warehouse import get_warehouse
from tests.conftest import REPO

EXE = [sys.executable, "-m", "retailpulse.cli"]


def test_help_lists_the_commands():
    out = subprocess.run([*EXE, "--help"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0
    for cmd in ("init", "run", "demo", "query", "sandbox", "airflow"):
        assert cmd in out.stdout


def test_errors_are_one_line_without_traceback(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "RETAILPULSE_HOME": str(REPO), "RETAILPULSE_WAREHOUSE_PATH": str(tmp_path / "none.duckdb")}
    out = subprocess.run([*EXE, "query", "select 1"], capture_output=True, text=True, cwd=REPO, env=env)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines == [f"retailpulse: error: no warehouse at {tmp_path / 'none.duckdb'}: run `make run` (or `retailpulse init`) first"]


def test_bad_date_is_a_usage_error():
    out = subprocess.run([*EXE, "run", "--start", "yesterday"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2 and "not a date" in out.stderr and "Traceback" not in out.stderr


def test_bad_setting_is_one_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "RETAILPULSE_HOME": str(REPO), "RETAILPULSE_TARGET": "oracle"}
    out = subprocess.run([*EXE, "query", "select 1"], capture_output=True, text=True, cwd=REPO, env=env)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "RETAILPULSE_TARGET" in out.stderr


def _seed(settings):
    wh = get_warehouse(settings)
    wh.ensure_schemas()
    wh.replace_rows("gold", "fct_orders", pd.DataFrame({"order_id": ["o1", "o2"], "net_revenue": [10.5, 4.5]}))


def test_query_formats_and_read_only(settings, monkeypatch, capsys):
    _seed(settings)
    monkeypatch.setenv("RETAILPULSE_WAREHOUSE_PATH", str(settings.duckdb_path))
    monkeypatch.setenv("RETAILPULSE_DATA_DIR", str(settings.data_path))
    assert main(["query", "select sum(net_revenue) as revenue from gold.fct_orders", "--format", "json"]) == 0
    assert '"revenue": 15.0' in capsys.readouterr().out
    assert main(["query", "select order_id from gold.fct_orders order by 1", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["order_id", "o1", "o2"]
    assert main(["query", "delete from gold.fct_orders"]) == 1
    err = capsys.readouterr().err
    assert "read-only" in err and err.count("\n") == 1
    assert get_warehouse(settings).row_count("gold", "fct_orders") == 2


def test_secrets_never_reach_error_output(settings, monkeypatch, capsys):
    _seed(settings)
    secret = "sk_test_supersecret_value_123"
    monkeypatch.setenv("RETAILPULSE_STRIPE_API_KEY", secret)
    monkeypatch.setenv("RETAILPULSE_WAREHOUSE_PATH", str(settings.duckdb_path))
    assert main(["query", f"select * from nowhere_{secret}"]) == 1
    err = capsys.readouterr().err
    assert secret not in err and "***" in err
