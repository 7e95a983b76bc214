"""End to end: the retailpulse_daily DAG (dag.test, in-process) against the sandbox.

Gold is compared with what the sandbox served through the real Stripe SDK (independently of
the pipeline) and with the world's ground truth; a sequence of daily incremental runs, with the
sandbox clock moving day by day (late refunds arrive through the events feed), must end in the
same gold as one run over the whole period.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

UTC = dt.timezone.utc
LAST_DAYS = [dt.date(2025, 12, 29), dt.date(2025, 12, 30), dt.date(2025, 12, 31)]  # scheduled daily runs


@contextmanager
def pipeline_env(root: Path, server) -> Iterator["object"]:
    """RETAILPULSE_* variables for an isolated warehouse pointed at ``server``; restored after."""
    from retailpulse.settings import load_settings

    saved = dict(os.environ)
    os.environ.update({
        "RETAILPULSE_DATA_DIR": str(root / "data"),
        "RETAILPULSE_WAREHOUSE_PATH": str(root / "warehouse" / "retailpulse.duckdb"),
        "RETAILPULSE_SERVING_DIR": str(root / "warehouse" / "serving"),
        **server.env(),
    })
    try:
        yield load_settings(_env_file=None)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def served_stripe(server) -> dict:
    """Net revenue and paid orders as the sandbox's Stripe API serves them right now."""
    import stripe

    client = stripe.StripeClient(server.credentials["stripe_api_key"], base_addresses={"api": server.http_url})
    fx = {k.upper(): v for k, v in server.meta["fx_to_usd"].items()}
    refunds: dict[str, int] = {}
    for r in client.v1.refunds.list(params={"limit": 100}).auto_paging_iter():
        refunds[r["charge"]] = refunds.get(r["charge"], 0) + r["amount"]
    net = gross = 0.0
    orders = set()
    for c in client.v1.charges.list(params={"limit": 100}).auto_paging_iter():
        if c["status"] != "succeeded":
            continue
        rate = fx[c["currency"].upper()]
        gross += c["amount"] / 100 * rate
        net += (c["amount"] - refunds.get(c["id"], 0)) / 100 * rate
        orders.add(c["metadata"]["order_id"])
    return {"net": net, "gross": gross, "orders": len(orders)}


def gold_revenue(settings) -> dict:
    from retailpulse.warehouse import get_warehouse

    n, gross, net = get_warehouse(settings).query(
        "select count(*), sum(gross_revenue), sum(net_revenue) from gold.fct_orders where is_paid"
    )[0]
    return {"orders": n, "gross": float(gross), "net": float(net)}


def table_checksum(settings, table: str, order_by: str) -> str:
    from retailpulse.warehouse import get_warehouse

    df = get_warehouse(settings).query_df(f"select * from gold.{table} order by {order_by}")
    floats = [c for c in df.columns if df[c].dtype.kind == "f"]
    df[floats] = df[floats].round(6)  # floats only; timestamps compare exactly
    return hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()


@pytest.fixture(scope="module")
def e2e_world(tmp_path_factory) -> Path:
    """The small world over nine months (enough history for the models, a quicker full run)."""
    from sandbox.world import generate_world

    root = tmp_path_factory.mktemp("e2e_world")
    return Path(generate_world("small", 7, root, start=dt.date(2025, 4, 1), end=dt.date(2025, 12, 31)))


@pytest.fixture(scope="module")
def e2e_server(e2e_world):
    from sandbox.server import SandboxServer

    server = SandboxServer(e2e_world, ga4_export_dir=e2e_world.parent / "e2e_ga4")
    server.start()
    if hasattr(server, "wait_ga4"):
        server.wait_ga4()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def full_run(e2e_server, tmp_path_factory):
    """One DAG run over the whole observation period, clock at the end of the last day."""
    from retailpulse.airflow_setup import run_daily

    e2e_server.set_clock(dt.datetime(2026, 1, 1, tzinfo=UTC))
    if hasattr(e2e_server, "wait_ga4"):
        e2e_server.wait_ga4()
    root = tmp_path_factory.mktemp("e2e_full")
    with pipeline_env(root, e2e_server) as settings:
        start = dt.date.fromisoformat(e2e_server.meta["start"])
        run_daily(settings, start, LAST_DAYS[-1])
        yield settings, served_stripe(e2e_server)


def test_gold_revenue_equals_what_stripe_served(full_run):
    settings, served = full_run
    gold = gold_revenue(settings)
    assert gold["orders"] == served["orders"]
    assert gold["gross"] == pytest.approx(served["gross"], abs=0.01)
    assert gold["net"] == pytest.approx(served["net"], abs=0.01)
    assert served["orders"] > 1000  # the small world really has data


def world_truth(world_dir: Path, end: dt.datetime) -> dict:
    """Paid orders and net revenue (USD) the world's hidden truth holds for orders placed before
    ``end``, with the refunds made before ``end``."""
    from sandbox.world import World

    world = World.load(world_dir)
    orders = world.truth("truth_orders").to_pandas()
    fx = {k.upper(): v for k, v in world.meta["fx_to_usd"].items()}
    ordered_at = orders["ordered_at"].dt.tz_localize("UTC") if orders["ordered_at"].dt.tz is None else orders["ordered_at"]
    seen = orders[orders["in_observation"] & ~orders["is_failed"] & (ordered_at < end)].copy()
    refunded_at = seen["refunded_at"]
    if refunded_at.dt.tz is None:
        refunded_at = refunded_at.dt.tz_localize("UTC")
    refunded = seen["refunded_minor"].where(refunded_at.notna() & (refunded_at < end), 0)
    net = ((seen["amount_minor"] - refunded) / 100 * seen["currency"].str.upper().map(fx)).sum()
    return {"orders": len(seen), "net": float(net)}


def test_gold_revenue_matches_the_world_truth(full_run, e2e_world):
    settings, _ = full_run
    truth = world_truth(e2e_world, dt.datetime(2026, 1, 1, tzinfo=UTC))
    gold = gold_revenue(settings)
    assert gold["orders"] == truth["orders"]
    assert gold["net"] == pytest.approx(truth["net"], rel=1e-9)


def test_every_extracted_record_is_loaded_or_rejected(full_run):
    from retailpulse.warehouse import get_warehouse

    settings, _ = full_run
    wh = get_warehouse(settings)
    rows = wh.query("select source, object, extracted, loaded, rejected, status from ops.load_audit")
    assert {r[0] for r in rows} >= {"stripe", "salesforce", "ga4", "google_ads", "meta"}
    for source, obj, extracted, loaded, rejected, status in rows:
        assert status == "loaded", (source, obj)
        assert loaded + rejected == extracted, (source, obj)
    totals = wh.query("select source, object, sum(loaded), sum(rejected) from ops.load_audit group by 1, 2")
    for source, obj, loaded, rejected in totals:
        assert wh.scalar(f"select count(*) from bronze.{source}__{obj}") == loaded, (source, obj)
        assert wh.scalar("select count(*) from bronze.rejected_records where source = ? and object = ?",
                         [source, obj]) == rejected, (source, obj)


def test_serving_copy_is_published_and_read_only(full_run):
    import duckdb

    settings, _ = full_run
    path = settings.serving_path / "retailpulse_serving.duckdb"
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert con.execute("select count(*) from gold.fct_orders where is_paid").fetchone()[0] == gold_revenue(settings)["orders"]
        schemas = {r[0] for r in con.execute("select distinct table_schema from information_schema.tables").fetchall()}
        assert schemas == {"gold"}, "only gold reaches the serving copy"
        with pytest.raises(duckdb.Error):
            con.execute("delete from gold.fct_orders")
    finally:
        con.close()
    assert (settings.serving_path / "parquet" / "fct_orders.parquet").exists()


def test_daily_incremental_runs_equal_one_full_run(full_run, e2e_server, e2e_world, tmp_path_factory):
    """A backfill up to three days before the end, then three consecutive scheduled runs (no conf:
    the dates come from each run's data interval), gold checked against the world after each day;
    the last state equals one run over the whole period, and re-running a day changes nothing."""
    from retailpulse.airflow_setup import run_daily, run_scheduled_day
    from retailpulse.warehouse import get_warehouse

    full_settings, _ = full_run
    root = tmp_path_factory.mktemp("e2e_daily")
    start = dt.date.fromisoformat(e2e_server.meta["start"])
    try:
        first = LAST_DAYS[0] - dt.timedelta(days=1)
        e2e_server.set_clock(dt.datetime.combine(LAST_DAYS[0], dt.time(0), tzinfo=UTC))
        with pipeline_env(root, e2e_server) as settings:
            run_daily(settings, start, first)
            assert gold_revenue(settings)["net"] == pytest.approx(served_stripe(e2e_server)["net"], abs=0.01)
            wh = get_warehouse(settings)
            for day in LAST_DAYS:
                day_end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=UTC)
                e2e_server.set_clock(day_end)
                before = gold_revenue(settings)
                state, interval_start, interval_end = run_scheduled_day(settings, day)
                assert "success" in state
                assert (interval_start, interval_end) == (day_end - dt.timedelta(days=1), day_end)
                after, served = gold_revenue(settings), served_stripe(e2e_server)
                truth = world_truth(e2e_world, day_end)
                assert after["net"] == pytest.approx(served["net"], abs=0.01), day
                assert after["orders"] == served["orders"] == truth["orders"], day
                assert after["net"] == pytest.approx(truth["net"], rel=1e-9), day
                assert after["orders"] >= before["orders"]
                # the day's orders made it to gold, and the serving copy was republished with them
                placed = wh.scalar("select count(*) from gold.fct_orders where is_paid and cast(ordered_at as date) = ?", [day])
                assert placed > 0, f"no paid orders in gold for {day}"
                assert _serving_orders(settings) == after["orders"]
            # re-running a day changes nothing (idempotent)
            checksum = table_checksum(settings, "fct_orders", "order_id")
            run_scheduled_day(settings, LAST_DAYS[-1])
            assert table_checksum(settings, "fct_orders", "order_id") == checksum
            assert checksum == table_checksum(full_settings, "fct_orders", "order_id")
    finally:
        e2e_server.set_clock(dt.datetime(2026, 1, 1, tzinfo=UTC))


def _serving_orders(settings) -> int:
    import duckdb

    con = duckdb.connect(str(settings.serving_path / "retailpulse_serving.duckdb"), read_only=True)
    try:
        return con.execute("select count(*) from gold.fct_orders where is_paid").fetchone()[0]
    finally:
        con.close()
