"""Mock Stripe API (``/v1/customers|charges|refunds|events``) over the world's stripe_* tables.

Lists are newest first (``created`` desc, then ``id`` desc) with Stripe's cursor paging
(``starting_after`` / ``ending_before`` object ids, ``limit`` 1..100, ``has_more``) and
``created[gt|gte|lt|lte]`` filters. A list's ``url`` is the collection path the SDK pages with.
A charge's ``amount_refunded``/``refunded`` come from the refunds visible at the clock. Events
are derived from the tables (customer.created, charge.succeeded|failed, refund.created,
charge.refunded) and reach back 30 days from the clock.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sandbox.apis.common import Request, Response, json_response, np_col, ts_column_us, world_table
from sandbox.apis.faults import FaultDraw

API_VERSION = "2024-06-20"
EVENTS_REACH_S = 30 * 86400
MAX_LIMIT = 100

# event kinds: code in the event id, type
EVENT_KINDS = {
    0: ("cuc", "customer.created"),
    1: ("chs", "charge.succeeded"),
    2: ("chf", "charge.failed"),
    3: ("rec", "refund.created"),
    4: ("chr", "charge.refunded"),
}
TYPE_TO_KIND = {t: k for k, (_, t) in EVENT_KINDS.items()}
CODE_TO_KIND = {c: k for k, (c, _) in EVENT_KINDS.items()}

_NAMES = {"customers": "customer", "charges": "charge", "refunds": "refund", "events": "event"}
_ALLOWED = {
    "customers": {"email"},
    "charges": {"customer", "payment_intent"},
    "refunds": {"charge", "payment_intent"},
    "events": {"type", "types", "delivery_success"},
}


class StripeError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers or {}

    def response(self) -> Response:
        err: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.param:
            err["param"] = self.param
        if self.code:
            err["code"] = self.code
        return json_response(self.status, {"error": err}, self.headers)


@dataclass
class _Sorted:
    """A table's rows in list order (created desc, id desc) with numpy side arrays."""

    table: pa.Table
    ids: pa.Array  # the id column (combined)
    order: np.ndarray  # row indices in list order
    rank: np.ndarray  # rank[row] = position in order
    neg_created_sorted: np.ndarray  # -created in list order (ascending)
    vis: np.ndarray  # _visible_at in µs by row

    @classmethod
    def build(cls, table: pa.Table, created: np.ndarray | None = None, vis: np.ndarray | None = None) -> "_Sorted":
        n = table.num_rows
        if created is None:
            created = np.asarray(np_col(table, "created"), dtype=np.int64)
        if vis is None:
            vis = ts_column_us(table.column("_visible_at"))
        if n:
            order = np.asarray(pc.sort_indices(pa.table({"c": created, "id": table.column("id")}),
                                               sort_keys=[("c", "descending"), ("id", "descending")]), dtype=np.int64)
        else:
            order = np.zeros(0, dtype=np.int64)
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n, dtype=np.int64)
        return cls(table, table.column("id").combine_chunks(), order, rank, -created[order], vis)

    def row_of(self, obj_id: str) -> int | None:
        i = pc.index(self.ids, pa.scalar(obj_id, pa.string())).as_py()
        return None if i is None or i < 0 else int(i)

    def span(self, gt: int | None, gte: int | None, lt: int | None, lte: int | None) -> tuple[int, int]:
        a = self.neg_created_sorted
        lo, hi = 0, len(a)
        # created >= g  <=>  -created <= -g
        if gte is not None:
            hi = min(hi, int(np.searchsorted(a, -gte, "right")))
        if gt is not None:
            hi = min(hi, int(np.searchsorted(a, -gt, "left")))
        if lte is not None:
            lo = max(lo, int(np.searchsorted(a, -lte, "left")))
        if lt is not None:
            lo = max(lo, int(np.searchsorted(a, -lt, "right")))
        return lo, hi

    def page(self, lo: int, hi: int, t_us: int, limit: int, mask: np.ndarray | None,
             backwards: bool = False) -> tuple[np.ndarray, bool]:
        """Up to ``limit`` rows visible at ``t_us`` in positions [lo, hi), and whether more exist."""
        want = limit + 1
        found: list[np.ndarray] = []
        got = 0
        chunk = max(256, 4 * want)
        if not backwards:
            pos = lo
            while pos < hi and got < want:
                end = min(hi, pos + chunk)
                rows = self.order[pos:end]
                m = self.vis[rows] <= t_us
                if mask is not None:
                    m &= mask[rows]
                sel = rows[m][: want - got]
                found.append(sel)
                got += len(sel)
                pos = end
                chunk *= 2
            rows = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
        else:
            pos = hi
            while pos > lo and got < want:
                start = max(lo, pos - chunk)
                rows = self.order[start:pos]
                m = self.vis[rows] <= t_us
                if mask is not None:
                    m &= mask[rows]
                sel = rows[m]
                sel = sel[max(0, len(sel) - (want - got)):]
                found.insert(0, sel)
                got += len(sel)
                pos = start
                chunk *= 2
            rows = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
            if len(rows) > limit:
                return rows[len(rows) - limit:], True
            return rows, False
        return rows[:limit], len(rows) > limit


def _ts_s(v: Any) -> int:
    return int(v)


class StripeAPI:
    name = "stripe"

    def __init__(self, world: Any, api_key: str):
        self.api_key = api_key
        self.customers = _Sorted.build(world_table(world, "stripe_customers"))
        self.charges = _Sorted.build(world_table(world, "stripe_charges"))
        self.refunds = _Sorted.build(world_table(world, "stripe_refunds"))
        self._refund_charge = self.refunds.table.column("charge").combine_chunks()
        self._refund_amount = np.asarray(np_col(self.refunds.table, "amount"), dtype=np.int64)
        self._build_events()
        self._req = 0

    # ---------------------------------------------------------------------------------------
    def _build_events(self) -> None:
        cu, ch, rf = self.customers.table, self.charges.table, self.refunds.table
        succeeded = pc.fill_null(pc.equal(ch.column("status"), "succeeded"), False)
        ch_code = pc.if_else(succeeded, pa.scalar("evt_chs"), pa.scalar("evt_chf"))
        parts = [
            (0, pc.binary_join_element_wise("evt_cuc", cu.column("id"), "_"), cu, self.customers),
            (None, pc.binary_join_element_wise(ch_code, ch.column("id"), "_"), ch, self.charges),
            (3, pc.binary_join_element_wise("evt_rec", rf.column("id"), "_"), rf, self.refunds),
            (4, pc.binary_join_element_wise("evt_chr", rf.column("id"), "_"), rf, self.refunds),
        ]
        ids, kinds, srcs, created, vis = [], [], [], [], []
        self._event_offsets: dict[int, int] = {}
        off = 0
        for kind, id_arr, tbl, srt in parts:
            n = tbl.num_rows
            ids.append(id_arr if isinstance(id_arr, pa.ChunkedArray) else pa.chunked_array([id_arr]))
            if kind is None:
                k = np.where(np.asarray(succeeded.to_numpy(zero_copy_only=False), dtype=bool), 1, 2).astype(np.int8)
                self._event_offsets[1] = off
                self._event_offsets[2] = off
            else:
                k = np.full(n, kind, dtype=np.int8)
                self._event_offsets[kind] = off
            kinds.append(k)
            srcs.append(np.arange(n, dtype=np.int64))
            created.append(np.asarray(np_col(tbl, "created"), dtype=np.int64))
            vis.append(srt.vis)
            off += n
        id_col = pa.chunked_array([c for a in ids for c in a.chunks], type=pa.string())
        table = pa.table({"id": id_col})
        self.event_kind = np.concatenate(kinds) if kinds else np.zeros(0, np.int8)
        self.event_src = np.concatenate(srcs) if srcs else np.zeros(0, np.int64)
        self.events = _Sorted.build(table, created=np.concatenate(created), vis=np.concatenate(vis))

    # ---------------------------------------------------------------------------------------
    def authenticate(self, req: Request) -> Response | None:
        key = req.bearer()
        if key is None:
            auth = req.header("authorization") or ""
            if auth[:6].lower() == "basic ":
                try:
                    key = base64.b64decode(auth[6:].strip()).decode().split(":", 1)[0]
                except Exception:
                    key = None
        if not key:
            return StripeError(401, "You did not provide an API key. You need to provide your API key in the "
                               "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
                               ).response()
        if key != self.api_key:
            shown = key[:8] + "*" * max(0, len(key) - 12) + key[-4:] if len(key) > 12 else "***"
            return StripeError(401, f"Invalid API Key provided: {shown}").response()
        return None

    def headers(self) -> dict[str, str]:
        self._req += 1
        return {"Request-Id": f"req_{hashlib.sha1(str(self._req).encode()).hexdigest()[:14]}",
                "Stripe-Version": API_VERSION}

    def rate_limited(self, draw: FaultDraw) -> Response:
        return StripeError(429, "Request rate limit exceeded. Learn more about rate limits here "
                           "https://stripe.com/docs/rate-limits.", "invalid_request_error", code="rate_limit",
                           headers={"Stripe-Should-Retry": "true", "Retry-After": "1"}).response()

    def server_error(self, draw: FaultDraw) -> Response:
        return StripeError(500, "An unknown error occurred", "api_error",
                           headers={"Stripe-Should-Retry": "true"}).response()

    # ---------------------------------------------------------------------------------------
    def routes(self) -> list[tuple[str, str, Any, str]]:
        return [
            ("GET", r"/v1/(customers|charges|refunds|events)", self.list_, "list"),
            ("GET", r"/v1/(customers|charges|refunds|events)/([^/]+)", self.retrieve, "retrieve"),
        ]

    def endpoint_key(self, path: str) -> str:
        parts = path.strip("/").split("/")
        return "/".join(parts[:2]) + ("/{id}" if len(parts) > 2 else "")

    def handle(self, req: Request, t_us: int, draw: FaultDraw, handler: Any, m: re.Match) -> Response:
        try:
            resp = handler(req, t_us, draw, *m.groups())
        except StripeError as e:
            resp = e.response()
        resp.headers.update(self.headers())
        return resp

    @staticmethod
    def owns(path: str) -> bool:
        return path.startswith("/v1/")

    def not_found(self, req: Request) -> Response:
        return StripeError(404, f"Unrecognized request URL ({req.method}: {req.path}). Please see "
                           "https://stripe.com/docs or we can help at https://support.stripe.com/.").response()

    # ---------------------------------------------------------------------------------------
    def _table(self, resource: str) -> _Sorted:
        return {"customers": self.customers, "charges": self.charges, "refunds": self.refunds,
                "events": self.events}[resource]

    def list_(self, req: Request, t_us: int, draw: FaultDraw, resource: str) -> Response:
        q = req.query
        allowed = _ALLOWED[resource] | {"limit", "starting_after", "ending_before", "created"}
        for k in q:
            base = k.split("[", 1)[0]
            if base == "expand":
                continue
            if base not in allowed:
                raise StripeError(400, f"Received unknown parameter: {k}", param=k)
        limit_s = req.q1("limit", "10")
        try:
            limit = int(limit_s or "")
        except ValueError:
            raise StripeError(400, f"Invalid integer: {limit_s}", param="limit") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise StripeError(400, f"This value must be greater than or equal to 1 and less than or equal to "
                              f"{MAX_LIMIT} (it was {limit}).", param="limit") if limit > MAX_LIMIT else \
                StripeError(400, f"This value must be greater than or equal to 1 (it was {limit}).", param="limit")
        bounds: dict[str, int | None] = {"gt": None, "gte": None, "lt": None, "lte": None}
        for k, v in q.items():
            if k == "created" or k.startswith("created["):
                op = "eq" if k == "created" else k[8:-1]
                try:
                    val = int(v[-1])
                except ValueError:
                    raise StripeError(400, f"Invalid integer: {v[-1]}", param=k) from None
                if op == "eq":
                    bounds["gte"] = bounds["lte"] = val
                elif op in bounds:
                    bounds[op] = val
                else:
                    raise StripeError(400, f"Received unknown parameter: {k}", param=k)
        tbl = self._table(resource)
        now_s = t_us // 1_000_000
        if resource == "events":
            floor = now_s - EVENTS_REACH_S
            bounds["gte"] = floor if bounds["gte"] is None else max(bounds["gte"], floor)
        lo, hi = tbl.span(bounds["gt"], bounds["gte"], bounds["lt"], bounds["lte"])
        sa, eb = req.q1("starting_after"), req.q1("ending_before")
        for name, cursor in (("starting_after", sa), ("ending_before", eb)):
            if cursor:
                row = tbl.row_of(cursor)
                if row is None or tbl.vis[row] > t_us:
                    raise StripeError(400, f"No such {_NAMES[resource]}: '{cursor}'", param=name,
                                      code="resource_missing")
                r = int(tbl.rank[row])
                if name == "starting_after":
                    lo = max(lo, r + 1)
                else:
                    hi = min(hi, r)
        mask = self._filter_mask(resource, req)
        rows, has_more = tbl.page(lo, hi, t_us, limit, mask, backwards=bool(eb) and not sa)
        data = self._objects(resource, rows, t_us)
        data = draw.records(data, self._malform, self._drift)
        return json_response(200, {"object": "list", "data": data, "has_more": bool(has_more),
                                   "url": f"/v1/{resource}"})

    def _filter_mask(self, resource: str, req: Request) -> np.ndarray | None:
        mask = None

        def eq(tbl: pa.Table, col: str, val: str) -> np.ndarray:
            return np.asarray(pc.fill_null(pc.equal(tbl.column(col), val), False).to_numpy(zero_copy_only=False), bool)

        if resource == "charges" and req.q1("customer"):
            mask = eq(self.charges.table, "customer", req.q1("customer"))
        elif resource == "refunds" and req.q1("charge"):
            mask = eq(self.refunds.table, "charge", req.q1("charge"))
        elif resource == "customers" and req.q1("email"):
            mask = eq(self.customers.table, "email", req.q1("email"))
        elif resource in ("charges", "refunds") and req.q1("payment_intent"):
            mask = np.zeros(self._table(resource).table.num_rows, bool)
        elif resource == "events":
            types = list(req.query.get("types[]", [])) + list(req.query.get("types", []))
            if req.q1("type"):
                types.append(req.q1("type"))
            if types:
                kinds = set()
                for t in types:
                    if t.endswith("*"):
                        kinds |= {k for k, (_, name) in EVENT_KINDS.items() if name.startswith(t[:-1])}
                    elif t in TYPE_TO_KIND:
                        kinds.add(TYPE_TO_KIND[t])
                mask = np.isin(self.event_kind, np.array(sorted(kinds) or [-1], dtype=np.int8))
        return mask

    def retrieve(self, req: Request, t_us: int, draw: FaultDraw, resource: str, obj_id: str) -> Response:
        tbl = self._table(resource)
        row = tbl.row_of(obj_id)
        if row is None or tbl.vis[row] > t_us or (
                resource == "events" and int(np_created(tbl, row)) < t_us // 1_000_000 - EVENTS_REACH_S):
            raise StripeError(404, f"No such {_NAMES[resource]}: '{obj_id}'", param="id", code="resource_missing")
        return json_response(200, self._objects(resource, np.array([row]), t_us)[0])

    # ---------------------------------------------------------------------------------------
    def _objects(self, resource: str, rows: np.ndarray, t_us: int) -> list[dict[str, Any]]:
        if resource == "customers":
            return [customer_obj(r) for r in self.customers.table.take(pa.array(rows, pa.int64())).to_pylist()]
        if resource == "charges":
            return self._charge_objs(rows, t_us)
        if resource == "refunds":
            return [refund_obj(r) for r in self.refunds.table.take(pa.array(rows, pa.int64())).to_pylist()]
        return self._event_objs(rows, t_us)

    def _refunded(self, charge_ids: list[str], t_us: int) -> dict[str, int]:
        if not charge_ids or self.refunds.table.num_rows == 0:
            return {}
        m = np.asarray(pc.is_in(self._refund_charge, value_set=pa.array(charge_ids, pa.string()))
                       .to_numpy(zero_copy_only=False), bool)
        m &= self.refunds.vis <= t_us
        idx = np.flatnonzero(m)
        out: dict[str, int] = {}
        if len(idx):
            chs = self._refund_charge.take(pa.array(idx)).to_pylist()
            for c, a in zip(chs, self._refund_amount[idx].tolist()):
                out[c] = out.get(c, 0) + a
        return out

    def _charge_objs(self, rows: np.ndarray, t_us: int) -> list[dict[str, Any]]:
        recs = self.charges.table.take(pa.array(rows, pa.int64())).to_pylist()
        refunded = self._refunded([r["id"] for r in recs], t_us)
        return [charge_obj(r, refunded.get(r["id"], 0)) for r in recs]

    def _event_objs(self, rows: np.ndarray, t_us: int) -> list[dict[str, Any]]:
        out = []
        ids = self.events.ids.take(pa.array(rows, pa.int64())).to_pylist()
        for eid, row in zip(ids, rows.tolist()):
            kind = int(self.event_kind[row])
            src = int(self.event_src[row])
            created = int(np_created(self.events, row))
            prev: dict[str, Any] | None = None
            if kind == 0:
                obj = customer_obj(self.customers.table.slice(src, 1).to_pylist()[0])
            elif kind in (1, 2):
                obj = charge_obj(self.charges.table.slice(src, 1).to_pylist()[0], 0)
            else:
                ref = self.refunds.table.slice(src, 1).to_pylist()[0]
                if kind == 3:
                    obj = refund_obj(ref)
                else:
                    crow = self.charges.row_of(ref["charge"])
                    if crow is None:
                        continue
                    upto = int(self.refunds.vis[src])
                    total = self._refunded([ref["charge"]], upto).get(ref["charge"], 0)
                    obj = charge_obj(self.charges.table.slice(crow, 1).to_pylist()[0], total)
                    before = total - int(ref["amount"])
                    prev = {"amount_refunded": before, "refunded": False}
            data: dict[str, Any] = {"object": obj}
            if prev is not None:
                data["previous_attributes"] = prev
            out.append({"id": eid, "object": "event", "api_version": API_VERSION, "created": created,
                        "data": data, "livemode": False, "pending_webhooks": 0,
                        "request": {"id": None, "idempotency_key": None}, "type": EVENT_KINDS[kind][1]})
        return out

    # --- record faults -----------------------------------------------------------------------
    @staticmethod
    def _malform(rec: dict[str, Any], variant: int, is_last: bool) -> dict[str, Any]:
        target = rec["data"]["object"] if rec.get("object") == "event" else rec
        choice = variant % 3
        if choice == 0 and not is_last:
            rec.pop("id", None)
        elif "amount" in target:
            target["amount"] = "abc"
        elif "email" in target:
            target["email"] = "not an email@@"
        else:
            target["created"] = "yesterday"
        return rec

    @staticmethod
    def _drift(rec: dict[str, Any], variant: int) -> dict[str, Any]:
        target = rec["data"]["object"] if rec.get("object") == "event" else rec
        choice = variant % 3
        if choice == 0:
            target["sandbox_new_field"] = {"added_in": "2099-01-01", "value": variant % 97}
        elif choice == 1:
            for k in ("description", "receipt_email", "phone", "reason", "failure_code", "name"):
                if k in target:
                    del target[k]
                    break
        else:
            if "amount" in target:
                target["amount"] = str(target["amount"])
            else:
                target["created"] = str(target["created"])
        return rec


def np_created(tbl: _Sorted, row: int) -> int:
    pos = int(tbl.rank[row])
    return int(-tbl.neg_created_sorted[pos])


# --------------------------------------------------------------------------------------------
# object shapes
# --------------------------------------------------------------------------------------------
def customer_obj(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"], "object": "customer",
        "address": {"city": None, "country": r.get("address_country"), "line1": None, "line2": None,
                    "postal_code": None, "state": None},
        "balance": 0, "created": int(r["created"]), "currency": None, "default_source": None,
        "delinquent": False, "description": None, "email": r.get("email"), "invoice_prefix": None,
        "livemode": False, "metadata": {}, "name": r.get("name"), "phone": r.get("phone"),
        "preferred_locales": [], "shipping": None, "tax_exempt": "none",
    }


_FAILURE_MESSAGES = {
    "card_declined": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
    "incorrect_cvc": "Your card's security code is incorrect.",
    "processing_error": "An error occurred while processing your card. Try again in a little bit.",
}


def charge_obj(r: dict[str, Any], amount_refunded: int) -> dict[str, Any]:
    succeeded = r.get("status") == "succeeded"
    amount = int(r["amount"])
    code = r.get("failure_code")
    meta = {"order_id": r["metadata_order_id"]} if r.get("metadata_order_id") else {}
    return {
        "id": r["id"], "object": "charge", "amount": amount,
        "amount_captured": amount if succeeded else 0, "amount_refunded": int(amount_refunded),
        "balance_transaction": None, "captured": succeeded, "created": int(r["created"]),
        "currency": r.get("currency"), "customer": r.get("customer"), "description": r.get("description"),
        "failure_code": code, "failure_message": _FAILURE_MESSAGES.get(code, "Your card was declined.") if code else None,
        "livemode": False, "metadata": meta, "paid": bool(r.get("paid")), "payment_intent": None,
        "receipt_email": r.get("receipt_email"), "refunded": bool(amount > 0 and amount_refunded >= amount),
        "status": r.get("status"),
    }


def refund_obj(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"], "object": "refund", "amount": int(r["amount"]), "balance_transaction": None,
        "charge": r.get("charge"), "created": int(r["created"]), "currency": r.get("currency"),
        "metadata": {}, "payment_intent": None, "reason": r.get("reason"), "receipt_number": None,
        "status": r.get("status") or "succeeded",
    }
