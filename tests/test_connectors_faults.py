"""Every connector against a faulty sandbox (429s, 5xx, malformed / duplicate / drifted records):
runs complete, every landed record ends in bronze or in rejected_records, counts reconcile,
secrets never reach a log line or an error; the shared RetryingSession on its own."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
import requests

from ingestion import http
from ingestion.connectors.base import ConnectorError
from ingestion.connectors.google_ads import GoogleAdsConnector
from ingestion.http import RateLimiter, RetryingSession
from retailpulse.warehouse import get_warehouse
from sandbox.apis.faults import FaultConfig
from tests.connectors_support import bronze, clock, day, reconcile, run, sandbox_settings, world_state

T = "2025-05-02T12:00:00Z"
SOURCES = ("salesforce", "ga4", "google_ads", "meta")


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(http, "BACKOFF_BASE_SECONDS", 0.01)
    monkeypatch.setattr(http, "MAX_SERVER_WAIT_SECONDS", 0.05)


@pytest.fixture
def faulty(sandbox_server):
    sandbox_server.set_faults(FaultConfig(rate_429=0.15, rate_5xx=0.1, rate_malformed=0.02, rate_duplicate=0.03,
                                          rate_drift=0.02, seed=11))
    try:
        yield sandbox_server
    finally:
        sandbox_server.set_faults(FaultConfig())


def test_faulty_sources_complete_and_reconcile(faulty, settings_factory, caplog):
    caplog.set_level(logging.DEBUG)
    s = sandbox_settings(settings_factory, faulty)
    with clock(faulty, T):
        for source in SOURCES:
            run(s, source, day("2025-05-01"))
    stats = faulty.faults.snapshot()["stats"]
    assert stats.get("429", 0) + stats.get("5xx", 0) > 0 and stats.get("duplicate", 0) > 0
    dup_total = rejected_total = 0
    drift = set()
    for source in SOURCES:
        for obj, key, extracted, loaded, rejected, in_bronze, in_rejects in reconcile(s, source):
            assert extracted == loaded + rejected, (source, obj, key)
            assert (in_bronze, in_rejects) == (loaded, rejected), (source, obj, key)
            rejected_total += rejected
        wh = get_warehouse(s)
        dup_total += wh.scalar("select coalesce(sum(duplicates), 0) from ops.load_audit where source = ?", [source])
        for (cols,) in wh.query("select drift_columns from ops.load_audit where source = ?", [source]):
            drift |= set(json.loads(cols))
    assert dup_total > 0 and rejected_total > dup_total and drift
    # duplicates and malformed records did not cost real rows: every world contact is in bronze
    # unless its record was broken (then it is in rejected_records with the reason)
    state = world_state(faulty.world.sf_contact, ("Id",), T)
    world_ids = set(state[state["SystemModstamp"] < pd.Timestamp("2025-05-02", tz="UTC")]["Id"])
    got = set(bronze(s, "salesforce__contact")["id"])
    assert got <= world_ids and len(world_ids - got) <= 0.05 * len(world_ids)
    rules = {r for (r,) in get_warehouse(s).query("select distinct rule from bronze.rejected_records")}
    assert "duplicate_record" in rules and any(r.startswith(("type:", "expect_")) for r in rules)
    for secret in (faulty.credentials[k] for k in ("salesforce_session_id", "google_ads_developer_token",
                                                   "google_ads_access_token", "meta_access_token")):
        assert secret not in caplog.text
    assert "retry" in caplog.text


def test_exhausted_retries_name_the_endpoint_without_secrets(sandbox_server, settings_factory):
    sandbox_server.set_faults(FaultConfig(rate_429=1.0, apis=("google_ads",)))
    try:
        s = sandbox_settings(settings_factory, sandbox_server, http_max_retries=2)
        with pytest.raises(ConnectorError) as err:
            list(GoogleAdsConnector(s).extract("campaign_daily", day("2025-01-05")))
    finally:
        sandbox_server.set_faults(FaultConfig())
    msg = str(err.value)
    assert "google_ads POST" in msg and "/customers/1234567890/googleAds:search" in msg
    assert "after 3 attempts" in msg and "429" in msg
    for k in ("google_ads_developer_token", "google_ads_access_token"):
        assert sandbox_server.credentials[k] not in msg


class _Flaky(BaseHTTPRequestHandler):
    plan: list[tuple[int, dict, str]] = []
    seen: list[str] = []

    def do_GET(self):  # noqa: N802
        self.seen.append(self.path)
        status, headers, body = self.plan.pop(0) if self.plan else (200, {}, '{"ok": true}')
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    _Flaky.plan, _Flaky.seen = [], []
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_retrying_session_backs_off_honours_retry_after_and_gives_up(flaky):
    waits: list[float] = []
    sess = RetryingSession("demo", max_retries=3, timeout=5, limiter=RateLimiter(1000), sleep=waits.append,
                           secrets=["s3cr3t-token"])
    _Flaky.plan = [(429, {"Retry-After": "0.04"}, "{}"), (503, {}, "{}"), (200, {}, "{broken json")]
    resp = sess.get(flaky + "/v1/things?access_token=s3cr3t-token")
    assert resp.status_code == 200 and resp.json() == {"ok": True}
    assert len(waits) == 3 and waits[0] >= 0.04
    _Flaky.plan = [(500, {}, "{}")] * 4
    with pytest.raises(ConnectorError) as err:
        sess.get(flaky + "/v1/things?access_token=s3cr3t-token")
    assert str(err.value).startswith("demo GET http://127.0.0.1:") and "/v1/things: HTTP 500 after 4 attempts" in str(err.value)
    assert "s3cr3t-token" not in str(err.value) and "?" not in str(err.value).split(":")[2]
    _Flaky.plan = [(404, {}, '{"error": "nope"}')]
    assert sess.get(flaky + "/missing").status_code == 404        # not transient: returned to the caller
    with pytest.raises(ValueError):
        RetryingSession("demo", verify=False)


def test_connection_errors_are_retried_then_reported():
    waits: list[float] = []
    sess = RetryingSession("demo", max_retries=2, timeout=0.5, sleep=waits.append)
    with pytest.raises(ConnectorError, match=r"demo GET http://127.0.0.1:9/x: connection failed after 3 attempts"):
        sess.get("http://127.0.0.1:9/x")
    assert len(waits) == 2
    assert isinstance(sess, requests.Session)
