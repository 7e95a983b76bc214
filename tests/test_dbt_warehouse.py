"""The dbt warehouse built from the small sandbox world, checked against the world's truth.

One session-scoped warehouse: bronze as of six days before the world's end, a first
run of the incremental models (GA4 events and sessions, devices, exact identity components), then bronze as of the end and a full ``dbt build`` (every model, dbt
test, unit test and singular test) through ``retailpulse.pipeline.stage_dbt``. The tests below
read the result; the last one rebuilds every model with --full-refresh and compares each gold
table with what the incremental path produced.
"""

from __future__ import annotations

import hashlib
import time

import pandas as pd
import pytest

from tests.dbt_fixtures import IMPORTED_NET_REPORTING, Built, read_truth, release_dbt_duckdb

FX = {"USD": 1.0, "EUR": 1.08, "GBP": 1.27}
# gold table -> its primary key
GOLD_COMPARED = {
    "fct_orders": "order_id", "fct_sessions": "session_id", "dim_customers": "customer_id",
    "customer_identity_map": "identifier_key", "fct_conversion_paths": "order_id",
    "fct_attribution": "attribution_id", "channel_performance_daily": "channel_performance_id",
    "funnel_daily": "funnel_day_id", "kpi_daily": "date_day", "customer_rfm": "customer_id",
    "cohort_retention_monthly": "cohort_month_id", "fct_support_cases": "case_id",
}


def _df(built: Built, sql: str) -> pd.DataFrame:
    from retailpulse.warehouse import get_warehouse

    return get_warehouse(built.settings).query_df(sql)


def _scalar(built: Built, sql: str):
    from retailpulse.warehouse import get_warehouse

    return get_warehouse(built.settings).scalar(sql)


# ----------------------------------------------------------------------------------------------
def test_build_runs_models_unit_tests_and_data_tests(built: Built):
    nodes = built.summary["nodes"]
    assert nodes.get("model", 0) >= 40, nodes
    assert nodes.get("unit_test", 0) >= 4, nodes
    assert nodes.get("test", 0) >= 170, nodes  # not-null columns: one not_null_columns test per model
    assert nodes.get("snapshot", 0) == 1, nodes
    print(f"\ndbt build nodes {nodes}; timings {({k: round(v, 1) for k, v in built.seconds.items()})}")


def test_every_gold_table_of_the_contract_exists(built: Built):
    from retailpulse.warehouse import get_warehouse

    tables = set(get_warehouse(built.settings).list_tables("gold"))
    contract = {"dim_customers", "customer_identity_map", "fct_orders", "fct_sessions", "fct_conversion_paths",
                "fct_attribution", "channel_performance_daily", "customer_rfm", "cohort_retention_monthly",
                "funnel_daily", "kpi_daily", "fct_support_cases", "customer_scores"}
    assert contract <= tables, contract - tables


def test_net_revenue_reconciles_with_world_truth(built: Built):
    truth = read_truth(built.world, "orders")
    end = pd.Timestamp(built.bronze.end)
    obs = truth[truth["in_observation"] & ~truth["is_failed"]].copy()
    refunded = obs["refunded_minor"].where(obs["refunded_at"].notna() & (obs["refunded_at"] < end), 0)
    rate = obs["currency"].str.upper().map(FX)
    expected_net = float(((obs["amount_minor"] - refunded) * rate / 100.0).sum())
    expected_gross = float((obs["amount_minor"] * rate / 100.0).sum())
    gold = _df(built, "select count(*) as orders, sum(gross_revenue) as gross, sum(net_revenue) as net "
                      "from gold.fct_orders where is_paid and order_source = 'stripe'").iloc[0]
    assert int(gold["orders"]) == len(obs)
    assert float(gold["gross"]) == pytest.approx(expected_gross, abs=0.01)
    assert float(gold["net"]) == pytest.approx(expected_net, abs=0.01)
    # failed (abandoned) orders are there too, with no revenue
    failed = int(truth[truth["in_observation"] & truth["is_failed"]].shape[0])
    assert _scalar(built, "select count(*) from gold.fct_orders where status = 'failed'") == failed


def test_imported_transactions_become_orders_of_their_customers(built: Built):
    imp = _df(built, "select * from gold.fct_orders where order_source = 'import' order by order_id")
    assert list(imp["order_id"]) == ["imp-1", "imp-2", "imp-3", "imp-4"]
    assert float(imp["net_revenue"].sum()) == pytest.approx(IMPORTED_NET_REPORTING)
    assert list(imp["status"]) == ["paid", "paid", "returned", "paid"]
    assert imp.loc[imp["order_id"] == "imp-1", "is_first_order"].item()
    assert not imp.loc[imp["order_id"] == "imp-2", "is_first_order"].item()
    c1001 = imp.loc[imp["order_id"] == "imp-1", "customer_id"].item()
    assert imp.loc[imp["order_id"] == "imp-3", "customer_id"].item() == c1001
    dim = _df(built, f"select orders, net_revenue from gold.dim_customers where customer_id = '{c1001}'").iloc[0]
    assert dim["orders"] == 2 and float(dim["net_revenue"]) == pytest.approx(120.0)
    rule = _scalar(built, "select match_rule from gold.customer_identity_map where identifier_key = 'imported_customer:C-1001'")
    assert rule == "anchor"


def test_first_order_flag_follows_the_resolved_person(built: Built):
    # one first order per buyer, even for people paying with a second (guest) Stripe customer
    row = _df(built, "select count(*) as firsts, count(distinct customer_id) as buyers "
                     "from gold.fct_orders where is_paid and is_first_order").iloc[0]
    assert row["firsts"] == row["buyers"]
    buyers = _scalar(built, "select count(distinct customer_id) from gold.fct_orders where is_paid")
    assert row["buyers"] == buyers
    buyers = _scalar(built, "select count(distinct customer_id) from gold.fct_orders "
                            "where is_paid and order_source = 'stripe'")
    truth = read_truth(built.world, "orders")
    true_buyers = truth[truth["in_observation"] & ~truth["is_failed"]]["person_id"].nunique()
    assert abs(buyers - true_buyers) / true_buyers < 0.01, (buyers, true_buyers)


def _pairs(sizes: pd.Series) -> float:
    return float((sizes * (sizes - 1) / 2).sum())


def _identity_truth(built: Built) -> pd.DataFrame:
    """truth_identity with e-mails hashed like the map, inner-joined to gold.customer_identity_map."""
    truth = read_truth(built.world, "identity")
    truth = truth[truth["person_id"].notna()].copy()
    emails = truth["source"] == "email"
    truth.loc[emails, "source_id"] = truth.loc[emails, "source_id"].map(
        lambda e: hashlib.sha256(e.strip().lower().encode()).hexdigest())
    truth["key"] = truth["source"] + ":" + truth["source_id"]
    ours = _df(built, "select identifier_key as key, customer_id from gold.customer_identity_map")
    j = truth.merge(ours, on="key", how="inner")
    j["cid"] = j["customer_id"].fillna("anon:" + j["key"])
    return j


def _never_authenticated_devices(built: Built) -> set[str]:
    """GA4 devices whose events, as landed in bronze, carry no person-level signal at all: no
    user_id (never logged in) and no purchase. Decided from the raw data, not from our models."""
    devices = _df(built, """
        select user_pseudo_id
        from bronze.ga4__events
        where user_pseudo_id is not null
        group by user_pseudo_id
        having count(user_id) = 0
            and sum(case when event_name = 'purchase' then 1 else 0 end) = 0
    """)
    return set("ga4_user_pseudo_id:" + devices["user_pseudo_id"].astype(str))


def _precision_recall(j: pd.DataFrame) -> tuple[float, float]:
    tp = _pairs(j.groupby(["person_id", "cid"]).size())
    predicted = _pairs(j.groupby("cid").size())
    actual = _pairs(j.groupby("person_id").size())
    return tp / predicted, tp / actual


def identity_precision_recall(built: Built) -> dict[str, float]:
    """Pairwise precision / recall of gold.customer_identity_map against truth_identity.

    Two scopes, both over the identifiers the truth and the map share:
    - ``linkable``: every identifier except GA4 devices that never logged in nor bought. Such a
      device holds no person-level signal in any source (only a cookie id and page views), so
      no resolver can place it; the issue's target (>= 0.99 each) is measured here;
    - ``all``: every identifier, those devices included (each counted as its own singleton),
      reported and guarded against regression.
    """
    j = _identity_truth(built)
    anonymous = j["key"].isin(_never_authenticated_devices(built))
    p_link, r_link = _precision_recall(j[~anonymous])
    p_all, r_all = _precision_recall(j)
    return {"precision": p_link, "recall": r_link, "n": float((~anonymous).sum()),
            "precision_all": p_all, "recall_all": r_all, "n_all": float(len(j)),
            "anonymous_devices": float(anonymous.sum()),
            "anonymous_devices_resolved": float(j.loc[anonymous, "customer_id"].notna().sum()),
            "authenticated_devices_unresolved": float(
                ((j["source"] == "ga4_user_pseudo_id") & ~anonymous & j["customer_id"].isna()).sum())}


def test_identity_resolution_precision_and_recall(built: Built):
    m = identity_precision_recall(built)
    print(f"\nidentity resolution over {m['n']:.0f} linkable identifiers: precision {m['precision']:.4f}, "
          f"recall {m['recall']:.4f}; over all {m['n_all']:.0f} (incl. {m['anonymous_devices']:.0f} "
          f"never-authenticated devices): precision {m['precision_all']:.4f}, recall {m['recall_all']:.4f}")
    # the bar, over identifiers that carry any person-level signal
    assert m["precision"] >= 0.99, m
    assert m["recall"] >= 0.99, m
    # devices: every one that logged in or bought is resolved; none without a signal is guessed
    assert m["authenticated_devices_unresolved"] == 0, m
    assert m["anonymous_devices_resolved"] == 0, m
    assert m["anonymous_devices"] > 0  # the world does contain anonymous devices
    # all identifiers, anonymous devices as singletons: precision unchanged, recall bounded by them
    assert m["precision_all"] >= 0.99, m
    assert m["recall_all"] >= 0.90, m


def test_identity_map_covers_every_source_identifier(built: Built):
    counts = _df(built, "select identifier_type, count(*) as n from gold.customer_identity_map group by 1")
    counts = dict(zip(counts["identifier_type"], counts["n"]))
    stripe = _scalar(built, "select count(*) from silver.stg_stripe__customers")
    contacts = _scalar(built, "select count(*) from silver.stg_salesforce__contacts")
    leads = _scalar(built, "select count(*) from silver.stg_salesforce__leads")
    devices = _scalar(built, "select count(distinct user_pseudo_id) from silver.stg_ga4__events")
    assert counts["stripe_customer"] == stripe
    assert counts["sf_contact"] == contacts
    assert counts["sf_lead"] == leads
    assert counts["ga4_user_pseudo_id"] == devices
    rules = set(_df(built, "select distinct match_rule from gold.customer_identity_map")["match_rule"])
    assert {"email_exact", "crm_stripe_customer_id", "ga4_login", "phone_and_name"} <= rules
    fuzzy = _df(built, "select match_confidence from gold.customer_identity_map "
                       "where match_rule in ('phone_and_name', 'phone_and_similar_name', 'email_local_part_variant')")
    assert len(fuzzy) and (fuzzy["match_confidence"] < 1).all()


def test_no_raw_pii_in_gold(built: Built):
    for table in ("dim_customers", "customer_identity_map", "fct_orders", "fct_sessions", "fct_support_cases"):
        cols = _df(built, f"select * from gold.{table} limit 200")
        for col in cols.columns:
            values = cols[col].dropna().astype(str)
            assert not values.str.contains("@").any(), f"gold.{table}.{col} holds an e-mail"
    assert {"email", "first_name", "last_name", "phone"}.isdisjoint(
        _df(built, "select * from gold.dim_customers limit 1").columns)


def test_attribution_credits_sum_to_one_per_order_and_model(built: Built):
    bad = _scalar(built, "select count(*) from (select order_id, model from gold.fct_attribution "
                         "group by order_id, model having abs(sum(credit) - 1) > 1e-6) as x")
    assert bad == 0
    models = set(_df(built, "select distinct model from gold.fct_attribution")["model"])
    assert models == {"first_touch", "last_touch", "last_non_direct", "linear", "time_decay", "position_based"}


def test_conversion_paths_cover_the_orders_ga4_saw(built: Built):
    truth = read_truth(built.world, "orders")
    tracked = truth[truth["in_observation"] & ~truth["is_failed"] & truth["is_tracked_by_ga4"]]
    # purchases of the last days whose events reach GA4 only after the end are not landed yet
    ev = built.bronze.as_of(built.bronze.end)["ga4__events"]
    landed = set(ev.loc[ev["event_name"] == "purchase", "ecommerce__transaction_id"].dropna())
    paths = _df(built, "select order_id, touch_count, days_to_convert from gold.fct_conversion_paths")
    assert set(paths["order_id"]) == set(tracked["order_id"]) & landed
    assert len(set(tracked["order_id"]) - landed) < 10
    assert (paths["touch_count"] >= 1).all()
    assert paths["days_to_convert"].max() <= 30 + 1e-9
    # orders GA4 never saw: in fct_orders, without a path
    untracked = truth[truth["in_observation"] & ~truth["is_failed"] & ~truth["is_tracked_by_ga4"]]
    assert len(untracked) > 0
    assert not set(untracked["order_id"]) & set(paths["order_id"])


def test_sessions_match_ga4_session_starts(built: Built):
    ev = built.bronze.as_of(built.bronze.end)["ga4__events"]
    starts = ev[ev["event_name"] == "session_start"].drop_duplicates(["user_pseudo_id", "param__ga_session_id"])
    all_sessions = ev.drop_duplicates(["user_pseudo_id", "param__ga_session_id"])
    n = _scalar(built, "select count(*) from gold.fct_sessions")
    assert n == len(all_sessions)
    assert len(starts) == len(all_sessions)
    stitched = _scalar(built, "select avg(case when customer_id is not null then 1.0 else 0 end) from gold.fct_sessions")
    assert stitched > 0.3
    # anonymous sessions of a device before its first login are stitched too
    before_login = _scalar(built, """
        select count(*) from gold.fct_sessions s
        where s.user_id is null and s.customer_id is not null and s.started_at < (
            select min(f.started_at) from gold.fct_sessions f
            where f.user_pseudo_id = s.user_pseudo_id and f.has_login)""")
    assert before_login > 0


def test_channel_groups_of_sessions_match_the_world_channels(built: Built):
    got = _df(built, "select channel_group, count(*) as n from gold.fct_sessions group by 1")
    got = dict(zip(got["channel_group"], got["n"]))
    for group in ("Direct", "Organic Search", "Paid Search", "Paid Shopping", "Paid Social", "Email",
                  "Affiliates", "Referral"):
        assert got.get(group, 0) > 0, got
    assert got.get("Unassigned", 0) == 0, got


def test_channel_performance_has_spend_and_attribution(built: Built):
    perf = _df(built, """
        select channel_group, sum(spend) as spend, sum(attributed_revenue) as revenue
        from gold.channel_performance_daily where model = 'last_touch' group by 1""").set_index("channel_group")
    g = built.bronze.as_of(built.bronze.end)
    gads = g["google_ads__campaign_daily"].sort_values("_interval_end").drop_duplicates(
        ["campaign__id", "segments__date"], keep="last")
    meta = g["meta__campaign_insights"].sort_values("_interval_end").drop_duplicates(
        ["campaign_id", "date_start"], keep="last")
    expected_spend = gads["metrics__cost_micros"].sum() / 1e6 + meta["spend"].sum()
    assert perf["spend"].sum() == pytest.approx(expected_spend, rel=1e-9)
    assert perf.loc["Paid Social", "spend"] == pytest.approx(meta["spend"].sum(), rel=1e-9)
    paths_revenue = _scalar(built, "select sum(net_revenue) from gold.fct_conversion_paths")
    assert perf["revenue"].sum() == pytest.approx(paths_revenue, rel=1e-9)
    roas = _scalar(built, "select count(*) from gold.channel_performance_daily where roas is not null")
    assert roas > 0
    # attribution rows carry their session's campaign key, so paid campaigns get revenue beside their spend
    assert _scalar(built, "select count(*) from gold.fct_attribution a join silver.int_sessions__stitched s "
                          "using (session_id) where a.campaign_key is distinct from s.campaign_key") == 0
    assert _scalar(built, "select count(*) from gold.fct_attribution where campaign_key is not null") > 0
    assert _scalar(built, "select count(*) from gold.channel_performance_daily "
                          "where spend > 0 and attributed_revenue > 0 and campaign <> '(not_set)'") > 0


def test_rfm_segments_sum_to_customers(built: Built):
    segments = _df(built, "select rfm_segment, count(*) as n from gold.customer_rfm group by 1")
    buyers = _scalar(built, "select count(*) from gold.dim_customers where is_customer")
    assert int(segments["n"].sum()) == buyers
    assert {"Champions", "Hibernating"} <= set(segments["rfm_segment"])
    in_dim = _scalar(built, "select count(*) from gold.dim_customers where rfm_segment is not null")
    assert in_dim == buyers


def test_cohorts_and_kpis_are_consistent(built: Built):
    month0 = _df(built, "select retention_rate from gold.cohort_retention_monthly where months_since_first_order = 0")
    assert (month0["retention_rate"] == 1.0).all()
    new = _scalar(built, "select sum(new_customers) from gold.kpi_daily")
    buyers = _scalar(built, "select count(*) from gold.dim_customers where is_customer")
    assert new == buyers
    cohort_total = _scalar(built, "select sum(cohort_size) from gold.cohort_retention_monthly "
                                  "where months_since_first_order = 0")
    assert cohort_total == buyers


def test_active_customers_30d_count_the_buyers_of_the_last_30_days(built: Built):
    """kpi_daily.active_customers_30d on every day == distinct customers with a paid order on that
    day or the 29 before it, counted here from gold.fct_orders day by day."""
    paid = _df(built, "select distinct customer_id, cast(ordered_at as date) as d from gold.fct_orders where is_paid")
    paid["d"] = pd.to_datetime(paid["d"])
    kpi = _df(built, "select date_day, active_customers_30d from gold.kpi_daily order by date_day")
    kpi["date_day"] = pd.to_datetime(kpi["date_day"])
    expected = [paid.loc[(paid["d"] <= day) & (paid["d"] > day - pd.Timedelta(days=30)), "customer_id"].nunique()
                for day in kpi["date_day"]]
    assert kpi["active_customers_30d"].tolist() == expected
    assert max(expected) > 100 and len(kpi) > 300


def test_dim_customers_acquisition_and_scores_columns(built: Built):
    dim = _df(built, "select * from gold.dim_customers")
    assert dim["customer_id"].is_unique
    buyers = dim[dim["is_customer"]]
    assert buyers["acquisition_channel"].notna().mean() > 0.95
    assert (buyers["email_sha256"].dropna().str.len() == 64).all()
    assert {"p_alive", "churn_probability", "predicted_clv_12m", "value_tier", "churn_risk_band"} <= set(dim.columns)
    opted = read_truth(built.world, "people")["has_opted_out"].mean()
    assert abs(buyers["is_email_opted_out"].mean() - opted) < 0.08


def test_dim_customers_shows_each_customers_newest_scores_and_segment(built: Built):
    """The ML stage appends one scoring a day (history kept): dim_customers takes each customer's
    newest as_of_date, and on that date the greatest model_version; the newest segmentation."""
    from retailpulse.dbt_runner import run_dbt
    from retailpulse.warehouse import get_warehouse

    wh = get_warehouse(built.settings)
    ids = _df(built, "select customer_id from gold.dim_customers where is_customer order by customer_id limit 3")
    a, b, c = ids["customer_id"].tolist()
    scores = pd.DataFrame([
        # customer, as_of_date, model_version, p_alive
        (a, "2025-01-01", "v2", 0.11), (a, "2025-01-03", "v1", 0.13), (a, "2025-01-02", "v9", 0.12),
        (b, "2025-01-03", "v1", 0.21), (b, "2025-01-03", "v3", 0.23), (b, "2025-01-03", "v2", 0.22),
        (c, "2024-12-31", "v1", 0.31),
    ], columns=["customer_id", "as_of_date", "model_version", "p_alive"])
    segments = pd.DataFrame([(a, "2025-01-01", "old"), (a, "2025-01-03", "newest"), (b, "2025-01-02", "only")],
                            columns=["customer_id", "as_of_date", "segment_name"])
    with wh.connect() as con:
        n_scores, n_segments = (con.execute(f"select count(*) from gold.{t}").fetchall()[0][0]
                                for t in ("customer_scores", "customer_segments"))
        for table, frame in (("customer_scores", scores), ("customer_segments", segments)):
            cols = ", ".join(frame.columns)
            con.register("extra", frame)
            con.execute(f"insert into gold.{table} ({cols}) select {cols.replace('as_of_date', 'cast(as_of_date as date)')} "
                        "from extra")
            con.unregister("extra")
    try:
        release_dbt_duckdb()
        run_dbt(built.settings, ["run", "--select", "dim_customers"])
        release_dbt_duckdb()
        got = _df(built, "select customer_id, cast(scores_as_of_date as varchar) as d, scores_model_version as v, "
                         f"p_alive, behavioural_segment from gold.dim_customers where customer_id in ('{a}', '{b}', '{c}')")
        got = got.set_index("customer_id")
        assert got.loc[a, ["d", "v", "p_alive", "behavioural_segment"]].tolist() == ["2025-01-03", "v1", 0.13, "newest"]
        assert got.loc[b, ["d", "v", "p_alive", "behavioural_segment"]].tolist() == ["2025-01-03", "v3", 0.23, "only"]
        assert got.loc[c, ["d", "v", "p_alive"]].tolist() == ["2024-12-31", "v1", 0.31]
        assert pd.isna(got.loc[c, "behavioural_segment"])
    finally:
        with wh.connect() as con:
            for table, frame in (("customer_scores", scores), ("customer_segments", segments)):
                con.execute(f"delete from gold.{table} where customer_id in ('{a}', '{b}', '{c}') "
                            "and as_of_date between date '2024-12-31' and date '2025-01-03'")
        assert (wh.row_count("gold", "customer_scores"), wh.row_count("gold", "customer_segments")) == (n_scores, n_segments)
        release_dbt_duckdb()
        run_dbt(built.settings, ["run", "--select", "dim_customers"])
        release_dbt_duckdb()


def test_support_cases(built: Built):
    cases = _df(built, "select * from gold.fct_support_cases")
    assert cases["case_id"].is_unique
    closed = cases[cases["is_closed"]]
    assert (closed["resolution_hours"] >= 0).all() and closed["resolution_hours"].notna().all()
    assert cases["customer_id"].notna().mean() > 0.95


def test_customers_keep_their_id_when_new_data_arrives(built: Built, tmp_path):
    """Identity resolved 60 days before the world's end, then with all the data: an identifier's
    customer_id only changes when its customer merged with another one (new evidence), and then it
    takes the id of one of the merged customers — ids are never re-minted."""
    import datetime as dt

    from retailpulse.dbt_runner import run_dbt
    from retailpulse.warehouse import get_warehouse
    from tests.dbt_fixtures import _settings, load_bronze

    earlier = _settings(tmp_path)
    release_dbt_duckdb()
    load_bronze(earlier, built.world, frames=built.bronze.as_of(built.bronze.end - dt.timedelta(days=60)))
    run_dbt(earlier, ["seed"])
    run_dbt(earlier, ["run", "--select", "+customer_identity_map"])
    release_dbt_duckdb()
    sql = "select identifier_key, customer_id from gold.customer_identity_map where customer_id is not null"
    before = get_warehouse(earlier).query_df(sql)
    after = _df(built, sql)
    j = before.merge(after, on="identifier_key", suffixes=("_before", "_after"))
    assert len(j) == len(before) > 5_000  # no identifier of the earlier run is lost
    changed = j[j["customer_id_before"] != j["customer_id_after"]]
    # a change is a merge: the new id is an id the earlier run had already minted
    assert changed["customer_id_after"].isin(set(before["customer_id"])).all(), changed.head()
    # and every customer of the earlier run either kept its id or was merged into one that did
    survivors = set(after["customer_id"])
    assert changed["customer_id_before"].map(lambda c: c not in survivors).all()
    share = changed["customer_id_before"].nunique() / before["customer_id"].nunique()
    print(f"\n{before['customer_id'].nunique()} customers 60 days before the end; "
          f"{changed['customer_id_before'].nunique()} ({share:.2%}) merged into another with new data")
    assert share < 0.02


def _rows_differing(wh, schema: str, table: str, copy: str, key: str, skip: tuple[str, ...] = ()) -> int:  # noqa: ANN001
    """Rows of ``schema.table`` and ``copy`` (an earlier copy of it) that differ, joined on ``key``:
    floating columns with a relative tolerance (sums may differ in the last bits between two runs:
    parallel aggregation, window order), every other column exactly; ``skip``: columns not compared."""
    types = wh.query("select column_name, data_type from information_schema.columns "
                     "where table_schema = ? and table_name = ? order by ordinal_position", [schema, table])
    checks = []
    for c, ty in types:
        if c == key or c in skip:
            continue
        if ty.upper() in ("DOUBLE", "FLOAT", "REAL") or ty.upper().startswith("DECIMAL"):
            checks.append(f'abs(coalesce(a."{c}", 0) - coalesce(b."{c}", 0)) > 1e-6 * greatest(1, abs(a."{c}"))'
                          f' or ((a."{c}" is null) <> (b."{c}" is null))')
        else:
            checks.append(f'a."{c}" is distinct from b."{c}"')
    return wh.scalar(f'select count(*) from {schema}.{table} as a full outer join {copy} as b '
                     f'on a."{key}" = b."{key}" where a."{key}" is null or b."{key}" is null or '
                     + " or ".join(f"({x})" for x in checks))


DEVICE_COLUMNS = "user_pseudo_id, first_seen_at, last_seen_at, user_id_count, login_user_id, user_id_first_seen_at"


def test_daily_runs_equal_a_full_refresh(built: Built):
    """Gold after the incremental path == gold after rebuilding every model from scratch."""
    from retailpulse.dbt_runner import run_dbt
    from retailpulse.warehouse import get_warehouse

    wh = get_warehouse(built.settings)
    with wh.connect() as con:
        con.execute("create schema if not exists ops")
        for t in GOLD_COMPARED:
            con.execute(f"create or replace table ops.incremental_{t} as select * from gold.{t}")
        # the incremental devices model, every column but its high-water mark; the exact components
        con.execute(f"create or replace table ops.incremental_devices as select {DEVICE_COLUMNS} "
                    "from silver.int_identity__ga4_devices")
        con.execute("create or replace table ops.incremental_components as select * from silver.int_identity__exact_components")
        con.execute("create or replace table ops.incremental_credits as select * from silver.int_attribution__credits")
        # the build at T recomputed the credits of the orders whose touchpoints changed since the
        # first run at T-6 (late GA4 events, new orders and sessions, refunds) and kept the others
        runs = dict(con.execute("select processed_at, count(distinct order_id) from silver.int_attribution__credits "
                                "group by 1 order by 1").fetchall())
        # likewise the stitched sessions (sessions rewritten upstream, or whose identifiers'
        # resolution changed) and the resolved identities (written only where they changed)
        stitch_runs = dict(con.execute("select stitched_at, count(*) from silver.int_sessions__stitched "
                                       "group by 1 order by 1").fetchall())
        resolve_runs = dict(con.execute("select changed_at, count(*) from silver.int_identity__resolved "
                                        "group by 1 order by 1").fetchall())
    before = {t: wh.row_count("gold", t) for t in GOLD_COMPARED}
    t0 = time.monotonic()
    release_dbt_duckdb()
    run_dbt(built.settings, ["run", "--full-refresh", "--select", "int_ga4__events+", "int_identity__exact_components+"])
    release_dbt_duckdb()
    print(f"\nfull refresh took {time.monotonic() - t0:.1f}s")
    diffs = {}
    for t, key in GOLD_COMPARED.items():
        assert wh.row_count("gold", t) == before[t], t
        # changed_at of the identity map: when the daily run changed the identifier (the full refresh: now)
        if n := _rows_differing(wh, "gold", t, f"ops.incremental_{t}", key,
                                skip=("changed_at",) if t == "customer_identity_map" else ()):
            diffs[t] = n
    assert not diffs, f"gold differs between daily runs and a full refresh: {diffs}"
    devices = f"select {DEVICE_COLUMNS} from silver.int_identity__ga4_devices"
    assert wh.row_count("ops", "incremental_devices") > 1_000
    assert wh.scalar(f"select count(*) from (({devices}) except all (select * from ops.incremental_devices)) as d") == 0
    assert wh.scalar(f"select count(*) from ((select * from ops.incremental_devices) except all ({devices})) as d") == 0
    assert len(runs) == 2, runs
    kept, recomputed = runs.values()
    print(f"credits at T: {kept} orders kept from T-6, {recomputed} recomputed")
    assert kept > 1_000 and 100 < recomputed < kept, runs
    for name, counts in (("stitched sessions", stitch_runs), ("resolved identifiers", resolve_runs)):
        assert len(counts) == 2, (name, counts)
        kept, rewritten = counts.values()
        print(f"{name} at T: {kept} kept from T-6, {rewritten} rewritten")
        assert kept > 1_000 and 50 < rewritten < kept, (name, counts)
    assert wh.row_count("ops", "incremental_credits") == wh.row_count("silver", "int_attribution__credits") > 5_000
    # every column but the run that wrote the row (time_decay credits up to the last bits)
    assert _rows_differing(wh, "silver", "int_attribution__credits", "ops.incremental_credits", "attribution_id",
                           skip=("processed_at",)) == 0
    components = "select * from silver.int_identity__exact_components"
    assert wh.row_count("ops", "incremental_components") > 5_000
    assert wh.scalar(f"select count(*) from (({components}) except all (select * from ops.incremental_components)) as d") == 0
    assert wh.scalar(f"select count(*) from ((select * from ops.incremental_components) except all ({components})) as d") == 0


def test_the_identity_map_rewrites_only_identifiers_whose_resolution_changed(built: Built):
    """A daily build of gold.customer_identity_map maps again only the identifiers that
    int_identity__resolved changed since the map's newest changed_at; the other rows are left as
    they are (here: a tampered row stays tampered), and the changed one equals its resolution."""
    from retailpulse.dbt_runner import release_dbt_duckdb, run_dbt
    from retailpulse.warehouse import get_warehouse

    wh = get_warehouse(built.settings)
    changed, untouched = [r[0] for r in wh.query(
        "select identifier_value from gold.customer_identity_map where identifier_type = 'stripe_customer' "
        "and customer_id is not null order by identifier_key limit 2")]
    with wh.connect() as con:
        con.execute("update gold.customer_identity_map set match_rule = 'tampered' "
                    "where identifier_type = 'stripe_customer' and identifier_value in (?, ?)", [changed, untouched])
        # the resolution of one of them changed in a later run than the map has seen
        con.execute("update silver.int_identity__resolved set changed_at = "
                    "(select max(changed_at) from gold.customer_identity_map) + interval 1 second "
                    "where identifier_type = 'stripe_customer' and identifier_value = ?", [changed])
    release_dbt_duckdb()
    run_dbt(built.settings, ["run", "--select", "customer_identity_map"])
    release_dbt_duckdb()
    rows = dict(wh.query("select identifier_value, match_rule from gold.customer_identity_map "
                         "where identifier_type = 'stripe_customer' and identifier_value in (?, ?)", [changed, untouched]))
    resolved_rule = wh.scalar("select match_rule from silver.int_identity__resolved "
                              "where identifier_type = 'stripe_customer' and identifier_value = ?", [changed])
    assert rows == {changed: resolved_rule, untouched: "tampered"}
    run_dbt(built.settings, ["run", "--full-refresh", "--select", "customer_identity_map"])
    release_dbt_duckdb()
    assert wh.scalar("select count(*) from gold.customer_identity_map where match_rule = 'tampered'") == 0
