"""Secrets: with every credential set, an extraction against the faulty sandbox (retries, rate
limits, timeouts, rejects) plus failing-auth runs log nothing that contains a secret value —
checked over ALL log records at DEBUG (urllib3's request lines with query strings included)
with the project's logging set-up, over stdout/stderr, and over every error message.

tests/test_settings.py covers the filter on one Stripe key; tests/test_connectors_faults.py
checks four sandbox tokens in caplog at its default level. Here every SecretStr setting holds a
value, the levels are DEBUG everywhere, and the failing-auth errors are included.
"""

from __future__ import annotations

import datetime as dt
import io
import logging

import pytest
from pydantic import SecretStr

from ingestion import http
from ingestion.connectors.base import ConnectorError
from ingestion.interval import Interval
from retailpulse.logging_setup import RedactingFilter, install_redaction
from sandbox.apis.faults import FaultConfig
from tests.connectors_support import clock, run, sandbox_settings

DAY = Interval.for_dates(dt.date(2025, 5, 1), dt.date(2025, 5, 1))
EXTRA_SECRETS = dict(
    salesforce_password=SecretStr("sf-Passw0rd-never-logged"),
    salesforce_security_token=SecretStr("sfTok3nNeverLogged"),
    postgres_dsn=SecretStr("postgresql://retail:pg-Secret-pw-991@127.0.0.1:5432/warehouse"),
    api_token=SecretStr("api-token-never-logged-5b2c"),
    bi_password=SecretStr("bi-Passw0rd-never-logged"),
    publish_postgres_dsn=SecretStr("postgresql://bi:pub-Secret-pw-772@127.0.0.1:5432/bi"),
)


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(http, "BACKOFF_BASE_SECONDS", 0.01)
    monkeypatch.setattr(http, "MAX_SERVER_WAIT_SECONDS", 0.05)


@pytest.fixture
def all_logs():
    """Every log record at DEBUG, formatted with tracebacks, through the project's redaction."""
    # Airflow configures logging when first imported (the connectors resolve credentials through
    # it), replacing the root handlers: import it first, as configure_cli_logging does
    import airflow  # noqa: F401
    from airflow.sdk.log import mask_secret  # noqa: F401

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    saved = root.level, {n: logging.getLogger(n).level for n in ("urllib3", "stripe", "simple_salesforce")}
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in saved[1]:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield handler, stream
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        for name, level in saved[1].items():
            logging.getLogger(name).setLevel(level)


def _secret_parts(settings) -> list[str]:
    """Every secret value, plus the password inside each DSN (it could be logged on its own)."""
    values = settings.secret_values()
    for v in list(values):
        if "://" in v and "@" in v:
            values.append(v.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1])
    return values


def test_no_secret_in_any_log_line_output_or_error(sandbox_server, settings_factory, all_logs, capfd):
    handler, stream = all_logs
    s = sandbox_settings(settings_factory, sandbox_server, http_timeout_seconds=1.0, **EXTRA_SECRETS)
    secrets = _secret_parts(s)
    assert len(secrets) >= 12  # every SecretStr setting holds a value (sandbox tokens + the extra ones)
    install_redaction(s)  # what the CLI and Airflow tasks do: the filter on every root handler
    errors: list[str] = []
    sandbox_server.set_faults(FaultConfig(rate_429=0.2, rate_5xx=0.1, rate_slow=0.05, slow_seconds=1.5,
                                          rate_malformed=0.05, rate_duplicate=0.05, rate_drift=0.05, seed=5))
    try:
        with clock(sandbox_server, "2025-05-02T00:00:00Z"):
            for source in ("stripe", "salesforce", "google_ads", "meta"):
                run(s, source, DAY)
            # failing auth: each source with a wrong credential, retried and reported
            for source, bad in (("stripe", {"stripe_api_key": SecretStr("sk_test_wrong_key_123456")}),
                                ("salesforce", {"salesforce_session_id": SecretStr("00Dwrong!session42")}),
                                ("google_ads", {"google_ads_access_token": SecretStr("ya29.wrong-access-tok")}),
                                ("meta", {"meta_access_token": SecretStr("EAAwrong-meta-token-77")})):
                wrong = sandbox_settings(settings_factory, sandbox_server, http_max_retries=2, **EXTRA_SECRETS, **bad)
                secrets.append(next(iter(bad.values())).get_secret_value())
                handler.addFilter(RedactingFilter(wrong.secret_values()))
                with pytest.raises(ConnectorError) as err:
                    run(wrong, source, DAY)
                errors.append(str(err.value))
                logging.getLogger("retailpulse.test").error("extract failed", exc_info=err.value)
    finally:
        sandbox_server.set_faults(FaultConfig())
    logs = stream.getvalue()
    out, err = capfd.readouterr()
    assert "retry" in logs.lower() and len(errors) == 4  # the retries and failures really were logged
    assert "access_token=***" in logs or "***" in logs  # redaction was exercised, not just absent secrets
    for secret in secrets:
        assert secret not in logs, f"a secret reached a log line ({secret[:4]}...)"
        assert secret not in out and secret not in err
        assert not any(secret in e for e in errors)
