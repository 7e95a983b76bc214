"""Evaluation metrics against hand-computed examples, baselines and the champion rule."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from ml.evaluation import (
    aggregate_relative_error,
    calibration_table,
    churn_baseline_metrics,
    churn_metrics,
    clv_baseline,
    clv_metrics,
    expected_calibration_error,
    gini,
    mae,
    normalized_gini,
    pick_champion,
    rmse,
    spearman,
    top_decile_capture,
)


def test_mae_rmse() -> None:
    assert mae([1, 2, 3], [2, 2, 5]) == pytest.approx(1.0)
    assert rmse([1, 2, 3], [2, 2, 5]) == pytest.approx(math.sqrt(5 / 3))


def test_spearman() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 400]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2, 3], [5, 5, 5]))


def test_normalized_gini_perfect_reversed_random() -> None:
    actual = [5.0, 0.0, 3.0, 1.0, 0.0, 8.0]
    assert normalized_gini(actual, actual) == pytest.approx(1.0)
    assert normalized_gini(actual, [a * 2 + 1 for a in actual]) == pytest.approx(1.0)  # only order matters
    assert normalized_gini(actual, [-a for a in actual]) == pytest.approx(-1.0)
    assert normalized_gini(actual, [1.0] * 6) == pytest.approx(0.0)  # all tied = random order


def test_gini_hand_computed() -> None:
    actual, pred = [1.0, 0.0, 3.0, 0.0], [0.9, 0.8, 0.1, 0.2]
    # gain curve by pred: 1/4, 1/4, 1/4, 1 -> area 0.3125 -> gini -0.375; perfect: area 0.8125 -> 0.625
    assert gini(actual, pred) == pytest.approx(-0.375)
    assert gini(actual, actual) == pytest.approx(0.625)
    assert normalized_gini(actual, pred) == pytest.approx(-0.6)


def test_top_decile_capture() -> None:
    actual = [10.0, 0, 0, 0, 0, 0, 0, 0, 0, 30.0]
    pred = [9.0, 1, 1, 1, 1, 1, 1, 1, 1, 2]
    assert top_decile_capture(actual, pred) == pytest.approx(0.25)  # top 1 of 10 holds 10 of 40
    assert top_decile_capture(actual, actual) == pytest.approx(0.75)
    assert top_decile_capture(list(range(20)), list(range(20)), fraction=0.1) == pytest.approx((19 + 18) / 190)


def test_aggregate_relative_error() -> None:
    assert aggregate_relative_error([10, 10], [12, 9]) == pytest.approx(0.05)
    assert aggregate_relative_error([10, 10], [5, 5]) == pytest.approx(-0.5)


def test_clv_metrics_dict() -> None:
    m = clv_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert m["mae"] == 0 and m["rmse"] == 0 and m["spearman"] == pytest.approx(1)
    assert m["normalized_gini"] == pytest.approx(1) and m["aggregate_relative_error"] == 0


def test_clv_baseline_projects_repeat_spend_rate() -> None:
    summary = pd.DataFrame({"frequency": [2, 0, 3], "monetary_value": [15.0, 0.0, 10.0], "T": [30.0, 10.0, 0.0]})
    np.testing.assert_allclose(clv_baseline(summary, 90), [90.0, 0.0, 0.0])


def test_calibration_table_and_ece() -> None:
    y, p = [0, 1, 0, 1], [0.2, 0.2, 0.8, 0.8]
    table = calibration_table(y, p, n_bins=10)
    assert table["n"].tolist() == [2, 2]
    assert table["mean_predicted"].tolist() == pytest.approx([0.2, 0.8])
    assert table["observed_rate"].tolist() == pytest.approx([0.5, 0.5])
    assert expected_calibration_error(y, p) == pytest.approx(0.3)
    perfect = calibration_table([0, 0, 1, 1], [0.0, 0.0, 1.0, 1.0], strategy="uniform")
    assert perfect["abs_gap"].max() == 0
    # deciles of 1000 distinct predictions: 10 bins of 100
    rng = np.random.default_rng(0)
    probs = rng.random(1000)
    table = calibration_table(rng.random(1000) < probs, probs)
    assert table["n"].tolist() == [100] * 10


def test_churn_metrics() -> None:
    y = [0, 0, 1, 1]
    m = churn_metrics(y, [0.1, 0.4, 0.35, 0.8])
    assert m["auc"] == pytest.approx(0.75)
    assert m["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert m["base_rate"] == 0.5
    assert churn_metrics(y, [0.0, 0.0, 1.0, 1.0])["auc"] == 1.0
    assert churn_metrics(y, [0.0, 0.0, 1.0, 1.0])["brier"] == 0.0
    assert churn_metrics(y, [0.0, 0.0, 1.0, 1.0])["pr_auc"] == 1.0


def test_churn_baseline() -> None:
    y = np.array([1, 1, 0, 0])
    b = churn_baseline_metrics(y, days_since_last=[300, 200, 10, 5], train_base_rate=0.5)
    assert b["auc"] == 1.0  # longer since the last purchase = more likely churned
    assert b["brier"] == pytest.approx(0.25)  # constant 0.5
    b2 = churn_baseline_metrics(y, days_since_last=[300, 200, 10, 5], train_base_rate=0.75)
    assert b2["brier"] == pytest.approx((2 * 0.0625 + 2 * 0.5625) / 4)


def _run(run_id: str, name: str, metrics: dict, baseline: dict, as_json: bool = False) -> dict:
    if as_json:
        return {"run_id": run_id, "model_name": name, "metrics_json": json.dumps(metrics), "baseline_metrics_json": json.dumps(baseline)}
    return {"run_id": run_id, "model_name": name, "metrics": metrics, "baseline_metrics": baseline}


def _champion_id(runs: list[dict], task: str | None = None) -> str:
    champ = pick_champion(runs, task)
    assert champ is not None
    return str(champ["run_id"])


def test_pick_champion_clv_rule() -> None:
    base = {"mae": 12.0, "spearman": 0.30}
    runs = [
        _run("bg", "clv_bgnbd_gg", {"mae": 9.0, "spearman": 0.40}, base),
        _run("xgb", "clv_xgb", {"mae": 8.0, "spearman": 0.38}, base, as_json=True),
        _run("bad", "clv_other", {"mae": 1.0, "spearman": 0.20}, base),  # lowest MAE but loses on Spearman
    ]
    assert _champion_id(runs) == "xgb"
    assert pick_champion(runs[2:]) is None


def test_pick_champion_churn_rule() -> None:
    base = {"auc": 0.80, "brier": 0.20}
    runs = [
        _run("a", "churn_xgb", {"auc": 0.83, "brier": 0.17}, base),
        _run("b", "churn_xgb_big", {"auc": 0.86, "brier": 0.21}, base),  # better AUC, worse Brier than baseline
        _run("c", "churn_lr", {"auc": 0.82, "brier": 0.15}, base),
    ]
    assert _champion_id(runs) == "a"
    assert pick_champion([runs[1]]) is None
    with pytest.raises(ValueError, match="mix tasks"):
        pick_champion([runs[0], _run("x", "clv_xgb", {"mae": 1.0, "spearman": 0.5}, {"spearman": 0.1})])
    mixed = [runs[0], _run("x", "clv_xgb", {"mae": 1.0, "spearman": 0.5}, {"spearman": 0.1})]
    assert _champion_id(mixed, task="clv") == "x"
