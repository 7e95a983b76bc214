"""Google Ads through its REST interface (the official Python library speaks only gRPC).

``POST {base}/{version}/customers/{customer_id}/googleAds:search`` with a GAQL query over
``campaign`` by ``segments.date``, paging with ``pageToken``/``nextPageToken`` (or
``:searchStream``, one request answered with a JSON array of batches, when the Airflow
connection's extras say ``{"search_stream": true}`` or the connector is built with
``search_stream=True``). Headers: ``developer-token``, ``Authorization: Bearer <access token>``
and, for manager accounts, ``login-customer-id``.

Ad platforms restate recent days (late conversions, invalid clicks), so every run re-reads the
last ``RETAILPULSE_ADS_RESTATEMENT_DAYS`` days before its interval: window start =
interval start - restatement. Bronze keeps every version a run saw; silver keeps the latest.

REST JSON uses camelCase (``costMicros``) and int64 values as strings; ``prepare`` turns names
into the API's snake_case field names (``metrics__cost_micros``) and the declared types cast the
strings. Each landed row carries the ``customer_id`` it was read for.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import requests

from ingestion import http
from ingestion.connectors.base import Connector, ConnectorError
from ingestion.http import RateLimiter, RetryDecision, RetryingSession, redact, retry_after_seconds
from ingestion.interval import Interval
from ingestion.spec import FieldSpec as F, ObjectSpec
from retailpulse.credentials import airflow_connection
from retailpulse.settings import Settings

log = logging.getLogger(__name__)

GAQL_FIELDS = ("campaign.id", "campaign.name", "segments.date", "metrics.cost_micros", "metrics.clicks",
               "metrics.impressions", "metrics.conversions")
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def snake(name: str) -> str:
    return _CAMEL.sub(r"_\1", name).lower()


def _snake_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {snake(k): _snake_keys(v) for k, v in value.items()}
    return value


def prepare_row(rec: dict[str, Any]) -> dict[str, Any]:
    """GoogleAdsRow (camelCase) -> snake_case fields plus ``row_key`` = customer:campaign:date."""
    out = _snake_keys(rec)
    camp = out.get("campaign") if isinstance(out.get("campaign"), dict) else {}
    seg = out.get("segments") if isinstance(out.get("segments"), dict) else {}
    parts = (out.get("customer_id"), camp.get("id"), seg.get("date"))
    out["row_key"] = ":".join(str(p) for p in parts) if all(p not in (None, "") for p in parts) else None
    return out


SPECS: dict[str, ObjectSpec] = {
    "campaign_daily": ObjectSpec(
        "google_ads", "campaign_daily", key="row_key",
        critical_columns=("campaign__id", "segments__date", "metrics__cost_micros"),
        fields=(
            F("row_key", required=True),
            F("customer_id", required=True, pattern=r"^\d{10}$"),
            F("campaign__id", "int", required=True, min_value=0),
            F("campaign__name"),
            F("campaign__resource_name", pattern=r"^customers/\d+/campaigns/\d+$"),
            F("segments__date", "date", required=True),
            F("metrics__cost_micros", "int", min_value=0),
            F("metrics__clicks", "int", min_value=0),
            F("metrics__impressions", "int", min_value=0),
            F("metrics__conversions", "float", min_value=0),
        ),
        prepare=prepare_row,
        description="Google Ads campaign x day performance (restated days re-read every run)",
    ),
}


def build_gaql(window: Interval) -> str:
    first, last = window_dates(window)
    return (f"SELECT {', '.join(GAQL_FIELDS)} FROM campaign "
            f"WHERE segments.date BETWEEN '{first:%Y-%m-%d}' AND '{last:%Y-%m-%d}' "
            "ORDER BY segments.date, campaign.id")


def window_dates(window: Interval) -> tuple[dt.date, dt.date]:
    """Inclusive dates of a half-open window."""
    return window.start.date(), (window.end - dt.timedelta(microseconds=1)).date()


def _find_retry_delay(obj: Any) -> float | None:
    """``retryDelay: "30s"`` anywhere in a Google error body (RetryInfo / QuotaErrorDetails)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "retryDelay" and isinstance(v, str):
                m = re.fullmatch(r"\s*([\d.]+)s\s*", v)
                if m:
                    return float(m.group(1))
            found = _find_retry_delay(v)
            if found is not None:
                return found
    elif isinstance(obj, list):
        for v in obj:
            found = _find_retry_delay(v)
            if found is not None:
                return found
    return None


def classify_google(resp: requests.Response) -> RetryDecision | None:
    """429 RESOURCE_EXHAUSTED and 5xx (INTERNAL, UNAVAILABLE, DEADLINE_EXCEEDED) are transient."""
    if resp.status_code == 429 or resp.status_code >= 500:
        try:
            body = resp.json()
        except ValueError:
            body = None
        status = (body or {}).get("error", {}).get("status") if isinstance(body, dict) else None
        wait = retry_after_seconds(resp.headers.get("Retry-After"), cap=http.MAX_SERVER_WAIT_SECONDS)
        delay = _find_retry_delay(body)
        if delay is not None:
            wait = max(wait or 0.0, delay)
        return RetryDecision(True, f"HTTP {resp.status_code} {status or ''}".strip(), wait)
    return None


def _google_error(resp: requests.Response) -> str:
    try:
        err = resp.json().get("error", {})
    except (ValueError, AttributeError):
        return f"HTTP {resp.status_code}"
    codes = []
    for d in err.get("details") or []:
        for e in (d.get("errors") or []) if isinstance(d, dict) else []:
            code = e.get("errorCode")
            if isinstance(code, dict):
                codes.extend(f"{k}={v}" for k, v in code.items())
    return f"HTTP {resp.status_code} {err.get('status', '')} {err.get('message', '')} {' '.join(codes)}".strip()


class GoogleAdsConnector(Connector):
    source = "google_ads"
    specs = SPECS

    @staticmethod
    def _config(settings: Settings) -> dict[str, Any]:
        """Customer id, tokens and options: settings first, then the Airflow connection."""
        dev = settings.google_ads_developer_token
        acc = settings.google_ads_access_token
        cfg: dict[str, Any] = {
            "base_url": settings.google_ads_base_url, "version": settings.google_ads_api_version,
            "customer_id": settings.google_ads_customer_id,
            "developer_token": dev.get_secret_value() if dev is not None else None,
            "access_token": acc.get_secret_value() if acc is not None else None,
            "login_customer_id": None, "search_stream": False,
        }
        if not (cfg["developer_token"] and cfg["access_token"] and cfg["customer_id"]):
            conn = airflow_connection("retailpulse_google_ads")
            if conn is not None and conn.secret is not None:
                extra = conn.extra
                cfg["access_token"] = cfg["access_token"] or conn.secret.get_secret_value()
                cfg["developer_token"] = cfg["developer_token"] or extra.get("developer_token")
                cfg["customer_id"] = cfg["customer_id"] or extra.get("customer_id") or conn.login
                cfg["base_url"] = conn.base_url or cfg["base_url"]
                cfg["version"] = extra.get("api_version") or cfg["version"]
                cfg["login_customer_id"] = extra.get("login_customer_id")
                cfg["search_stream"] = bool(extra.get("search_stream", False))
        if cfg["customer_id"]:
            cfg["customer_id"] = str(cfg["customer_id"]).replace("-", "").strip()
        return cfg

    @classmethod
    def is_configured(cls, settings: Settings) -> bool:
        cfg = cls._config(settings)
        return bool(cfg["developer_token"] and cfg["access_token"] and cfg["customer_id"])

    def __init__(self, settings: Settings, search_stream: bool | None = None) -> None:
        self.settings = settings
        cfg = self._config(settings)
        if not (cfg["developer_token"] and cfg["access_token"] and cfg["customer_id"]):
            raise ConnectorError(
                "Google Ads is not configured: set RETAILPULSE_GOOGLE_ADS_CUSTOMER_ID, "
                "RETAILPULSE_GOOGLE_ADS_DEVELOPER_TOKEN and RETAILPULSE_GOOGLE_ADS_ACCESS_TOKEN "
                "(or the Airflow connection retailpulse_google_ads)")
        if not re.fullmatch(r"\d{10}", cfg["customer_id"]):
            raise ConnectorError(f"Google Ads customer id must be 10 digits (got {cfg['customer_id']!r})")
        self.customer_id = cfg["customer_id"]
        self.search_stream = cfg["search_stream"] if search_stream is None else search_stream
        version = str(cfg["version"]).strip("/")
        self.url = f"{str(cfg['base_url']).rstrip('/')}/{version}/customers/{self.customer_id}/googleAds:"
        secrets = [cfg["developer_token"], cfg["access_token"]]
        self.session = RetryingSession(
            "google_ads", max_retries=settings.http_max_retries, timeout=settings.http_timeout_seconds,
            limiter=RateLimiter(settings.http_max_requests_per_second), classify=classify_google, secrets=secrets,
        )
        self.session.headers.update({
            "developer-token": cfg["developer_token"],
            "Authorization": f"Bearer {cfg['access_token']}",
            "Content-Type": "application/json",
        })
        if cfg["login_customer_id"]:
            self.session.headers["login-customer-id"] = str(cfg["login_customer_id"]).replace("-", "")
        self._secrets = secrets

    def window(self, obj: str, interval: Interval, state: dict[str, Any]) -> Interval:
        # re-read the restatement window: start at the interval start minus N whole days
        days = dt.timedelta(days=self.settings.ads_restatement_days)
        start = dt.datetime.combine((interval.start - days).date(), dt.time(), tzinfo=dt.timezone.utc)
        return Interval(start, interval.end)

    def _post(self, method: str, body: dict[str, Any]) -> Any:
        resp = self.session.post(self.url + method, data=json.dumps(body))
        if resp.status_code != 200:
            hint = " (check the developer token and access token)" if resp.status_code in (401, 403) else ""
            raise ConnectorError(redact(f"Google Ads googleAds:{method} for customer {self.customer_id} failed: "
                                        f"{_google_error(resp)}{hint}", self._secrets))
        try:
            return resp.json()
        except ValueError:
            raise ConnectorError(f"Google Ads googleAds:{method} returned a body that is not JSON") from None

    def extract(self, obj: str, window: Interval) -> Iterator[dict[str, Any]]:
        query = build_gaql(window)
        if self.search_stream:
            batches = self._post("searchStream", {"query": query})
            for batch in batches if isinstance(batches, list) else [batches]:
                for row in (batch or {}).get("results") or []:
                    yield self._annotate(row)
            return
        token: str | None = None
        seen: set[str] = set()
        while True:
            body: dict[str, Any] = {"query": query}
            if token:
                body["pageToken"] = token
            page = self._post("search", body)
            for row in page.get("results") or []:
                yield self._annotate(row)
            token = page.get("nextPageToken")
            if not token:
                return
            if token in seen:
                raise ConnectorError("Google Ads googleAds:search returned the same nextPageToken twice; stopping")
            seen.add(token)

    def _annotate(self, row: Any) -> Any:
        if isinstance(row, dict) and "customer_id" not in row:
            return {"customer_id": self.customer_id, **row}
        return row
