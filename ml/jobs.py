"""The ML stage in the warehouse: features from gold, weekly training, daily scoring, write-back.

Every function takes a :class:`~retailpulse.settings.Settings` and explicit dates, reaches the
warehouse only through :func:`retailpulse.warehouse.get_warehouse`, keeps no global state and
returns a small JSON-able summary (or a frame).  SQL is portable (DuckDB and Postgres): ANSI
``case``/``cast``, ``date - date`` (whole days on both engines) and date literals built from
validated :class:`datetime.date` values; no ``%`` in statements, and the one parameterised
query uses ``?``, which the Postgres warehouse translates.

Public functions
----------------
:func:`transactions_from_gold`        paid orders of gold.fct_orders up to a cutoff (the model input).
:func:`rfm_summary_from_gold`         the RFM summary computed IN SQL; equals :func:`ml.features.rfm_summary`.
:func:`behavior_features_from_gold`   sessions, channel mix, funnel depth, support cases, refunds, consent,
                                      tenure as of a cutoff (extra features of the xgboost models).
:func:`attribution_from_gold`         Markov + Shapley channel weights (rows for
                                      gold.attribution_channel_weights).
:func:`train_models`                  time-split training + evaluation (:func:`ml.pipeline.run_ml`), artifacts,
                                      rows in gold.ml_model_runs, promotion (weekly DAG).
:func:`promote_champion`              decide and record the serving champion (``champion.json``).
:func:`score_daily`                   score every customer as of a date into gold.customer_scores, write
                                      gold.attribution_channel_weights, build the marts that read them.
:func:`latest_order_date`, :func:`load_champion`, :func:`ensure_ml_tables`, :func:`models_dir`.

Inputs from gold (built by dbt)
-------------------------------
Required: ``gold.fct_orders`` (``order_id, customer_id, ordered_at, net_revenue, is_paid``).
Used when they exist -- each is checked for existence and columns (one ``information_schema``
query through the warehouse per call: what ``Warehouse.table_exists`` checks, for every table at once), because
the dbt project grows model by model; a missing table or column leaves its features NULL (xgboost
treats them as missing) or, for attribution, skips what it cannot compute and says so in the
summary:

* ``gold.fct_sessions`` -- session features; non-converting journeys for Markov.
* ``gold.fct_support_cases`` -- support-case features.
* ``silver.int_customers__golden`` (else ``gold.dim_customers``) -- consent (``is_email_opted_out``;
  the current value, not as of the cutoff).
* ``gold.fct_conversion_paths`` -- converting journeys (one row per converting order).
* ``silver.int_attribution__touchpoints`` (else ``gold.fct_attribution``'s rule-based ``linear``
  rows, one per touchpoint) -- the channel groups and sessions of the converting journeys'
  touchpoints.  Without either the channels come from ``fct_conversion_paths.channel_path``.

The daily run builds every model except those that read this stage's tables (dim_customers,
fct_attribution, channel_performance_daily: :data:`retailpulse.dbt_graph.ML_FED_SELECTOR`) before
scoring, and those after it; so this stage reads none of them, only silver tables dbt built in the
same run.

Money is ``net_revenue`` (reporting currency, net of the refunds known when the warehouse was
built); purchase days are UTC calendar days of ``ordered_at`` (gold timestamps are UTC).

Outputs (gold)
--------------
``customer_scores``  customer x as_of_date x model_version (columns of
    :data:`ml.scoring.CUSTOMER_SCORES_COLUMNS`).  Re-scoring a date with the same models
    replaces that date's rows; other dates are kept (history).  Every customer with a paid order
    on or before the date is scored.
``customer_segments`` / ``segment_profiles``  the behavioural segment of every scored customer and
    one profile row per segment (:mod:`ml.segments`), per as_of_date; re-scoring a date replaces
    them (one segmentation per date; skipped with the reason in the summary when there are too
    few customers or features).
``attribution_channel_weights``  model (``markov``, ``shapley``) x channel group: the weight
    (removal effect, Shapley value), its share and the conversions and revenue it credits
    (:data:`CHANNEL_WEIGHT_COLUMNS`).  Replaced as a whole on every scoring run.  dbt's
    int_attribution__data_driven splits every converting order over its current touchpoints in
    proportion to these weights (the rows ``is_data_driven`` of ``gold.fct_attribution``).
``ml_model_runs``  one row per evaluated model per training (append; ``run_id`` unique and
    deterministic, so re-training on the same data replaces its own rows).

Models on disk
--------------
``<models_dir>/<model_version>/`` holds one artifact per model (:mod:`ml.artifacts`);
``<models_dir>/champion.json`` points at the serving model set (BG/NBD + Gamma-Gamma for
p_alive / expected purchases / CLV, the calibrated churn classifier for churn_probability) and
is replaced atomically.  ``models_dir`` defaults to ``<settings.data_path>/models``.

Champion rule.  Within one training, :func:`ml.evaluation.pick_champion` flags one champion per
task (``is_champion`` in ml_model_runs).  The training's serving set is promoted (pointer
updated, ``promoted_at`` recorded on its runs) when both serving models beat their naive
baselines on the holdout (:func:`ml.evaluation.qualifies`), or when no champion exists yet
(bootstrap, with a warning); otherwise the previous champion keeps serving.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml.artifacts import load_artifact, save_artifact, to_jsonable
from ml.attribution import attribute_paths
from ml.clv import CLVModel, InsufficientDataError, ModelFitError
from ml.evaluation import qualifies, run_task
from ml.holdout import HOLDOUT_DECILE_COLUMNS, holdout_deciles
from ml.pipeline import CHURN_MODEL, CLV_MODEL, CLV_XGB_MODEL, run_ml
from ml.scoring import CUSTOMER_SCORES_COLUMNS, build_customer_scores
from ml.segments import PROFILE_COLUMNS, SEGMENT_COLUMNS, SegmentationError, segment_customers, segment_tables
from ml.supervised import FEATURE_COLUMNS, ChurnModel, SupervisedConfig, build_features, merge_extra_features
from retailpulse.memory import release_memory
from retailpulse.settings import Settings
from retailpulse.warehouse import Warehouse, get_warehouse, ident

log = logging.getLogger(__name__)

CHAMPION_FILE = "champion.json"
CHAMPION_FORMAT = 1
SERVING_MODELS = (CLV_MODEL, CHURN_MODEL)
MONTHLY_DISCOUNT_RATE = 0.01
DEFAULT_HORIZON_DAYS = 90

CHANNEL_WEIGHT_COLUMNS: tuple[str, ...] = (
    "model", "channel_group", "weight", "credit_share", "credited_conversions", "credited_value",
    "conversion_probability", "conversion_probability_without_channel",
)
# the ML stage's per-touchpoint credits table of earlier versions (the credits are computed by dbt
# from gold.attribution_channel_weights now): dropped when the stage writes, so that it is neither
# published nor read again
OBSOLETE_TABLES = ("fct_attribution_ml",)

# logical column types of the tables this module writes (customer_scores, attribution_channel_weights,
# customer_segments and segment_profiles match dbt/models/marts/_ml__sources.yml, which the dbt
# on-run-start hook creates)
TABLE_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "customer_scores": (
        ("customer_id", "text"), ("as_of_date", "date"), ("model_version", "text"), ("p_alive", "double"),
        ("churn_probability", "double"), ("expected_purchases_90d", "double"),
        ("expected_purchases_365d", "double"), ("predicted_clv_12m", "double"), ("value_tier", "text"),
        ("churn_risk_band", "text"),
    ),
    "attribution_channel_weights": (
        ("model", "text"), ("channel_group", "text"), ("weight", "double"), ("credit_share", "double"),
        ("credited_conversions", "double"), ("credited_value", "double"), ("conversion_probability", "double"),
        ("conversion_probability_without_channel", "double"),
    ),
    "customer_segments": (
        ("customer_id", "text"), ("as_of_date", "date"), ("segmentation_version", "text"), ("segment_id", "bigint"),
        ("segment_name", "text"),
    ),
    "segment_profiles": (
        ("as_of_date", "date"), ("segmentation_version", "text"), ("segment_id", "bigint"), ("segment_name", "text"),
        ("customers", "bigint"), ("customer_share", "double"), ("share_one_time_buyers", "double"),
        ("mean_days_since_last_purchase", "double"), ("mean_repeat_purchase_days", "double"),
        ("mean_orders", "double"), ("mean_avg_order_value", "double"), ("mean_total_spend", "double"),
        ("mean_tenure_days", "double"), ("mean_sessions_last_90d", "double"), ("mean_share_sessions_paid", "double"),
        ("mean_funnel_depth_90d", "double"), ("mean_support_cases", "double"), ("mean_refund_share", "double"),
        ("mean_p_alive", "double"), ("mean_churn_probability", "double"), ("mean_predicted_clv_12m", "double"),
        ("k", "bigint"), ("silhouette", "double"), ("features_json", "text"),
    ),
    "ml_model_runs": (
        ("run_id", "text"), ("model_name", "text"), ("model_version", "text"), ("trained_at", "timestamp"),
        ("train_start", "date"), ("train_end", "date"), ("cutoff_date", "date"), ("horizon_days", "bigint"),
        ("n_customers", "bigint"), ("metrics_json", "text"), ("baseline_metrics_json", "text"),
        ("is_champion", "boolean"), ("task", "text"), ("training_id", "text"), ("evaluation_start", "date"),
        ("evaluation_end", "date"), ("n_transactions", "bigint"), ("feature_names_json", "text"),
        ("artifact_dir", "text"), ("promoted_at", "timestamp"),
    ),
}
_TYPES = {
    "duckdb": {"text": "varchar", "double": "double", "bigint": "bigint", "boolean": "boolean", "date": "date",
               "timestamp": "timestamp"},
    "postgres": {"text": "text", "double": "double precision", "bigint": "bigint", "boolean": "boolean",
                 "date": "date", "timestamp": "timestamp"},
}

# channel groups (GA4 default channel grouping, dbt macro default_channel_group) counted as paid
PAID_CHANNEL_GROUPS = ("Paid Search", "Paid Social", "Paid Shopping", "Paid Video", "Paid Other", "Display",
                       "Cross-network")

# extra features of the xgboost models (:func:`behavior_features_from_gold`), in this order
SESSION_FEATURES = (
    "sessions_total", "sessions_last_30d", "sessions_last_90d", "days_since_last_session",
    "days_since_first_session", "distinct_channel_groups", "share_sessions_paid", "share_sessions_direct",
    "share_sessions_email", "funnel_depth_90d", "carts_without_purchase_90d",
)
SUPPORT_FEATURES = ("support_cases_total", "support_cases_last_90d", "support_cases_open", "support_cases_escalated")
ORDER_FEATURES = ("failed_payments", "refunded_orders", "refund_share")
CONSENT_FEATURES = ("is_email_opted_out",)
BEHAVIOR_FEATURES = SESSION_FEATURES + SUPPORT_FEATURES + ORDER_FEATURES + CONSENT_FEATURES


class MLJobError(RuntimeError):
    """A problem the operator can act on; the message says what to do."""


class InsufficientHistoryError(MLJobError):
    """gold does not (yet) hold enough order history to train the models."""


# ----------------------------------------------------------------------------------- helpers
def _day(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return pd.Timestamp(value).date()
    except (TypeError, ValueError):
        raise MLJobError(f"invalid date {value!r}: use YYYY-MM-DD") from None


def _lit(day: dt.date) -> str:
    """A portable SQL date literal (``day`` is a validated date, never user text)."""
    return f"date '{_day(day).isoformat()}'"


def _tbl(wh: Warehouse, table: str, schema: str = "gold") -> str:
    return f"{ident(wh.schema_name(schema))}.{ident(table)}"


Catalog = dict[str, set[str]]


def _catalog(wh: Warehouse, schema: str = "gold") -> Catalog:
    """``{table: {columns}}`` of every table and view in ``schema`` (one query, one connection)."""
    rows = wh.query(
        "select table_name, column_name from information_schema.columns where table_schema = ?",
        [wh.schema_name(schema)],
    )
    out: Catalog = {}
    for table, column in rows:
        out.setdefault(str(table), set()).add(str(column))
    return out


def _first_table(wh: Warehouse, candidates: Sequence[tuple[str, str, set[str]]]) -> tuple[str, str, set[str]] | None:
    """The first ``(schema, table, needed columns)`` of ``candidates`` that exists with those
    columns, as ``(schema.table for messages, quoted name for SQL, all its columns)``; None when
    none does. One catalog query per schema."""
    catalogs: dict[str, Catalog] = {}
    for schema, table, needed in candidates:
        if schema not in catalogs:
            catalogs[schema] = _catalog(wh, schema)
        if needed <= catalogs[schema].get(table, set()):
            return f"{schema}.{table}", _tbl(wh, table, schema), catalogs[schema][table]
    return None


def models_dir(settings: Settings, model_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where artifacts and ``champion.json`` live (default ``<data_path>/models``)."""
    return Path(model_dir) if model_dir is not None else settings.data_path / "models"


def _now() -> dt.datetime:
    """Now in UTC, without zone (gold timestamps are UTC without zone), whole seconds."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def _require_orders(wh: Warehouse) -> Catalog:
    """The gold catalog, after checking that gold.fct_orders has what the models need."""
    catalog = _catalog(wh)
    need = {"order_id", "customer_id", "ordered_at", "net_revenue", "is_paid"}
    cols = catalog.get("fct_orders", set())
    if not cols:
        raise MLJobError("gold.fct_orders does not exist: run the daily pipeline first (retailpulse run)")
    missing = sorted(need - cols)
    if missing:
        raise MLJobError(f"gold.fct_orders lacks column(s) {missing}: rebuild it with the current dbt project (dbt build)")
    return catalog


def ensure_ml_tables(settings: Settings) -> list[str]:
    """Create the tables this module writes (:data:`TABLE_COLUMNS`) when missing, and drop the
    ML tables of earlier versions (:data:`OBSOLETE_TABLES`).

    Same columns and types as the dbt on-run-start hook; existing tables are never touched.
    Returns the tables created.
    """
    wh = get_warehouse(settings)
    types = _TYPES.get(wh.target, _TYPES["postgres"])
    catalog = _catalog(wh)
    missing = [t for t in TABLE_COLUMNS if t not in catalog]
    if missing:
        wh.ensure_schemas(("gold",))
        for table in missing:
            ddl = ", ".join(f"{ident(c)} {types[t]}" for c, t in TABLE_COLUMNS[table])
            wh.execute(f"create table if not exists {_tbl(wh, table)} ({ddl})")
    for table in OBSOLETE_TABLES:
        if table in catalog:
            log.info("dropping gold.%s: an earlier version's ML table, replaced by gold.attribution_channel_weights",
                     table)
            try:
                wh.execute(f"drop table if exists {_tbl(wh, table)}")
            except Exception as exc:  # noqa: BLE001 - e.g. an analyst's view on it (Postgres): keep it, say so
                log.warning("gold.%s (no longer written) was not dropped: %s; drop it once nothing depends on it",
                            table, str(exc).splitlines()[0])
    return missing


# --------------------------------------------------------------------------- inputs from gold
def _paid_orders_where(cutoff: dt.date) -> str:
    return f"is_paid and customer_id is not null and cast(ordered_at as date) <= {_lit(cutoff)}"


def transactions_from_gold(settings: Settings, as_of: Any) -> pd.DataFrame:
    """Paid orders with a resolved customer on or before ``as_of`` (inclusive, UTC day).

    Columns ``customer_id`` (str), ``order_id``, ``ordered_at`` (naive UTC timestamp) and
    ``amount`` (net revenue in the reporting currency, negative values clipped to 0), ordered by
    customer and time: the transaction log :mod:`ml.features` / :func:`ml.pipeline.run_ml` take.
    """
    wh = get_warehouse(settings)
    _require_orders(wh)
    cutoff = _day(as_of)
    frame = wh.query_frame(
        "select cast(customer_id as varchar) as customer_id, order_id, ordered_at, "
        "case when net_revenue > 0 then net_revenue else 0 end as amount "
        f"from {_tbl(wh, 'fct_orders')} where {_paid_orders_where(cutoff)} "
        "order by customer_id, ordered_at, order_id"
    )
    if frame.empty:
        return pd.DataFrame({
            "customer_id": pd.Series([], dtype=object), "order_id": pd.Series([], dtype=object),
            "ordered_at": pd.Series([], dtype="datetime64[us]"), "amount": pd.Series([], dtype="float64"),
        })
    frame["customer_id"] = frame["customer_id"].astype(str)
    ts = pd.to_datetime(frame["ordered_at"])
    if getattr(ts.dt, "tz", None) is not None:  # a timestamptz column: gold's convention is UTC
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    frame["ordered_at"] = ts
    frame["amount"] = pd.to_numeric(frame["amount"]).astype("float64")
    return frame


def rfm_summary_from_gold(settings: Settings, cutoff: Any) -> pd.DataFrame:
    """The RFM summary as of ``cutoff``, computed in SQL from gold.fct_orders.

    lifetimes' definitions (as :func:`ml.features.rfm_summary`, which is the reference): orders of
    one UTC day merge into one purchase day; ``frequency`` = distinct purchase days - 1,
    ``recency`` = last - first purchase day, ``T`` = cutoff - first purchase day (days),
    ``monetary_value`` = mean of the repeat purchase days' net totals (0 without repeats).
    Paid orders of resolved customers only.  Columns :data:`ml.features.RFM_COLUMNS`, sorted by
    ``customer_id``.
    """
    wh = get_warehouse(settings)
    _require_orders(wh)
    day = _day(cutoff)
    sql = f"""
        with purchase_days as (
            select
                cast(customer_id as varchar) as customer_id,
                cast(ordered_at as date) as purchase_day,
                sum(case when net_revenue > 0 then net_revenue else 0 end) as amount
            from {_tbl(wh, 'fct_orders')}
            where {_paid_orders_where(day)}
            group by cast(customer_id as varchar), cast(ordered_at as date)
        ),
        per_customer as (
            select customer_id, min(purchase_day) as first_day, max(purchase_day) as last_day, count(*) as n_days
            from purchase_days
            group by customer_id
        )
        select
            per_customer.customer_id,
            per_customer.n_days - 1 as frequency,
            per_customer.last_day - per_customer.first_day as recency,
            {_lit(day)} - per_customer.first_day as "T",
            coalesce(avg(case when purchase_days.purchase_day > per_customer.first_day
                              then cast(purchase_days.amount as double precision) end), 0) as monetary_value
        from per_customer
        inner join purchase_days on purchase_days.customer_id = per_customer.customer_id
        group by per_customer.customer_id, per_customer.n_days, per_customer.first_day, per_customer.last_day
        order by per_customer.customer_id
    """
    frame = wh.query_df(sql)
    if frame.empty:
        frame = pd.DataFrame({c: [] for c in ("customer_id", "frequency", "recency", "T", "monetary_value")})
    return pd.DataFrame({
        "customer_id": frame["customer_id"].astype(str).to_numpy(dtype=object),
        "frequency": pd.to_numeric(frame["frequency"]).astype("int64").to_numpy(),
        "recency": pd.to_numeric(frame["recency"]).astype("float64").to_numpy(),
        "T": pd.to_numeric(frame["T"]).astype("float64").to_numpy(),
        "monetary_value": pd.to_numeric(frame["monetary_value"]).astype("float64").to_numpy(),
    })


def latest_order_date(settings: Settings) -> dt.date:
    """The last UTC day with a paid order in gold.fct_orders (the natural scoring date)."""
    wh = get_warehouse(settings)
    _require_orders(wh)
    value = wh.scalar(f"select max(cast(ordered_at as date)) from {_tbl(wh, 'fct_orders')} where is_paid")
    if value is None:
        raise MLJobError("gold.fct_orders has no paid orders: run the daily pipeline first (retailpulse run)")
    return _day(value)


def behavior_features_from_gold(settings: Settings, as_of: Any) -> pd.DataFrame:
    """Behaviour features as of ``as_of`` (inclusive) for every customer with a paid order by then.

    Columns ``customer_id`` + :data:`BEHAVIOR_FEATURES` (float).  Windows are the days
    ``(as_of - w, as_of]``.  A source table that does not exist (yet), or has no row on or
    before ``as_of`` (a source that is not connected, e.g. an imported transaction log without
    web or CRM data), leaves its columns NULL -- unknown, never a faked 0; a customer without
    rows in a source that has data gets 0 counts and NULL "days since".

    gold.fct_sessions: ``sessions_total``, ``sessions_last_30d``, ``sessions_last_90d``,
    ``days_since_last_session``, ``days_since_first_session`` (tenure as a visitor),
    ``distinct_channel_groups``, ``share_sessions_paid|direct|email`` (channel mix),
    ``funnel_depth_90d`` (deepest step in the last 90 days: 0 visit, 1 viewed an item, 2 added
    to cart, 3 began checkout, 4 purchased; NULL without a session in the window),
    ``carts_without_purchase_90d``.
    gold.fct_support_cases: ``support_cases_total``, ``support_cases_last_90d``,
    ``support_cases_open`` (open at ``as_of``), ``support_cases_escalated``.
    gold.fct_orders: ``failed_payments`` (orders never paid), ``refunded_orders`` and
    ``refund_share`` (refunded / gross revenue of the paid orders; refunds as known now), over
    the orders of a payment source (``order_source`` other than ``import``; NULL for customers
    with imported orders only).
    silver.int_customers__golden: ``is_email_opted_out`` (consent as known now; NULL for customers
    without a CRM contact when ``has_crm_contact`` exists).
    """
    wh = get_warehouse(settings)
    catalog = _require_orders(wh)
    day = _day(as_of)
    d30, d90 = _lit(day - dt.timedelta(days=30)), _lit(day - dt.timedelta(days=90))
    base = wh.query_frame(
        f"select distinct cast(customer_id as varchar) as customer_id from {_tbl(wh, 'fct_orders')} "
        f"where {_paid_orders_where(day)} order by 1"
    )
    out = pd.DataFrame({"customer_id": base["customer_id"].astype(str).to_numpy() if len(base) else []})
    for c in BEHAVIOR_FEATURES:
        out[c] = np.nan

    def merge(block: pd.DataFrame, names: Sequence[str], zero: Sequence[str]) -> None:
        if block.empty:
            values = pd.DataFrame(index=pd.Index([], dtype=object))
        else:
            values = block.assign(customer_id=block["customer_id"].astype(str)).set_index("customer_id")
        # align once for every column (a map per column hashes the customer ids again each time)
        aligned = values.reindex(pd.Index(out["customer_id"]))
        for c in names:
            if c in values.columns:
                col = pd.Series(aligned[c].to_numpy(), index=out.index)
            else:
                col = pd.Series(np.nan, index=out.index)
            col = pd.to_numeric(col, errors="coerce").astype("float64")
            out[c] = col.fillna(0.0) if (c in zero and c in values.columns) else col

    # sessions
    def has_rows(table: str, day_col: str) -> bool:
        return wh.scalar(f"select count(*) from (select 1 from {_tbl(wh, table)} "
                         f"where cast({day_col} as date) <= {_lit(day)} limit 1) as any_row") > 0

    scols = catalog.get("fct_sessions", set())
    if {"customer_id", "started_at"} <= scols and has_rows("fct_sessions", "started_at"):
        sday = "cast(started_at as date)"
        recent = f"{sday} > {d90}"

        def flag(col: str) -> str:
            return f"(case when {col} then 1 else 0 end)" if col in scols else "0"

        exprs = [
            "count(*) as sessions_total",
            f"sum(case when {sday} > {d30} then 1 else 0 end) as sessions_last_30d",
            f"sum(case when {recent} then 1 else 0 end) as sessions_last_90d",
            f"{_lit(day)} - max({sday}) as days_since_last_session",
            f"{_lit(day)} - min({sday}) as days_since_first_session",
        ]
        if "channel_group" in scols:
            paid = ", ".join(f"'{g}'" for g in PAID_CHANNEL_GROUPS)
            exprs += [
                "count(distinct channel_group) as distinct_channel_groups",
                f"avg(case when channel_group in ({paid}) then 1.0 else 0.0 end) as share_sessions_paid",
                "avg(case when channel_group = 'Direct' then 1.0 else 0.0 end) as share_sessions_direct",
                "avg(case when channel_group = 'Email' then 1.0 else 0.0 end) as share_sessions_email",
            ]
        purchased = "has_purchase" if "has_purchase" in scols else ("is_converted" if "is_converted" in scols else None)
        steps = [c for c in ("has_view_item", "has_add_to_cart", "has_begin_checkout") if c in scols]
        if steps or purchased:
            depth = " ".join(
                f"when {c} then {n}" for n, c in reversed(list(enumerate(
                    ["has_view_item", "has_add_to_cart", "has_begin_checkout", purchased or ""], start=1)))
                if c and c in scols
            )
            exprs.append(f"max(case when {recent} then (case {depth} else 0 end) end) as funnel_depth_90d")
        if "has_add_to_cart" in scols and purchased:
            exprs.append(
                f"sum(case when {recent} and {flag('has_add_to_cart')} = 1 and {flag(purchased)} = 0 "
                "then 1 else 0 end) as carts_without_purchase_90d"
            )
        block = wh.query_frame(
            f"select cast(customer_id as varchar) as customer_id, {', '.join(exprs)} "
            f"from {_tbl(wh, 'fct_sessions')} where customer_id is not null and {sday} <= {_lit(day)} "
            "group by cast(customer_id as varchar)"
        )
        merge(block, SESSION_FEATURES, ("sessions_total", "sessions_last_30d", "sessions_last_90d",
                                        "distinct_channel_groups", "carts_without_purchase_90d"))

    # support cases
    ccols = catalog.get("fct_support_cases", set())
    if {"customer_id", "created_at"} <= ccols and has_rows("fct_support_cases", "created_at"):
        cday = "cast(created_at as date)"
        exprs = ["count(*) as support_cases_total",
                 f"sum(case when {cday} > {d90} then 1 else 0 end) as support_cases_last_90d"]
        if "closed_at" in ccols:
            exprs.append(
                f"sum(case when closed_at is null or cast(closed_at as date) > {_lit(day)} then 1 else 0 end) "
                "as support_cases_open"
            )
        if "is_escalated" in ccols:
            exprs.append("sum(case when is_escalated then 1 else 0 end) as support_cases_escalated")
        block = wh.query_frame(
            f"select cast(customer_id as varchar) as customer_id, {', '.join(exprs)} "
            f"from {_tbl(wh, 'fct_support_cases')} where customer_id is not null and {cday} <= {_lit(day)} "
            "group by cast(customer_id as varchar)"
        )
        merge(block, SUPPORT_FEATURES, SUPPORT_FEATURES)

    # payments and refunds
    ocols = catalog.get("fct_orders", set())
    exprs = ["sum(case when is_paid then 0 else 1 end) as failed_payments"]
    if {"refunded_revenue", "gross_revenue"} <= ocols:
        exprs += [
            "sum(case when is_paid and refunded_revenue > 0 then 1 else 0 end) as refunded_orders",
            "sum(case when is_paid then cast(refunded_revenue as double precision) else 0 end) "
            "/ nullif(sum(case when is_paid then cast(gross_revenue as double precision) else 0 end), 0) as refund_share",
        ]
    # imported transaction logs record neither payment attempts nor refunds: only orders of a
    # payment source count, and a customer without any keeps NULL (unknown, not "none")
    payments = "order_source <> 'import'" if "order_source" in ocols else "1 = 1"
    block = wh.query_frame(
        f"select cast(customer_id as varchar) as customer_id, {', '.join(exprs)} "
        f"from {_tbl(wh, 'fct_orders')} where customer_id is not null and cast(ordered_at as date) <= {_lit(day)} "
        f"and {payments} group by cast(customer_id as varchar)"
    )
    merge(block, ORDER_FEATURES, ())

    # consent: from the golden records dbt built in this run (silver; the daily run scores before
    # it builds gold.dim_customers, which reads the scores), else from gold.dim_customers
    need = {"customer_id", "is_email_opted_out"}
    consent = _first_table(wh, [("silver", "int_customers__golden", need), ("gold", "dim_customers", need)])
    if consent is not None:
        _, table, dcols = consent
        # consent is known for customers with a CRM contact (dim_customers defaults it to false)
        known = "has_crm_contact" if "has_crm_contact" in dcols else "1 = 1"
        block = wh.query_frame(
            "select cast(customer_id as varchar) as customer_id, "
            f"max(case when {known} then (case when is_email_opted_out then 1 else 0 end) end) as is_email_opted_out "
            f"from {table} where customer_id is not null group by cast(customer_id as varchar)"
        )
        merge(block, CONSENT_FEATURES, ())
    return out


def _extra_features_for(settings: Settings):  # noqa: ANN202 - returns ml.supervised.ExtraFeatures
    def extra(as_of: pd.Timestamp) -> pd.DataFrame:
        return behavior_features_from_gold(settings, as_of)
    return extra


# ------------------------------------------------------------------------------- attribution
def _touch_source(wh: Warehouse) -> tuple[str, str, str] | None:
    """(origin, relation, row filter) of the converting journeys' touchpoints: the silver model dbt
    built in this run, else gold.fct_attribution's ``linear`` rows (one per touchpoint); None
    when neither exists. The daily run scores before it builds gold.fct_attribution (which reads
    this stage's output), so it reads the silver one."""
    found = _first_table(wh, [("silver", "int_attribution__touchpoints", {"order_id", "touchpoint_index", "session_id",
                                                                           "channel_group"}),
                              ("gold", "fct_attribution", {"order_id", "touchpoint_index", "session_id",
                                                           "channel_group", "model"})])
    if found is None:
        return None
    origin, table, _ = found
    return origin, table, ("model = 'linear'" if origin == "gold.fct_attribution" else "1 = 1")


def _converting_paths(wh: Warehouse, catalog: Catalog) -> tuple[pd.DataFrame, list[str], str | None]:
    """(paths, notes, touchpoint relation) of the converting journeys in gold.

    paths: one row per distinct channel path of gold.fct_conversion_paths' orders (channel groups
    of the touchpoints in order, NULL as ``Unassigned``), ``converted`` True, ``count`` its orders
    and ``value`` their summed net revenue, in the order of the first order id -- computed by the
    warehouse, only the distinct paths come back (the models count identical journeys once with
    their count and value). The relation: SQL (a parenthesised select of ``order_id,
    touchpoint_index, session_id``) of the touchpoints, None when they came from
    ``fct_conversion_paths.channel_path`` (no sessions).
    """
    pcols = catalog.get("fct_conversion_paths", set())
    if not {"order_id", "channel_path", "net_revenue"} <= pcols:
        return pd.DataFrame(), [
            "gold.fct_conversion_paths does not exist (or lacks order_id/channel_path/net_revenue): "
            "data-driven attribution skipped; build the dbt marts first"
        ], None
    notes: list[str] = []
    orders_sql = (f"select order_id, coalesce(cast(net_revenue as double precision), 0) as net_revenue "
                  f"from {_tbl(wh, 'fct_conversion_paths')}")
    source = _touch_source(wh)
    rows: list[tuple[Any, ...]] = []
    relation: str | None = None
    if source is None:
        fallback = ("neither silver.int_attribution__touchpoints nor gold.fct_attribution exists: "
                    "touchpoints taken from fct_conversion_paths.channel_path")
    else:
        origin, table, where = source
        rows = wh.query(f"""
            with conversion_paths as ({orders_sql}),
            touch as (
                select order_id, touchpoint_index, coalesce(cast(channel_group as varchar), 'Unassigned') as channel_group
                from {table}
                where {where} and order_id in (select order_id from conversion_paths)
            ),
            per_order as (
                select order_id, string_agg(channel_group, chr(31) order by touchpoint_index) as path
                from touch
                group by order_id
            )
            select per_order.path, count(*) as orders, sum(conversion_paths.net_revenue) as revenue,
                   min(per_order.order_id) as first_order
            from per_order
            inner join conversion_paths on conversion_paths.order_id = per_order.order_id
            group by per_order.path
            order by first_order
        """)
        relation = f"(select order_id, touchpoint_index, session_id from {table} where {where})"
        fallback = f"{origin} has no touchpoints of these orders: touchpoints taken from channel_path"
    if rows:
        paths = [tuple(str(r[0]).split(chr(31))) for r in rows]
        counts = [int(r[1]) for r in rows]
        values = [float(r[2] or 0.0) for r in rows]
    else:  # no touchpoint table: each order's channel_path ("a > b > c")
        orders = wh.query_frame(f"select order_id, coalesce(cast(net_revenue as double precision), 0) as net_revenue, "
                                f"channel_path from {_tbl(wh, 'fct_conversion_paths')} order by order_id")
        if orders.empty:
            return pd.DataFrame(), ["gold.fct_conversion_paths is empty: no converting journeys to attribute"], None
        relation = None
        notes.append(fallback)
        agg: dict[tuple[str, ...], list[float]] = {}
        for path, value in zip(orders["channel_path"], orders["net_revenue"], strict=True):
            channels = tuple(p.strip() for p in str(path or "").split(">") if p.strip())
            if channels:
                entry = agg.setdefault(channels, [0, 0.0])
                entry[0] += 1
                entry[1] += float(value)
        paths, counts, values = list(agg), [int(v[0]) for v in agg.values()], [v[1] for v in agg.values()]
    if not paths:
        return pd.DataFrame(), [*notes, "no converting order has a touchpoint: nothing to attribute"], None
    return pd.DataFrame({
        "path_id": [f"c{i}" for i in range(len(paths))],
        "channels": pd.Series(paths, dtype=object),
        "converted": True,
        "value": np.array(values, dtype="float64"),
        "count": np.array(counts, dtype="int64"),
    }), notes, relation


def _non_converting_paths(
    wh: Warehouse, catalog: Catalog, touch_relation: str | None, lookback_days: int
) -> tuple[pd.DataFrame, list[str]]:
    """Journeys that did not convert, from gold.fct_sessions (no dbt model holds them yet),
    computed by the warehouse in one query: the ML process no longer holds every session in a
    pandas frame (a million at the medium world, ten million at the large one) beside the scoring
    frames; only the distinct paths and their counts come back.

    A journey belongs to a customer (or, for sessions not stitched to one, a device
    ``user_pseudo_id``).  Each journey key's sessions, in (started_at, session_id) order, are split
    at its conversions (a converting session ends a segment); the sessions of a segment that are
    not touchpoints of a converting order are cut into windows of ``lookback_days`` from the
    segment's first such session; every window is one non-converting path (its channel groups in
    time order), and identical paths come as one row with their ``count``, in the order of their
    first journey.  Converting sessions: gold.fct_conversion_paths' ``converting_session_id`` and
    each order's last touchpoint with a session (else, when there are none, the sessions with an
    ``order_id``); touchpoints: ``touch_relation`` (``order_id, touchpoint_index, session_id``,
    see :func:`_touchpoints`) for the orders of gold.fct_conversion_paths.
    """
    cols = catalog.get("fct_sessions", set())
    need = {"session_id", "started_at", "channel_group"}
    if not need <= cols or not ({"customer_id", "user_pseudo_id"} & cols):
        return pd.DataFrame(), ["gold.fct_sessions does not exist (or lacks session columns): "
                                "Markov attribution without non-converting journeys"]
    postgres = wh.target == "postgres"
    text_order = ' collate "C"' if postgres else ""  # code point order on both engines
    cust = "cast(customer_id as varchar)" if "customer_id" in cols else "cast(null as varchar)"
    dev = "cast(user_pseudo_id as varchar)" if "user_pseudo_id" in cols else "cast(null as varchar)"
    order = "cast(order_id as varchar)" if "order_id" in cols else "cast(null as varchar)"
    conv = ("cast(converting_session_id as varchar)" if "converting_session_id" in catalog.get("fct_conversion_paths", set())
            else "cast(null as varchar)")
    window_us = int(lookback_days) * 86_400_000_000
    if postgres:
        window = f"floor(extract(epoch from (started_at - first_at)) * 1000000 / {window_us})"
    else:
        window = f"date_diff('microsecond', first_at, started_at) // {window_us}"
    touch = (f"select t.order_id, t.touchpoint_index, cast(t.session_id as varchar) as session_id "
             f"from {touch_relation} as t where t.order_id in (select order_id from conversion_paths)"
             if touch_relation else
             "select cast(null as varchar) as order_id, 0 as touchpoint_index, cast(null as varchar) as session_id "
             "from conversion_paths where 1 = 0")
    by_time = f"started_at, session_id{text_order}"
    sql = f"""
        with conversion_paths as (
            select order_id, {conv} as converting_session_id from {_tbl(wh, 'fct_conversion_paths')}
        ),
        touch as ({touch}),
        touch_sessions as (select distinct session_id from touch where session_id is not null),
        converting as (
            select converting_session_id as session_id from conversion_paths where converting_session_id is not null
            union
            select session_id from (
                select session_id, row_number() over (partition by order_id order by touchpoint_index desc) as touch_rank
                from touch where session_id is not null
            ) as last_touch
            where touch_rank = 1
        ),
        sessions as (
            select
                cast(session_id as varchar) as session_id,
                coalesce({cust}, 'device:' || {dev}) as journey_key,
                started_at,
                coalesce(cast(channel_group as varchar), 'Unassigned') as channel_group,
                {order} as order_id
            from {_tbl(wh, 'fct_sessions')}
            where started_at is not null and ({cust} is not null or {dev} is not null)
        ),
        flagged as (
            select
                sessions.*,
                case
                    when (select count(*) from converting) > 0
                        then case when session_id in (select session_id from converting) then 1 else 0 end
                    else case when order_id is not null then 1 else 0 end
                end as is_converting,
                case when session_id in (select session_id from touch_sessions) then 1 else 0 end as is_touch
            from sessions
        ),
        segmented as (
            select
                flagged.*,
                -- converting sessions before this one (a converting session is dropped below)
                sum(is_converting) over (
                    partition by journey_key order by {by_time} rows between unbounded preceding and current row
                ) as segment
            from flagged
        ),
        kept as (
            select journey_key, segment, started_at, session_id, channel_group,
                   min(started_at) over (partition by journey_key, segment) as first_at,
                   row_number() over (order by journey_key{text_order}, {by_time}) as position
            from segmented
            where is_converting = 0 and is_touch = 0
        ),
        journeys as (
            select string_agg(channel_group, chr(31) order by {by_time}) as path, min(position) as first_position
            from (select kept.*, {window} as path_window from kept) as windowed
            group by journey_key, segment, path_window
        )
        select path, count(*) as journeys, min(first_position) as first_position
        from journeys
        group by path
        order by first_position
    """
    rows = wh.query(sql)
    if not rows:
        return pd.DataFrame(), []
    # identical journeys as one row with their count (the models only count them): a million
    # journeys at the medium world are some ten thousand distinct paths
    out = pd.DataFrame({
        "path_id": [f"nc{i}" for i in range(len(rows))],
        "channels": pd.Series([tuple(str(r[0]).split(chr(31))) for r in rows], dtype=object),
        "converted": False,
        "value": 0.0,
        "count": np.array([int(r[1]) for r in rows], dtype="int64"),
    })
    return out, []


def attribution_from_gold(settings: Settings) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    """Markov and Shapley channel weights of the converting and non-converting journeys in gold
    (see the module docstring): rows for gold.attribution_channel_weights.

    Converting journeys: gold.fct_conversion_paths with their touchpoints' channel groups
    (:func:`_converting_paths`); non-converting journeys: :func:`_non_converting_paths` over
    gold.fct_sessions with ``settings.attribution_lookback_days``. Markov weights are removal
    effects, Shapley weights Shapley values of the conversion-count game. dbt splits each order
    over its touchpoints in proportion to these weights (int_attribution__data_driven, the SQL of
    :func:`ml.attribution.order_credits`), so every order's credits sum to 1 under each model.

    Returns (frame in :data:`CHANNEL_WEIGHT_COLUMNS` or None when nothing can be attributed,
    JSON-able summary with the channel shares and notes).
    """
    wh = get_warehouse(settings)
    catalog = _catalog(wh)
    conv_paths, notes, touch_relation = _converting_paths(wh, catalog)
    summary: dict[str, Any] = {"orders": 0, "rows": 0, "notes": notes}
    if conv_paths.empty:
        return None, summary
    non_conv, more = _non_converting_paths(wh, catalog, touch_relation, settings.attribution_lookback_days)
    notes.extend(more)
    paths = pd.concat([conv_paths, non_conv], ignore_index=True) if not non_conv.empty else conv_paths
    markov, shapley, diag = attribute_paths(paths)
    frames = []
    for model in (markov, shapley):
        frames.append(pd.DataFrame({
            "model": model["model"].astype(str).to_numpy(dtype=object),
            "channel_group": model["channel"].astype(str).to_numpy(dtype=object),
            "weight": model["weight"].astype("float64").to_numpy(),
            "credit_share": model["credit_share"].astype("float64").to_numpy(),
            "credited_conversions": model["credited_conversions"].astype("float64").to_numpy(),
            "credited_value": model["credited_value"].astype("float64").to_numpy(),
            "conversion_probability": (model["conversion_probability"] if "conversion_probability" in model.columns
                                       else pd.Series(np.nan, index=model.index)).astype("float64").to_numpy(),
            "conversion_probability_without_channel": (
                model["conversion_probability_without"] if "conversion_probability_without" in model.columns
                else pd.Series(np.nan, index=model.index)).astype("float64").to_numpy(),
        }))
    frame = pd.concat(frames, ignore_index=True)[list(CHANNEL_WEIGHT_COLUMNS)]
    orders = int(conv_paths["count"].sum())
    summary.update({
        "orders": orders,
        "rows": int(len(frame)),
        "converting_paths": orders,
        "distinct_converting_paths": int(len(conv_paths)),
        "non_converting_paths": int(non_conv["count"].sum()) if len(non_conv) else 0,
        "channels": int(diag["n_channels"]),
        "conversion_probability": float(markov["conversion_probability"].iloc[0]) if len(markov) else None,
        "channel_share": {
            m: {str(c): round(float(v), 6) for c, v in zip(w["channel"], w["credit_share"], strict=True)}
            for m, w in (("markov", markov), ("shapley", shapley))
        },
    })
    return frame, summary


# -------------------------------------------------------------------------------- champion
def load_champion(settings: Settings, model_dir: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """The ``champion.json`` pointer, or None when no model was promoted yet."""
    path = models_dir(settings, model_dir) / CHAMPION_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MLJobError(f"cannot read {path} ({exc}): delete it and run train_models (the weekly DAG) again") from None
    if data.get("format_version") != CHAMPION_FORMAT:
        raise MLJobError(f"{path} has format {data.get('format_version')!r}; retrain with the weekly DAG")
    return data


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    try:
        tmp.write_text(json.dumps(to_jsonable(dict(data)), indent=2, sort_keys=True))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _load_serving_models(settings: Settings, pointer: Mapping[str, Any], model_dir: Any) -> tuple[CLVModel, ChurnModel]:
    root = models_dir(settings, model_dir)
    loaded = {}
    for name in SERVING_MODELS:
        entry = pointer["models"][name]
        try:
            model, _meta = load_artifact(root / entry["artifact_dir"])
        except FileNotFoundError:
            raise MLJobError(
                f"champion.json points at {root / entry['artifact_dir']}, which is missing: "
                "run the weekly training (retailpulse_weekly_train) to train and promote new models"
            ) from None
        loaded[name] = model
    clv, churn = loaded[CLV_MODEL], loaded[CHURN_MODEL]
    if not isinstance(clv, CLVModel) or not isinstance(churn, ChurnModel):
        raise MLJobError(f"unexpected artifact types {type(clv).__name__}, {type(churn).__name__} in {root}")
    return clv, churn


# -------------------------------------------------------------------------------- training
def train_models(
    settings: Settings,
    as_of: Any,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    *,
    model_dir: str | os.PathLike[str] | None = None,
    promote: bool = True,
    behavior_features: bool = True,
    config: SupervisedConfig | None = None,
) -> dict[str, Any]:
    """Train and evaluate on a time split as of ``as_of``; save artifacts; record the runs.

    :func:`ml.pipeline.run_ml` on the paid orders of gold.fct_orders up to ``as_of``: models are
    evaluated on the held-out most recent ``horizon_days`` (features as of ``as_of - h``,
    outcomes in ``(as_of - h, as_of]``) beside naive baselines, then refitted.  Needs
    ``2 * horizon_days`` of order history.  With ``behavior_features`` the xgboost models also
    get :func:`behavior_features_from_gold`.

    Artifacts go to ``<models_dir>/<model_version>/`` (one per model); one row per model is
    written to gold.ml_model_runs (replacing rows with the same ``run_id``: re-training on the
    same data is idempotent).  With ``promote`` the serving set is then offered to
    :func:`promote_champion`.  Returns a JSON-able summary, which is also what
    :func:`promote_champion` takes (the weekly DAG passes it between its tasks).
    """
    began = time.monotonic()
    day = _day(as_of)
    h = int(horizon_days)
    if h <= 0:
        raise MLJobError("horizon_days must be a positive number of days")
    tx = transactions_from_gold(settings, day)
    if tx.empty:
        raise InsufficientHistoryError(
            f"gold.fct_orders has no paid orders on or before {day}: run the daily pipeline first"
        )
    first = tx["ordered_at"].min().date()
    if (day - first).days < 2 * h:
        raise InsufficientHistoryError(
            f"gold.fct_orders has paid orders from {first} to {tx['ordered_at'].max().date()}: training as of {day} "
            f"needs {2 * h} days of history (2 x horizon_days={h}); backfill more history or use a shorter horizon"
        )
    extra = _extra_features_for(settings) if behavior_features else None
    trained_at = _now()
    try:
        result = run_ml(tx, day, horizon_days=h, config=config, monthly_discount_rate=MONTHLY_DISCOUNT_RATE,
                        trained_at=trained_at, extra_features=extra)
    except InsufficientDataError as exc:
        raise InsufficientHistoryError(
            f"training as of {day} failed: {exc} (gold.fct_orders needs more customers / repeat purchases "
            "in the last 2 x horizon_days; backfill more history)"
        ) from exc
    except ModelFitError as exc:
        raise MLJobError(f"training as of {day} failed: {exc}") from exc
    root = models_dir(settings, model_dir)
    versions = dict(result.versions)
    training_id = f"{versions[CLV_MODEL]}+{versions[CHURN_MODEL]}"
    features = list(result.churn_model.feature_names)
    models = {CLV_MODEL: result.clv_model, CLV_XGB_MODEL: result.clv_regressor, CHURN_MODEL: result.churn_model}
    runs = result.model_runs.copy()
    train_start = pd.Timestamp(runs["train_start"].iloc[0]).date()
    for name, model in models.items():
        ev = result.evaluation[name]
        save_artifact(
            root / versions[name], model, model_name=name, model_version=versions[name],
            train_start=train_start, train_end=day, cutoff_date=day, horizon_days=h,
            metrics=ev["metrics"], baseline_metrics=ev["baseline_metrics"],
            extra={"training_id": training_id, "feature_names": features if name != CLV_MODEL else [],
                   "monthly_discount_rate": MONTHLY_DISCOUNT_RATE},
        )
    runs["task"] = [run_task(r) for r in runs.to_dict("records")]
    runs["training_id"] = training_id
    runs["evaluation_start"] = day - dt.timedelta(days=h)
    runs["evaluation_end"] = day
    runs["n_transactions"] = int(len(tx))
    runs["feature_names_json"] = [json.dumps([] if n == CLV_MODEL else features) for n in runs["model_name"]]
    runs["artifact_dir"] = [versions[n] for n in runs["model_name"]]
    current = load_champion(settings, model_dir)
    kept = (pd.Timestamp(current["promoted_at"]) if current and current.get("model_version") == training_id
            else pd.NaT)  # re-training the serving models on the same data keeps their promotion
    runs["promoted_at"] = pd.Series(
        [kept if n in SERVING_MODELS else pd.NaT for n in runs["model_name"]], dtype="datetime64[us]"
    )
    runs["trained_at"] = pd.Series([trained_at] * len(runs), dtype="datetime64[us]")
    runs["horizon_days"] = runs["horizon_days"].astype("int64")
    runs["n_customers"] = runs["n_customers"].astype("int64")
    runs["is_champion"] = runs["is_champion"].astype(bool)
    runs = runs[[c for c, _ in TABLE_COLUMNS["ml_model_runs"]]]
    ensure_ml_tables(settings)
    wh = get_warehouse(settings)
    with wh.connect() as con:
        for i in range(len(runs)):
            wh.replace_rows("gold", "ml_model_runs", runs.iloc[[i]], where={"run_id": runs["run_id"].iloc[i]}, con=con)
        _record_holdout_deciles(wh, con, result.holdout_predictions, training_id, day, h)
    records = result.model_runs.to_dict("records")
    serving_ok = {r["model_name"]: bool(qualifies(r)) for r in records if r["model_name"] in SERVING_MODELS}
    summary: dict[str, Any] = {
        "as_of": day.isoformat(),
        "horizon_days": h,
        "training_id": training_id,
        "trained_at": trained_at.isoformat(),
        "train_start": train_start.isoformat(),
        "n_transactions": int(len(tx)),
        "n_customers": int(tx["customer_id"].nunique()),
        "feature_names": features,
        "runs": [
            {
                "run_id": r["run_id"], "model_name": r["model_name"], "model_version": r["model_version"],
                "task": run_task(r), "is_champion": bool(r["is_champion"]),
                "metrics": json.loads(r["metrics_json"]), "baseline_metrics": json.loads(r["baseline_metrics_json"]),
            }
            for r in records
        ],
        "champions": {run_task(r): r["model_name"] for r in records if r["is_champion"]},
        "versions": versions,
        "artifacts": {n: str(root / v) for n, v in versions.items()},
        "serving_models_beat_baselines": serving_ok,
        "qualifies": all(serving_ok.get(n, False) for n in SERVING_MODELS),
        "warnings": list(result.warnings),
    }
    if promote:
        summary["promotion"] = promote_champion(settings, summary, model_dir=model_dir)
    summary["seconds"] = round(time.monotonic() - began, 1)
    log.info("trained %s as of %s in %.1fs", training_id, day, summary["seconds"])
    return to_jsonable(summary)


def _record_holdout_deciles(wh: Warehouse, con: Any, holdout_predictions: pd.DataFrame, training_id: str,
                            day: dt.date, h: int) -> None:
    """gold.ml_holdout_deciles: the training's holdout calibration / decile tables (:mod:`ml.holdout`;
    aggregates only), replacing the rows of the same training_id (the dashboard's model-quality page)."""
    types = _TYPES.get(wh.target, _TYPES["postgres"])
    ddl = ", ".join(f"{ident(c)} {types[t]}" for c, t in HOLDOUT_DECILE_COLUMNS)
    wh._exec(con, f"create table if not exists {_tbl(wh, 'ml_holdout_deciles')} ({ddl})")
    frame = holdout_deciles(holdout_predictions, training_id=training_id, cutoff_date=day, horizon_days=h)
    wh.replace_rows("gold", "ml_holdout_deciles", frame, where={"training_id": training_id}, con=con)


def promote_champion(
    settings: Settings,
    training: Mapping[str, Any],
    *,
    model_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Make a training's serving set the champion when it qualifies; record it.

    ``training`` is the summary returned by :func:`train_models`.  The set is promoted when both
    serving models beat their baselines (``training["qualifies"]``), when no champion exists yet,
    or with ``force``.  Promotion writes ``champion.json`` (atomically) and sets ``promoted_at`` on
    the training's serving runs in gold.ml_model_runs.  Idempotent.
    """
    root = models_dir(settings, model_dir)
    current = load_champion(settings, model_dir)
    tid = str(training["training_id"])
    previous = current.get("model_version") if current else None
    if current is not None and previous == tid:
        return {"promoted": False, "model_version": tid, "previous": previous, "reason": "already the champion"}
    qualified = bool(training.get("qualifies"))
    if not (qualified or force or current is None):
        return {
            "promoted": False, "model_version": previous, "previous": previous, "candidate": tid,
            "reason": f"candidate {tid} does not beat its baselines on the holdout; keeping {previous}",
        }
    for name in SERVING_MODELS:
        if not (root / training["versions"][name]).is_dir():
            raise MLJobError(f"artifact {root / training['versions'][name]} is missing: run train_models again")
    promoted_at = _now()
    runs = {r["model_name"]: r for r in training["runs"]}
    pointer = {
        "format_version": CHAMPION_FORMAT,
        "model_version": tid,
        "promoted_at": promoted_at.isoformat(),
        "as_of": training["as_of"],
        "horizon_days": int(training["horizon_days"]),
        "monthly_discount_rate": MONTHLY_DISCOUNT_RATE,
        "feature_names": list(training.get("feature_names", [])),
        "champions": dict(training.get("champions", {})),
        "models": {
            name: {"model_version": training["versions"][name], "artifact_dir": training["versions"][name],
                   "run_id": runs[name]["run_id"], "metrics": runs[name]["metrics"]}
            for name in training["versions"]
        },
        "previous": previous,
    }
    _write_json_atomic(root / CHAMPION_FILE, pointer)
    wh = get_warehouse(settings)
    if "ml_model_runs" in _catalog(wh):
        ids = [runs[n]["run_id"] for n in SERVING_MODELS]
        with wh.connect() as con:
            for rid in ids:
                row = wh.query_df(f"select * from {_tbl(wh, 'ml_model_runs')} where run_id = '{_safe_id(rid)}'")
                if row.empty:
                    continue
                row["promoted_at"] = pd.Series([promoted_at] * len(row), dtype="datetime64[us]")
                row = _restore_types(row)
                wh.replace_rows("gold", "ml_model_runs", row, where={"run_id": rid}, con=con)
    reason = "beats its baselines" if qualified else ("first champion" if current is None else "forced")
    warnings = [] if qualified else [f"{tid} promoted without beating its baselines ({reason})"]
    return {"promoted": True, "model_version": tid, "previous": previous, "reason": reason,
            "promoted_at": promoted_at.isoformat(), "warnings": warnings}


def _safe_id(value: str) -> str:
    if not all(ch.isalnum() or ch in "-_" for ch in value):
        raise MLJobError(f"unexpected run id {value!r}")
    return value


def _restore_types(row: pd.DataFrame) -> pd.DataFrame:
    """A row read back from ml_model_runs, typed for re-insertion (dates as dates, ints as ints)."""
    out = row.copy()
    for c, t in TABLE_COLUMNS["ml_model_runs"]:
        if c not in out.columns:
            continue
        if t == "bigint":
            out[c] = pd.to_numeric(out[c]).astype("Int64")
        elif t == "double":
            out[c] = pd.to_numeric(out[c]).astype("float64")
        elif t == "timestamp":
            out[c] = pd.to_datetime(out[c]).astype("datetime64[us]")
        elif t == "boolean":
            out[c] = out[c].astype(bool)
    return out


# --------------------------------------------------------------------------------- scoring
def score_daily(
    settings: Settings,
    as_of: Any,
    model_dir: str | os.PathLike[str] | None = None,
    *,
    rebuild_marts: bool = True,
    attribution: bool = True,
    dbt_run_results: Path | None = None,
) -> dict[str, Any]:
    """Score every customer as of ``as_of`` with the champion models and write the results back.

    1. Load the champion (``champion.json``); without one, :func:`train_models` as of ``as_of``
       first (promoting the result).  When gold does not hold enough history for that yet
       (:class:`InsufficientHistoryError`, e.g. the first months of a day-by-day backfill), the
       scores are skipped -- ``summary["scores"]["skipped"]`` says why -- and the rest still runs.
    2. Features as of ``as_of`` from gold (RFM from gold.fct_orders; behaviour features when the
       churn model uses them), p_alive / expected purchases / 12-month CLV from the champion's
       BG/NBD + Gamma-Gamma parameters, churn_probability from its calibrated classifier, tiers
       and bands by :mod:`ml.scoring`'s rules.
    3. gold.customer_scores: replace the rows of (``as_of``, model_version); other dates stay.
       gold.customer_segments / gold.segment_profiles: the behavioural segments of the scored
       customers (:func:`ml.segments.segment_customers` on the RFM, tenure and behaviour
       features), replacing the date's rows.
    4. With ``attribution``: gold.attribution_channel_weights replaced by :func:`attribution_from_gold`
       (same transaction as the scores).
    5. With ``rebuild_marts``: ``dbt build`` of the marts that read these tables and everything
       below them, with their tests (:func:`rebuild_ml_marts`), so that gold.dim_customers shows
       the new scores; ``dbt_run_results``: where that build's run_results.json goes (the daily
       DAG's per-model tasks of these marts read it).

    Returns a JSON-able summary.
    """
    began = time.monotonic()
    day = _day(as_of)
    wh = get_warehouse(settings)
    _require_orders(wh)
    warnings: list[str] = []
    trained: dict[str, Any] | None = None
    skipped: str | None = None
    pointer = load_champion(settings, model_dir)
    if pointer is None:
        log.info("no champion model in %s: training as of %s first", models_dir(settings, model_dir), day)
        try:
            trained = train_models(settings, day, model_dir=model_dir, promote=True)
        except InsufficientHistoryError as exc:
            skipped = f"no champion model yet, and training as of {day} is not possible: {exc}"
            log.warning("customer scores skipped: %s", skipped)
        else:
            pointer = load_champion(settings, model_dir)
            if pointer is None:  # pragma: no cover - promote_champion always promotes the first model
                raise MLJobError("training produced no champion; see gold.ml_model_runs")
    with wh.kept_open():  # one open of the database file for the stage's reads and writes (not dbt's)
        parts = _score_and_write(settings, wh, day, pointer, model_dir, attribution, skipped, warnings)
    summary: dict[str, Any] = {"as_of": day.isoformat(), "model_version": None, "trained": trained is not None, **parts}
    del parts
    # the frames died with _score_and_write: hand their memory back before dbt runs DuckDB up to
    # its memory limit in this process (at the large size they held GBs beside it, and the kernel
    # killed the process)
    release_memory()
    summary["dbt"] = (rebuild_ml_marts(settings, run_results_path=dbt_run_results) if rebuild_marts
                      else {"skipped": True})
    summary["warnings"] = warnings
    summary["seconds"] = round(time.monotonic() - began, 1)
    if trained is not None:
        summary["training"] = {k: trained[k] for k in ("training_id", "champions", "qualifies") if k in trained}
    log.info("scored %d customers as of %s with %s", summary["customers_scored"], day, summary["model_version"])
    return to_jsonable(summary)


def _score_and_write(
    settings: Settings, wh: Warehouse, day: dt.date, pointer: Mapping[str, Any] | None, model_dir: Any,
    attribution: bool, skipped: str | None, warnings: list[str],
) -> dict[str, Any]:
    """Steps 2-4 of :func:`score_daily`: score, segment and attribute, write the gold tables in one
    transaction, and return the summary parts. Every frame lives in this function only, so that
    its memory is free once it returns.

    The attribution runs in a second thread while this one scores and segments: the two only read
    gold, and each is mostly one core's work (pandas, lifetimes, the Markov chain), so on two
    cores the stage takes about the longer of the two instead of their sum."""
    scores: pd.DataFrame | None = None
    segments: pd.DataFrame | None = None
    profiles: pd.DataFrame | None = None
    seg_summary: dict[str, Any] = {"skipped": True, "reason": "no scores"}
    version: str | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ml-attribution") as pool:
        attributed = pool.submit(attribution_from_gold, settings) if attribution else None
        if pointer is not None:
            version = str(pointer["model_version"])
            if str(pointer.get("as_of", "")) > day.isoformat():
                warnings.append(f"champion {version} was trained on data up to {pointer['as_of']}, after {day}")
            scored_frame = _score(settings, day, pointer, model_dir)
            if scored_frame is None:
                skipped = f"gold.fct_orders has no paid orders on or before {day}: nothing to score"
            else:
                scores, features = scored_frame
                del scored_frame
                segments, profiles, seg_summary = _segments(features, scores, day, int(pointer["horizon_days"]))
                del features
        attr_frame, attr_summary = attributed.result() if attributed is not None else (None, {"skipped": True})
    if scores is not None or attr_frame is not None:
        ensure_ml_tables(settings)
        with wh.connect() as con:
            if scores is not None:
                wh.replace_rows("gold", "customer_scores", scores,
                                where={"as_of_date": day, "model_version": version}, con=con)
                # one segmentation per date: re-scoring the date replaces it (or removes it when it failed)
                for table, rows, cols in (("customer_segments", segments, SEGMENT_COLUMNS),
                                          ("segment_profiles", profiles, PROFILE_COLUMNS)):
                    rows = rows if rows is not None else pd.DataFrame({c: [] for c in cols})
                    wh.replace_rows("gold", table, rows, where={"as_of_date": day}, con=con)
            if attr_frame is not None:
                wh.replace_rows("gold", "attribution_channel_weights", attr_frame, where=None, con=con)
    return {
        "model_version": version,
        "customers_scored": 0 if scores is None else int(len(scores)),
        "scores": {"skipped": True, "reason": skipped} if scores is None else _scores_summary(scores),
        "segments": seg_summary,
        "attribution": attr_summary,
    }


def _score(
    settings: Settings, day: dt.date, pointer: Mapping[str, Any], model_dir: Any
) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(gold.customer_scores rows as of ``day`` with the champion models, the feature frame
    with every behaviour feature) -- None without customers."""
    clv_model, churn_model = _load_serving_models(settings, pointer, model_dir)
    tx = transactions_from_gold(settings, day)
    if tx.empty:
        return None
    # the behaviour features are the warehouse's work (SQL), the RFM features and the CLV
    # predictions this process's: the two overlap, and meet in merge_extra_features (the last
    # step build_features takes with extra_features)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ml-behaviour") as pool:
        behaviour = pool.submit(behavior_features_from_gold, settings, day)
        try:
            feats, _ = build_features(
                tx, day, horizon_days=int(pointer["horizon_days"]), clv_model=clv_model,
                monthly_discount_rate=float(pointer.get("monthly_discount_rate", MONTHLY_DISCOUNT_RATE)),
            )
        except BaseException:
            wait([behaviour])  # the query ends before its connection does; this error is the one raised
            raise
        extra = behaviour.result()  # the query's error, if any, is raised here
    feats, _ = merge_extra_features(feats, extra)
    for c in churn_model.feature_names:
        if c not in feats.columns:
            feats[c] = np.nan
    churn = churn_model.predict_proba(feats)
    scores = build_customer_scores(
        feats[["customer_id", "p_alive", "expected_purchases_90d", "expected_purchases_365d", "predicted_clv_12m"]],
        churn, as_of_date=day, model_version=str(pointer["model_version"]),
    )
    scores["customer_id"] = scores["customer_id"].astype(str)
    for c in ("p_alive", "churn_probability", "expected_purchases_90d", "expected_purchases_365d", "predicted_clv_12m"):
        scores[c] = scores[c].astype("float64")
    return scores[list(CUSTOMER_SCORES_COLUMNS)], feats


def _segments(
    features: pd.DataFrame, scores: pd.DataFrame, day: dt.date, horizon_days: int
) -> tuple[pd.DataFrame | None, pd.DataFrame | None, dict[str, Any]]:
    """Behavioural segments of the scored customers (:mod:`ml.segments`): rows for
    gold.customer_segments and gold.segment_profiles, and a summary (skipped, with the reason,
    when there are too few customers or features)."""
    frame = features.drop(columns=[c for c in ("p_alive", "predicted_clv_12m") if c in features.columns])
    frame = frame.assign(customer_id=frame["customer_id"].astype(str)).merge(
        scores[["customer_id", "p_alive", "churn_probability", "predicted_clv_12m"]], on="customer_id",
        how="inner", validate="one_to_one")
    try:
        seg = segment_customers(frame, horizon_days=horizon_days)
    except SegmentationError as exc:
        log.warning("behavioural segments skipped: %s", exc)
        return None, None, {"skipped": True, "reason": str(exc)}
    segments, profiles = segment_tables(seg, day)
    summary = {
        "version": seg.version, "k": seg.k, "silhouette": round(seg.silhouette, 4),
        "silhouette_by_k": {str(k): round(v, 4) for k, v in seg.silhouette_by_k.items()},
        "features": seg.features, "dropped_features": seg.dropped_features,
        "segments": {str(r.segment_id): {"name": r.segment_name, "customers": int(r.customers)}
                     for r in profiles.itertuples()},
        "warnings": seg.warnings,
    }
    return segments, profiles[list(PROFILE_COLUMNS)], summary


def _scores_summary(scores: pd.DataFrame) -> dict[str, Any]:
    return {
        "value_tiers": {k: int(v) for k, v in sorted(scores["value_tier"].value_counts().to_dict().items())},
        "churn_risk_bands": {k: int(v) for k, v in sorted(scores["churn_risk_band"].value_counts().to_dict().items())},
        "mean_churn_probability": round(float(scores["churn_probability"].mean()), 6),
        "mean_p_alive": round(float(scores["p_alive"].mean()), 6),
        "total_predicted_clv_12m": round(float(scores["predicted_clv_12m"].sum()), 2),
    }


def rebuild_ml_marts(settings: Settings, run_results_path: Path | None = None) -> dict[str, Any]:
    """``dbt build`` of the models that read the ML tables and everything below them, with their
    tests (:data:`retailpulse.dbt_graph.ML_FED_SELECTOR`): the part of the project the daily run's
    first build leaves out (``stage_dbt(before_ml=True)``). Raises DbtError naming failed nodes."""
    from retailpulse import dbt_runner
    from retailpulse.dbt_graph import ML_FED_SELECTOR

    result = dbt_runner.run_dbt(settings, ["build", "--select", ML_FED_SELECTOR], run_results_path=run_results_path)
    kinds: dict[str, int] = {}
    for n in result.nodes:
        kinds[n["resource_type"]] = kinds.get(n["resource_type"], 0) + 1
    models = sorted(n["name"] for n in result.nodes if n["resource_type"] == "model")
    return {"selected": ML_FED_SELECTOR, "models": models, "nodes": kinds}


__all__ = [
    "BEHAVIOR_FEATURES",
    "CHAMPION_FILE",
    "CHANNEL_WEIGHT_COLUMNS",
    "InsufficientHistoryError",
    "MLJobError",
    "attribution_from_gold",
    "behavior_features_from_gold",
    "ensure_ml_tables",
    "latest_order_date",
    "load_champion",
    "models_dir",
    "promote_champion",
    "rebuild_ml_marts",
    "rfm_summary_from_gold",
    "score_daily",
    "train_models",
    "transactions_from_gold",
]
