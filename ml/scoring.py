"""Rows for ``gold.customer_scores`` and ``gold.ml_model_runs``.

``value_tier`` (by the customer's percentile rank of ``predicted_clv_12m``
among the customers scored in the same run; ties share their average rank):

=============  ==================================
``platinum``   top 5 %      (percentile > 0.95)
``gold``       next 15 %    (0.80 < percentile <= 0.95)
``silver``     next 30 %    (0.50 < percentile <= 0.80)
``bronze``     bottom 50 %  (percentile <= 0.50)
=============  ==================================

``churn_risk_band`` (on the calibrated ``churn_probability`` = probability of
no purchase in the churn horizon, default 90 days):

==========  ==============================
``high``    churn_probability >= 0.75
``medium``  0.40 <= churn_probability < 0.75
``low``     churn_probability < 0.40
==========  ==============================

Both are parameters (``tier_cuts``, ``band_thresholds``) of
:func:`build_customer_scores`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from ml.artifacts import canonical_json, to_jsonable
from ml.evaluation import pick_champion, run_task
from ml.features import DateLike

CUSTOMER_SCORES_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "as_of_date",
    "model_version",
    "p_alive",
    "churn_probability",
    "expected_purchases_90d",
    "expected_purchases_365d",
    "predicted_clv_12m",
    "value_tier",
    "churn_risk_band",
)

MODEL_RUN_COLUMNS: tuple[str, ...] = (
    "run_id",
    "model_name",
    "model_version",
    "trained_at",
    "train_start",
    "train_end",
    "cutoff_date",
    "horizon_days",
    "n_customers",
    "metrics_json",
    "baseline_metrics_json",
    "is_champion",
)

# (lower percentile bound, tier), checked from the top; below the last bound -> "bronze"
VALUE_TIER_CUTS: tuple[tuple[float, str], ...] = ((0.95, "platinum"), (0.80, "gold"), (0.50, "silver"))
DEFAULT_TIER = "bronze"
# (lower probability bound, band), checked from the top; below the last bound -> "low"
CHURN_BAND_THRESHOLDS: tuple[tuple[float, str], ...] = ((0.75, "high"), (0.40, "medium"))
DEFAULT_BAND = "low"

RUN_ID_NAMESPACE = uuid.UUID("6f1c8f0e-5a4b-4e0f-9a53-1f0d9c1b7e21")


def value_tier(
    predicted_clv: pd.Series | np.ndarray,
    tier_cuts: Sequence[tuple[float, str]] = VALUE_TIER_CUTS,
) -> np.ndarray:
    """Tier of each customer by percentile rank of CLV (strictly above a cut -> that tier)."""
    clv = pd.Series(np.asarray(predicted_clv, dtype="float64"))
    if clv.isna().any():
        raise ValueError("predicted_clv contains missing values")
    pct = clv.rank(method="average", pct=True).to_numpy()
    out = np.full(len(clv), DEFAULT_TIER, dtype=object)
    for cut, name in sorted(tier_cuts):  # ascending: higher tiers overwrite
        out[pct > cut] = name
    return out


def churn_risk_band(
    churn_probability: pd.Series | np.ndarray,
    band_thresholds: Sequence[tuple[float, str]] = CHURN_BAND_THRESHOLDS,
) -> np.ndarray:
    """Band of each probability (at or above a threshold -> that band)."""
    p = np.asarray(churn_probability, dtype="float64")
    if np.isnan(p).any():
        raise ValueError("churn_probability contains missing values")
    out = np.full(len(p), DEFAULT_BAND, dtype=object)
    for threshold, name in sorted(band_thresholds):  # ascending: higher bands overwrite
        out[p >= threshold] = name
    return out


def build_customer_scores(
    clv_predictions: pd.DataFrame,
    churn_probability: pd.DataFrame | pd.Series | np.ndarray,
    *,
    as_of_date: DateLike,
    model_version: str,
    tier_cuts: Sequence[tuple[float, str]] = VALUE_TIER_CUTS,
    band_thresholds: Sequence[tuple[float, str]] = CHURN_BAND_THRESHOLDS,
) -> pd.DataFrame:
    """Frame with :data:`CUSTOMER_SCORES_COLUMNS`, one row per customer of ``clv_predictions``.

    ``clv_predictions``: ``customer_id, p_alive, expected_purchases_90d,
    expected_purchases_365d, predicted_clv_12m`` (as from
    :meth:`ml.clv.CLVModel.predict`).  ``churn_probability``: a frame with
    ``customer_id, churn_probability``, a Series indexed by customer id, or an
    array aligned with ``clv_predictions``.  Every customer needs a churn
    probability.
    """
    need = ["customer_id", "p_alive", "expected_purchases_90d", "expected_purchases_365d", "predicted_clv_12m"]
    missing = [c for c in need if c not in clv_predictions.columns]
    if missing:
        raise ValueError(f"clv_predictions is missing {missing}")
    if clv_predictions["customer_id"].duplicated().any():
        raise ValueError("clv_predictions has duplicate customer_id values")
    out = clv_predictions[need].reset_index(drop=True).copy()
    if isinstance(churn_probability, pd.DataFrame):
        churn = churn_probability.set_index("customer_id")["churn_probability"]
        out["churn_probability"] = out["customer_id"].map(churn).astype("float64")
    elif isinstance(churn_probability, pd.Series):
        out["churn_probability"] = out["customer_id"].map(churn_probability).astype("float64")
    else:
        arr = np.asarray(churn_probability, dtype="float64")
        if arr.shape != (len(out),):
            raise ValueError(f"churn_probability has shape {arr.shape}, expected ({len(out)},)")
        out["churn_probability"] = arr
    if out["churn_probability"].isna().any():
        n = int(out["churn_probability"].isna().sum())
        raise ValueError(f"{n} customer(s) have no churn_probability")
    if ((out["churn_probability"] < 0) | (out["churn_probability"] > 1)).any():
        raise ValueError("churn_probability must lie in [0, 1]")
    out["as_of_date"] = pd.Timestamp(as_of_date).date()
    out["model_version"] = model_version
    out["value_tier"] = value_tier(out["predicted_clv_12m"], tier_cuts)
    out["churn_risk_band"] = churn_risk_band(out["churn_probability"], band_thresholds)
    return out[list(CUSTOMER_SCORES_COLUMNS)]


def make_run_id(model_version: str, cutoff_date: DateLike | None, horizon_days: int | None) -> str:
    """Deterministic UUID (v5) of version, cutoff and horizon: re-running a day yields the same id."""
    key = f"{model_version}|{pd.Timestamp(cutoff_date).date() if cutoff_date is not None else ''}|{horizon_days}"
    return str(uuid.uuid5(RUN_ID_NAMESPACE, key))


def build_model_run_record(
    *,
    model_name: str,
    model_version: str,
    train_start: DateLike | None,
    train_end: DateLike | None,
    cutoff_date: DateLike | None,
    horizon_days: int | None,
    n_customers: int,
    metrics: Mapping[str, Any],
    baseline_metrics: Mapping[str, Any] | None = None,
    is_champion: bool = False,
    trained_at: datetime | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """One ``gold.ml_model_runs`` row (keys :data:`MODEL_RUN_COLUMNS`).

    ``metrics_json`` / ``baseline_metrics_json`` are canonical JSON (sorted keys,
    NaN -> null).  ``trained_at`` defaults to now (UTC); ``run_id`` defaults to
    :func:`make_run_id`.
    """

    def _day(v: DateLike | None) -> Any:
        return None if v is None else pd.Timestamp(v).date()

    return {
        "run_id": run_id or make_run_id(model_version, cutoff_date, horizon_days),
        "model_name": model_name,
        "model_version": model_version,
        "trained_at": trained_at or datetime.now(UTC).replace(microsecond=0),
        "train_start": _day(train_start),
        "train_end": _day(train_end),
        "cutoff_date": _day(cutoff_date),
        "horizon_days": None if horizon_days is None else int(horizon_days),
        "n_customers": int(n_customers),
        "metrics_json": canonical_json(metrics),
        "baseline_metrics_json": canonical_json(baseline_metrics or {}),
        "is_champion": bool(is_champion),
    }


def mark_champions(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``records`` with ``is_champion`` set by :func:`ml.evaluation.pick_champion`, per task."""
    out = [dict(r) for r in records]
    for task in sorted({run_task(r) for r in out}):
        group = [r for r in out if run_task(r) == task]
        champ = pick_champion(group, task)
        for r in group:
            r["is_champion"] = champ is not None and r["run_id"] == champ["run_id"]
    return out


def model_runs_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Records as a frame with exactly :data:`MODEL_RUN_COLUMNS`."""
    frame = pd.DataFrame([{k: r.get(k) for k in MODEL_RUN_COLUMNS} for r in records], columns=list(MODEL_RUN_COLUMNS))
    return frame


__all__ = [
    "CHURN_BAND_THRESHOLDS",
    "CUSTOMER_SCORES_COLUMNS",
    "MODEL_RUN_COLUMNS",
    "VALUE_TIER_CUTS",
    "build_customer_scores",
    "build_model_run_record",
    "churn_risk_band",
    "make_run_id",
    "mark_champions",
    "model_runs_frame",
    "to_jsonable",
    "value_tier",
]
