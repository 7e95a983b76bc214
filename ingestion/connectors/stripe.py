"""Stripe through the official SDK: customers, charges, refunds and the events feed.

Incremental on ``created`` with a lookback; the ``/v1/events`` feed (charge.*, refund.*,
customer.*) carries changes to objects loaded earlier (a refund days after its charge), within
Stripe's 30-day reach. When the saved state is older than that, objects are re-synced from
the beginning of time. The SDK pages by the list's own ``url`` with ``starting_after`` and
retries 409/429-with-Stripe-Should-Retry/5xx with backoff; requests pass a rate limiter. Lists
are read with the SDK's ``raw_request`` and paged as ``auto_paging_iter`` pages (the records are
the parsed JSON, not ``StripeObject`` instances converted back to dicts).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

import stripe

from ingestion.connectors.base import Connector, ConnectorError
from ingestion.http import RateLimiter
from ingestion.interval import Interval, to_utc
from ingestion.spec import CURRENCY_RE, EMAIL_RE, FieldSpec as F, ObjectSpec
from retailpulse.credentials import resolve
from retailpulse.settings import Settings

log = logging.getLogger(__name__)

EVENTS_REACH = dt.timedelta(days=30)
EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
EVENT_TYPES = ("charge.*", "refund.*", "customer.*")

SPECS: dict[str, ObjectSpec] = {
    "customers": ObjectSpec(
        "stripe", "customers", key="id", critical_columns=("id", "created"),
        fields=(
            F("id", required=True, pattern=r"^cus_"), F("object"), F("email", pattern=EMAIL_RE),
            F("name"), F("phone"), F("created", "epoch_s", required=True),
            F("address__country"), F("livemode", "bool"),
        ),
        description="Stripe customers",
    ),
    "charges": ObjectSpec(
        "stripe", "charges", key="id", critical_columns=("id", "amount", "currency", "created", "status"),
        fields=(
            F("id", required=True, pattern=r"^ch_"), F("object"),
            F("amount", "int", required=True, min_value=0), F("amount_captured", "int"),
            F("amount_refunded", "int", min_value=0), F("refunded", "bool"),
            F("currency", required=True, pattern=CURRENCY_RE), F("customer"),
            F("created", "epoch_s", required=True),
            F("status", required=True, accepted=("succeeded", "failed", "pending")),
            F("paid", "bool"), F("failure_code"), F("description"), F("receipt_email", pattern=EMAIL_RE),
            F("metadata__order_id"), F("livemode", "bool"),
        ),
        description="Stripe charges (state as of extraction)",
    ),
    "refunds": ObjectSpec(
        "stripe", "refunds", key="id", critical_columns=("id", "amount", "charge", "created"),
        fields=(
            F("id", required=True, pattern=r"^re_"), F("object"), F("amount", "int", required=True, min_value=0),
            F("charge", required=True), F("currency", required=True, pattern=CURRENCY_RE),
            F("created", "epoch_s", required=True), F("reason"), F("status"),
        ),
        description="Stripe refunds",
    ),
    "events": ObjectSpec(
        "stripe", "events", key="id", critical_columns=("id", "type", "created"),
        fields=(
            F("id", required=True, pattern=r"^evt_"), F("type", required=True), F("created", "epoch_s", required=True),
            F("data__object__id", required=True), F("data__object__object"),
            F("data__object__amount", "int"), F("data__object__amount_captured", "int"),
            F("data__object__amount_refunded", "int"), F("data__object__refunded", "bool"),
            F("data__object__currency"), F("data__object__customer"), F("data__object__created", "epoch_s"),
            F("data__object__status"), F("data__object__paid", "bool"), F("data__object__failure_code"),
            F("data__object__charge"), F("data__object__reason"), F("data__object__metadata__order_id"),
            F("data__object__email", pattern=EMAIL_RE), F("data__object__name"), F("data__object__phone"),
            F("data__object__receipt_email", pattern=EMAIL_RE), F("data__object__address__country"),
        ),
        description="Stripe events feed (changes to charges, refunds, customers)",
    ),
}


class _LimitedRequestsClient(stripe.RequestsClient):
    """The SDK's requests client with a bounded request rate."""

    def __init__(self, limiter: RateLimiter, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._limiter = limiter

    def request(self, method, url, headers, post_data=None):  # type: ignore[no-untyped-def]
        self._limiter.acquire()
        return super().request(method, url, headers, post_data)


class StripeConnector(Connector):
    source = "stripe"
    specs = SPECS

    @classmethod
    def is_configured(cls, settings: Settings) -> bool:
        return resolve("stripe", settings.stripe_api_base, settings.stripe_api_key).secret is not None

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        creds = resolve("stripe", settings.stripe_api_base, settings.stripe_api_key)
        if creds.secret is None:
            raise ConnectorError(
                "no Stripe API key: set RETAILPULSE_STRIPE_API_KEY or the Airflow connection retailpulse_stripe"
            )
        self.client = stripe.StripeClient(
            creds.secret.get_secret_value(),
            base_addresses={"api": (creds.base_url or settings.stripe_api_base).rstrip("/")},
            max_network_retries=settings.http_max_retries,
            http_client=_LimitedRequestsClient(
                RateLimiter(settings.http_max_requests_per_second), timeout=settings.http_timeout_seconds
            ),
        )

    def window(self, obj: str, interval: Interval, state: dict[str, Any]) -> Interval:
        lookback = dt.timedelta(days=self.settings.stripe_lookback_days)
        last = state.get("last_extracted_end")
        if obj == "events":
            # the feed reaches back 30 days before the interval end at most
            start = max(interval.start - lookback, interval.end - EVENTS_REACH)
            return Interval(start, interval.end)
        if last is not None and interval.end - to_utc(last) > EVENTS_REACH:
            log.warning("stripe %s: saved state %s is older than the events feed reaches; full re-sync", obj, last)
            return Interval(EPOCH, interval.end)
        return interval.widen(lookback)

    def _list(self, obj: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every object of ``GET /v1/<obj>``, page by page (``starting_after`` the last id while
        ``has_more``), as the SDK's ``auto_paging_iter`` pages. The SDK's ``raw_request`` sends
        each request (authentication, API version, retries with backoff, the rate-limited HTTP
        client, Stripe's error classes) and parses the JSON; the records are the parsed JSON
        objects, without building a ``StripeObject`` per record and converting it back (about
        five times the cost of the request itself, bench/results/ingestion_clients.json)."""
        if obj not in self.specs:
            raise ValueError(f"unknown Stripe object {obj!r}")
        page_params = dict(params)
        while True:
            body = self.client.raw_request("get", f"/v1/{obj}", **page_params).data
            items = body.get("data") or [] if isinstance(body, dict) else []
            yield from items
            if not (isinstance(body, dict) and body.get("has_more")) or not items:
                return
            page_params["starting_after"] = items[-1]["id"]

    def extract(self, obj: str, window: Interval) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {
            "limit": 100,
            "created": {"gte": int(window.start.timestamp()), "lt": int(window.end.timestamp())},
        }
        prefixes = tuple(t.rstrip("*") for t in EVENT_TYPES)
        try:
            for record in self._list(obj, params):
                if obj == "events" and not str(record.get("type", "")).startswith(prefixes):
                    continue
                yield record
        except stripe.AuthenticationError:
            raise ConnectorError("Stripe rejected the API key (401): check RETAILPULSE_STRIPE_API_KEY") from None
        except stripe.RateLimitError:
            raise ConnectorError(
                f"Stripe kept rate-limiting /v1/{obj} after {self.settings.http_max_retries} retries; "
                "lower RETAILPULSE_HTTP_MAX_REQUESTS_PER_SECOND or retry later"
            ) from None
        except stripe.APIConnectionError as exc:
            raise ConnectorError(f"cannot reach Stripe at {self.settings.stripe_api_base}: {exc.user_message or 'connection error'}") from None
        except stripe.StripeError as exc:
            raise ConnectorError(f"Stripe /v1/{obj} failed: HTTP {exc.http_status} {exc.user_message or ''}".strip()) from None
