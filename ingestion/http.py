"""HTTP behaviour shared by connectors: a bounded request rate, retry timing and a retrying
``requests`` session (:class:`RetryingSession`) used by the Salesforce, Google Ads and Meta
connectors."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import requests


class RateLimiter:
    """Token bucket: at most ``rate`` requests per second on average, bursts of ``burst``."""

    def __init__(self, rate: float, burst: int = 5) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = float(max(1, burst))
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Block until a request may go; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return waited
                need = (1 - self.tokens) / self.rate
            time.sleep(need)
            waited += need


def backoff_delay(attempt: int, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter for retry ``attempt`` (1-based)."""
    r = rng or random
    return r.uniform(0, min(cap, base * (2 ** (attempt - 1))))


def retry_after_seconds(value: str | None, cap: float = 120.0) -> float | None:
    """Parse a Retry-After header (seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return min(cap, max(0.0, float(value)))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
        return min(cap, max(0.0, when.timestamp() - time.time()))
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# a retrying, rate-limited requests session shared by the REST connectors
# --------------------------------------------------------------------------------------------
_log = logging.getLogger("ingestion.http")

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# module-level so tests (and impatient operators) can shorten them
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0
MAX_SERVER_WAIT_SECONDS = 300.0


@dataclass
class RetryDecision:
    """Whether a response is a transient failure, and how long the server asked us to wait."""

    retry: bool
    reason: str = ""
    wait: float | None = None


Classifier = Callable[[requests.Response], "RetryDecision | None"]


def endpoint_of(url: str) -> str:
    """``scheme://host/path`` of a URL: no query string, no user info (never a token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else parts.path


def redact(text: str, secrets: Iterable[str]) -> str:
    for s in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(s, "***")
    return text


def default_classifier(resp: requests.Response) -> RetryDecision | None:
    """Generic rule: 408/429/5xx are transient; Retry-After says how long to wait."""
    if resp.status_code in RETRYABLE_STATUS:
        return RetryDecision(True, f"HTTP {resp.status_code}", retry_after_seconds(resp.headers.get("Retry-After"),
                                                                                  cap=MAX_SERVER_WAIT_SECONDS))
    return None


class RetryingSession(requests.Session):
    """A ``requests.Session`` that every REST connector (and simple-salesforce) sends through.

    * a bounded request rate (:class:`RateLimiter`, one token per attempt);
    * a default timeout on every request;
    * retries of transient failures — connection errors, timeouts, the statuses and API-specific
      signals recognised by ``classify`` (Salesforce REQUEST_LIMIT_EXCEEDED, Google
      RESOURCE_EXHAUSTED, Meta error codes 4/17/613, ...) and 2xx bodies that are not JSON — with
      exponential backoff and full jitter, never shorter than the server's own Retry-After /
      usage header (capped at ``MAX_SERVER_WAIT_SECONDS``);
    * once retries are exhausted, a :class:`~ingestion.connectors.base.ConnectorError` naming
      the service and endpoint (scheme://host/path: no query string, no header, no secret).

    TLS verification stays on; ``verify`` may name an extra CA bundle to trust.
    """

    def __init__(
        self,
        service: str,
        *,
        max_retries: int = 6,
        timeout: float = 30.0,
        limiter: RateLimiter | None = None,
        classify: Classifier | None = None,
        verify: str | bool | None = None,
        expect_json: bool = True,
        secrets: Iterable[str] = (),
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__()
        self.service = service
        self.max_retries = max(0, int(max_retries))
        self.timeout = timeout
        self.limiter = limiter
        self.classify = classify or default_classifier
        self._ca_bundle: str | None = None
        if verify is not None:
            if verify is False:
                raise ValueError("TLS verification cannot be disabled; pass the CA bundle to trust instead")
            self.verify = verify
            if isinstance(verify, str):
                self._ca_bundle = verify
        self.expect_json = expect_json
        self.secrets = [s for s in secrets if s]
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.retries_done = 0

    def _error(self, text: str) -> Exception:
        from ingestion.connectors.base import ConnectorError

        return ConnectorError(redact(text, self.secrets))

    def _decide(self, resp: requests.Response) -> RetryDecision | None:
        decision = self.classify(resp)
        if decision is None and resp.status_code in RETRYABLE_STATUS:
            decision = default_classifier(resp)
        if decision is None and self.expect_json and 200 <= resp.status_code < 300 and resp.content:
            ctype = resp.headers.get("Content-Type", "")
            if "json" in ctype or not ctype:
                try:
                    json.loads(resp.content)
                except ValueError:
                    decision = RetryDecision(True, "response body is not valid JSON")
        return decision

    def request(self, method, url, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        kwargs.setdefault("timeout", self.timeout)
        if self._ca_bundle is not None and kwargs.get("verify") in (None, True):
            # per request: REQUESTS_CA_BUNDLE in the environment would otherwise override Session.verify
            kwargs["verify"] = self._ca_bundle
        where = f"{self.service} {method.upper()} {endpoint_of(str(url))}"
        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            if self.limiter is not None:
                self.limiter.acquire()
            try:
                resp = super().request(method, url, *args, **kwargs)
            except requests.exceptions.SSLError:
                raise self._error(
                    f"{where}: TLS certificate verification failed; trust the server's CA "
                    "(e.g. RETAILPULSE_SALESFORCE_CA_BUNDLE) instead of disabling verification") from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                reason = "timed out" if isinstance(exc, requests.Timeout) else "connection failed"
                if attempt == attempts:
                    raise self._error(f"{where}: {reason} after {attempts} attempts") from None
                self._wait(where, reason, attempt, None)
                continue
            decision = self._decide(resp)
            if decision is None or not decision.retry:
                return resp
            if attempt == attempts:
                raise self._error(f"{where}: {decision.reason} after {attempts} attempts; giving up "
                                  "(lower RETAILPULSE_HTTP_MAX_REQUESTS_PER_SECOND or retry later)")
            resp.close()
            self._wait(where, decision.reason, attempt, decision.wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, where: str, reason: str, attempt: int, server_wait: float | None) -> None:
        delay = backoff_delay(attempt, base=BACKOFF_BASE_SECONDS, cap=BACKOFF_CAP_SECONDS, rng=self._rng)
        if server_wait is not None:
            delay = max(delay, min(server_wait, MAX_SERVER_WAIT_SECONDS))
        self.retries_done += 1
        _log.warning("%s: %s; retry %d/%d in %.1fs", where, reason, attempt, self.max_retries, delay)
        self._sleep(delay)
