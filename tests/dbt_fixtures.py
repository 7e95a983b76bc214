"""Bronze tables shaped exactly like docs/bronze_contract.md, built from a sandbox world.

The dbt tests do not need the connectors: this module turns the world's source tables into the
rows the bronze loader would have written after daily extractions up to a moment ``as_of``
(source visibility ``_visible_at <= as_of``), including the bronze quirks dbt must handle:

- every version a daily run saw is kept (Salesforce versions, restated ad days, Stripe charges
  plus their ``charge.refunded`` / ``refund.created`` events), ``_interval_end`` = the end of
  the day the version was extracted;
- GA4 events are landed per export day (interval = the event's day), late events included once
  they are visible; a few events are landed twice (a re-read day) to exercise deduplication;
- Salesforce deletions arrive as a new version with ``isdeleted = true``.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

UTC = dt.timezone.utc
TS = "datetime64[us, UTC]"

BRONZE_TABLES = (
    "stripe__customers", "stripe__charges", "stripe__refunds", "stripe__events",
    "salesforce__account", "salesforce__contact", "salesforce__lead", "salesforce__opportunity",
    "salesforce__case", "ga4__events", "google_ads__campaign_daily", "meta__campaign_insights",
    "transactions__imported",
)


def world_end(world_path: Path) -> dt.datetime:
    meta = json.loads((Path(world_path) / "world.json").read_text())
    end = dt.date.fromisoformat(meta["end"])
    return dt.datetime(end.year, end.month, end.day, tzinfo=UTC) + dt.timedelta(days=1)


def _read(world_path: Path, name: str) -> pd.DataFrame:
    return pq.read_table(Path(world_path) / f"{name}.parquet").to_pandas()


def read_truth(world_path: Path, name: str) -> pd.DataFrame:
    name = name if name.startswith("truth_") else f"truth_{name}"
    return pq.read_table(Path(world_path) / "truth" / f"{name}.parquet").to_pandas()


def _utc(series: pd.Series) -> pd.Series:
    s = pd.to_datetime(series, utc=True)
    return s.astype(TS)


def _day_start(ts: pd.Series) -> pd.Series:
    return _utc(ts).dt.floor("D")


def _with_meta(df: pd.DataFrame, interval_start: pd.Series, batch: str, visible_at: pd.Series) -> pd.DataFrame:
    """Add the bronze metadata columns; ``interval_start`` = start of the one-day interval.

    ``__landed_at`` (dropped before loading) = end of the day the source made the row visible:
    the daily run that lands it."""
    start = _utc(interval_start).reset_index(drop=True)
    end = start + pd.Timedelta(days=1)
    out = df.reset_index(drop=True).copy()
    key = start.dt.strftime("%Y%m%dT%H%M%SZ") + "_" + end.dt.strftime("%Y%m%dT%H%M%SZ")
    out.insert(0, "_interval_key", key.astype("string"))
    out["_batch_id"] = (batch + "-" + start.dt.strftime("%Y%m%d")).astype("string")
    out["_interval_start"] = start
    out["_interval_end"] = end
    out["_extracted_at"] = end + pd.Timedelta(minutes=5)
    out["_row_number"] = out.groupby("_interval_key").cumcount().astype("int64")
    out["_loaded_at"] = end + pd.Timedelta(minutes=7)
    out["__landed_at"] = (_day_start(pd.Series(visible_at).reset_index(drop=True)) + pd.Timedelta(days=1)).to_numpy()
    return out


def _str(s: Any) -> pd.Series:
    return pd.Series(s).astype("string")


def _date(s: Any) -> pd.Series:
    """Dates as Python dates in an object column, like the loader (DuckDB: DATE; Postgres: text)."""
    d = pd.to_datetime(pd.Series(s), errors="coerce")
    return pd.Series(d.dt.date.where(d.notna(), None).tolist(), index=pd.Series(s).index, dtype="object")


def _bool(s: pd.Series) -> pd.Series:
    return s.astype("boolean")


def _int(s: Any) -> pd.Series:
    return pd.Series(s).astype("Int64")


def _epoch_s(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s.astype("int64"), unit="s", utc=True).astype(TS)


def _latest_per_day(df: pd.DataFrame, key: str) -> pd.DataFrame:
    """A daily extraction sees the latest version of a record as of the interval end."""
    df = df.copy()
    df["_day"] = _day_start(df["_visible_at"])
    df = df.sort_values([key, "_day", "_visible_at"], kind="stable")
    return df.drop_duplicates([key, "_day"], keep="last")


# ----------------------------------------------------------------------------------------------
def stripe_frames(world_path: Path) -> dict[str, pd.DataFrame]:
    cus = _read(world_path, "stripe_customers")
    charges = _read(world_path, "stripe_charges")
    refunds = _read(world_path, "stripe_refunds")
    out: dict[str, pd.DataFrame] = {}
    out["stripe__customers"] = _with_meta(pd.DataFrame({
        "id": _str(cus["id"]), "object": pd.Series(["customer"] * len(cus), dtype="string"),
        "email": _str(cus["email"]), "name": _str(cus["name"]), "phone": _str(cus["phone"]),
        "created": _epoch_s(cus["created"]), "address__country": _str(cus["address_country"]),
        "livemode": pd.Series([False] * len(cus), dtype="boolean"),
    }), _day_start(cus["_visible_at"]), "stripe-customers", cus["_visible_at"])
    ok = charges["status"] == "succeeded"
    ch = pd.DataFrame({
        "id": _str(charges["id"]), "amount": _int(charges["amount"]),
        "amount_captured": _int(charges["amount"].where(ok, 0)),
        "amount_refunded": _int(pd.Series(0, index=charges.index)),
        "refunded": pd.Series([False] * len(charges), dtype="boolean"),
        "currency": _str(charges["currency"]), "customer": _str(charges["customer"]),
        "created": _epoch_s(charges["created"]), "status": _str(charges["status"]),
        "paid": _bool(charges["paid"]), "failure_code": _str(charges["failure_code"]),
        "description": _str(charges["description"]), "receipt_email": _str(charges["receipt_email"]),
        "metadata__order_id": _str(charges["metadata_order_id"]),
        "livemode": pd.Series([False] * len(charges), dtype="boolean"),
    })
    out["stripe__charges"] = _with_meta(ch, _day_start(charges["_visible_at"]), "stripe-charges", charges["_visible_at"])
    out["stripe__refunds"] = _with_meta(pd.DataFrame({
        "id": _str(refunds["id"]), "amount": _int(refunds["amount"]), "charge": _str(refunds["charge"]),
        "currency": _str(refunds["currency"]), "created": _epoch_s(refunds["created"]),
        "reason": _str(refunds["reason"]), "status": _str(refunds["status"]),
    }), _day_start(refunds["_visible_at"]), "stripe-refunds", refunds["_visible_at"])
    # the events feed: refund.created and charge.refunded (the charge's new state)
    ref = refunds.sort_values(["charge", "created", "id"], kind="stable").copy()
    ref["cum_refunded"] = ref.groupby("charge")["amount"].cumsum()
    chx = charges.set_index("id")
    ref = ref[ref["charge"].isin(chx.index)].reset_index(drop=True)
    c = chx.loc[ref["charge"]].reset_index()
    n = len(ref)
    none_s = pd.Series([None] * n, dtype="string")
    ev_refund = pd.DataFrame({
        "id": ("evt_r" + ref["id"].str[3:]).astype("string").to_numpy(), "type": ["refund.created"] * n,
        "created": _epoch_s(ref["created"]).to_numpy(),
        "data__object__id": ref["id"].to_numpy(), "data__object__object": ["refund"] * n,
        "data__object__amount": _int(ref["amount"]), "data__object__amount_refunded": _int(pd.Series([None] * n)),
        "data__object__refunded": pd.array([None] * n, dtype="boolean"),
        "data__object__currency": ref["currency"].to_numpy(), "data__object__customer": none_s.to_numpy(),
        "data__object__created": _epoch_s(ref["created"]).to_numpy(), "data__object__status": ref["status"].to_numpy(),
        "data__object__paid": pd.array([None] * n, dtype="boolean"), "data__object__failure_code": none_s.to_numpy(),
        "data__object__charge": ref["charge"].to_numpy(), "data__object__reason": ref["reason"].to_numpy(),
        "data__object__metadata__order_id": none_s.to_numpy(), "data__object__email": none_s.to_numpy(),
        "data__object__name": none_s.to_numpy(), "data__object__phone": none_s.to_numpy(),
        "data__object__receipt_email": none_s.to_numpy(), "data__object__address__country": none_s.to_numpy(),
    })
    ev_charge = pd.DataFrame({
        "id": ("evt_c" + ref["id"].str[3:]).astype("string").to_numpy(), "type": ["charge.refunded"] * n,
        "created": _epoch_s(ref["created"]).to_numpy(),
        "data__object__id": c["id"].to_numpy(), "data__object__object": ["charge"] * n,
        "data__object__amount": _int(c["amount"]), "data__object__amount_refunded": _int(ref["cum_refunded"]),
        "data__object__refunded": pd.array((ref["cum_refunded"].to_numpy() >= c["amount"].to_numpy()).tolist(),
                                           dtype="boolean"),
        "data__object__currency": c["currency"].to_numpy(), "data__object__customer": c["customer"].to_numpy(),
        "data__object__created": _epoch_s(c["created"]).to_numpy(), "data__object__status": c["status"].to_numpy(),
        "data__object__paid": pd.array(c["paid"].tolist(), dtype="boolean"),
        "data__object__failure_code": c["failure_code"].to_numpy(),
        "data__object__charge": none_s.to_numpy(), "data__object__reason": none_s.to_numpy(),
        "data__object__metadata__order_id": c["metadata_order_id"].to_numpy(), "data__object__email": none_s.to_numpy(),
        "data__object__name": none_s.to_numpy(), "data__object__phone": none_s.to_numpy(),
        "data__object__receipt_email": c["receipt_email"].to_numpy(),
        "data__object__address__country": none_s.to_numpy(),
    })
    ev = pd.concat([ev_refund, ev_charge], ignore_index=True)
    for col in ev.columns:
        if col in ("created", "data__object__created"):
            ev[col] = _utc(ev[col])
        elif col in ("data__object__amount", "data__object__amount_refunded"):
            ev[col] = _int(ev[col])
        elif col in ("data__object__refunded", "data__object__paid"):
            ev[col] = ev[col].astype("boolean")
        else:
            ev[col] = _str(ev[col])
    out["stripe__events"] = _with_meta(ev, _day_start(ev["created"]), "stripe-events", ev["created"])
    return out


SF_COLUMNS = {
    "account": {"Name": "name", "Industry": "industry", "BillingCountry": "billingcountry", "Phone": "phone",
                "Website": "website", "Type": "type"},
    "contact": {"AccountId": "accountid", "FirstName": "firstname", "LastName": "lastname", "Email": "email",
                "Phone": "phone", "MobilePhone": "mobilephone", "MailingCountry": "mailingcountry",
                "HasOptedOutOfEmail": "hasoptedoutofemail", "LeadSource": "leadsource",
                "Stripe_Customer_Id__c": "stripe_customer_id__c", "Web_User_Id__c": "web_user_id__c"},
    "lead": {"FirstName": "firstname", "LastName": "lastname", "Email": "email", "Phone": "phone",
             "Company": "company", "Status": "status", "LeadSource": "leadsource", "IsConverted": "isconverted",
             "ConvertedContactId": "convertedcontactid", "HasOptedOutOfEmail": "hasoptedoutofemail"},
    "opportunity": {"AccountId": "accountid", "Name": "name", "StageName": "stagename", "Amount": "amount",
                    "CloseDate": "closedate", "IsWon": "iswon", "IsClosed": "isclosed", "LeadSource": "leadsource"},
    "case": {"ContactId": "contactid", "AccountId": "accountid", "Subject": "subject", "Status": "status",
             "Priority": "priority", "Origin": "origin", "IsClosed": "isclosed", "ClosedDate": "closeddate",
             "Type": "type"},
}


def salesforce_frames(world_path: Path) -> dict[str, pd.DataFrame]:
    out: dict[str, pd.DataFrame] = {}
    for obj, cols in SF_COLUMNS.items():
        raw = _latest_per_day(_read(world_path, f"sf_{obj}"), "Id")
        df = pd.DataFrame({
            "id": _str(raw["Id"]), "isdeleted": _bool(raw["IsDeleted"]),
            "createddate": _utc(raw["CreatedDate"]), "lastmodifieddate": _utc(raw["LastModifiedDate"]),
            "systemmodstamp": _utc(raw["SystemModstamp"]),
        })
        for src, dst in cols.items():
            s = raw[src]
            if dst in ("hasoptedoutofemail", "isconverted", "iswon", "isclosed"):
                df[dst] = _bool(s)
            elif dst == "amount":
                df[dst] = s.astype("float64")
            elif dst == "closedate":
                df[dst] = _date(s)
            elif dst == "closeddate":
                df[dst] = _utc(s)
            else:
                df[dst] = _str(s)
        # undeclared fields (schema drift) stay as text columns
        for extra in ("CaseNumber",):
            if extra in raw.columns:
                df[extra.lower()] = _str(raw[extra])
        out[f"salesforce__{obj}"] = _with_meta(df, raw["_day"], f"salesforce-{obj}", raw["_visible_at"])
    return out


def _event_keys(ev: pd.DataFrame) -> pd.Series:
    pos = ev.groupby(["user_pseudo_id", "event_timestamp", "event_name"]).cumcount()
    parts = (ev["user_pseudo_id"].astype(str) + "|" + ev["event_timestamp"].astype(str) + "|" + ev["event_name"]
             + "|" + ev["ga_session_id"].astype(str) + "|" + pos.astype(str))
    h1 = pd.util.hash_pandas_object(parts, index=False).to_numpy()
    h2 = pd.util.hash_pandas_object("k" + parts, index=False).to_numpy()
    return pd.Series([f"{a:016x}{b:016x}" for a, b in zip(h1, h2)], index=ev.index, dtype="string")


def ga4_frames(world_path: Path, duplicate_share: float = 0.01) -> dict[str, pd.DataFrame]:
    ev = _read(world_path, "ga4_events")
    ev["event_key"] = _event_keys(ev)
    ts = pd.to_datetime(ev["event_timestamp"], unit="us", utc=True).astype(TS)
    # the user's first traffic source (traffic_source.*): the device's first event
    first = ev.sort_values(["user_pseudo_id", "event_timestamp"], kind="stable").drop_duplicates("user_pseudo_id")
    first = first.set_index("user_pseudo_id")[["source", "medium", "campaign"]]
    ft = first.reindex(ev["user_pseudo_id"]).reset_index(drop=True)
    qty = ev["items_json"].map(lambda s: sum(int(i.get("quantity", 1)) for i in json.loads(s)) if isinstance(s, str) else None)
    df = pd.DataFrame({
        "event_key": ev["event_key"].to_numpy(),
        "event_date": _str(ev["event_date"]).to_numpy(),
        "event_timestamp": ts.to_numpy(),
        "event_name": _str(ev["event_name"]).to_numpy(),
        "user_pseudo_id": _str(ev["user_pseudo_id"]).to_numpy(),
        "user_id": _str(ev["user_id"]).to_numpy(),
        "platform": _str(ev["platform"]).to_numpy(),
        "param__ga_session_id": _int(ev["ga_session_id"]),
        "param__ga_session_number": _int(ev["ga_session_number"]),
        "param__page_location": _str(ev["page_location"]).to_numpy(),
        "param__page_title": _str(ev["page_title"]).to_numpy(),
        "param__page_referrer": _str(ev["page_referrer"]).to_numpy(),
        "param__engagement_time_msec": _int(ev["engagement_time_msec"]),
        "param__source": _str(ev["source"]).to_numpy(),
        "param__medium": _str(ev["medium"]).to_numpy(),
        "param__campaign": _str(ev["campaign"]).to_numpy(),
        "param__gclid": _str(ev["gclid"]).to_numpy(),
        "param__transaction_id": _str(ev["transaction_id"]).to_numpy(),
        "param__value": ev["value"].astype("float64").to_numpy(),
        "param__currency": _str(ev["currency"]).to_numpy(),
        "device__category": _str(ev["device_category"]).to_numpy(),
        "device__operating_system": _str(ev["device_os"]).to_numpy(),
        "geo__country": _str(ev["geo_country"]).to_numpy(),
        "traffic_source__name": _str(ft["campaign"]).to_numpy(),
        "traffic_source__medium": _str(ft["medium"]).to_numpy(),
        "traffic_source__source": _str(ft["source"]).to_numpy(),
        "collected_traffic_source__manual_source": _str(ev["source"]).to_numpy(),
        "collected_traffic_source__manual_medium": _str(ev["medium"]).to_numpy(),
        "collected_traffic_source__manual_campaign_name": _str(ev["campaign"]).to_numpy(),
        "collected_traffic_source__gclid": _str(ev["gclid"]).to_numpy(),
        "ecommerce__transaction_id": _str(ev["transaction_id"]).to_numpy(),
        "ecommerce__purchase_revenue": ev["value"].astype("float64").to_numpy(),
        "ecommerce__total_item_quantity": _int(qty),
        "items": _str(ev["items_json"]).to_numpy(),
    })
    for col in ("param__ga_session_id", "param__ga_session_number", "param__engagement_time_msec",
                "ecommerce__total_item_quantity"):
        df[col] = df[col].astype("Int64")
    for col in df.columns:
        if col not in ("event_timestamp", "ecommerce__purchase_revenue", "param__value") and df[col].dtype != "Int64":
            df[col] = _str(df[col])
    day = pd.to_datetime(ev["event_date"].to_numpy(), format="%Y%m%d", utc=True)
    frame = _with_meta(df, pd.Series(day), "ga4-events", ev["_visible_at"])
    if duplicate_share and len(frame):
        # a re-read day lands some events again in a later batch of the same interval
        dup = frame.sample(frac=duplicate_share, random_state=7).copy()
        dup["_batch_id"] = (dup["_batch_id"] + "-reread").astype("string")
        dup["_loaded_at"] = dup["_loaded_at"] + pd.Timedelta(days=1)
        dup["__landed_at"] = dup["__landed_at"] + pd.Timedelta(days=1)
        frame = pd.concat([frame, dup], ignore_index=True)
    return {"ga4__events": frame}


def ads_frames(world_path: Path) -> dict[str, pd.DataFrame]:
    g = _read(world_path, "google_ads_campaign_daily")
    g["_key"] = g["campaign_id"].astype(str) + "|" + g["date"].astype(str)
    g = _latest_per_day(g, "_key")
    m = _read(world_path, "meta_campaign_daily")
    m["_key"] = m["campaign_id"].astype(str) + "|" + m["date_start"].astype(str)
    m = _latest_per_day(m, "_key")
    out = {
        "google_ads__campaign_daily": _with_meta(pd.DataFrame({
            "customer_id": _str(g["customer_id"]), "campaign__id": _int(g["campaign_id"]),
            "campaign__name": _str(g["campaign_name"]), "segments__date": _date(g["date"]),
            "metrics__cost_micros": _int(g["cost_micros"]), "metrics__clicks": _int(g["clicks"]),
            "metrics__impressions": _int(g["impressions"]), "metrics__conversions": g["conversions"].astype("float64"),
        }), g["_day"], "google-ads", g["_visible_at"]),
        "meta__campaign_insights": _with_meta(pd.DataFrame({
            "account_id": _str(m["account_id"]), "campaign_id": _str(m["campaign_id"]),
            "campaign_name": _str(m["campaign_name"]),
            "date_start": _date(m["date_start"]),
            "date_stop": _date(m["date_start"]),
            "spend": m["spend"].astype("float64"), "impressions": _int(m["impressions"]), "clicks": _int(m["clicks"]),
        }), m["_day"], "meta", m["_visible_at"]),
    }
    for f in out.values():
        for col in ("campaign__id", "metrics__cost_micros", "metrics__clicks", "metrics__impressions",
                    "impressions", "clicks"):
            if col in f.columns:
                f[col] = f[col].astype("Int64")
    return out


def transactions_frame(rows: list[dict[str, Any]] | None = None) -> pd.DataFrame:
    rows = rows or []
    df = pd.DataFrame({
        "transaction_id": pd.Series([r.get("transaction_id") for r in rows], dtype="string"),
        "customer_ref": pd.Series([r.get("customer_ref") for r in rows], dtype="string"),
        "ordered_at": pd.Series([pd.Timestamp(r["ordered_at"]) for r in rows], dtype=TS),
        "amount": pd.Series([r.get("amount") for r in rows], dtype="float64"),
        "currency": pd.Series([r.get("currency") for r in rows], dtype="string"),
        "quantity": pd.Series([r.get("quantity") for r in rows], dtype="float64"),
        "source_file": pd.Series([r.get("source_file", "import.csv") for r in rows], dtype="string"),
        "is_return": pd.Series([r.get("is_return", (r.get("amount") or 0) < 0) for r in rows], dtype="boolean"),
        "line_count": pd.Series([r.get("line_count", 1) for r in rows], dtype="Int64"),
        "country": pd.Series([r.get("country") for r in rows], dtype="string"),
        "import_status": pd.Series(["ok"] * len(rows), dtype="string"),
    })
    start = pd.Series([pd.Timestamp("2025-01-01", tz="UTC")] * len(df), dtype=TS)
    return _with_meta(df, start, "import", start)


class WorldBronze:
    """Every bronze table of a world, computed once; ``as_of(T)`` = the tables after daily loads
    up to ``T`` (a day boundary; default the world's end)."""

    def __init__(self, world_path: Path):
        self.world_path = Path(world_path)
        self.end = world_end(self.world_path)
        frames: dict[str, pd.DataFrame] = {}
        frames.update(stripe_frames(self.world_path))
        frames.update(salesforce_frames(self.world_path))
        frames.update(ga4_frames(self.world_path))
        frames.update(ads_frames(self.world_path))
        frames["transactions__imported"] = transactions_frame(IMPORTED_TRANSACTIONS)
        self.frames = frames

    _cache: dict[Path, "WorldBronze"] = {}

    @classmethod
    def cached(cls, world_path: Path) -> "WorldBronze":
        """One WorldBronze per world per process (building the frames takes seconds)."""
        key = Path(world_path).resolve()
        if key not in cls._cache:
            cls._cache[key] = cls(key)
        return cls._cache[key]

    @property
    def start(self) -> dt.datetime:
        meta = json.loads((self.world_path / "world.json").read_text())
        d = dt.date.fromisoformat(meta["start"])
        return dt.datetime(d.year, d.month, d.day, tzinfo=UTC)

    def as_of(self, as_of: dt.datetime | None = None) -> dict[str, pd.DataFrame]:
        t = pd.Timestamp(as_of or self.end)
        out = {}
        for name, df in self.frames.items():
            keep = df["__landed_at"] <= t
            out[name] = df.loc[keep].drop(columns="__landed_at").reset_index(drop=True)
        return out


# A small imported transaction log beside the APIs (customers unknown to the other sources).
IMPORTED_TRANSACTIONS = [
    {"transaction_id": "imp-1", "customer_ref": "C-1001", "ordered_at": "2025-03-02T10:00:00Z", "amount": 120.0,
     "currency": "USD", "quantity": 2},
    {"transaction_id": "imp-2", "customer_ref": "C-1001", "ordered_at": "2025-04-11T16:30:00Z", "amount": 80.0,
     "currency": "USD", "quantity": 1},
    {"transaction_id": "imp-3", "customer_ref": "C-1001", "ordered_at": "2025-04-20T09:15:00Z", "amount": -80.0,
     "currency": "USD", "quantity": -1, "is_return": True},
    {"transaction_id": "imp-4", "customer_ref": "importer@example.org", "ordered_at": "2025-06-01T12:00:00Z",
     "amount": 50.0, "currency": "EUR", "quantity": 1},
]
IMPORTED_NET_REPORTING = 120.0 + 80.0 - 80.0 + 50.0 * 1.08


def bronze_frames(world_path: Path, as_of: dt.datetime | None = None) -> dict[str, pd.DataFrame]:
    """Every bronze table as it would be after daily loads up to ``as_of`` (default: world end)."""
    return WorldBronze(world_path).as_of(as_of)


def load_bronze(settings: Any, world_path: Path, as_of: dt.datetime | None = None,
                frames: dict[str, pd.DataFrame] | None = None) -> dict[str, int]:
    """Replace every bronze table with the world's rows as of ``as_of``; returns row counts."""
    from retailpulse.pipeline import init_warehouse
    from retailpulse.warehouse import get_warehouse

    init_warehouse(settings)
    wh = get_warehouse(settings)
    frames = frames if frames is not None else bronze_frames(world_path, as_of)
    frames = {k: v.drop(columns="__landed_at", errors="ignore") for k, v in frames.items()}
    counts = {}
    schema = wh.schema_name("bronze")
    with wh.connect() as con:
        for table, df in frames.items():
            # recreate from the typed frame (an empty bronze table created from a spec may have
            # untyped date columns on DuckDB)
            cascade = " cascade" if wh.target == "postgres" else ""
            wh._exec(con, f'drop table if exists "{schema}"."{table}"{cascade}')
            counts[table] = wh.replace_rows("bronze", table, df, where=None, con=con)
    return counts


def release_dbt_duckdb() -> None:
    """Close the DuckDB database dbt-duckdb keeps open in this process after an in-process run.

    dbt-duckdb caches its environment (and an open connection) at class level between
    invocations; a later write through ``Warehouse.connect`` in the same process can then land in
    another database instance than the one the next dbt run reads (stale bronze). Call this
    between a dbt run and the next bronze load when both happen in one process."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # dbt-duckdb not installed (Postgres-only environments)
        return
    env = DuckDBConnectionManager._ENV
    if env is not None:
        try:
            env.close()
        finally:
            DuckDBConnectionManager._ENV = None


@dataclass
class Built:
    settings: object
    world: Path
    bronze: WorldBronze
    summary: dict
    seconds: dict


def _settings(tmp: Path, **overrides: Any):
    from retailpulse.settings import Settings
    from tests.conftest import REPO

    base = dict(home=REPO, data_dir=tmp / "data", warehouse_path=tmp / "warehouse" / "retailpulse.duckdb",
                serving_dir=tmp / "warehouse" / "serving", target="duckdb", dbt_threads=4, _env_file=None)
    base.update(overrides)
    return Settings(**base)


def build_small_world_warehouse(small_world: Path, root: Path) -> Built:
    """The session warehouse of the dbt tests (fixture ``built`` in conftest): bronze as of six
    days before the world's end, a first run of the incremental models (GA4 events and sessions, devices, exact
    identity components, rule-based attribution credits), then bronze as of the
    end and a full ``dbt build`` through ``retailpulse.pipeline.stage_dbt``."""
    import time

    from retailpulse.dbt_runner import run_dbt
    from retailpulse.pipeline import stage_dbt

    seconds: dict[str, float] = {}
    t = time.monotonic()
    settings = _settings(root)
    bronze = WorldBronze.cached(small_world)
    seconds["bronze_frames"] = time.monotonic() - t
    # day T-6: first load and a full run of the incremental models
    t = time.monotonic()
    load_bronze(settings, small_world, frames=bronze.as_of(bronze.end - dt.timedelta(days=6)))
    run_dbt(settings, ["seed"])
    run_dbt(settings, ["run", "--select", "+int_ga4__sessions", "+int_identity__exact_components",
                       "+int_attribution__credits"])
    release_dbt_duckdb()
    seconds["first_run"] = time.monotonic() - t
    # day T: late GA4 events of earlier days arrive; incremental build of everything + all tests
    t = time.monotonic()
    load_bronze(settings, small_world, frames=bronze.as_of(bronze.end))
    summary = stage_dbt(settings)
    release_dbt_duckdb()
    seconds["build"] = time.monotonic() - t
    return Built(settings, small_world, bronze, summary, seconds)
