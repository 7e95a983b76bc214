"""Mock Google Ads REST API: ``POST /{version}/customers/{cid}/googleAds:search|searchStream``.

GAQL subset over ``campaign``: ``SELECT campaign.id, campaign.name, segments.date,
metrics.cost_micros, metrics.clicks, metrics.impressions, metrics.conversions FROM campaign
WHERE segments.date BETWEEN 'YYYY-MM-DD' AND 'YYYY-MM-DD' [AND ...] [ORDER BY f [ASC|DESC]]
[LIMIT n]``. Conditions: ``segments.date`` BETWEEN / = / < / <= / > / >= / DURING (TODAY,
YESTERDAY, LAST_7_DAYS, LAST_14_DAYS, LAST_30_DAYS, THIS_MONTH, LAST_MONTH relative to the
clock), ``campaign.id`` = / IN, ``campaign.status`` = / != / IN (every campaign is ENABLED).
Rows: the latest restatement of each (campaign, day) visible at the clock. JSON uses
camelCase names and int64 values as strings, like the real REST API. ``search`` pages with
``nextPageToken`` (absent on the last page; default page size 10,000); ``searchStream``
answers a JSON array of batches.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sandbox.apis.common import Request, Response, VersionIndex, from_us, json_response, world_table
from sandbox.apis.faults import FaultDraw

PAGE_SIZE = 10_000
STREAM_BATCH = 10_000
FIELDS = {
    "campaign.resource_name": ("campaign", "resourceName"),
    "campaign.id": ("campaign", "id"),
    "campaign.name": ("campaign", "name"),
    "campaign.status": ("campaign", "status"),
    "campaign.advertising_channel_type": ("campaign", "advertisingChannelType"),
    "segments.date": ("segments", "date"),
    "metrics.cost_micros": ("metrics", "costMicros"),
    "metrics.clicks": ("metrics", "clicks"),
    "metrics.impressions": ("metrics", "impressions"),
    "metrics.conversions": ("metrics", "conversions"),
    "customer.id": ("customer", "id"),
}
_SORT_COL = {"campaign.id": "campaign_id", "campaign.name": "campaign_name", "segments.date": "date",
             "metrics.cost_micros": "cost_micros", "metrics.clicks": "clicks", "metrics.impressions": "impressions",
             "metrics.conversions": "conversions"}


class GAdsError(Exception):
    def __init__(self, http: int, status: str, message: str, error_code: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None, version: str = "v18"):
        super().__init__(message)
        self.http, self.status, self.message, self.error_code = http, status, message, error_code
        self.headers = headers or {}
        self.version = version

    def response(self) -> Response:
        err: dict[str, Any] = {"code": self.http, "message": self.message, "status": self.status}
        if self.error_code:
            err["details"] = [{
                "@type": f"type.googleapis.com/google.ads.googleads.{self.version}.errors.GoogleAdsFailure",
                "errors": [{"errorCode": self.error_code, "message": self.message}],
                "requestId": uuid.uuid4().hex[:22],
            }]
        return json_response(self.http, {"error": err}, self.headers)


def _bad_query(msg: str, code: str = "UNEXPECTED_INPUT") -> GAdsError:
    return GAdsError(400, "INVALID_ARGUMENT", msg, {"queryError": code})


_GAQL = re.compile(
    r"^\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<res>\w+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?"
    r"(?:\s+ORDER\s+BY\s+(?P<order>.+?))?"
    r"(?:\s+LIMIT\s+(?P<limit>\d+))?"
    r"(?:\s+PARAMETERS\s+(?P<params>.+?))?\s*$",
    re.I | re.S,
)
_COND = re.compile(
    r"^(?P<f>[\w.]+)\s+(?:"
    r"(?P<between>BETWEEN)\s+'(?P<a>[^']*)'\s+AND\s+'(?P<b>[^']*)'"
    r"|(?P<during>DURING)\s+(?P<range>\w+)"
    r"|(?P<notin>NOT\s+IN|IN)\s*\((?P<list>[^)]*)\)"
    r"|(?P<op>=|!=|<=|>=|<|>)\s*(?P<val>'[^']*'|\"[^\"]*\"|[\w.-]+)"
    r")\s*$",
    re.I | re.S,
)


def _split_and(where: str) -> list[str]:
    """Split on AND that is not the AND of a BETWEEN."""
    parts, cur, pending_between = [], [], False
    for tok in re.split(r"(\s+AND\s+)", where, flags=re.I):
        if re.fullmatch(r"\s+AND\s+", tok, re.I):
            if pending_between:
                cur.append(tok)
                pending_between = False
            else:
                parts.append("".join(cur))
                cur = []
            continue
        cur.append(tok)
        if re.search(r"\bBETWEEN\b", tok, re.I) and not re.search(r"\bBETWEEN\b.+\bAND\b", tok, re.I):
            pending_between = True
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _date(s: str) -> dt.date:
    try:
        return dt.date.fromisoformat(s.strip().strip("'\"")[:10])
    except ValueError:
        raise _bad_query(f"Invalid date literal: {s}", "INVALID_VALUE_WITH_BETWEEN_OPERATOR") from None


def _during(name: str, today: dt.date) -> tuple[dt.date, dt.date]:
    n = name.upper()
    y = today - dt.timedelta(days=1)
    m = re.fullmatch(r"LAST_(\d+)_DAYS", n)
    if n == "TODAY":
        return today, today
    if n == "YESTERDAY":
        return y, y
    if m:
        return today - dt.timedelta(days=int(m.group(1))), y
    if n == "THIS_MONTH":
        return today.replace(day=1), today
    if n == "LAST_MONTH":
        last = today.replace(day=1) - dt.timedelta(days=1)
        return last.replace(day=1), last
    raise _bad_query(f"Unsupported date range {name}", "INVALID_LITERAL_FOR_DURING")


class GoogleAdsAPI:
    name = "google_ads"

    def __init__(self, world: Any, creds: dict[str, str]):
        self.customer_id = creds["google_ads_customer_id"]
        self.developer_token = creds["google_ads_developer_token"]
        self.access_token = creds["google_ads_access_token"]
        t = world_table(world, "google_ads_campaign_daily")
        if pa.types.is_timestamp(t.schema.field("date").type):
            t = t.set_column(t.schema.get_field_index("date"), "date", pc.cast(t.column("date"), pa.date32()))
        self.table = t
        self.index = VersionIndex(t, ("campaign_id", "date"))

    # --- plumbing --------------------------------------------------------------------------
    def routes(self) -> list[tuple[str, str, Any, str]]:
        return [("POST", r"/(v\d+)/customers/(\d+)/googleAds:(search|searchStream)", self.search, "search")]

    @staticmethod
    def owns(path: str) -> bool:
        return bool(re.match(r"/v\d+/customers/", path))

    def not_found(self, req: Request) -> Response:
        return GAdsError(404, "NOT_FOUND", f"Method not found: {req.method} {req.path}").response()

    def authenticate(self, req: Request) -> Response | None:
        tok = req.bearer()
        if not tok:
            return GAdsError(401, "UNAUTHENTICATED", "Request is missing required authentication credential. "
                             "Expected OAuth 2 access token, login cookie or other valid authentication credential.").response()
        if tok != self.access_token:
            return GAdsError(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 "
                             "access token, login cookie or other valid authentication credential.").response()
        if req.header("developer-token") != self.developer_token:
            return GAdsError(401, "UNAUTHENTICATED", "The developer token is not valid.",
                             {"authenticationError": "DEVELOPER_TOKEN_INVALID"} if req.header("developer-token")
                             else {"authenticationError": "DEVELOPER_TOKEN_NOT_ON_REQUEST"}).response()
        return None

    def rate_limited(self, draw: FaultDraw) -> Response:
        return GAdsError(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).",
                         {"quotaError": "RESOURCE_EXHAUSTED"}, {"Retry-After": "1"}).response()

    def server_error(self, draw: FaultDraw) -> Response:
        if draw.variant(2):
            return GAdsError(503, "UNAVAILABLE", "The service is currently unavailable.",
                             {"internalError": "TRANSIENT_ERROR"}).response()
        return GAdsError(500, "INTERNAL", "Internal error encountered.", {"internalError": "INTERNAL_ERROR"}).response()

    def handle(self, req: Request, t_us: int, draw: FaultDraw, handler: Any, m: re.Match) -> Response:
        try:
            return handler(req, t_us, draw, *m.groups())
        except GAdsError as e:
            e.version = m.group(1)
            return e.response()

    # --- search ----------------------------------------------------------------------------
    def _parse(self, query: str, today: dt.date) -> tuple[list[str], dict[str, Any]]:
        m = _GAQL.match(query or "")
        if not m:
            raise _bad_query("Error in query: unexpected input. A query needs SELECT ... FROM ....")
        if m.group("res").lower() != "campaign":
            raise _bad_query(f"The sandbox serves only the 'campaign' resource, not '{m.group('res')}'.",
                             "PROHIBITED_RESOURCE_TYPE_IN_SELECT_CLAUSE")
        fields = [f.strip() for f in m.group("fields").split(",") if f.strip()]
        for f in fields:
            if f.lower() not in FIELDS:
                raise _bad_query(f"Unrecognized field in the query: '{f}'.", "UNRECOGNIZED_FIELD")
        spec: dict[str, Any] = {"date_from": None, "date_to": None, "ids": None, "not_ids": None,
                                "status_ok": True, "order": [], "limit": None}
        for cond in _split_and(m.group("where") or ""):
            c = _COND.match(cond)
            if not c:
                raise _bad_query(f"Error in query: unexpected input '{cond}'.")
            f = c.group("f").lower()
            if f == "segments.date":
                if c.group("between"):
                    a, b = _date(c.group("a")), _date(c.group("b"))
                elif c.group("during"):
                    a, b = _during(c.group("range"), today)
                elif c.group("op"):
                    d = _date(c.group("val"))
                    op = c.group("op")
                    a = d + dt.timedelta(days=1) if op == ">" else d if op in (">=", "=") else None
                    b = d - dt.timedelta(days=1) if op == "<" else d if op in ("<=", "=") else None
                else:
                    raise _bad_query("segments.date supports BETWEEN, DURING and comparisons")
                if a is not None:
                    spec["date_from"] = a if spec["date_from"] is None else max(spec["date_from"], a)
                if b is not None:
                    spec["date_to"] = b if spec["date_to"] is None else min(spec["date_to"], b)
            elif f == "campaign.id":
                vals = [c.group("val")] if c.group("op") == "=" else (c.group("list") or "").split(",")
                try:
                    ids = [int(v.strip().strip("'\"")) for v in vals if v.strip()]
                except ValueError:
                    raise _bad_query("campaign.id needs integer values", "INVALID_VALUE") from None
                if c.group("notin") and c.group("notin").upper().startswith("NOT"):
                    spec["not_ids"] = ids
                elif c.group("op") in ("=", None):
                    spec["ids"] = ids
                else:
                    raise _bad_query("campaign.id supports = and IN", "INVALID_OPERATOR")
            elif f == "campaign.status":
                vals = [c.group("val")] if c.group("op") else (c.group("list") or "").split(",")
                vals = [v.strip().strip("'\"").upper() for v in vals]
                neg = c.group("op") == "!=" or bool(c.group("notin") and c.group("notin").upper().startswith("NOT"))
                spec["status_ok"] = ("ENABLED" in vals) != neg
            else:
                raise _bad_query(f"The sandbox cannot filter on '{c.group('f')}'.", "PROHIBITED_FIELD_IN_WHERE_CLAUSE")
        if m.group("order"):
            for part in m.group("order").split(","):
                bits = part.split()
                f = bits[0].lower()
                if f not in _SORT_COL:
                    raise _bad_query(f"Cannot order by '{bits[0]}'.", "INVALID_FIELD_NAME_IN_ORDER_BY_CLAUSE")
                desc = len(bits) > 1 and bits[1].upper() == "DESC"
                spec["order"].append((_SORT_COL[f], "descending" if desc else "ascending"))
        if m.group("limit"):
            spec["limit"] = int(m.group("limit"))
        return fields, spec

    def _rows(self, spec: dict[str, Any], t_us: int) -> pa.Table:
        t = self.table.take(pa.array(self.index.rows_at(t_us), pa.int64()))
        mask = pa.array(np.ones(t.num_rows, dtype=bool))
        if spec["date_from"] is not None:
            mask = pc.and_(mask, pc.greater_equal(t.column("date"), pa.scalar(spec["date_from"], pa.date32())))
        if spec["date_to"] is not None:
            mask = pc.and_(mask, pc.less_equal(t.column("date"), pa.scalar(spec["date_to"], pa.date32())))
        if spec["ids"] is not None:
            mask = pc.and_(mask, pc.is_in(t.column("campaign_id"), value_set=pa.array(spec["ids"], pa.int64())))
        if spec["not_ids"] is not None:
            mask = pc.and_(mask, pc.invert(pc.is_in(t.column("campaign_id"), value_set=pa.array(spec["not_ids"], pa.int64()))))
        if not spec["status_ok"]:
            mask = pa.array(np.zeros(t.num_rows, dtype=bool))
        t = t.filter(mask)
        keys = spec["order"] or [("date", "ascending"), ("campaign_id", "ascending")]
        t = t.take(pc.sort_indices(t, sort_keys=keys))
        if spec["limit"] is not None:
            t = t.slice(0, spec["limit"])
        return t

    def _results(self, t: pa.Table, fields: list[str], cid: str) -> list[dict[str, Any]]:
        recs = t.to_pylist()
        out = []
        for r in recs:
            res: dict[str, Any] = {}
            camp = {"resourceName": f"customers/{cid}/campaigns/{r['campaign_id']}"}
            for f in fields:
                group, name = FIELDS[f.lower()]
                if group == "campaign":
                    if name == "id":
                        camp["id"] = str(r["campaign_id"])
                    elif name == "name":
                        camp["name"] = r["campaign_name"]
                    elif name == "status":
                        camp["status"] = "ENABLED"
                    elif name == "advertisingChannelType":
                        camp["advertisingChannelType"] = "SEARCH"
                elif group == "segments":
                    res.setdefault("segments", {})["date"] = r["date"].isoformat()
                elif group == "customer":
                    res["customer"] = {"resourceName": f"customers/{cid}", "id": cid}
                else:
                    col = {"costMicros": "cost_micros", "clicks": "clicks", "impressions": "impressions",
                           "conversions": "conversions"}[name]
                    v = r[col]
                    res.setdefault("metrics", {})[name] = float(v or 0.0) if name == "conversions" else str(int(v or 0))
            out.append({"campaign": camp, **res})
        return out

    @staticmethod
    def _field_mask(fields: list[str]) -> str:
        return ",".join(f"{FIELDS[f.lower()][0]}.{FIELDS[f.lower()][1]}" for f in fields)

    def search(self, req: Request, t_us: int, draw: FaultDraw, version: str, cid: str, method: str) -> Response:
        if cid != self.customer_id:
            raise GAdsError(403, "PERMISSION_DENIED", "The caller does not have permission",
                            {"authorizationError": "USER_PERMISSION_DENIED"})
        login = req.header("login-customer-id")
        if login is not None and not re.fullmatch(r"\d{10}", login.replace("-", "")):
            raise GAdsError(400, "INVALID_ARGUMENT", "Invalid login-customer-id header.",
                            {"authenticationError": "CUSTOMER_NOT_FOUND"})
        try:
            body = req.json()
        except ValueError:
            raise GAdsError(400, "INVALID_ARGUMENT", "Invalid JSON payload received.") from None
        if not isinstance(body, dict) or not body.get("query"):
            raise GAdsError(400, "INVALID_ARGUMENT", "Query cannot be empty.", {"queryError": "UNEXPECTED_END_OF_QUERY"})
        query = str(body["query"])
        token = body.get("pageToken")
        qhash = hashlib.sha1(query.encode()).hexdigest()[:16]
        offset = 0
        if token:
            try:
                tok = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
                if tok["q"] != qhash:
                    raise ValueError
                offset, t_us = int(tok["o"]), int(tok["t"])  # a page token pins the snapshot
            except (ValueError, KeyError, TypeError):
                raise GAdsError(400, "INVALID_ARGUMENT", "Page token is invalid.",
                                {"requestError": "INVALID_PAGE_TOKEN"}) from None
        today = from_us(t_us).date()
        fields, spec = self._parse(query, today)
        rows = self._rows(spec, t_us)
        mask = self._field_mask(fields)
        request_id = uuid.uuid4().hex[:22]
        if method == "searchStream":
            batches = []
            for start in range(0, max(rows.num_rows, 1), STREAM_BATCH):
                part = self._results(rows.slice(start, STREAM_BATCH), fields, cid)
                part = draw.records(part, self._malform, self._drift)
                b: dict[str, Any] = {"fieldMask": mask, "requestId": request_id}
                if part:
                    b = {"results": part, **b}
                batches.append(b)
            return json_response(200, batches, {"request-id": request_id})
        size = body.get("pageSize") or PAGE_SIZE
        try:
            size = int(size)
        except (TypeError, ValueError):
            size = 0
        if not 1 <= size <= PAGE_SIZE:
            raise GAdsError(400, "INVALID_ARGUMENT", f"Page size must be between 1 and {PAGE_SIZE}.",
                            {"requestError": "INVALID_PAGE_SIZE"})
        page = self._results(rows.slice(offset, size), fields, cid)
        out: dict[str, Any] = {"results": draw.records(page, self._malform, self._drift)} if page else {}
        if offset + size < rows.num_rows:
            nxt = json.dumps({"q": qhash, "o": offset + size, "t": t_us}, separators=(",", ":")).encode()
            out["nextPageToken"] = base64.urlsafe_b64encode(nxt).decode().rstrip("=")
        if body.get("returnTotalResultsCount"):
            out["totalResultsCount"] = str(rows.num_rows)
        out["fieldMask"] = mask
        out["requestId"] = request_id
        return json_response(200, out, {"request-id": request_id})

    # --- record faults ---------------------------------------------------------------------
    @staticmethod
    def _malform(rec: dict[str, Any], variant: int, is_last: bool) -> dict[str, Any]:
        choice = variant % 3
        if choice == 0 and "metrics" in rec:
            k = sorted(rec["metrics"])[variant % len(rec["metrics"])]
            rec["metrics"][k] = "abc"
        elif choice == 1 and "segments" in rec:
            rec["segments"]["date"] = "2025-13-45"
        else:
            rec["campaign"].pop("id", None)
            rec["campaign"].pop("resourceName", None)
        return rec

    @staticmethod
    def _drift(rec: dict[str, Any], variant: int) -> dict[str, Any]:
        choice = variant % 3
        if choice == 0:
            rec.setdefault("metrics", {})["sandboxNewMetric"] = str(variant % 1000)
        elif choice == 1 and "name" in rec["campaign"]:
            del rec["campaign"]["name"]
        elif "metrics" in rec:
            for k, v in rec["metrics"].items():
                if isinstance(v, str):
                    rec["metrics"][k] = int(v)  # int64 as a JSON number instead of a string
                    break
        return rec
