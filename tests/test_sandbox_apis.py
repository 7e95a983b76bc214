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
    # with retries, the SDK gets through a 50% rate of 429/5xx and sees the correct data
    with faults(sandbox_server, FaultConfig(rate_429=0.3, rate_5xx=0.2, seed=3, apis=("stripe",))):
        client = stripe_client(sandbox_server, retries=12)
        got = [c.id for c in client.v1.customers.list(params={"limit": 100}).auto_paging_iter()]
    assert len(got) == visible(world.stripe_customers, sandbox_server.as_of).num_rows == len(set(got))


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
