"""ml.jobs: the ML stage against a warehouse, without running the pipeline.

The gold tables the ML stage reads are written directly from the small sandbox world (customer_id =
the world's person_id) through Warehouse.replace_rows: fct_orders from truth_orders (observation
period; refunds known by the end), fct_sessions from the GA4 events, fct_conversion_paths and the
rule-based ``linear`` rows of fct_attribution by the dbt models' rules (30-day lookback),
fct_support_cases from the Salesforce cases, dim_customers' consent flag. Then training,
scoring and attribution run as in production and are checked against the world's truth (which the
pipeline itself never reads).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml import jobs
from ml.evaluation import churn_baseline_metrics, churn_metrics, clv_baseline, clv_metrics
from ml.features import rfm_summary
from ml.scoring import CUSTOMER_SCORES_COLUMNS, churn_risk_band, value_tier
from retailpulse.warehouse import get_warehouse
from tests.conftest import REPO

END = dt.date(2025, 12, 31)       # the world's observation end
EARLIER = dt.date(2025, 11, 30)   # a second scoring date (history)
LOOKBACK_DAYS = 30
FX = {"usd": 1.0, "eur": 1.08, "gbp": 1.27}

# thresholds below what the small world (seed 42) measures, above what a naive model reaches:
# CLV spearman 0.418 (baseline 0.320), normalized gini 0.636 (baseline 0.459), aggregate error
# -0.08; churn AUC 0.746 (no purchase in the 90 days after END; BG/NBD-only ranking ~0.76)
MIN_CLV_GINI = 0.5
MIN_CHURN_AUC = 0.7


# ------------------------------------------------------------------------------ gold builder
def _naive(ts: pd.Series) -> pd.Series:
    return pd.to_datetime(ts).dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")


def _channel_group(source: pd.Series, medium: pd.Series) -> pd.Series:
    src, med = source.fillna("(direct)").str.lower(), medium.fillna("(none)").str.lower()
    out = pd.Series("Unassigned", index=source.index, dtype=object)
    rules = [
        ((src == "(direct)") & (med == "(none)"), "Direct"),
        (src.isin(["google", "bing"]) & (med == "cpc"), "Paid Search"),
        (src.isin(["facebook", "instagram"]) & med.isin(["cpc", "paid_social"]), "Paid Social"),
        (med == "organic", "Organic Search"),
        (med == "email", "Email"),
        (med == "affiliate", "Affiliates"),
        (med == "referral", "Referral"),
    ]
    for mask, name in reversed(rules):
        out[mask.to_numpy()] = name
    return out


def build_gold(world_dir: Path) -> dict[str, pd.DataFrame]:
    """Gold tables of the small world as dbt would build them (simplified, by their documented rules)."""
    from sandbox.world import World

    w = World.load(world_dir)
    end_ts = pd.Timestamp(END) + pd.Timedelta(days=1)
    ident = w.truth("identity").to_pandas()

    # fct_orders: observation orders; refunds known by the end of the observation period
    o = w.truth("orders").to_pandas()
    o = o[o["in_observation"]].copy()
    fx = o["currency"].str.lower().map(FX).astype(float)
    refunded_at = _naive(o["refunded_at"])
    refund_known = refunded_at.notna() & (refunded_at < end_ts)
    paid = ~o["is_failed"]
    gross = np.where(paid, o["amount_minor"] / 100.0 * fx, 0.0)
    refunded = np.where(paid & refund_known, o["refunded_minor"] / 100.0 * fx, 0.0)
    fct_orders = pd.DataFrame({
        "order_id": o["order_id"].astype(str).to_numpy(),
        "customer_id": o["person_id"].astype(str).to_numpy(),
        "ordered_at": _naive(o["ordered_at"]).to_numpy(),
        "original_currency": o["currency"].str.upper().to_numpy(),
        "gross_revenue": gross,
        "refunded_revenue": refunded,
        "net_revenue": gross - refunded,
        "last_refunded_at": refunded_at.where(refund_known).to_numpy(),
        "is_paid": paid.to_numpy(),
        "status": np.where(~paid, "failed", np.where(refunded >= gross, "refunded",
                                                     np.where(refunded > 0, "partially_refunded", "paid"))),
    })
    fct_orders["order_date"] = fct_orders["ordered_at"].dt.date

    # fct_sessions: one row per (device, ga_session_id), stitched to the person through the device
    e = w.table("ga4_events").to_pandas()
    e["session_id"] = e["user_pseudo_id"].astype(str) + "-" + e["ga_session_id"].astype(str)
    e["ts"] = pd.to_datetime(e["event_timestamp"], unit="us")
    e = e.sort_values(["session_id", "ts"], kind="mergesort")
    g = e.groupby("session_id", sort=True)
    names = e["event_name"]
    sess = pd.DataFrame({
        "user_pseudo_id": g["user_pseudo_id"].first(),
        "started_at": g["ts"].min(),
        "ended_at": g["ts"].max(),
        "source": g["source"].first(),
        "medium": g["medium"].first(),
        "campaign": g["campaign"].first(),
        "has_view_item": (names == "view_item").groupby(e["session_id"]).any(),
        "has_add_to_cart": (names == "add_to_cart").groupby(e["session_id"]).any(),
        "has_begin_checkout": (names == "begin_checkout").groupby(e["session_id"]).any(),
        "has_purchase": (names == "purchase").groupby(e["session_id"]).any(),
        "order_id": e["transaction_id"].where(names == "purchase").groupby(e["session_id"]).first(),
    }).reset_index()
    devices = ident[ident["source"] == "ga4_user_pseudo_id"].set_index("source_id")["person_id"]
    sess["customer_id"] = sess["user_pseudo_id"].map(devices)
    sess["channel_group"] = _channel_group(sess["source"], sess["medium"])
    sess["is_converted"] = sess["has_purchase"]
    sess["started_at"] = sess["started_at"].astype("datetime64[us]")
    sess["ended_at"] = sess["ended_at"].astype("datetime64[us]")
    sess["session_date"] = sess["started_at"].dt.date

    # conversion paths: paid orders GA4 saw; the customer's (or the converting device's) sessions
    # within the lookback before the order, up to the converting session
    conv = (sess[sess["order_id"].notna()].sort_values(["order_id", "started_at", "session_id"])
            .groupby("order_id").first().reset_index())
    paid_orders = fct_orders[fct_orders["is_paid"]][["order_id", "customer_id", "ordered_at", "net_revenue"]]
    conv = paid_orders.merge(
        conv[["order_id", "session_id", "user_pseudo_id", "started_at"]].rename(
            columns={"session_id": "converting_session_id", "user_pseudo_id": "conv_device", "started_at": "conv_start"}),
        on="order_id")
    cols = ["session_id", "customer_id", "user_pseudo_id", "started_at", "channel_group", "source", "medium", "campaign"]
    by_customer = conv.merge(sess[cols], on="customer_id")
    by_device = conv.merge(sess[cols].rename(columns={"customer_id": "session_customer"}),
                           left_on="conv_device", right_on="user_pseudo_id")
    cand = pd.concat([by_customer, by_device.drop(columns=["session_customer"])], ignore_index=True)
    cand = cand[(cand["started_at"] <= cand["conv_start"])
                & (cand["started_at"] >= cand["ordered_at"] - pd.Timedelta(days=LOOKBACK_DAYS))]
    touch = cand.drop_duplicates(["order_id", "session_id"]).sort_values(["order_id", "started_at", "session_id"])
    touch = touch.assign(touchpoint_index=touch.groupby("order_id").cumcount() + 1)
    touch["touch_count"] = touch.groupby("order_id")["session_id"].transform("size")
    paths = touch.groupby("order_id").agg(
        customer_id=("customer_id", "first"), converting_session_id=("converting_session_id", "first"),
        ordered_at=("ordered_at", "first"), touch_count=("touch_count", "first"),
        channel_path=("channel_group", " > ".join), net_revenue=("net_revenue", "first"),
    ).reset_index()
    linear = pd.DataFrame({
        "order_id": touch["order_id"].to_numpy(), "customer_id": touch["customer_id"].to_numpy(),
        "model": "linear", "touchpoint_index": touch["touchpoint_index"].astype("int64").to_numpy(),
        "session_id": touch["session_id"].to_numpy(), "channel_group": touch["channel_group"].to_numpy(),
        "source": touch["source"].to_numpy(), "medium": touch["medium"].to_numpy(),
        "campaign": touch["campaign"].to_numpy(), "touched_at": touch["started_at"].to_numpy(),
        "credit": (1.0 / touch["touch_count"]).to_numpy(),
        "attributed_revenue": (touch["net_revenue"] / touch["touch_count"]).to_numpy(),
    })

    # support cases: the latest version of every case that is not deleted
    c = w.table("sf_case").to_pandas().sort_values(["Id", "SystemModstamp"]).groupby("Id").tail(1)
    c = c[~c["IsDeleted"]]
    contacts = ident[ident["source"] == "sf_contact"].set_index("source_id")["person_id"]
    cases = pd.DataFrame({
        "case_id": c["Id"].to_numpy(),
        "customer_id": c["ContactId"].map(contacts).to_numpy(),
        "created_at": _naive(c["CreatedDate"]).to_numpy(),
        "closed_at": _naive(c["ClosedDate"]).where(c["IsClosed"].to_numpy()).to_numpy(),
        "is_closed": c["IsClosed"].to_numpy(),
        "is_escalated": (c["Status"] == "Escalated").to_numpy(),
    })

    people = w.truth("people").to_pandas()
    dim = pd.DataFrame({"customer_id": people["person_id"].to_numpy(),
                        "is_email_opted_out": people["has_opted_out"].to_numpy()})
    return {"fct_orders": fct_orders, "fct_sessions": sess, "fct_conversion_paths": paths,
            "fct_attribution": linear, "fct_support_cases": cases, "dim_customers": dim}


def write_gold(settings, tables: dict[str, pd.DataFrame]) -> None:
    wh = get_warehouse(settings)
    wh.ensure_schemas(("gold",))
    with wh.connect() as con:
        for name, frame in tables.items():
            wh.replace_rows("gold", name, frame, where=None, con=con)


def _settings(root: Path, **overrides):
    from retailpulse.settings import Settings

    base = dict(home=REPO, data_dir=root / "data", warehouse_path=root / "warehouse" / "retailpulse.duckdb",
                serving_dir=root / "warehouse" / "serving", target="duckdb",
                attribution_lookback_days=LOOKBACK_DAYS, _env_file=None)
    base.update(overrides)
    return Settings(**base)


# --------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def gold_tables(small_world) -> dict[str, pd.DataFrame]:
    return build_gold(small_world)


@pytest.fixture(scope="module")
def truth(small_world) -> pd.DataFrame:
    from sandbox.world import World

    return World.load(small_world).truth("person_horizon").to_pandas()


@pytest.fixture(scope="module")
def env(gold_tables, tmp_path_factory):
    """A DuckDB warehouse with the world's gold inputs, trained and scored as of END."""
    settings = _settings(tmp_path_factory.mktemp("ml_jobs"))
    write_gold(settings, gold_tables)
    training = jobs.train_models(settings, END)
    scored = jobs.score_daily(settings, END, rebuild_marts=False)
    return {"settings": settings, "training": training, "scored": scored}


def _gold(settings, sql: str) -> pd.DataFrame:
    return get_warehouse(settings).query_df(sql.replace("gold.", '"gold".'))


# -------------------------------------------------------------------------------- RFM / inputs
@pytest.mark.parametrize("cutoff", [END, dt.date(2025, 6, 30), dt.date(2024, 3, 1)])
def test_sql_rfm_summary_equals_the_reference(env, gold_tables, cutoff):
    orders = gold_tables["fct_orders"]
    paid = orders[orders["is_paid"]].rename(columns={"net_revenue": "amount"})
    expected = rfm_summary(paid, cutoff)
    got = jobs.rfm_summary_from_gold(env["settings"], cutoff)
    assert len(got) > 50
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True),
                                  check_exact=False, rtol=1e-9, atol=1e-9, check_dtype=False)
    assert got["frequency"].dtype == "int64"
    # and the transaction log from gold gives the same summary through ml.features
    tx = jobs.transactions_from_gold(env["settings"], cutoff)
    assert tx["ordered_at"].max() < pd.Timestamp(cutoff) + pd.Timedelta(days=1)
    pd.testing.assert_frame_equal(rfm_summary(tx, cutoff), expected, check_exact=False, rtol=1e-9, check_dtype=False)


@pytest.mark.postgres
def test_sql_rfm_summary_on_postgres(pg_settings, gold_tables):
    write_gold(pg_settings, {"fct_orders": gold_tables["fct_orders"]})
    orders = gold_tables["fct_orders"]
    expected = rfm_summary(orders[orders["is_paid"]].rename(columns={"net_revenue": "amount"}), END)
    got = jobs.rfm_summary_from_gold(pg_settings, END)
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-9, atol=1e-9, check_dtype=False)
    feats = jobs.behavior_features_from_gold(pg_settings, END)
    assert len(feats) == len(expected) and feats["failed_payments"].notna().all()
    assert feats["sessions_total"].isna().all()  # no fct_sessions on this warehouse: features stay NULL


@pytest.mark.postgres
def test_attribution_and_behaviour_on_postgres_equal_duckdb(pg_settings, tmp_path, gold_tables):
    tables = {k: gold_tables[k] for k in ("fct_orders", "fct_sessions", "fct_conversion_paths", "fct_attribution")}
    duck = _settings(tmp_path)
    for settings in (pg_settings, duck):
        write_gold(settings, tables)
    got, got_summary = jobs.attribution_from_gold(pg_settings)
    expected, expected_summary = jobs.attribution_from_gold(duck)
    assert got_summary["non_converting_paths"] == expected_summary["non_converting_paths"] > 0
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-9, atol=1e-9)
    pd.testing.assert_frame_equal(jobs.behavior_features_from_gold(pg_settings, END),
                                  jobs.behavior_features_from_gold(duck, END), check_exact=False, rtol=1e-9)


def test_behavior_features_as_of_a_cutoff(env, gold_tables):
    feats = jobs.behavior_features_from_gold(env["settings"], EARLIER).set_index("customer_id")
    assert list(feats.columns) == list(jobs.BEHAVIOR_FEATURES)
    orders = gold_tables["fct_orders"]
    buyers = set(orders.loc[orders["is_paid"] & (orders["ordered_at"].dt.date <= EARLIER), "customer_id"])
    assert set(feats.index) == buyers
    s = gold_tables["fct_sessions"]
    s = s[s["customer_id"].isin(buyers) & (s["started_at"].dt.date <= EARLIER)]
    expected_total = s.groupby("customer_id").size().reindex(sorted(buyers)).fillna(0)
    np.testing.assert_array_equal(feats.loc[expected_total.index, "sessions_total"].to_numpy(), expected_total.to_numpy())
    recent = s[s["started_at"].dt.date > EARLIER - dt.timedelta(days=30)].groupby("customer_id").size()
    np.testing.assert_array_equal(feats.loc[recent.index, "sessions_last_30d"].to_numpy(), recent.to_numpy())
    last = s.groupby("customer_id")["started_at"].max().dt.date
    days = np.array([(EARLIER - d).days for d in last.to_numpy()])
    np.testing.assert_array_equal(feats.loc[last.index, "days_since_last_session"].to_numpy(), days)
    assert feats["funnel_depth_90d"].dropna().between(0, 4).all()
    assert feats["share_sessions_paid"].dropna().between(0, 1).all()
    assert (feats["support_cases_total"] >= feats["support_cases_last_90d"]).all()
    assert feats["is_email_opted_out"].isin([0.0, 1.0]).all()


def test_errors_say_what_to_do(tmp_path, gold_tables):
    empty = _settings(tmp_path / "empty")
    with pytest.raises(jobs.MLJobError, match="gold.fct_orders does not exist: run the daily pipeline first"):
        jobs.score_daily(empty, END, rebuild_marts=False)
    short = _settings(tmp_path / "short")
    orders = gold_tables["fct_orders"]
    write_gold(short, {"fct_orders": orders[orders["ordered_at"] < pd.Timestamp("2024-04-01")]})
    with pytest.raises(jobs.MLJobError, match="needs 180 days of history"):
        jobs.train_models(short, dt.date(2024, 3, 31))
    with pytest.raises(jobs.MLJobError, match="no paid orders on or before 2023-12-31"):
        jobs.train_models(short, dt.date(2023, 12, 31))
    # the daily scoring does not fail while gold is too young to train: it says why it skipped
    result = jobs.score_daily(short, dt.date(2024, 3, 31), rebuild_marts=False)
    assert result["customers_scored"] == 0 and "needs 180 days of history" in result["scores"]["reason"]
    assert jobs.load_champion(short) is None


# ------------------------------------------------------------------------------------ training
def test_train_models_records_runs_and_artifacts(env):
    settings, training = env["settings"], env["training"]
    runs = _gold(settings, "select * from gold.ml_model_runs order by model_name")
    assert list(runs["model_name"]) == ["churn_xgb", "clv_bgnbd_gg", "clv_xgb"]
    assert runs["run_id"].is_unique
    assert set(runs["training_id"]) == {training["training_id"]}
    for _, r in runs.iterrows():
        metrics, base = json.loads(r["metrics_json"]), json.loads(r["baseline_metrics_json"])
        keys = {"auc", "brier", "pr_auc", "ece"} if r["task"] == "churn" else {"mae", "spearman", "normalized_gini"}
        assert keys <= set(metrics) and keys <= set(base)
        assert r["evaluation_end"] == END and r["evaluation_start"] == END - dt.timedelta(days=90)
        assert r["cutoff_date"] == END and r["horizon_days"] == 90 and r["n_customers"] > 1000
        assert (jobs.models_dir(settings) / r["artifact_dir"] / "metadata.json").is_file()
    # exactly one champion per task (pick_champion over the runs of the same holdout)
    assert runs.groupby("task")["is_champion"].sum().to_dict() == {"churn": 1, "clv": 1}
    # the churn model uses the behaviour features from gold
    assert set(jobs.BEHAVIOR_FEATURES) <= set(json.loads(runs.set_index("model_name").loc["churn_xgb", "feature_names_json"]))
    # promoted: champion.json points at the serving set, its runs carry promoted_at
    pointer = jobs.load_champion(settings)
    assert training["promotion"]["promoted"] and pointer["model_version"] == training["training_id"]
    assert set(pointer["models"]) == {"clv_bgnbd_gg", "clv_xgb", "churn_xgb"}
    promoted = runs.set_index("model_name")["promoted_at"]
    assert promoted[["clv_bgnbd_gg", "churn_xgb"]].notna().all() and pd.isna(promoted["clv_xgb"])


def test_a_candidate_that_does_not_beat_its_baselines_is_not_promoted(env):
    settings = env["settings"]
    before = jobs.load_champion(settings)
    candidate = dict(env["training"], training_id="clv_bgnbd_gg-x+churn_xgb-y", qualifies=False)
    result = jobs.promote_champion(settings, candidate)
    assert not result["promoted"] and "does not beat its baselines" in result["reason"]
    assert jobs.load_champion(settings) == before


# ------------------------------------------------------------------------------------- scoring
def test_score_daily_scores_every_customer_in_valid_ranges(env, gold_tables):
    settings, scored = env["settings"], env["scored"]
    scores = _gold(settings, f"select * from gold.customer_scores where as_of_date = date '{END}'")
    orders = gold_tables["fct_orders"]
    buyers = set(orders.loc[orders["is_paid"], "customer_id"])
    assert set(scores["customer_id"]) == buyers and scores["customer_id"].is_unique
    assert scored["customers_scored"] == len(buyers)
    assert list(scores.columns)[: len(CUSTOMER_SCORES_COLUMNS)] == list(CUSTOMER_SCORES_COLUMNS)
    assert set(scores["model_version"]) == {env["training"]["training_id"]}
    assert scores["p_alive"].between(0, 1).all() and scores["churn_probability"].between(0, 1).all()
    assert (scores["predicted_clv_12m"] >= 0).all()
    assert (scores["expected_purchases_365d"] >= scores["expected_purchases_90d"]).all()
    # tiers by CLV percentile and bands by churn probability, as ml.scoring states them
    assert (scores["value_tier"].to_numpy() == value_tier(scores["predicted_clv_12m"])).all()
    assert (scores["churn_risk_band"].to_numpy() == churn_risk_band(scores["churn_probability"])).all()
    tiers = scores["value_tier"].value_counts(normalize=True)
    assert 0.03 < tiers["platinum"] < 0.07 and 0.4 < tiers["bronze"] < 0.6


def test_rescoring_replaces_the_date_and_other_dates_add_history(env, gold_tables):
    settings = env["settings"]
    wh = get_warehouse(settings)
    count, weights = wh.row_count("gold", "customer_scores"), wh.row_count("gold", "attribution_channel_weights")
    segs, profiles = wh.row_count("gold", "customer_segments"), wh.row_count("gold", "segment_profiles")
    assert segs == count and profiles >= 3
    jobs.score_daily(settings, END, rebuild_marts=False)
    assert wh.row_count("gold", "customer_scores") == count
    assert (wh.row_count("gold", "customer_segments"), wh.row_count("gold", "segment_profiles")) == (segs, profiles)
    assert wh.row_count("gold", "attribution_channel_weights") == weights  # replaced, not appended
    earlier = jobs.score_daily(settings, EARLIER, rebuild_marts=False, attribution=False)
    orders = gold_tables["fct_orders"]
    n_earlier = orders.loc[orders["is_paid"] & (orders["ordered_at"].dt.date <= EARLIER), "customer_id"].nunique()
    assert earlier["customers_scored"] == n_earlier
    per_date = _gold(settings, "select as_of_date, count(*) as n from gold.customer_scores group by 1 order by 1")
    assert per_date["as_of_date"].tolist() == [EARLIER, END] and per_date["n"].tolist() == [n_earlier, count]
    seg_dates = _gold(settings, "select as_of_date, count(*) as n from gold.customer_segments group by 1 order by 1")
    assert seg_dates["n"].tolist() == [n_earlier, count]


def test_behavioural_segments_separate_the_worlds_customers(env, small_world, truth):
    """Every scored customer gets one segment; profiles are readable and add up; the most valuable
    segment holds people with a higher latent purchase rate (world truth) than the least valuable."""
    from sandbox.world import World

    settings = env["settings"]
    seg_summary = env["scored"]["segments"]
    scores = _gold(settings, f"select customer_id from gold.customer_scores where as_of_date = date '{END}'")
    segs = _gold(settings, f"select * from gold.customer_segments where as_of_date = date '{END}'")
    prof = _gold(settings, f"select * from gold.segment_profiles where as_of_date = date '{END}' order by segment_id")
    assert segs["customer_id"].is_unique and set(segs["customer_id"]) == set(scores["customer_id"])
    k = seg_summary["k"]
    assert 3 <= k <= 8 and prof["segment_id"].tolist() == list(range(1, k + 1))
    assert prof["customers"].sum() == len(segs) and (prof["customers"] > 0).all()
    assert segs.groupby("segment_id").size().tolist() == prof["customers"].tolist()
    assert prof["segment_name"].is_unique
    assert all(re.match(r"^(active|lapsing|lapsed) (one-time|occasional|repeat|frequent) ", n) for n in prof["segment_name"])
    # engagement features from gold took part
    assert {"sessions_last_90d", "support_cases_total"} <= set(seg_summary["features"])
    assert prof["mean_sessions_last_90d"].notna().all()
    assert prof["mean_predicted_clv_12m"].is_monotonic_decreasing
    people = World.load(small_world).truth("people").to_pandas()
    frame = segs.merge(people, left_on="customer_id", right_on="person_id").merge(truth, on="person_id")
    assert len(frame) == len(segs)
    by_segment = frame.groupby("segment_id")[["purchase_rate", "revenue_next_365d_usd"]].mean()
    print("\nsegments:", prof[["segment_id", "segment_name", "customers"]].to_dict("records"),
          "\ntruth by segment:", by_segment.round(4).to_dict("index"))
    best, rest = by_segment.iloc[0], by_segment.iloc[1:]
    assert best["purchase_rate"] > 1.25 * rest["purchase_rate"].max()
    assert best["revenue_next_365d_usd"] > 2 * rest["revenue_next_365d_usd"].max()
    # and the segments differ: the latent purchase rate spreads by at least 1.5x across them
    assert by_segment["purchase_rate"].max() > 1.5 * by_segment["purchase_rate"].min()


def test_clv_and_churn_against_the_worlds_truth(env, truth):
    """The pipeline never reads truth; the test does: 12-month revenue and the 90 days after END."""
    settings = env["settings"]
    scores = _gold(settings, f"select * from gold.customer_scores where as_of_date = date '{END}'")
    rfm = jobs.rfm_summary_from_gold(settings, END)
    frame = scores.merge(rfm, on="customer_id").merge(truth, left_on="customer_id", right_on="person_id")
    assert len(frame) == len(scores)
    actual = frame["revenue_next_365d_usd"].clip(lower=0)
    model = clv_metrics(actual, frame["predicted_clv_12m"])
    baseline = clv_metrics(actual, clv_baseline(frame, 365))
    churned = (frame["purchases_next_90d"] == 0).astype(int)
    churn = churn_metrics(churned, frame["churn_probability"])
    churn_base = churn_baseline_metrics(churned, (frame["T"] - frame["recency"]).to_numpy())  # rank by recency
    print(f"\nCLV vs truth: spearman {model['spearman']:.3f} (baseline {baseline['spearman']:.3f}), "
          f"normalized gini {model['normalized_gini']:.3f} (baseline {baseline['normalized_gini']:.3f}), "
          f"top decile capture {model['top_decile_capture']:.3f}, aggregate error {model['aggregate_relative_error']:+.3f}; "
          f"churn AUC {churn['auc']:.3f} (recency baseline {churn_base['auc']:.3f}), brier {churn['brier']:.3f}, "
          f"base rate {churn['base_rate']:.3f}")
    assert model["spearman"] > baseline["spearman"] + 0.05
    assert model["normalized_gini"] > max(MIN_CLV_GINI, baseline["normalized_gini"])
    assert abs(model["aggregate_relative_error"]) < 0.25
    assert churn["auc"] > max(MIN_CHURN_AUC, churn_base["auc"])


def test_channel_weights_are_the_models_of_every_journey(env, gold_tables):
    """gold.attribution_channel_weights holds, per model, the weights that ml.attribution gives the
    journeys written plainly in pandas: one converting path per order (its touchpoints' channel
    groups in order, its net revenue) and the non-converting journeys; the shares sum to 1 and the
    credited conversions and revenue to the converting orders'."""
    from ml.attribution import attribute_paths

    settings = env["settings"]
    got = _gold(settings, "select * from gold.attribution_channel_weights").sort_values(
        ["model", "channel_group"], kind="mergesort").reset_index(drop=True)
    assert list(got.columns) == list(jobs.CHANNEL_WEIGHT_COLUMNS)
    paths, linear = gold_tables["fct_conversion_paths"], gold_tables["fct_attribution"]
    linear = linear[(linear["model"] == "linear") & linear["order_id"].isin(set(paths["order_id"]))]
    linear = linear.sort_values(["order_id", "touchpoint_index"], kind="mergesort")
    channels = linear.groupby("order_id", sort=True)["channel_group"].agg(lambda c: tuple(c.fillna("Unassigned")))
    revenue = paths.set_index("order_id")["net_revenue"].reindex(channels.index).fillna(0.0)
    converting = pd.DataFrame({"path_id": channels.index, "channels": channels.to_numpy(), "converted": True,
                               "value": revenue.to_numpy(dtype="float64"), "count": 1})
    non_converting = _reference_non_converting_paths(gold_tables["fct_sessions"], paths, linear, LOOKBACK_DAYS)
    journeys = pd.concat([converting, pd.DataFrame({
        "path_id": [f"n{i}" for i in range(len(non_converting))], "channels": [c for c, _ in non_converting],
        "converted": False, "value": 0.0, "count": [n for _, n in non_converting]})], ignore_index=True)
    markov, shapley, _ = attribute_paths(journeys)
    expected = pd.concat([markov, shapley], ignore_index=True).rename(columns={"channel": "channel_group"})
    expected = expected.sort_values(["model", "channel_group"], kind="mergesort").reset_index(drop=True)
    assert len(got) == len(expected) and set(got["model"]) == {"markov", "shapley"}
    assert got["channel_group"].tolist() == expected["channel_group"].tolist()
    for c in ("weight", "credit_share", "credited_conversions", "credited_value"):
        assert np.allclose(got[c], expected[c], rtol=1e-9, atol=1e-12), c
    mk = got[got["model"] == "markov"]
    assert np.allclose(mk["conversion_probability_without_channel"],
                       expected.loc[expected["model"] == "markov", "conversion_probability_without"])
    assert got.loc[got["model"] == "shapley", "conversion_probability"].isna().all()
    for _, w in got.groupby("model"):
        assert abs(w["credit_share"].sum() - 1) < 1e-9 and (w["weight"] >= 0).all()
        assert abs(w["credited_conversions"].sum() - len(converting)) < 1e-6
        assert abs(w["credited_value"].sum() - converting["value"].sum()) < 1e-6 * converting["value"].sum()
    attr = env["scored"]["attribution"]
    assert attr["orders"] == attr["converting_paths"] == len(converting) > attr["distinct_converting_paths"] > 0
    assert attr["non_converting_paths"] == sum(n for _, n in non_converting) > 0
    assert 0 < attr["conversion_probability"] == mk["conversion_probability"].iloc[0] < 1
    assert abs(sum(attr["channel_share"]["markov"].values()) - 1) < 1e-6


def test_scoring_drops_the_per_touchpoint_ml_table_of_earlier_versions(tmp_path, gold_tables):
    """Earlier versions wrote every data-driven credit into gold.fct_attribution_ml; it would be
    published stale beside fct_attribution, so the ML stage drops it."""
    settings = _settings(tmp_path)
    write_gold(settings, {k: gold_tables[k] for k in ("fct_orders", "fct_conversion_paths")})
    wh = get_warehouse(settings)
    wh.execute('create table "gold"."fct_attribution_ml" (order_id varchar, credit double)')
    assert "fct_attribution_ml" in wh.list_tables("gold")
    jobs.ensure_ml_tables(settings)
    tables = set(wh.list_tables("gold"))
    assert "fct_attribution_ml" not in tables and {"attribution_channel_weights", "customer_scores"} <= tables


def test_query_frame_returns_what_query_df_returns_on_duckdb(tmp_path):
    wh = get_warehouse(_settings(tmp_path))
    sql = """
        select * from (values
            (1, cast(null as bigint), 1.5, cast(1.25 as decimal(18, 2)), cast(null as decimal(18, 2)), 'a',
             cast(null as varchar), date '2024-01-02', cast(null as date), timestamp '2024-01-01 01:02:03',
             cast(null as timestamp), timestamptz '2024-01-01 01:02:03+00', true, cast(null as boolean)),
            (2, 5, cast(null as double), 2.5, 3.1, 'é>b', 'x', date '2024-01-03', date '2024-01-04',
             timestamp '2024-01-01 01:02:04', timestamp '2024-01-01 01:02:05', timestamptz '2024-01-02 01:02:03+00',
             false, true)
        ) as t(i, null_i, f, dec, null_dec, s, null_s, d, null_d, ts, null_ts, tstz, b, null_b)
        where i >= ? order by i
    """
    fast, slow = wh.query_frame(sql, [1]), wh.query_df(sql, [1])
    # the same zone, possibly as another tzinfo class
    assert str(fast["tstz"].dtype) == str(slow["tstz"].dtype) and (fast["tstz"] == slow["tstz"]).all()
    pd.testing.assert_frame_equal(fast.drop(columns="tstz"), slow.drop(columns="tstz"), check_exact=True)
    assert [type(v) for v in fast["dec"]] == [type(v) for v in slow["dec"]]
    assert fast["null_b"].tolist() == slow["null_b"].tolist() and fast["null_d"].tolist() == slow["null_d"].tolist()
    assert wh.query_frame("select 1 as x where false").columns.tolist() == ["x"]


def _reference_non_converting_paths(sessions: pd.DataFrame, paths: pd.DataFrame, touch: pd.DataFrame | None,
                                    lookback_days: int) -> list[tuple[tuple[str, ...], int]]:
    """The non-converting journeys as the ML stage defines them, written plainly in pandas: a
    journey key's sessions in (started_at, session_id) order, split after each converting session,
    touchpoints and converting sessions dropped, cut into lookback windows from the segment's
    first session; identical paths counted, in the order of their first journey."""
    touch = touch[touch["order_id"].isin(set(paths["order_id"]))] if touch is not None else None
    converting = set(paths["converting_session_id"].dropna().astype(str))
    touching: set[str] = set()
    if touch is not None:
        with_session = touch[touch["session_id"].notna()].sort_values(["order_id", "touchpoint_index"])
        converting |= set(with_session.groupby("order_id")["session_id"].last().astype(str))
        touching = set(with_session["session_id"].astype(str))
    s = sessions[sessions["started_at"].notna() & (sessions["customer_id"].notna() | sessions["user_pseudo_id"].notna())]
    s = s.assign(key=[c if isinstance(c, str) else f"device:{d}" for c, d in zip(s["customer_id"], s["user_pseudo_id"])])
    rows = sorted(s.itertuples(index=False), key=lambda r: (r.key.encode(), r.started_at, r.session_id.encode()))
    counts: dict[tuple[str, ...], int] = {}
    for _key, group in itertools.groupby(rows, key=lambda r: r.key):
        segment, journeys = 0, {}
        for r in group:
            is_conv = r.session_id in converting if converting else isinstance(r.order_id, str)
            if not is_conv and r.session_id not in touching:
                first = journeys.setdefault(segment, {"first": r.started_at, "windows": {}})
                window = (r.started_at - first["first"]) // pd.Timedelta(days=lookback_days)
                channel = r.channel_group if isinstance(r.channel_group, str) else "Unassigned"
                first["windows"].setdefault(window, []).append(channel)
            segment += int(is_conv)
        for seg in journeys.values():
            for channels in seg["windows"].values():
                counts[tuple(channels)] = counts.get(tuple(channels), 0) + 1
    return list(counts.items())


@pytest.mark.parametrize("variant", ["world", "ties_and_gaps", "no_converting_sessions"])
def test_non_converting_paths_in_sql_equal_the_pandas_definition(tmp_path, gold_tables, variant):
    """The warehouse computes the non-converting journeys in one query; the same journeys,
    counts and order as the definition written out in pandas, on the small world's gold tables
    and on edge cases: equal start times (session_id breaks the tie, by code point), sessions with
    neither customer nor device (left out), NULL channel groups ("Unassigned"), and no converting
    session ids at all (sessions with an order_id convert)."""
    sessions = gold_tables["fct_sessions"].copy()
    paths = gold_tables["fct_conversion_paths"].copy()
    touch = gold_tables["fct_attribution"].query("model == 'linear'")
    if variant == "ties_and_gaps":
        rng = np.random.default_rng(7)
        pick = rng.choice(len(sessions), size=len(sessions) // 5, replace=False)
        sessions.loc[sessions.index[pick], "started_at"] = sessions["started_at"].iloc[pick].dt.floor("D").to_numpy()
        sessions.loc[sessions.index[pick[:40]], ["customer_id", "user_pseudo_id"]] = None
        sessions.loc[sessions.index[pick[40:400]], "channel_group"] = None
        sessions.loc[sessions.index[pick[400:420]], "session_id"] = [f"Z{i}" for i in range(20)]
    if variant == "no_converting_sessions":
        paths["converting_session_id"] = None
        touch = touch.assign(session_id=None)
    settings = _settings(tmp_path)
    write_gold(settings, {"fct_sessions": sessions, "fct_conversion_paths": paths, "fct_attribution": touch})
    wh = get_warehouse(settings)
    relation = "(select order_id, touchpoint_index, session_id from gold.fct_attribution)"
    got, notes = jobs._non_converting_paths(wh, jobs._catalog(wh), relation, LOOKBACK_DAYS)
    expected = _reference_non_converting_paths(sessions, paths, touch, LOOKBACK_DAYS)
    assert notes == [] and len(expected) > 100
    assert list(zip(got["channels"], got["count"].tolist(), strict=True)) == expected
    assert got["path_id"].tolist() == [f"nc{i}" for i in range(len(expected))]
    assert not got["converted"].any() and (got["value"] == 0).all()
    if variant == "ties_and_gaps":
        assert any("Unassigned" in channels for channels, _ in expected)


def test_attribution_falls_back_to_channel_paths(tmp_path, gold_tables):
    settings = _settings(tmp_path)
    write_gold(settings, {k: gold_tables[k] for k in ("fct_orders", "fct_conversion_paths")})
    frame, summary = jobs.attribution_from_gold(settings)
    assert any("nor gold.fct_attribution exists" in n for n in summary["notes"])
    assert any("fct_sessions does not exist" in n for n in summary["notes"])
    paths = gold_tables["fct_conversion_paths"]
    with_channels = paths[paths["channel_path"].fillna("").str.strip() != ""]
    channels = {c.strip() for p in with_channels["channel_path"] for c in p.split(">") if c.strip()}
    assert set(frame["channel_group"]) == channels and set(frame["model"]) == {"markov", "shapley"}
    assert summary["orders"] == len(with_channels) > 0
    for _, w in frame.groupby("model"):
        assert abs(w["credit_share"].sum() - 1) < 1e-9
        assert abs(w["credited_value"].sum() - with_channels["net_revenue"].sum()) < 1e-6 * with_channels["net_revenue"].sum()


def test_ml_reads_silver_so_the_daily_run_can_score_before_building_the_ml_fed_marts(tmp_path, gold_tables):
    """The daily run scores before it builds gold.fct_attribution and gold.dim_customers (they read
    the scores): the touchpoints and consent come from the silver tables dbt built in the same
    run, and give what the gold marts give."""
    settings = _settings(tmp_path)
    base = ("fct_orders", "fct_conversion_paths", "fct_sessions")
    write_gold(settings, {k: gold_tables[k] for k in (*base, "fct_attribution")})
    from_gold, _ = jobs.attribution_from_gold(settings)
    wh = get_warehouse(settings)
    with wh.connect() as con:
        con.execute("drop table gold.fct_attribution")
        con.execute("create schema if not exists silver")
        con.register("linear", gold_tables["fct_attribution"].query("model == 'linear'"))
        # the silver table has more columns than the ML stage reads, and rows of orders without a path
        con.execute("create table silver.int_attribution__touchpoints as select *, 'x' as campaign_key from linear "
                    "union all by name select 'no-such-order' as order_id, 1 as touchpoint_index")
    from_silver, summary = jobs.attribution_from_gold(settings)
    assert not summary["notes"] and len(from_silver) > 0
    pd.testing.assert_frame_equal(from_silver, from_gold)
    # consent: the silver golden records win over gold.dim_customers
    feats = jobs.behavior_features_from_gold(settings, END).set_index("customer_id")
    c1, c2 = feats.index[:2]
    dim = pd.DataFrame({"customer_id": [c1, c2], "is_email_opted_out": [True, True], "has_crm_contact": [True, True]})
    write_gold(settings, {"dim_customers": dim})
    assert jobs.behavior_features_from_gold(settings, END).set_index("customer_id").loc[[c1, c2], "is_email_opted_out"].tolist() == [1.0, 1.0]
    with wh.connect() as con:
        con.register("golden", dim.assign(is_email_opted_out=[False, True], has_crm_contact=[True, False]))
        con.execute("create table silver.int_customers__golden as select * from golden")
    feats = jobs.behavior_features_from_gold(settings, END).set_index("customer_id")
    assert feats.loc[c1, "is_email_opted_out"] == 0.0 and np.isnan(feats.loc[c2, "is_email_opted_out"])


def test_score_daily_trains_when_no_champion_and_rebuilds_the_marts(env, tmp_path, monkeypatch):
    from retailpulse import dbt_runner

    calls = []
    monkeypatch.setattr(dbt_runner, "run_dbt",
                        lambda s, args, vars=None, run_results_path=None: calls.append(args) or dbt_runner.DbtResult(True))
    settings = env["settings"]
    wh = get_warehouse(settings)
    counts = {t: wh.row_count("gold", t) for t in ("customer_scores", "ml_model_runs")}
    result = jobs.score_daily(settings, END, model_dir=tmp_path / "models", attribution=False)
    json.dumps(result)  # JSON-able
    # same data, same settings: the same model versions, so the same run ids and score keys
    assert result["trained"] and result["model_version"] == env["training"]["training_id"]
    assert (tmp_path / "models" / "champion.json").is_file()
    assert {t: wh.row_count("gold", t) for t in counts} == counts  # runs and scores replaced
    runs = _gold(settings, "select * from gold.ml_model_runs")
    assert runs["run_id"].is_unique and runs["promoted_at"].notna().sum() == 2
    assert calls == [["build", "--select", "source:ml+"]]  # the marts reading the ML tables, and all below


def test_score_daily_drops_its_frames_before_dbt_rebuilds_the_marts(env, monkeypatch):
    """dbt runs DuckDB up to its memory limit in this process: the scoring and attribution
    frames must be gone by then (the large world was OOM-killed holding both)."""
    import sys

    seen: dict[str, object] = {}
    monkeypatch.setattr(jobs, "release_memory", lambda: seen.setdefault("released", True))

    def rebuild(settings, run_results_path=None):
        caller = sys._getframe(1).f_locals
        seen["released_first"] = seen.get("released", False)
        seen["frames"] = sorted(k for k, v in caller.items()
                                if isinstance(v, pd.DataFrame) or (isinstance(v, tuple) and any(
                                    isinstance(x, pd.DataFrame) for x in v)))
        return {"selected": ["dim_customers"], "nodes": {}}

    monkeypatch.setattr(jobs, "rebuild_ml_marts", rebuild)
    result = jobs.score_daily(env["settings"], END)
    assert result["customers_scored"] > 0 and result["attribution"]["rows"] > 0  # frames were built
    assert seen == {"released": True, "released_first": True, "frames": []}
    assert result["dbt"] == {"selected": ["dim_customers"], "nodes": {}}


def test_attribution_runs_while_the_scores_are_computed(env, monkeypatch):
    """The data-driven attribution and the scoring run at the same time (each is mostly one core's
    work), and within the scoring the behaviour features (SQL) while the RFM features and CLV
    predictions are computed; the tables they write are those a sequential run writes."""
    import threading

    settings = env["settings"]
    wh = get_warehouse(settings)
    tables = ("customer_scores", "customer_segments", "segment_profiles", "attribution_channel_weights")

    def snapshot() -> dict[str, pd.DataFrame]:
        out = {}
        for t in tables:
            df = _gold(settings, f"select * from gold.{t}")
            out[t] = df.sort_values(list(df.columns[:4]), kind="mergesort").reset_index(drop=True)
        return out

    before = snapshot()
    both = threading.Barrier(2, timeout=30)  # each waits for the other to have started
    score, attribute = jobs._score, jobs.attribution_from_gold

    def score_when_both_started(*args, **kwargs):
        both.wait()
        return score(*args, **kwargs)

    def attribute_when_both_started(*args, **kwargs):
        assert threading.current_thread() is not threading.main_thread()
        both.wait()
        return attribute(*args, **kwargs)

    monkeypatch.setattr(jobs, "_score", score_when_both_started)
    monkeypatch.setattr(jobs, "attribution_from_gold", attribute_when_both_started)
    features_together = threading.Barrier(2, timeout=30)
    behaviour, build = jobs.behavior_features_from_gold, jobs.build_features

    def behaviour_with_the_rfm_features(*args, **kwargs):
        features_together.wait()
        return behaviour(*args, **kwargs)

    def rfm_features_with_the_behaviour(*args, **kwargs):
        features_together.wait()
        return build(*args, **kwargs)

    monkeypatch.setattr(jobs, "behavior_features_from_gold", behaviour_with_the_rfm_features)
    monkeypatch.setattr(jobs, "build_features", rfm_features_with_the_behaviour)
    result = jobs.score_daily(settings, END, rebuild_marts=False)
    assert result["customers_scored"] > 0 and result["attribution"]["rows"] == wh.row_count("gold", "attribution_channel_weights")
    after = snapshot()
    for t in tables:
        pd.testing.assert_frame_equal(after[t], before[t], check_exact=False, rtol=1e-9)


# ----------------------------------------------------------------------------------------- DAG
def test_weekly_train_dag_shape():
    from retailpulse.airflow_setup import POOL, apply_env
    from retailpulse.settings import load_settings

    apply_env(load_settings())
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "retailpulse_weekly_train.py"))
    assert bag.import_errors == {}
    dag = bag.dags["retailpulse_weekly_train"]
    assert dag.max_active_runs == 1 and not dag.catchup
    assert {t.task_id for t in dag.tasks} == {"train", "promote", "score"}
    assert dag.get_task("promote").upstream_task_ids == {"train"}
    assert dag.get_task("score").upstream_task_ids == {"train", "promote"}
    for t in dag.tasks:
        assert t.pool == POOL and t.retries >= 1 and t.execution_timeout is not None


def test_every_ml_table_is_documented_with_the_columns_ml_writes():
    """dbt/models/marts/_ml__sources.yml documents each table ML writes into gold, column for
    column and type for type; the hook creates only the ones dbt models read before ML runs."""
    import yaml

    from ml.holdout import HOLDOUT_DECILE_COLUMNS
    from ml.jobs import TABLE_COLUMNS
    from tests.conftest import REPO

    doc = yaml.safe_load((REPO / "dbt" / "models" / "marts" / "_ml__sources.yml").read_text())
    tables = {t["name"]: t for t in doc["sources"][0]["tables"]}
    expected = {**{k: list(v) for k, v in TABLE_COLUMNS.items()}, "ml_holdout_deciles": list(HOLDOUT_DECILE_COLUMNS)}
    assert set(tables) == set(expected)
    for name, columns in expected.items():
        assert [(c["name"], c["data_type"]) for c in tables[name]["columns"]] == columns, name
        assert all(c.get("description") for c in tables[name]["columns"]), name
        assert tables[name].get("description"), name
    created = {n for n, t in tables.items() if (t.get("meta") or {}).get("create_if_missing", True)}
    assert created == {"customer_scores", "attribution_channel_weights", "customer_segments", "segment_profiles"}
