"""Salesforce connector against the sandbox (HTTPS with its own CA): counts against the world,
incremental windows, idempotent re-runs, login and TLS errors without secrets."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from ingestion import http
from ingestion.connectors.base import ConnectorError
from ingestion.connectors.salesforce import OBJECTS, SalesforceConnector, build_soql
from tests.connectors_support import bronze, clock, day, run, sandbox_settings, stable, world_state

T1 = "2025-04-01T00:05:00Z"
T2 = "2025-04-02T00:05:00Z"


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(http, "BACKOFF_BASE_SECONDS", 0.01)
    monkeypatch.setattr(http, "MAX_SERVER_WAIT_SECONDS", 0.05)


def _expected(world, obj: str, as_of: str, start=None, end=None) -> pd.DataFrame:
    state = world_state(getattr(world, f"sf_{obj}"), ("Id",), as_of)
    if start is not None:
        state = state[state["SystemModstamp"] >= start]
    if end is not None:
        state = state[state["SystemModstamp"] < end]
    return state


def test_soql_filters_on_systemmodstamp():
    q = build_soql("contact", day("2025-01-01").widen(pd.Timedelta(minutes=60)))
    assert q.startswith("SELECT Id, IsDeleted, CreatedDate, LastModifiedDate, SystemModstamp, AccountId")
    assert "FROM Contact WHERE SystemModstamp >= 2024-12-31T23:00:00Z AND SystemModstamp < 2025-01-02T00:00:00Z" in q


def test_first_run_incremental_run_and_rerun_match_the_world(sandbox_server, settings_factory, caplog):
    caplog.set_level(logging.DEBUG)
    world = sandbox_server.world
    s = sandbox_settings(settings_factory, sandbox_server)
    first, second = day("2025-03-31"), day("2025-04-01")
    with clock(sandbox_server, T1):
        manifests, reports = run(s, "salesforce", first)
    assert {m.object for m in manifests} == set(OBJECTS)
    assert all(r.status == "loaded" and r.rejected == 0 for r in reports)
    # first run: every record modified before the interval end, deleted ones flagged
    for obj in OBJECTS:
        exp = _expected(world, obj, T1, end=first.end)
        got = bronze(s, f"salesforce__{obj}")
        assert len(exp) > 0 or obj == "opportunity"
        assert sorted(got["id"]) == sorted(exp["Id"]), obj
        assert int(got["isdeleted"].sum()) == int(exp["IsDeleted"].sum()), obj
        assert "attributes" not in got.columns and "attributes__type" not in got.columns
    opp = bronze(s, "salesforce__opportunity")
    exp_opp = _expected(world, "opportunity", T1, end=first.end)
    assert opp["amount"].sum() == pytest.approx(exp_opp["Amount"].sum())
    contacts = bronze(s, "salesforce__contact")
    assert str(contacts["systemmodstamp"].dtype).startswith("datetime64")
    assert pd.api.types.is_bool_dtype(contacts["hasoptedoutofemail"])

    # next day: only the window [watermark - lookback, end) lands
    with clock(sandbox_server, T2):
        run(s, "salesforce", second, ["contact"])
        exp = _expected(world, "contact", T2, start=second.start - pd.Timedelta(minutes=60), end=second.end)
        got = bronze(s, "salesforce__contact", second)
        assert sorted(got["id"]) == sorted(exp["Id"])
        assert 0 < len(got) < len(contacts)
        before = stable(bronze(s, "salesforce__contact", second))
        run(s, "salesforce", second, ["contact"])     # re-run: the batch is replaced, bronze identical
        pd.testing.assert_frame_equal(stable(bronze(s, "salesforce__contact", second)), before)
    # the first interval's batch is untouched by the later runs
    assert len(bronze(s, "salesforce__contact", first)) == len(contacts)
    assert sandbox_server.credentials["salesforce_session_id"] not in caplog.text


def test_bad_session_and_untrusted_ca_are_clear_errors_without_secrets(sandbox_server, settings_factory):
    s = sandbox_settings(settings_factory, sandbox_server, salesforce_session_id="00Dwrong!tokenvalue123")
    with pytest.raises(ConnectorError) as err:
        list(SalesforceConnector(s).extract("account", day("2025-01-01")))
    msg = str(err.value)
    assert "INVALID_SESSION_ID" in msg and "00Dwrong!tokenvalue123" not in msg and "queryAll" in msg
    s = sandbox_settings(settings_factory, sandbox_server, salesforce_ca_bundle=None)
    with pytest.raises(ConnectorError, match="TLS certificate verification failed") as err:
        list(SalesforceConnector(s).extract("account", day("2025-01-01")))
    assert sandbox_server.credentials["salesforce_session_id"] not in str(err.value)
    assert SalesforceConnector.is_configured(s)
    assert not SalesforceConnector.is_configured(settings_factory())


def test_credentials_from_settings_or_airflow_connections(settings_factory, monkeypatch):
    from pydantic import SecretStr

    from ingestion.connectors import google_ads, meta, salesforce
    from retailpulse.credentials import SourceCredentials

    s = settings_factory(salesforce_username="u@example.com", salesforce_password="pw-secret-1",
                         salesforce_security_token="tok-secret-2")
    mode, creds = salesforce._credentials(s)
    assert mode == "password" and creds.login == "u@example.com" and "pw-secret-1" not in repr(creds)
    conns = {
        "retailpulse_salesforce": SourceCredentials(base_url="https://acme.my.salesforce.com",
                                                    secret=SecretStr("00Dsession")),
        "retailpulse_google_ads": SourceCredentials(base_url=None, secret=SecretStr("ya29.access"),
                                                    extra={"developer_token": "dev-tok", "customer_id": "123-456-7890"}),
        "retailpulse_meta": SourceCredentials(base_url=None, secret=SecretStr("EAAtoken"), login="act_42"),
    }
    for mod in (salesforce, google_ads, meta):
        monkeypatch.setattr(mod, "airflow_connection", lambda conn_id: conns.get(conn_id))
    bare = settings_factory()
    assert salesforce._credentials(bare)[0] == "session" and SalesforceConnector.is_configured(bare)
    cfg = google_ads.GoogleAdsConnector._config(bare)
    assert (cfg["customer_id"], cfg["developer_token"], cfg["access_token"]) == ("1234567890", "dev-tok", "ya29.access")
    assert meta.MetaConnector._config(bare)["account_id"] == "42" and meta.MetaConnector.is_configured(bare)
    monkeypatch.setattr(salesforce, "airflow_connection", lambda conn_id: None)
    assert salesforce._credentials(bare) == ("none", None) and not SalesforceConnector.is_configured(bare)
