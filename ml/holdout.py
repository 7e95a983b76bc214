"""Decile tables of a training's holdout evaluation (rows for gold.ml_holdout_deciles).

:func:`ml.pipeline.run_ml` evaluates its backtest models on a time-split holdout: models trained
on features as of ``A - 2h`` (labels in ``(A - 2h, A - h]``) predict every customer as of
``A - h``, and the predictions are compared with what happened in ``(A - h, A]``.  Those
predictions never saw their outcomes, so they are what the dashboard's calibration plot and
decile chart show right after the first training, before any live score is 90 days old.

Aggregates only (no customer ids): one row per model and bin.

* ``churn_xgb``: reliability table (:func:`ml.evaluation.calibration_table`, quantile bins of the
  predicted churn probability, bin 1 = lowest); ``mean_predicted`` is the mean predicted
  probability, ``mean_observed`` the observed churn rate (no paid order in the horizon).
* ``clv_bgnbd_gg`` and ``clv_xgb``: deciles of predicted revenue in the horizon (bin 1 = highest
  predicted); ``mean_predicted`` / ``mean_observed`` are predicted / actual revenue per customer,
  ``total_observed`` the decile's actual revenue.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from ml.evaluation import calibration_table

HOLDOUT_DECILE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("training_id", "text"), ("model_name", "text"), ("task", "text"), ("cutoff_date", "date"),
    ("evaluation_start", "date"), ("evaluation_end", "date"), ("horizon_days", "bigint"), ("bin", "bigint"),
    ("customers", "bigint"), ("mean_predicted", "double"), ("mean_observed", "double"),
    ("total_observed", "double"), ("predicted_low", "double"), ("predicted_high", "double"),
)
SPEND_PREDICTIONS = {"clv_bgnbd_gg": "pred_spend_bgnbd_gg", "clv_xgb": "pred_spend_xgb"}


def _deciles_desc(predicted: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Bin 1..n_bins of equal size by predicted value, highest first (ties broken by position)."""
    order = np.argsort(-predicted, kind="stable")
    bins = np.empty(len(predicted), dtype="int64")
    bins[order] = np.arange(len(predicted)) * n_bins // max(len(predicted), 1) + 1
    return bins


def holdout_deciles(
    holdout_predictions: pd.DataFrame,
    *,
    training_id: str,
    cutoff_date: dt.date,
    horizon_days: int,
    n_bins: int = 10,
) -> pd.DataFrame:
    """Rows for gold.ml_holdout_deciles from :attr:`ml.pipeline.MLRunResult.holdout_predictions`."""
    hp = holdout_predictions
    rows: list[dict] = []
    if len(hp):
        cal = calibration_table(hp["churned"], hp["churn_probability"], n_bins=n_bins)
        for r in cal.itertuples(index=False):
            rows.append({"model_name": "churn_xgb", "task": "churn", "bin": int(r.bin) + 1, "customers": int(r.n),
                         "mean_predicted": float(r.mean_predicted), "mean_observed": float(r.observed_rate),
                         "total_observed": float(r.observed_rate * r.n),
                         "predicted_low": float(r.p_low), "predicted_high": float(r.p_high)})
        actual = hp["future_spend"].to_numpy(dtype="float64")
        for name, col in SPEND_PREDICTIONS.items():
            pred = hp[col].to_numpy(dtype="float64")
            frame = pd.DataFrame({"bin": _deciles_desc(pred, n_bins), "p": pred, "y": actual})
            agg = frame.groupby("bin", sort=True).agg(customers=("y", "size"), mean_predicted=("p", "mean"),
                                                      mean_observed=("y", "mean"), total_observed=("y", "sum"),
                                                      predicted_low=("p", "min"), predicted_high=("p", "max"))
            for b, r in agg.iterrows():
                rows.append({"model_name": name, "task": "clv", "bin": int(b), "customers": int(r["customers"]),
                             **{k: float(r[k]) for k in ("mean_predicted", "mean_observed", "total_observed",
                                                          "predicted_low", "predicted_high")}})
    out = pd.DataFrame(rows, columns=[c for c, _ in HOLDOUT_DECILE_COLUMNS if c not in (
        "training_id", "cutoff_date", "evaluation_start", "evaluation_end", "horizon_days")])
    h = int(horizon_days)
    out.insert(0, "training_id", str(training_id))
    out.insert(3, "cutoff_date", cutoff_date)
    out.insert(4, "evaluation_start", cutoff_date - dt.timedelta(days=h))
    out.insert(5, "evaluation_end", cutoff_date)
    out.insert(6, "horizon_days", h)
    for c, t in HOLDOUT_DECILE_COLUMNS:
        if t == "bigint":
            out[c] = out[c].astype("int64")
        elif t == "double":
            out[c] = out[c].astype("float64")
        elif t == "date":
            out[c] = pd.to_datetime(out[c]).dt.date
    return out[[c for c, _ in HOLDOUT_DECILE_COLUMNS]]


__all__ = ["HOLDOUT_DECILE_COLUMNS", "holdout_deciles"]
