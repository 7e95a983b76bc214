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
    for cmd in ("init", "run", "demo", "query", "sandbox", "airflow", "import-transactions", "docs", "erase"):
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


def test_import_transactions_command(settings, monkeypatch, capsys, tmp_path):
    csv = tmp_path / "online_retail.csv"
    csv.write_text(
        "InvoiceNo,StockCode,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        "536365,85123A,6,01/12/2010 08:26,2.55,17850,United Kingdom\n"
        "536365,71053,6,01/12/2010 08:26,3.39,17850,United Kingdom\n"
        "536366,22633,6,02/12/2010 08:28,1.85,17850,United Kingdom\n"
        "536366,22633,6,02/12/2010 08:28,1.85,17850,United Kingdom\n"
        "C536379,D,-1,03/12/2010 09:41,27.50,14527,United Kingdom\n"
        "536380,22961,0,03/12/2010 09:45,0,14527,United Kingdom\n"
        "536381,22139,2,03/12/2010 09:50,4.25,,United Kingdom\n"
    )
    monkeypatch.setenv("RETAILPULSE_WAREHOUSE_PATH", str(settings.duckdb_path))
    monkeypatch.setenv("RETAILPULSE_DATA_DIR", str(settings.data_path))
    assert main(["import-transactions", str(csv), "--day-first", "--currency", "GBP", "--json"]) == 0
    import json

    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["duplicates"] == 1 and report["counts"]["zero_value"] == 1
    assert report["counts"]["missing_customer"] == 1 and report["counts"]["returns"] == 1
    wh = get_warehouse(settings)
    assert wh.row_count("bronze", "transactions__imported") == report["loaded"] > 0
    # every line is accounted for: loaded rows plus rejected lines equal the file's lines
    rejected = wh.scalar("select count(*) from bronze.rejected_records where source = 'transactions'")
    assert report["rows"] == 7 and rejected == report["rejected_records"]
    # a missing mapped column is one clear line
    assert main(["import-transactions", str(csv), "--customer-col", "Client"]) == 1
    err = capsys.readouterr().err
    assert "Client" in err and err.count("\n") == 1
