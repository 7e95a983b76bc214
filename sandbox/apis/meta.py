"""Mock Meta Marketing API: ``GET /{vNN.0}/act_{id}/insights`` at campaign level.

Parameters: ``level=campaign``, ``time_increment`` (1 = daily, N days, or ``all_days``),
``time_range={"since":"YYYY-MM-DD","until":"YYYY-MM-DD"}`` or ``date_preset`` (today,
yesterday, last_Nd, this_month, last_month relative to the clock; default last_30d),
``fields`` (account_id, campaign_id, campaign_name, spend, impressions, clicks, date_start,
date_stop), ``limit`` (default 25), ``after``/``before`` cursors, ``access_token`` (or a Bearer
header). Metric values are strings; every row has ``date_start`` and ``date_stop``. Paging:
``paging.cursors.{before,after}`` and a full-URL ``paging.next`` that is absent on the last page.
Rows are the latest restatement of each (campaign, day) visible at the clock.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import secrets
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sandbox.apis.common import Request, Response, VersionIndex, from_us, json_response, world_table
from sandbox.apis.faults import FaultDraw

FIELDS = ("account_id", "account_name", "campaign_id", "campaign_name", "spend", "impressions", "clicks",
          "date_start", "date_stop", "account_currency")
DEFAULT_LIMIT = 25
MAX_LIMIT = 5000


class MetaError(Exception):
    def __init__(self, message: str, code: int, http: int = 400, type_: str = "OAuthException",
                 subcode: int | None = None, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.message, self.code, self.http, self.type, self.subcode = message, code, http, type_, subcode
        self.headers = headers or {}
        self.extra = extra

    def response(self) -> Response:
        err: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code}
        if self.subcode is not None:
            err["error_subcode"] = self.subcode
        err.update(self.extra)
        err["fbtrace_id"] = "A" + secrets.token_urlsafe(16)
        return json_response(self.http, {"error": err}, self.headers)


def _param_error(msg: str) -> MetaError:
    return MetaError(f"(#100) {msg}", 100, type_="OAuthException")


def _cursor(i: int, t_us: int) -> str:
    return base64.urlsafe_b64encode(f"{i}:{t_us}".encode()).decode().rstrip("=")


def _uncursor(c: str) -> tuple[int, int]:
    try:
        raw = base64.urlsafe_b64decode(c + "=" * (-len(c) % 4)).decode()
        i, t = raw.split(":")
        return int(i), int(t)
    except (ValueError, UnicodeDecodeError):
        raise _param_error("Invalid cursor") from None


def _fmt_money(v: float) -> str:
    s = f"{v:.2f}"
    return s.rstrip("0").rstrip(".") if "." in s else s


class MetaAPI:
    name = "meta"

    def __init__(self, world: Any, creds: dict[str, str]):
        self.account_id = creds["meta_account_id"]
        self.access_token = creds["meta_access_token"]
        t = world_table(world, "meta_campaign_daily")
        if pa.types.is_timestamp(t.schema.field("date_start").type):
            t = t.set_column(t.schema.get_field_index("date_start"), "date_start",
                             pc.cast(t.column("date_start"), pa.date32()))
        if not pa.types.is_string(t.schema.field("campaign_id").type):
            t = t.set_column(t.schema.get_field_index("campaign_id"), "campaign_id",
                             pc.cast(t.column("campaign_id"), pa.string()))
        self.table = t
        self.index = VersionIndex(t, ("campaign_id", "date_start"))

    # --- plumbing --------------------------------------------------------------------------
    def routes(self) -> list[tuple[str, str, Any, str]]:
        return [("GET", r"/(v\d+\.\d+)/act_(\w+)/insights/?", self.insights, "insights")]

    @staticmethod
    def owns(path: str) -> bool:
        return bool(re.match(r"/v\d+\.\d+/", path))

    def not_found(self, req: Request) -> Response:
        return MetaError("Unknown path components: " + req.path, 2500).response()

    def _usage_headers(self, pct: int) -> dict[str, str]:
        buc = {f"{self.account_id}": [{"type": "ads_insights", "call_count": pct, "total_cputime": max(1, pct // 2),
                                       "total_time": max(1, pct // 2),
                                       "estimated_time_to_regain_access": 1 if pct >= 100 else 0,
                                       "ads_api_access_tier": "standard_access"}]}
        return {"X-Business-Use-Case-Usage": json.dumps(buc, separators=(",", ":")),
                "X-FB-Ads-Insights-Throttle": json.dumps({"app_id_util_pct": min(pct, 100), "acc_id_util_pct": min(pct, 100),
                                                          "ads_api_access_tier": "standard_access"}, separators=(",", ":"))}

    def authenticate(self, req: Request) -> Response | None:
        tok = req.q1("access_token") or req.bearer()
        if not tok:
            return MetaError("An active access token must be used to query information about the current user.",
                             2500).response()
        if tok != self.access_token:
            return MetaError("Invalid OAuth access token - Cannot parse access token", 190).response()
        return None

    def rate_limited(self, draw: FaultDraw) -> Response:
        headers = {**self._usage_headers(100), "Retry-After": "1"}
        v = draw.variant(3)
        if v == 0:
            return MetaError("(#17) User request limit reached", 17, subcode=2446079, headers=headers,
                             error_user_title="Ad Account Has Too Many API Calls",
                             error_user_msg="There have been too many calls from this ad-account. Please wait a bit and try again.",
                             is_transient=True).response()
        if v == 1:
            return MetaError("(#613) Calls to this api have exceeded the rate limit.", 613, headers=headers,
                             is_transient=True).response()
        return MetaError("(#4) Application request limit reached", 4, headers=headers, is_transient=True).response()

    def server_error(self, draw: FaultDraw) -> Response:
        if draw.variant(2):
            return MetaError("Service temporarily unavailable", 2, http=503, is_transient=True).response()
        return MetaError("An unknown error occurred", 1, http=500, subcode=99, is_transient=True).response()

    def handle(self, req: Request, t_us: int, draw: FaultDraw, handler: Any, m: re.Match) -> Response:
        try:
            resp = handler(req, t_us, draw, *m.groups())
        except MetaError as e:
            resp = e.response()
        for k, v in self._usage_headers(3).items():
            resp.headers.setdefault(k, v)
        return resp

    # --- insights --------------------------------------------------------------------------
    def _range(self, req: Request, today: dt.date) -> tuple[dt.date, dt.date]:
        tr = req.q1("time_range")
        if tr:
            try:
                obj = json.loads(tr)
                return dt.date.fromisoformat(obj["since"]), dt.date.fromisoformat(obj["until"])
            except (ValueError, KeyError, TypeError):
                raise _param_error("time_range must be a JSON object {'since':'YYYY-MM-DD','until':'YYYY-MM-DD'}") from None
        preset = (req.q1("date_preset") or "last_30d").lower()
        y = today - dt.timedelta(days=1)
        m = re.fullmatch(r"last_(\d+)d", preset)
        if preset == "today":
            return today, today
        if preset == "yesterday":
            return y, y
        if m:
            return today - dt.timedelta(days=int(m.group(1))), y
        if preset == "this_month":
            return today.replace(day=1), today
        if preset == "last_month":
            last = today.replace(day=1) - dt.timedelta(days=1)
            return last.replace(day=1), last
        raise _param_error(f"date_preset must be one of the supported values, not {preset}")

    def insights(self, req: Request, t_us: int, draw: FaultDraw, version: str, act: str) -> Response:
        if act != self.account_id:
            raise MetaError(f"Unsupported get request. Object with ID 'act_{act}' does not exist, cannot be loaded due "
                            "to missing permissions, or does not support this operation.", 100, subcode=33,
                            type_="GraphMethodException")
        level = (req.q1("level") or "campaign").lower()
        if level != "campaign":
            raise _param_error(f"The sandbox serves level=campaign only, not {level}")
        fields = [f.strip() for f in (req.q1("fields") or "spend,impressions,clicks,campaign_id").split(",") if f.strip()]
        for f in fields:
            if f not in FIELDS:
                raise _param_error(f"{f} is not valid for fields param. please check "
                                   "https://developers.facebook.com/docs/marketing-api/reference/ads-insights/ for all valid values")
        try:
            limit = int(req.q1("limit") or DEFAULT_LIMIT)
        except ValueError:
            raise _param_error("Param limit must be a number") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise _param_error(f"Param limit must be between 1 and {MAX_LIMIT}")
        after, before = req.q1("after"), req.q1("before")
        start, end_before = 0, None
        if after:
            i, t_us = _uncursor(after)  # a cursor pins the snapshot it was taken from
            start = i + 1
        elif before:
            end_before, t_us = _uncursor(before)
            start = max(0, end_before - limit)
        today = from_us(t_us).date()
        since, until = self._range(req, today)
        if since > until:
            raise _param_error("time_range since must be before until")
        inc = (req.q1("time_increment") or "all_days").lower()
        rows = self._rows(since, until, inc, t_us)
        stop = min(rows.num_rows, start + limit if end_before is None else end_before)
        page = rows.slice(start, max(0, stop - start))
        data = [self._row(r, fields) for r in page.to_pylist()]
        data = draw.records(data, self._malform, self._drift)
        body: dict[str, Any] = {"data": data}
        if page.num_rows:
            paging: dict[str, Any] = {"cursors": {"before": _cursor(start, t_us), "after": _cursor(stop - 1, t_us)}}
            params = {k: v[-1] for k, v in req.query.items() if k not in ("after", "before")}
            base = f"{req.base_url}/{version}/act_{act}/insights"
            if stop < rows.num_rows:
                paging["next"] = base + "?" + urlencode({**params, "after": _cursor(stop - 1, t_us)})
            if start > 0:
                paging["previous"] = base + "?" + urlencode({**params, "before": _cursor(start, t_us)})
            body["paging"] = paging
        return json_response(200, body)

    def _rows(self, since: dt.date, until: dt.date, inc: str, t_us: int) -> pa.Table:
        t = self.table.take(pa.array(self.index.rows_at(t_us), pa.int64()))
        m = pc.and_(pc.greater_equal(t.column("date_start"), pa.scalar(since, pa.date32())),
                    pc.less_equal(t.column("date_start"), pa.scalar(until, pa.date32())))
        t = t.filter(m)
        if inc in ("1", ""):
            t = t.append_column("date_stop", t.column("date_start"))
        else:
            if inc in ("all_days", "monthly"):
                if inc == "monthly":
                    raise _param_error("time_increment=monthly is not supported by the sandbox")
                bucket_days = (until - since).days + 1
            else:
                try:
                    bucket_days = int(inc)
                except ValueError:
                    raise _param_error("time_increment must be 1..90, monthly or all_days") from None
                if not 1 <= bucket_days <= 90:
                    raise _param_error("time_increment must be 1..90, monthly or all_days")
            day = np.asarray(pc.cast(t.column("date_start"), pa.int32()).to_numpy(zero_copy_only=False), dtype=np.int64)
            s0 = (since - dt.date(1970, 1, 1)).days
            b = (day - s0) // bucket_days
            t = t.append_column("_bucket", pa.array(b))
            g = t.group_by(["campaign_id", "campaign_name", "_bucket"]).aggregate(
                [("spend", "sum"), ("impressions", "sum"), ("clicks", "sum")] +
                ([("account_id", "min")] if "account_id" in t.column_names else []))
            g = g.rename_columns([c.removesuffix("_sum").removesuffix("_min") for c in g.column_names])
            bk = np.asarray(g.column("_bucket").to_numpy(zero_copy_only=False), dtype=np.int64)
            end_day = (until - dt.date(1970, 1, 1)).days
            g = g.append_column("date_start", pa.array((s0 + bk * bucket_days).astype(np.int32), pa.int32()).cast(pa.date32()))
            g = g.append_column("date_stop", pa.array(np.minimum(s0 + (bk + 1) * bucket_days - 1, end_day).astype(np.int32),
                                                      pa.int32()).cast(pa.date32()))
            t = g.drop_columns(["_bucket"])
        if t.num_rows:
            t = t.take(pc.sort_indices(t, sort_keys=[("date_start", "ascending"), ("campaign_id", "ascending")]))
        return t

    def _row(self, r: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields:
            if f == "spend":
                out[f] = _fmt_money(float(r["spend"] or 0.0))
            elif f in ("impressions", "clicks"):
                out[f] = str(int(r[f] or 0))
            elif f == "account_id":
                out[f] = self.account_id
            elif f == "account_name":
                out[f] = "RetailPulse sandbox"
            elif f == "account_currency":
                out[f] = "USD"
            elif f in ("date_start", "date_stop"):
                continue
            else:
                out[f] = r[f]
        out["date_start"] = r["date_start"].isoformat()
        out["date_stop"] = r["date_stop"].isoformat()
        return out

    # --- record faults ---------------------------------------------------------------------
    @staticmethod
    def _malform(rec: dict[str, Any], variant: int, is_last: bool) -> dict[str, Any]:
        choice = variant % 3
        if choice == 0 and "spend" in rec:
            rec["spend"] = "abc"
        elif choice == 1:
            rec["date_start"] = "2025-13-45"
        else:
            rec.pop("campaign_id", None)
        return rec

    @staticmethod
    def _drift(rec: dict[str, Any], variant: int) -> dict[str, Any]:
        choice = variant % 3
        if choice == 0:
            rec["sandbox_new_metric"] = str(variant % 1000)
        elif choice == 1 and "campaign_name" in rec:
            del rec["campaign_name"]
        else:
            for k in ("impressions", "clicks", "spend"):
                if k in rec:
                    rec[k] = float(rec[k]) if k == "spend" else int(rec[k])  # a number instead of a string
                    break
        return rec
