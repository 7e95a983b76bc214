"""Settings: env prefix, .env file, secrets never shown; credentials from Airflow connections."""

from __future__ import annotations

import json
import logging

from pydantic import SecretStr

from retailpulse.credentials import resolve
from retailpulse.logging_setup import RedactingFilter, install_redaction
from retailpulse.settings import Settings


def test_env_prefix_and_dotenv(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text("RETAILPULSE_TARGET=postgres\nRETAILPULSE_STRIPE_API_KEY=sk_test_from_dotenv\n")
    monkeypatch.delenv("RETAILPULSE_TARGET", raising=False)
    monkeypatch.delenv("RETAILPULSE_STRIPE_API_KEY", raising=False)
    monkeypatch.setenv("RETAILPULSE_REPORTING_CURRENCY", "EUR")
    s = Settings(_env_file=str(env_file))
    assert s.target == "postgres"
    assert s.reporting_currency == "EUR"
    assert s.stripe_api_key.get_secret_value() == "sk_test_from_dotenv"
    # secrets never appear in repr / dumps
    assert "sk_test_from_dotenv" not in repr(s)
    assert "sk_test_from_dotenv" not in s.model_dump_json()


def test_paths_default_inside_the_project(tmp_path):
    s = Settings(home=tmp_path, _env_file=None)
    assert s.duckdb_path == tmp_path / "warehouse" / "retailpulse.duckdb"
    assert s.landing_path == tmp_path / "data" / "landing"


def test_credentials_fall_back_to_airflow_connections(monkeypatch):
    conn = {"conn_type": "http", "host": "127.0.0.1", "port": 9999, "schema": "http", "password": "sk_test_fromconn"}
    monkeypatch.setenv("AIRFLOW_CONN_RETAILPULSE_STRIPE", json.dumps(conn))
    creds = resolve("stripe", "https://api.stripe.com", None)
    assert creds.base_url == "http://127.0.0.1:9999"
    assert creds.secret.get_secret_value() == "sk_test_fromconn"
    assert "sk_test_fromconn" not in repr(creds)
    # settings win when they carry a secret
    own = resolve("stripe", "https://api.stripe.com", SecretStr("sk_test_settings"))
    assert own.secret.get_secret_value() == "sk_test_settings" and own.base_url == "https://api.stripe.com"


def test_log_lines_are_redacted(caplog, tmp_path):
    s = Settings(home=tmp_path, stripe_api_key=SecretStr("sk_live_abcdef123456"), _env_file=None)
    filt = RedactingFilter(s.secret_values())
    logger = logging.getLogger("retailpulse.test")
    caplog.handler.addFilter(filt)
    try:
        logger.warning("calling stripe with %s", "sk_live_abcdef123456")
        try:
            raise RuntimeError("bad key sk_live_abcdef123456")
        except RuntimeError:
            logger.exception("failed")
    finally:
        caplog.handler.removeFilter(filt)
    assert "sk_live_abcdef123456" not in caplog.text
    assert "***" in caplog.text
    install_redaction(s)  # also registers with Airflow's masker without error
