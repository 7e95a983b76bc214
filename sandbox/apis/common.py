"""Shared pieces of the mock APIs: request/response values, time helpers, visibility indexes.

Everything here works on whole columns (numpy / pyarrow); per-row Python objects are only
built for the rows a response actually returns.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qs

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

UTC = dt.timezone.utc
US_PER_S = 1_000_000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# requests and responses
# --------------------------------------------------------------------------------------------
@dataclass
class Request:
    method: str
    path: str  # without the query string, percent-decoded
    raw_query: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    base_url: str  # scheme://host:port of the listener that got the request
    scheme: str = "http"
    _query: dict[str, list[str]] | None = field(default=None, repr=False)

    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            self._query = parse_qs(self.raw_query, keep_blank_values=True)
        return self._query

    def q1(self, name: str, default: str | None = None) -> str | None:
        v = self.query.get(name)
        return v[-1] if v else default

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        if not self.body:
            return {}
        return json.loads(self.body.decode("utf-8"))

    def bearer(self) -> str | None:
        auth = self.header("authorization") or ""
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        return None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json;charset=UTF-8"


def json_response(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(obj, separators=(",", ":"), default=_json_default).encode("utf-8")
    return Response(status, body, dict(headers or {}))


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.bool_,)):
        return bool(o)
    if isinstance(o, dt.datetime):
        return o.isoformat()
    if isinstance(o, dt.date):
        return o.isoformat()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# --------------------------------------------------------------------------------------------
# time
# --------------------------------------------------------------------------------------------
def parse_ts(value: Any) -> dt.datetime:
    """ISO 8601 string / date / datetime / epoch seconds -> aware UTC datetime."""
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return EPOCH + dt.timedelta(seconds=float(value))
    if isinstance(value, str):
        s = value.strip()
        if s.endswith("Z") or s.endswith("z"):
            s = s[:-1] + "+00:00"
        if len(s) >= 5 and s[-5] in "+-" and s[-4:].isdigit() and ":" not in s[-5:]:
            s = s[:-5] + s[-5:-2] + ":" + s[-2:]  # +0000 -> +00:00
        d = dt.datetime.fromisoformat(s)
        return d.replace(tzinfo=UTC) if d.tzinfo is None else d.astimezone(UTC)
    raise ValueError(f"cannot interpret {value!r} as a timestamp")


def to_us(value: Any) -> int:
    d = parse_ts(value)
    delta = d - EPOCH
    return (delta.days * 86400 + delta.seconds) * US_PER_S + delta.microseconds


def from_us(us: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=int(us))


def iso_z(us: int) -> str:
    d = from_us(us)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond:06d}Z"


def ts_column_us(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A timestamp (any unit/zone) or integer column as int64 microseconds since the epoch."""
    t = col.type
    if pa.types.is_timestamp(t):
        if t.unit != "us":
            col = pc.cast(col, pa.timestamp("us", tz=t.tz))
        arr = pc.cast(col, pa.int64())
    elif pa.types.is_date(t):
        arr = pc.multiply(pc.cast(pc.cast(col, pa.date32()), pa.int64()), 86400 * US_PER_S)
    elif pa.types.is_integer(t):
        arr = pc.cast(col, pa.int64())
    else:
        raise TypeError(f"not a time column: {t}")
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.int64)


def np_col(table: pa.Table, name: str, dtype: Any = None) -> np.ndarray:
    col = table.column(name)
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    out = arr.to_numpy(zero_copy_only=False)
    return out.astype(dtype) if dtype is not None else out


def world_table(world: Any, name: str, required: bool = True) -> pa.Table | None:
    """A world table with dictionary-encoded columns decoded and chunks combined."""
    try:
        t = getattr(world, name)
    except (AttributeError, FileNotFoundError):
        if required:
            raise
        return None
    if t is None:
        if required:
            raise AttributeError(f"world has no table {name!r}")
        return None
    for i, f in enumerate(t.schema):
        if pa.types.is_dictionary(f.type):
            t = t.set_column(i, f.name, pc.cast(t.column(i), f.type.value_type))
    return t.combine_chunks()


def date_us(d: dt.date) -> int:
    return to_us(dt.datetime(d.year, d.month, d.day, tzinfo=UTC))


# --------------------------------------------------------------------------------------------
# visibility
# --------------------------------------------------------------------------------------------
class VersionIndex:
    """Latest version per key among rows with ``_visible_at <= T``, computed with numpy.

    Rows are sorted once by (key..., _visible_at); inside a key the visible versions at T form
    a prefix, so the served version is the visible row whose successor is not a visible row of
    the same key.
    """

    def __init__(self, table: pa.Table, keys: tuple[str, ...], vis_col: str = "_visible_at", cache: int = 8):
        self.table = table
        self.keys = keys
        n = table.num_rows
        if n == 0:
            self.order = np.zeros(0, dtype=np.int64)
            self.vis_sorted = np.zeros(0, dtype=np.int64)
            self.same_next = np.zeros(0, dtype=bool)
        else:
            sort_keys = [(k, "ascending") for k in keys] + [(vis_col, "ascending")]
            self.order = np.asarray(pc.sort_indices(table, sort_keys=sort_keys), dtype=np.int64)
            self.vis_sorted = ts_column_us(table.column(vis_col))[self.order]
            same = np.ones(n - 1, dtype=bool)
            for k in keys:
                col = table.column(k).take(pa.array(self.order)).combine_chunks()
                eq = pc.equal(col.slice(0, n - 1), col.slice(1))
                same &= np.asarray(pc.fill_null(eq, False).to_numpy(zero_copy_only=False), dtype=bool)
            self.same_next = np.append(same, False)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = cache
        self._lock = threading.Lock()

    def rows_at(self, t_us: int) -> np.ndarray:
        """Row indices (ascending by key) of the state at ``t_us``."""
        with self._lock:
            hit = self._cache.get(t_us)
            if hit is not None:
                self._cache.move_to_end(t_us)
                return hit
        m = self.vis_sorted <= t_us
        nxt = np.append(m[1:], False) & self.same_next
        rows = self.order[m & ~nxt]
        with self._lock:
            self._cache[t_us] = rows
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return rows


class LRU:
    """A small thread-safe LRU dict (query cursors, page snapshots)."""

    def __init__(self, size: int = 256):
        self.size = size
        self._d: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)


Handler = Callable[[Request, Any], Response]
