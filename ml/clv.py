"""Probabilistic customer lifetime value: BG/NBD + Gamma-Gamma (through ``lifetimes``).

Input is an RFM summary frame with lifetimes' definitions (see
:mod:`ml.features`): ``customer_id, frequency, recency, T, monetary_value`` with
time in days (another unit can be declared with ``time_unit_days``, e.g. 7 for
the weekly CDNOW data).

Fitting collapses customers that share one ``(frequency, recency, T)`` pattern
and fits the BG/NBD model once with the pattern counts as ``weights``.  The
weighted log-likelihood is identical to the per-customer one, so the fit is the
same while its cost scales with the number of distinct patterns, not customers.
The Gamma-Gamma spend model is fit on repeat buyers with ``monetary_value > 0``
(likewise collapsed on ``(frequency, monetary_value)``).

Outputs per customer (:meth:`CLVModel.predict`):

``p_alive``
    P(customer still active | history).  One-time buyers (frequency 0) have
    ``p_alive == 1`` *by construction* of BG/NBD (dropout only happens after a
    repeat purchase) -- do not use it alone as a churn score.
``expected_purchases_90d`` / ``expected_purchases_365d``
    expected number of purchases in the next 90 / 365 days.
``expected_avg_value``
    Gamma-Gamma conditional expected spend per purchase (population mean for
    customers without repeat purchases).
``expected_spend_90d``
    ``expected_purchases_90d * expected_avg_value`` (undiscounted).
``predicted_clv_12m``
    discounted value of the next 12 months, exactly lifetimes'
    ``GammaGammaFitter.customer_lifetime_value``: for months ``i = 1..12``,
    ``expected_avg_value * (E[X(i*M)] - E[X((i-1)*M)]) / (1 + d)**i`` with
    ``M = days_per_month`` (30, lifetimes' convention for daily data) and ``d``
    the monthly discount rate.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
with warnings.catch_warnings():  # lifetimes sets a pandas option that pandas 3 deprecates, at import time
    warnings.simplefilter("ignore")
    from lifetimes import BetaGeoFitter, GammaGammaFitter

BGNBD_PARAMS: tuple[str, ...] = ("r", "alpha", "a", "b")
GG_PARAMS: tuple[str, ...] = ("p", "q", "v")

PREDICTION_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "p_alive",
    "expected_purchases_90d",
    "expected_purchases_365d",
    "expected_avg_value",
    "expected_spend_90d",
    "predicted_clv_12m",
)


class InsufficientDataError(ValueError):
    """The input cannot identify the model (e.g. too few repeat buyers)."""


class ModelFitError(RuntimeError):
    """The optimiser did not converge or returned unusable parameters."""


@dataclass(frozen=True)
class CLVModel:
    """Fitted BG/NBD + Gamma-Gamma parameters (plain floats; picklable, JSON-able)."""

    r: float
    alpha: float
    a: float
    b: float
    p: float
    q: float
    v: float
    penalizer_coef: float = 0.0
    gg_penalizer_coef: float = 0.0
    time_unit_days: float = 1.0
    diagnostics: Mapping[str, float] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, float]:
        """The seven model parameters ``r, alpha, a, b`` (BG/NBD) and ``p, q, v`` (Gamma-Gamma)."""
        return {k: float(getattr(self, k)) for k in BGNBD_PARAMS + GG_PARAMS}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["diagnostics"] = dict(self.diagnostics)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CLVModel:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def bgnbd(self) -> BetaGeoFitter:
        """A lifetimes ``BetaGeoFitter`` carrying these parameters (for lifetimes' methods)."""
        f = BetaGeoFitter(penalizer_coef=self.penalizer_coef)
        f.params_ = pd.Series([self.r, self.alpha, self.a, self.b], index=list(BGNBD_PARAMS))
        f.predict = f.conditional_expected_number_of_purchases_up_to_time  # as set by BetaGeoFitter.fit
        return f

    def gamma_gamma(self) -> GammaGammaFitter:
        """A lifetimes ``GammaGammaFitter`` carrying these parameters."""
        f = GammaGammaFitter(penalizer_coef=self.gg_penalizer_coef)
        f.params_ = pd.Series([self.p, self.q, self.v], index=list(GG_PARAMS))
        return f

    def predict(
        self,
        summary: pd.DataFrame,
        *,
        monthly_discount_rate: float = 0.01,
        days_per_month: float = 30.0,
    ) -> pd.DataFrame:
        """Per-customer outputs (:data:`PREDICTION_COLUMNS`, input row order)."""
        return predict_clv(
            self, summary, monthly_discount_rate=monthly_discount_rate, days_per_month=days_per_month
        )


# ---------------------------------------------------------------------------
# input handling


def validate_rfm(summary: pd.DataFrame, *, require_monetary: bool = False) -> None:
    """Raise ``ValueError`` with a clear message when ``summary`` is not a valid RFM summary."""
    needed = ["frequency", "recency", "T"] + (["monetary_value"] if require_monetary else [])
    missing = [c for c in needed if c not in summary.columns]
    if missing:
        raise ValueError(f"RFM summary is missing column(s) {missing}; got {list(summary.columns)}")
    if len(summary) == 0:
        raise InsufficientDataError("RFM summary is empty: no customers to fit")
    cols = needed
    values = summary[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype="float64")
    if not np.isfinite(values).all():
        bad = [c for i, c in enumerate(cols) if not np.isfinite(values[:, i]).all()]
        raise ValueError(f"RFM summary has missing or non-numeric values in {bad}")
    f, rec, t = values[:, 0], values[:, 1], values[:, 2]
    if (f < 0).any() or (np.floor(f) != f).any():
        raise ValueError("frequency must be a non-negative integer (repeat purchase periods)")
    if (rec < 0).any() or (t < 0).any():
        raise ValueError("recency and T must be non-negative")
    if (rec > t + 1e-9).any():
        n = int((rec > t + 1e-9).sum())
        raise ValueError(f"recency > T for {n} customer(s): recency must not exceed customer age T")
    if ((f == 0) & (rec != 0)).any():
        raise ValueError("customers with frequency 0 must have recency 0")
    if require_monetary and (values[:, 3] < 0).any():
        raise ValueError("monetary_value must be non-negative")


def collapse_rfm(summary: pd.DataFrame) -> pd.DataFrame:
    """Distinct ``(frequency, recency, T)`` patterns with their customer count in ``weight``."""
    key = summary[["frequency", "recency", "T"]].astype({"frequency": "int64", "recency": "float64", "T": "float64"})
    return key.groupby(["frequency", "recency", "T"], sort=True).size().rename("weight").reset_index()


@contextlib.contextmanager
def _quiet() -> Any:
    """lifetimes prints the optimiser result on failure and emits numpy warnings; keep logs clean."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


# ---------------------------------------------------------------------------
# fitting

# Starting points (log-parameters; lifetimes' own default is 0.1 everywhere).  BFGS
# sometimes stops with "precision loss" at a point whose gradient is ~1e-7, which
# lifetimes reports as non-convergence; another start then converges cleanly.
_RESTARTS: tuple[float | None, ...] = (None, 0.0, 1.0, -1.0, 0.5)


def _fit_with_restarts(name: str, n_params: int, fit: Callable[[np.ndarray | None], object]) -> None:
    last: Exception | None = None
    for start in _RESTARTS:
        init = None if start is None else np.full(n_params, start)
        try:
            with _quiet():
                fit(init)
            return
        except Exception as exc:  # lifetimes.utils.ConvergenceError and numerical failures
            last = exc
    raise ModelFitError(
        f"{name} fit did not converge from {len(_RESTARTS)} starting points "
        f"({type(last).__name__}: {str(last).strip()}); try a positive penalizer_coef (e.g. 0.001)"
    ) from last


def fit_bgnbd(
    summary: pd.DataFrame,
    *,
    penalizer_coef: float = 0.0,
    weighted: bool = True,
    min_repeat_buyers: int = 10,
    tol: float = 1e-7,
) -> BetaGeoFitter:
    """Fit BG/NBD on an RFM summary (collapsed to weighted patterns when ``weighted``)."""
    validate_rfm(summary)
    n_repeat = int((summary["frequency"] > 0).sum())
    if n_repeat < min_repeat_buyers:
        raise InsufficientDataError(
            f"only {n_repeat} repeat buyer(s) (frequency > 0) among {len(summary)} customers; "
            f"BG/NBD needs at least {min_repeat_buyers} to estimate the dropout process"
        )
    if weighted:
        pat = collapse_rfm(summary)
        f, rec, t, w = pat["frequency"], pat["recency"], pat["T"], pat["weight"]
    else:
        f, rec, t, w = summary["frequency"], summary["recency"], summary["T"], None
    if float(np.max(t)) <= 0:
        raise InsufficientDataError("all customers have age T == 0; nothing to learn from")
    fitter = BetaGeoFitter(penalizer_coef=penalizer_coef)
    args = (
        np.asarray(f, dtype="int64"),
        np.asarray(rec, dtype="float64"),
        np.asarray(t, dtype="float64"),
    )
    weights = None if w is None else np.asarray(w, dtype="float64")
    _fit_with_restarts("BG/NBD", 4, lambda init: fitter.fit(*args, weights=weights, tol=tol, initial_params=init))
    params = fitter.params_.to_numpy(dtype="float64")
    if not np.isfinite(params).all() or (params <= 0).any():
        raise ModelFitError(f"BG/NBD fit returned unusable parameters {fitter.params_.to_dict()}")
    return fitter


def fit_gamma_gamma(
    summary: pd.DataFrame,
    *,
    penalizer_coef: float = 0.0,
    min_repeat_buyers: int = 10,
    weighted: bool = True,
    tol: float = 1e-7,
) -> GammaGammaFitter:
    """Fit Gamma-Gamma on repeat buyers with ``monetary_value > 0``."""
    validate_rfm(summary, require_monetary=True)
    rep = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    if len(rep) < min_repeat_buyers:
        raise InsufficientDataError(
            f"only {len(rep)} repeat buyer(s) with monetary_value > 0; "
            f"Gamma-Gamma needs at least {min_repeat_buyers}"
        )
    if weighted:
        pat = (
            rep[["frequency", "monetary_value"]]
            .astype("float64")
            .groupby(["frequency", "monetary_value"], sort=True)
            .size()
            .rename("weight")
            .reset_index()
        )
        f, m, w = pat["frequency"], pat["monetary_value"], pat["weight"].to_numpy(dtype="float64")
    else:
        f, m, w = rep["frequency"], rep["monetary_value"], None
    fitter = GammaGammaFitter(penalizer_coef=penalizer_coef)
    fa, ma = np.asarray(f, dtype="float64"), np.asarray(m, dtype="float64")
    _fit_with_restarts("Gamma-Gamma", 3, lambda init: fitter.fit(fa, ma, weights=w, tol=tol, initial_params=init))
    params = fitter.params_.to_numpy(dtype="float64")
    if not np.isfinite(params).all():
        raise ModelFitError(f"Gamma-Gamma fit returned unusable parameters {fitter.params_.to_dict()}")
    if fitter.params_["q"] <= 1.0:
        raise ModelFitError(
            f"Gamma-Gamma q = {fitter.params_['q']:.4g} <= 1: the population mean spend is undefined; "
            "check monetary_value (outliers, refunds) or use a penalizer"
        )
    return fitter


def fit_clv(
    summary: pd.DataFrame,
    *,
    penalizer_coef: float = 0.0,
    gg_penalizer_coef: float = 0.0,
    weighted: bool = True,
    min_repeat_buyers: int = 10,
    time_unit_days: float = 1.0,
) -> CLVModel:
    """Fit BG/NBD (all customers) and Gamma-Gamma (repeat buyers with spend) on ``summary``.

    Raises :class:`InsufficientDataError` when fewer than ``min_repeat_buyers``
    repeat buyers exist and :class:`ModelFitError` when the optimiser fails.
    """
    validate_rfm(summary, require_monetary=True)
    bgf = fit_bgnbd(
        summary, penalizer_coef=penalizer_coef, weighted=weighted, min_repeat_buyers=min_repeat_buyers
    )
    ggf = fit_gamma_gamma(
        summary, penalizer_coef=gg_penalizer_coef, weighted=weighted, min_repeat_buyers=min_repeat_buyers
    )
    n_rep_spend = int(((summary["frequency"] > 0) & (summary["monetary_value"] > 0)).sum())
    diagnostics = {
        "n_customers": int(len(summary)),
        "n_patterns": int(len(bgf.data)),
        "n_repeat_buyers": int((summary["frequency"] > 0).sum()),
        "n_repeat_buyers_with_spend": n_rep_spend,
        "bgnbd_mean_neg_log_likelihood": float(bgf._negative_log_likelihood_),
        "gg_mean_neg_log_likelihood": float(ggf._negative_log_likelihood_),
    }
    bp, gp = bgf.params_, ggf.params_
    return CLVModel(
        r=float(bp["r"]),
        alpha=float(bp["alpha"]),
        a=float(bp["a"]),
        b=float(bp["b"]),
        p=float(gp["p"]),
        q=float(gp["q"]),
        v=float(gp["v"]),
        penalizer_coef=float(penalizer_coef),
        gg_penalizer_coef=float(gg_penalizer_coef),
        time_unit_days=float(time_unit_days),
        diagnostics=diagnostics,
    )


# ---------------------------------------------------------------------------
# prediction


def expected_purchases(
    model: CLVModel, t: float, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """E[number of purchases in the next ``t`` time units | history] (BG/NBD eq. 10)."""
    bgf = model.bgnbd()
    with _quiet():
        out = bgf.conditional_expected_number_of_purchases_up_to_time(t, frequency, recency, T)
    return np.asarray(out, dtype="float64")


def discounted_purchases(
    model: CLVModel,
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
    *,
    months: int = 12,
    monthly_discount_rate: float = 0.01,
    days_per_month: float = 30.0,
) -> np.ndarray:
    """Discounted expected purchases: ``sum_i (E[X(i*M)] - E[X((i-1)*M)]) / (1 + d)**i``, i = 1..months."""
    step = days_per_month / model.time_unit_days
    total = np.zeros(len(frequency), dtype="float64")
    prev = np.zeros(len(frequency), dtype="float64")
    for i in range(1, months + 1):
        cum = expected_purchases(model, i * step, frequency, recency, T)
        total += (cum - prev) / (1.0 + monthly_discount_rate) ** i
        prev = cum
    return total


def discounted_value(
    model: CLVModel,
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
    avg_value: np.ndarray,
    *,
    months: int = 12,
    monthly_discount_rate: float = 0.01,
    days_per_month: float = 30.0,
) -> np.ndarray:
    """Discounted expected value over ``months`` (lifetimes' ``customer_lifetime_value``)."""
    return avg_value * discounted_purchases(
        model, frequency, recency, T,
        months=months, monthly_discount_rate=monthly_discount_rate, days_per_month=days_per_month,
    )


def predict_clv(
    model: CLVModel,
    summary: pd.DataFrame,
    *,
    monthly_discount_rate: float = 0.01,
    days_per_month: float = 30.0,
) -> pd.DataFrame:
    """Score an RFM summary with a fitted :class:`CLVModel` (columns :data:`PREDICTION_COLUMNS`).

    The BG/NBD quantities are evaluated once per distinct ``(frequency, recency, T)``
    pattern and broadcast to the customers sharing it.
    """
    validate_rfm(summary, require_monetary=True)
    if monthly_discount_rate <= -1:
        raise ValueError("monthly_discount_rate must be > -1")
    f = summary["frequency"].to_numpy(dtype="float64")
    rec = summary["recency"].to_numpy(dtype="float64")
    t = summary["T"].to_numpy(dtype="float64")
    m = summary["monetary_value"].to_numpy(dtype="float64")
    codes, uniq = pd.MultiIndex.from_arrays([f, rec, t]).factorize()
    uf = uniq.get_level_values(0).to_numpy(dtype="float64")
    ur = uniq.get_level_values(1).to_numpy(dtype="float64")
    ut = uniq.get_level_values(2).to_numpy(dtype="float64")
    unit = model.time_unit_days
    bgf = model.bgnbd()
    with _quiet():
        p_alive = np.asarray(bgf.conditional_probability_alive(uf, ur, ut), dtype="float64")[codes]
    e90 = expected_purchases(model, 90.0 / unit, uf, ur, ut)[codes]
    e365 = expected_purchases(model, 365.0 / unit, uf, ur, ut)[codes]
    disc = discounted_purchases(
        model, uf, ur, ut, months=12, monthly_discount_rate=monthly_discount_rate, days_per_month=days_per_month
    )[codes]
    # Gamma-Gamma conditional expected spend (eq. 5 of Hardie's note 025); f == 0 -> population mean
    p, q, v = model.p, model.q, model.v
    w_ind = p * f / (p * f + q - 1.0)
    avg = (1.0 - w_ind) * (v * p / (q - 1.0)) + w_ind * m
    out = pd.DataFrame(
        {
            "customer_id": summary["customer_id"].to_numpy() if "customer_id" in summary else summary.index.to_numpy(),
            "p_alive": p_alive,
            "expected_purchases_90d": e90,
            "expected_purchases_365d": e365,
            "expected_avg_value": avg,
            "expected_spend_90d": e90 * avg,
            "predicted_clv_12m": avg * disc,
        }
    )
    num = out.columns.drop("customer_id")
    if not np.isfinite(out[num].to_numpy()).all():
        bad = int((~np.isfinite(out[num].to_numpy())).any(axis=1).sum())
        raise ModelFitError(f"{bad} customer(s) got non-finite predictions; parameters {model.params}")
    return out


def bgnbd_log_likelihood(model: CLVModel, summary: pd.DataFrame) -> float:
    """Total BG/NBD log-likelihood of ``summary`` under ``model`` (no penalizer)."""
    f = summary["frequency"].to_numpy(dtype="float64")
    rec = summary["recency"].to_numpy(dtype="float64")
    t = summary["T"].to_numpy(dtype="float64")
    log_params = np.log([model.r, model.alpha, model.a, model.b])
    with _quiet():
        nll = BetaGeoFitter._negative_log_likelihood(log_params, f, rec, t, np.ones_like(f), 0.0)
    return float(-nll * len(f))


__all__ = [
    "BGNBD_PARAMS",
    "GG_PARAMS",
    "PREDICTION_COLUMNS",
    "CLVModel",
    "InsufficientDataError",
    "ModelFitError",
    "bgnbd_log_likelihood",
    "collapse_rfm",
    "discounted_purchases",
    "discounted_value",
    "expected_purchases",
    "fit_bgnbd",
    "fit_clv",
    "fit_gamma_gamma",
    "predict_clv",
    "validate_rfm",
]
