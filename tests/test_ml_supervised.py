"""xgboost churn classifier and CLV regressor on a time split of synthetic BG/NBD data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.clv import InsufficientDataError
from ml.evaluation import churn_baseline_metrics, churn_metrics, clv_baseline, clv_metrics
from ml.supervised import (
    FEATURE_COLUMNS,
    SupervisedConfig,
    TrainingSet,
    build_training_set,
    train_churn_model,
    train_clv_regressor,
)
from ml.synthetic import SyntheticParams, simulate_transactions

PARAMS = SyntheticParams(r=0.8, alpha=40.0, a=0.8, b=2.5, p=6.0, q=4.0, v=15.0)
END = pd.Timestamp("2025-12-31")
H = 90


@pytest.fixture(scope="module")
def transactions() -> pd.DataFrame:
    return simulate_transactions(6000, PARAMS, start="2024-01-01", end=END, seed=1).transactions


@pytest.fixture(scope="module")
def split(transactions: pd.DataFrame) -> tuple[TrainingSet, TrainingSet]:
    """Train: features at END-2H, labels (END-2H, END-H].  Test: features at END-H, labels (END-H, END]."""
    train = build_training_set(transactions, END - pd.Timedelta(days=H), horizon_days=H)
    test = build_training_set(transactions, END, horizon_days=H)
    return train, test


def test_time_split_windows(split: tuple[TrainingSet, TrainingSet], transactions: pd.DataFrame) -> None:
    train, test = split
    assert train.feature_date == END - pd.Timedelta(days=2 * H)
    assert train.label_end == test.feature_date == END - pd.Timedelta(days=H)
    assert list(train.X.columns) == list(FEATURE_COLUMNS)
    # only customers acquired by the feature date are in a training set
    first = transactions.groupby("customer_id")["ordered_at"].min()
    assert (first.loc[train.frame["customer_id"]] < train.feature_date + pd.Timedelta(days=1)).all()
    # p_alive is a feature, and it is exactly 1 for every one-time buyer
    one_time = train.frame["frequency"] == 0
    assert (train.frame.loc[one_time, "p_alive"] == 1.0).all()
    assert 0.2 < test.churned.mean() < 0.95


def test_churn_classifier_beats_baseline_and_is_calibrated(split: tuple[TrainingSet, TrainingSet]) -> None:
    train, test = split
    model = train_churn_model(train.X, train.churned, horizon_days=H)
    p = model.predict_proba(test.X)
    m = churn_metrics(test.churned, p)
    base = churn_baseline_metrics(
        test.churned, test.frame["days_since_last"], train_base_rate=float(train.churned.mean())
    )
    assert m["auc"] > base["auc"], (m, base)
    assert m["brier"] < base["brier"], (m, base)
    assert m["ece"] < 0.05
    # p_alive alone is a poor churn score (one-time buyers are all 'alive')
    palive = churn_metrics(test.churned, 1.0 - test.frame["p_alive"].to_numpy())
    assert m["auc"] > palive["auc"] + 0.05


def test_churn_model_is_deterministic(split: tuple[TrainingSet, TrainingSet]) -> None:
    train, test = split
    a = train_churn_model(train.X, train.churned).predict_proba(test.X)
    b = train_churn_model(train.X, train.churned).predict_proba(test.X)
    np.testing.assert_array_equal(a, b)


def test_sigmoid_calibration(split: tuple[TrainingSet, TrainingSet]) -> None:
    train, test = split
    model = train_churn_model(train.X, train.churned, config=SupervisedConfig(calibration="sigmoid"))
    assert model.calibration == "sigmoid"
    p = model.predict_proba(test.X)
    assert ((p >= 0) & (p <= 1)).all()
    assert churn_metrics(test.churned, p)["brier"] < test.churned.mean() * (1 - test.churned.mean())


def test_clv_regressor_beats_baseline(split: tuple[TrainingSet, TrainingSet]) -> None:
    train, test = split
    reg = train_clv_regressor(train.X, train.future_spend, horizon_days=H)
    pred = reg.predict(test.X)
    assert (pred >= 0).all()
    m = clv_metrics(test.future_spend, pred)
    base = clv_metrics(test.future_spend, clv_baseline(test.frame, H))
    assert m["spearman"] > base["spearman"]
    assert m["mae"] < base["mae"]
    # the probabilistic model's expected horizon spend also beats the naive baseline
    bg = clv_metrics(test.future_spend, test.frame["expected_spend_horizon"])
    assert bg["spearman"] > base["spearman"] and abs(bg["aggregate_relative_error"]) < 0.15


def test_degenerate_labels_are_rejected(split: tuple[TrainingSet, TrainingSet]) -> None:
    train, _ = split
    with pytest.raises(InsufficientDataError, match="churners"):
        train_churn_model(train.X, np.ones(len(train.X), dtype=int))
    with pytest.raises(InsufficientDataError, match="future spend"):
        train_clv_regressor(train.X, np.zeros(len(train.X)))
