"""Salesforce through simple-salesforce: Account, Contact, Lead, Opportunity, Case.

Every object is read with ``queryAll`` (deleted rows included, ``IsDeleted`` kept as a flag)
filtered on ``SystemModstamp``: the watermark is the start of the extraction interval, and a run
reads ``SystemModstamp >= watermark - lookback`` (``RETAILPULSE_SALESFORCE_LOOKBACK_MINUTES``)
and ``< interval end``. The first run of an object reads everything modified before the interval
end; when the saved state is older than the interval start (a missed run), the window starts at
the saved state instead, so no change is ever skipped; re-running an interval reuses the window
its landed batch was extracted with, so a re-run gives the same batch. Records are landed as the
API returned them minus the ``attributes`` key; the loader deduplicates on ``Id`` keeping the
last version (earlier ones go to ``bronze.rejected_records`` as ``duplicate_key_superseded``).

The client builds ``https://`` URLs only; the sandbox's self-signed CA is trusted explicitly
(``RETAILPULSE_SALESFORCE_CA_BUNDLE``) — TLS verification is never disabled. All requests go
through :class:`ingestion.http.RetryingSession` (rate limit, timeout, retries on 5xx and
``REQUEST_LIMIT_EXCEEDED``). Authentication: instance URL + session id (OAuth access token), or
username + password + security token (SOAP login), from settings or the Airflow connection
``retailpulse_salesforce`` (host = instance URL, password = session id; or login + password with
``{"security_token": ...}`` in its extras).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import requests

from ingestion.connectors.base import Connector, ConnectorError
from ingestion import http
from ingestion.http import RateLimiter, RetryDecision, RetryingSession, endpoint_of, redact, retry_after_seconds
from ingestion.interval import Interval, to_utc
from ingestion.landing import LandingZone
from ingestion.spec import EMAIL_RE, FieldSpec as F, ObjectSpec
from retailpulse.credentials import SourceCredentials, airflow_connection
from retailpulse.settings import Settings

log = logging.getLogger(__name__)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)

# bronze object name -> (sObject, key prefix, API field names besides the common ones)
OBJECTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "account": ("Account", "001", ("Name", "Industry", "BillingCountry", "Phone", "Website", "Type")),
    "contact": ("Contact", "003", ("AccountId", "FirstName", "LastName", "Email", "Phone", "MobilePhone",
                                   "MailingCountry", "HasOptedOutOfEmail", "LeadSource", "Stripe_Customer_Id__c",
                                   "Web_User_Id__c")),
    "lead": ("Lead", "00Q", ("FirstName", "LastName", "Email", "Phone", "Company", "Status", "LeadSource",
                             "IsConverted", "ConvertedContactId", "HasOptedOutOfEmail")),
    "opportunity": ("Opportunity", "006", ("AccountId", "Name", "StageName", "Amount", "CloseDate", "IsWon",
                                           "IsClosed", "LeadSource")),
    "case": ("Case", "500", ("ContactId", "AccountId", "Subject", "Status", "Priority", "Origin", "IsClosed",
                             "ClosedDate", "Type")),
}
COMMON_FIELDS = ("Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp")


def _sfid(prefix: str) -> str:
    return rf"^{prefix}[A-Za-z0-9]{{12}}(?:[A-Za-z0-9]{{3}})?$"


def _common(prefix: str) -> tuple[F, ...]:
    return (
        F("id", required=True, pattern=_sfid(prefix)),
        F("isdeleted", "bool", required=True),
        F("createddate", "timestamp"),
        F("lastmodifieddate", "timestamp"),
        F("systemmodstamp", "timestamp", required=True),
    )


_CRITICAL = ("id", "isdeleted", "systemmodstamp")
# Salesforce's default picklist values (an org with custom values extends these tuples)
CASE_STATUS = ("New", "Working", "Escalated", "Closed")
CASE_PRIORITY = ("High", "Medium", "Low")
LEAD_STATUS = ("Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted")
OPPORTUNITY_STAGES = ("Prospecting", "Qualification", "Needs Analysis", "Value Proposition", "Id. Decision Makers",
                      "Perception Analysis", "Proposal/Price Quote", "Negotiation/Review", "Closed Won", "Closed Lost")

SPECS: dict[str, ObjectSpec] = {
    "account": ObjectSpec(
        "salesforce", "account", key="id", critical_columns=_CRITICAL,
        fields=_common("001") + (
            F("name"), F("industry"), F("billingcountry"), F("phone"), F("website"), F("type"),
        ),
        description="Salesforce accounts (queryAll: deleted rows kept with isdeleted = true)",
    ),
    "contact": ObjectSpec(
        "salesforce", "contact", key="id", critical_columns=_CRITICAL,
        fields=_common("003") + (
            F("accountid", pattern=_sfid("001")), F("firstname"), F("lastname"), F("email", pattern=EMAIL_RE),
            F("phone"), F("mobilephone"), F("mailingcountry"), F("hasoptedoutofemail", "bool"), F("leadsource"),
            F("stripe_customer_id__c", pattern=r"^cus_\w+$"), F("web_user_id__c"),
        ),
        description="Salesforce contacts (queryAll: deleted rows kept with isdeleted = true)",
    ),
    "lead": ObjectSpec(
        "salesforce", "lead", key="id", critical_columns=_CRITICAL,
        fields=_common("00Q") + (
            F("firstname"), F("lastname"), F("email", pattern=EMAIL_RE), F("phone"), F("company"),
            F("status", accepted=LEAD_STATUS), F("leadsource"), F("isconverted", "bool"),
            F("convertedcontactid", pattern=_sfid("003")), F("hasoptedoutofemail", "bool"),
        ),
        description="Salesforce leads (queryAll: deleted rows kept with isdeleted = true)",
    ),
    "opportunity": ObjectSpec(
        "salesforce", "opportunity", key="id", critical_columns=_CRITICAL,
        fields=_common("006") + (
            F("accountid", pattern=_sfid("001")), F("name"), F("stagename", accepted=OPPORTUNITY_STAGES),
            F("amount", "float", min_value=0), F("closedate", "date"), F("iswon", "bool"), F("isclosed", "bool"),
            F("leadsource"),
        ),
        description="Salesforce opportunities (amount in the org currency)",
    ),
    "case": ObjectSpec(
        "salesforce", "case", key="id", critical_columns=_CRITICAL,
        fields=_common("500") + (
            F("contactid", pattern=_sfid("003")), F("accountid", pattern=_sfid("001")), F("subject"),
            F("status", accepted=CASE_STATUS), F("priority", accepted=CASE_PRIORITY), F("origin"),
            F("isclosed", "bool"), F("closeddate", "timestamp"), F("type"),
        ),
        description="Salesforce support cases",
    ),
}


def soql_datetime(value: dt.datetime) -> str:
    return to_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_soql(obj: str, window: Interval) -> str:
    sobject, _, fields = OBJECTS[obj]
    cols = ", ".join(COMMON_FIELDS + fields)
    return (f"SELECT {cols} FROM {sobject} WHERE SystemModstamp >= {soql_datetime(window.start)} "
            f"AND SystemModstamp < {soql_datetime(window.end)} ORDER BY SystemModstamp, Id")


def classify_salesforce(resp: requests.Response) -> RetryDecision | None:
    """Transient Salesforce answers: 5xx (SERVER_UNAVAILABLE, UNKNOWN_EXCEPTION), 429, and 403
    REQUEST_LIMIT_EXCEEDED (concurrent / rate limits)."""
    if resp.status_code in (403, 429) or resp.status_code >= 500:
        code = _error_code(resp)
        if resp.status_code == 403 and code != "REQUEST_LIMIT_EXCEEDED":
            return None
        wait = retry_after_seconds(resp.headers.get("Retry-After"), cap=http.MAX_SERVER_WAIT_SECONDS)
        return RetryDecision(True, f"HTTP {resp.status_code} {code or ''}".strip(), wait)
    return None


def _error_code(resp: requests.Response) -> str | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return str(body[0].get("errorCode") or "") or None
    if isinstance(body, dict):
        return str(body.get("errorCode") or body.get("error") or "") or None
    return None


def _credentials(settings: Settings) -> tuple[str, SourceCredentials | None]:
    """("session", creds) | ("password", creds) | ("none", None), settings first then Airflow."""
    if settings.salesforce_session_id is not None and settings.salesforce_session_id.get_secret_value():
        return "session", SourceCredentials(base_url=settings.salesforce_instance_url,
                                            secret=settings.salesforce_session_id)
    if (settings.salesforce_username and settings.salesforce_password is not None
            and settings.salesforce_security_token is not None):
        return "password", SourceCredentials(
            base_url=settings.salesforce_instance_url, secret=settings.salesforce_password,
            login=settings.salesforce_username,
            extra={"security_token": settings.salesforce_security_token.get_secret_value()})
    conn = airflow_connection("retailpulse_salesforce")
    if conn is not None and conn.secret is not None:
        log.info("using Airflow connection retailpulse_salesforce for salesforce")
        conn.base_url = conn.base_url or settings.salesforce_instance_url
        if conn.login and conn.extra.get("security_token"):
            return "password", conn
        return "session", conn
    return "none", None


class SalesforceConnector(Connector):
    source = "salesforce"
    specs = SPECS

    @classmethod
    def is_configured(cls, settings: Settings) -> bool:
        mode, creds = _credentials(settings)
        if mode == "session":
            return bool(creds and creds.base_url)
        return mode == "password"

    def __init__(self, settings: Settings) -> None:
        from simple_salesforce import Salesforce
        from simple_salesforce.exceptions import SalesforceError

        self.settings = settings
        mode, creds = _credentials(settings)
        if creds is None or creds.secret is None:
            raise ConnectorError(
                "no Salesforce credentials: set RETAILPULSE_SALESFORCE_INSTANCE_URL and "
                "RETAILPULSE_SALESFORCE_SESSION_ID (or USERNAME/PASSWORD/SECURITY_TOKEN), or the Airflow "
                "connection retailpulse_salesforce")
        secret = creds.secret.get_secret_value()
        token = str(creds.extra.get("security_token") or "")
        self._secrets = [s for s in (secret, token) if s]
        ca = creds.extra.get("ca_bundle") or settings.salesforce_ca_bundle
        if ca is not None and not os.path.exists(str(ca)):
            raise ConnectorError(f"Salesforce CA bundle {ca} does not exist (RETAILPULSE_SALESFORCE_CA_BUNDLE)")
        self.session = RetryingSession(
            "salesforce", max_retries=settings.http_max_retries, timeout=settings.http_timeout_seconds,
            limiter=RateLimiter(settings.http_max_requests_per_second), classify=classify_salesforce,
            verify=str(ca) if ca else None, secrets=self._secrets,
        )
        version = str(creds.extra.get("api_version") or settings.salesforce_api_version).lstrip("v")
        try:
            if mode == "password":
                self.sf = Salesforce(username=creds.login, password=secret, security_token=token,
                                     domain=str(creds.extra.get("domain") or "login"), version=version,
                                     session=self.session)
            else:
                if not creds.base_url:
                    raise ConnectorError("no Salesforce instance URL: set RETAILPULSE_SALESFORCE_INSTANCE_URL")
                if not creds.base_url.lower().startswith("https://"):
                    raise ConnectorError(f"the Salesforce instance URL must be https:// (got {creds.base_url})")
                self.sf = Salesforce(instance_url=creds.base_url.rstrip("/"), session_id=secret, version=version,
                                     session=self.session)
        except SalesforceError as exc:
            raise ConnectorError(redact(f"Salesforce login failed: {_describe(exc)}", self._secrets)) from None

    def window(self, obj: str, interval: Interval, state: dict[str, Any]) -> Interval:
        lookback = dt.timedelta(minutes=self.settings.salesforce_lookback_minutes)
        landed = LandingZone(self.settings.landing_path).read_manifest(self.source, obj, interval)
        if landed is not None and landed.extract_window.get("start"):
            # a re-run of an interval reads the window its batch was extracted with
            start = to_utc(landed.extract_window["start"])
            if start < interval.end:
                return Interval(start, interval.end)
        last = state.get("last_extracted_end")
        if last is None:
            return Interval(EPOCH, interval.end)
        watermark = min(interval.start, to_utc(last))
        return Interval(max(EPOCH, watermark - lookback), interval.end)

    def extract(self, obj: str, window: Interval) -> Iterator[dict[str, Any]]:
        from simple_salesforce.exceptions import SalesforceError

        soql = build_soql(obj, window)
        try:
            for rec in self.sf.query_all_iter(soql, include_deleted=True):
                if isinstance(rec, dict):
                    rec = dict(rec)
                    rec.pop("attributes", None)
                yield rec
        except SalesforceError as exc:
            raise ConnectorError(redact(f"Salesforce queryAll on {OBJECTS[obj][0]} failed: {_describe(exc)}",
                                        self._secrets)) from None
        except ValueError as exc:  # a body that is not JSON even after retries
            raise ConnectorError(f"Salesforce queryAll on {OBJECTS[obj][0]} returned an unreadable answer: "
                                 f"{type(exc).__name__}") from None


def _describe(exc: Any) -> str:
    """HTTP status, endpoint (no query) and Salesforce errorCode/message of a SalesforceError."""
    status = getattr(exc, "status", None)
    url = getattr(exc, "url", None) or ""
    content = getattr(exc, "content", None)
    detail = ""
    if isinstance(content, list) and content and isinstance(content[0], dict):
        detail = f"{content[0].get('errorCode', '')}: {content[0].get('message', '')}"
    elif isinstance(content, dict):
        detail = json.dumps(content)[:200]
    elif content:
        detail = str(content)[:200]
    where = endpoint_of(url) if url else ""
    return f"HTTP {status} {where} {detail}".strip()
