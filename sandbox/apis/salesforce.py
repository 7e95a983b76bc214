"""Mock Salesforce REST API (HTTPS) over the world's sf_* tables.

``/services/data/`` (versions), ``/services/data/vXX.X/query?q=`` and ``/queryAll?q=`` (SOQL
subset, see :mod:`sandbox.apis.soql`), ``nextRecordsUrl`` cursors (``/query/01g...-2000``),
``/sobjects`` (global describe), ``/sobjects/{Object}/describe`` and ``/sobjects/{Object}/{Id}``.
The served state of a record is its latest version visible at the clock; ``query`` leaves out
``IsDeleted`` records, ``queryAll`` keeps them. Batches hold at most 2,000 records
(``Sforce-Query-Options: batchSize=N`` lowers it, minimum 200). A cursor is a snapshot taken
when the query ran, so paging is consistent even if the clock moves meanwhile.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import re
import threading
from dataclasses import dataclass
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc

from sandbox.apis.common import LRU, Request, Response, VersionIndex, json_response, world_table
from sandbox.apis.faults import FaultDraw
from sandbox.apis.soql import SOQLError, _sf_type, evaluate, parse

OBJECTS = {"Account": "sf_account", "Contact": "sf_contact", "Lead": "sf_lead", "Opportunity": "sf_opportunity",
           "Case": "sf_case"}
KEY_PREFIX = {"Account": "001", "Contact": "003", "Lead": "00Q", "Opportunity": "006", "Case": "500"}
VERSIONS = [("Winter '23", "56.0"), ("Spring '23", "57.0"), ("Summer '23", "58.0"), ("Winter '24", "59.0"),
            ("Spring '24", "60.0"), ("Summer '24", "61.0"), ("Winter '25", "62.0")]
MAX_BATCH = 2000
MIN_BATCH = 200
API_LIMIT = 15000
V = r"v(\d+\.\d)"


def sf_datetime(v: dt.datetime | None) -> str | None:
    if v is None:
        return None
    v = v.astimezone(dt.timezone.utc)
    return v.strftime("%Y-%m-%dT%H:%M:%S.") + f"{v.microsecond // 1000:03d}+0000"


def _formatter(t: pa.DataType) -> Callable[[Any], Any]:
    if pa.types.is_timestamp(t):
        return sf_datetime
    if pa.types.is_date(t):
        return lambda v: v.isoformat() if v is not None else None
    if pa.types.is_decimal(t):
        return lambda v: float(v) if v is not None else None
    return lambda v: v


def _sf_errors(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(status, [{"message": message, "errorCode": code}], headers)


@dataclass
class _Cursor:
    obj: str
    version: str
    fields: list[str]
    table: pa.Table  # the matching records, in result order, only the selected columns
    batch: int


class SalesforceAPI:
    name = "salesforce"

    def __init__(self, world: Any, session_id: str):
        self.session_id = session_id
        self.tables: dict[str, pa.Table] = {}
        self.index: dict[str, VersionIndex] = {}
        for obj, tname in OBJECTS.items():
            t = world_table(world, tname, required=False)
            if t is None:
                continue
            self.tables[obj] = t
            self.index[obj] = VersionIndex(t, ("Id",))
        self.columns: dict[str, dict[str, str]] = {
            obj: {c.lower(): c for c in t.column_names if not c.startswith("_")} for obj, t in self.tables.items()}
        self._cursors = LRU(512)
        self._ids = itertools.count(1)
        self._usage = itertools.count(1)
        self._lock = threading.Lock()

    # --- plumbing --------------------------------------------------------------------------
    def routes(self) -> list[tuple[str, str, Any, str]]:
        return [
            ("GET", r"/services/data/?", self.versions, "versions"),
            ("GET", rf"/services/data/{V}/?", self.resources, "resources"),
            ("GET", rf"/services/data/{V}/(query|queryAll)/?", self.query, "query"),
            ("GET", rf"/services/data/{V}/(?:query|queryAll)/(01g[0-9A-Za-z]+)-(\d+)", self.query_more, "query_more"),
            ("GET", rf"/services/data/{V}/sobjects/?", self.describe_global, "describe"),
            ("GET", rf"/services/data/{V}/sobjects/(\w+)/describe/?", self.describe, "describe"),
            ("GET", rf"/services/data/{V}/sobjects/(\w+)/?", self.sobject_basic, "describe"),
            ("GET", rf"/services/data/{V}/sobjects/(\w+)/(\w{{15,18}})", self.retrieve, "retrieve"),
            ("GET", rf"/services/data/{V}/limits/?", self.limits, "limits"),
        ]

    @staticmethod
    def owns(path: str) -> bool:
        return path.startswith("/services/")

    def authenticate(self, req: Request) -> Response | None:
        if req.path.rstrip("/") == "/services/data":
            return None
        tok = req.bearer()
        if tok is None:
            auth = req.header("authorization") or ""
            tok = auth[6:].strip() if auth[:6].lower() == "oauth " else None
        if tok != self.session_id:
            return _sf_errors(401, "INVALID_SESSION_ID", "Session expired or invalid", self._limit_header())
        return None

    def _limit_header(self) -> dict[str, str]:
        return {"Sforce-Limit-Info": f"api-usage={next(self._usage)}/{API_LIMIT}"}

    def rate_limited(self, draw: FaultDraw) -> Response:
        return _sf_errors(403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded.",
                          {**self._limit_header(), "Retry-After": "1"})

    def server_error(self, draw: FaultDraw) -> Response:
        if draw.variant(2):
            return _sf_errors(503, "SERVER_UNAVAILABLE", "Server temporarily unavailable. Please try again later.",
                              self._limit_header())
        return _sf_errors(500, "UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this "
                          "ErrorId if you contact support: 123456789-0 (-1)", self._limit_header())

    def not_found(self, req: Request) -> Response:
        return _sf_errors(404, "NOT_FOUND", "The requested resource does not exist", self._limit_header())

    def handle(self, req: Request, t_us: int, draw: FaultDraw, handler: Any, m: re.Match) -> Response:
        try:
            resp = handler(req, t_us, draw, *m.groups())
        except SOQLError as e:
            resp = _sf_errors(400, e.code, str(e))
        resp.headers.update(self._limit_header())
        return resp

    # --- endpoints -------------------------------------------------------------------------
    def versions(self, req: Request, t_us: int, draw: FaultDraw) -> Response:
        return json_response(200, [{"label": label, "url": f"/services/data/v{v}", "version": v} for label, v in VERSIONS])

    def resources(self, req: Request, t_us: int, draw: FaultDraw, version: str) -> Response:
        base = f"/services/data/v{version}"
        return json_response(200, {k: f"{base}/{k}" for k in ("query", "queryAll", "sobjects", "limits")})

    def limits(self, req: Request, t_us: int, draw: FaultDraw, version: str) -> Response:
        return json_response(200, {"DailyApiRequests": {"Max": API_LIMIT, "Remaining": API_LIMIT}})

    def _state(self, obj: str, t_us: int, include_deleted: bool) -> pa.Table:
        t = self.tables[obj]
        rows = self.index[obj].rows_at(t_us)
        state = t.take(pa.array(rows, pa.int64()))
        if not include_deleted and "IsDeleted" in state.column_names:
            state = state.filter(pc.invert(pc.fill_null(state.column("IsDeleted"), False)))
        return state

    def _object(self, name: str) -> str:
        for obj in self.tables:
            if obj.lower() == name.lower():
                return obj
        raise SOQLError(f"sObject type '{name}' is not supported. If you are attempting to use a custom object, be "
                        "sure to append the '__c' after the entity name.", "INVALID_TYPE")

    def _resolver(self, obj: str) -> Callable[[str], str]:
        cols = self.columns[obj]

        def resolve(f: str) -> str:
            key = f.lower()
            if key.startswith(obj.lower() + "."):
                key = key[len(obj) + 1:]
            if key not in cols:
                raise SOQLError(f"No such column '{f}' on entity '{obj}'. If you are attempting to use a custom "
                                "field, be sure to append the '__c' after the custom field name.", "INVALID_FIELD")
            return cols[key]

        return resolve

    def _batch_size(self, req: Request) -> int:
        opt = req.header("sforce-query-options") or ""
        m = re.search(r"batchSize\s*=\s*(\d+)", opt, re.I)
        if not m:
            return MAX_BATCH
        return max(MIN_BATCH, min(MAX_BATCH, int(m.group(1))))

    def query(self, req: Request, t_us: int, draw: FaultDraw, version: str, endpoint: str) -> Response:
        q = req.q1("q")
        if q is None:
            return _sf_errors(400, "MALFORMED_QUERY", "A query string has to be specified")
        parsed = parse(q)
        obj = self._object(parsed.obj)
        resolve = self._resolver(obj)
        state = self._state(obj, t_us, include_deleted=(endpoint == "queryAll"))
        idx = evaluate(parsed, state, resolve)
        start = parsed.offset
        stop = len(idx) if parsed.limit is None else min(len(idx), start + parsed.limit)
        idx = idx.slice(start, max(0, stop - start))
        if parsed.fields is None:
            return json_response(200, {"totalSize": len(idx), "done": True, "records": []})
        fields = list(dict.fromkeys(resolve(f) for f in parsed.fields))
        result = state.select(fields + (["Id"] if "Id" not in fields else [])).take(idx)
        cur = _Cursor(obj, version, fields, result, self._batch_size(req))
        return self._page(cur, None, 0, draw)

    def query_more(self, req: Request, t_us: int, draw: FaultDraw, version: str, locator: str, offset: str) -> Response:
        cur = self._cursors.get(locator)
        if cur is None or int(offset) > cur.table.num_rows:
            return _sf_errors(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(cur, locator, int(offset), draw)

    def _page(self, cur: _Cursor, locator: str | None, offset: int, draw: FaultDraw) -> Response:
        total = cur.table.num_rows
        end = min(total, offset + cur.batch)
        body: dict[str, Any] = {"totalSize": total, "done": end >= total}
        if end < total:
            if locator is None:
                with self._lock:
                    n = next(self._ids)
                locator = "01g" + hashlib.sha1(f"{id(self)}-{n}".encode()).hexdigest()[:12].upper() + "AAA"
                self._cursors.put(locator, cur)
            body["nextRecordsUrl"] = f"/services/data/v{cur.version}/query/{locator}-{end}"
        records = self._records(cur, offset, end)
        body["records"] = draw.records(records, self._malform, self._drift)
        return json_response(200, body)

    def _records(self, cur: _Cursor, start: int, end: int) -> list[dict[str, Any]]:
        page = cur.table.slice(start, end - start)
        fmt = {f: _formatter(page.schema.field(f).type) for f in cur.fields}
        ids = page.column("Id").to_pylist()
        cols = {f: page.column(f).to_pylist() for f in cur.fields}
        base = f"/services/data/v{cur.version}/sobjects/{cur.obj}/"
        out = []
        for i, rid in enumerate(ids):
            rec: dict[str, Any] = {"attributes": {"type": cur.obj, "url": base + str(rid)}}
            for f in cur.fields:
                rec[f] = fmt[f](cols[f][i])
            out.append(rec)
        return out

    def retrieve(self, req: Request, t_us: int, draw: FaultDraw, version: str, obj_name: str, rid: str) -> Response:
        try:
            obj = self._object(obj_name)
        except SOQLError:
            return self.not_found(req)
        state = self._state(obj, t_us, include_deleted=False)
        hit = state.filter(pc.equal(state.column("Id"), rid))
        if hit.num_rows == 0:
            return self.not_found(req)
        fields = [c for c in hit.column_names if not c.startswith("_")]
        cur = _Cursor(obj, version, fields, hit, 1)
        return json_response(200, self._records(cur, 0, 1)[0])

    def describe_global(self, req: Request, t_us: int, draw: FaultDraw, version: str) -> Response:
        return json_response(200, {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": [
            {"name": obj, "label": obj, "keyPrefix": KEY_PREFIX[obj], "queryable": True, "custom": False,
             "urls": {"sobject": f"/services/data/v{version}/sobjects/{obj}",
                      "describe": f"/services/data/v{version}/sobjects/{obj}/describe"}}
            for obj in self.tables]})

    def sobject_basic(self, req: Request, t_us: int, draw: FaultDraw, version: str, obj_name: str) -> Response:
        try:
            obj = self._object(obj_name)
        except SOQLError:
            return self.not_found(req)
        return json_response(200, {"objectDescribe": {"name": obj, "label": obj, "keyPrefix": KEY_PREFIX[obj],
                                                      "queryable": True}, "recentItems": []})

    def describe(self, req: Request, t_us: int, draw: FaultDraw, version: str, obj_name: str) -> Response:
        try:
            obj = self._object(obj_name)
        except SOQLError:
            return self.not_found(req)
        fields = []
        for f in self.tables[obj].schema:
            if f.name.startswith("_"):
                continue
            kind = _sf_type(f.type)
            if f.name == "Id":
                sf = "id"
            elif f.name.endswith("Id") and kind == "string":
                sf = "reference"
            elif kind == "number":
                sf = "currency" if f.name == "Amount" else ("int" if pa.types.is_integer(f.type) else "double")
            elif kind == "string" and "Email" in f.name:
                sf = "email"
            elif kind == "string" and "Phone" in f.name:
                sf = "phone"
            else:
                sf = kind
            fields.append({"name": f.name, "label": re.sub(r"(?<!^)(?=[A-Z])", " ", f.name.removesuffix("__c")),
                           "type": sf, "nillable": f.name not in ("Id", "CreatedDate", "SystemModstamp", "IsDeleted"),
                           "custom": f.name.endswith("__c"), "filterable": True, "sortable": kind != "boolean"})
        return json_response(200, {"name": obj, "label": obj, "keyPrefix": KEY_PREFIX[obj], "queryable": True,
                                   "custom": False, "fields": fields})

    # --- record faults ---------------------------------------------------------------------
    @staticmethod
    def _malform(rec: dict[str, Any], variant: int, is_last: bool) -> dict[str, Any]:
        choice = variant % 3
        if choice == 0:
            rec.pop("Id", None)
            return rec
        keys = [k for k in rec if k not in ("attributes", "Id")]
        dates = [k for k in keys if k.endswith("Date") or k == "SystemModstamp"]
        if choice == 1 and dates:
            rec[dates[variant % len(dates)]] = "2025-13-45T99:99:99.000+0000"
        elif "Email" in rec:
            rec["Email"] = "not-an-email@@"
        elif keys:
            rec[keys[variant % len(keys)]] = {"broken": True}
        else:
            rec.pop("Id", None)
        return rec

    @staticmethod
    def _drift(rec: dict[str, Any], variant: int) -> dict[str, Any]:
        choice = variant % 3
        keys = [k for k in rec if k not in ("attributes", "Id", "SystemModstamp", "IsDeleted")]
        if choice == 0 or not keys:
            rec["Sandbox_New_Field__c"] = f"v{variant % 97}"
        elif choice == 1:
            del rec[keys[variant % len(keys)]]
        else:
            k = keys[variant % len(keys)]
            v = rec[k]
            rec[k] = str(v).lower() if isinstance(v, bool) else (str(v) if v is not None else "")
        return rec
