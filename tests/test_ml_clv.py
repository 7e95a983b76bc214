"""BG/NBD + Gamma-Gamma: CDNOW reproduction, weighted fitting, parameter recovery, degenerate input."""

from __future__ import annotations

import importlib.resources

import numpy as np
import pandas as pd
import pytest

from ml.clv import (
    PREDICTION_COLUMNS,
    CLVModel,
    InsufficientDataError,
    bgnbd_log_likelihood,
    collapse_rfm,
    fit_bgnbd,
    fit_clv,
    predict_clv,
)
from ml.synthetic import SyntheticParams, simulate_rfm_summary

# Published CDNOW estimates (Fader, Hardie & Lee 2005; lifetimes docs), time unit = weeks
CDNOW_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
CDNOW_GG = {"p": 6.25, "q": 3.74, "v": 15.44}


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    """lifetimes' CDNOW summary (2357 customers, weeks) with monetary value ``zbar``.

    Read from the files shipped inside the lifetimes package (``lifetimes.datasets``
    itself needs pkg_resources).
    """
    base = importlib.resources.files("lifetimes") / "datasets"
    with importlib.resources.as_file(base / "cdnow_customers_summary_with_transactions.csv") as path:
        df = pd.read_csv(path)
    with importlib.resources.as_file(base / "cdnow_customers_summary.csv") as path:
        plain = pd.read_csv(path)
    # the two shipped files describe the same customers
    assert len(df) == len(plain) == 2357
    assert (df["x"].to_numpy() == plain["frequency"].to_numpy()).all()
    np.testing.assert_allclose(df["t_x"], plain["recency"])
    return df.rename(columns={"ID": "customer_id", "x": "frequency", "t_x": "recency", "zbar": "monetary_value"})[
        ["customer_id", "frequency", "recency", "T", "monetary_value"]
    ]


@pytest.fixture(scope="module")
def cdnow_model(cdnow: pd.DataFrame) -> CLVModel:
    return fit_clv(cdnow, time_unit_days=7.0)


def test_cdnow_bgnbd_parameters(cdnow_model: CLVModel) -> None:
    for name, expected in CDNOW_BGNBD.items():
        assert getattr(cdnow_model, name) == pytest.approx(expected, rel=0.01), name


def test_cdnow_gamma_gamma_parameters(cdnow_model: CLVModel) -> None:
    for name, expected in CDNOW_GG.items():
        assert getattr(cdnow_model, name) == pytest.approx(expected, rel=0.01), name
    assert cdnow_model.diagnostics["n_repeat_buyers_with_spend"] == 946


def test_weighted_fit_equals_unweighted_fit(cdnow: pd.DataFrame, cdnow_model: CLVModel) -> None:
    unweighted = fit_clv(cdnow, time_unit_days=7.0, weighted=False)
    for name, value in unweighted.params.items():
        assert cdnow_model.params[name] == pytest.approx(value, rel=1e-4), name
    # the collapsed data really is smaller, and the weights account for every customer
    patterns = collapse_rfm(cdnow)
    assert len(patterns) < len(cdnow) / 2
    assert patterns["weight"].sum() == len(cdnow)
    assert cdnow_model.diagnostics["n_patterns"] == len(patterns)


def test_weighted_fit_equals_unweighted_on_daily_synthetic() -> None:
    summary = simulate_rfm_summary(6000, seed=11, integer_days=True)
    w = fit_bgnbd(summary, weighted=True).params_
    u = fit_bgnbd(summary, weighted=False).params_
    np.testing.assert_allclose(w.to_numpy(), u.to_numpy(), rtol=1e-4)
    assert len(collapse_rfm(summary)) < 0.7 * len(summary)


def test_predictions_match_lifetimes(cdnow: pd.DataFrame, cdnow_model: CLVModel) -> None:
    pred = cdnow_model.predict(cdnow, monthly_discount_rate=0.01, days_per_month=4.345 * 7)
    assert list(pred.columns) == list(PREDICTION_COLUMNS)
    assert (pred["customer_id"].to_numpy() == cdnow["customer_id"].to_numpy()).all()
    bgf, ggf = cdnow_model.bgnbd(), cdnow_model.gamma_gamma()
    f, r, t, m = cdnow["frequency"], cdnow["recency"], cdnow["T"], cdnow["monetary_value"]
    np.testing.assert_allclose(pred["p_alive"], bgf.conditional_probability_alive(f, r, t), rtol=1e-12)
    np.testing.assert_allclose(
        pred["expected_purchases_90d"],
        bgf.conditional_expected_number_of_purchases_up_to_time(90 / 7, f, r, t),
        rtol=1e-12,
    )
    np.testing.assert_allclose(pred["expected_avg_value"], ggf.conditional_expected_average_profit(f, m), rtol=1e-12)
    lifetimes_clv = ggf.customer_lifetime_value(bgf, f, r, t, m, time=12, discount_rate=0.01, freq="W")
    np.testing.assert_allclose(pred["predicted_clv_12m"], lifetimes_clv.to_numpy(), rtol=1e-9)


def test_one_time_buyers_are_alive_by_construction(cdnow: pd.DataFrame, cdnow_model: CLVModel) -> None:
    pred = cdnow_model.predict(cdnow)
    one_time = cdnow["frequency"].to_numpy() == 0
    assert (pred.loc[one_time, "p_alive"] == 1.0).all()
    assert (pred.loc[~one_time, "p_alive"] < 1.0).all()
    # without repeat purchases the expected spend is the Gamma-Gamma population mean
    pop_mean = cdnow_model.v * cdnow_model.p / (cdnow_model.q - 1)
    np.testing.assert_allclose(pred.loc[one_time, "expected_avg_value"], pop_mean)


def test_discount_rate_lowers_clv(cdnow: pd.DataFrame, cdnow_model: CLVModel) -> None:
    undiscounted = predict_clv(cdnow_model, cdnow, monthly_discount_rate=0.0)
    discounted = predict_clv(cdnow_model, cdnow, monthly_discount_rate=0.02)
    assert (discounted["predicted_clv_12m"] <= undiscounted["predicted_clv_12m"] + 1e-12).all()
    # undiscounted 12-month value = E[purchases in 360 days] x expected spend
    bgf = cdnow_model.bgnbd()
    e360 = bgf.conditional_expected_number_of_purchases_up_to_time(
        360 / 7, cdnow["frequency"], cdnow["recency"], cdnow["T"]
    )
    np.testing.assert_allclose(
        undiscounted["predicted_clv_12m"], e360 * undiscounted["expected_avg_value"], rtol=1e-9
    )


def test_parameter_recovery_on_synthetic_data() -> None:
    truth = SyntheticParams(r=0.5, alpha=20.0, a=0.8, b=3.0, p=6.0, q=4.0, v=15.0)
    summary = simulate_rfm_summary(30_000, truth, T=(60.0, 730.0), seed=7)
    model = fit_clv(summary)
    for name, expected in truth.as_dict().items():
        assert model.params[name] == pytest.approx(expected, rel=0.12), name
    # and the fit is the maximum: the truth has a lower likelihood than the estimate
    assert bgnbd_log_likelihood(model, summary) >= bgnbd_log_likelihood(
        CLVModel.from_dict({**model.params, "r": truth.r, "alpha": truth.alpha, "a": truth.a, "b": truth.b}), summary
    )


def test_penalizer_shrinks_parameters(cdnow: pd.DataFrame, cdnow_model: CLVModel) -> None:
    penalized = fit_clv(cdnow, time_unit_days=7.0, penalizer_coef=0.1)
    assert penalized.penalizer_coef == 0.1
    assert sum(v**2 for k, v in penalized.params.items() if k in "r alpha a b".split()) < sum(
        v**2 for k, v in cdnow_model.params.items() if k in "r alpha a b".split()
    )


def test_too_few_repeat_buyers_is_a_clear_error() -> None:
    summary = pd.DataFrame(
        {
            "customer_id": range(50),
            "frequency": [0] * 47 + [1, 2, 1],
            "recency": [0.0] * 47 + [5.0, 9.0, 3.0],
            "T": [30.0] * 50,
            "monetary_value": [0.0] * 47 + [10.0, 12.0, 8.0],
        }
    )
    with pytest.raises(InsufficientDataError, match="only 3 repeat buyer"):
        fit_clv(summary)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"recency": [40.0, 0.0]}, "recency > T"),
        ({"frequency": [1.5, 0.0]}, "non-negative integer"),
        ({"T": [float("nan"), 30.0]}, "missing or non-numeric"),
        ({"recency": [5.0, 2.0]}, "frequency 0 must have recency 0"),
    ],
)
def test_invalid_rfm_is_rejected(change: dict[str, list[float]], message: str) -> None:
    frame = pd.DataFrame(
        {"customer_id": [1, 2], "frequency": [1, 0], "recency": [5.0, 0.0], "T": [30.0, 30.0], "monetary_value": [9.0, 0.0]}
    )
    for col, values in change.items():
        frame[col] = values
    with pytest.raises(ValueError, match=message):
        fit_clv(frame)


def test_empty_summary_is_rejected() -> None:
    empty = pd.DataFrame(columns=["customer_id", "frequency", "recency", "T", "monetary_value"])
    with pytest.raises(InsufficientDataError, match="empty"):
        fit_clv(empty)


def test_model_round_trips_through_dict(cdnow_model: CLVModel, cdnow: pd.DataFrame) -> None:
    again = CLVModel.from_dict(cdnow_model.to_dict())
    assert again.params == cdnow_model.params
    pd.testing.assert_frame_equal(again.predict(cdnow), cdnow_model.predict(cdnow))


def test_fit_benchmark_runs_on_a_small_population() -> None:
    from bench.ml_fit import run

    result = run(20_000, seed=1, unweighted=True)
    assert result["n_patterns"] < result["n_customers"]
    assert result["max_rel_diff_weighted_vs_unweighted"] < 1e-4
    assert set(result["fitted_params"]) == {"r", "alpha", "a", "b", "p", "q", "v"}
