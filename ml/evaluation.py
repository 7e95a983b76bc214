"""Model evaluation: CLV and churn metrics, naive baselines and the champion rule.

CLV metrics (:func:`clv_metrics`, predicted vs realised value per customer)
    ``mae``, ``rmse``, ``spearman`` (rank correlation), ``normalized_gini``
    (Gini of the cumulative-gain curve when ranking by the prediction, divided by
    the Gini of the perfect ranking: 1 = perfect order, 0 = random, -1 = reversed),
    ``top_decile_capture`` (share of the realised total held by the 10 %
    customers with the highest predictions) and ``aggregate_relative_error``
    (``(sum(pred) - sum(actual)) / sum(actual)``, signed).

Churn metrics (:func:`churn_metrics`, predicted probability vs 0/1 outcome)
    ``auc`` (ROC), ``pr_auc`` (average precision), ``brier``, ``ece`` (expected
    calibration error over the :func:`calibration_table` bins: the
    count-weighted mean of ``|mean predicted - observed rate|``) and ``base_rate``.

Baselines
    CLV: :func:`clv_baseline` -- the customer's historical repeat spend per day
    (``frequency * monetary_value / T``) projected over the horizon.
    Churn: :func:`churn_baseline_metrics` -- ranking by days since the last
    purchase (``auc``, ``pr_auc``) and predicting the training base rate for
    everybody (``brier``, ``ece``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

ArrayLike: TypeAlias = np.ndarray | pd.Series | Sequence[float]


def _arr(x: ArrayLike) -> np.ndarray:
    return np.asarray(x, dtype="float64")


def _pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a, p = _arr(y_true), _arr(y_pred)
    if a.shape != p.shape or a.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-d and of equal length, got {a.shape} and {p.shape}")
    if a.size == 0:
        raise ValueError("empty input")
    if not (np.isfinite(a).all() and np.isfinite(p).all()):
        raise ValueError("non-finite values in y_true or y_pred")
    return a, p


# ---------------------------------------------------------------------------
# CLV


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    a, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(a - p)))


def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    a, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((a - p) ** 2)))


def spearman(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Spearman rank correlation (ties averaged); NaN when either side is constant."""
    a, p = _pair(y_true, y_pred)
    if np.ptp(a) == 0 or np.ptp(p) == 0:
        return float("nan")
    return float(spearmanr(a, p).statistic)


def _gain_area(actual: np.ndarray, score: np.ndarray) -> float:
    """Area under the cumulative-gain curve ranking by ``score`` descending; ties share credit linearly."""
    total = actual.sum()
    frame = pd.DataFrame({"s": score, "a": actual})
    grp = frame.groupby("s", sort=True).agg(n=("a", "size"), a=("a", "sum")).iloc[::-1]
    x = np.concatenate([[0.0], np.cumsum(grp["n"].to_numpy()) / len(actual)])
    y = np.concatenate([[0.0], np.cumsum(grp["a"].to_numpy()) / total])
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def gini(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Gini of the cumulative-gain curve (2 * area - 1) when ranking by ``y_pred``."""
    a, p = _pair(y_true, y_pred)
    if a.sum() == 0:
        return float("nan")
    return 2.0 * _gain_area(a, p) - 1.0


def normalized_gini(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """``gini(actual, pred) / gini(actual, actual)``: 1 for a perfect ranking, NaN if undefined."""
    a, p = _pair(y_true, y_pred)
    if (a < 0).any():
        raise ValueError("normalized_gini needs non-negative actual values")
    denom = gini(a, a)
    if not np.isfinite(denom) or denom == 0:
        return float("nan")
    return gini(a, p) / denom


def top_decile_capture(y_true: ArrayLike, y_pred: ArrayLike, fraction: float = 0.1) -> float:
    """Share of the realised total held by the top ``fraction`` of customers by prediction.

    The top group has ``ceil(fraction * n)`` customers; ties at the boundary are
    broken by input order (stable sort).
    """
    a, p = _pair(y_true, y_pred)
    if a.sum() == 0:
        return float("nan")
    k = max(1, math.ceil(fraction * len(a)))
    order = np.argsort(-p, kind="stable")
    return float(a[order[:k]].sum() / a.sum())


def aggregate_relative_error(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """``(sum(pred) - sum(actual)) / sum(actual)`` (signed; NaN if the actual total is 0)."""
    a, p = _pair(y_true, y_pred)
    total = a.sum()
    return float((p.sum() - total) / total) if total != 0 else float("nan")


def clv_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """All CLV metrics (see module docstring) as a dict."""
    return {
        "mae": mae(y_true, y_pred),
        "rmse": rmse(y_true, y_pred),
        "spearman": spearman(y_true, y_pred),
        "normalized_gini": normalized_gini(y_true, y_pred),
        "top_decile_capture": top_decile_capture(y_true, y_pred),
        "aggregate_relative_error": aggregate_relative_error(y_true, y_pred),
        "n": float(len(_arr(y_true))),
    }


def clv_baseline(summary: pd.DataFrame, horizon_days: float) -> np.ndarray:
    """Naive CLV: historical repeat spend per day (``frequency * monetary_value / T``) x horizon.

    Customers with ``T == 0`` (first purchase on the as-of day) get 0.
    """
    f = summary["frequency"].to_numpy(dtype="float64")
    m = summary["monetary_value"].to_numpy(dtype="float64")
    t = summary["T"].to_numpy(dtype="float64")
    rate = np.divide(f * m, t, out=np.zeros_like(t), where=t > 0)
    return rate * float(horizon_days)


# ---------------------------------------------------------------------------
# churn


def calibration_table(y_true: ArrayLike, y_prob: ArrayLike, n_bins: int = 10, strategy: str = "quantile") -> pd.DataFrame:
    """Reliability table: ``bin, n, mean_predicted, observed_rate, abs_gap, p_low, p_high``.

    ``strategy="quantile"`` uses deciles of the predictions (bins with equal
    counts; duplicate edges merged), ``"uniform"`` equal-width bins on [0, 1].
    """
    y, p = _pair(y_true, y_prob)
    if strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1)))
    elif strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        raise ValueError("strategy must be 'quantile' or 'uniform'")
    if len(edges) < 2:
        idx = np.zeros(len(p), dtype="int64")
    else:
        idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    frame = pd.DataFrame({"bin": idx, "p": p, "y": y})
    table = (
        frame.groupby("bin", sort=True)
        .agg(n=("y", "size"), mean_predicted=("p", "mean"), observed_rate=("y", "mean"), p_low=("p", "min"), p_high=("p", "max"))
        .reset_index()
    )
    table["abs_gap"] = (table["mean_predicted"] - table["observed_rate"]).abs()
    return table[["bin", "n", "mean_predicted", "observed_rate", "abs_gap", "p_low", "p_high"]]


def expected_calibration_error(y_true: ArrayLike, y_prob: ArrayLike, n_bins: int = 10, strategy: str = "quantile") -> float:
    table = calibration_table(y_true, y_prob, n_bins=n_bins, strategy=strategy)
    return float((table["n"] * table["abs_gap"]).sum() / table["n"].sum())


def churn_metrics(y_true: ArrayLike, y_prob: ArrayLike, n_bins: int = 10) -> dict[str, float]:
    """``auc, pr_auc, brier, ece, base_rate, n`` (AUC/PR-AUC NaN when only one class is present)."""
    y, p = _pair(y_true, y_prob)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("churn labels must be 0/1")
    if ((p < 0) | (p > 1)).any():
        raise ValueError("churn probabilities must lie in [0, 1]")
    two = len(np.unique(y)) == 2
    return {
        "auc": float(roc_auc_score(y, p)) if two else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if two else float("nan"),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p, n_bins=n_bins),
        "base_rate": float(y.mean()),
        "n": float(len(y)),
    }


def churn_baseline_metrics(
    y_true: ArrayLike, days_since_last: ArrayLike, train_base_rate: float | None = None
) -> dict[str, float]:
    """Naive churn baseline: rank by recency for ``auc``/``pr_auc``, predict a constant base rate
    (the training base rate, default the evaluation base rate) for ``brier``/``ece``."""
    y, d = _pair(y_true, days_since_last)
    rate = float(y.mean()) if train_base_rate is None else float(train_base_rate)
    const = np.full(len(y), rate)
    two = len(np.unique(y)) == 2
    return {
        "auc": float(roc_auc_score(y, d)) if two else float("nan"),
        "pr_auc": float(average_precision_score(y, d)) if two else float("nan"),
        "brier": float(brier_score_loss(y, const)),
        "ece": expected_calibration_error(y, const),
        "base_rate": float(y.mean()),
        "n": float(len(y)),
    }


# ---------------------------------------------------------------------------
# champion rule


def _metrics(run: Mapping[str, Any], key: str) -> dict[str, float]:
    value = run.get(key) or run.get(f"{key}_json") or {}
    if isinstance(value, str):
        value = json.loads(value)
    return {k: (float("nan") if v is None else float(v)) for k, v in dict(value).items() if isinstance(v, int | float) or v is None}


def run_task(run: Mapping[str, Any]) -> str:
    """``'clv'`` or ``'churn'``: the run's ``task`` field, else inferred from ``model_name``."""
    task = run.get("task")
    if task:
        return str(task)
    name = str(run.get("model_name", ""))
    if name.startswith("churn"):
        return "churn"
    if name.startswith("clv"):
        return "clv"
    raise ValueError(f"cannot tell the task of run {run.get('run_id')!r} (model_name {name!r})")


def qualifies(run: Mapping[str, Any]) -> bool:
    """Whether a run may be champion under :func:`pick_champion`'s rule."""
    m, b = _metrics(run, "metrics"), _metrics(run, "baseline_metrics")
    if run_task(run) == "clv":
        s, sb = m.get("spearman", float("nan")), b.get("spearman", float("nan"))
        return np.isfinite(s) and np.isfinite(m.get("mae", float("nan"))) and (not np.isfinite(sb) or s > sb)
    auc, brier = m.get("auc", float("nan")), m.get("brier", float("nan"))
    bauc, bbrier = b.get("auc", float("nan")), b.get("brier", float("nan"))
    if not (np.isfinite(auc) and np.isfinite(brier)):
        return False
    return (not np.isfinite(bauc) or auc > bauc) and (not np.isfinite(bbrier) or brier <= bbrier)


def pick_champion(runs: Sequence[Mapping[str, Any]], task: str | None = None) -> Mapping[str, Any] | None:
    """Pick the champion among evaluation runs of one task (``'clv'`` or ``'churn'``).

    Each run is a mapping with ``model_name`` (or ``task``), ``metrics`` and
    ``baseline_metrics`` (dicts, or their ``*_json`` strings as in
    ``gold.ml_model_runs``), all evaluated on the same holdout.

    Rule:

    * **CLV** -- among runs whose Spearman rank correlation beats the baseline's
      Spearman, the one with the lowest MAE.
    * **churn** -- among runs whose AUC beats the baseline's AUC and whose Brier
      score is no worse than the baseline's (base-rate) Brier, the one with the
      highest AUC.

    Ties go to the earlier run in ``runs``.  Returns ``None`` when no run
    qualifies (then no model should be flagged champion and scores should not
    be replaced).  Without ``task`` all runs must share one task.
    """
    tasks = {run_task(r) for r in runs}
    if task is None:
        if len(tasks) > 1:
            raise ValueError(f"runs mix tasks {sorted(tasks)}; pass task=")
        task = next(iter(tasks), "clv")
    pool = [r for r in runs if run_task(r) == task and qualifies(r)]
    if not pool:
        return None
    if task == "clv":
        return min(pool, key=lambda r: _metrics(r, "metrics")["mae"])
    if task == "churn":
        return max(pool, key=lambda r: _metrics(r, "metrics")["auc"])
    raise ValueError(f"unknown task {task!r}")


__all__ = [
    "aggregate_relative_error",
    "calibration_table",
    "churn_baseline_metrics",
    "churn_metrics",
    "clv_baseline",
    "clv_metrics",
    "expected_calibration_error",
    "gini",
    "mae",
    "normalized_gini",
    "pick_champion",
    "qualifies",
    "rmse",
    "run_task",
    "spearman",
    "top_decile_capture",
]
