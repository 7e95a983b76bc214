"""Source credentials: settings (RETAILPULSE_* / .env) first, then Airflow connections.

Airflow connection ids: ``retailpulse_<source>`` (``retailpulse_stripe``,
``retailpulse_salesforce``, ``retailpulse_google_ads``, ``retailpulse_meta``). The connection's
password is the secret, its host the base URL, its extras anything else. Values are returned as
``SecretStr`` so they never end up in a log line by accident.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

log = logging.getLogger(__name__)


@dataclass
class SourceCredentials:
    base_url: str | None = None
    secret: SecretStr | None = None
    login: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # never show the secret
        return f"SourceCredentials(base_url={self.base_url!r}, secret={'***' if self.secret else None}, login={self.login!r})"


def airflow_connection(conn_id: str) -> SourceCredentials | None:
    """The Airflow connection ``conn_id`` if Airflow is importable and it exists, else None."""
    try:
        from airflow.sdk import BaseHook  # Airflow 3
    except Exception:  # pragma: no cover - Airflow not installed
        return None
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception:
        return None
    scheme = f"{conn.schema}://" if conn.schema in ("http", "https") else "https://"
    base = f"{scheme}{conn.host}" + (f":{conn.port}" if conn.port else "") if conn.host else None
    return SourceCredentials(
        base_url=base,
        secret=SecretStr(conn.password) if conn.password else None,
        login=conn.login,
        extra=dict(conn.extra_dejson or {}),
    )


def resolve(
    source: str,
    base_url: str | None,
    secret: SecretStr | None,
    login: str | None = None,
    use_airflow: bool = True,
) -> SourceCredentials:
    """Settings win when they carry a secret; otherwise fall back to Airflow connections."""
    if secret is not None and secret.get_secret_value():
        return SourceCredentials(base_url=base_url, secret=secret, login=login)
    if use_airflow:
        conn = airflow_connection(f"retailpulse_{source}")
        if conn is not None and conn.secret is not None:
            log.info("using Airflow connection retailpulse_%s for %s", source, source)
            conn.base_url = conn.base_url or base_url
            return conn
    return SourceCredentials(base_url=base_url, secret=None, login=login)
