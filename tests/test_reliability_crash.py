"""Crash: the bronze loader killed with SIGKILL inside its open transaction leaves no partial
batch, and the next load completes and reconciles with the world.

The load runs in a child process (``python -c``) that wraps ``Warehouse.replace_rows``: once the
loader has written a batch's rows into bronze.stripe__charges, inside the transaction that
load_batches holds open (the audit row is written first, rejected_records after), the child
writes a marker file and blocks. The test waits for the marker and SIGKILLs the child, so the
kill lands deterministically between "rows written" and "commit". No hook in the product code.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd

from ingestion.interval import Interval
from ingestion.runner import extract_source, load_source
from retailpulse.warehouse import get_warehouse
from tests.conftest import REPO
from tests.connectors_support import clock, reconcile, sandbox_settings, world_state

FIRST = Interval.for_dates(dt.date(2025, 4, 1), dt.date(2025, 4, 30))
CRASHED = Interval.for_dates(dt.date(2025, 5, 1), dt.date(2025, 5, 10))
KILL_TABLE = "stripe__charges"

CHILD = r"""
import json, sys, time
from pathlib import Path

import retailpulse.warehouse as warehouse
from ingestion.interval import Interval
from ingestion.runner import load_source
from retailpulse.settings import load_settings

marker, table, start, end = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
original = warehouse.Warehouse.replace_rows

def replace_rows(self, schema, name, df, where=None, con=None):
    n = original(self, schema, name, df, where, con=con)
    if schema == "bronze" and name == table and con is not None and n > 0:
        marker.write_text(json.dumps({"table": name, "rows": n}))  # rows written, transaction open
        while True:
            time.sleep(60)
    return n

warehouse.Warehouse.replace_rows = replace_rows
load_source(load_settings(_env_file=None), "stripe", Interval.from_key(start))
"""


def _snapshot(settings) -> dict:
    wh = get_warehouse(settings)
    return {
        "charges": wh.query("select _interval_key, count(*) from bronze.stripe__charges group by 1 order by 1"),
        "customers": wh.query("select _interval_key, count(*) from bronze.stripe__customers group by 1 order by 1"),
        "rejects": wh.query("select object, interval_key, count(*) from bronze.rejected_records group by 1, 2 "
                            "order by 1, 2"),
        "audit": wh.query("select object, interval_key, batch_id, extracted, loaded, rejected, status "
                          "from ops.load_audit order by 1, 2"),
    }


def test_sigkill_inside_the_load_transaction_leaves_no_partial_batch(sandbox_server, settings_factory, tmp_path):
    s = sandbox_settings(settings_factory, sandbox_server)
    get_warehouse(s).ensure_schemas()
    with clock(sandbox_server, "2025-05-01T00:00:00Z"):
        extract_source(s, "stripe", FIRST)
    load_source(s, "stripe", FIRST)
    with clock(sandbox_server, "2025-05-11T00:00:00Z"):
        manifests = extract_source(s, "stripe", CRASHED)
    landed = {m.object: m.record_count for m in manifests}
    assert landed["charges"] > 100
    before = _snapshot(s)

    marker = tmp_path / "in_transaction.json"
    env = {**os.environ, "RETAILPULSE_HOME": str(REPO), "RETAILPULSE_DATA_DIR": str(s.data_path),
           "RETAILPULSE_WAREHOUSE_PATH": str(s.duckdb_path),
           **{k: v for k, v in sandbox_server.env().items() if v}}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(marker), KILL_TABLE, CRASHED.key, ""],
                             env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert child.poll() is None, f"the loader ended before the kill point: {child.communicate()[1][-2000:]}"
            assert time.monotonic() < deadline, "the loader never reached the kill point"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    written = json.loads(marker.read_text())
    assert written["table"] == KILL_TABLE and written["rows"] > 100  # the kill hit a real, open batch

    after = _snapshot(s)
    # customers were loaded (and committed) before charges: that batch stands, whole
    cust_key = dict(after["customers"]).get(CRASHED.key)
    assert cust_key == landed["customers"] - sum(
        n for obj, key, n in after["rejects"] if obj == "customers" and key == CRASHED.key)
    # the killed batch left nothing: no charges rows, no rejects and no audit row for it
    assert after["charges"] == before["charges"]
    assert not [r for r in after["rejects"] if r[0] == "charges" and r[1] == CRASHED.key]
    assert not [r for r in after["audit"] if r[0] == "charges" and r[1] == CRASHED.key]
    # every audit row still reconciles with bronze
    for obj, key, extracted, loaded, rejected, in_bronze, in_rejects in reconcile(s, "stripe"):
        assert (in_bronze, in_rejects) == (loaded, rejected) and extracted == loaded + rejected, (obj, key)

    # the next run completes and reconciles with the world
    reports = load_source(s, "stripe", CRASHED)
    assert {r.object: r.status for r in reports} == {o: "loaded" for o in landed}
    for obj, key, extracted, loaded, rejected, in_bronze, in_rejects in reconcile(s, "stripe"):
        assert (in_bronze, in_rejects) == (loaded, rejected) and extracted == loaded + rejected, (obj, key)
    charges = get_warehouse(s).query_df("select distinct id from bronze.stripe__charges")
    truth = world_state(sandbox_server.world.stripe_charges, ("id",), "2025-05-11T00:00:00Z")
    created = pd.to_datetime(truth["created"], unit="s", utc=True)
    lo = FIRST.start - dt.timedelta(days=s.stripe_lookback_days)
    want = set(truth.loc[(created >= lo) & (created < CRASHED.end), "id"])
    assert set(charges["id"]) == want and len(want) > 200
