"""GDPR erasure: one person removed everywhere, kept out of later loads, audited without PII.

Unit tests on hand-made batches (suppression in the bronze loader, landing tombstones, the
resolution closure), and an end-to-end test: the retailpulse_daily DAG over the last days of the
small sandbox world, erase a person the world's truth says has orders, duplicate CRM contacts and
a GA4 login, then scan every column of every table (warehouse and serving copy) and every file of
the data and warehouse directories for their e-mails (all spellings), names, phones and ids, and
re-run the DAG with the sandbox still serving them.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from ingestion.bronze import load_batch
from ingestion.connectors.stripe import SPECS as STRIPE
from ingestion.interval import Interval
from ingestion.landing import LandingZone
from retailpulse.erasure import (
    SUPPRESSED_RULE,
    ErasureError,
    erase_command,
    erase_person,
    hash_identifier,
    load_salt,
    normalise,
    resolve_person,
)
from retailpulse.warehouse import get_warehouse

UTC = dt.timezone.utc
DAY = Interval.for_dates(dt.date(2025, 3, 1), dt.date(2025, 3, 1))
DAY2 = Interval.for_dates(dt.date(2025, 3, 2), dt.date(2025, 3, 2))


def customer(i: int, email: str | None = None, **kw) -> dict:
    rec = {"id": f"cus_{i:05d}", "object": "customer", "email": email or f"person{i}@example.com",
           "name": f"Person Number{i}", "phone": f"+1555000{i:04d}", "created": 1740787200 + i,
           "address": {"country": "US"}, "livemode": False}
    rec.update(kw)
    return rec


def charge(i: int, cust: int, email: str | None = None, **kw) -> dict:
    rec = {"id": f"ch_{i:05d}", "object": "charge", "amount": 1000 + i, "amount_captured": 1000 + i,
           "amount_refunded": 0, "refunded": False, "currency": "usd", "customer": f"cus_{cust:05d}",
           "created": 1740787200 + i, "status": "succeeded", "paid": True, "failure_code": None,
           "description": f"Order ord_{i:05d}", "receipt_email": email or f"person{cust}@example.com",
           "metadata": {"order_id": f"ord_{i:05d}"}, "livemode": False}
    rec.update(kw)
    return rec


def _land_and_load(settings, obj: str, records: list, interval: Interval = DAY):
    wh = get_warehouse(settings)
    from retailpulse.pipeline import init_warehouse

    init_warehouse(settings)
    zone = LandingZone(settings.landing_path)
    zone.write_batch("stripe", obj, interval, records)
    return wh, zone, load_batch(wh, zone, STRIPE[obj], interval)


# --- salt and hashing -----------------------------------------------------------------------------
def test_salt_is_private_stable_and_hashes_normalised_identifiers(tmp_path):
    assert load_salt(tmp_path) is None
    salt = load_salt(tmp_path, create=True)
    assert salt and load_salt(tmp_path, create=True) == salt
    assert stat.S_IMODE(os.stat(tmp_path / "suppression_salt").st_mode) == 0o600
    assert hash_identifier(salt, "  Jane.Doe@Example.COM ") == hash_identifier(salt, "jane.doe@example.com")
    assert hash_identifier(salt, "x@y.io") != hash_identifier(b"other", "x@y.io")
    assert normalise(" CUS_Ab ") == "cus_ab"


# --- the erasure on hand-made bronze -----------------------------------------------------------------
def test_erasure_of_a_person_in_stripe_and_suppression_on_reload(settings):
    people = [customer(1, email="Jane.Doe@Example.com"), customer(2), customer(3, email=" jane.doe@example.com ")]
    wh, zone, report = _land_and_load(settings, "customers", people)
    assert report.loaded == 3
    charges = [charge(10, 1), charge(11, 2), charge(12, 3), charge(13, 2, email="JANE.DOE@example.com ")]
    _, _, report = _land_and_load(settings, "charges", charges)
    assert report.loaded == 4

    person = resolve_person(wh, email="jane.doe@example.com")
    # both Stripe customers with that address, their charges and orders, and the guest charge
    assert person.ids["stripe_customer"] == {"cus_00001", "cus_00003"}
    assert person.ids["stripe_charge"] == {"ch_00010", "ch_00012", "ch_00013"}
    assert "ord_00013" in person.ids["order"]
    assert "cus_00002" not in person.needles(), "a guest checkout does not pull in the paying customer"

    result = erase_person(settings, email="  JANE.doe@EXAMPLE.com", request_id="req-1", rebuild=False)
    assert result.status == "completed" and result.found
    assert result.removed["bronze.stripe__customers"] == 2 and result.removed["bronze.stripe__charges"] == 3
    assert result.removed["landing:stripe/customers"] == 2 and result.removed["landing:stripe/charges"] == 3
    assert wh.query("select id from bronze.stripe__customers") == [("cus_00002",)]
    assert wh.query("select id from bronze.stripe__charges") == [("ch_00011",)]
    # rows moved to rejected_records without content; the audit still reconciles
    rej = wh.query("select object, rule, record from bronze.rejected_records order by object, row_number")
    assert rej == [("charges", SUPPRESSED_RULE, None)] * 3 + [("customers", SUPPRESSED_RULE, None)] * 2
    for obj, extracted, loaded, rejected in wh.query("select object, extracted, loaded, rejected from ops.load_audit"):
        assert loaded + rejected == extracted
        assert wh.scalar(f"select count(*) from bronze.stripe__{obj}") == loaded
    # landing files: tombstones, same record count, no trace of the address
    for obj in ("customers", "charges"):
        text = gzip.open(zone.batch_dir("stripe", obj, DAY) / "part-00000.ndjson.gz", "rt").read().lower()
        assert "jane.doe" not in text and "cus_00001" not in text
        manifest = zone.read_manifest("stripe", obj, DAY)
        assert manifest.record_count == len(text.splitlines())
    # the audit row has no PII
    audit = wh.query_df("select * from ops.erasure_audit")
    assert list(audit["request_id"]) == ["req-1"] and audit["status"][0] == "completed"
    assert "jane" not in audit.to_csv().lower() and "cus_0000" not in audit.to_csv()
    assert wh.scalar("select count(*) from ops.suppression") >= 6

    # the source still serves the person: a re-extraction lands them again, the loader drops them
    _, zone, report = _land_and_load(settings, "customers", people)
    assert (report.loaded, report.rejected) == (1, 2)
    _, zone, report = _land_and_load(settings, "charges", charges + [charge(14, 3, email="new@example.com")],
                                     interval=DAY2)
    assert (report.loaded, report.rejected) == (1, 4), "a new charge of an erased customer is dropped too"
    assert wh.query("select distinct rule, record from bronze.rejected_records") == [(SUPPRESSED_RULE, None)]
    text = gzip.open(zone.batch_dir("stripe", "charges", DAY2) / "part-00000.ndjson.gz", "rt").read().lower()
    assert "jane.doe" not in text and "cus_00003" not in text, "suppressed records are tombstoned in landing"
    # re-loading a tombstoned batch gives the same result (idempotent)
    again = load_batch(wh, zone, STRIPE["charges"], DAY2)
    assert (again.loaded, again.rejected) == (1, 4)

    # a second request for the same person finds nothing and completes
    assert "nothing in the warehouse matches" in erase_command(settings, email="jane.doe@example.com")


def test_suppressed_rows_do_not_make_a_batch_fail_the_reject_fraction(settings):
    wh, zone, _ = _land_and_load(settings, "customers", [customer(1), customer(2)])
    erase_person(settings, email="person1@example.com", rebuild=False)
    # 1 of 2 suppressed = 50% > max_reject_fraction 20%, yet the batch loads
    _, _, report = _land_and_load(settings, "customers", [customer(1), customer(2)], interval=DAY2)
    assert report.status == "loaded" and (report.loaded, report.rejected) == (1, 1)


def test_missing_salt_refuses_to_load_rather_than_let_people_back(settings):
    wh, zone, _ = _land_and_load(settings, "customers", [customer(1)])
    erase_person(settings, email="person1@example.com", rebuild=False)
    (settings.state_path / "suppression_salt").unlink()
    with pytest.raises(Exception, match="salt"):
        _land_and_load(settings, "customers", [customer(1)], interval=DAY2)


def test_request_needs_exactly_one_identifier(settings):
    with pytest.raises(ErasureError):
        erase_person(settings)
    with pytest.raises(ErasureError):
        erase_person(settings, email="a@b.co", customer_id="x")
    with pytest.raises(ErasureError, match="not an e-mail"):
        erase_person(settings, email="nobody")


@pytest.fixture(params=["duckdb", "postgres"])
def any_target(request, settings_factory):
    if request.param == "duckdb":
        return settings_factory()
    return request.getfixturevalue("pg_settings")


def test_resolution_keeps_shared_devices_and_households(any_target):
    """A CRM household shared with someone else and a GA4 device someone else logged in on are
    not the person's: they are not erased (only the person's own rows on them are). Same SQL on
    DuckDB and Postgres."""
    settings = any_target
    wh = get_warehouse(settings)
    from retailpulse.pipeline import init_warehouse

    init_warehouse(settings)
    contacts = pd.DataFrame({
        "id": ["003AAAAAAA", "003BBBBBBB", "003CCCCCCC"], "email": ["ann@x.io", "ANN@x.io ", "bob@x.io"],
        "accountid": ["001SOLO1", "001SHARED", "001SHARED"], "web_user_id__c": ["u_100001", None, "u_200002"],
        "_interval_key": ["k"] * 3, "_batch_id": ["b"] * 3, "_row_number": [0, 1, 2],
    })
    events = pd.DataFrame({
        "event_key": ["e1", "e2", "e3", "e4", "e5"],
        "user_pseudo_id": ["dev.ann.only", "dev.ann.only", "dev.family", "dev.family", "dev.family"],
        "user_id": ["u_100001", None, "u_100001", "u_200002", None],
        "ecommerce__transaction_id": [None, None, "ord_90001", None, None],
        "_interval_key": ["k"] * 5, "_batch_id": ["b"] * 5, "_row_number": [0, 1, 2, 3, 4],
    })
    with wh.connect() as con:
        wh.replace_rows("bronze", "salesforce__contact", contacts, where={}, con=con)
        wh.replace_rows("bronze", "ga4__events", events, where={}, con=con)
    person = resolve_person(wh, email="ann@x.io")
    assert person.ids["sf_contact"] == {"003aaaaaaa", "003bbbbbbb"}
    assert person.ids["sf_account"] == {"001solo1"}
    assert person.ids["ga4_user_pseudo_id"] == {"dev.ann.only"}
    assert person.ids["order"] == {"ord_90001"}
    report = erase_person(settings, email="ann@x.io", rebuild=False, publish=False)
    assert report.status == "completed" and report.residual == {}
    bronze = wh.schema_name("bronze")
    assert wh.query(f'select id from "{bronze}".salesforce__contact') == [("003CCCCCCC",)]
    assert wh.query(f'select event_key from "{bronze}".ga4__events order by 1') == [("e4",), ("e5",)]
    assert wh.scalar(f'select count(*) from "{wh.schema_name("ops")}".suppression') == len(
        {v for vs in person.ids.values() for v in vs})


# --- end to end on the small sandbox world -----------------------------------------------------------
E2E_DAYS = 30
E2E_END = dt.date(2025, 12, 31)
E2E_START = E2E_END - dt.timedelta(days=E2E_DAYS - 1)


@contextmanager
def pipeline_env(root: Path, server) -> Iterator[object]:
    from retailpulse.settings import load_settings

    saved = dict(os.environ)
    os.environ.update({
        "RETAILPULSE_DATA_DIR": str(root / "data"),
        "RETAILPULSE_WAREHOUSE_PATH": str(root / "warehouse" / "retailpulse.duckdb"),
        "RETAILPULSE_SERVING_DIR": str(root / "warehouse" / "serving"),
        "RETAILPULSE_DBT_THREADS": "4",
        **server.env(),
    })
    try:
        yield load_settings(_env_file=None)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _norm(v) -> str | None:
    if v is None or (isinstance(v, float) and pd.isna(v)) or v is pd.NA:
        return None
    s = str(v).strip().lower()
    return s or None


class Needles:
    """What must not be found anywhere after the erasure (all lower-case)."""

    def __init__(self) -> None:
        self.emails: set[str] = set()
        self.ids: set[str] = set()
        self.phones: set[str] = set()
        self.full_names: set[str] = set()
        self.name_pairs: set[tuple[str, str]] = set()

    def pattern(self) -> re.Pattern[str]:
        alts = sorted((re.escape(x) for x in self.emails | self.ids | self.phones | self.full_names), key=len,
                      reverse=True)
        return re.compile(r"(?<![a-z0-9_])(" + "|".join(alts) + r")(?![a-z0-9_])")


def person_needles(world, pid: str) -> Needles:
    """Every identifier and personal detail of ``pid`` in the world's sources (its truth)."""
    n = Needles()
    ident = world.truth("truth_identity").to_pandas()
    mine = ident[ident.person_id == pid]
    src = mine.groupby("source").source_id.apply(lambda s: {str(x) for x in s}).to_dict()
    people = world.truth("truth_people").to_pandas().set_index("person_id")
    p = people.loc[pid]
    n.emails |= {_norm(x) for x in src.get("email", set())} | {_norm(p.email)}
    for phone in (p.phone, p.previous_phone):
        if _norm(phone):
            n.phones.add(_norm(phone))
    n.full_names.add(f"{p.first_name} {p.last_name}".lower())
    n.name_pairs.add((p.first_name.lower(), p.last_name.lower()))
    for kind in ("stripe_customer", "sf_contact", "sf_lead", "ga4_user_id", "ga4_user_pseudo_id"):
        n.ids |= {x.lower() for x in src.get(kind, set())}
    cus = world.table("stripe_customers").to_pandas()
    for r in cus[cus.id.isin(src.get("stripe_customer", set()))].itertuples():
        n.emails.add(_norm(r.email)) if _norm(r.email) else None
        if _norm(r.phone):
            n.phones.add(_norm(r.phone))
        if _norm(r.name):
            n.full_names.add(_norm(r.name))
    contacts = world.table("sf_contact").to_pandas()
    leads = world.table("sf_lead").to_pandas()
    accounts: set[str] = set()
    for frame, ids in ((contacts, src.get("sf_contact", set())), (leads, src.get("sf_lead", set()))):
        for r in frame[frame.Id.isin(ids)].itertuples():
            if _norm(r.Email):
                n.emails.add(_norm(r.Email))
            for ph in (r.Phone, getattr(r, "MobilePhone", None)):
                if _norm(ph):
                    n.phones.add(_norm(ph))
            if _norm(r.FirstName) and _norm(r.LastName):
                n.full_names.add(f"{_norm(r.FirstName)} {_norm(r.LastName)}")
                n.name_pairs.add((_norm(r.FirstName), _norm(r.LastName)))
            if getattr(r, "AccountId", None) and _norm(r.AccountId):
                accounts.add(r.AccountId)
    others = contacts[~contacts.Id.isin(src.get("sf_contact", set()))]
    n.ids |= {a.lower() for a in accounts if a not in set(others.AccountId.dropna())}
    orders = world.truth("truth_orders").to_pandas()
    mo = orders[(orders.person_id == pid) & orders.in_observation]
    n.ids |= {x.lower() for x in mo.order_id}
    charges = world.table("stripe_charges").to_pandas()
    mc = charges[charges.customer.isin(src.get("stripe_customer", set())) | charges.metadata_order_id.isin(mo.order_id)]
    n.ids |= {x.lower() for x in mc.id}
    n.emails |= {_norm(x) for x in mc.receipt_email if _norm(x)}
    refunds = world.table("stripe_refunds").to_pandas()
    n.ids |= {x.lower() for x in refunds[refunds.charge.isin(mc.id)].id}
    cases = world.table("sf_case").to_pandas()
    n.ids |= {x.lower() for x in cases[cases.ContactId.isin(src.get("sf_contact", set()))].Id}
    return n


def _text_columns(con, catalog: str | None, schema: str, table: str) -> list[str]:
    sql = ("select column_name from information_schema.columns where table_schema = ? and table_name = ? "
           "and (data_type like 'VARCHAR%' or data_type = 'JSON')")
    params = [schema, table]
    if catalog:
        sql += " and table_catalog = ?"
        params.append(catalog)
    return [r[0] for r in con.execute(sql, params).fetchall()]


def scan_duckdb(con, needles: Needles, catalog: str | None = None) -> list[str]:
    """Every table (every schema): cells mentioning a needle, rows holding first AND last name."""
    pattern = needles.pattern()
    found: list[str] = []
    sql = "select table_schema, table_name from information_schema.tables where table_type = 'BASE TABLE'"
    params: list = []
    if catalog:
        sql += " and table_catalog = ?"
        params.append(catalog)
    prefix = f'"{catalog}".' if catalog else ""
    for schema, table in con.execute(sql, params).fetchall():
        cols = _text_columns(con, catalog, schema, table)
        if not cols:
            continue
        row = "chr(31) || concat_ws(chr(31), " + ", ".join(f'lower(trim("{c}"))' for c in cols) + ") || chr(31)"
        for (text,) in con.execute(f'select {row} from {prefix}"{schema}"."{table}"').fetchall():
            m = pattern.search(text)
            if m:
                found.append(f"{schema}.{table}: {m.group(1)!r}")
                break
            cells = set(text.split("\x1f"))
            if any(f in cells and last in cells for f, last in needles.name_pairs):
                found.append(f"{schema}.{table}: first and last name in one row")
                break
    return found


def scan_files(roots: list[Path], needles: Needles, skip: list[Path]) -> list[str]:
    import duckdb

    pattern = needles.pattern()
    found: list[str] = []
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if any(s in path.parents for s in skip) or path.suffix in (".duckdb", ".wal"):
                continue  # database files are scanned through SQL
            if path.suffix == ".parquet":
                con = duckdb.connect()
                try:
                    con.execute(f"create view t as select * from read_parquet('{path}')")
                    cols = [r[0] for r in con.execute("select column_name, data_type from information_schema.columns "
                                                      "where table_name = 't'").fetchall()]
                    for (text,) in con.execute("select lower(concat_ws(chr(31), " + ", ".join(
                            f'cast("{c}" as varchar)' for c in cols) + ")) from t").fetchall():
                        if text and pattern.search(text):
                            found.append(f"{path}: {pattern.search(text).group(1)!r}")
                            break
                finally:
                    con.close()
                continue
            data = path.read_bytes()
            if path.suffix == ".gz":
                data = gzip.decompress(data)
            m = pattern.search(data.decode("utf-8", errors="ignore").lower())
            if m:
                found.append(f"{path.relative_to(root)}: {m.group(1)!r}")
    return found


def _others_mention(world, pid: str, needles: Needles) -> bool:
    """Whether anyone else's person record (Stripe customer, CRM contact/lead/account, truth)
    carries one of the person's e-mails, phones or names (then a scan could not tell them apart)."""
    ident = world.truth("truth_identity").to_pandas()
    mine = set(ident[ident.person_id == pid].source_id)
    pattern = needles.pattern()
    frames = [
        world.truth("truth_people").to_pandas().pipe(lambda d: d[d.person_id != pid])
        [["first_name", "last_name", "email", "phone", "previous_phone"]],
        world.table("stripe_customers").to_pandas().pipe(lambda d: d[~d.id.isin(mine)])[["email", "name", "phone"]],
        world.table("sf_contact").to_pandas().pipe(lambda d: d[~d.Id.isin(mine)])
        [["FirstName", "LastName", "Email", "Phone", "MobilePhone"]],
        world.table("sf_lead").to_pandas().pipe(lambda d: d[~d.Id.isin(mine)])[["FirstName", "LastName", "Email", "Phone"]],
        world.table("sf_account").to_pandas().pipe(lambda d: d[~d.Id.str.lower().isin(needles.ids)])[["Name", "Phone"]],
    ]
    for frame in frames:
        cols = [frame[c].fillna("").astype(str).str.strip().str.lower() for c in frame.columns]
        rows = cols[0]
        for c in cols[1:]:
            rows = rows + "\x1f" + c
        for text in rows:
            if pattern.search(text):
                return True
            cells = set(text.split("\x1f"))
            if any(f in cells and last in cells for f, last in needles.name_pairs):
                return True
    return False


def _pick_person(world, con) -> str:
    """A person with orders, CRM contacts (duplicates preferred) and a GA4 login in the loaded
    window, whose devices the warehouse links to them, and whose e-mails, phones and names
    nobody else's records carry."""
    def ids(sql: str) -> set[str]:
        return {r[0] for r in con.execute(sql).fetchall()}

    b_cus = ids("select id from bronze.stripe__customers")
    b_con = ids("select id from bronze.salesforce__contact")
    b_uid = ids("select user_id from bronze.ga4__events where user_id is not null")
    b_dev = ids("select user_pseudo_id from bronze.ga4__events")
    b_ord = ids("select metadata__order_id from bronze.stripe__charges")
    imap = con.execute("select identifier_type, identifier_value, customer_id from gold.customer_identity_map").df()
    ident = world.truth("truth_identity").to_pandas()
    orders = world.truth("truth_orders").to_pandas()
    ranked: list[tuple] = []
    for pid, g in ident.groupby("person_id"):
        src = g.groupby("source").source_id.apply(set).to_dict()
        cus, cons = src.get("stripe_customer", set()), src.get("sf_contact", set())
        uid, devs = src.get("ga4_user_id", set()), src.get("ga4_user_pseudo_id", set()) & b_dev
        if not (cus & b_cus and cons and cons <= b_con and uid & b_uid):
            continue
        if not set(orders[orders.person_id == pid].order_id) & b_ord:
            continue
        linked = imap[imap.identifier_value.isin(cus | cons | uid)].customer_id.dropna()
        if linked.nunique() != 1:
            continue
        dev_rows = imap[imap.identifier_value.isin(devs)]
        if len(set(dev_rows.identifier_value)) != len(devs) or dev_rows.customer_id.isna().any() or \
                set(dev_rows.customer_id) != {linked.iloc[0]}:
            continue  # a device nobody can attribute to them (never logged in, never bought)
        ranked.append((len(cons) >= 2, len(devs), len(src.get("sf_lead", set())), pid))
    for *_, pid in sorted(ranked, reverse=True):
        if not _others_mention(world, pid, person_needles(world, pid)):
            return pid
    raise AssertionError(f"no suitable person among {len(ranked)} candidates: widen E2E_DAYS")


@pytest.fixture(scope="module")
def erasure_e2e(small_world, tmp_path_factory):
    import duckdb

    from retailpulse.airflow_setup import run_daily
    from sandbox.server import SandboxServer
    from sandbox.world import World

    world = World.load(small_world)
    server = SandboxServer(small_world, ga4_export_dir=tmp_path_factory.mktemp("erasure_ga4"))
    server.start()
    try:
        server.set_clock(dt.datetime.combine(E2E_END + dt.timedelta(days=1), dt.time(0), tzinfo=UTC))
        server.wait_ga4()
        root = tmp_path_factory.mktemp("erasure_e2e")
        with pipeline_env(root, server) as settings:
            run_daily(settings, E2E_START, E2E_END)
            con = duckdb.connect(str(settings.duckdb_path))
            try:
                pid = _pick_person(world, con)
                needles = person_needles(world, pid)
                before = scan_duckdb(con, needles)
            finally:
                con.close()
            assert len(before) >= 10, "the person is really in the warehouse before the erasure"
            email = world.truth("truth_people").to_pandas().set_index("person_id").loc[pid, "email"]
            report = erase_person(settings, email=f"  {email.upper()} ", request_id="e2e-erasure")
            yield {"settings": settings, "server": server, "needles": needles, "report": report, "root": root,
                   "pid": pid}
    finally:
        server.stop()


def _everything_clean(settings, needles: Needles, root: Path) -> list[str]:
    import duckdb

    found = []
    con = duckdb.connect(str(settings.duckdb_path))
    try:
        found += scan_duckdb(con, needles)
    finally:
        con.close()
    serving = settings.serving_path / "retailpulse_serving.duckdb"
    assert serving.exists()
    con = duckdb.connect(str(serving), read_only=True)
    try:
        found += [f"serving {f}" for f in scan_duckdb(con, needles)]
    finally:
        con.close()
    found += scan_files([root / "data", root / "warehouse"], needles, skip=[settings.sandbox_path])
    return found


@pytest.mark.e2e
def test_erased_person_is_in_no_table_and_no_file(erasure_e2e):
    report, settings = erasure_e2e["report"], erasure_e2e["settings"]
    assert report.status == "completed" and report.found and report.rebuilt and report.published
    assert report.residual == {}
    assert report.identifiers.get("sf_contact", 0) >= 1 and report.identifiers.get("ga4_user_id", 0) >= 1
    assert report.removed.get("bronze.stripe__charges", 0) >= 1
    assert _everything_clean(settings, erasure_e2e["needles"], erasure_e2e["root"]) == []
    wh = get_warehouse(settings)
    audit = wh.query_df("select * from ops.erasure_audit where request_id = 'e2e-erasure'")
    assert len(audit) == 1 and audit.completed_at.notna().all()
    # every extracted record is still in bronze or in rejected_records
    for source, obj, key, extracted, loaded, rejected in wh.query(
            "select source, object, interval_key, extracted, loaded, rejected from ops.load_audit"):
        assert loaded + rejected == extracted, (source, obj, key)
        assert wh.scalar(f"select count(*) from bronze.{source}__{obj} where _interval_key = ?", [key]) == loaded
        assert wh.scalar("select count(*) from bronze.rejected_records where source = ? and object = ? "
                         "and interval_key = ?", [source, obj, key]) == rejected
    assert stat.S_IMODE(os.stat(settings.state_path / "suppression_salt").st_mode) == 0o600


@pytest.mark.e2e
def test_rerun_with_the_sandbox_still_serving_the_person_brings_nothing_back(erasure_e2e):
    from retailpulse.airflow_setup import run_daily

    settings = erasure_e2e["settings"]
    wh = get_warehouse(settings)
    before = wh.scalar(f"select count(*) from bronze.rejected_records where rule = '{SUPPRESSED_RULE}'")
    started = dt.datetime.now(UTC)
    with pipeline_env(erasure_e2e["root"], erasure_e2e["server"]) as again:
        assert again.duckdb_path == settings.duckdb_path
        run_daily(again, E2E_START, E2E_END)  # re-extracts everything the sandbox serves, the person included
    after = wh.scalar(f"select count(*) from bronze.rejected_records where rule = '{SUPPRESSED_RULE}'")
    assert after >= before > 0
    # the re-run really extracted the person again, and the loader dropped them
    fresh = wh.query(f"select source, count(*) from bronze.rejected_records where rule = '{SUPPRESSED_RULE}' "
                     "and rejected_at >= ? group by 1", [started])
    assert {"stripe", "salesforce", "ga4"} <= {s for s, _ in fresh}, fresh
    tombstoned = [p for p in (erasure_e2e["root"] / "data" / "landing").rglob("manifest.json")
                  if json.loads(p.read_text()).get("stats", {}).get(SUPPRESSED_RULE)]
    assert tombstoned, "suppressed landed lines were replaced by tombstones"
    assert wh.scalar(f"select count(*) from bronze.rejected_records where rule = '{SUPPRESSED_RULE}' "
                     "and record is not null") == 0
    for source, obj, extracted, loaded, rejected in wh.query(
            "select source, object, extracted, loaded, rejected from ops.load_audit"):
        assert loaded + rejected == extracted, (source, obj)
    assert _everything_clean(settings, erasure_e2e["needles"], erasure_e2e["root"]) == []
    # asking again finds nothing and completes at once
    report = erase_person(settings, email=next(iter(erasure_e2e["needles"].emails)))
    assert not report.found and report.status == "completed"
    assert json.loads(wh.query_df("select removed from ops.erasure_audit where request_id = 'e2e-erasure'")
                      .removed[0])


def test_erasure_dag_erases_by_email_hash(settings, monkeypatch):
    """The Airflow DAG, triggered with the e-mail's hash only (the address never reaches Airflow)."""
    import hashlib

    from retailpulse.airflow_setup import load_dag

    wh, _, _ = _land_and_load(settings, "customers", [customer(1, email="Jane.Doe@Example.com"), customer(2)])
    for key, value in {"RETAILPULSE_DATA_DIR": settings.data_path, "RETAILPULSE_WAREHOUSE_PATH": settings.duckdb_path,
                       "RETAILPULSE_SERVING_DIR": settings.serving_path}.items():
        monkeypatch.setenv(key, str(value))
    dag = load_dag(settings, "retailpulse_gdpr_erasure")
    digest = hashlib.sha256(b"jane.doe@example.com").hexdigest()
    dr = dag.test(logical_date=dt.datetime(2025, 3, 5, tzinfo=UTC), run_conf={"email_sha256": digest})
    assert "success" in str(dr.state)
    assert wh.query("select id from bronze.stripe__customers") == [("cus_00002",)]
    audit = wh.query("select request_id, identifier_type, status from ops.erasure_audit")
    assert len(audit) == 1 and audit[0][0].startswith("airflow:") and audit[0][1:] == ("email_sha256", "completed")
