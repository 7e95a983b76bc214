"""Meta (Facebook/Instagram) ads through the Marketing API insights edge.

``GET {base}/{version}/act_{account}/insights`` with ``level=campaign``, ``time_increment=1``
(one row per campaign and day), ``time_range={"since":..,"until":..}`` and the fields below.
Metric values arrive as strings; the declared types cast them. Paging follows ``paging.next``
until it is absent (its query is re-sent to our own base URL with the token in the
``Authorization`` header, never in a URL), falling back to ``paging.cursors.after``.

Like Google Ads, every run re-reads the last ``RETAILPULSE_ADS_RESTATEMENT_DAYS`` days.

Rate limits come back as HTTP 400/403 with error codes 4 (application), 17 (user/account),
613 (rate), 32 and 80000-80014 (business use case); ``X-Business-Use-Case-Usage`` says in
``estimated_time_to_regain_access`` (minutes) how long to wait. Those, ``is_transient`` errors and
5xx are retried with backoff through :class:`ingestion.http.RetryingSession`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests

from ingestion import http
from ingestion.connectors.base import Connector, ConnectorError
from ingestion.http import RateLimiter, RetryDecision, RetryingSession, redact, retry_after_seconds
from ingestion.interval import Interval
from ingestion.spec import FieldSpec as F, ObjectSpec
from retailpulse.credentials import airflow_connection
from retailpulse.settings import Settings

log = logging.getLogger(__name__)

INSIGHT_FIELDS = ("account_id", "campaign_id", "campaign_name", "spend", "impressions", "clicks", "date_start",
                  "date_stop")
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, *range(80000, 80015)})
TRANSIENT_CODES = frozenset({1, 2})
PAGE_LIMIT = 500


def prepare_row(rec: dict[str, Any]) -> dict[str, Any]:
    out = dict(rec)
    parts = (out.get("account_id"), out.get("campaign_id"), out.get("date_start"))
    out["row_key"] = ":".join(str(p) for p in parts) if all(p not in (None, "") for p in parts) else None
    return out


SPECS: dict[str, ObjectSpec] = {
    "campaign_insights": ObjectSpec(
        "meta", "campaign_insights", key="row_key",
        critical_columns=("campaign_id", "date_start", "spend"),
        fields=(
            F("row_key", required=True),
            F("account_id", required=True, pattern=r"^\d+$"),
            F("campaign_id", required=True, pattern=r"^\d+$"),
            F("campaign_name"),
            F("date_start", "date", required=True),
            F("date_stop", "date"),
            F("spend", "float", min_value=0),
            F("impressions", "int", min_value=0),
            F("clicks", "int", min_value=0),
        ),
        prepare=prepare_row,
        description="Meta ads insights, campaign x day (restated days re-read every run)",
    ),
}


def _usage_wait(resp: requests.Response) -> float | None:
    """Seconds until access is regained, from X-Business-Use-Case-Usage (minutes) / X-Ad-Account-Usage."""
    wait: float | None = None
    raw = resp.headers.get("X-Business-Use-Case-Usage")
    if raw:
        try:
            usage = json.loads(raw)
            for entries in usage.values() if isinstance(usage, dict) else []:
                for e in entries if isinstance(entries, list) else []:
                    minutes = float(e.get("estimated_time_to_regain_access") or 0)
                    if minutes > 0:
                        wait = max(wait or 0.0, minutes * 60)
        except (ValueError, TypeError, AttributeError):
            pass
    raw = resp.headers.get("X-Ad-Account-Usage")
    if raw:
        try:
            secs = float(json.loads(raw).get("reset_time_duration") or 0)
            if secs > 0:
                wait = max(wait or 0.0, secs)
        except (ValueError, TypeError, AttributeError):
            pass
    return wait


def _error(resp: requests.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {}
    err = body.get("error") if isinstance(body, dict) else None
    return err if isinstance(err, dict) else {}


def classify_meta(resp: requests.Response) -> RetryDecision | None:
    """Rate limits (codes 4, 17, 32, 613, 80000-80014), transient errors and 5xx are retried."""
    if resp.status_code < 400:
        return None
    err = _error(resp)
    code = err.get("code")
    try:
        code = int(code) if code is not None else None
    except (TypeError, ValueError):
        code = None
    transient = bool(err.get("is_transient")) or code in TRANSIENT_CODES
    if code in RATE_LIMIT_CODES or transient or resp.status_code == 429 or resp.status_code >= 500:
        wait = retry_after_seconds(resp.headers.get("Retry-After"), cap=http.MAX_SERVER_WAIT_SECONDS)
        usage = _usage_wait(resp)
        if usage is not None:
            wait = max(wait or 0.0, usage)
        label = f"error code {code}" if code is not None else ""
        return RetryDecision(True, f"HTTP {resp.status_code} {label}".strip(), wait)
    return None


class MetaConnector(Connector):
    source = "meta"
    specs = SPECS

    @staticmethod
    def _config(settings: Settings) -> dict[str, Any]:
        tok = settings.meta_access_token
        cfg: dict[str, Any] = {
            "base_url": settings.meta_base_url, "version": settings.meta_api_version,
            "account_id": settings.meta_account_id,
            "access_token": tok.get_secret_value() if tok is not None else None,
        }
        if not (cfg["access_token"] and cfg["account_id"]):
            conn = airflow_connection("retailpulse_meta")
            if conn is not None and conn.secret is not None:
                cfg["access_token"] = cfg["access_token"] or conn.secret.get_secret_value()
                cfg["account_id"] = cfg["account_id"] or conn.extra.get("account_id") or conn.login
                cfg["base_url"] = conn.base_url or cfg["base_url"]
                cfg["version"] = conn.extra.get("api_version") or cfg["version"]
        if cfg["account_id"]:
            cfg["account_id"] = str(cfg["account_id"]).strip().removeprefix("act_")
        return cfg

    @classmethod
    def is_configured(cls, settings: Settings) -> bool:
        cfg = cls._config(settings)
        return bool(cfg["access_token"] and cfg["account_id"])

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        cfg = self._config(settings)
        if not (cfg["access_token"] and cfg["account_id"]):
            raise ConnectorError("Meta is not configured: set RETAILPULSE_META_ACCOUNT_ID and "
                                 "RETAILPULSE_META_ACCESS_TOKEN (or the Airflow connection retailpulse_meta)")
        if not re.fullmatch(r"\d+", cfg["account_id"]):
            raise ConnectorError(f"Meta ad account id must be digits (got {cfg['account_id']!r})")
        self.account_id = cfg["account_id"]
        version = str(cfg["version"]).strip("/")
        self.url = f"{str(cfg['base_url']).rstrip('/')}/{version}/act_{self.account_id}/insights"
        self._secrets = [cfg["access_token"]]
        self.session = RetryingSession(
            "meta", max_retries=settings.http_max_retries, timeout=settings.http_timeout_seconds,
            limiter=RateLimiter(settings.http_max_requests_per_second), classify=classify_meta,
            secrets=self._secrets,
        )
        self.session.headers["Authorization"] = f"Bearer {cfg['access_token']}"

    def window(self, obj: str, interval: Interval, state: dict[str, Any]) -> Interval:
        days = dt.timedelta(days=self.settings.ads_restatement_days)
        start = dt.datetime.combine((interval.start - days).date(), dt.time(), tzinfo=dt.timezone.utc)
        return Interval(start, interval.end)

    def _get(self, params: dict[str, str]) -> dict[str, Any]:
        resp = self.session.get(self.url, params=params)
        if resp.status_code != 200:
            err = _error(resp)
            detail = f"code {err.get('code')}: {err.get('message', '')}" if err else f"HTTP {resp.status_code}"
            hint = " (check RETAILPULSE_META_ACCESS_TOKEN)" if err.get("code") in (190, 102, 2500) else ""
            raise ConnectorError(redact(f"Meta insights for act_{self.account_id} failed: HTTP {resp.status_code} "
                                        f"{detail}{hint}", self._secrets))
        try:
            body = resp.json()
        except ValueError:
            raise ConnectorError(f"Meta insights for act_{self.account_id} returned a body that is not JSON") from None
        if not isinstance(body, dict):
            raise ConnectorError(f"Meta insights for act_{self.account_id} returned an unexpected answer")
        return body

    def extract(self, obj: str, window: Interval) -> Iterator[dict[str, Any]]:
        since = window.start.date()
        until = (window.end - dt.timedelta(microseconds=1)).date()
        params: dict[str, str] = {
            "level": "campaign", "time_increment": "1",
            "time_range": json.dumps({"since": since.isoformat(), "until": until.isoformat()}, separators=(",", ":")),
            "fields": ",".join(INSIGHT_FIELDS), "limit": str(PAGE_LIMIT),
        }
        seen: set[str] = set()
        while True:
            body = self._get(params)
            yield from body.get("data") or []
            paging = body.get("paging") or {}
            nxt = paging.get("next")
            if not nxt:
                return
            following = {k: v for k, v in parse_qsl(urlsplit(nxt).query, keep_blank_values=True)
                         if k != "access_token"}
            if "after" not in following:
                after = (paging.get("cursors") or {}).get("after")
                if not after:
                    raise ConnectorError("Meta insights paging.next has no cursor; cannot continue")
                following = {**params, "after": after}
            marker = following.get("after", "")
            if marker in seen:
                raise ConnectorError("Meta insights returned the same cursor twice; stopping")
            seen.add(marker)
            params = following
