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


def test_duckdb_memory_limit_is_a_share_of_this_machine_or_a_size(tmp_path, monkeypatch):
    import pytest
    from pydantic import ValidationError

    from retailpulse import settings as settings_mod

    monkeypatch.setattr(settings_mod, "machine_memory_bytes", lambda: 24 * 2**30)
    assert Settings(home=tmp_path, _env_file=None).duckdb_memory_limit_setting == f"{12 * 1024}MB"  # default 50%
    monkeypatch.setenv("RETAILPULSE_DUCKDB_MEMORY_LIMIT", "25%")
    assert Settings(home=tmp_path, _env_file=None).duckdb_memory_limit_setting == f"{6 * 1024}MB"
    assert Settings(home=tmp_path, duckdb_memory_limit="8GB", _env_file=None).duckdb_memory_limit_setting == "8GB"
    for bad in ("lots", "8 gigs", "-5%", "1e3GB"):
        with pytest.raises(ValidationError, match="duckdb_memory_limit"):
            Settings(home=tmp_path, duckdb_memory_limit=bad, _env_file=None)
    with pytest.raises(ValueError, match="between 0 and 100%"):
        Settings(home=tmp_path, duckdb_memory_limit="150%", _env_file=None).duckdb_memory_limit_setting


def test_every_warehouse_connection_and_dbt_get_the_memory_limit(tmp_path):
    """DuckDB's own default (80% of the machine) got the large run's dbt build OOM-killed beside the
    sandbox and the load workers; the limit must reach the warehouse's connections and dbt's profile."""
    from retailpulse.warehouse import get_warehouse

    s = Settings(home=tmp_path, duckdb_memory_limit="1GB", _env_file=None)
    wh = get_warehouse(s)
    with wh.connect() as con:
        limit = con.execute("select current_setting('memory_limit')").fetchone()[0]
    assert limit == "953.6 MiB"  # DuckDB shows 1GB (10^9 bytes) in MiB
    with wh.connect(read_only=True) as con:
        assert con.execute("select current_setting('memory_limit')").fetchone()[0] == limit
    assert wh.dbt_profile()["settings"] == {"memory_limit": "1GB"}
