"""RFM summary builder (reference for the SQL version) and behavioural features / labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifetimes.utils import summary_data_from_transaction_data

from ml.features import RFM_COLUMNS, behavioral_features, future_labels, rfm_summary
from ml.synthetic import simulate_transactions


@pytest.fixture()
def small_log() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "b", "b", "c", "d", "d"],
            "ordered_at": pd.to_datetime(
                [
                    "2024-01-01 09:00",
                    "2024-01-01 18:30",  # same day as the first order: merged into the first purchase day
                    "2024-01-05 12:00",
                    "2024-01-09 08:00",
                    "2024-01-02 10:00",
                    "2024-01-09 23:59",
                    "2024-01-03 00:00",
                    "2024-01-08 07:00",
                    "2024-01-12 07:00",  # after the cutoff: ignored
                ]
            ),
            "amount": [10.0, 5.0, 20.0, 30.0, 7.0, 8.0, 1.0, 4.0, 99.0],
        }
    )


def test_rfm_hand_computed(small_log: pd.DataFrame) -> None:
    rfm = rfm_summary(small_log, "2024-01-10")
    assert list(rfm.columns) == list(RFM_COLUMNS)
    expected = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "frequency": [2, 1, 0, 0],
            "recency": [8.0, 7.0, 0.0, 0.0],
            "T": [9.0, 8.0, 7.0, 2.0],
            "monetary_value": [25.0, 8.0, 0.0, 0.0],
        }
    )
    pd.testing.assert_frame_equal(rfm, expected)


def test_rfm_matches_lifetimes_on_small_frame(small_log: pd.DataFrame) -> None:
    ref = summary_data_from_transaction_data(
        small_log, "customer_id", "ordered_at", "amount", observation_period_end="2024-01-10"
    )
    mine = rfm_summary(small_log, "2024-01-10").set_index("customer_id")
    ref = ref.loc[mine.index]
    np.testing.assert_allclose(mine[["frequency", "recency", "T", "monetary_value"]].to_numpy(float), ref.to_numpy())


def test_rfm_matches_lifetimes_on_synthetic_log() -> None:
    tx = simulate_transactions(800, seed=5, start="2024-01-01", end="2024-12-31").transactions
    cutoff = "2024-10-15"
    ref = summary_data_from_transaction_data(tx, "customer_id", "ordered_at", "amount", observation_period_end=cutoff)
    mine = rfm_summary(tx, cutoff).set_index("customer_id").loc[ref.index]
    np.testing.assert_allclose(
        mine[["frequency", "recency", "T", "monetary_value"]].to_numpy(float), ref.to_numpy(), rtol=1e-12
    )


def test_rfm_with_timezone_aware_timestamps(small_log: pd.DataFrame) -> None:
    tz_log = small_log.assign(ordered_at=small_log["ordered_at"].dt.tz_localize("America/New_York"))
    pd.testing.assert_frame_equal(rfm_summary(tz_log, "2024-01-10"), rfm_summary(small_log, "2024-01-10"))


def test_rfm_custom_column_names(small_log: pd.DataFrame) -> None:
    renamed = small_log.rename(columns={"customer_id": "cust", "ordered_at": "ts", "amount": "net"})
    out = rfm_summary(renamed, "2024-01-10", customer_col="cust", time_col="ts", amount_col="net")
    pd.testing.assert_frame_equal(out, rfm_summary(small_log, "2024-01-10"))


def test_behavioral_features(small_log: pd.DataFrame) -> None:
    f = behavioral_features(small_log, "2024-01-10", windows=(3,)).set_index("customer_id")
    assert f.loc["a", "n_orders"] == 4
    assert f.loc["a", "total_spend"] == 65.0
    assert f.loc["a", "first_order_value"] == 15.0  # both orders of the first day
    assert f.loc["a", "days_since_last"] == 1.0
    assert f.loc["a", "mean_interpurchase_days"] == 4.0
    assert np.isnan(f.loc["c", "mean_interpurchase_days"])
    # window (2024-01-07, 2024-01-10]: a bought on the 9th, b on the 9th, d on the 8th
    assert f["purchase_days_last_3d"].to_dict() == {"a": 1, "b": 1, "c": 0, "d": 1}
    assert f.loc["b", "spend_last_3d"] == 8.0


def test_behavioral_features_leave_out_orders_without_a_customer(small_log: pd.DataFrame) -> None:
    """Rows without a customer id belong to no customer (not to another one); the customers come
    out sorted by id, with their ids as given."""
    log = pd.concat([small_log, pd.DataFrame({"customer_id": [None, None], "amount": [500.0, 600.0],
                                              "ordered_at": pd.to_datetime(["2024-01-02", "2024-01-09"])})],
                    ignore_index=True).sample(frac=1.0, random_state=3)
    f = behavioral_features(log, "2024-01-10", windows=(3,))
    assert f["customer_id"].tolist() == ["a", "b", "c", "d"]
    assert f["total_spend"].tolist() == [65.0, 15.0, 1.0, 4.0]
    pd.testing.assert_frame_equal(f, behavioral_features(small_log, "2024-01-10", windows=(3,)))


def test_future_labels(small_log: pd.DataFrame) -> None:
    labels = future_labels(small_log, "2024-01-08", 3).set_index("customer_id")
    # window (2024-01-08, 2024-01-11]
    assert labels["churned"].to_dict() == {"a": 0, "b": 0, "c": 1, "d": 1}
    assert labels.loc["a", "future_spend"] == 30.0
    later = future_labels(small_log, "2024-01-08", 4).set_index("customer_id")
    assert later.loc["d", "churned"] == 0 and later.loc["d", "future_spend"] == 99.0


def test_features_use_no_information_after_the_as_of_date() -> None:
    tx = simulate_transactions(500, seed=2, start="2024-01-01", end="2024-12-31").transactions
    as_of = pd.Timestamp("2024-08-31")
    full = behavioral_features(tx, as_of)
    truncated = behavioral_features(tx[tx["ordered_at"] < as_of + pd.Timedelta(days=1)], as_of)
    pd.testing.assert_frame_equal(full, truncated)
