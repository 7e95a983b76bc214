"""The synthetic BG/NBD + Gamma-Gamma generator is consistent with its own truth."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.features import rfm_summary
from ml.synthetic import SyntheticParams, simulate_rfm_summary, simulate_transactions


def test_simulated_summary_is_valid_rfm() -> None:
    s = simulate_rfm_summary(20_000, seed=3)
    assert (s["recency"] <= s["T"]).all()
    assert (s.loc[s["frequency"] == 0, ["recency", "monetary_value"]] == 0).all().all()
    assert (s.loc[s["frequency"] > 0, "monetary_value"] > 0).all()
    # one-time buyers are alive by construction (dropout only follows a repeat purchase)
    assert s.loc[s["frequency"] == 0, "true_alive"].all()
    # mean purchase rate and mean spend match the parameters
    p = SyntheticParams()
    assert abs(s["true_lambda"].mean() / (p.r / p.alpha) - 1) < 0.05
    assert abs(s["true_mean_spend"].mean() / (p.p * p.v / (p.q - 1)) - 1) < 0.05


def test_integer_day_summary() -> None:
    s = simulate_rfm_summary(5000, seed=1, integer_days=True)
    assert (s["T"] == np.floor(s["T"])).all() and (s["recency"] == np.floor(s["recency"])).all()


def test_simulated_transactions_respect_truth() -> None:
    sim = simulate_transactions(3000, seed=8, start="2024-01-01", end="2024-12-31")
    tx, cust = sim.transactions, sim.customers.set_index("customer_id")
    assert tx["ordered_at"].between(pd.Timestamp("2024-01-01"), pd.Timestamp("2025-01-01")).all()
    assert tx["order_id"].is_unique and (tx["amount"] >= 0.01).all()
    first = tx.groupby("customer_id")["ordered_at"].min()
    assert (first == cust.loc[first.index, "first_purchase_at"]).all()
    repeats = tx.groupby("customer_id").size() - 1
    assert (repeats <= cust.loc[repeats.index, "n_repeat_lifetime"]).all()
    # nobody buys after dropping out; the dropout happens at the last purchase
    dead = cust["death_at"].notna()
    last = tx.groupby("customer_id")["ordered_at"].max()
    assert (last.loc[dead[dead].index] == cust.loc[dead, "death_at"]).all()
    # customers who died made exactly their lifetime number of repeat purchases
    assert (repeats.loc[dead[dead].index] == cust.loc[dead, "n_repeat_lifetime"]).all()
    assert len(rfm_summary(tx, "2024-12-31")) == 3000
