"""A small, deterministic serving copy (schema gold) for the dashboard, API and report tests.

The tables carry exactly the columns the dbt marts document (dbt/models/marts/**/*.yml) and the
ML stage writes (ml.jobs.TABLE_COLUMNS) - ``test_fixture_matches_the_gold_contract`` checks
that - plus the proposed ``gold.data_health`` / ``gold.data_health_rejections``
(see dashboard/README.md). Aggregates (kpi_daily, funnel_daily, cohorts, channel performance,
RFM) are computed from the fixture's own orders and sessions, so they agree with each other.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

START = dt.date(2025, 1, 1)
END = dt.date(2025, 6, 29)  # a Sunday
EARLY_SCORES = END - dt.timedelta(days=90)  # outcomes of these scores are known by END
KNOWN_CUSTOMER = "cust_0001"
MODEL_VERSIONS = ("clv_bgnbd_gg-20250629-a1+churn_xgb-20250629-b1", "clv_bgnbd_gg-20250629-a2+churn_xgb-20250629-b2")
CHANNELS = {
    "Paid Search": ["brand_search", "generic_search"],
    "Paid Social": ["spring_sale", "prospecting"],
    "Organic Search": ["(not_set)"],
    "Email": ["newsletter"],
    "Direct": ["(not_set)"],
    "Referral": ["(not_set)"],
}
SOURCE_MEDIUM = {
    "Paid Search": ("google", "cpc"), "Paid Social": ("facebook", "paid_social"), "Organic Search": ("google", "organic"),
    "Email": ("newsletter", "email"), "Direct": (None, None), "Referral": ("blog.example", "referral"),
}
MODELS = ("first_touch", "last_touch", "last_non_direct", "linear", "time_decay", "position_based", "markov", "shapley")
N_CUSTOMERS, N_BUYERS = 80, 60


def _md5(*parts: object) -> str:
    return hashlib.md5("|".join(str(p) for p in parts).encode()).hexdigest()


def _ts(day: dt.date, seconds: int) -> pd.Timestamp:
    return pd.Timestamp(day, tz="UTC") + pd.Timedelta(seconds=int(seconds))


def _credits(n: int, channels: list[str], model: str, rng: np.random.Generator) -> list[float]:
    if n == 1:
        return [1.0]
    if model == "first_touch":
        return [1.0] + [0.0] * (n - 1)
    if model == "last_touch":
        return [0.0] * (n - 1) + [1.0]
    if model == "last_non_direct":
        idx = max([i for i, c in enumerate(channels) if c != "Direct"], default=n - 1)
        return [1.0 if i == idx else 0.0 for i in range(n)]
    if model == "linear":
        return [1.0 / n] * n
    if model == "time_decay":
        w = np.array([2.0 ** i for i in range(n)])
        return list(w / w.sum())
    if model == "position_based":
        if n == 2:
            return [0.5, 0.5]
        return [0.4] + [0.2 / (n - 2)] * (n - 2) + [0.4]
    w = rng.uniform(0.5, 1.5, n)  # markov / shapley: some data-driven-looking split
    return list(w / w.sum())


def build_frames(seed: int = 7) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    days = pd.date_range(START, END, freq="D").date
    channel_names = list(CHANNELS)
    ch_p = np.array([0.25, 0.2, 0.2, 0.1, 0.15, 0.1])

    # --- people ---------------------------------------------------------------------------
    people = []
    for i in range(N_CUSTOMERS):
        ch = channel_names[rng.choice(len(channel_names), p=ch_p)]
        people.append({
            "customer_id": f"cust_{i:04d}",
            "channel": ch,
            "campaign": CHANNELS[ch][rng.integers(len(CHANNELS[ch]))],
            "country": ["US", "GB", "DE", "FR"][rng.integers(4)],
            "first_seen": days[rng.integers(0, 120)],
            "device": f"dev_{i:04d}",
        })

    # --- orders + sessions (every order has a converting session and 0-2 earlier touches) ----
    orders, sessions = [], []
    order_seq = 0
    sess_seq = 0

    def add_session(cust, device, day, channel, campaign, converted_order=None, customer_known=True):
        nonlocal sess_seq
        sess_seq += 1
        start = _ts(day, rng.integers(6 * 3600, 22 * 3600))
        dur = int(rng.integers(10, 1800))
        src, med = SOURCE_MEDIUM[channel]
        purchase = converted_order is not None
        view = purchase or rng.random() < 0.6
        cart = purchase or (view and rng.random() < 0.4)
        checkout = purchase or (cart and rng.random() < 0.5)
        pv = int(rng.integers(1, 12))
        sid = _md5(device, sess_seq)
        sessions.append({
            "session_id": sid, "customer_id": cust if customer_known else None,
            "stitched_by": ("user_id" if rng.random() < 0.7 else "device") if customer_known else None,
            "user_pseudo_id": device, "user_id": f"u_{cust}" if customer_known else None,
            "ga_session_id": int(start.timestamp()), "ga_session_number": sess_seq, "is_session_id_inferred": False,
            "started_at": start, "ended_at": start + pd.Timedelta(seconds=dur), "session_date": day,
            "source": src, "medium": med, "campaign": None if campaign == "(not_set)" else campaign,
            "campaign_key": None if campaign == "(not_set)" else campaign, "channel_group": channel,
            "has_gclid": channel == "Paid Search", "has_fbclid": channel == "Paid Social",
            "landing_page": "https://shop.example/" + ["", "p/1", "c/shoes"][sess_seq % 3],
            "device_category": ["desktop", "mobile", "tablet"][sess_seq % 3], "device_os": ["Windows", "iOS", "Android"][sess_seq % 3],
            "platform": ["WEB", "IOS", "ANDROID"][sess_seq % 3], "country": "US", "events": pv + 2, "page_views": pv,
            "duration_seconds": dur, "engagement_seconds": dur * 0.6, "is_engaged": dur >= 10 or pv >= 2 or purchase,
            "is_first_visit": sess_seq == 1, "has_login": customer_known, "has_view_item": bool(view),
            "has_add_to_cart": bool(cart), "has_begin_checkout": bool(checkout), "has_purchase": purchase,
            "is_converted": purchase, "order_id": converted_order,
        })
        return sessions[-1]

    paths = []
    for i, p in enumerate(people):
        if i >= N_BUYERS:
            for _ in range(int(rng.integers(1, 4))):  # prospects browse
                add_session(p["customer_id"], p["device"], days[rng.integers(0, len(days))], p["channel"], p["campaign"])
            continue
        first_idx = int(np.where(days == p["first_seen"])[0][0])
        # a known, well-behaved customer for the API tests
        n_orders = 6 if p["customer_id"] == KNOWN_CUSTOMER else int(rng.integers(1, 8))
        order_days = sorted(days[np.clip(first_idx + np.sort(rng.integers(0, len(days) - first_idx, n_orders)), 0, len(days) - 1)])
        for k, day in enumerate(order_days):
            order_seq += 1
            oid = f"ord_{order_seq:05d}"
            touches = []
            for _ in range(int(rng.integers(0, 3))):
                back = int(rng.integers(1, 25))
                tday = day - dt.timedelta(days=back)
                if tday < START:
                    continue
                ch = channel_names[rng.choice(len(channel_names), p=ch_p)] if k else p["channel"]
                touches.append(add_session(p["customer_id"], p["device"], tday, ch, CHANNELS[ch][0]))
            conv_ch = "Direct" if (k and rng.random() < 0.4) else p["channel"]
            conv = add_session(p["customer_id"], p["device"], day, conv_ch,
                               p["campaign"] if conv_ch == p["channel"] else "(not_set)", converted_order=oid)
            touches = sorted(touches, key=lambda s: s["started_at"]) + [conv]
            status = ["paid"] * 8 + ["partially_refunded", "refunded", "failed"]
            st = status[rng.integers(len(status))] if p["customer_id"] != KNOWN_CUSTOMER else "paid"
            gross_orig = round(float(rng.gamma(3.0, 25.0)) + 5, 2)
            cur = ["USD", "EUR", "GBP"][rng.integers(3)]
            rate = {"USD": 1.0, "EUR": 1.08, "GBP": 1.27}[cur]
            gross = round(gross_orig * rate, 2) if st != "failed" else 0.0
            refunded = {"refunded": gross, "partially_refunded": round(gross * 0.3, 2)}.get(st, 0.0)
            ordered_at = conv["started_at"] + pd.Timedelta(seconds=60)
            orders.append({
                "order_id": oid, "customer_id": p["customer_id"], "order_source": "stripe",
                "stripe_customer_id": f"cus_{i:04d}", "ordered_at": ordered_at,
                "paid_at": None if st == "failed" else ordered_at + pd.Timedelta(seconds=5), "order_date": day,
                "original_currency": cur, "charge_attempts": 1 if st != "failed" else 2,
                "charge_id": None if st == "failed" else f"ch_{order_seq:05d}", "gross_amount_original": gross_orig,
                "gross_revenue": gross, "refunded_revenue": refunded, "net_revenue": round(gross - refunded, 2),
                "last_refunded_at": ordered_at + pd.Timedelta(days=3) if refunded else None, "status": st,
                "is_paid": st != "failed", "reporting_currency": "USD", "_touches": touches,
            })
    for k, (cust, day, amount) in enumerate((("cust_0002", END - dt.timedelta(days=2), 40.0),
                                             ("cust_0005", END - dt.timedelta(days=9), 25.5),
                                             ("cust_0010", END - dt.timedelta(days=30), 60.0))):
        at = _ts(day, 50_000)  # imported returns: no gross, the amount refunded, negative net
        orders.append({
            "order_id": f"ret_{k:03d}", "customer_id": cust, "order_source": "import", "stripe_customer_id": None,
            "ordered_at": at, "paid_at": None, "order_date": day, "original_currency": "USD", "charge_attempts": 1,
            "charge_id": None, "gross_amount_original": -amount, "gross_revenue": 0.0, "refunded_revenue": amount,
            "net_revenue": -amount, "last_refunded_at": at, "status": "returned", "is_paid": False, "is_return": True,
            "reporting_currency": "USD", "_touches": [],
        })
    fct_orders = pd.DataFrame(orders)
    fct_orders["is_return"] = fct_orders["is_return"].fillna(False).astype(bool)
    paid = fct_orders[fct_orders["is_paid"]].sort_values(["customer_id", "ordered_at"])
    paid_rank = paid.groupby("customer_id").cumcount() + 1
    fct_orders["customer_order_number"] = pd.Series(paid_rank, index=paid.index).reindex(fct_orders.index).astype("Int64")
    fct_orders["is_first_order"] = fct_orders["customer_order_number"].eq(1).fillna(False).astype(bool)
    for _ in range(200):  # anonymous traffic
        ch = channel_names[rng.choice(len(channel_names), p=ch_p)]
        add_session(None, f"anon_{rng.integers(10**6)}", days[rng.integers(0, len(days))], ch, CHANNELS[ch][-1],
                    customer_known=False)
    fct_sessions = pd.DataFrame(sessions)

    # --- conversion paths + attribution (paid orders) ----------------------------------------
    attribution = []
    for o in fct_orders[fct_orders["is_paid"]].to_dict("records"):
        t = o["_touches"]
        chans = [s["channel_group"] for s in t]
        paths.append({
            "order_id": o["order_id"], "customer_id": o["customer_id"], "converting_session_id": t[-1]["session_id"],
            "ordered_at": o["ordered_at"], "order_date": o["order_date"], "touch_count": len(t),
            "channel_path": " > ".join(chans),
            "source_medium_path": " > ".join(f"{s['source'] or '(direct)'} / {s['medium'] or '(none)'}" for s in t),
            "first_touch_channel_group": chans[0], "last_touch_channel_group": chans[-1],
            "first_touch_at": t[0]["started_at"], "last_touch_at": t[-1]["started_at"],
            "days_to_convert": round((o["ordered_at"] - t[0]["started_at"]).total_seconds() / 86400, 3),
            "distinct_channels": len(set(chans)), "net_revenue": o["net_revenue"], "is_first_order": o["is_first_order"],
            "lookback_days": 30,
        })
        for model in MODELS:
            for idx, (s, c) in enumerate(zip(t, _credits(len(t), chans, model, rng)), start=1):
                attribution.append({
                    "attribution_id": _md5(o["order_id"], model, idx), "order_id": o["order_id"],
                    "customer_id": o["customer_id"], "model": model, "touchpoint_index": idx, "session_id": s["session_id"],
                    "channel_group": s["channel_group"], "source": s["source"], "medium": s["medium"],
                    "campaign": s["campaign"], "campaign_key": s["campaign_key"], "touched_at": s["started_at"],
                    "credit": float(c),
                    "attributed_revenue": float(c) * o["net_revenue"], "is_data_driven": model in ("markov", "shapley"),
                })
    fct_orders = fct_orders.drop(columns="_touches")

    # --- ad spend (paid channels only) -----------------------------------------------------
    spend = []
    for day in days:
        for ch in ("Paid Search", "Paid Social"):
            for camp in CHANNELS[ch]:
                clicks = int(rng.integers(5, 60))
                spend.append({"date_day": day, "channel_group": ch, "campaign": camp,
                              "campaign_name": camp.replace("_", " ").title(), "spend": round(clicks * float(rng.uniform(0.4, 1.6)), 2),
                              "impressions": clicks * int(rng.integers(20, 60)), "clicks": clicks})

    # --- scores: an early date (its outcomes are known by END) and END with two versions ----
    scores = []
    last_order = fct_orders[fct_orders["is_paid"]].groupby("customer_id")["order_date"].max()
    first_order = fct_orders[fct_orders["is_paid"]].groupby("customer_id")["order_date"].min()
    for as_of, versions in ((EARLY_SCORES, ("clv_bgnbd_gg-20250331-a0+churn_xgb-20250331-b0",)), (END, MODEL_VERSIONS)):
        for cust, first in first_order.items():
            if first > as_of:
                continue
            hist = fct_orders[(fct_orders["customer_id"] == cust) & fct_orders["is_paid"] & (fct_orders["order_date"] <= as_of)]
            recency = (as_of - hist["order_date"].max()).days
            for v_i, version in enumerate(versions):
                churn = float(np.clip(recency / 120 + rng.normal(0, 0.08) + 0.02 * v_i, 0.01, 0.99))
                e90 = float(max(0.05, len(hist) / max(1, (as_of - first).days + 30) * 90 * (1 - churn)))
                scores.append({
                    "customer_id": cust, "as_of_date": as_of, "model_version": version, "p_alive": round(1 - churn * 0.8, 4),
                    "churn_probability": round(churn, 4), "expected_purchases_90d": round(e90, 4),
                    "expected_purchases_365d": round(e90 * 3.5, 4),
                    "predicted_clv_12m": round(e90 * 3.5 * float(hist["net_revenue"].mean() or 50.0), 2),
                    "value_tier": None, "churn_risk_band": "high" if churn >= 0.75 else "medium" if churn >= 0.4 else "low",
                })
    customer_scores = pd.DataFrame(scores)
    # a few high-value customers at risk of churning (the dashboard's download list)
    latest = customer_scores["as_of_date"] == END
    top = (customer_scores[latest & (customer_scores["customer_id"] != KNOWN_CUSTOMER)]
           .sort_values("predicted_clv_12m", ascending=False)["customer_id"].drop_duplicates().head(4))
    risky = latest & customer_scores["customer_id"].isin(top)
    customer_scores.loc[risky, "churn_probability"] = 0.82
    customer_scores.loc[risky, "p_alive"] = 0.3
    customer_scores.loc[risky, "churn_risk_band"] = "high"
    pct = customer_scores.groupby(["as_of_date", "model_version"])["predicted_clv_12m"].rank(pct=True)
    customer_scores["value_tier"] = np.select([pct > 0.95, pct > 0.8, pct > 0.5], ["platinum", "gold", "silver"], "bronze")

    # --- model runs ----------------------------------------------------------------------------
    runs = []
    for j, cutoff in enumerate((EARLY_SCORES, END)):
        for name in ("clv_bgnbd_gg", "clv_xgb", "churn_xgb"):
            churn = name.startswith("churn")
            m = ({"auc": 0.74 + 0.03 * j, "pr_auc": 0.7, "brier": 0.19 - 0.01 * j, "ece": 0.05, "base_rate": 0.55, "n": 50.0}
                 if churn else {"mae": 40.0 - 3 * j, "rmse": 70.0, "spearman": 0.5 + 0.05 * j, "normalized_gini": 0.6,
                                "top_decile_capture": 0.3, "aggregate_relative_error": 0.05, "n": 50.0})
            b = ({"auc": 0.7, "pr_auc": 0.65, "brier": 0.22, "ece": 0.02, "base_rate": 0.55, "n": 50.0}
                 if churn else {"mae": 45.0, "rmse": 80.0, "spearman": 0.4, "normalized_gini": 0.5,
                                "top_decile_capture": 0.25, "aggregate_relative_error": 0.1, "n": 50.0})
            runs.append({
                "run_id": _md5(name, cutoff), "model_name": name, "model_version": f"{name}-{cutoff:%Y%m%d}",
                "trained_at": pd.Timestamp(cutoff, tz="UTC") + pd.Timedelta(hours=3), "train_start": START,
                "train_end": cutoff, "cutoff_date": cutoff, "horizon_days": 90, "n_customers": 50,
                "metrics_json": json.dumps(m, sort_keys=True), "baseline_metrics_json": json.dumps(b, sort_keys=True),
                "is_champion": name != "clv_xgb", "task": "churn" if churn else "clv",
                "training_id": f"clv_bgnbd_gg-{cutoff:%Y%m%d}+churn_xgb-{cutoff:%Y%m%d}",
                "evaluation_start": cutoff - dt.timedelta(days=89), "evaluation_end": cutoff, "n_transactions": 200,
                "feature_names_json": json.dumps(["frequency", "recency", "T", "monetary_value"]),
                "artifact_dir": f"{name}-{cutoff:%Y%m%d}",
                "promoted_at": pd.Timestamp(cutoff, tz="UTC") + pd.Timedelta(hours=4) if name != "clv_xgb" else pd.NaT,
            })

    # holdout deciles of the END training (ml.holdout, as ml.jobs.train_models records them): the
    # EARLY_SCORES scores against what the customers did up to END
    from ml.holdout import holdout_deciles

    early = customer_scores[customer_scores["as_of_date"] == EARLY_SCORES]  # one model version
    later = fct_orders[fct_orders["is_paid"] & (fct_orders["order_date"] > EARLY_SCORES)
                       & (fct_orders["order_date"] <= END)].groupby("customer_id")["net_revenue"].agg(["size", "sum"])
    aov = fct_orders[fct_orders["is_paid"]].groupby("customer_id")["net_revenue"].mean()
    realised = early["customer_id"].map(later["sum"]).fillna(0.0)
    holdout = pd.DataFrame({
        "customer_id": early["customer_id"].to_numpy(),
        "churned": (early["customer_id"].map(later["size"]).fillna(0) == 0).astype(float).to_numpy(),
        "churn_probability": early["churn_probability"].to_numpy(),
        "future_spend": realised.to_numpy(),
        "pred_spend_bgnbd_gg": (early["expected_purchases_90d"] * early["customer_id"].map(aov).fillna(50.0)).to_numpy(),
        "pred_spend_xgb": (0.8 * early["expected_purchases_90d"] * early["customer_id"].map(aov).fillna(50.0)).to_numpy(),
        "pred_spend_baseline": np.full(len(early), float(realised.mean())),
    })
    holdout_frame = holdout_deciles(holdout, training_id=f"clv_bgnbd_gg-{END:%Y%m%d}+churn_xgb-{END:%Y%m%d}",
                                    cutoff_date=END, horizon_days=90)

    # --- identity map, support cases, data health --------------------------------------------
    ident = []
    for p in people:
        for typ, val, rule in (("email", hashlib.sha256(f"{p['customer_id']}@example.com".encode()).hexdigest(), "anchor"),
                               ("ga4_user_pseudo_id", p["device"], "ga4_login")):
            ident.append({"identifier_key": f"{typ}:{val}", "identifier_type": typ, "identifier_value": val,
                          "is_hashed": typ == "email", "customer_id": p["customer_id"], "match_rule": rule,
                          "match_confidence": 1.0, "is_anonymous": False, "first_seen_at": _ts(p["first_seen"], 3600),
                          "changed_at": _ts(p["first_seen"], 7200)})
    cases = []
    for k in range(40):
        created = _ts(days[rng.integers(0, len(days))], rng.integers(0, 86000))
        closed = bool(rng.random() < 0.7)
        status = "Closed" if closed else ["New", "Working", "Escalated"][k % 3]
        cases.append({"case_id": f"500{k:06d}", "customer_id": people[k % N_CUSTOMERS]["customer_id"], "contact_id": f"003{k:06d}",
                      "account_id": f"001{k:06d}", "case_status": status, "priority": ["Low", "Medium", "High"][k % 3],
                      "origin": ["Email", "Web", "Phone", "Chat"][k % 4], "case_type": "Question", "created_at": created,
                      "created_date": created.date(), "closed_at": created + pd.Timedelta(hours=30) if closed else None,
                      "is_closed": closed, "is_open": not closed, "is_escalated": status == "Escalated",
                      "resolution_hours": 30.0 if closed else None, "last_modified_at": created + pd.Timedelta(hours=31)})
    health, rejections = [], []
    objects = {"stripe": ["charges", "customers", "refunds"], "salesforce": ["contact", "case"], "ga4": ["events"],
               "google_ads": ["campaign_stats"], "meta": ["campaign_insights"]}
    for src, objs in objects.items():
        for obj in objs:
            for back in range(14):
                day = END - dt.timedelta(days=back)
                if src == "meta" and back < 3:
                    continue  # meta lags: freshness shows it
                key = f"{day:%Y%m%d}T000000Z_{day + dt.timedelta(days=1):%Y%m%d}T000000Z"
                refused = src == "stripe" and obj == "refunds" and back == 5
                rej = int(rng.integers(0, 3)) if src in ("stripe", "ga4") else 0
                extracted = int(rng.integers(50, 500))
                health.append({"source": src, "object": obj, "interval_key": key, "batch_id": _md5(src, obj, key)[:16],
                               "extracted": extracted, "loaded": 0 if refused else extracted - rej, "rejected": rej,
                               "duplicates": int(rng.integers(0, 2)), "drift_columns": "[]",
                               "status": "refused" if refused else "loaded",
                               "critical_failures": json.dumps(["expect_column_values_to_not_be_null(id)"] if refused else []),
                               "loaded_at": _ts(day + dt.timedelta(days=1), 3600 + back)})
                if rej and not refused:
                    rejections.append({"source": src, "object": obj, "interval_key": key,
                                       "rule": "expect_column_values_to_be_between(amount)", "rejected_records": rej,
                                       "last_rejected_at": _ts(day + dt.timedelta(days=1), 3600)})
    frames = {
        "fct_orders": fct_orders, "fct_sessions": fct_sessions, "fct_conversion_paths": pd.DataFrame(paths),
        "fct_attribution": pd.DataFrame(attribution), "customer_scores": customer_scores,
        "ml_model_runs": pd.DataFrame(runs), "ml_holdout_deciles": holdout_frame,
        "customer_identity_map": pd.DataFrame(ident),
        "fct_support_cases": pd.DataFrame(cases), "data_health": pd.DataFrame(health),
        "data_health_rejections": pd.DataFrame(rejections), "_spend": pd.DataFrame(spend),
        "_people": pd.DataFrame(people),
    }
    return frames


DERIVED_SQL = {
    "kpi_daily": """
        with days as (select unnest(generate_series(date '{start}', date '{end}', interval 1 day))::date as date_day),
        o as (select * from fct_orders),
        s as (select session_date as date_day, count(*) as sessions, count(*) filter (where is_converted) as converted_sessions
              from fct_sessions group by 1)
        select d.date_day,
            count(o.order_id) filter (where o.is_paid) as orders,
            count(o.order_id) filter (where not o.is_paid and not o.is_return) as failed_orders,
            coalesce(sum(o.gross_revenue) filter (where o.is_paid or o.is_return), 0) as gross_revenue,
            coalesce(sum(o.refunded_revenue) filter (where o.is_paid or o.is_return), 0) as refunded_revenue,
            coalesce(sum(o.net_revenue) filter (where o.is_paid or o.is_return), 0) as net_revenue,
            sum(o.net_revenue) filter (where o.is_paid) / nullif(count(o.order_id) filter (where o.is_paid), 0) as average_order_value,
            count(distinct o.customer_id) filter (where o.is_first_order) as new_customers,
            count(distinct o.customer_id) filter (where o.is_paid and o.customer_order_number > 1) as returning_customers,
            count(distinct o.customer_id) filter (where o.is_paid) as active_customers,
            (select count(distinct customer_id) from fct_orders x where x.is_paid
               and x.order_date between d.date_day - 29 and d.date_day) as active_customers_30d,
            coalesce(sum(o.net_revenue) filter (where o.is_first_order), 0) as new_customer_revenue,
            coalesce(any_value(s.sessions), 0) as sessions,
            coalesce(any_value(s.converted_sessions), 0) as converted_sessions,
            coalesce(any_value(s.converted_sessions), 0) / nullif(any_value(s.sessions), 0) as session_conversion_rate,
            'USD' as reporting_currency
        from days d left join o on o.order_date = d.date_day left join s on s.date_day = d.date_day
        group by d.date_day order by d.date_day""",
    "funnel_daily": """
        select md5(session_date::varchar || platform || channel_group) as funnel_day_id, session_date as date_day, platform,
            channel_group, count(*) as sessions, count(*) filter (where is_engaged) as engaged_sessions,
            count(*) filter (where has_view_item) as view_item_sessions,
            count(*) filter (where has_add_to_cart) as add_to_cart_sessions,
            count(*) filter (where has_begin_checkout) as begin_checkout_sessions,
            count(*) filter (where has_purchase) as purchase_sessions,
            count(*) filter (where has_view_item) / count(*) as view_item_rate,
            count(*) filter (where has_add_to_cart) / nullif(count(*) filter (where has_view_item), 0) as add_to_cart_rate,
            count(*) filter (where has_begin_checkout) / nullif(count(*) filter (where has_add_to_cart), 0) as begin_checkout_rate,
            count(*) filter (where has_purchase) / nullif(count(*) filter (where has_begin_checkout), 0) as purchase_rate,
            count(*) filter (where has_purchase) / count(*) as session_conversion_rate
        from fct_sessions group by all""",
    "customer_rfm": """
        with base as (
            select customer_id, date '{end}' as as_of_date, min(order_date) as first_order_date, max(order_date) as last_order_date,
                date '{end}' - max(order_date) as recency_days, count(*) as frequency, sum(net_revenue) as monetary
            from fct_orders where is_paid group by customer_id),
        scored as (
            select *, ntile(5) over (order by recency_days desc) as recency_score,
                ntile(5) over (order by frequency) as frequency_score, ntile(5) over (order by monetary) as monetary_score
            from base)
        select *, recency_score::varchar || frequency_score::varchar || monetary_score::varchar as rfm_cell,
            case when recency_score = 5 and frequency_score >= 4 then 'Champions'
                 when recency_score in (3, 4) and frequency_score >= 4 then 'Loyal'
                 when recency_score >= 4 and frequency_score in (2, 3) then 'Potential Loyalists'
                 when recency_score = 5 and frequency_score = 1 then 'New'
                 when recency_score = 4 and frequency_score = 1 then 'Promising'
                 when recency_score = 3 and frequency_score = 3 then 'Need Attention'
                 when recency_score = 3 and frequency_score <= 2 then 'About to Sleep'
                 when recency_score <= 2 and frequency_score = 5 then 'Cannot Lose Them'
                 when recency_score <= 2 and frequency_score in (3, 4) then 'At Risk'
                 else 'Hibernating' end as rfm_segment
        from scored""",
    "cohort_retention_monthly": """
        with firsts as (select customer_id, date_trunc('month', min(order_date))::date as cohort_month
                        from fct_orders where is_paid group by 1),
        months as (select distinct date_trunc('month', order_date)::date as activity_month from fct_orders),
        sizes as (select cohort_month, count(*) as cohort_size from firsts group by 1),
        grid as (select s.cohort_month, m.activity_month, s.cohort_size from sizes s join months m on m.activity_month >= s.cohort_month),
        act as (select f.cohort_month, date_trunc('month', o.order_date)::date as activity_month,
                    count(distinct o.customer_id) as active_customers, count(*) as orders, sum(o.net_revenue) as net_revenue
                from fct_orders o join firsts f using (customer_id) where o.is_paid group by 1, 2)
        select md5(g.cohort_month::varchar || '|' || date_diff('month', g.cohort_month, g.activity_month)::varchar) as cohort_month_id,
            g.cohort_month, g.activity_month, date_diff('month', g.cohort_month, g.activity_month) as months_since_first_order,
            g.cohort_size, coalesce(a.active_customers, 0) as active_customers,
            coalesce(a.active_customers, 0) / g.cohort_size as retention_rate, coalesce(a.orders, 0) as orders,
            coalesce(a.net_revenue, 0) as net_revenue, 'USD' as reporting_currency
        from grid g left join act a using (cohort_month, activity_month)""",
    "channel_performance_daily": """
        with sess as (select session_date as date_day, channel_group, coalesce(campaign_key, '(not_set)') as campaign,
                          count(*) as sessions, count(*) filter (where is_engaged) as engaged_sessions from fct_sessions group by all),
        attr as (select o.order_date as date_day, a.channel_group, coalesce(a.campaign, '(not_set)') as campaign, a.model,
                     sum(a.credit) as attributed_conversions, sum(a.attributed_revenue) as attributed_revenue,
                     sum(a.credit) filter (where o.is_first_order) as attributed_new_customers
                 from fct_attribution a join fct_orders o using (order_id) group by all),
        keys as (select date_day, channel_group, campaign from _spend union select date_day, channel_group, campaign from sess
                 union select date_day, channel_group, campaign from attr),
        models as (select distinct model from fct_attribution)
        select md5(k.date_day::varchar || k.channel_group || k.campaign || m.model) as channel_performance_id,
            k.date_day, k.channel_group, k.campaign, sp.campaign_name, m.model, coalesce(sp.spend, 0) as spend,
            coalesce(sp.impressions, 0) as impressions, coalesce(sp.clicks, 0) as clicks, coalesce(se.sessions, 0) as sessions,
            coalesce(se.engaged_sessions, 0) as engaged_sessions, coalesce(a.attributed_conversions, 0) as attributed_conversions,
            coalesce(a.attributed_revenue, 0) as attributed_revenue, coalesce(a.attributed_new_customers, 0) as attributed_new_customers,
            a.attributed_revenue / nullif(sp.spend, 0) as roas, sp.spend / nullif(a.attributed_new_customers, 0) as cac,
            sp.spend / nullif(sp.clicks, 0) as cost_per_click, 'USD' as reporting_currency
        from keys k cross join models m
        left join _spend sp using (date_day, channel_group, campaign)
        left join sess se using (date_day, channel_group, campaign)
        left join attr a on a.date_day = k.date_day and a.channel_group = k.channel_group and a.campaign = k.campaign
            and a.model = m.model""",
    "dim_customers": """
        with o as (select customer_id, min(ordered_at) as first_order_at, max(ordered_at) as last_order_at, count(*) as orders,
                       sum(gross_revenue) as gross_revenue, sum(net_revenue) as net_revenue from fct_orders where is_paid group by 1),
        s as (select customer_id, count(*) as sessions, count(distinct user_pseudo_id) as devices, min(started_at) as first_session_at,
                  max(started_at) as last_session_at from fct_sessions where customer_id is not null group by 1),
        sc as (select * from customer_scores
               qualify row_number() over (partition by customer_id order by as_of_date desc, model_version desc) = 1)
        select p.customer_id, sha256(p.customer_id || '@example.com') as email_sha256, p.country,
            p.customer_id in ('cust_0003', 'cust_0007') as is_email_opted_out, true as has_crm_contact,
            o.customer_id is not null as has_stripe_customer, coalesce(o.orders, 0) > 0 as is_customer, 2 as identifiers,
            coalesce(s.devices, 0) as devices, least(s.first_session_at, o.first_order_at) as first_seen_at,
            greatest(s.last_session_at, o.last_order_at) as last_seen_at, p.channel as acquisition_channel,
            nullif(p.campaign, '(not_set)') as acquisition_campaign, null as acquisition_source, null as acquisition_medium,
            'ga4_first_session' as acquisition_basis, null as crm_lead_source, o.first_order_at, o.last_order_at,
            coalesce(o.orders, 0) as orders, coalesce(o.gross_revenue, 0) as gross_revenue,
            coalesce(o.net_revenue, 0) as net_revenue, o.net_revenue / nullif(o.orders, 0) as average_order_value,
            coalesce(s.sessions, 0) as sessions, r.recency_days, r.recency_score, r.frequency_score, r.monetary_score,
            r.rfm_cell, r.rfm_segment, sc.as_of_date as scores_as_of_date, sc.model_version as scores_model_version,
            sc.p_alive, sc.churn_probability, sc.expected_purchases_90d, sc.expected_purchases_365d, sc.predicted_clv_12m,
            sc.value_tier, sc.churn_risk_band, cast(null as varchar) as behavioural_segment, 'USD' as reporting_currency
        from _people p left join o using (customer_id) left join s using (customer_id)
        left join customer_rfm r using (customer_id) left join sc using (customer_id)""",
}
DERIVED_ORDER = ("kpi_daily", "funnel_daily", "customer_rfm", "cohort_retention_monthly", "channel_performance_daily",
                 "dim_customers")


def _naive_utc(df: pd.DataFrame) -> pd.DataFrame:
    """dbt's gold timestamps are UTC without a time zone: strip it like they do."""
    out = df.copy()
    for c in out.columns:
        if isinstance(out[c].dtype, pd.DatetimeTZDtype):
            out[c] = out[c].dt.tz_convert("UTC").dt.tz_localize(None)
        elif out[c].dtype == object and out[c].map(lambda v: isinstance(v, pd.Timestamp) and v.tzinfo is not None).any():
            out[c] = pd.to_datetime(out[c], utc=True).dt.tz_localize(None)
    return out


def build_serving_copy(settings, *, seed: int = 7, skip: tuple[str, ...] = ()) -> Path:
    """Write the fixture's gold tables into ``settings``' warehouse file, then publish them with
    the pipeline's own ``stage_publish`` (so the serving copy has exactly the types a real
    publication gives). ``skip`` leaves tables out (pages whose gold table is not built yet)."""
    import duckdb

    from retailpulse.pipeline import stage_publish

    frames = {k: _naive_utc(v) if k not in ("data_health", "data_health_rejections") else v
              for k, v in build_frames(seed).items()}
    path = settings.duckdb_path
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    try:
        con.execute("create schema if not exists gold")
        for name, df in frames.items():
            con.register("__f", df)
            con.execute(f'create or replace table main."{name}" as select * from __f')  # inputs + scratch
            con.unregister("__f")
        for name in DERIVED_ORDER:
            con.execute(f'create or replace table main."{name}" as ' + DERIVED_SQL[name].format(start=START, end=END))
        for name in [n for n in frames if not n.startswith("_")] + list(DERIVED_ORDER):
            con.execute(f'drop table if exists gold."{name}"')
            if name not in skip:
                con.execute(f'create table gold."{name}" as select * from main."{name}"')
        for name in [*frames, *DERIVED_ORDER]:
            con.execute(f'drop table main."{name}"')
    finally:
        con.close()
    return Path(stage_publish(settings)["serving_file"])


def gold_contract() -> dict[str, list[str]]:
    """Columns of every gold table as the dbt project documents them (plus ml_model_runs)."""
    import ast

    import yaml

    repo = Path(__file__).resolve().parent.parent
    out: dict[str, list[str]] = {}
    for f in sorted((repo / "dbt" / "models" / "marts").rglob("*.yml")):
        doc = yaml.safe_load(f.read_text()) or {}
        for m in doc.get("models") or []:
            out[m["name"]] = [c["name"] for c in m.get("columns") or []]
        for s in doc.get("sources") or []:
            for t in s.get("tables") or []:
                out[t["name"]] = [c["name"] for c in t.get("columns") or []]
    # the tables the ML stage writes: ml.jobs.TABLE_COLUMNS (else ml.scoring.MODEL_RUN_COLUMNS), read
    # without importing ml (sklearn, xgboost: seconds)
    constants = {}
    for module in ("jobs", "scoring"):
        file = repo / "ml" / f"{module}.py"
        if not file.exists():
            continue
        for node in ast.parse(file.read_text()).body:
            target = getattr(node, "target", None) or (getattr(node, "targets", None) or [None])[0]
            if isinstance(target, ast.Name) and target.id in ("TABLE_COLUMNS", "MODEL_RUN_COLUMNS"):
                constants.setdefault(target.id, ast.literal_eval(node.value))
    holdout = repo / "ml" / "holdout.py"
    if holdout.exists():  # gold.ml_holdout_deciles (written by ml.jobs.train_models)
        for node in ast.parse(holdout.read_text()).body:
            target = getattr(node, "target", None) or (getattr(node, "targets", None) or [None])[0]
            if isinstance(target, ast.Name) and target.id == "HOLDOUT_DECILE_COLUMNS":
                out["ml_holdout_deciles"] = [c for c, _ in ast.literal_eval(node.value)]
    for table, cols in (constants.get("TABLE_COLUMNS") or {}).items():
        out[table] = [c for c, _ in cols]
    if "MODEL_RUN_COLUMNS" in constants:
        out.setdefault("ml_model_runs", list(constants["MODEL_RUN_COLUMNS"]))
    return out
