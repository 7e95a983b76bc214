"""One call from a transaction log to ``customer_scores`` and ``ml_model_runs`` rows.

:func:`run_ml` (pure: DataFrames in, DataFrames out; saving artifacts is the
caller's choice via :mod:`ml.artifacts`).  With ``A`` the as-of date and ``h``
the horizon (default 90 days):

1. **Backtest.**  Models are trained on features as of ``A - 2h`` with labels
   from ``(A - 2h, A - h]`` and evaluated on features as of ``A - h`` with
   labels from ``(A - h, A]`` (a customer-level holdout in time).  Three runs
   are evaluated beside their naive baselines (:mod:`ml.evaluation`):

   * ``clv_bgnbd_gg`` -- BG/NBD x Gamma-Gamma expected revenue in the horizon;
   * ``clv_xgb`` -- xgboost regressor of revenue in the horizon;
   * ``churn_xgb`` -- calibrated xgboost classifier of "no purchase in the horizon".

   :func:`ml.evaluation.pick_champion` sets ``is_champion`` per task.
2. **Final models.**  The classifier/regressor are re-trained on the most
   recent complete window (features as of ``A - h``, labels ``(A - h, A]``) and
   BG/NBD + Gamma-Gamma is fitted on the history up to ``A``.
3. **Scores** as of ``A``: ``p_alive``, expected purchases and
   ``predicted_clv_12m`` (12-month discounted value) come from BG/NBD +
   Gamma-Gamma -- the only model that yields a 12-month discounted value;
   ``churn_probability`` from the calibrated classifier.  ``model_version`` of
   the scores is ``"<clv version>+<churn version>"`` (split on ``+`` to join
   ``ml_model_runs``).  When the classifier is not champion (does not beat its
   baseline) it still scores, and ``MLRunResult.warnings`` says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from ml.artifacts import make_model_version
from ml.clv import CLVModel
from ml.evaluation import calibration_table, churn_baseline_metrics, churn_metrics, clv_baseline, clv_metrics
from ml.features import DateLike, _as_day, _column_tz, _day_column
from ml.scoring import build_customer_scores, build_model_run_record, mark_champions, model_runs_frame
from ml.supervised import (
    FEATURE_COLUMNS,
    ChurnModel,
    CLVRegressor,
    ExtraFeatures,
    SupervisedConfig,
    build_features,
    build_training_set,
    train_churn_model,
    train_clv_regressor,
)

CLV_MODEL = "clv_bgnbd_gg"
CLV_XGB_MODEL = "clv_xgb"
CHURN_MODEL = "churn_xgb"


@dataclass
class MLRunResult:
    scores: pd.DataFrame
    """Rows for gold.customer_scores."""
    model_runs: pd.DataFrame
    """Rows for gold.ml_model_runs (one per evaluated model)."""
    clv_model: CLVModel
    churn_model: ChurnModel
    clv_regressor: CLVRegressor
    versions: dict[str, str]
    evaluation: dict[str, Any]
    holdout_predictions: pd.DataFrame
    warnings: list[str] = field(default_factory=list)


def run_ml(
    transactions: pd.DataFrame,
    as_of_date: DateLike,
    *,
    horizon_days: int = 90,
    config: SupervisedConfig | None = None,
    penalizer_coef: float = 0.0,
    monthly_discount_rate: float = 0.01,
    trained_at: datetime | None = None,
    customer_col: str = "customer_id",
    time_col: str = "ordered_at",
    amount_col: str = "amount",
    extra_features: ExtraFeatures | None = None,
) -> MLRunResult:
    """Backtest, train and score (see module docstring).  Needs at least ``2 * horizon_days`` of history."""
    cfg = config or SupervisedConfig()
    cols = {"customer_col": customer_col, "time_col": time_col, "amount_col": amount_col}
    as_of = _as_day(as_of_date, _column_tz(transactions[time_col]))
    h = int(horizon_days)
    days = _day_column(transactions[time_col])
    in_scope = (days <= as_of).to_numpy()
    data_start = days[in_scope].min()
    fingerprint = {
        "n_transactions": int(in_scope.sum()),
        "amount_sum": round(float(pd.to_numeric(transactions.loc[in_scope, amount_col]).sum()), 6),
        "n_customers": int(transactions.loc[in_scope, customer_col].nunique()),
        "data_start": data_start,
    }

    # 1. backtest
    train_bt = build_training_set(
        transactions, as_of - pd.Timedelta(days=h), horizon_days=h, penalizer_coef=penalizer_coef,
        extra_features=extra_features, **cols,
    )
    holdout = build_training_set(
        transactions, as_of, horizon_days=h, penalizer_coef=penalizer_coef, extra_features=extra_features, **cols
    )
    if train_bt.feature_names != holdout.feature_names:
        raise ValueError(
            f"extra features differ between feature dates: {train_bt.feature_names} vs {holdout.feature_names}"
        )
    # an extra feature without a single value at either feature date (its source is not there, e.g.
    # a bare transaction log has no web or CRM data) is left out rather than learned as "missing"
    absent = [c for c in holdout.feature_names if c not in FEATURE_COLUMNS
              and (train_bt.frame[c].isna().all() or holdout.frame[c].isna().all())]
    if absent:
        kept = tuple(c for c in holdout.feature_names if c not in absent)
        train_bt, holdout = replace(train_bt, feature_names=kept), replace(holdout, feature_names=kept)
    names = holdout.feature_names
    churn_bt = train_churn_model(train_bt.X, train_bt.churned, config=cfg, horizon_days=h, feature_names=names)
    reg_bt = train_clv_regressor(train_bt.X, train_bt.future_spend, config=cfg, horizon_days=h, feature_names=names)
    y_churn, y_spend = holdout.churned, holdout.future_spend
    p_churn = churn_bt.predict_proba(holdout.X)
    spend_bg = holdout.frame["expected_spend_horizon"].to_numpy(dtype="float64")
    spend_xgb = reg_bt.predict(holdout.X)
    spend_base = clv_baseline(holdout.frame, h)
    churn_eval = churn_metrics(y_churn, p_churn)
    churn_base = churn_baseline_metrics(
        y_churn, holdout.frame["days_since_last"].to_numpy(), train_base_rate=float(train_bt.churned.mean())
    )
    clv_base = clv_metrics(y_spend, spend_base)
    evaluation = {
        CLV_MODEL: {"metrics": clv_metrics(y_spend, spend_bg), "baseline_metrics": clv_base},
        CLV_XGB_MODEL: {"metrics": clv_metrics(y_spend, spend_xgb), "baseline_metrics": clv_base},
        CHURN_MODEL: {
            "metrics": churn_eval,
            "baseline_metrics": churn_base,
            "calibration_table": calibration_table(y_churn, p_churn),
        },
    }
    holdout_predictions = pd.DataFrame(
        {
            "customer_id": holdout.frame["customer_id"].to_numpy(),
            "churned": y_churn,
            "churn_probability": p_churn,
            "future_spend": y_spend,
            "pred_spend_bgnbd_gg": spend_bg,
            "pred_spend_xgb": spend_xgb,
            "pred_spend_baseline": spend_base,
        }
    )

    # 2. final models
    churn_final = train_churn_model(holdout.X, holdout.churned, config=cfg, horizon_days=h, feature_names=names)
    reg_final = train_clv_regressor(holdout.X, holdout.future_spend, config=cfg, horizon_days=h, feature_names=names)
    feats_now, clv_now = build_features(
        transactions, as_of, horizon_days=h, penalizer_coef=penalizer_coef,
        monthly_discount_rate=monthly_discount_rate,
        customer_col=customer_col, time_col=time_col, amount_col=amount_col,
        extra_features=None if extra_features is None else extra_features(as_of),
    )

    # 3. versions, runs, scores
    window = {"train_start": data_start, "train_end": as_of, "horizon_days": h}
    extra_names = [c for c in names if c not in FEATURE_COLUMNS]
    extra = {"extra_features": extra_names} if extra_names else {}  # versions without extras stay as before
    versions = {
        CLV_MODEL: make_model_version(
            CLV_MODEL, as_of,
            {"params": clv_now.params, "penalizer": penalizer_coef, "discount": monthly_discount_rate, "data": fingerprint, **window},
        ),
        CLV_XGB_MODEL: make_model_version(CLV_XGB_MODEL, as_of, {"config": asdict(cfg), "data": fingerprint, **window, **extra}),
        CHURN_MODEL: make_model_version(CHURN_MODEL, as_of, {"config": asdict(cfg), "data": fingerprint, **window, **extra}),
    }
    n_customers = {CLV_MODEL: len(feats_now), CLV_XGB_MODEL: len(holdout.frame), CHURN_MODEL: len(holdout.frame)}
    records = []
    for name in (CLV_MODEL, CLV_XGB_MODEL, CHURN_MODEL):
        rec = build_model_run_record(
            model_name=name,
            model_version=versions[name],
            train_start=data_start,
            train_end=as_of,
            cutoff_date=as_of,
            horizon_days=h,
            n_customers=n_customers[name],
            metrics=evaluation[name]["metrics"],
            baseline_metrics=evaluation[name]["baseline_metrics"],
            trained_at=trained_at,
        )
        rec["metrics"] = evaluation[name]["metrics"]
        rec["baseline_metrics"] = evaluation[name]["baseline_metrics"]
        records.append(rec)
    records = mark_champions(records)
    champions = {r["model_name"]: r["is_champion"] for r in records}
    warnings = []
    if absent:
        warnings.append(f"extra features without any value, left out: {absent}")
    if not champions[CHURN_MODEL]:
        warnings.append(
            f"{CHURN_MODEL} did not beat its baseline on the holdout "
            f"(auc {churn_eval['auc']:.4f} vs {churn_base['auc']:.4f}, brier {churn_eval['brier']:.4f} vs {churn_base['brier']:.4f})"
        )
    if not champions[CLV_MODEL]:
        warnings.append(f"{CLV_MODEL} is not the CLV champion on the holdout")

    churn_now = churn_final.predict_proba(feats_now)
    clv_pred = feats_now[
        ["customer_id", "p_alive", "expected_purchases_90d", "expected_purchases_365d", "predicted_clv_12m"]
    ]
    scores = build_customer_scores(
        clv_pred,
        np.asarray(churn_now),
        as_of_date=as_of,
        model_version=f"{versions[CLV_MODEL]}+{versions[CHURN_MODEL]}",
    )
    return MLRunResult(
        scores=scores,
        model_runs=model_runs_frame(records),
        clv_model=clv_now,
        churn_model=churn_final,
        clv_regressor=reg_final,
        versions=versions,
        evaluation=evaluation,
        holdout_predictions=holdout_predictions,
        warnings=warnings,
    )


__all__ = ["CHURN_MODEL", "CLV_MODEL", "CLV_XGB_MODEL", "MLRunResult", "run_ml"]
