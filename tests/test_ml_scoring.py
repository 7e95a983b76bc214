"""customer_scores / ml_model_runs builders, artifacts on disk and the end-to-end ML run."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ml.artifacts import load_artifact, load_metadata, make_model_version, save_artifact
from ml.clv import CLVModel
from ml.pipeline import CHURN_MODEL, CLV_MODEL, CLV_XGB_MODEL, run_ml
from ml.scoring import (
    CUSTOMER_SCORES_COLUMNS,
    MODEL_RUN_COLUMNS,
    build_customer_scores,
    build_model_run_record,
    churn_risk_band,
    mark_champions,
    model_runs_frame,
    value_tier,
)
from ml.supervised import build_features
from ml.synthetic import SyntheticParams, simulate_transactions

AS_OF = "2025-12-31"
TRAINED_AT = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)


def test_value_tiers_by_clv_percentile() -> None:
    tiers = value_tier(np.arange(1, 101, dtype=float))
    counts = pd.Series(tiers).value_counts().to_dict()
    assert counts == {"bronze": 50, "silver": 30, "gold": 15, "platinum": 5}
    assert tiers[-1] == "platinum" and tiers[0] == "bronze"
    # ties share a tier
    assert set(value_tier([0.0] * 10)) == {"silver"}  # average rank 0.55


def test_churn_risk_bands() -> None:
    bands = churn_risk_band([0.0, 0.39, 0.40, 0.74, 0.75, 1.0])
    assert bands.tolist() == ["low", "low", "medium", "medium", "high", "high"]
    custom = churn_risk_band([0.2, 0.6], band_thresholds=((0.5, "high"),))
    assert custom.tolist() == ["low", "high"]


def test_build_customer_scores() -> None:
    clv = pd.DataFrame(
        {
            "customer_id": [1, 2, 3],
            "p_alive": [1.0, 0.5, 0.1],
            "expected_purchases_90d": [1.0, 0.5, 0.1],
            "expected_purchases_365d": [3.0, 1.0, 0.2],
            "predicted_clv_12m": [300.0, 50.0, 5.0],
        }
    )
    churn = pd.DataFrame({"customer_id": [3, 2, 1], "churn_probability": [0.9, 0.5, 0.1]})
    scores = build_customer_scores(clv, churn, as_of_date=AS_OF, model_version="v1")
    assert list(scores.columns) == list(CUSTOMER_SCORES_COLUMNS)
    assert scores["churn_probability"].tolist() == [0.1, 0.5, 0.9]
    assert scores["churn_risk_band"].tolist() == ["low", "medium", "high"]
    assert scores["value_tier"].tolist() == ["platinum", "silver", "bronze"]
    assert (scores["as_of_date"] == pd.Timestamp(AS_OF).date()).all()
    with pytest.raises(ValueError, match="no churn_probability"):
        build_customer_scores(clv, churn.iloc[:2], as_of_date=AS_OF, model_version="v1")


def test_model_run_records_and_champions() -> None:
    common: dict[str, Any] = {
        "train_start": "2024-01-01",
        "train_end": AS_OF,
        "cutoff_date": AS_OF,
        "horizon_days": 90,
        "n_customers": 100,
        "trained_at": TRAINED_AT,
    }
    runs = [
        build_model_run_record(
            model_name="clv_bgnbd_gg", model_version="clv_bgnbd_gg-2025-12-31-aaa",
            metrics={"mae": 5.0, "spearman": 0.5, "normalized_gini": float("nan")},
            baseline_metrics={"mae": 9.0, "spearman": 0.2}, **common,
        ),
        build_model_run_record(
            model_name="clv_xgb", model_version="clv_xgb-2025-12-31-bbb",
            metrics={"mae": 4.0, "spearman": 0.1}, baseline_metrics={"mae": 9.0, "spearman": 0.2}, **common,
        ),
        build_model_run_record(
            model_name="churn_xgb", model_version="churn_xgb-2025-12-31-ccc",
            metrics={"auc": 0.8, "brier": 0.1}, baseline_metrics={"auc": 0.7, "brier": 0.2}, **common,
        ),
    ]
    assert set(runs[0]) == set(MODEL_RUN_COLUMNS)
    assert json.loads(runs[0]["metrics_json"])["normalized_gini"] is None  # NaN -> null
    # deterministic run id: re-running the same day gives the same id
    again = build_model_run_record(
        model_name="clv_bgnbd_gg", model_version="clv_bgnbd_gg-2025-12-31-aaa", metrics={}, **common
    )
    assert again["run_id"] == runs[0]["run_id"]
    marked = mark_champions(runs)
    assert [r["is_champion"] for r in marked] == [True, False, True]
    frame = model_runs_frame(marked)
    assert list(frame.columns) == list(MODEL_RUN_COLUMNS) and len(frame) == 3


def test_model_version_format() -> None:
    v = make_model_version("clv_bgnbd", "2025-12-31", {"r": 0.2})
    name, y, m, d, digest = v.split("-")
    assert (name, y, m, d) == ("clv_bgnbd", "2025", "12", "31") and len(digest) == 10
    assert v == make_model_version("clv_bgnbd", pd.Timestamp("2025-12-31"), {"r": 0.2})
    assert v != make_model_version("clv_bgnbd", "2025-12-31", {"r": 0.3})


@pytest.fixture(scope="module")
def ml_run():
    tx = simulate_transactions(
        3000, SyntheticParams(r=0.8, alpha=40.0, a=0.8, b=2.5), start="2024-01-01", end=AS_OF, seed=4
    ).transactions
    return tx, run_ml(tx, AS_OF, trained_at=TRAINED_AT)


def test_run_ml_end_to_end(ml_run) -> None:
    tx, res = ml_run
    scores = res.scores
    assert list(scores.columns) == list(CUSTOMER_SCORES_COLUMNS)
    assert scores["customer_id"].is_unique and len(scores) == tx["customer_id"].nunique()
    assert scores[["p_alive", "churn_probability"]].apply(lambda s: s.between(0, 1).all()).all()
    assert (scores["predicted_clv_12m"] >= 0).all()
    assert set(scores["value_tier"]) == {"platinum", "gold", "silver", "bronze"}
    assert scores["model_version"].iloc[0] == f"{res.versions[CLV_MODEL]}+{res.versions[CHURN_MODEL]}"
    runs = res.model_runs
    assert list(runs.columns) == list(MODEL_RUN_COLUMNS)
    assert runs["model_name"].tolist() == [CLV_MODEL, CLV_XGB_MODEL, CHURN_MODEL]
    assert runs.loc[runs["model_name"].str.startswith("clv"), "is_champion"].sum() <= 1
    churn_run = runs[runs["model_name"] == CHURN_MODEL].iloc[0]
    assert bool(churn_run["is_champion"]), res.warnings
    assert json.loads(churn_run["metrics_json"])["auc"] > json.loads(churn_run["baseline_metrics_json"])["auc"]


def test_run_ml_is_reproducible(ml_run) -> None:
    tx, res = ml_run
    again = run_ml(tx, AS_OF, trained_at=TRAINED_AT)
    pd.testing.assert_frame_equal(again.scores, res.scores)
    pd.testing.assert_frame_equal(again.model_runs, res.model_runs)


def test_artifacts_round_trip(ml_run, tmp_path: Path) -> None:
    tx, res = ml_run
    clv_dir = save_artifact(
        tmp_path / "clv", res.clv_model, model_name=CLV_MODEL, model_version=res.versions[CLV_MODEL],
        train_start="2024-01-01", train_end=AS_OF, cutoff_date=AS_OF, horizon_days=90,
        metrics=res.evaluation[CLV_MODEL]["metrics"], baseline_metrics=res.evaluation[CLV_MODEL]["baseline_metrics"],
    )
    model, meta = load_artifact(clv_dir)
    assert isinstance(model, CLVModel) and model.params == res.clv_model.params
    assert meta["model_version"] == res.versions[CLV_MODEL]
    assert meta["training_window"] == {
        "train_start": "2024-01-01", "train_end": AS_OF, "cutoff_date": AS_OF, "horizon_days": 90,
    }
    assert meta["params"]["r"] == pytest.approx(res.clv_model.r)

    churn_dir = save_artifact(
        tmp_path / "churn", res.churn_model, model_name=CHURN_MODEL, model_version=res.versions[CHURN_MODEL],
        metrics=res.evaluation[CHURN_MODEL]["metrics"],
    )
    assert (churn_dir / "booster.json").is_file()
    churn, meta = load_artifact(churn_dir)
    features = res.churn_model.feature_names
    feats, _ = build_features(tx, AS_OF)
    np.testing.assert_array_equal(churn.predict_proba(feats), res.churn_model.predict_proba(feats))
    assert meta["model_class"] == "ChurnModel" and tuple(features) == churn.feature_names

    # overwriting replaces the directory atomically, leaving no temporary siblings
    save_artifact(tmp_path / "churn", res.churn_model, model_name=CHURN_MODEL, model_version="other")
    assert load_metadata(tmp_path / "churn")["model_version"] == "other"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["churn", "clv"]
    with pytest.raises(FileNotFoundError):
        load_artifact(tmp_path / "missing")
