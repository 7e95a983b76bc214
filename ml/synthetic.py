"""Synthetic BG/NBD + Gamma-Gamma customers with known parameters (for tests and benchmarks).

Generative model (Fader, Hardie & Lee 2005; time unit = days):

* purchase rate ``lambda ~ Gamma(shape=r, rate=alpha)``; while alive a customer
  buys as a Poisson process with rate ``lambda``;
* dropout probability ``p ~ Beta(a, b)``; the customer is alive at the first
  purchase (time 0) and becomes inactive *right after each repeat purchase*
  with probability ``p`` (exactly the BG/NBD likelihood, so one-time buyers are
  alive by construction);
* spend: ``nu ~ Gamma(shape=q, rate=v)`` per customer and every transaction
  value ``z ~ Gamma(shape=p_spend, rate=nu)`` (Gamma-Gamma model, mean spend
  ``p_spend / nu``).

Everything is vectorised; a million customers take about a second.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ml.features import DateLike


@dataclass(frozen=True)
class SyntheticParams:
    """True parameters.  Defaults are CDNOW's fitted values converted from weeks to days."""

    r: float = 0.243
    alpha: float = 4.414 * 7.0
    a: float = 0.793
    b: float = 2.426
    p: float = 6.25
    q: float = 3.74
    v: float = 15.44

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _draw_latents(
    rng: np.random.Generator, n: int, params: SyntheticParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    lam = rng.gamma(shape=params.r, scale=1.0 / params.alpha, size=n)
    drop = rng.beta(params.a, params.b, size=n)
    # number of repeat purchases made before dropping out (dropout after the k-th), k >= 1
    k_life = rng.geometric(np.clip(drop, 1e-12, 1.0))
    nu = rng.gamma(shape=params.q, scale=1.0 / params.v, size=n)
    return lam, drop, k_life, nu


def simulate_rfm_summary(
    n_customers: int,
    params: SyntheticParams | None = None,
    *,
    T: float | np.ndarray | tuple[float, float] = (30.0, 730.0),
    seed: int = 0,
    integer_days: bool = False,
) -> pd.DataFrame:
    """Simulate an RFM summary directly (no transaction log).

    ``T`` is the customers' age in days: a scalar, an array of length
    ``n_customers`` or a ``(low, high)`` range drawn uniformly.  With
    ``integer_days`` ages and recencies are whole days (as in daily data,
    which makes many customers share one (frequency, recency, T) pattern).

    Returns ``customer_id, frequency, recency, T, monetary_value`` plus the
    truth: ``true_lambda``, ``true_dropout``, ``true_alive`` (still alive at T),
    ``true_mean_spend`` (= p / nu).
    """
    params = params or SyntheticParams()
    rng = np.random.default_rng(seed)
    n = int(n_customers)
    if isinstance(T, tuple):
        age = rng.uniform(T[0], T[1], size=n)
    else:
        age = np.broadcast_to(np.asarray(T, dtype="float64"), (n,)).copy()
    if integer_days:
        age = np.floor(age)
    lam, drop, k_life, nu = _draw_latents(rng, n, params)
    arrivals = rng.poisson(lam * age)  # purchases an immortal customer would make in (0, T]
    x = np.minimum(arrivals, k_life)
    # the x-th of `arrivals` uniform order statistics on (0, T) is T * Beta(x, arrivals - x + 1)
    has = x > 0
    tx = np.zeros(n)
    tx[has] = age[has] * rng.beta(x[has], arrivals[has] - x[has] + 1)
    if integer_days:
        tx = np.minimum(np.floor(tx), age)
    # mean of x Gamma(p, nu) draws is Gamma(p * x, rate nu * x)
    mv = np.zeros(n)
    mv[has] = rng.gamma(shape=params.p * x[has], scale=1.0 / (nu[has] * x[has]))
    return pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1, dtype="int64"),
            "frequency": x.astype("int64"),
            "recency": tx,
            "T": age,
            "monetary_value": mv,
            "true_lambda": lam,
            "true_dropout": drop,
            "true_alive": arrivals < k_life,
            "true_mean_spend": params.p / nu,
        }
    )


@dataclass(frozen=True)
class SyntheticTransactions:
    transactions: pd.DataFrame
    """customer_id, order_id, ordered_at, amount (sorted by time)."""
    customers: pd.DataFrame
    """Truth per customer: customer_id, first_purchase_at, true_lambda, true_dropout,
    true_mean_spend, n_repeat_lifetime, death_at (NaT if alive at ``end``)."""
    params: SyntheticParams


def simulate_transactions(
    n_customers: int,
    params: SyntheticParams | None = None,
    *,
    start: DateLike = "2023-01-01",
    end: DateLike = "2025-12-31",
    acquisition_end: DateLike | None = None,
    seed: int = 0,
) -> SyntheticTransactions:
    """Simulate a transaction log between ``start`` and ``end`` (inclusive day).

    First purchases are uniform over ``[start, acquisition_end]`` (default:
    ``end``), repeat purchases follow the BG/NBD process in continuous time,
    transaction values follow the Gamma-Gamma model (rounded to cents, at least
    0.01).  Orders after ``end`` are not emitted; the truth frame says which
    customers are still alive at ``end``.
    """
    params = params or SyntheticParams()
    rng = np.random.default_rng(seed)
    n = int(n_customers)
    t0 = pd.Timestamp(start).normalize()
    t_end = pd.Timestamp(end).normalize() + pd.Timedelta(days=1)  # exclusive, in days
    acq_end = pd.Timestamp(acquisition_end).normalize() if acquisition_end is not None else t_end
    span = (acq_end - t0) / pd.Timedelta(days=1)
    horizon_total = (t_end - t0) / pd.Timedelta(days=1)
    if span <= 0 or horizon_total <= 0:
        raise ValueError("need start < acquisition_end <= end")
    first = rng.uniform(0.0, span, size=n)  # days after start
    window = horizon_total - first  # days each customer is observed
    lam, drop, k_life, nu = _draw_latents(rng, n, params)
    arrivals = rng.poisson(lam * window)
    n_rep = np.minimum(arrivals, k_life)
    # Poisson arrival times given their count are sorted uniforms; keep the first n_rep
    owner = np.repeat(np.arange(n), arrivals)
    u = rng.uniform(size=owner.size)
    order = np.lexsort((u, owner))
    owner, u = owner[order], u[order]
    starts = np.cumsum(arrivals) - arrivals
    rank = np.arange(owner.size) - starts[owner]
    keep = rank < n_rep[owner]
    rep_owner = owner[keep]
    rep_time = first[rep_owner] + u[keep] * window[rep_owner]
    died = k_life <= arrivals  # the k-th repeat purchase (after which they drop out) happened
    death_time = np.full(n, np.nan)
    last_rank_pos = starts + k_life - 1
    death_time[died] = first[died] + u[last_rank_pos[died]] * window[died]

    cust_idx = np.concatenate([np.arange(n), rep_owner])
    times = np.concatenate([first, rep_time])
    amount = rng.gamma(shape=params.p, scale=1.0 / nu[cust_idx])
    amount = np.maximum(np.round(amount, 2), 0.01)
    ordered_at = t0 + pd.to_timedelta(np.round(times * 86400.0), unit="s")
    tx = pd.DataFrame(
        {
            "customer_id": (cust_idx + 1).astype("int64"),
            "ordered_at": ordered_at,
            "amount": amount,
        }
    )
    tx = tx.sort_values(["ordered_at", "customer_id"], kind="mergesort").reset_index(drop=True)
    tx.insert(1, "order_id", np.arange(1, len(tx) + 1, dtype="int64"))
    customers = pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1, dtype="int64"),
            "first_purchase_at": t0 + pd.to_timedelta(np.round(first * 86400.0), unit="s"),
            "true_lambda": lam,
            "true_dropout": drop,
            "true_mean_spend": params.p / nu,
            "n_repeat_lifetime": k_life,
            "death_at": t0 + pd.to_timedelta(np.round(death_time * 86400.0), unit="s"),
        }
    )
    return SyntheticTransactions(transactions=tx, customers=customers, params=params)
