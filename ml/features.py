"""Customer features from a transaction log, in pure pandas.

This module is the *reference implementation* of the RFM summary the warehouse
builds in SQL: the SQL model is tested against :func:`rfm_summary`.

Input transaction frame (column names configurable)::

    customer_id   any hashable id
    ordered_at    timestamp (naive or tz-aware) or date
    amount        numeric order value in the reporting currency

Time is measured in whole calendar days.  A timestamp belongs to the calendar
day it falls on *in its own time zone* (tz-aware columns are not converted to
UTC first), so callers should pass timestamps in the business's reporting time
zone.  A cutoff ("as of") date includes every transaction on that day.

RFM definitions (identical to ``lifetimes.utils.summary_data_from_transaction_data``
with ``freq="D"``; all orders of one day are merged into one purchase day):

``frequency``
    number of *repeat* purchase days (distinct purchase days minus one).
``recency``
    days between the first and the last purchase day (0 for one-time buyers).
``T``
    days between the first purchase day and the cutoff day (customer age).
``monetary_value``
    mean of the daily totals of the repeat purchase days (the first purchase
    day is excluded); 0 for customers without repeat purchases.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import TypeAlias

import numpy as np
import pandas as pd

DateLike: TypeAlias = str | date | datetime | pd.Timestamp

RFM_COLUMNS: tuple[str, ...] = ("customer_id", "frequency", "recency", "T", "monetary_value")

_DAY = np.timedelta64(1, "D")


def _as_day(value: DateLike, tz: object | None = None) -> pd.Timestamp:
    """A naive midnight timestamp for the calendar day of ``value``."""
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        if tz is not None:
            ts = ts.tz_convert(tz)
        ts = ts.tz_localize(None)
    return ts.normalize()


def _day_column(times: pd.Series) -> pd.Series:
    """Calendar day (naive midnight timestamps) of each timestamp, in its own time zone."""
    ts = pd.to_datetime(times)
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_localize(None)
    return ts.dt.normalize().astype("datetime64[ns]")


def _column_tz(times: pd.Series) -> object | None:
    try:
        return pd.to_datetime(times).dt.tz
    except (TypeError, ValueError):  # pragma: no cover - defensive
        return None


def daily_purchases(
    transactions: pd.DataFrame,
    cutoff: DateLike | None = None,
    *,
    customer_col: str = "customer_id",
    time_col: str = "ordered_at",
    amount_col: str = "amount",
) -> pd.DataFrame:
    """Merge orders into purchase days.

    Returns one row per (customer, day) with the columns ``customer_id``,
    ``day`` (naive midnight timestamp), ``amount`` (sum of the day's orders) and
    ``n_orders``, restricted to days on or before ``cutoff`` when given, sorted
    by customer and day.
    """
    _require_columns(transactions, (customer_col, time_col, amount_col))
    frame = pd.DataFrame(
        {
            "customer_id": transactions[customer_col].to_numpy(),
            "day": _day_column(transactions[time_col]).to_numpy(),
            "amount": pd.to_numeric(transactions[amount_col]).astype("float64").to_numpy(),
        }
    )
    if frame["customer_id"].isna().any():
        raise ValueError(f"transactions.{customer_col} contains missing customer ids")
    if frame["day"].isna().any():
        raise ValueError(f"transactions.{time_col} contains missing timestamps")
    if cutoff is not None:
        cutoff_day = _as_day(cutoff, _column_tz(transactions[time_col]))
        frame = frame[frame["day"] <= cutoff_day]
    daily = (
        frame.groupby(["customer_id", "day"], sort=True)
        .agg(amount=("amount", "sum"), n_orders=("amount", "size"))
        .reset_index()
    )
    return daily


def rfm_summary(
    transactions: pd.DataFrame,
    cutoff: DateLike,
    *,
    customer_col: str = "customer_id",
    time_col: str = "ordered_at",
    amount_col: str = "amount",
) -> pd.DataFrame:
    """RFM summary as of ``cutoff`` with lifetimes' definitions (see module docstring).

    Only customers with at least one transaction on or before ``cutoff`` appear.
    Returns the columns :data:`RFM_COLUMNS` (``frequency`` int64, the others
    float64), one row per customer, sorted by ``customer_id``.
    """
    daily = daily_purchases(
        transactions, cutoff, customer_col=customer_col, time_col=time_col, amount_col=amount_col
    )
    cutoff_day = _as_day(cutoff, _column_tz(transactions[time_col]))
    return _rfm_from_daily(daily, cutoff_day)


def _rfm_from_daily(daily: pd.DataFrame, cutoff_day: pd.Timestamp) -> pd.DataFrame:
    if daily.empty:
        return pd.DataFrame(
            {
                "customer_id": pd.Series([], dtype=object),
                "frequency": pd.Series([], dtype="int64"),
                "recency": pd.Series([], dtype="float64"),
                "T": pd.Series([], dtype="float64"),
                "monetary_value": pd.Series([], dtype="float64"),
            }
        )
    g = daily.groupby("customer_id", sort=True)
    first = g["day"].transform("min")
    repeat_amount = daily["amount"].where(daily["day"] != first)
    per = pd.DataFrame(
        {
            "first": g["day"].min(),
            "last": g["day"].max(),
            "n_days": g["day"].size(),
            "monetary_value": repeat_amount.groupby(daily["customer_id"], sort=True).mean(),
        }
    )
    out = pd.DataFrame(
        {
            "customer_id": per.index.to_numpy(),
            "frequency": (per["n_days"] - 1).astype("int64").to_numpy(),
            "recency": ((per["last"] - per["first"]) / _DAY).astype("float64").to_numpy(),
            "T": ((cutoff_day - per["first"]) / _DAY).astype("float64").to_numpy(),
            "monetary_value": per["monetary_value"].fillna(0.0).astype("float64").to_numpy(),
        }
    )
    return out


def behavioral_features(
    transactions: pd.DataFrame,
    as_of: DateLike,
    *,
    windows: Sequence[int] = (30, 90, 180),
    customer_col: str = "customer_id",
    time_col: str = "ordered_at",
    amount_col: str = "amount",
) -> pd.DataFrame:
    """RFM summary plus order-level behaviour as of ``as_of`` (inclusive).

    Columns: the :data:`RFM_COLUMNS`, then ``n_orders`` (orders, not days),
    ``total_spend``, ``avg_order_value``, ``max_order_value``,
    ``first_order_value``, ``days_since_last`` (= T - recency),
    ``mean_interpurchase_days`` (recency / frequency, NaN for one-time buyers),
    and for every window ``w``: ``purchase_days_last_{w}d`` and
    ``spend_last_{w}d`` (days in ``(as_of - w, as_of]``).
    """
    _require_columns(transactions, (customer_col, time_col, amount_col))
    tz = _column_tz(transactions[time_col])
    as_of_day = _as_day(as_of, tz)
    # the customers as integer codes in id order: every group-by and lookup below hashes small
    # integers instead of strings (several times faster on 100k customers), the ids come back at
    # the end. A missing id (code -1) is left out, as a group-by on the ids leaves it out.
    codes, ids = pd.factorize(transactions[customer_col].to_numpy(), sort=True)
    orders = pd.DataFrame(
        {
            "customer_id": codes,
            "day": _day_column(transactions[time_col]).to_numpy(),
            "amount": pd.to_numeric(transactions[amount_col]).astype("float64").to_numpy(),
        }
    )
    orders = orders[(orders["day"] <= as_of_day) & (orders["customer_id"] >= 0)]
    daily = (
        orders.groupby(["customer_id", "day"], sort=True)
        .agg(amount=("amount", "sum"), n_orders=("amount", "size"))
        .reset_index()
    )
    rfm = _rfm_from_daily(daily, as_of_day)
    if rfm.empty:
        return rfm
    og = orders.groupby("customer_id", sort=True)["amount"]
    first_day_value = daily.groupby("customer_id", sort=True)["amount"].first()
    extra = pd.DataFrame(
        {
            "n_orders": og.size().astype("int64"),
            "total_spend": og.sum(),
            "avg_order_value": og.mean(),
            "max_order_value": og.max(),
            "first_order_value": first_day_value,
        }
    )
    out = rfm.merge(extra, left_on="customer_id", right_index=True, how="left")
    out["days_since_last"] = out["T"] - out["recency"]
    out["mean_interpurchase_days"] = np.where(
        out["frequency"] > 0, out["recency"] / out["frequency"].clip(lower=1), np.nan
    )
    for w in windows:
        recent = daily[daily["day"] > as_of_day - pd.Timedelta(days=int(w))]
        rg = recent.groupby("customer_id", sort=True)["amount"]
        out[f"purchase_days_last_{w}d"] = (
            out["customer_id"].map(rg.size()).fillna(0).astype("int64")
        )
        out[f"spend_last_{w}d"] = out["customer_id"].map(rg.sum()).fillna(0.0).astype("float64")
    out = out.reset_index(drop=True)
    out["customer_id"] = np.asarray(ids, dtype=object)[out["customer_id"].to_numpy()]
    return out


def future_labels(
    transactions: pd.DataFrame,
    as_of: DateLike,
    horizon_days: int,
    customers: pd.Series | Sequence[object] | None = None,
    *,
    customer_col: str = "customer_id",
    time_col: str = "ordered_at",
    amount_col: str = "amount",
) -> pd.DataFrame:
    """Outcomes in the window of days ``(as_of, as_of + horizon_days]``.

    Returns ``customer_id``, ``future_purchase_days``, ``future_orders``,
    ``future_spend`` and ``churned`` (1 when the customer made no purchase in
    the window, else 0) for ``customers`` (default: everybody who purchased on
    or before ``as_of``).
    """
    if horizon_days <= 0:
        raise ValueError("horizon_days must be positive")
    _require_columns(transactions, (customer_col, time_col, amount_col))
    tz = _column_tz(transactions[time_col])
    start = _as_day(as_of, tz)
    end = start + pd.Timedelta(days=int(horizon_days))
    day = _day_column(transactions[time_col])
    if customers is None:
        customers = pd.Series(
            np.sort(pd.unique(transactions.loc[(day <= start).to_numpy(), customer_col].to_numpy()))
        )
    cust = pd.Series(np.asarray(customers), name="customer_id")
    mask = ((day > start) & (day <= end)).to_numpy()
    win = pd.DataFrame(
        {
            "customer_id": transactions.loc[mask, customer_col].to_numpy(),
            "day": day[mask].to_numpy(),
            "amount": pd.to_numeric(transactions.loc[mask, amount_col]).astype("float64").to_numpy(),
        }
    )
    g = win.groupby("customer_id")
    days = g["day"].nunique()
    orders = g.size()
    spend = g["amount"].sum()
    out = pd.DataFrame({"customer_id": cust})
    out["future_purchase_days"] = out["customer_id"].map(days).fillna(0).astype("int64")
    out["future_orders"] = out["customer_id"].map(orders).fillna(0).astype("int64")
    out["future_spend"] = out["customer_id"].map(spend).fillna(0.0).astype("float64")
    out["churned"] = (out["future_purchase_days"] == 0).astype("int64")
    return out


def _require_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"missing column(s) {missing}; got {list(frame.columns)}")
