"""The scores API: customer profiles, latest scores and segments from the serving copy.

Start it with ``make api`` (= ``python -m retailpulse.api``): it listens on
``RETAILPULSE_API_HOST:RETAILPULSE_API_PORT`` (127.0.0.1:8000). Every endpoint but ``/health``
needs ``Authorization: Bearer <token>``; the token is ``RETAILPULSE_API_TOKEN``, else the
content of the token file (``RETAILPULSE_API_TOKEN_FILE``, default ``<data>/api_token``),
which is generated (mode 0600) at the first start. The token is never printed or logged.

Endpoints (OpenAPI at ``/openapi.json``, docs at ``/docs``):

- ``GET /customers/{customer_id}`` - profile (gold.dim_customers, no PII: no e-mail, name or
  phone; not even the e-mail hash), RFM segment, and the latest scores (gold.customer_scores:
  latest ``as_of_date``, then highest ``model_version``, the rule dim_customers uses).
- ``GET /segments`` - RFM segments and their sizes.
- ``GET /segments/{segment}/customers?limit=&offset=`` - a page of a segment's customers,
  highest predicted CLV first, with ``total`` and ``next_offset``.
- ``GET /health`` (no auth) - serving copy age and gold table counts; 503 without a copy.

Errors have one shape: ``{"error": {"status": 401, "code": "unauthorized", "message": "...",
"details": [...]}}`` (401 missing/bad token, 404 unknown customer/segment/route, 422 bad
parameters, 503 no serving copy).
"""


import argparse
import datetime as dt
import logging
import os
import re
import secrets
import sys
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from retailpulse.serving import GOLD, ServingReader, ServingUnavailable, published_at, serving_file
from retailpulse.settings import Settings, load_settings

log = logging.getLogger(__name__)

RFM_SEGMENTS = (
    "Champions", "Loyal", "Potential Loyalists", "New", "Promising", "Need Attention", "About to Sleep",
    "Cannot Lose Them", "At Risk", "Hibernating",
)
# dim_customers columns the API may return: an allowlist, so a new (maybe personal) column
# in gold never leaks through the API by accident.
PROFILE_COLUMNS = (
    "customer_id", "is_customer", "country", "is_email_opted_out", "first_seen_at", "last_seen_at",
    "acquisition_channel", "acquisition_campaign", "acquisition_source", "acquisition_medium",
    "first_order_at", "last_order_at", "orders", "gross_revenue", "net_revenue", "average_order_value",
    "sessions", "recency_days", "recency_score", "frequency_score", "monetary_score", "rfm_cell",
    "rfm_segment", "reporting_currency",
)
SCORE_COLUMNS = (
    "as_of_date", "model_version", "p_alive", "churn_probability", "expected_purchases_90d",
    "expected_purchases_365d", "predicted_clv_12m", "value_tier", "churn_risk_band",
)
MAX_LIMIT = 1000
MAX_OFFSET = 100_000_000


# --- response models (the OpenAPI schema) ------------------------------------------------------
class ErrorBody(BaseModel):
    status: int = Field(description="HTTP status code")
    code: str = Field(description="machine-readable reason: unauthorized, not_found, invalid_request, ...")
    message: str = Field(description="what went wrong, for a person")
    details: list[dict[str, Any]] | None = Field(None, description="per-parameter problems (422)")


class ErrorResponse(BaseModel):
    error: ErrorBody


class Scores(BaseModel):
    as_of_date: dt.date
    model_version: str | None = None
    p_alive: float | None = None
    churn_probability: float | None = None
    expected_purchases_90d: float | None = None
    expected_purchases_365d: float | None = None
    predicted_clv_12m: float | None = None
    value_tier: str | None = None
    churn_risk_band: str | None = None


class Profile(BaseModel):
    is_customer: bool | None = None
    country: str | None = None
    is_email_opted_out: bool | None = None
    first_seen_at: dt.datetime | None = None
    last_seen_at: dt.datetime | None = None
    acquisition_channel: str | None = None
    acquisition_campaign: str | None = None
    acquisition_source: str | None = None
    acquisition_medium: str | None = None
    first_order_at: dt.datetime | None = None
    last_order_at: dt.datetime | None = None
    orders: int | None = None
    gross_revenue: float | None = None
    net_revenue: float | None = None
    average_order_value: float | None = None
    sessions: int | None = None
    recency_days: int | None = None
    recency_score: int | None = None
    frequency_score: int | None = None
    monetary_score: int | None = None
    rfm_cell: str | None = None
    reporting_currency: str | None = None


class Customer(BaseModel):
    customer_id: str
    segment: str | None = Field(None, description="RFM segment (gold.customer_rfm); null for prospects")
    value_tier: str | None = None
    churn_risk_band: str | None = None
    profile: Profile
    scores: Scores | None = Field(None, description="latest row of gold.customer_scores; null until scored")


class SegmentCustomer(BaseModel):
    customer_id: str
    value_tier: str | None = None
    churn_risk_band: str | None = None
    churn_probability: float | None = None
    p_alive: float | None = None
    predicted_clv_12m: float | None = None
    scores_as_of_date: dt.date | None = None
    orders: int | None = None
    net_revenue: float | None = None
    last_order_at: dt.datetime | None = None


class SegmentPage(BaseModel):
    segment: str
    total: int = Field(description="customers in the segment")
    limit: int
    offset: int
    next_offset: int | None = Field(None, description="offset of the next page; null on the last page")
    items: list[SegmentCustomer]


class Segment(BaseModel):
    segment: str
    customers: int


class SegmentList(BaseModel):
    segments: list[Segment]


class ServingCopy(BaseModel):
    file: str
    published_at: dt.datetime | None = None
    age_seconds: float | None = None


class Health(BaseModel):
    status: str = Field(description="ok, or unavailable when there is no serving copy")
    serving_copy: ServingCopy
    tables: dict[str, int] = Field(default_factory=dict, description="gold table -> row count")


# --- errors -------------------------------------------------------------------------------------
class APIError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          406: "not_acceptable", 415: "unsupported_media_type", 422: "invalid_request", 503: "unavailable"}


def _error(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"status": status, "code": code, "message": message}}
    if details is not None:
        body["error"]["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    text = {401: "missing or invalid bearer token", 404: "not found", 422: "invalid parameters",
            503: "no serving copy published yet"}
    return {s: {"model": ErrorResponse, "description": text[s]} for s in statuses}


# --- token ----------------------------------------------------------------------------------------
class TokenError(RuntimeError):
    pass


def resolve_token(settings: Settings, generate: bool = False) -> tuple[str, str]:
    """The bearer token and where it came from. With ``generate``, a missing token file is
    created (0600) with a random token; a token file readable by others is refused."""
    if settings.api_token is not None and settings.api_token.get_secret_value().strip():
        return settings.api_token.get_secret_value().strip(), "RETAILPULSE_API_TOKEN"
    path = settings.api_token_path
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise TokenError(f"token file {path} is readable by others (mode {mode:o}); run: chmod 600 {path}")
        token = path.read_text().strip()
        if not token:
            raise TokenError(f"token file {path} is empty")
        return token, str(path)
    if not generate:
        raise TokenError(f"no API token: set RETAILPULSE_API_TOKEN or create {path} (mode 0600)")
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token, str(path)


# --- the app ----------------------------------------------------------------------------------------
def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip()).lower()


def create_app(settings: Settings | None = None, token: str | None = None) -> FastAPI:
    """The FastAPI app. ``token`` defaults to :func:`resolve_token` (which must find one)."""
    settings = settings or load_settings()
    if token is None:
        token, _ = resolve_token(settings)
    if not token:
        raise TokenError("empty API token")
    reader = ServingReader(serving_file(settings))
    bearer = HTTPBearer(auto_error=False, description="RETAILPULSE_API_TOKEN or the token file's content")

    app = FastAPI(
        title="RetailPulse scores API",
        version="1.0.0",
        description="Customer profiles, latest CLV / churn scores and RFM segments from the published gold "
                    "serving copy. No raw PII is ever returned.",
    )
    app.state.reader = reader
    app.state.settings = settings

    def require_token(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if creds is None or not creds.credentials:
            raise APIError(401, "unauthorized", "missing bearer token: send 'Authorization: Bearer <token>'",
                           {"WWW-Authenticate": "Bearer"})
        if not secrets.compare_digest(creds.credentials.encode(), token.encode()):
            raise APIError(401, "unauthorized", "invalid bearer token",
                           {"WWW-Authenticate": 'Bearer error="invalid_token"'})

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, headers=exc.headers)

    @app.exception_handler(ServingUnavailable)
    async def _unavailable(_: Request, exc: ServingUnavailable) -> JSONResponse:
        return _error(503, "unavailable", "no serving copy published yet: run `make run`")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "error"
        return _error(exc.status_code, _CODES.get(exc.status_code, "error"), message,
                      headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"location": [str(p) for p in e.get("loc", ())], "message": e.get("msg", ""), "type": e.get("type", "")}
                   for e in exc.errors()]
        where = ", ".join(".".join(d["location"]) for d in details) or "request"
        return _error(422, "invalid_request", f"invalid parameters: {where}", details)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s: %s", type(exc).__name__, exc)
        return _error(500, "internal_error", "internal error")

    def latest_scores_sql(where: str, cols: str = "*") -> str:
        return (f'select {cols} from {GOLD}.customer_scores where {where} '
                "qualify row_number() over (partition by customer_id order by as_of_date desc, model_version desc) = 1")

    def known_segments() -> dict[str, str]:
        found = list(RFM_SEGMENTS)
        if "rfm_segment" in reader.columns("dim_customers"):
            found += [r[0] for r in reader.rows(
                f"select distinct rfm_segment from {GOLD}.dim_customers where rfm_segment is not null")[1]]
        return {_norm(s): s for s in found}

    auth = [Depends(require_token)]

    @app.get("/health", response_model=Health, tags=["ops"], summary="Serving copy age and gold table counts",
             responses={503: {"model": Health, "description": "no serving copy published yet"}})
    def health() -> Any:
        path = serving_file(settings)
        when = published_at(path)
        copy = ServingCopy(file=path.name, published_at=when,
                           age_seconds=None if when is None else
                           round((dt.datetime.now(dt.timezone.utc) - when).total_seconds(), 1))
        if when is None:
            return JSONResponse(Health(status="unavailable", serving_copy=copy).model_dump(mode="json"),
                                status_code=503)
        try:
            counts = reader.counts()
        except ServingUnavailable:
            return JSONResponse(Health(status="unavailable", serving_copy=copy).model_dump(mode="json"),
                                status_code=503)
        return Health(status="ok", serving_copy=copy, tables=counts)

    @app.get("/customers/{customer_id}", response_model=Customer, dependencies=auth, tags=["customers"],
             summary="A customer's profile, segment and latest scores", responses=_responses(401, 404, 422, 503))
    def get_customer(customer_id: Annotated[str, PathParam(min_length=1, max_length=200)]) -> Any:
        if not reader.has_table("dim_customers"):
            raise APIError(503, "unavailable", "gold.dim_customers is not built yet: run `make run`")
        cols = [c for c in PROFILE_COLUMNS if c in reader.columns("dim_customers")]
        found = reader.records(f"select {', '.join(cols)} from {GOLD}.dim_customers where customer_id = ?",
                               [customer_id])
        if not found:
            raise APIError(404, "not_found", f"unknown customer {customer_id!r}")
        row = found[0]
        scores = None
        if reader.has_table("customer_scores"):
            s_cols = ["customer_id"] + [c for c in SCORE_COLUMNS if c in reader.columns("customer_scores")]
            latest = reader.records(latest_scores_sql("customer_id = ?", ", ".join(s_cols)),
                                    [customer_id])
            if latest:
                scores = Scores(**{k: v for k, v in latest[0].items() if k != "customer_id"})
        profile = Profile(**{k: v for k, v in row.items() if k in Profile.model_fields})
        return Customer(
            customer_id=row["customer_id"],
            segment=row.get("rfm_segment"),
            value_tier=scores.value_tier if scores else None,
            churn_risk_band=scores.churn_risk_band if scores else None,
            profile=profile,
            scores=scores,
        )

    @app.get("/segments", response_model=SegmentList, dependencies=auth, tags=["segments"],
             summary="RFM segments and their sizes", responses=_responses(401, 503))
    def list_segments() -> Any:
        if not reader.has_table("dim_customers"):
            raise APIError(503, "unavailable", "gold.dim_customers is not built yet: run `make run`")
        counts = dict(reader.rows(
            f"select rfm_segment, count(*) from {GOLD}.dim_customers where rfm_segment is not null group by 1")[1]
        ) if "rfm_segment" in reader.columns("dim_customers") else {}
        names = list(dict.fromkeys(list(RFM_SEGMENTS) + sorted(counts)))
        return SegmentList(segments=[Segment(segment=n, customers=int(counts.get(n, 0))) for n in names])

    @app.get("/segments/{segment}/customers", response_model=SegmentPage, dependencies=auth, tags=["segments"],
             summary="A page of a segment's customers (highest predicted CLV first)",
             responses=_responses(401, 404, 422, 503))
    def segment_customers(
        segment: Annotated[str, PathParam(min_length=1, max_length=100,
                                          description="RFM segment, e.g. 'At Risk', 'at-risk' or 'at_risk'")],
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="page size")] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="rows to skip")] = 0,
    ) -> Any:
        if not reader.has_table("dim_customers"):
            raise APIError(503, "unavailable", "gold.dim_customers is not built yet: run `make run`")
        name = known_segments().get(_norm(segment))
        if name is None:
            raise APIError(404, "not_found", f"unknown segment {segment!r}; see GET /segments")
        if "rfm_segment" not in reader.columns("dim_customers"):
            return SegmentPage(segment=name, total=0, limit=limit, offset=offset, next_offset=None, items=[])
        total = int(reader.scalar(f"select count(*) from {GOLD}.dim_customers where rfm_segment = ?", [name]))
        has_scores = reader.has_table("customer_scores")
        score_cols = ("s.value_tier, s.churn_risk_band, s.churn_probability, s.p_alive, s.predicted_clv_12m, "
                      "s.as_of_date as scores_as_of_date") if has_scores else (
            "null as value_tier, null as churn_risk_band, null::double as churn_probability, null::double as p_alive, "
            "null::double as predicted_clv_12m, null::date as scores_as_of_date")
        scores_cte = (", s as (" + latest_scores_sql(
            "customer_id in (select customer_id from seg)") + ")") if has_scores else ""
        join = "left join s using (customer_id)" if has_scores else ""
        sql = (f"with seg as (select customer_id, orders, net_revenue, last_order_at from {GOLD}.dim_customers "
               f"where rfm_segment = ?){scores_cte} "
               f"select seg.customer_id, {score_cols}, seg.orders, seg.net_revenue, seg.last_order_at "
               f"from seg {join} order by {'s.predicted_clv_12m desc nulls last, ' if has_scores else ''}"
               "seg.net_revenue desc nulls last, seg.customer_id limit ? offset ?")
        items = [SegmentCustomer(**r) for r in reader.records(sql, [name, limit, offset])]
        nxt = offset + len(items) if offset + len(items) < total and items else None
        return SegmentPage(segment=name, total=total, limit=limit, offset=offset, next_offset=nxt, items=items)

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m retailpulse.api", description="Serve the RetailPulse scores API.")
    parser.add_argument("--host", help="bind address (default RETAILPULSE_API_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default RETAILPULSE_API_PORT, 8000)")
    args = parser.parse_args(argv)
    settings = load_settings()
    try:
        token, source = resolve_token(settings, generate=True)
    except TokenError as exc:
        print(f"retailpulse api: error: {exc}", file=sys.stderr)
        return 2
    host, port = args.host or settings.api_host, args.port or settings.api_port
    print(f"RetailPulse scores API on http://{host}:{port} (docs /docs); bearer token from {source}", flush=True)
    if not serving_file(settings).exists():
        print(f"note: no serving copy yet at {serving_file(settings)}: run `make run`", flush=True)
    import uvicorn

    uvicorn.run(create_app(settings, token=token), host=host, port=port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
