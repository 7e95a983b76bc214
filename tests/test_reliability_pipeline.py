"""Reliability of the daily pipeline on the small world: idempotency and backfill equivalence.

One history run (the world's start up to three days before its end) is copied twice:

* ``daily``: three daily runs, the sandbox clock moving a day each time, then the last day again;
* ``one``: one run over the same three days.

Compared over EVERY table of the gold schema with an order-independent checksum per table,
without the columns listed (and justified) in tests.reliability_fixtures.RUN_SPECIFIC_COLUMNS.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.reliability_fixtures import (RUN_SPECIFIC_COLUMNS, UTC, WORLD_END, WORLD_SEED, WORLD_START, clone_state,
                                        diff_tables, frames_equal, gold_frames, run_pipeline, sandbox_settings)

pytestmark = pytest.mark.e2e

N_DAYS = 3
DAYS = [WORLD_END - dt.timedelta(days=N_DAYS - 1 - i) for i in range(N_DAYS)]
HISTORY_END = DAYS[0] - dt.timedelta(days=1)

# Tables whose grain is the run, not the data (each legitimately differs between N daily runs and
# one run over the N days; both are still checked below):
# * data_health / data_health_rejections: one row per landed batch, and a batch is (source,
#   object, run interval): three daily runs land three batches per object, one run lands one. Their
#   extracted counts also differ, because every run re-reads its source's lookback window (Stripe
#   3 days, GA4 3 days, ads restatement 7 days), so overlapping daily windows re-read records.
PER_BATCH_TABLES = ("data_health", "data_health_rejections")
# * tables keyed by as_of_date (customer_scores, customer_segments, segment_profiles): the ML
#   stage scores as of each run's last day and keeps earlier dates as history, so the daily runs
#   also hold the scores as of the intermediate days, which one run over the days never computes.
#   Rows as of every other date must be equal.
AS_OF_COLUMN = "as_of_date"


def _clock(server, day: dt.date) -> None:
    """The sandbox's "now": midnight after ``day`` (the moment a daily run for ``day`` starts)."""
    server.set_clock(dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=UTC))
    server.wait_ga4()


@pytest.fixture(scope="module")
def reliability_server(tmp_path_factory):
    from sandbox.server import SandboxServer
    from sandbox.world import generate_world

    root = tmp_path_factory.mktemp("reliability_world")
    world = Path(generate_world("small", WORLD_SEED, root, start=WORLD_START, end=WORLD_END))
    server = SandboxServer(world, ga4_export_dir=root / "ga4")
    server.start()
    server.wait_ga4()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def runs(reliability_server, tmp_path_factory):
    server = reliability_server
    timings: dict[str, float] = {}

    def timed(name, settings, start, end):
        began = time.monotonic()
        summary = run_pipeline(settings, start, end)
        timings[name] = round(time.monotonic() - began, 1)
        return summary

    _clock(server, HISTORY_END)
    history = sandbox_settings(tmp_path_factory.mktemp("rel_history"), server)
    timed("history", history, WORLD_START, HISTORY_END)

    daily = clone_state(history, tmp_path_factory.mktemp("rel_daily"), server)
    daily_summaries = []
    for day in DAYS:
        _clock(server, day)
        daily_summaries.append(timed(f"day {day}", daily, day, day))
    gold_daily = gold_frames(daily)
    rerun_summary = timed("rerun last day", daily, DAYS[-1], DAYS[-1])
    gold_rerun = gold_frames(daily)

    one = clone_state(history, tmp_path_factory.mktemp("rel_one"), server)
    timed(f"one run {DAYS[0]}..{DAYS[-1]}", one, DAYS[0], DAYS[-1])
    gold_one = gold_frames(one)
    print("reliability pipeline runs (s):", timings)
    return {"daily": daily, "one": one, "gold_daily": gold_daily, "gold_rerun": gold_rerun, "gold_one": gold_one,
            "daily_summaries": daily_summaries, "rerun_summary": rerun_summary}


def _loaded(summary) -> int:
    return sum(r["loaded"] for reports in summary["loads"].values() for r in reports)


def test_gold_is_complete_and_the_exclusions_are_real(runs):
    gold = runs["gold_daily"]
    # every area of gold is there and holds data (so the comparisons below compare something)
    for table in ("fct_orders", "dim_customers", "fct_sessions", "fct_attribution", "channel_performance_daily",
                  "kpi_daily", "customer_scores", "customer_segments", "ml_model_runs", "data_health"):
        assert table in gold and len(gold[table]) > 0, table
    orders = gold["fct_orders"]
    assert len(orders) > 1000
    assert (pd.to_datetime(orders["order_date"]).dt.date == DAYS[-1]).sum() > 0  # the last day's orders arrived
    # each excluded column really is a column of some gold table (no stale or speculative entries)
    from retailpulse.warehouse import get_warehouse

    cols = {c for (c,) in get_warehouse(runs["daily"]).query(
        "select distinct column_name from information_schema.columns where table_schema = 'gold'")}
    assert set(RUN_SPECIFIC_COLUMNS) <= cols


def test_running_the_same_day_twice_gives_identical_gold(runs):
    before, after = runs["gold_daily"], runs["gold_rerun"]
    assert _loaded(runs["rerun_summary"]) > 0  # the re-run really re-extracted and re-loaded the day
    assert sorted(before) == sorted(after)
    differing = [t for t in before if not frames_equal(before[t], after[t])]
    assert not differing, "\n".join(diff_tables(before, after, t) for t in differing)


def _split_as_of(frame: pd.DataFrame) -> tuple[pd.DataFrame, set[dt.date]]:
    """Rows not as of an intermediate day, and the intermediate as-of dates present."""
    dates = pd.to_datetime(frame[AS_OF_COLUMN]).dt.date
    intermediate = dates.isin(DAYS[:-1])
    return frame.loc[~intermediate], set(dates[intermediate])


def test_daily_runs_equal_one_run_over_the_days(runs):
    daily, one = runs["gold_daily"], runs["gold_one"]
    assert sorted(daily) == sorted(one)
    differing = []
    for table in sorted(daily):
        if table in PER_BATCH_TABLES:
            continue
        a, b = daily[table], one[table]
        if AS_OF_COLUMN in a.columns:
            a, extra_daily = _split_as_of(a)
            b, extra_one = _split_as_of(b)
            assert not extra_one, (table, extra_one)
            if table in ("customer_scores", "customer_segments", "segment_profiles"):
                # the daily runs scored as of every day; one run only as of its last day
                assert extra_daily == set(DAYS[:-1]), (table, extra_daily)
        if not frames_equal(a, b):
            differing.append(table)
    assert not differing, "\n".join(diff_tables(daily, one, t) for t in differing)


def test_per_batch_tables_reconcile_in_both_backfill_shapes(runs):
    """The audit tables differ in grain (see PER_BATCH_TABLES); each still accounts for every
    record, and both shapes cover the same days."""
    for name in ("gold_daily", "gold_one"):
        health = runs[name]["data_health"]
        assert (health["status"] == "loaded").all(), name
        assert (health["loaded"] + health["rejected"] == health["extracted"]).all(), name
    keys_daily = set(runs["gold_daily"]["data_health"]["interval_key"])
    keys_one = set(runs["gold_one"]["data_health"]["interval_key"])
    from ingestion.interval import Interval

    assert {Interval.for_dates(d, d).key for d in DAYS} <= keys_daily
    assert Interval.for_dates(DAYS[0], DAYS[-1]).key in keys_one


def test_data_driven_credits_split_each_order_by_the_channel_weights(runs):
    """The markov / shapley rows of gold.fct_attribution after a real daily run are what
    ml.attribution.order_credits (the reference) gives each order's touchpoints (its linear rows)
    under the weights of gold.attribution_channel_weights: credits, revenue, and one row per
    touchpoint and model with the touchpoint's session."""
    from ml.attribution import order_credits

    gold = runs["gold_daily"]
    weights, attribution = gold["attribution_channel_weights"], gold["fct_attribution"]
    assert set(weights["model"]) == {"markov", "shapley"} and (weights["weight"] > 0).any()
    linear = attribution[attribution["model"] == "linear"].sort_values(["order_id", "touchpoint_index"], kind="mergesort")
    revenue = linear.groupby("order_id", sort=True)["attributed_revenue"].sum()
    orders = pd.DataFrame({
        "order_id": revenue.index,
        "channels": linear.groupby("order_id", sort=True)["channel_group"].agg(lambda c: list(c.fillna("Unassigned"))).to_numpy(),
        "value": revenue.to_numpy(),
    })
    expected = order_credits(orders, weights.rename(columns={"channel_group": "channel"})[["model", "channel", "weight"]])
    got = attribution[attribution["is_data_driven"].astype(bool)]
    assert len(got) == len(expected) == 2 * len(linear) > 0
    merged = got.merge(expected, on=["order_id", "model", "touchpoint_index"], how="inner", validate="one_to_one")
    assert len(merged) == len(got)
    assert np.allclose(merged["credit"], merged["credit_fraction"], rtol=1e-9, atol=1e-12)
    assert np.allclose(merged["attributed_revenue"], merged["credited_revenue"], rtol=1e-9, atol=1e-6)
    touch = merged.merge(linear[["order_id", "touchpoint_index", "session_id"]], on=["order_id", "touchpoint_index"],
                         suffixes=("", "_linear"))
    assert (touch["session_id"] == touch["session_id_linear"]).all()
    # the weights really differ by channel: the data-driven split is not the linear one
    linear_credit = merged.merge(linear[["order_id", "touchpoint_index", "credit"]], on=["order_id", "touchpoint_index"],
                                 suffixes=("", "_linear"))
    assert (abs(linear_credit["credit"] - linear_credit["credit_linear"]) > 1e-6).mean() > 0.1
