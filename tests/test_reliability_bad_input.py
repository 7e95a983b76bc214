"""Bad input for `retailpulse import-transactions`: a clear one-line error (exit code 1, no
traceback) or a reasoned reject per line, never silent loss (lines in == kept + rejected).

tests/test_import_transactions.py covers the importer's messages in-process; this matrix goes
through the command's entry point (``retailpulse.cli.main``, stderr captured), and one case
through the installed console script in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from retailpulse.cli import main
from retailpulse.warehouse import get_warehouse
from tests.conftest import REPO

H = "customer_id,order_id,order_date,amount\n"
GOOD = "c9,o9,2024-01-09,10\n"

# name -> (file bytes, extra CLI args, message expected on stderr)
ERRORS = {
    "empty file": (b"", [], "is empty"),
    "only whitespace": (b"\n\n  \n", [], "is empty"),
    "header only": (H.encode(), [], "has a header but no rows"),
    "missing required columns": (b"name,city\nann,paris\n", [], "columns found: name, city"),
    "UTF-16 without byte-order mark": (H.encode("utf-16-le") + GOOD.encode("utf-16-le"), [], "UTF-16"),
    "wrong explicit encoding": ((H + "c\u00e9,o1,2024-01-01,1\n").encode("latin-1"), ["--encoding", "utf-8"],
                                "not valid utf-8"),
    "every date unparseable": ((H + "c1,o1,someday,1\nc2,o2,never,2\n").encode(), [], "no importable line"),
    "every amount non-numeric": ((H + "c1,o1,2024-01-01,abc\nc2,o2,2024-01-02,n/a\n").encode(), [],
                                 "no importable line"),
    "a directory, not a file": (None, [], "cannot read"),
    "binary file": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", [], "binary file"),
}

# name -> (CSV text, {reject reason: lines}); every case also has the one GOOD line (kept)
REJECTS = {
    "huge amount": ("c1,o1,2024-01-01,99999999999999\n", {"amount_out_of_range": 1}),
    "infinite amount": ("c1,o1,2024-01-01,1e400\n", {"amount_out_of_range": 1}),
    "non-numeric amount": ("c1,o1,2024-01-01,twelve\n", {"unparseable_amount": 1}),
    "unparseable timestamp": ("c1,o1,31/31/2024,5\n", {"unparseable_date": 1}),
    "future date": ("c1,o1,2031-05-01,5\n", {"future_date": 1}),
    "far-future date (year 9999)": ("c1,o1,9999-12-31 23:59,5\n", {"future_date": 1}),
    "year 0001": ("c1,o1,0001-01-01,5\n", {"unparseable_date": 1}),
    "year 0001 written out": ('c1,o1,"Jan 1, 0001",5\n', {"unparseable_date": 1}),  # dateutil alone says 2001
    "duplicate line": ("c1,o1,2024-01-01,5\nc1,o1,2024-01-01,5\n", {"duplicate_line": 1}),
    "one order id, two customers": ("c1,o1,2024-01-01,5\nc2,o1,2024-01-01,6\n", {"conflicting_order_id": 2}),
}


@pytest.fixture
def cli_env(settings, monkeypatch):
    monkeypatch.setenv("RETAILPULSE_WAREHOUSE_PATH", str(settings.duckdb_path))
    monkeypatch.setenv("RETAILPULSE_DATA_DIR", str(settings.data_path))
    return settings


@pytest.mark.parametrize("name", list(ERRORS))
def test_bad_file_is_one_clear_line(name, cli_env, tmp_path, capsys):
    content, args, message = ERRORS[name]
    path = tmp_path / "in.csv"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    assert main(["import-transactions", str(path), "--currency", "USD", *args]) == 1
    out = capsys.readouterr()
    lines = [line for line in out.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("retailpulse: error: "), out.err
    assert message in lines[0] and "Traceback" not in out.err
    # nothing was half-imported
    wh = get_warehouse(cli_env)
    if wh.table_exists("bronze", "transactions__imported"):
        assert wh.row_count("bronze", "transactions__imported") == 0


@pytest.mark.parametrize("name", list(REJECTS))
def test_bad_lines_are_reasoned_rejects_and_nothing_is_lost(name, cli_env, tmp_path, capsys):
    body, want = REJECTS[name]
    path = tmp_path / "in.csv"
    path.write_text(H + body + GOOD)
    n_lines = body.count("\n") + 1
    assert main(["import-transactions", str(path), "--currency", "USD", "--json", "--max-reject-fraction", "1"]) == 0
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    report = json.loads(out.out)
    kept = n_lines - sum(want.values())  # each line here is its own transaction
    assert report["rows"] == n_lines and report["loaded"] == kept
    wh = get_warehouse(cli_env)
    ids = [i for (i,) in wh.query("select transaction_id from bronze.transactions__imported order by 1")]
    assert len(ids) == kept and ids[-1] == "o9"
    records = [json.loads(r) for (r,) in wh.query(
        "select record from bronze.rejected_records where source = 'transactions' and object = 'imported'")]
    reasons: dict[str, int] = {}
    for rec in records:
        reasons[rec["import_status"]] = reasons.get(rec["import_status"], 0) + len(rec["source_lines"])
    assert reasons == want
    assert sum(reasons.values()) + kept == n_lines  # every line in: kept or rejected with its reason


def test_console_script_error_has_no_traceback(tmp_path):
    """The installed `retailpulse` entry point, in its own process, on a file pandas cannot date."""
    path = tmp_path / "in.csv"
    path.write_text(H + "c1,o1,0001-01-01,5\nc2,o2,9999-12-31,5\n")
    env = {"PATH": "/usr/bin:/bin", "RETAILPULSE_HOME": str(REPO), "HOME": str(tmp_path),
           "RETAILPULSE_DATA_DIR": str(tmp_path / "data"),
           "RETAILPULSE_WAREHOUSE_PATH": str(tmp_path / "warehouse.duckdb"), "AIRFLOW_HOME": str(tmp_path / "af")}
    exe = [sys.executable, "-m", "retailpulse.cli"]
    out = subprocess.run([*exe, "import-transactions", str(path), "--currency", "USD"], capture_output=True,
                         text=True, cwd=REPO, env=env, timeout=300)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("retailpulse: error: no importable line") and "unparseable dates 1" in lines[-1] \
        and "future dates 1" in lines[-1], out.stderr
