"""Markov removal effects (exact absorbing chain), Shapley values and per-order credits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.attribution import (
    ORDER_CREDIT_COLUMNS,
    attribution_diagnostics,
    channel_attribution,
    markov_attribution,
    markov_chain,
    normalize_paths,
    order_credits,
    shapley_attribution,
    shapley_values,
)


@pytest.fixture()
def reference_paths() -> pd.DataFrame:
    """C1>C2>C3 converts (1000), C1 does not, C2>C3 does not."""
    return pd.DataFrame(
        {
            "path_id": [1, 2, 3],
            "channels": [["C1", "C2", "C3"], ["C1"], ["C2", "C3"]],
            "converted": [True, False, False],
            "value": [1000.0, 0.0, 0.0],
        }
    )


def test_markov_reference_journeys(reference_paths: pd.DataFrame) -> None:
    out = markov_attribution(reference_paths).set_index("channel")
    # P(conv) = 2/3 * 1/2 * 1 * 1/2 + 1/3 * 1 * 1/2 = 1/3
    assert out["conversion_probability"].iloc[0] == pytest.approx(1 / 3, abs=1e-12)
    assert out.loc["C1", "conversion_probability_without"] == pytest.approx(1 / 6, abs=1e-12)
    assert out["weight"].to_dict() == pytest.approx({"C1": 0.5, "C2": 1.0, "C3": 1.0}, abs=1e-12)
    assert out["credited_value"].to_dict() == pytest.approx({"C1": 200.0, "C2": 400.0, "C3": 400.0}, abs=1e-9)
    assert out["credited_conversions"].sum() == pytest.approx(1.0)


def test_shapley_reference_journeys(reference_paths: pd.DataFrame) -> None:
    out = shapley_attribution(reference_paths).set_index("channel")
    # the only converting channel set is {C1, C2, C3}: one conversion shared equally
    assert out["weight"].to_dict() == pytest.approx({"C1": 1 / 3, "C2": 1 / 3, "C3": 1 / 3})
    assert out["credited_value"].sum() == pytest.approx(1000.0)


def test_markov_transition_matrix(reference_paths: pd.DataFrame) -> None:
    chain = markov_chain(normalize_paths(reference_paths))
    assert chain.states == ("start", "C1", "C2", "C3", "conversion", "null")
    T = pd.DataFrame(chain.transition, index=chain.states, columns=chain.states)
    assert T.loc["start", "C1"] == pytest.approx(2 / 3)
    assert T.loc["C1", "null"] == pytest.approx(1 / 2)
    assert T.loc["C2", "C3"] == 1.0
    assert T.loc["C3", "conversion"] == pytest.approx(1 / 2)
    np.testing.assert_allclose(T.iloc[:-2].sum(axis=1), 1.0)


def test_markov_conversion_probability_is_the_conversion_rate() -> None:
    rng = np.random.default_rng(3)
    channels = ["search", "social", "email", "display", "direct"]
    n = 2000
    paths = pd.DataFrame(
        {
            "path_id": range(n),
            "channels": [list(rng.choice(channels, rng.integers(1, 6))) for _ in range(n)],
            "converted": rng.random(n) < 0.25,
            "value": rng.gamma(2.0, 40.0, n),
        }
    )
    out = markov_attribution(paths)
    assert out["conversion_probability"].iloc[0] == pytest.approx(paths["converted"].mean(), abs=1e-12)
    assert out["credited_value"].sum() == pytest.approx(paths.loc[paths["converted"], "value"].sum())
    assert (out["weight"] >= 0).all() and (out["weight"] <= 1).all()


def test_markov_hand_computed_second_example() -> None:
    # A>B converts twice, A fails once, B converts once.
    paths = pd.DataFrame(
        {
            "path_id": [1, 2, 3, 4],
            "channels": ["A > B", "A>B", "A", "B"],
            "converted": [True, True, False, True],
            "value": [10.0, 20.0, 0.0, 30.0],
        }
    )
    out = markov_attribution(paths).set_index("channel")
    # start->A 3/4, start->B 1/4; A->B 2/3, A->null 1/3; B->conv 1
    # P = 3/4*2/3 + 1/4 = 3/4; without A: 1/4 -> RE 2/3; without B: 0 -> RE 1
    assert out["conversion_probability"].iloc[0] == pytest.approx(0.75)
    assert out["weight"].to_dict() == pytest.approx({"A": 2 / 3, "B": 1.0})
    assert out["credited_value"].to_dict() == pytest.approx({"A": 60 * 0.4, "B": 60 * 0.6})


def test_shapley_closed_form_equals_enumeration() -> None:
    rng = np.random.default_rng(0)
    channels = [f"c{i}" for i in range(9)]
    n = 1500
    paths = pd.DataFrame(
        {
            "path_id": range(n),
            "channels": [list(rng.choice(channels, rng.integers(1, 5))) for _ in range(n)],
            "converted": rng.random(n) < 0.3,
            "value": rng.gamma(2.0, 50.0, n),
        }
    )
    for worth in ("conversions", "value"):
        exact = shapley_values(paths, worth=worth)
        brute = shapley_values(paths, worth=worth, method="enumerate")
        assert exact.keys() == brute.keys()
        for c in exact:
            assert exact[c] == pytest.approx(brute[c], rel=1e-9, abs=1e-9)
        # efficiency: Shapley values add up to the grand coalition's worth
        total = paths["converted"].sum() if worth == "conversions" else paths.loc[paths["converted"], "value"].sum()
        assert sum(exact.values()) == pytest.approx(total)


def test_shapley_hand_computed() -> None:
    # {A}: 2 conversions, {A,B}: 1 conversion, {B}: 0 (non-converting), {C}: 1 conversion
    paths = pd.DataFrame(
        {
            "path_id": range(5),
            "channels": [["A"], ["A", "A"], ["B", "A"], ["B"], ["C"]],
            "converted": [True, True, True, False, True],
        }
    )
    phi = shapley_values(paths, method="enumerate")
    assert phi == pytest.approx({"A": 2.5, "B": 0.5, "C": 1.0})


def test_enumeration_refuses_too_many_channels() -> None:
    paths = pd.DataFrame({"path_id": [1], "channels": [[f"c{i}" for i in range(16)]], "converted": [True]})
    with pytest.raises(ValueError, match="max_channels"):
        shapley_values(paths, method="enumerate")
    assert sum(shapley_values(paths).values()) == pytest.approx(1.0)  # the closed form has no limit


def test_order_credits_sum_to_one(reference_paths: pd.DataFrame) -> None:
    weights = channel_attribution(reference_paths)
    orders = pd.DataFrame(
        {
            "order_id": ["o1", "o2", "o3", "o4"],
            "channels": [["C1", "C2", "C3"], ["C3", "C3"], ["unknown"], []],
            "value": [1000.0, 50.0, 10.0, 5.0],
        }
    )
    credits = order_credits(orders, weights)
    assert list(credits.columns) == list(ORDER_CREDIT_COLUMNS)
    assert set(credits["model"]) == {"markov", "shapley"}
    sums = credits.groupby(["model", "order_id"])["credit_fraction"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0)
    revenue = credits.groupby(["model", "order_id"])["credited_revenue"].sum()
    assert revenue.loc[("markov", "o1")] == pytest.approx(1000.0)
    assert "o4" not in set(credits["order_id"])  # no touchpoints, nothing to credit
    o1 = credits[(credits["order_id"] == "o1") & (credits["model"] == "markov")]
    assert o1["touchpoint_index"].tolist() == [1, 2, 3]
    assert o1["credit_fraction"].tolist() == pytest.approx([0.2, 0.4, 0.4])
    assert o1["credited_revenue"].tolist() == pytest.approx([200.0, 400.0, 400.0])
    # unknown channel (weight 0 everywhere): equal split keeps the order whole
    o3 = credits[credits["order_id"] == "o3"]
    assert o3["credit_fraction"].tolist() == [1.0, 1.0]


def test_order_credits_from_mapping() -> None:
    orders = pd.DataFrame({"order_id": [1], "channels": ["email > search > email"], "value": [90.0]})
    credits = order_credits(orders, {"markov": {"email": 1.0, "search": 2.0}})
    assert credits["channel"].tolist() == ["email", "search", "email"]
    assert credits["credit_fraction"].tolist() == pytest.approx([0.25, 0.5, 0.25])
    assert credits["credited_revenue"].sum() == pytest.approx(90.0)


def test_paths_without_touchpoints_are_dropped() -> None:
    paths = pd.DataFrame(
        {"path_id": [1, 2, 3], "channels": [["A"], [], ["A"]], "converted": [True, True, False], "value": [5.0, 7.0, 0.0]}
    )
    diag = attribution_diagnostics(paths)
    assert diag["n_paths_without_touchpoints"] == 1
    assert diag["n_conversions"] == 1
    out = markov_attribution(paths)
    assert out["credited_value"].sum() == pytest.approx(5.0)


def test_counted_journeys_weigh_like_repeated_rows() -> None:
    """A row with ``count`` n is n identical journeys (value: their total) for both models and
    the diagnostics: the ML job passes non-converting journeys counted, not one row each."""
    rows = pd.DataFrame({
        "path_id": range(9),
        "channels": [["A", "B"], ["A", "B"], ["B"], ["A"], ["A"], ["A"], ["B", "A"], [], []],
        "converted": [True, True, True, False, False, False, False, False, True],
        "value": [10.0, 30.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 7.0],
    })
    counted = pd.DataFrame({
        "path_id": ["ab", "b", "a", "ba", "none", "none-conv"],
        "channels": [["A", "B"], ["B"], ["A"], ["B", "A"], [], []],
        "converted": [True, True, False, False, False, True],
        "value": [40.0, 5.0, 0.0, 0.0, 0.0, 7.0],
        "count": [2, 1, 3, 1, 1, 1],
    })
    for fn in (markov_attribution, shapley_attribution):
        pd.testing.assert_frame_equal(fn(counted), fn(rows))
    assert attribution_diagnostics(counted) == attribution_diagnostics(rows)
    assert attribution_diagnostics(counted)["n_paths"] == 9
    assert attribution_diagnostics(counted)["n_conversions"] == 3
    np.testing.assert_array_equal(markov_chain(normalize_paths(counted)).counts,
                                  markov_chain(normalize_paths(rows)).counts)
    with pytest.raises(ValueError, match="at least 1"):
        normalize_paths(counted.assign(count=[2, 1, 0, 1, 1, 1]))
