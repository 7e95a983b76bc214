"""The sandbox world generator: determinism, the on-disk contract, and consistency of every source
with the hidden truth (docs/sandbox_world_format.md). One small world per session."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sandbox import world as W
from sandbox.world import World, ensure_world, generate_world

SEED = 42
FX = {"usd": 1.0, "eur": 1.08, "gbp": 1.27}


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory) -> Path:
    return generate_world("small", SEED, tmp_path_factory.mktemp("worlds"))


@pytest.fixture(scope="session")
def world(world_dir) -> World:
    return World.load(world_dir)


@pytest.fixture(scope="session")
def df(world):
    cache = {}

    def get(name: str) -> pd.DataFrame:
        if name not in cache:
            cache[name] = world.table(name).to_pandas()
        return cache[name]
    return get


def _hashes(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def _latest(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["Id", "SystemModstamp"]).groupby("Id").tail(1)


# ------------------------------------------------------------------------------------- contract
def test_files_meta_and_counts(world_dir, world):
    meta = json.loads((world_dir / "world.json").read_text())
    assert meta["size"] == "small" and meta["seed"] == SEED and meta["format_version"] == W.FORMAT_VERSION
    assert meta["start"] == "2024-01-01" and meta["end"] == "2025-12-31" and meta["horizon_days"] == 365
    assert meta["fx_to_usd"] == {"USD": 1.0, "EUR": 1.08, "GBP": 1.27}
    assert meta["stripe_api_key"] == f"sk_test_sandbox_{SEED}"
    for key in ("salesforce_session_id", "google_ads_developer_token", "google_ads_customer_id",
                "meta_access_token", "meta_account_id"):
        assert meta[key]
    assert len(meta["channels"]) == 7 and len(meta["campaigns"]) == world.campaigns.num_rows
    for name in W.SOURCE_TABLES:
        assert (world_dir / f"{name}.parquet").exists()
        assert getattr(world, name).num_rows == meta["counts"][name] > 0
    for name in W.TRUTH_TABLES:
        assert (world_dir / "truth" / f"{name}.parquet").exists()
        assert world.truth(name).num_rows == meta["counts"][name] > 0
    assert world.truth("people").num_rows == 3000
    assert world.truth("people") is world.truth_people      # cached, both spellings
    assert 100_000 < meta["counts"]["ga4_events"] < 400_000


def test_column_types(world):
    ts = pa.timestamp("us", tz="UTC")
    for name in W.SOURCE_TABLES:
        t = getattr(world, name)
        if name != "campaigns":
            assert t.schema.field("_visible_at").type == ts, name
        for f in t.schema:
            if f.name.endswith("_at") or f.name in ("CreatedDate", "LastModifiedDate", "SystemModstamp"):
                assert f.type == ts, (name, f.name)
    for name in ("stripe_customers", "stripe_charges", "stripe_refunds"):
        assert getattr(world, name).schema.field("created").type == pa.int64()
    ev = world.ga4_events.schema
    assert ev.field("event_timestamp").type == pa.int64() and ev.field("event_date").type == pa.string()
    assert world.google_ads_campaign_daily.schema.field("campaign_id").type == pa.int64()
    assert world.meta_campaign_daily.schema.field("campaign_id").type == pa.string()
    contact = set(world.sf_contact.column_names)
    assert {"Id", "AccountId", "FirstName", "LastName", "Email", "Phone", "MobilePhone", "MailingCountry",
            "HasOptedOutOfEmail", "LeadSource", "Stripe_Customer_Id__c", "Web_User_Id__c", "IsDeleted",
            "CreatedDate", "LastModifiedDate", "SystemModstamp", "_visible_at"} <= contact
    assert set(world.truth_orders.column_names) >= {
        "order_id", "person_id", "ordered_at", "currency", "amount_minor", "amount_usd", "channel",
        "is_tracked_by_ga4", "is_failed", "refunded_minor", "refunded_at", "in_observation"}


def test_deterministic_bytes(world_dir, tmp_path):
    again = generate_world("small", SEED, tmp_path)
    a, b = _hashes(again), _hashes(world_dir)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    other = W.build_tables("small", SEED + 1, W.DEFAULT_START, W.DEFAULT_END, 365)[1]["truth_orders"]
    assert other.num_rows != World.load(world_dir).truth_orders.num_rows or \
        other.column("amount_minor") != World.load(world_dir).truth_orders.column("amount_minor")


def test_ensure_world_reuses_and_atomic_failure(world_dir, tmp_path, monkeypatch):
    base = world_dir.parent
    stamp = (world_dir / "world.json").stat().st_mtime_ns
    assert ensure_world(base, "small", SEED) == world_dir
    assert (world_dir / "world.json").stat().st_mtime_ns == stamp          # not regenerated

    calls = {"n": 0}
    real = W._write_parquet

    def boom(table, path):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        real(table, path)
    monkeypatch.setattr(W, "_write_parquet", boom)
    with pytest.raises(OSError):
        generate_world("small", 7, tmp_path)
    assert list(tmp_path.iterdir()) == []          # no half world, no temp dir left behind


# ------------------------------------------------------------------------------------- stripe
def test_stripe_reconciles_with_truth_orders(df, world):
    ch, re, orders = df("stripe_charges"), df("stripe_refunds"), df("truth_orders")
    ok = ch[ch.status == "succeeded"]
    fx = ok.currency.map(FX)
    charged_usd = (ok.amount * fx).sum() / 100
    ref = re.merge(ok[["id", "currency"]], left_on="charge", right_on="id", suffixes=("", "_c"))
    assert len(ref) == len(re)                                          # every refund hits a paid charge
    refunded_usd = (ref.amount * ref.currency.map(FX)).sum() / 100
    obs = orders[orders.in_observation & ~orders.is_failed]
    truth_usd = ((obs.amount_minor - obs.refunded_minor) * obs.currency.map(FX)).sum() / 100
    assert charged_usd - refunded_usd == pytest.approx(truth_usd, abs=0.01)
    assert (obs.amount_usd.sum()) == pytest.approx(charged_usd, abs=0.01)
    assert truth_usd > 300_000                                          # a real business, not a stub

    # every charge belongs to an observed order with the same amount and currency
    m = ch.merge(orders, left_on="metadata_order_id", right_on="order_id", how="left", validate="many_to_one")
    assert m.order_id.notna().all() and m.in_observation.all()
    assert (m.amount == m.amount_minor).all() and (m.currency_x == m.currency_y).all()
    # one successful charge per paid order; abandoned orders only have a failed charge
    assert ok.metadata_order_id.is_unique
    assert set(ok.metadata_order_id) == set(obs.order_id)
    failed = ch[ch.status == "failed"]
    assert 0.02 < len(failed) / len(ch) < 0.045
    assert failed.failure_code.notna().all() and ok.failure_code.isna().all()
    assert (~failed.paid).all() and ok.paid.all()
    abandoned = orders[orders.in_observation & orders.is_failed]
    assert len(abandoned) > 0 and set(abandoned.order_id) <= set(failed.metadata_order_id)
    assert set(abandoned.payment_outcome) == {"abandoned"}
    retried = orders[orders.in_observation & (orders.payment_outcome == "retried_succeeded")]
    assert len(retried) > len(abandoned) and set(retried.order_id) <= set(failed.metadata_order_id)
    # currencies and refunds
    assert set(ch.currency) == {"usd", "eur", "gbp"}
    assert ch.currency.value_counts(normalize=True).min() > 0.1
    assert 0.035 < len(re) / len(ok) < 0.07
    full = ref.merge(ok[["id", "amount"]], left_on="charge", right_on="id")
    partial_share = (full.amount_x < full.amount_y).mean()
    assert 0.15 < partial_share < 0.5
    lag_days = (re.created.values - ok.set_index("id").loc[re.charge, "created"].values) / 86400
    assert lag_days.min() >= 2 and lag_days.max() <= 20
    # timestamps and visibility
    assert (ch._visible_at.astype("int64") // 10**6 == ch.created).all() if ch._visible_at.dtype.unit == "us" else True


def test_stripe_customers(df):
    cus, ch, people = df("stripe_customers"), df("stripe_charges"), df("truth_people")
    assert cus.id.is_unique and cus.id.str.match(r"^cus_[0-9A-Za-z]{14}$").all()
    assert ch.id.is_unique and ch.id.str.startswith("ch_").all()
    assert set(ch.customer) <= set(cus.id)
    first_charge = ch.groupby("customer").created.min()
    assert (cus.set_index("id").loc[first_charge.index, "created"] <= first_charge).all()
    ids = df("truth_identity")
    cp = ids[ids.source == "stripe_customer"].set_index("source_id").person_id
    per_person = cp.value_counts()
    assert (per_person == 2).sum() > 0.02 * len(per_person) and per_person.max() == 2
    # the guest-checkout customer of a person uses a different e-mail spelling
    two = cp[cp.isin(per_person[per_person == 2].index)]
    emails = cus.set_index("id").loc[two.index, "email"].groupby(two.values).nunique()
    assert (emails == 2).mean() > 0.9


# ------------------------------------------------------------------------------------- GA4
def test_ga4_purchases_cover_most_orders(df):
    ev, orders = df("ga4_events"), df("truth_orders")
    pur = ev[ev.event_name == "purchase"]
    paid = orders[orders.in_observation & ~orders.is_failed]
    share = len(pur) / len(paid)
    assert 0.85 <= share <= 0.90
    assert pur.transaction_id.is_unique and pur.transaction_id.notna().all()
    m = pur.merge(orders, left_on="transaction_id", right_on="order_id", validate="one_to_one")
    assert len(m) == len(pur) and (~m.is_failed).all() and m.is_tracked_by_ga4.all()
    assert np.allclose(m.value, m.amount_minor / 100) and (m.currency_x == m.currency_y.str.upper()).all()
    assert paid.is_tracked_by_ga4.sum() == len(pur)
    # purchase event 2 s after the order time; items sum to the value
    assert ((m.event_timestamp - m.ordered_at.astype("int64")).abs() < 10 * 10**6).all()
    items = m.items_json.map(json.loads)
    assert np.allclose(items.map(lambda it: sum(i["price"] * i["quantity"] for i in it)), m.value)
    assert ev[ev.event_name == "view_item"].items_json.notna().all()


def test_ga4_event_rules(df):
    ev = df("ga4_events")
    assert set(ev.event_name) == {"first_visit", "session_start", "page_view", "view_item", "add_to_cart",
                                  "begin_checkout", "purchase", "login"}
    assert set(ev.platform) == {"WEB", "IOS", "ANDROID"}
    assert (ev.event_timestamp.diff().dropna() >= 0).all()                # written in time order
    assert (ev.event_date == pd.to_datetime(ev.event_timestamp, unit="us").dt.strftime("%Y%m%d")).all()
    fv = ev[ev.event_name == "first_visit"]
    assert fv.user_pseudo_id.is_unique                                   # once per device
    assert set(fv.user_pseudo_id) == set(ev.user_pseudo_id)
    ss = ev[ev.event_name == "session_start"]
    assert not ss.duplicated(["user_pseudo_id", "ga_session_id"]).any()
    n_sessions = ss.groupby("user_pseudo_id").ga_session_number.agg(["min", "max", "count"])
    assert (n_sessions["min"] == 1).all() and (n_sessions["max"] == n_sessions["count"]).all()
    assert (fv.ga_session_number == 1).all()
    # most sessions never buy; several devices per person; app and web
    assert len(ev[ev.event_name == "purchase"]) / len(ss) < 0.3
    # user_id: set only after a login on that device
    dev_first_uid = ev[ev.user_id.notna()].groupby("user_pseudo_id").event_timestamp.min()
    dev_first_login = ev[ev.event_name == "login"].groupby("user_pseudo_id").event_timestamp.min()
    assert (dev_first_uid.index.isin(dev_first_login.index)).all()
    assert (dev_first_uid >= dev_first_login.loc[dev_first_uid.index]).all()
    assert ev.groupby("user_pseudo_id").user_id.nunique().max() == 1    # a device belongs to one person
    # anonymous sessions before the first login keep user_id null
    before = ev.merge(dev_first_login.rename("fl"), left_on="user_pseudo_id", right_index=True)
    assert before[before.event_timestamp < before.fl].user_id.isna().all()
    assert (before.event_timestamp < before.fl).sum() > 1000
    # click ids and attribution
    ps = ev[(ev.medium == "cpc") & (ev.event_name == "session_start")]
    assert ps.gclid.notna().all() and ps.gclid.is_unique
    social_landing = ev[(ev.medium == "paid_social") & (ev.event_name == "page_view") & (ev.platform == "WEB")]
    assert social_landing.page_location.str.contains("fbclid=").any()
    assert ev[ev.platform != "WEB"].page_location.isna().all()
    assert ev[ev.platform == "WEB"].page_location.str.startswith("https://").all()


def test_late_events(df):
    ev = df("ga4_events")
    delay = (ev._visible_at.astype("datetime64[us, UTC]").astype("int64") - ev.event_timestamp) / 86_400e6
    assert (delay > 0).all()
    late = delay >= 1
    assert 0.03 < late.mean() < 0.08
    assert delay.max() <= 3.0


# ------------------------------------------------------------------------------------- Salesforce
def test_crm_versions_and_deletes(df):
    c = df("sf_contact")
    versions = c.groupby("Id").size()
    assert (versions > 1).sum() > 50
    assert (c.SystemModstamp == c._visible_at).all() and (c.LastModifiedDate <= c.SystemModstamp).all()
    assert (c.CreatedDate <= c.SystemModstamp).all()
    assert not c.duplicated(["Id", "SystemModstamp"]).any()
    latest = _latest(c)
    assert 0.004 < latest.IsDeleted.mean() < 0.03
    assert latest.HasOptedOutOfEmail.mean() > 0.05
    first = c.sort_values("SystemModstamp").groupby("Id").head(1)
    assert first.HasOptedOutOfEmail.mean() < latest.HasOptedOutOfEmail.mean()   # opt-outs arrive later
    assert (c.CreatedDate.dt.microsecond == 0).all()
    assert c.Id.str.len().eq(18).all() and c.Id.str.startswith("003").all()
    # filled custom fields
    assert 0.5 < latest.Stripe_Customer_Id__c.notna().mean() < 0.7
    assert 0.6 < latest.Web_User_Id__c.notna().mean() < 0.8
    cases = df("sf_case")
    last_case = _latest(cases)
    assert set(last_case.Status) >= {"New", "Working", "Closed"}
    closed = last_case[last_case.Status == "Closed"]
    assert closed.IsClosed.all() and closed.ClosedDate.notna().all()
    assert (cases.groupby("Id").size() > 1).mean() > 0.5
    assert set(cases.ContactId) <= set(c.Id) and set(cases.AccountId) <= set(df("sf_account").Id)
    leads = _latest(df("sf_lead"))
    conv = leads[leads.IsConverted]
    assert len(conv) > 100 and conv.ConvertedContactId.isin(c.Id).all()
    assert (conv.Status == "Closed - Converted").all()
    opp = _latest(df("sf_opportunity"))
    assert set(opp.StageName) >= {"Prospecting", "Closed Won", "Closed Lost"}
    assert set(opp.AccountId) <= set(df("sf_account").Id)
    assert set(c.AccountId) <= set(df("sf_account").Id)


def test_crm_identity_mess(df):
    c, ids, people = df("sf_contact"), df("truth_identity"), df("truth_people")
    cp = ids[ids.source == "sf_contact"].set_index("source_id").person_id
    per_person = cp.value_counts()
    assert 0.03 < (per_person > 1).mean() < 0.08                     # duplicate contacts
    latest = _latest(c).set_index("Id")
    p = people.set_index("person_id")
    email = latest.Email.dropna()
    canon = p.loc[cp.loc[email.index], "email"].values
    assert (email.str.startswith(" ") & email.str.endswith(" ")).sum() > 10
    assert ((email != canon) & (email.str.strip().str.lower() == canon)).mean() > 0.1
    typo = latest.FirstName != p.loc[cp.loc[latest.index], "first_name"].values
    assert 0.01 < typo.mean() < 0.1
    phones = latest.Phone.dropna()
    assert phones.str.match(r"^\(\d{3}\) \d{3}-\d{4}$").any() and phones.str.match(r"^\+1 \d{3} \d{3} \d{4}$").any()
    assert phones.str.match(r"^\d{10}$").any()
    # every contact phone is the person's number in some format
    digits = phones.str.replace(r"\D", "", regex=True)
    pe = p.loc[cp.loc[phones.index]]
    known = pe.phone.str.replace("+", "").fillna("") + "|" + pe.previous_phone.fillna("").str.replace("+", "")
    tail9 = digits.str[-9:]
    assert np.mean([t in k for t, k in zip(tail9, known)]) > 0.99


def test_identity_truth_covers_every_source_id(df):
    ids = df("truth_identity")
    assert set(ids.source) == {"stripe_customer", "sf_contact", "sf_lead", "ga4_user_id",
                               "ga4_user_pseudo_id", "email"}
    assert not ids.duplicated(["source", "source_id"]).any()
    by = {s: g.set_index("source_id").person_id for s, g in ids.groupby("source")}
    ev = df("ga4_events")
    assert set(df("stripe_customers").id) == set(by["stripe_customer"].index)
    assert set(df("sf_contact").Id) == set(by["sf_contact"].index)
    assert set(df("sf_lead").Id) == set(by["sf_lead"].index)
    assert by["stripe_customer"].notna().all() and by["sf_contact"].notna().all()
    assert by["sf_lead"].isna().any() and by["sf_lead"].notna().any()      # anonymous prospects: null person
    assert set(ev.user_id.dropna()) <= set(by["ga4_user_id"].index)
    assert set(df("sf_contact").Web_User_Id__c.dropna()) <= set(by["ga4_user_id"].index)
    logged = ev[ev.user_id.notna()][["user_pseudo_id", "user_id"]].drop_duplicates()
    assert set(logged.user_pseudo_id) <= set(by["ga4_user_pseudo_id"].index)
    assert (by["ga4_user_pseudo_id"].loc[logged.user_pseudo_id].values == by["ga4_user_id"].loc[logged.user_id].values).all()
    # orders: stripe customer and GA4 purchase device belong to the order's person
    orders = df("truth_orders").set_index("order_id")
    ch = df("stripe_charges")
    assert (by["stripe_customer"].loc[ch.customer].values == orders.loc[ch.metadata_order_id, "person_id"].values).all()
    pur = ev[ev.event_name == "purchase"]
    assert (by["ga4_user_pseudo_id"].loc[pur.user_pseudo_id].values == orders.loc[pur.transaction_id, "person_id"].values).all()
    # Salesforce custom fields point at the same person
    latest = _latest(df("sf_contact"))
    s = latest[latest.Stripe_Customer_Id__c.notna()]
    assert (by["stripe_customer"].loc[s.Stripe_Customer_Id__c].values == by["sf_contact"].loc[s.Id].values).all()
    u = latest[latest.Web_User_Id__c.notna()]
    assert (by["ga4_user_id"].loc[u.Web_User_Id__c].values == by["sf_contact"].loc[u.Id].values).all()
    # e-mails: every normalised e-mail in Stripe and the CRM maps to its person
    emails = pd.concat([df("stripe_customers").email, df("sf_contact").Email]).dropna().str.strip().str.lower()
    assert set(emails) <= set(by["email"].index)
    # devices: people have 1-3
    dev_per_person = by["ga4_user_pseudo_id"].value_counts()
    assert dev_per_person.max() == 3 and (dev_per_person > 1).mean() > 0.2


# ------------------------------------------------------------------------------------- truth
def test_heterogeneous_customers(df):
    orders, people = df("truth_orders"), df("truth_people")
    obs = orders[orders.in_observation & ~orders.is_failed]
    per = obs.groupby("person_id").size()
    assert per.max() >= 12
    assert 0.45 < (per == 1).mean() < 0.8                                 # many one-time buyers
    assert (per >= 5).sum() > 50                                          # a loyal tail
    assert 35 <= obs.amount_usd.median() <= 80
    assert people.purchase_rate.std() > people.purchase_rate.mean() * 0.8
    assert people.dropout_prob.between(0, 1).all() and people.spend_scale.gt(0).all()
    # growing business: more customers acquired in the second year
    acq = people.acquired_at.dt.year.value_counts()
    assert acq[2025] > 1.3 * acq[2024]


def test_future_truth(df):
    orders, hz, people = df("truth_orders"), df("truth_person_horizon"), df("truth_people")
    fut = orders[~orders.in_observation]
    end = pd.Timestamp("2026-01-01", tz="UTC")
    assert len(fut) > 500 and (fut.ordered_at >= end).all()
    assert (fut.ordered_at < end + pd.Timedelta(days=365)).all()
    ok = fut[~fut.is_failed]
    n90 = ok[ok.ordered_at < end + pd.Timedelta(days=90)].groupby("person_id").size()
    h = hz.set_index("person_id")
    assert (h.purchases_next_90d.reindex(n90.index) == n90).all()
    assert h.purchases_next_365d.sum() == len(ok)
    net = ((ok.amount_minor - ok.refunded_minor) * ok.currency.map(FX) / 100).sum()
    assert h.revenue_next_365d_usd.sum() == pytest.approx(net, abs=0.005 * len(h))      # rounded per person
    p = people.set_index("person_id")
    assert (p.is_churned_at_end == (h.purchases_next_90d == 0)).all()
    # nobody dropped out before the end buys afterwards
    dead = p.dropped_out_at.notna() & (p.dropped_out_at < end)
    assert not h.is_alive_at_end[dead].any()
    assert h.purchases_next_365d[dead].sum() == 0
    assert 0.2 < h.is_alive_at_end.mean() < 0.9
    # a dropped-out person's last order is the drop-out purchase
    last = orders.groupby("person_id").ordered_at.max()
    d = p.dropped_out_at.dropna()
    assert (last.loc[d.index] == d).all()


def test_ads_spend_drives_paid_acquisition(df, world):
    g, m, people, camps = df("google_ads_campaign_daily"), df("meta_campaign_daily"), df("truth_people"), df("campaigns")
    assert g.duplicated(["campaign_id", "date"]).any()                     # restatements
    gl = g.sort_values("_visible_at").groupby(["campaign_id", "date"]).tail(1)
    lag = (gl._visible_at - pd.to_datetime(gl.date).dt.tz_localize("UTC")).dt.days
    assert lag.max() <= 8
    first = g.sort_values("_visible_at").groupby(["campaign_id", "date"]).head(1)
    assert first.cost_micros.sum() < gl.cost_micros.sum()
    assert gl.clicks.sum() > 0 and (gl.impressions >= gl.clicks).all()
    assert set(gl.campaign_id.astype(str)) <= set(camps.campaign_id)
    ml = m.sort_values("_visible_at").groupby(["campaign_id", "date_start"]).tail(1)
    assert ml.spend.sum() > 10_000 and set(ml.campaign_id) <= set(camps.campaign_id)
    # monthly paid-search spend vs new paid-search customers
    gl = gl.assign(month=pd.to_datetime(gl.date).dt.to_period("M"))
    spend = gl.groupby("month").cost_micros.sum() / 1e6
    ps = people[people.acquisition_channel == "paid_search"]
    new = ps.groupby(ps.acquired_at.dt.tz_localize(None).dt.to_period("M")).size()
    both = pd.concat([spend, new], axis=1).dropna()
    assert both.corr().iloc[0, 1] > 0.6
    assert set(people.acquisition_channel) == {"organic_search", "paid_search", "paid_social", "email", "direct",
                                               "referral", "affiliate"}
    # every acquisition campaign exists in the campaigns table and matches the channel
    pc_ = people.merge(camps, left_on="acquisition_campaign", right_on="campaign_id")
    assert len(pc_) == len(people) and (pc_.acquisition_channel == pc_.channel).all()
    assert set(camps.platform) == {"google_ads", "meta", "email", "affiliate", "none"}


def test_world_load_api(world_dir):
    w = World.load(world_dir)
    assert w.path == world_dir and w.meta["seed"] == SEED
    assert "stripe_charges" in w.tables and isinstance(w.stripe_charges, pa.Table)
    with pytest.raises(AttributeError):
        w.no_such_table
    with pytest.raises(FileNotFoundError):
        World.load(world_dir / "missing")


def test_chunked_event_generation_is_identical(world, monkeypatch):
    """Big worlds build GA4 events in time-ordered chunks; the result must not depend on chunking."""
    from sandbox import world_ga4
    monkeypatch.setattr(world_ga4, "CHUNK_EVENTS", 7_000)
    tables, _, _ = W.build_tables("small", SEED, W.DEFAULT_START, W.DEFAULT_END, 365)
    chunked = tables["ga4_events"]
    assert chunked.column("event_timestamp").num_chunks > 10
    plain = W._plain(chunked)
    assert plain.num_rows == world.ga4_events.num_rows
    assert plain.equals(world.ga4_events)


def test_ensure_world_regenerates_other_format_and_cli(world_dir, tmp_path, capsys):
    import shutil
    stale = tmp_path / "worlds" / f"small-{SEED}"
    shutil.copytree(world_dir, stale)
    meta = json.loads((stale / "world.json").read_text())
    meta["format_version"] = W.FORMAT_VERSION - 1
    (stale / "world.json").write_text(json.dumps(meta))
    path = ensure_world(tmp_path / "worlds", "small", SEED)
    assert path == stale and World.load(path).meta["format_version"] == W.FORMAT_VERSION
    assert _hashes(path) == _hashes(world_dir)
    assert not [p for p in (tmp_path / "worlds").iterdir() if p.name.startswith(".small") and p.is_dir()]

    assert W.main(["--size", "small", "--seed", "5", "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == str(tmp_path / "cli" / "small-5")
    assert "ga4_events" in out and "truth_orders" in out
    assert W.main(["--size", "small", "--out", str(tmp_path / "cli"), "--start", "2025-02-01",
                   "--end", "2025-01-01", "--quiet"]) == 1
