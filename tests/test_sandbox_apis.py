"""The mock source APIs, driven through the real client libraries against the small world."""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import requests
import stripe

from sandbox.apis.faults import FaultConfig
from sandbox.server import SandboxServer, load_world

UTC = dt.timezone.utc


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(sandbox_server: SandboxServer):
    return load_world(sandbox_server.world_path)


@contextlib.contextmanager
def clock(server: SandboxServer, when: Any) -> Iterator[None]:
    server.set_clock(when)
    try:
        yield
    finally:
        server.set_clock(server.default_as_of)


@contextlib.contextmanager
def faults(server: SandboxServer, config: FaultConfig) -> Iterator[None]:
    server.set_faults(config)
    try:
        yield
    finally:
        server.set_faults(FaultConfig())


def visible(table: pa.Table, as_of: dt.datetime) -> pa.Table:
    return table.filter(pc.less_equal(table.column("_visible_at"), pa.scalar(as_of, pa.timestamp("us", tz="UTC"))))


def latest_versions(table: pa.Table, key: str | list[str], as_of: dt.datetime) -> pa.Table:
    """The latest version per key among the rows visible at ``as_of`` (pandas, independent of the server)."""
    keys = [key] if isinstance(key, str) else key
    df = visible(table, as_of).to_pandas()
    df = df.sort_values(keys + ["_visible_at"], kind="stable").groupby(keys, as_index=False).tail(1)
    return pa.Table.from_pandas(df, preserve_index=False)


def stripe_client(server: SandboxServer, key: str | None = None, retries: int = 0) -> stripe.StripeClient:
    return stripe.StripeClient(key or server.credentials["stripe_api_key"], base_addresses={"api": server.http_url},
                               max_network_retries=retries)


def stripe_get(server: SandboxServer, path: str, **params: Any) -> requests.Response:
    return requests.get(server.http_url + path, params=params, timeout=30,
                        headers={"Authorization": f"Bearer {server.credentials['stripe_api_key']}"})


def end_of_world(world) -> dt.datetime:
    end = dt.date.fromisoformat(str(world.meta["end"])[:10])
    return dt.datetime(end.year, end.month, end.day, 23, 59, 59, tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# server basics
# --------------------------------------------------------------------------------------------
def test_health_clock_and_loopback(sandbox_server: SandboxServer, world) -> None:
    h = requests.get(sandbox_server.http_url + "/_sandbox/health", timeout=10).json()
    assert h["status"] == "ok"
    assert sandbox_server.http_url.startswith("http://127.0.0.1:")
    assert sandbox_server.https_url.startswith("https://127.0.0.1:")
    http_port = int(sandbox_server.http_url.rsplit(":", 1)[1])
    https_port = int(sandbox_server.https_url.rsplit(":", 1)[1])
    assert https_port == http_port + 1
    assert sandbox_server.default_as_of == end_of_world(world)
    assert requests.get(sandbox_server.http_url + "/_sandbox/clock", timeout=10).json()["as_of"].startswith(
        world.meta["end"][:10])
    with clock(sandbox_server, "2025-02-01T00:00:00Z"):
        got = requests.get(sandbox_server.https_url + "/_sandbox/clock", verify=str(sandbox_server.ca_path),
                           timeout=10).json()
        assert got["as_of"].startswith("2025-02-01T00:00:00")
    r = requests.post(sandbox_server.http_url + "/_sandbox/clock", json={"as_of": "2025-02-01T00:00:00+0000"}, timeout=60)
    try:
        assert r.status_code == 200 and sandbox_server.as_of == dt.datetime(2025, 2, 1, tzinfo=UTC)
    finally:
        sandbox_server.set_clock(sandbox_server.default_as_of)
    assert requests.post(sandbox_server.http_url + "/_sandbox/clock", json={"nope": 1}, timeout=10).status_code == 400


def test_https_requires_the_sandbox_ca(sandbox_server: SandboxServer) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(sandbox_server.https_url + "/_sandbox/health", timeout=10)  # system CAs only
    ok = requests.get(sandbox_server.https_url + "/_sandbox/health", verify=str(sandbox_server.ca_path), timeout=10)
    assert ok.status_code == 200


def test_env_lines_cover_every_connector_setting(sandbox_server: SandboxServer) -> None:
    env = sandbox_server.env()
    for key in ("STRIPE_API_BASE", "STRIPE_API_KEY", "SALESFORCE_INSTANCE_URL", "SALESFORCE_SESSION_ID",
                "SALESFORCE_CA_BUNDLE", "GA4_EXPORT_URL", "GOOGLE_ADS_BASE_URL", "GOOGLE_ADS_CUSTOMER_ID",
                "GOOGLE_ADS_DEVELOPER_TOKEN", "GOOGLE_ADS_ACCESS_TOKEN", "META_BASE_URL", "META_ACCOUNT_ID",
                "META_ACCESS_TOKEN"):
        assert env[f"RETAILPULSE_{key}"], key
    assert Path(env["RETAILPULSE_SALESFORCE_CA_BUNDLE"]).exists()


# --------------------------------------------------------------------------------------------
# Stripe
# --------------------------------------------------------------------------------------------
def test_stripe_lists_match_the_world(sandbox_server: SandboxServer, world) -> None:
    client = stripe_client(sandbox_server)
    as_of = sandbox_server.as_of
    customers = [c.to_dict(recursive=True) for c in client.v1.customers.list(params={"limit": 100}).auto_paging_iter()]
    charges = [c.to_dict(recursive=True) for c in client.v1.charges.list(params={"limit": 100}).auto_paging_iter()]
    refunds = [r.to_dict(recursive=True) for r in client.v1.refunds.list(params={"limit": 100}).auto_paging_iter()]
    w_cu = visible(world.stripe_customers, as_of)
    w_ch = visible(world.stripe_charges, as_of)
    w_re = visible(world.stripe_refunds, as_of)
    assert len(customers) == w_cu.num_rows and len({c["id"] for c in customers}) == len(customers)
    assert len(charges) == w_ch.num_rows and len({c["id"] for c in charges}) == len(charges)
    assert len(refunds) == w_re.num_rows
    # newest first
    keys = [(c["created"], c["id"]) for c in charges]
    assert keys == sorted(keys, reverse=True)
    # money adds up
    ok = w_ch.filter(pc.equal(w_ch.column("status"), "succeeded"))
    assert sum(c["amount"] for c in charges if c["status"] == "succeeded") == pc.sum(ok.column("amount")).as_py()
    assert sum(c["amount_refunded"] for c in charges) == (pc.sum(w_re.column("amount")).as_py() or 0)
    assert sum(r["amount"] for r in refunds) == (pc.sum(w_re.column("amount")).as_py() or 0)
    # shapes
    ch = next(c for c in charges if c["status"] == "succeeded")
    for k in ("id", "object", "amount", "amount_captured", "amount_refunded", "refunded", "currency", "customer",
              "created", "status", "paid", "failure_code", "metadata", "receipt_email", "description", "livemode"):
        assert k in ch, k
    assert ch["object"] == "charge" and ch["livemode"] is False and ch["metadata"]["order_id"].startswith("ord_")
    failed = [c for c in charges if c["status"] == "failed"]
    if failed:
        assert failed[0]["paid"] is False and failed[0]["amount_captured"] == 0 and failed[0]["failure_code"]
    cu = customers[0]
    assert cu["object"] == "customer" and set(cu["address"]) >= {"country"} and cu["metadata"] == {}
    re_ = refunds[0]
    assert re_["object"] == "refund" and re_["charge"].startswith("ch_") and re_["status"] == "succeeded"
    # the charge -> refunded flag follows the refunds
    by_id = {c["id"]: c for c in charges}
    refunded_total: Counter[str] = Counter()
    for r in refunds:
        refunded_total[r["charge"]] += r["amount"]
    for cid, total in refunded_total.items():
        assert by_id[cid]["amount_refunded"] == total
        assert by_id[cid]["refunded"] == (total >= by_id[cid]["amount"])


def test_stripe_events_feed_reaches_back_30_days(sandbox_server: SandboxServer, world) -> None:
    client = stripe_client(sandbox_server)
    as_of = sandbox_server.as_of
    events = [e.to_dict(recursive=True) for e in client.v1.events.list(params={"limit": 100}).auto_paging_iter()]
    floor = int(as_of.timestamp()) - 30 * 86400
    assert all(e["created"] >= floor for e in events)
    assert len({e["id"] for e in events}) == len(events)

    def count(tbl: pa.Table, extra=None) -> int:
        t = visible(tbl, as_of)
        t = t.filter(pc.greater_equal(t.column("created"), floor))
        if extra is not None:
            t = t.filter(extra(t))
        return t.num_rows

    types = Counter(e["type"] for e in events)
    assert types["customer.created"] == count(world.stripe_customers)
    assert types["charge.succeeded"] == count(world.stripe_charges, lambda t: pc.equal(t.column("status"), "succeeded"))
    assert types["charge.failed"] == count(world.stripe_charges, lambda t: pc.equal(t.column("status"), "failed"))
    assert types["refund.created"] == types["charge.refunded"] == count(world.stripe_refunds)
    for e in events:
        assert e["object"] == "event" and e["id"].startswith("evt_") and e["data"]["object"]["id"]
        if e["type"] == "charge.refunded":
            obj = e["data"]["object"]
            assert obj["object"] == "charge" and obj["amount_refunded"] > 0
    # type filter with a wildcard, as the connector might use it
    only = stripe_get(sandbox_server, "/v1/events", limit=100, type="refund.*").json()
    assert only["data"] and all(e["type"] == "refund.created" for e in only["data"])


def test_stripe_paging_edge_cases(sandbox_server: SandboxServer, world) -> None:
    client = stripe_client(sandbox_server)
    as_of = sandbox_server.as_of
    created = np.sort(np.asarray(visible(world.stripe_charges, as_of).column("created").to_numpy()))
    # a created window holding exactly 100 charges
    lo = next(i for i in range(len(created) - 100) if (i == 0 or created[i - 1] < created[i]) and created[i + 99] < created[i + 100])
    params = {"limit": 100, "created": {"gte": int(created[lo]), "lte": int(created[lo + 99])}}
    page = client.v1.charges.list(params=params)
    assert len(page.data) == 100 and page.has_more is False
    assert len(list(page.auto_paging_iter())) == 100
    # one short of the window: has_more true, then one item on the next page
    page = client.v1.charges.list(params={**params, "limit": 99})
    assert len(page.data) == 99 and page.has_more is True
    nxt = client.v1.charges.list(params={**params, "limit": 99, "starting_after": page.data[-1].id})
    assert len(nxt.data) == 1 and nxt.has_more is False
    # ending_before walks back
    prev = client.v1.charges.list(params={**params, "limit": 5, "ending_before": nxt.data[0].id})
    assert [c.id for c in prev.data] == [c.id for c in page.data[-5:]] and prev.has_more is True
    # empty pages
    empty = client.v1.charges.list(params={"created": {"gt": int(created[-1]) + 10**6}})
    assert empty.data == [] and empty.has_more is False and list(empty.auto_paging_iter()) == []
    last = stripe_get(sandbox_server, "/v1/charges", limit=100, **{"created[lte]": int(created[0])}).json()
    tail = stripe_get(sandbox_server, "/v1/charges", limit=100, starting_after=last["data"][-1]["id"],
                      **{"created[lte]": int(created[0])}).json()
    assert tail == {"object": "list", "data": [], "has_more": False, "url": "/v1/charges"}
    # default limit 10
    assert len(stripe_get(sandbox_server, "/v1/customers").json()["data"]) == min(10, len(created))
    # created filters (form-encoded brackets)
    mid = int(created[len(created) // 2])
    got = list(client.v1.charges.list(params={"limit": 100, "created": {"lt": mid}}).auto_paging_iter())
    assert len(got) == int((created < mid).sum())
    got = list(client.v1.charges.list(params={"limit": 100, "created": {"gt": mid}}).auto_paging_iter())
    assert len(got) == int((created > mid).sum())
    # customer filter
    cust = world.stripe_charges.column("customer")[0].as_py()
    mine = list(client.v1.charges.list(params={"customer": cust, "limit": 3}).auto_paging_iter())
    w = visible(world.stripe_charges, as_of)
    assert len(mine) == pc.sum(pc.equal(w.column("customer"), cust)).as_py()
    # retrieve by id; unknown ids
    one = client.v1.charges.retrieve(mine[0].id)
    assert one.id == mine[0].id and one.amount == mine[0].amount
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.charges.retrieve("ch_doesnotexist")
    assert exc.value.http_status == 404
    bad = stripe_get(sandbox_server, "/v1/charges", starting_after="ch_doesnotexist")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "starting_after"


def test_stripe_errors(sandbox_server: SandboxServer) -> None:
    with pytest.raises(stripe.AuthenticationError):
        stripe_client(sandbox_server, key="sk_test_wrong").v1.charges.list()
    r = requests.get(sandbox_server.http_url + "/v1/charges", timeout=10)
    assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error"
    # basic auth with the key as user, as some clients send it
    r = requests.get(sandbox_server.http_url + "/v1/charges", auth=(sandbox_server.credentials["stripe_api_key"], ""),
                     timeout=10)
    assert r.status_code == 200
    for limit in (0, 101, "x"):
        r = stripe_get(sandbox_server, "/v1/charges", limit=limit)
        assert r.status_code == 400
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error" and err["param"] == "limit" and err["message"]
    with pytest.raises(stripe.InvalidRequestError) as exc:
        stripe_client(sandbox_server).v1.charges.list(params={"limit": 101})
    assert exc.value.http_status == 400 and exc.value.param == "limit"
    assert stripe_get(sandbox_server, "/v1/charges", bogus=1).status_code == 400
    assert stripe_get(sandbox_server, "/v1/nothing").status_code == 404


def test_stripe_clock_moves_time(sandbox_server: SandboxServer, world) -> None:
    client = stripe_client(sandbox_server)
    re_ = world.stripe_refunds.sort_by([("created", "ascending")]).slice(0, 1).to_pylist()[0]
    charge = world.stripe_charges.filter(pc.equal(world.stripe_charges.column("id"), re_["charge"])).to_pylist()[0]
    before = dt.datetime.fromtimestamp(re_["created"] - 1, UTC)
    after = dt.datetime.fromtimestamp(re_["created"], UTC)
    n_end = len(list(client.v1.charges.list(params={"limit": 100}).auto_paging_iter()))
    with clock(sandbox_server, before):
        n_before = len(list(client.v1.charges.list(params={"limit": 100}).auto_paging_iter()))
        assert n_before == visible(world.stripe_charges, before).num_rows < n_end
        assert client.v1.charges.retrieve(charge["id"]).amount_refunded == 0
        with pytest.raises(stripe.InvalidRequestError):
            client.v1.refunds.retrieve(re_["id"])
    with clock(sandbox_server, after):
        assert client.v1.charges.retrieve(charge["id"]).amount_refunded >= re_["amount"]
        assert client.v1.refunds.retrieve(re_["id"]).amount == re_["amount"]
    # objects created after the clock do not exist yet
    first = world.stripe_charges.sort_by([("created", "ascending")]).slice(0, 1).to_pylist()[0]
    with clock(sandbox_server, dt.datetime.fromtimestamp(first["created"] - 1, UTC)):
        assert stripe_get(sandbox_server, "/v1/charges").json()["data"] == []
        assert stripe_get(sandbox_server, f"/v1/charges/{first['id']}").status_code == 404


def test_stripe_rate_limit_shape_and_retry(sandbox_server: SandboxServer, world) -> None:
    with faults(sandbox_server, FaultConfig(rate_429=1.0, seed=1, apis=("stripe",))):
        r = stripe_get(sandbox_server, "/v1/charges")
        assert r.status_code == 429 and r.headers["Stripe-Should-Retry"] == "true" and r.headers.get("Retry-After")
        assert r.json()["error"]["code"] == "rate_limit"
        with pytest.raises(stripe.RateLimitError):
            stripe_client(sandbox_server).v1.charges.list()
    # with retries, the SDK gets through a 40% rate of 429/5xx and sees the correct data
    created = np.sort(np.asarray(world.stripe_customers.column("created").to_numpy()))
    window = {"gte": int(created[0]), "lte": int(created[min(len(created) - 1, 349)])}
    expected = int(((created >= window["gte"]) & (created <= window["lte"])).sum())
    with faults(sandbox_server, FaultConfig(rate_429=0.2, rate_5xx=0.2, seed=3, apis=("stripe",))):
        client = stripe_client(sandbox_server, retries=12)
        got = [c.id for c in client.v1.customers.list(params={"limit": 100, "created": window}).auto_paging_iter()]
        stats = sandbox_server.faults.snapshot()["stats"]
    assert stats.get("429", 0) + stats.get("5xx", 0) > 0
    assert len(got) == expected == len(set(got))


# --------------------------------------------------------------------------------------------
# Salesforce (HTTPS)
# --------------------------------------------------------------------------------------------
SF_OBJECTS = {"Account": "sf_account", "Contact": "sf_contact", "Lead": "sf_lead", "Opportunity": "sf_opportunity",
              "Case": "sf_case"}


def sf_session(server: SandboxServer) -> requests.Session:
    s = requests.Session()
    s.verify = str(server.ca_path)
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override session.verify unless trust_env is off
    s.trust_env = False
    return s


def sf_client(server: SandboxServer, session_id: str | None = None):
    from simple_salesforce import Salesforce

    return Salesforce(instance_url=server.https_url, session_id=session_id or server.credentials["salesforce_session_id"],
                      session=sf_session(server), version="59.0")


def sf_state(world, obj: str, as_of: dt.datetime, include_deleted: bool) -> pa.Table:
    t = latest_versions(getattr(world, SF_OBJECTS[obj]), "Id", as_of)
    if not include_deleted:
        t = t.filter(pc.invert(t.column("IsDeleted")))
    return t


def test_salesforce_query_all_matches_world(sandbox_server: SandboxServer, world) -> None:
    sf = sf_client(sandbox_server)
    as_of = sandbox_server.as_of
    for obj in SF_OBJECTS:
        live = sf.query_all(f"SELECT Id, SystemModstamp FROM {obj}")
        every = list(sf.query_all_iter(f"SELECT Id, IsDeleted, SystemModstamp FROM {obj}", include_deleted=True))
        assert live["totalSize"] == sf_state(world, obj, as_of, False).num_rows, obj
        assert len(every) == sf_state(world, obj, as_of, True).num_rows, obj
        assert len({r["Id"] for r in every}) == len(every)
        assert sum(r["IsDeleted"] for r in every) == len(every) - live["totalSize"]
        assert all(r["attributes"]["type"] == obj and r["attributes"]["url"].endswith(r["Id"]) for r in every)
    # more than one batch: the first answer is not done and points at the next one
    contacts = sf_state(world, "Contact", as_of, True)
    assert contacts.num_rows > 2000, "the small world should have > 2,000 contacts"
    first = sf.query("SELECT Id FROM Contact", include_deleted=True)
    assert first["done"] is False and len(first["records"]) == 2000 and first["totalSize"] == contacts.num_rows
    assert re.fullmatch(r"/services/data/v59\.0/query/01g\w+-2000", first["nextRecordsUrl"])
    assert sf.api_usage["api-usage"].total == 15000
    # values are the latest version, datetimes in Salesforce's format
    rec = sf.query("SELECT Id, LastName, Email, SystemModstamp, CreatedDate FROM Contact ORDER BY SystemModstamp DESC LIMIT 1")
    row = contacts.filter(pc.equal(contacts.column("Id"), rec["records"][0]["Id"])).to_pylist()[0]
    got = rec["records"][0]
    assert got["LastName"] == row["LastName"] and got["Email"] == row["Email"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", got["SystemModstamp"])
    assert got["SystemModstamp"][:19] == row["SystemModstamp"].strftime("%Y-%m-%dT%H:%M:%S")
    assert rec["totalSize"] == 1 and rec["done"] is True and "nextRecordsUrl" not in rec


def test_salesforce_incremental_filters(sandbox_server: SandboxServer, world) -> None:
    sf = sf_client(sandbox_server)
    as_of = sandbox_server.as_of
    live = sf_state(world, "Contact", as_of, False)
    stamps = sorted(live.column("SystemModstamp").to_pylist())
    mark = stamps[len(stamps) // 2]
    lit = mark.strftime("%Y-%m-%dT%H:%M:%S") + "Z"
    mark_s = mark.replace(microsecond=0)
    got = sf.query_all(f"SELECT Id FROM Contact WHERE SystemModstamp >= {lit} ORDER BY SystemModstamp ASC")
    assert got["totalSize"] == sum(1 for s in stamps if s >= mark_s)
    got2 = sf.query_all(f"SELECT Id FROM Contact WHERE SystemModstamp >= {lit.replace('Z', '+0000')} AND IsDeleted = false")
    assert got2["totalSize"] == got["totalSize"]
    cnt = sf.query(f"SELECT COUNT() FROM Contact WHERE SystemModstamp < {lit}")
    assert cnt["totalSize"] == sum(1 for s in stamps if s < mark_s) and cnt["records"] == []
    # Email = is case-insensitive, null literal, IN, LIMIT
    email = live.column("Email").drop_null()[0].as_py()
    n_email = sf.query_all(f"SELECT Id FROM Contact WHERE Email = '{email.upper()}'")["totalSize"]
    assert n_email == sum(1 for e in live.column("Email").to_pylist() if e and e.lower() == email.lower())
    n_null = sf.query(f"SELECT COUNT() FROM Contact WHERE Phone = null")["totalSize"]
    assert n_null == live.column("Phone").null_count
    assert sf.query("SELECT Id FROM Contact LIMIT 5")["totalSize"] == 5
    ids = live.column("Id").to_pylist()[:3]
    q_in = sf.query("SELECT Id FROM Contact WHERE Id IN ('" + "','".join(ids) + "')")
    assert sorted(r["Id"] for r in q_in["records"]) == sorted(ids)
    # batch size header
    r = sf_session(sandbox_server).get(
        sandbox_server.https_url + "/services/data/v59.0/query", params={"q": "SELECT Id FROM Contact"}, timeout=30,
        headers={"Authorization": f"Bearer {sandbox_server.credentials['salesforce_session_id']}",
                 "Sforce-Query-Options": "batchSize=250"})
    assert len(r.json()["records"]) == 250 and r.json()["nextRecordsUrl"].endswith("-250")
    assert re.fullmatch(r"api-usage=\d+/15000", r.headers["Sforce-Limit-Info"])


def test_salesforce_clock_versions(sandbox_server: SandboxServer, world) -> None:
    sf = sf_client(sandbox_server)
    t = world.sf_contact
    counts = Counter(t.column("Id").to_pylist())
    rid = next(i for i, c in counts.items() if c > 1)
    versions = t.filter(pc.equal(t.column("Id"), rid)).sort_by("_visible_at").to_pylist()
    first_seen = versions[0]["_visible_at"]
    with clock(sandbox_server, first_seen):
        rec = sf.query_all(f"SELECT Id, SystemModstamp FROM Contact WHERE Id = '{rid}'", include_deleted=True)
        assert rec["totalSize"] == 1
        assert rec["records"][0]["SystemModstamp"][:19] == versions[0]["SystemModstamp"].strftime("%Y-%m-%dT%H:%M:%S")
        n_then = sf.query("SELECT COUNT() FROM Contact", include_deleted=True)["totalSize"]
        assert n_then == sf_state(world, "Contact", first_seen, True).num_rows
    with clock(sandbox_server, versions[-1]["_visible_at"]):
        rec = sf.query_all(f"SELECT Id, SystemModstamp FROM Contact WHERE Id = '{rid}'", include_deleted=True)
        assert rec["records"][0]["SystemModstamp"][:19] == versions[-1]["SystemModstamp"].strftime("%Y-%m-%dT%H:%M:%S")
    with clock(sandbox_server, first_seen - dt.timedelta(microseconds=1)):
        assert sf.query(f"SELECT COUNT() FROM Contact WHERE Id = '{rid}'", include_deleted=True)["totalSize"] == 0


def test_salesforce_errors(sandbox_server: SandboxServer) -> None:
    from simple_salesforce.exceptions import SalesforceExpiredSession, SalesforceMalformedRequest

    with pytest.raises(SalesforceExpiredSession) as exc:
        sf_client(sandbox_server, session_id="00Dwrong").query("SELECT Id FROM Contact")
    assert exc.value.content[0]["errorCode"] == "INVALID_SESSION_ID"
    sf = sf_client(sandbox_server)
    for q, code in (("SELECT FROM Contact", "MALFORMED_QUERY"), ("SELEC Id FROM Contact", "MALFORMED_QUERY"),
                    ("SELECT Id FROM Contact WHERE", "MALFORMED_QUERY"), ("SELECT Id FROM Nope", "INVALID_TYPE"),
                    ("SELECT Nope FROM Contact", "INVALID_FIELD"),
                    ("SELECT Id FROM Contact WHERE CreatedDate > '2025-01-01'", "INVALID_FIELD")):
        with pytest.raises(SalesforceMalformedRequest) as exc:
            sf.query(q)
        assert exc.value.content[0]["errorCode"] == code, q
    versions = requests.get(sandbox_server.https_url + "/services/data/", verify=str(sandbox_server.ca_path), timeout=10)
    assert {"version": "59.0", "url": "/services/data/v59.0", "label": "Winter '24"} in versions.json()
    desc = sf.Contact.describe()
    names = {f["name"] for f in desc["fields"]}
    assert {"Id", "Email", "SystemModstamp", "IsDeleted", "Web_User_Id__c"} <= names and "_visible_at" not in names
    bad = sf_session(sandbox_server).get(sandbox_server.https_url + "/services/data/v59.0/query/01gNOPE-2000", timeout=10,
                                         headers={"Authorization": f"Bearer {sandbox_server.credentials['salesforce_session_id']}"})
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_salesforce_faults_keep_pages_correct(sandbox_server: SandboxServer, world) -> None:
    from simple_salesforce.exceptions import SalesforceGeneralError, SalesforceRefusedRequest

    sf = sf_client(sandbox_server)
    with faults(sandbox_server, FaultConfig(rate_429=1.0, apis=("salesforce",))):
        with pytest.raises(SalesforceRefusedRequest) as exc:
            sf.query("SELECT Id FROM Contact")
        assert exc.value.status == 403 and exc.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    with faults(sandbox_server, FaultConfig(rate_5xx=1.0, apis=("salesforce",))):
        with pytest.raises(SalesforceGeneralError):
            sf.query("SELECT Id FROM Contact")
    # a failed nextRecordsUrl fetch can be retried and returns the same batch
    first = sf.query("SELECT Id FROM Contact", include_deleted=True)
    again = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    with faults(sandbox_server, FaultConfig(rate_5xx=1.0, apis=("salesforce",))):
        with pytest.raises(SalesforceGeneralError):
            sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert sf.query_more(first["nextRecordsUrl"], identifier_is_url=True) == again


# --------------------------------------------------------------------------------------------
# Google Ads REST
# --------------------------------------------------------------------------------------------
GADS_QUERY = ("SELECT campaign.id, campaign.name, segments.date, metrics.cost_micros, metrics.clicks, "
              "metrics.impressions, metrics.conversions FROM campaign "
              "WHERE segments.date BETWEEN '{a}' AND '{b}' ORDER BY segments.date")


def gads_post(server: SandboxServer, method: str, body: dict[str, Any], **headers: str) -> requests.Response:
    c = server.credentials
    h = {"developer-token": c["google_ads_developer_token"], "Authorization": f"Bearer {c['google_ads_access_token']}",
         "login-customer-id": c["google_ads_customer_id"]}
    h.update(headers)
    return requests.post(f"{server.http_url}/v18/customers/{c['google_ads_customer_id']}/googleAds:{method}",
                         json=body, headers=h, timeout=60)


def test_google_ads_search_pages_and_stream(sandbox_server: SandboxServer, world) -> None:
    as_of = sandbox_server.as_of
    state = latest_versions(world.google_ads_campaign_daily, ["campaign_id", "date"], as_of)
    a, b = dt.date.fromisoformat(world.meta["start"]), as_of.date()
    q = GADS_QUERY.format(a=a, b=b)
    results, pages, token = [], 0, None
    while True:
        body: dict[str, Any] = {"query": q, "pageSize": 500}
        if token:
            body["pageToken"] = token
        r = gads_post(sandbox_server, "search", body)
        assert r.status_code == 200, r.text
        j = r.json()
        pages += 1
        results += j.get("results", [])
        assert j["fieldMask"] == ("campaign.id,campaign.name,segments.date,metrics.costMicros,metrics.clicks,"
                                  "metrics.impressions,metrics.conversions")
        token = j.get("nextPageToken")
        if not token:
            break
    assert pages == -(-state.num_rows // 500) and len(results) == state.num_rows
    first = results[0]
    assert set(first) == {"campaign", "segments", "metrics"}
    assert first["campaign"]["resourceName"].startswith("customers/") and isinstance(first["campaign"]["id"], str)
    assert isinstance(first["metrics"]["costMicros"], str) and isinstance(first["metrics"]["clicks"], str)
    assert isinstance(first["metrics"]["conversions"], float)
    assert sum(int(x["metrics"]["costMicros"]) for x in results) == pc.sum(state.column("cost_micros")).as_py()
    assert sum(int(x["metrics"]["clicks"]) for x in results) == pc.sum(state.column("clicks")).as_py()
    dates = [x["segments"]["date"] for x in results]
    assert dates == sorted(dates)
    # searchStream: the same rows as batches
    stream = gads_post(sandbox_server, "searchStream", {"query": q})
    assert stream.status_code == 200 and isinstance(stream.json(), list)
    streamed = [row for batch in stream.json() for row in batch.get("results", [])]
    assert streamed == results
    # a narrower window and an empty one
    one_day = str(state.column("date")[0].as_py())
    got = gads_post(sandbox_server, "search", {"query": GADS_QUERY.format(a=one_day, b=one_day)}).json()
    assert len(got["results"]) == pc.sum(pc.equal(state.column("date"), state.column("date")[0])).as_py()
    assert "nextPageToken" not in got
    none = gads_post(sandbox_server, "search", {"query": GADS_QUERY.format(a="2001-01-01", b="2001-01-31")}).json()
    assert none.get("results", []) == [] and "nextPageToken" not in none


def test_google_ads_restatements_follow_the_clock(sandbox_server: SandboxServer, world) -> None:
    t = world.google_ads_campaign_daily
    counts = Counter(zip(t.column("campaign_id").to_pylist(), t.column("date").to_pylist()))
    key = next((k for k, c in counts.items() if c > 1), None)
    if key is None:
        pytest.skip("no restated Google Ads rows in this world")
    rows = t.filter(pc.and_(pc.equal(t.column("campaign_id"), key[0]), pc.equal(t.column("date"), key[1])))
    rows = rows.sort_by("_visible_at").to_pylist()
    q = (f"SELECT campaign.id, segments.date, metrics.cost_micros FROM campaign WHERE segments.date = '{key[1]}' "
         f"AND campaign.id = {key[0]}")
    with clock(sandbox_server, rows[0]["_visible_at"]):
        got = gads_post(sandbox_server, "search", {"query": q}).json()["results"]
        assert [int(x["metrics"]["costMicros"]) for x in got] == [rows[0]["cost_micros"]]
    with clock(sandbox_server, rows[-1]["_visible_at"]):
        got = gads_post(sandbox_server, "search", {"query": q}).json()["results"]
        assert [int(x["metrics"]["costMicros"]) for x in got] == [rows[-1]["cost_micros"]]
    with clock(sandbox_server, rows[0]["_visible_at"] - dt.timedelta(seconds=1)):
        assert gads_post(sandbox_server, "search", {"query": q}).json().get("results", []) == []


def test_google_ads_errors(sandbox_server: SandboxServer) -> None:
    q = GADS_QUERY.format(a="2025-01-01", b="2025-01-31")
    r = gads_post(sandbox_server, "search", {"query": q}, Authorization="Bearer wrong")
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"
    r = gads_post(sandbox_server, "search", {"query": q}, **{"developer-token": "nope"})
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"
    r = gads_post(sandbox_server, "search", {"query": "SELECT campaign.nope FROM campaign"})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    r = gads_post(sandbox_server, "search", {"query": "SELEKT campaign.id FROM campaign"})
    assert r.status_code == 400
    r = gads_post(sandbox_server, "search", {"query": q, "pageToken": "garbage"})
    assert r.status_code == 400
    c = sandbox_server.credentials
    r = requests.post(f"{sandbox_server.http_url}/v18/customers/9999999999/googleAds:search", json={"query": q}, timeout=10,
                      headers={"developer-token": c["google_ads_developer_token"],
                               "Authorization": f"Bearer {c['google_ads_access_token']}"})
    assert r.status_code == 403 and r.json()["error"]["status"] == "PERMISSION_DENIED"
    with faults(sandbox_server, FaultConfig(rate_429=1.0, apis=("google_ads",))):
        r = gads_post(sandbox_server, "search", {"query": q})
    assert r.status_code == 429 and r.json()["error"]["status"] == "RESOURCE_EXHAUSTED" and r.headers["Retry-After"]
    details = r.json()["error"]["details"][0]
    assert details["errors"][0]["errorCode"] == {"quotaError": "RESOURCE_EXHAUSTED"}


# --------------------------------------------------------------------------------------------
# Meta Marketing API
# --------------------------------------------------------------------------------------------
def meta_get(server: SandboxServer, **params: Any) -> requests.Response:
    c = server.credentials
    base = {"level": "campaign", "time_increment": 1, "access_token": c["meta_access_token"],
            "fields": "campaign_id,campaign_name,spend,impressions,clicks,date_start"}
    base.update(params)
    return requests.get(f"{server.http_url}/v21.0/act_{c['meta_account_id']}/insights", params=base, timeout=60)


def test_meta_insights_page_to_the_end(sandbox_server: SandboxServer, world) -> None:
    as_of = sandbox_server.as_of
    state = latest_versions(world.meta_campaign_daily, ["campaign_id", "date_start"], as_of)
    since, until = dt.date.fromisoformat(world.meta["start"]), as_of.date()
    r = meta_get(sandbox_server, time_range=json.dumps({"since": str(since), "until": str(until)}), limit=250)
    assert r.status_code == 200, r.text
    assert "X-Business-Use-Case-Usage" in r.headers
    j = r.json()
    rows, pages = list(j["data"]), 1
    while "next" in j.get("paging", {}):
        assert j["paging"]["next"].startswith(sandbox_server.http_url)
        assert j["paging"]["cursors"]["after"]
        j = requests.get(j["paging"]["next"], timeout=60).json()
        rows += j["data"]
        pages += 1
    assert "next" not in j["paging"] and j["paging"]["cursors"]["after"]
    assert len(rows) == state.num_rows and pages == -(-state.num_rows // 250)
    assert len({(x["campaign_id"], x["date_start"]) for x in rows}) == len(rows)
    x = rows[0]
    assert set(x) == {"campaign_id", "campaign_name", "spend", "impressions", "clicks", "date_start", "date_stop"}
    assert all(isinstance(x[k], str) for k in ("spend", "impressions", "clicks")) and x["date_start"] == x["date_stop"]
    assert abs(sum(float(x["spend"]) for x in rows) - pc.sum(state.column("spend")).as_py()) < 0.01 * len(rows)
    assert sum(int(x["clicks"]) for x in rows) == pc.sum(state.column("clicks")).as_py()
    # all_days aggregates per campaign
    agg = meta_get(sandbox_server, time_range=json.dumps({"since": str(since), "until": str(until)}),
                   time_increment="all_days", limit=500).json()["data"]
    assert len(agg) == len(set(state.column("campaign_id").to_pylist()))
    assert all(a["date_start"] == str(since) and a["date_stop"] == str(until) for a in agg)
    # an empty window has no paging.next
    empty = meta_get(sandbox_server, time_range=json.dumps({"since": "2001-01-01", "until": "2001-01-02"})).json()
    assert empty["data"] == [] and "next" not in empty.get("paging", {})


def test_meta_errors_and_rate_limits(sandbox_server: SandboxServer) -> None:
    r = meta_get(sandbox_server, access_token="bad")
    assert r.status_code == 400 and r.json()["error"]["code"] == 190 and r.json()["error"]["type"] == "OAuthException"
    r = meta_get(sandbox_server, fields="campaign_id,nope")
    assert r.status_code == 400 and r.json()["error"]["code"] == 100
    r = requests.get(f"{sandbox_server.http_url}/v21.0/act_42/insights", timeout=10,
                     params={"access_token": sandbox_server.credentials["meta_access_token"]})
    assert r.status_code == 400 and r.json()["error"]["code"] == 100
    codes = set()
    with faults(sandbox_server, FaultConfig(rate_429=1.0, seed=5, apis=("meta",))):
        for _ in range(12):
            r = meta_get(sandbox_server)
            assert r.status_code == 400 and "X-Business-Use-Case-Usage" in r.headers
            err = r.json()["error"]
            assert err["fbtrace_id"] and err["type"] == "OAuthException"
            codes.add(err["code"])
            if err["code"] == 17:
                assert err["error_subcode"] == 2446079 and err["message"] == "(#17) User request limit reached"
    assert {17, 613} <= codes <= {4, 17, 613}


# --------------------------------------------------------------------------------------------
# GA4 export files
# --------------------------------------------------------------------------------------------
def read_export_day(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_ga4_export_files_match_the_world(sandbox_server: SandboxServer, world) -> None:
    out = sandbox_server.ga4_export_dir
    as_of = sandbox_server.as_of
    vis = visible(world.ga4_events, as_of)
    per_day = Counter(vis.column("event_date").to_pylist())
    files = sorted(out.glob("events_*.json.gz"))
    assert {f.name[len("events_"):-len(".json.gz")] for f in files} == set(per_day)
    assert not list(out.glob("*.tmp"))
    # a few days in full detail
    for f in (files[0], files[len(files) // 2], files[-1]):
        day = f.name[len("events_"):-len(".json.gz")]
        rows = read_export_day(f)
        assert len(rows) == per_day[day]
        for r in rows:
            assert r["event_date"] == day and isinstance(r["event_timestamp"], int)
            assert {"event_name", "event_params", "user_pseudo_id", "user_id", "platform", "device", "geo",
                    "traffic_source", "collected_traffic_source", "ecommerce", "items"} <= set(r)
            params = {p["key"]: p["value"] for p in r["event_params"]}
            assert isinstance(params["ga_session_id"]["int_value"], int)
            assert set(params["ga_session_id"]) == {"string_value", "int_value", "float_value", "double_value"}
            assert set(r["device"]) >= {"category", "operating_system"} and "country" in r["geo"]
            assert set(r["traffic_source"]) == {"name", "medium", "source"}
            if r["event_name"] == "session_start":
                assert "source" in params or r["collected_traffic_source"] is None
            if r["event_name"] == "purchase":
                assert r["ecommerce"]["transaction_id"] == params["transaction_id"]["string_value"]
                assert isinstance(r["ecommerce"]["purchase_revenue"], float)
                assert all({"item_id", "item_name", "price", "quantity"} <= set(i) for i in r["items"])
    # totals: every visible event is in exactly one file
    total = sum(len(read_export_day(f)) for f in files[-40:])
    assert total == sum(per_day[f.name[len("events_"):-len(".json.gz")]] for f in files[-40:])


def test_ga4_late_events_make_a_day_grow(sandbox_server: SandboxServer, world) -> None:
    t = world.ga4_events
    # an event that arrives a day or more after it happened
    ev_time = pc.cast(pc.cast(t.column("event_timestamp"), pa.timestamp("us")), pa.timestamp("us", tz="UTC"))
    lag = pc.subtract(pc.cast(t.column("_visible_at"), pa.int64()), pc.cast(ev_time, pa.int64()))
    late = t.filter(pc.greater(lag, 86_400 * 10**6)).slice(0, 1).to_pylist()
    if not late:
        pytest.skip("no late GA4 events in this world")
    ev = late[0]
    day = ev["event_date"]
    arrival = ev["_visible_at"]
    path = sandbox_server.ga4_export_dir / f"events_{day}.json.gz"
    before = arrival - dt.timedelta(microseconds=1)
    with clock(sandbox_server, before):
        n_before = len(read_export_day(path))
        assert n_before == visible(t, before).filter(pc.equal(visible(t, before).column("event_date"), day)).num_rows
        assert not any(f.name > f"events_{before.strftime('%Y%m%d')}.json.gz"
                       for f in sandbox_server.ga4_export_dir.glob("events_*.json.gz"))
        sandbox_server.set_clock(arrival)
        n_after = len(read_export_day(path))
        assert n_after > n_before
        assert any(r["event_timestamp"] == ev["event_timestamp"] and r["user_pseudo_id"] == ev["user_pseudo_id"]
                   for r in read_export_day(path))
    # back at the default clock the export is complete again
    assert len(list(sandbox_server.ga4_export_dir.glob("events_*.json.gz"))) == len(
        set(visible(t, sandbox_server.as_of).column("event_date").to_pylist()))


def test_ga4_only_changed_days_are_rewritten(sandbox_server: SandboxServer) -> None:
    files = sorted(sandbox_server.ga4_export_dir.glob("events_*.json.gz"))
    mtimes = {f.name: f.stat().st_mtime_ns for f in files[:50]}
    result = sandbox_server.set_clock(sandbox_server.default_as_of)
    assert result["ga4"]["written"] == [] and result["ga4"]["removed"] == []
    assert {f.name: f.stat().st_mtime_ns for f in files[:50]} == mtimes


# --------------------------------------------------------------------------------------------
# faults
# --------------------------------------------------------------------------------------------
def test_fault_config_parsing() -> None:
    cfg = FaultConfig.parse("429=0.05,5xx=0.02,slow=0.01,malformed=0.01,duplicate=0.01,drift=0.01", seed=9)
    assert (cfg.rate_429, cfg.rate_5xx, cfg.rate_slow, cfg.rate_malformed, cfg.rate_duplicate, cfg.rate_drift,
            cfg.seed) == (0.05, 0.02, 0.01, 0.01, 0.01, 0.01, 9)
    assert FaultConfig.parse("").enabled is False and FaultConfig().enabled is False
    assert str(FaultConfig.parse("429=0.5")) == "429=0.5"
    for bad in ("429", "nope=0.1", "429=2", "5xx=abc"):
        with pytest.raises(ValueError):
            FaultConfig.parse(bad)


def _status_sequence(server: SandboxServer, config: FaultConfig, n: int = 40) -> list[tuple[int, int]]:
    server.set_faults(config)
    out = []
    for _ in range(n):
        r = stripe_get(server, "/v1/refunds", limit=100)
        out.append((r.status_code, len(r.json().get("data", [])) if r.status_code == 200 else -1))
    return out


def test_faults_are_deterministic_by_seed(sandbox_server: SandboxServer) -> None:
    cfg = FaultConfig(rate_429=0.25, rate_5xx=0.15, rate_duplicate=0.02, seed=11, apis=("stripe",))
    try:
        a = _status_sequence(sandbox_server, cfg)
        b = _status_sequence(sandbox_server, cfg)
        c = _status_sequence(sandbox_server, FaultConfig(rate_429=0.25, rate_5xx=0.15, rate_duplicate=0.02, seed=12,
                                                         apis=("stripe",)))
    finally:
        sandbox_server.set_faults(FaultConfig())
    assert a == b
    assert a != c
    assert {s for s, _ in a} == {200, 429, 500}


def test_record_faults_break_records_not_the_world(sandbox_server: SandboxServer, world) -> None:
    sf = sf_client(sandbox_server)
    clean = stripe_get(sandbox_server, "/v1/charges", limit=100).json()["data"]
    with faults(sandbox_server, FaultConfig(rate_malformed=0.1, rate_duplicate=0.1, rate_drift=0.1, seed=2,
                                            apis=("stripe", "salesforce", "google_ads", "meta"))):
        dirty = stripe_get(sandbox_server, "/v1/charges", limit=100).json()["data"]
        contacts = sf.query("SELECT Id, Email, LastName, SystemModstamp FROM Contact")["records"]
        ads = gads_post(sandbox_server, "search", {"query": GADS_QUERY.format(a="2024-01-01", b="2025-12-31")}).json()
        meta = meta_get(sandbox_server, time_range=json.dumps({"since": "2024-01-01", "until": "2025-12-31"}),
                        limit=500).json()
    assert len(dirty) > len(clean) - 10  # duplicates added, none lost
    ids = [c.get("id") for c in dirty]
    assert len(ids) != len(set(ids)) or None in ids
    assert any(c.get("amount") == "abc" or isinstance(c.get("amount"), str) or "sandbox_new_field" in c or "id" not in c
               for c in dirty)
    assert dirty[-1].get("id")  # the paging cursor survives
    assert any("Id" not in r or r.get("Email") == "not-an-email@@" or "Sandbox_New_Field__c" in r
               or r.get("SystemModstamp", "").startswith("2025-13") for r in contacts)
    assert any(r["metrics"].get("costMicros") == "abc" or "sandboxNewMetric" in r["metrics"] for r in ads["results"]
               if "metrics" in r)
    assert any(r.get("spend") == "abc" or "sandbox_new_metric" in r or "campaign_id" not in r for r in meta["data"])
    # the world is untouched: clean again once faults are off
    assert stripe_get(sandbox_server, "/v1/charges", limit=100).json()["data"] == clean


def test_slow_fault_delays_but_answers(sandbox_server: SandboxServer) -> None:
    import time

    with faults(sandbox_server, FaultConfig(rate_slow=1.0, slow_seconds=0.3, apis=("stripe",))):
        t0 = time.monotonic()
        r = stripe_get(sandbox_server, "/v1/customers", limit=1)
        assert r.status_code == 200 and time.monotonic() - t0 >= 0.3


def test_cli_main_prints_env_and_stops_on_sigterm(tmp_path: Path, small_world: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    home = tmp_path / "home"
    world_dir = home / "data" / "sandbox"
    world_dir.mkdir(parents=True)
    os.symlink(small_world, world_dir / "small-42")
    env = {**os.environ, "RETAILPULSE_HOME": str(home), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("RETAILPULSE_DATA_DIR", None)
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from sandbox.server import main; sys.exit(main())",
                             "--world", "small", "--seed", "42", "--port", "0", "--faults", "429=0.01"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(home))
    lines: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if "=" in line and line.startswith("RETAILPULSE_"):
                k, v = line.strip().split("=", 1)
                lines[k] = v
            if line.startswith("# Ctrl-C"):
                break
        assert lines.get("RETAILPULSE_STRIPE_API_BASE", "").startswith("http://127.0.0.1:"), proc.stderr.read() if proc.poll() is not None else lines
        assert Path(lines["RETAILPULSE_SALESFORCE_CA_BUNDLE"]).exists()
        h = requests.get(lines["RETAILPULSE_STRIPE_API_BASE"] + "/_sandbox/health", timeout=10).json()
        assert h["status"] == "ok" and h["faults"] == "429=0.01"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0


def test_tiny_world_parquet_export_and_exact_page(tmp_path: Path) -> None:
    """The hand-made world (exactly 100 customers) through a second server; GA4 as Parquet."""
    import pyarrow.parquet as pq

    from tests.sandbox_fixtures import make_tiny_world

    w = make_tiny_world(tmp_path / "sandbox" / "tiny-7")
    with SandboxServer(w, ga4_export_dir=tmp_path / "ga4", ga4_format="parquet") as sb:
        sb.wait_ga4()
        page = stripe_client(sb).v1.customers.list(params={"limit": 100})
        assert len(page.data) == 100 and page.has_more is False
        files = sorted((tmp_path / "ga4").glob("events_*.parquet"))
        world = load_world(w)
        vis = visible(world.ga4_events, sb.as_of)
        assert len(files) == len(set(vis.column("event_date").to_pylist()))
        t = pq.read_table(files[0])
        assert {"event_params", "device", "geo", "traffic_source", "items"} <= set(t.column_names)
        assert sum(pq.read_metadata(f).num_rows for f in files) == vis.num_rows
        assert sb.https_url != "" and sb.ca_path.parent == tmp_path / "sandbox" / "tls"
