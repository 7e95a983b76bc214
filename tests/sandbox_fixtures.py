"""A tiny hand-made world in the on-disk format of docs/sandbox_world_format.md.

Used by the sandbox API tests when ``sandbox.world.generate_world`` is not available (and by
tests that need exact, known rows). Deterministic; small, but big enough to page (Salesforce
contacts > 2,000 versions, exactly 100 Stripe customers).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

UTC = dt.timezone.utc
TS = pa.timestamp("us", tz="UTC")
START = dt.date(2025, 1, 1)
END = dt.date(2025, 3, 31)
US = 1_000_000
DAY_US = 86400 * US


def _us(d: dt.datetime | dt.date) -> int:
    if not isinstance(d, dt.datetime):
        d = dt.datetime(d.year, d.month, d.day, tzinfo=UTC)
    return int(d.timestamp()) * US + d.microsecond


def _ts(us: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(np.asarray(us, dtype=np.int64), mask=mask).cast(TS)


def _sfid(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{'0' * 3}{i:09d}AAA"[:18].ljust(18, "A") for i in range(n)]


def make_tiny_world(out_dir: Path, seed: int = 7) -> Path:
    """Write the world to ``out_dir`` (created) and return it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t0 = _us(START)
    t_end = _us(END) + DAY_US - 1
    span = t_end - t0

    # --- Stripe customers: exactly 100 -------------------------------------------------------
    n_cu = 100
    cu_created_us = np.sort(t0 + rng.integers(0, span // 2, n_cu))
    cu_created = cu_created_us // US
    cu_ids = [f"cus_T{i:05d}" for i in range(n_cu)]
    tables: dict[str, pa.Table] = {}
    tables["stripe_customers"] = pa.table({
        "id": cu_ids,
        "email": [f"person{i}@example.com" for i in range(n_cu)],
        "name": [f"Person {i}" for i in range(n_cu)],
        "phone": [None if i % 5 == 0 else f"+1555000{i:04d}" for i in range(n_cu)],
        "created": pa.array(cu_created, pa.int64()),
        "address_country": [["US", "DE", "GB"][i % 3] for i in range(n_cu)],
        "_visible_at": _ts(cu_created * US),
    })

    # --- charges ------------------------------------------------------------------------------
    n_ch = 350
    ch_cust = rng.integers(0, n_cu, n_ch)
    ch_created = (cu_created_us[ch_cust] + rng.integers(60 * US, span // 2, n_ch)) // US
    # a few charges sharing one second, to exercise the id tie-break
    ch_created[10:13] = ch_created[10]
    failed = rng.random(n_ch) < 0.08
    cur = np.array(["usd", "eur", "gbp"])[rng.integers(0, 3, n_ch)]
    amount = rng.integers(500, 30000, n_ch)
    tables["stripe_charges"] = pa.table({
        "id": [f"ch_T{i:06d}" for i in range(n_ch)],
        "customer": [cu_ids[c] for c in ch_cust],
        "amount": pa.array(amount, pa.int64()),
        "currency": cur.tolist(),
        "status": np.where(failed, "failed", "succeeded").tolist(),
        "paid": (~failed).tolist(),
        "failure_code": [("card_declined" if f else None) for f in failed],
        "created": pa.array(ch_created, pa.int64()),
        "description": [f"Order ord_T{i:06d}" for i in range(n_ch)],
        "metadata_order_id": [f"ord_T{i:06d}" for i in range(n_ch)],
        "receipt_email": [f"person{c}@example.com" for c in ch_cust],
        "_visible_at": _ts(ch_created * US),
    })

    # --- refunds: some partial, a couple of charges refunded twice -----------------------------
    ok = np.flatnonzero(~failed)
    pick = rng.choice(ok, 40, replace=False)
    ref_charge = np.concatenate([pick, pick[:3]])
    ref_amount = np.concatenate([amount[pick] // np.where(np.arange(40) % 2 == 0, 1, 2), amount[pick[:3]] // 4])
    ref_amount[:3] = amount[pick[:3]] // 2  # the double-refunded ones: half, then a quarter
    delay = rng.integers(2 * DAY_US, 20 * DAY_US, len(ref_charge)) // US
    ref_created = ch_created[ref_charge] + delay
    ref_created[40:] = ref_created[:3] + 3 * 86400
    tables["stripe_refunds"] = pa.table({
        "id": [f"re_T{i:05d}" for i in range(len(ref_charge))],
        "charge": [f"ch_T{c:06d}" for c in ref_charge],
        "amount": pa.array(ref_amount, pa.int64()),
        "currency": cur[ref_charge].tolist(),
        "created": pa.array(ref_created, pa.int64()),
        "reason": ["requested_by_customer"] * len(ref_charge),
        "status": ["succeeded"] * len(ref_charge),
        "_visible_at": _ts(ref_created * US),
    })

    # --- Salesforce: 2,600 contacts, 40% with 2 versions (> 2,000 records), some deleted ---------
    def sf_versions(n: int, prefix: str, n_versions_p: float) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        ids = _sfid(prefix, n)
        created = t0 + rng.integers(0, span - 10 * DAY_US, n)
        two = rng.random(n) < n_versions_p
        rows_id, rows_created, rows_mod, rows_ver = [], [], [], []
        for i in range(n):
            rows_id.append(i)
            rows_created.append(created[i])
            rows_mod.append(created[i])
            rows_ver.append(0)
            if two[i]:
                rows_id.append(i)
                rows_created.append(created[i])
                rows_mod.append(created[i] + int(rng.integers(DAY_US, 9 * DAY_US)))
                rows_ver.append(1)
        return ids, np.array(rows_id), np.array(rows_created), np.array(rows_mod), np.array(rows_ver)

    acct_ids = _sfid("001", 200)
    contact_ids = _sfid("003", 2600)
    ids, rid, rcr, rmod, rver = sf_versions(2600, "003", 0.4)
    n = len(rid)
    deleted = (rver == 1) & (rid % 10 == 0)
    tables["sf_contact"] = pa.table({
        "Id": [ids[i] for i in rid],
        "CreatedDate": _ts(rcr), "LastModifiedDate": _ts(rmod), "SystemModstamp": _ts(rmod),
        "IsDeleted": deleted.tolist(),
        "AccountId": [acct_ids[i % 200] for i in rid],
        "FirstName": [f"First{i}" for i in rid],
        "LastName": [f"Last{i}" + ("x" if v else "") for i, v in zip(rid, rver)],
        "Email": [f"Person{i}@Example.com " if i % 7 == 0 else f"person{i}@example.com" for i in rid],
        "Phone": [None if i % 4 == 0 else f"(555) 000-{i:04d}" for i in rid],
        "MobilePhone": [None] * n,
        "MailingCountry": [["US", "DE", "GB"][i % 3] for i in rid],
        "HasOptedOutOfEmail": [bool(i % 9 == 0) for i in rid],
        "LeadSource": [["Web", "Partner", None][i % 3] for i in rid],
        "Stripe_Customer_Id__c": [cu_ids[i] if i < n_cu else None for i in rid],
        "Web_User_Id__c": [f"u{i}" if i % 2 == 0 else None for i in rid],
        "_visible_at": _ts(rmod),
    })
    ids, rid, rcr, rmod, rver = sf_versions(200, "001", 0.3)
    n = len(rid)
    tables["sf_account"] = pa.table({
        "Id": [ids[i] for i in rid], "CreatedDate": _ts(rcr), "LastModifiedDate": _ts(rmod),
        "SystemModstamp": _ts(rmod), "IsDeleted": [False] * n,
        "Name": [f"Account {i}" for i in rid], "Industry": ["Retail"] * n,
        "BillingCountry": [["US", "DE"][i % 2] for i in rid], "Phone": [None] * n,
        "Website": [f"https://a{i}.example" for i in rid], "Type": ["Customer"] * n,
        "_visible_at": _ts(rmod),
    })
    ids, rid, rcr, rmod, rver = sf_versions(120, "00Q", 0.5)
    n = len(rid)
    tables["sf_lead"] = pa.table({
        "Id": [ids[i] for i in rid], "CreatedDate": _ts(rcr), "LastModifiedDate": _ts(rmod),
        "SystemModstamp": _ts(rmod), "IsDeleted": [False] * n,
        "FirstName": [f"L{i}" for i in rid], "LastName": [f"Lead{i}" for i in rid],
        "Email": [f"lead{i}@example.com" for i in rid], "Phone": [None] * n, "Company": ["ACME"] * n,
        "Status": ["Open" if v == 0 else "Converted" for v in rver], "LeadSource": ["Web"] * n,
        "IsConverted": [bool(v) for v in rver],
        "ConvertedContactId": [contact_ids[i] if v else None for i, v in zip(rid, rver)],
        "HasOptedOutOfEmail": [False] * n, "_visible_at": _ts(rmod),
    })
    ids, rid, rcr, rmod, rver = sf_versions(150, "006", 0.5)
    n = len(rid)
    tables["sf_opportunity"] = pa.table({
        "Id": [ids[i] for i in rid], "CreatedDate": _ts(rcr), "LastModifiedDate": _ts(rmod),
        "SystemModstamp": _ts(rmod), "IsDeleted": [False] * n,
        "AccountId": [acct_ids[i % 200] for i in rid], "Name": [f"Opp {i}" for i in rid],
        "StageName": ["Prospecting" if v == 0 else "Closed Won" for v in rver],
        "Amount": pa.array([float(100 + i) for i in rid], pa.float64()),
        "CloseDate": pa.array([(dt.datetime.fromtimestamp(c / US, UTC) + dt.timedelta(days=30)).date() for c in rcr],
                              pa.date32()),
        "IsWon": [bool(v) for v in rver], "IsClosed": [bool(v) for v in rver], "LeadSource": ["Web"] * n,
        "_visible_at": _ts(rmod),
    })
    ids, rid, rcr, rmod, rver = sf_versions(100, "500", 0.7)
    n = len(rid)
    closed = rver == 1
    tables["sf_case"] = pa.table({
        "Id": [ids[i] for i in rid], "CreatedDate": _ts(rcr), "LastModifiedDate": _ts(rmod),
        "SystemModstamp": _ts(rmod), "IsDeleted": [False] * n,
        "ContactId": [contact_ids[i] for i in rid], "AccountId": [acct_ids[i % 200] for i in rid],
        "Subject": [f"Problem {i}" for i in rid], "Status": np.where(closed, "Closed", "New").tolist(),
        "Priority": ["Medium"] * n, "Origin": ["Email"] * n, "IsClosed": closed.tolist(),
        "ClosedDate": _ts(rmod, mask=~closed), "Type": ["Question"] * n, "_visible_at": _ts(rmod),
    })

    # --- GA4 events ---------------------------------------------------------------------------
    days = (END - START).days + 1
    n_sessions = 900
    s_day = rng.integers(0, days, n_sessions)
    s_start = t0 + s_day * DAY_US + rng.integers(0, DAY_US - 3600 * US, n_sessions)
    s_dev = rng.integers(0, 300, n_sessions)
    rows: dict[str, list] = {k: [] for k in (
        "event_date", "event_timestamp", "event_name", "user_pseudo_id", "user_id", "platform",
        "ga_session_id", "ga_session_number", "page_location", "page_title", "page_referrer",
        "engagement_time_msec", "device_category", "device_os", "geo_country", "source", "medium",
        "campaign", "gclid", "fbclid", "transaction_id", "value", "currency", "items_json", "_vis")}
    seen_dev: dict[int, int] = {}
    order = np.argsort(s_start)
    srcs = [("google", "cpc", "brand_search"), ("(direct)", "(none)", "(direct)"), ("facebook", "paid_social", "spring_sale"),
            ("newsletter", "email", "weekly")]
    for k, s in enumerate(order):
        dev = int(s_dev[s])
        num = seen_dev.get(dev, 0) + 1
        seen_dev[dev] = num
        src = srcs[(dev + num) % len(srcs)]
        names = (["first_visit"] if num == 1 else []) + ["session_start", "page_view", "page_view"]
        if k % 9 == 0:
            names.append("purchase")
        t = int(s_start[s])
        late = (k % 13 == 0)
        for j, name in enumerate(names):
            ts = t + j * 20 * US
            d = dt.datetime.fromtimestamp(ts / US, UTC)
            rows["event_date"].append(d.strftime("%Y%m%d"))
            rows["event_timestamp"].append(ts)
            rows["event_name"].append(name)
            rows["user_pseudo_id"].append(f"{dev}.{1700000000 + dev}")
            rows["user_id"].append(f"u{dev}" if dev % 3 == 0 else None)
            rows["platform"].append(["WEB", "IOS", "ANDROID"][dev % 3])
            rows["ga_session_id"].append(t // US)
            rows["ga_session_number"].append(num)
            rows["page_location"].append(f"https://shop.example/p/{j}?utm_source={src[0]}")
            rows["page_title"].append(f"Page {j}")
            rows["page_referrer"].append(None if j == 0 else "https://shop.example/")
            rows["engagement_time_msec"].append(None if name in ("first_visit", "session_start") else 1000 + j)
            rows["device_category"].append(["desktop", "mobile", "tablet"][dev % 3])
            rows["device_os"].append(["Windows", "iOS", "Android"][dev % 3])
            rows["geo_country"].append(["United States", "Germany", "United Kingdom"][dev % 3])
            rows["source"].append(src[0])
            rows["medium"].append(src[1])
            rows["campaign"].append(src[2])
            rows["gclid"].append("gclid123" if src[1] == "cpc" else None)
            rows["fbclid"].append(None)
            purchase = name == "purchase"
            rows["transaction_id"].append(f"ord_T{k:06d}" if purchase else None)
            rows["value"].append(42.5 if purchase else None)
            rows["currency"].append("USD" if purchase else None)
            rows["items_json"].append(json.dumps([{"item_id": "sku1", "item_name": "Shirt", "price": 21.25,
                                                   "quantity": 2}]) if purchase else None)
            rows["_vis"].append(ts + (2 * DAY_US if late else 5 * 60 * US))
    vis = rows.pop("_vis")
    ga = pa.table({k: pa.array(v, pa.int64() if k in ("event_timestamp", "ga_session_id", "ga_session_number",
                                                        "engagement_time_msec") else
                               (pa.float64() if k == "value" else pa.string())) for k, v in rows.items()})
    tables["ga4_events"] = ga.append_column("_visible_at", _ts(np.array(vis)))

    # --- ads ------------------------------------------------------------------------------------
    g_rows: dict[str, list] = {k: [] for k in ("customer_id", "campaign_id", "campaign_name", "channel", "date",
                                                "cost_micros", "clicks", "impressions", "conversions", "_visible_at")}
    m_rows: dict[str, list] = {k: [] for k in ("account_id", "campaign_id", "campaign_name", "date_start",
                                                "spend", "impressions", "clicks", "_visible_at")}
    for di in range(days):
        day = START + dt.timedelta(days=di)
        for c, cname in ((111, "brand_search"), (222, "generic_search")):
            for v in (0, 1) if di % 5 == 0 else (0,):
                g_rows["customer_id"].append("1234567890")
                g_rows["campaign_id"].append(c)
                g_rows["campaign_name"].append(cname)
                g_rows["channel"].append("paid_search")
                g_rows["date"].append(day)
                g_rows["cost_micros"].append(int(1_000_000 * (10 + di % 7 + c / 100 + v)))
                g_rows["clicks"].append(10 + di % 5 + v)
                g_rows["impressions"].append(200 + di)
                g_rows["conversions"].append(1.0 + v * 0.5)
                g_rows["_visible_at"].append(_us(day) + DAY_US + 3 * 3600 * US + v * 3 * DAY_US)
        for c, cname in (("23850000001", "spring_sale"), ("23850000002", "retargeting"), ("23850000003", "lookalike")):
            for v in (0, 1) if di % 4 == 0 else (0,):
                m_rows["account_id"].append("1000000001")
                m_rows["campaign_id"].append(c)
                m_rows["campaign_name"].append(cname)
                m_rows["date_start"].append(day)
                m_rows["spend"].append(round(20.5 + di % 3 + v * 1.25, 2))
                m_rows["impressions"].append(1000 + di)
                m_rows["clicks"].append(30 + v)
                m_rows["_visible_at"].append(_us(day) + DAY_US + 2 * 3600 * US + v * 2 * DAY_US)
    for name, rows_, types in (("google_ads_campaign_daily", g_rows, {"campaign_id": pa.int64(), "date": pa.date32(),
                                                                       "cost_micros": pa.int64(), "clicks": pa.int64(),
                                                                       "impressions": pa.int64(), "conversions": pa.float64()}),
                               ("meta_campaign_daily", m_rows, {"date_start": pa.date32(), "spend": pa.float64(),
                                                                 "impressions": pa.int64(), "clicks": pa.int64()})):
        vis = rows_.pop("_visible_at")
        t = pa.table({k: pa.array(v, types.get(k, pa.string())) for k, v in rows_.items()})
        tables[name] = t.append_column("_visible_at", _ts(np.array(vis)))

    tables["campaigns"] = pa.table({
        "campaign_id": ["111", "222", "23850000001", "23850000002", "23850000003"],
        "campaign_name": ["brand_search", "generic_search", "spring_sale", "retargeting", "lookalike"],
        "channel": ["paid_search", "paid_search", "paid_social", "paid_social", "paid_social"],
        "platform": ["google_ads", "google_ads", "meta", "meta", "meta"],
        "utm_source": ["google", "google", "facebook", "facebook", "facebook"],
        "utm_medium": ["cpc", "cpc", "paid_social", "paid_social", "paid_social"],
        "utm_campaign": ["brand_search", "generic_search", "spring_sale", "retargeting", "lookalike"],
        "start_date": pa.array([START] * 5, pa.date32()), "end_date": pa.array([END] * 5, pa.date32()),
    })

    for name, t in tables.items():
        pq.write_table(t, out / f"{name}.parquet")
    meta = {
        "size": "tiny", "seed": seed, "format_version": 1, "start": START.isoformat(), "end": END.isoformat(),
        "horizon_days": 365, "reporting_currency": "USD", "fx_to_usd": {"USD": 1.0, "EUR": 1.08, "GBP": 1.27},
        "channels": [], "campaigns": [],
        "stripe_api_key": f"sk_test_sandbox_{seed}", "salesforce_session_id": f"00DSANDBOX!{seed}session",
        "google_ads_developer_token": f"devtoken{seed}", "google_ads_customer_id": "1234567890",
        "meta_access_token": f"EAAtiny{seed}", "meta_account_id": "1000000001",
        "counts": {k: t.num_rows for k, t in tables.items()},
    }
    (out / "world.json").write_text(json.dumps(meta, indent=2))
    return out
