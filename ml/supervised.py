"""Supervised churn classifier and CLV regressor (xgboost) on a time split.

Time split.  For a training cutoff ``C`` and horizon ``h`` days (default 90):

* features are computed from transactions on or before ``C - h`` (the
  "feature date"), including the BG/NBD + Gamma-Gamma outputs of a model
  fitted on that same history (``p_alive``, expected purchases, ...);
* labels come from the window ``(C - h, C]``: ``churned`` = no purchase in the
  window, ``future_spend`` = revenue in the window.

A model trained that way scores customers with features as of ``C`` and
predicts the window ``(C, C + h]``.

Churn probability.  BG/NBD's ``p_alive`` is 1 for every one-time buyer by
construction, so it cannot be the churn score on its own; it is one feature of
an xgboost classifier whose scores are calibrated on a held-out validation fold
(isotonic regression, or Platt scaling when the fold is small).

Determinism.  Fixed seeds, ``tree_method="hist"`` and a small fixed thread
count make repeated runs bit-identical.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from xgboost import XGBClassifier, XGBRegressor

from ml.clv import CLVModel, InsufficientDataError, expected_purchases, fit_clv
from ml.features import DateLike, _as_day, behavioral_features, future_labels

RFM_FEATURES: tuple[str, ...] = ("frequency", "recency", "T", "monetary_value")
BEHAVIOR_FEATURES: tuple[str, ...] = (
    "n_orders",
    "total_spend",
    "avg_order_value",
    "max_order_value",
    "first_order_value",
    "days_since_last",
    "mean_interpurchase_days",
    "purchase_days_last_30d",
    "spend_last_30d",
    "purchase_days_last_90d",
    "spend_last_90d",
    "purchase_days_last_180d",
    "spend_last_180d",
)
PROBABILISTIC_FEATURES: tuple[str, ...] = (
    "p_alive",
    "expected_purchases_90d",
    "expected_purchases_365d",
    "expected_avg_value",
    "expected_spend_90d",
    "predicted_clv_12m",
    "expected_purchases_horizon",
    "expected_spend_horizon",
)
FEATURE_COLUMNS: tuple[str, ...] = RFM_FEATURES + BEHAVIOR_FEATURES + PROBABILISTIC_FEATURES

ExtraFeatures = Callable[[pd.Timestamp], pd.DataFrame]
"""``as_of -> frame`` of additional numeric features (``customer_id`` + columns) known on ``as_of``.

Used for features that do not come from the transaction log (sessions, support cases, consent;
see :mod:`ml.jobs`).  The callable is asked once per feature date of a time split, so it must
only use information from on or before the date it is given.
"""


def merge_extra_features(features: pd.DataFrame, extra: pd.DataFrame | None) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """``features`` left-joined with the numeric columns of ``extra`` on ``customer_id``.

    Returns the merged frame and the names of the added columns (in ``extra``'s order).
    Customers missing from ``extra`` get NaN (xgboost treats it as missing).  Column names that
    clash with :data:`FEATURE_COLUMNS` raise ``ValueError``.
    """
    if extra is None:
        return features, ()
    if "customer_id" not in extra.columns:
        raise ValueError(f"extra features need a customer_id column; got {list(extra.columns)}")
    if extra["customer_id"].duplicated().any():
        raise ValueError("extra features have duplicate customer_id values")
    names = tuple(c for c in extra.columns if c != "customer_id")
    clash = sorted(set(names) & (set(features.columns) - {"customer_id"}))
    if clash:
        raise ValueError(f"extra feature names clash with built-in features: {clash}")
    values = extra[["customer_id", *names]].copy()
    for c in names:
        values[c] = pd.to_numeric(values[c], errors="raise").astype("float64")
    # align the key types (ids may come back from SQL as another type than the transaction log's)
    key = features["customer_id"].astype(str)
    values.index = values["customer_id"].astype(str)
    out = features.copy()
    for c in names:
        out[c] = key.map(values[c]).to_numpy(dtype="float64")
    return out, names


@dataclass(frozen=True)
class SupervisedConfig:
    """Hyper-parameters shared by the churn classifier and the CLV regressor."""

    seed: int = 42
    nthread: int = 1  # OpenMP threads spin under CPU contention; 1 is fastest on shared machines
    n_estimators: int = 200
    max_depth: int = 3
    learning_rate: float = 0.05
    min_child_weight: float = 20.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    reg_lambda: float = 1.0
    validation_fraction: float = 0.25
    calibration: Literal["auto", "isotonic", "sigmoid"] = "auto"
    isotonic_min_rows: int = 1000
    regression_objective: str = "reg:tweedie"
    tweedie_variance_power: float = 1.5

    def xgb_params(self) -> dict[str, Any]:
        return {
            "n_estimators": self.n_estimators,
            "max_depth": self.max_depth,
            "learning_rate": self.learning_rate,
            "min_child_weight": self.min_child_weight,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "reg_lambda": self.reg_lambda,
            "tree_method": "hist",
            "random_state": self.seed,
            "n_jobs": self.nthread,
        }


# ---------------------------------------------------------------------------
# features and labels


def build_features(
    transactions: pd.DataFrame,
    as_of: DateLike,
    *,
    horizon_days: int = 90,
    clv_model: CLVModel | None = None,
    penalizer_coef: float = 0.0,
    monthly_discount_rate: float = 0.01,
    customer_col: str = "customer_id",
    time_col: str = "ordered_at",
    amount_col: str = "amount",
    extra_features: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, CLVModel]:
    """Feature frame as of ``as_of`` (``customer_id`` + :data:`FEATURE_COLUMNS`) and the CLV model.

    Without ``clv_model`` a BG/NBD + Gamma-Gamma model is fitted on the RFM
    summary as of ``as_of`` (no information from after ``as_of`` is used).
    ``expected_purchases_horizon`` / ``expected_spend_horizon`` are the BG/NBD
    expectations for the next ``horizon_days``.  ``extra_features`` (a frame
    with ``customer_id`` and numeric columns, as of the same date) are appended
    after :data:`FEATURE_COLUMNS` (see :func:`merge_extra_features`).
    """
    feats = behavioral_features(
        transactions, as_of, customer_col=customer_col, time_col=time_col, amount_col=amount_col
    )
    if feats.empty:
        raise InsufficientDataError(f"no transactions on or before {as_of}")
    model = clv_model or fit_clv(feats[["customer_id", *RFM_FEATURES]], penalizer_coef=penalizer_coef)
    pred = model.predict(feats[["customer_id", *RFM_FEATURES]], monthly_discount_rate=monthly_discount_rate)
    f = feats["frequency"].to_numpy(dtype="float64")
    rec = feats["recency"].to_numpy(dtype="float64")
    t = feats["T"].to_numpy(dtype="float64")
    e_h = expected_purchases(model, horizon_days / model.time_unit_days, f, rec, t)
    out = feats.copy()
    for col in PROBABILISTIC_FEATURES[:6]:
        out[col] = pred[col].to_numpy()
    out["expected_purchases_horizon"] = e_h
    out["expected_spend_horizon"] = e_h * pred["expected_avg_value"].to_numpy()
    merged, _ = merge_extra_features(out[["customer_id", *FEATURE_COLUMNS]], extra_features)
    return merged, model


@dataclass(frozen=True)
class TrainingSet:
    """Features as of ``feature_date`` joined with labels of ``(feature_date, label_end]``."""

    frame: pd.DataFrame
    feature_date: pd.Timestamp
    label_end: pd.Timestamp
    horizon_days: int
    clv_model: CLVModel
    feature_names: tuple[str, ...] = FEATURE_COLUMNS
    """:data:`FEATURE_COLUMNS` plus the extra features, if any."""

    @property
    def X(self) -> pd.DataFrame:
        return self.frame[list(self.feature_names)]

    @property
    def churned(self) -> np.ndarray:
        return self.frame["churned"].to_numpy(dtype="int64")

    @property
    def future_spend(self) -> np.ndarray:
        return self.frame["future_spend"].to_numpy(dtype="float64")


def build_training_set(
    transactions: pd.DataFrame,
    cutoff: DateLike,
    *,
    horizon_days: int = 90,
    penalizer_coef: float = 0.0,
    customer_col: str = "customer_id",
    time_col: str = "ordered_at",
    amount_col: str = "amount",
    extra_features: ExtraFeatures | None = None,
) -> TrainingSet:
    """Features as of ``cutoff - horizon_days`` with labels from ``(cutoff - horizon_days, cutoff]``.

    ``extra_features`` is called with the feature date (see :data:`ExtraFeatures`).
    """
    if horizon_days <= 0:
        raise ValueError("horizon_days must be positive")
    label_end = _as_day(cutoff)
    feature_date = label_end - pd.Timedelta(days=int(horizon_days))
    feats, model = build_features(
        transactions, feature_date, horizon_days=horizon_days, penalizer_coef=penalizer_coef,
        customer_col=customer_col, time_col=time_col, amount_col=amount_col,
        extra_features=None if extra_features is None else extra_features(feature_date),
    )
    names = tuple(c for c in feats.columns if c != "customer_id")
    labels = future_labels(
        transactions, feature_date, horizon_days, feats["customer_id"],
        customer_col=customer_col, time_col=time_col, amount_col=amount_col,
    )
    frame = feats.merge(labels, on="customer_id", how="left", validate="one_to_one")
    return TrainingSet(
        frame=frame, feature_date=feature_date, label_end=label_end, horizon_days=int(horizon_days), clv_model=model,
        feature_names=names,
    )


# ---------------------------------------------------------------------------
# churn classifier


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


@dataclass
class ChurnModel:
    """xgboost classifier + probability calibrator. ``predict_proba`` returns P(churn in horizon)."""

    classifier: XGBClassifier
    calibrator: IsotonicRegression | LogisticRegression
    calibration: str
    feature_names: tuple[str, ...]
    config: SupervisedConfig
    horizon_days: int
    info: dict[str, Any] = field(default_factory=dict)

    def raw_scores(self, features: pd.DataFrame) -> np.ndarray:
        return self.classifier.predict_proba(_matrix(features, self.feature_names))[:, 1]

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        raw = self.raw_scores(features)
        if isinstance(self.calibrator, IsotonicRegression):
            p = self.calibrator.predict(raw)
        else:
            p = self.calibrator.predict_proba(_logit(raw).reshape(-1, 1))[:, 1]
        return np.clip(np.asarray(p, dtype="float64"), 0.0, 1.0)


def _matrix(features: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    missing = [c for c in names if c not in features.columns]
    if missing:
        raise ValueError(f"feature frame is missing {missing}")
    return features[list(names)].astype("float64")


def train_churn_model(
    features: pd.DataFrame,
    churned: np.ndarray | pd.Series,
    *,
    config: SupervisedConfig | None = None,
    horizon_days: int = 90,
    feature_names: Sequence[str] = FEATURE_COLUMNS,
) -> ChurnModel:
    """Fit the classifier on a stratified training fold and calibrate on the validation fold."""
    cfg = config or SupervisedConfig()
    y = np.asarray(churned, dtype="int64")
    X = _matrix(features, feature_names)
    if len(X) != len(y):
        raise ValueError("features and labels differ in length")
    counts = np.bincount(y, minlength=2)
    if len(counts) > 2 or counts.min() < 10:
        raise InsufficientDataError(
            f"churn labels need at least 10 churners and 10 non-churners, got {counts.tolist()}"
        )
    idx_fit, idx_val = train_test_split(
        np.arange(len(y)), test_size=cfg.validation_fraction, random_state=cfg.seed, stratify=y
    )
    clf = XGBClassifier(objective="binary:logistic", eval_metric="logloss", **cfg.xgb_params())
    clf.fit(X.iloc[idx_fit], y[idx_fit], verbose=False)
    raw_val = clf.predict_proba(X.iloc[idx_val])[:, 1]
    method = cfg.calibration
    if method == "auto":
        method = "isotonic" if len(idx_val) >= cfg.isotonic_min_rows else "sigmoid"
    calibrator: IsotonicRegression | LogisticRegression
    if method == "isotonic":
        calibrator = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw_val, y[idx_val])
    elif method == "sigmoid":
        calibrator = LogisticRegression(C=1e6).fit(_logit(raw_val).reshape(-1, 1), y[idx_val])
    else:
        raise ValueError("calibration must be 'auto', 'isotonic' or 'sigmoid'")
    info = {
        "n_train": int(len(idx_fit)),
        "n_validation": int(len(idx_val)),
        "train_base_rate": float(y.mean()),
    }
    return ChurnModel(
        classifier=clf,
        calibrator=calibrator,
        calibration=method,
        feature_names=tuple(feature_names),
        config=cfg,
        horizon_days=int(horizon_days),
        info=info,
    )


# ---------------------------------------------------------------------------
# CLV regressor


@dataclass
class CLVRegressor:
    """xgboost regressor of revenue in the next ``horizon_days`` (non-negative predictions)."""

    regressor: XGBRegressor
    feature_names: tuple[str, ...]
    config: SupervisedConfig
    horizon_days: int
    info: dict[str, Any] = field(default_factory=dict)

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        pred = self.regressor.predict(_matrix(features, self.feature_names))
        return np.clip(np.asarray(pred, dtype="float64"), 0.0, None)


def train_clv_regressor(
    features: pd.DataFrame,
    future_spend: np.ndarray | pd.Series,
    *,
    config: SupervisedConfig | None = None,
    horizon_days: int = 90,
    feature_names: Sequence[str] = FEATURE_COLUMNS,
) -> CLVRegressor:
    """Fit the regressor on all rows (Tweedie objective by default: many zeros, skewed spend)."""
    cfg = config or SupervisedConfig()
    y = np.asarray(future_spend, dtype="float64")
    X = _matrix(features, feature_names)
    if len(X) != len(y):
        raise ValueError("features and labels differ in length")
    if (y < 0).any() or not np.isfinite(y).all():
        raise ValueError("future_spend must be finite and non-negative")
    if int((y > 0).sum()) < 10:
        raise InsufficientDataError(f"only {int((y > 0).sum())} customers with future spend; need at least 10")
    extra: dict[str, Any] = {"objective": cfg.regression_objective}
    if cfg.regression_objective == "reg:tweedie":
        extra["tweedie_variance_power"] = cfg.tweedie_variance_power
    reg = XGBRegressor(**extra, **cfg.xgb_params())
    reg.fit(X, y, verbose=False)
    return CLVRegressor(
        regressor=reg,
        feature_names=tuple(feature_names),
        config=cfg,
        horizon_days=int(horizon_days),
        info={"n_train": int(len(y)), "mean_target": float(y.mean())},
    )


__all__ = [
    "BEHAVIOR_FEATURES",
    "FEATURE_COLUMNS",
    "PROBABILISTIC_FEATURES",
    "RFM_FEATURES",
    "CLVRegressor",
    "ChurnModel",
    "ExtraFeatures",
    "SupervisedConfig",
    "TrainingSet",
    "build_features",
    "build_training_set",
    "merge_extra_features",
    "train_churn_model",
    "train_clv_regressor",
]
