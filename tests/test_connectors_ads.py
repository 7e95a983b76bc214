"""Google Ads (REST search / searchStream) and Meta insights against the sandbox: the restatement
window, sums against the world, idempotent re-runs, rate-limit signals, errors without secrets."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import requests

from ingestion import http
from ingestion.connectors.base import ConnectorError
from ingestion.connectors.google_ads import GoogleAdsConnector, build_gaql, classify_google
from ingestion.connectors.meta import MetaConnector, classify_meta
from tests.connectors_support import bronze, clock, day, run, sandbox_settings, stable, world_state

T = "2025-03-10T12:00:00Z"
INTERVAL = day("2025-03-09")


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(http, "BACKOFF_BASE_SECONDS", 0.01)
    monkeypatch.setattr(http, "MAX_SERVER_WAIT_SECONDS", 0.05)


def _window_rows(table, keys, date_col, as_of, first, last):
    st = world_state(table, keys, as_of)
    d = pd.to_datetime(st[date_col]).dt.date
    return st[(d >= first) & (d <= last)]


def test_google_ads_restatement_window_matches_the_world(sandbox_server, settings_factory):
    s = sandbox_settings(settings_factory, sandbox_server)
    assert "BETWEEN '2025-03-02' AND '2025-03-09'" in build_gaql(GoogleAdsConnector(s).window("campaign_daily", INTERVAL, {}))
    with clock(sandbox_server, T):
        manifests, reports = run(s, "google_ads", INTERVAL)
        exp = _window_rows(sandbox_server.world.google_ads_campaign_daily, ("campaign_id", "date"), "date", T,
                           dt.date(2025, 3, 2), dt.date(2025, 3, 9))
        got = bronze(s, "google_ads__campaign_daily")
        assert len(got) == len(exp) > 0 and reports[0].rejected == 0
        assert int(got["metrics__cost_micros"].sum()) == int(exp["cost_micros"].sum())
        assert int(got["metrics__clicks"].sum()) == int(exp["clicks"].sum())
        assert int(got["metrics__impressions"].sum()) == int(exp["impressions"].sum())
        assert got["metrics__conversions"].sum() == pytest.approx(exp["conversions"].sum())
        assert set(got["customer_id"]) == {sandbox_server.credentials["google_ads_customer_id"]}
        assert str(got["campaign__id"].dtype) == "int64" and got["segments__date"].min() == dt.date(2025, 3, 2)
        # searchStream gives the same rows as paged search
        streamed = list(GoogleAdsConnector(s, search_stream=True).extract("campaign_daily", manifests[0].interval.widen(
            dt.timedelta(days=7))))
        assert len(streamed) == len(exp)
        before = stable(got)
        run(s, "google_ads", INTERVAL)
        pd.testing.assert_frame_equal(stable(bronze(s, "google_ads__campaign_daily")), before)


def test_meta_insights_page_and_match_the_world(sandbox_server, settings_factory, monkeypatch):
    monkeypatch.setattr("ingestion.connectors.meta.PAGE_LIMIT", 7)   # force several pages
    s = sandbox_settings(settings_factory, sandbox_server)
    with clock(sandbox_server, T):
        _, reports = run(s, "meta", INTERVAL)
        exp = _window_rows(sandbox_server.world.meta_campaign_daily, ("campaign_id", "date_start"), "date_start", T,
                           dt.date(2025, 3, 2), dt.date(2025, 3, 9))
        got = bronze(s, "meta__campaign_insights")
        assert len(got) == len(exp) > 7 and reports[0].rejected == 0
        assert got["spend"].sum() == pytest.approx(exp["spend"].sum(), abs=0.01 * len(exp))
        assert int(got["clicks"].sum()) == int(exp["clicks"].sum())
        assert int(got["impressions"].sum()) == int(exp["impressions"].sum())
        assert got["row_key"].is_unique and set(got["account_id"]) == {sandbox_server.credentials["meta_account_id"]}
        before = stable(got)
        run(s, "meta", INTERVAL)
        pd.testing.assert_frame_equal(stable(bronze(s, "meta__campaign_insights")), before)


def _response(status: int, body, headers=None) -> requests.Response:
    import json

    r = requests.Response()
    r.status_code = status
    r._content = json.dumps(body).encode()
    r.headers.update({"Content-Type": "application/json", **(headers or {})})
    return r


def test_rate_limit_signals_are_read(monkeypatch):
    monkeypatch.setattr(http, "MAX_SERVER_WAIT_SECONDS", 600.0)
    usage = '{"987":[{"type":"ads_insights","call_count":100,"estimated_time_to_regain_access":3}]}'
    d = classify_meta(_response(400, {"error": {"code": 17, "message": "(#17) User request limit reached"}},
                                {"X-Business-Use-Case-Usage": usage}))
    assert d.retry and d.wait == 180.0
    assert classify_meta(_response(403, {"error": {"code": 613}})).retry
    assert classify_meta(_response(400, {"error": {"code": 100, "message": "bad param"}})) is None
    assert classify_meta(_response(500, {"error": {"code": 1, "is_transient": True}})).retry
    g = classify_google(_response(429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"}]}}))
    assert g.retry and g.wait == 12.0
    assert classify_google(_response(400, {"error": {"status": "INVALID_ARGUMENT"}})) is None


def test_bad_tokens_are_clear_errors_without_secrets(sandbox_server, settings_factory):
    bad = "ya29.definitely-not-valid-token"
    s = sandbox_settings(settings_factory, sandbox_server, google_ads_access_token=bad)
    with pytest.raises(ConnectorError, match="UNAUTHENTICATED") as err:
        list(GoogleAdsConnector(s).extract("campaign_daily", INTERVAL))
    assert bad not in str(err.value) and "googleAds:search" in str(err.value)
    s = sandbox_settings(settings_factory, sandbox_server, meta_access_token="EAAnot-a-valid-token-xyz")
    with pytest.raises(ConnectorError, match="code 190") as err:
        list(MetaConnector(s).extract("campaign_insights", INTERVAL))
    assert "EAAnot-a-valid-token-xyz" not in str(err.value)
    assert not GoogleAdsConnector.is_configured(settings_factory())
    assert not MetaConnector.is_configured(settings_factory())
