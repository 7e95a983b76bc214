"""Data-driven multi-touch attribution: first-order Markov removal effects and Shapley values.

Input: one row per customer journey ("path")::

    path_id     any id
    channels    ordered touchpoint channels: list/tuple/array, or a string "a > b > c"
    converted   bool
    value       conversion value (revenue); ignored for non-converting paths
    count       optional: how many identical journeys the row stands for (default 1); ``value``
                is then their total value. Counted journeys weigh like that many rows.

Journeys without any touchpoint carry no information about channels and are
dropped by both models (they are reported in ``n_paths_without_touchpoints``).

**Markov (first order, exact).**  States ``start``, one per channel,
``conversion`` and ``null``.  Every path ``c1 > ... > ck`` contributes the
transitions ``start -> c1 -> ... -> ck -> conversion|null``; transition
probabilities are the row-normalised counts.  ``P(conv)`` is the probability of
absorption in ``conversion`` from ``start``, solved exactly from the absorbing
chain: with ``Q`` the transient block (start and channels) and ``R`` the column
of one-step conversion probabilities, absorption probabilities are
``x = (I - Q)^-1 R`` (a linear solve, no simulation).  Removing channel ``c``
turns it into ``null`` (all its outgoing probability goes to ``null``).
``removal_effect(c) = 1 - P(conv | c removed) / P(conv)``; the channel's share
is ``RE_c / sum(RE)`` and its credited value is that share of the total
conversion value (and of the total number of conversions).

**Shapley ("simplified" marketing Shapley).**  Ordered paths are collapsed to
channel *sets*.  The worth of a coalition ``S`` is the number (or the value) of
converting paths whose channel set is a subset of ``S``.  That game is a sum of
unanimity games, so the Shapley value has the exact closed form
``phi_c = sum over converting channel sets T containing c of worth(T) / |T|``
(``method="exact"``, any number of channels); ``method="enumerate"`` evaluates
the textbook formula over all ``2^n`` coalitions (``n <= max_channels``, 15 by
default) and gives the same numbers.  Non-converting paths do not enter this
worth function.

**Per-order credits.**  :func:`order_credits` splits each converting order's
value over its touchpoints in proportion to the channel-level weights of a
model (Markov: removal effect, Shapley: Shapley value); the fractions of every
order sum to 1.  A channel appearing twice in one order is credited twice.  If
every touchpoint of an order has weight 0 (e.g. channels unknown to the
model), the order is split equally over its touchpoints so nothing is lost.
``touchpoint_index`` is 1-based in journey order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from math import factorial
from typing import Literal

import numpy as np
import pandas as pd

PATH_SEPARATOR = ">"

ATTRIBUTION_COLUMNS: tuple[str, ...] = (
    "model",
    "channel",
    "weight",
    "credit_share",
    "credited_conversions",
    "credited_value",
)

ORDER_CREDIT_COLUMNS: tuple[str, ...] = (
    "order_id",
    "touchpoint_index",
    "channel",
    "model",
    "credit_fraction",
    "credited_revenue",
)

Model = Literal["markov", "shapley"]


def _as_channel_tuple(value: object) -> tuple[str, ...]:
    if type(value) is tuple and all(type(v) is str and v for v in value):
        return value  # already normalised (the common case on re-normalisation)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ()
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(PATH_SEPARATOR)]
        return tuple(p for p in parts if p)
    if isinstance(value, Iterable):
        return tuple(str(v) for v in value if v is not None and str(v) != "")
    raise TypeError(f"cannot read channels from {type(value).__name__}: {value!r}")


def normalize_paths(
    paths: pd.DataFrame,
    *,
    id_col: str = "path_id",
    channels_col: str = "channels",
    converted_col: str = "converted",
    value_col: str = "value",
    count_col: str = "count",
) -> pd.DataFrame:
    """Columns ``path_id, channels (tuple of str), converted (bool), value (float, 0 if not
    converted), count (int >= 1, journeys the row stands for; 1 without a count column)``."""
    missing = [c for c in (id_col, channels_col, converted_col) if c not in paths.columns]
    if missing:
        raise ValueError(f"paths frame is missing column(s) {missing}; got {list(paths.columns)}")
    converted = paths[converted_col].astype(bool).to_numpy()
    if count_col in paths.columns:
        count = pd.to_numeric(paths[count_col]).fillna(1).astype("int64").to_numpy()
        if (count < 1).any():
            raise ValueError(f"{count_col} must be at least 1 (journeys per row)")
    else:
        count = np.ones(len(paths), dtype="int64")
    if value_col in paths.columns:
        value = pd.to_numeric(paths[value_col]).fillna(0.0).astype("float64").to_numpy()
    else:
        value = np.where(converted, count, 0).astype("float64")
    return pd.DataFrame(
        {
            "path_id": paths[id_col].to_numpy(),
            "channels": [_as_channel_tuple(v) for v in paths[channels_col].tolist()],
            "converted": converted,
            "value": np.where(converted, value, 0.0),
            "count": count,
        }
    )


def _aggregate(paths: pd.DataFrame) -> pd.DataFrame:
    """Identical (channels, converted) journeys merged with their count and summed value."""
    p = paths[paths["channels"].map(len) > 0]
    return (
        p.groupby(["channels", "converted"], sort=True)
        .agg(count=("count", "sum"), value=("value", "sum"))
        .reset_index()
    )


# ---------------------------------------------------------------------------
# Markov


@dataclass(frozen=True)
class MarkovChain:
    """Row-normalised transition matrix over ``states`` = start, channels..., conversion, null."""

    states: tuple[str, ...]
    transition: np.ndarray
    counts: np.ndarray

    @property
    def channels(self) -> tuple[str, ...]:
        return self.states[1:-2]

    def conversion_probability(self, removed: str | Sequence[str] | None = None) -> float:
        """Exact P(absorbed in conversion | start), optionally with channels removed."""
        n_t = len(self.states) - 2  # transient: start + channels
        conv = len(self.states) - 2
        Q = self.transition[:n_t, :n_t].copy()
        R = self.transition[:n_t, conv].copy()
        if removed is not None:
            names = [removed] if isinstance(removed, str) else list(removed)
            for name in names:
                i = 1 + self.channels.index(name)
                Q[i, :] = 0.0  # a removed channel leads to null
                R[i] = 0.0
        x = np.linalg.solve(np.eye(n_t) - Q, R)
        return float(x[0])


def markov_chain(paths: pd.DataFrame) -> MarkovChain:
    """First-order transition matrix from normalised paths (see :func:`normalize_paths`)."""
    return _chain(_aggregate(paths))


def _chain(agg: pd.DataFrame) -> MarkovChain:
    """:func:`markov_chain` of the :func:`_aggregate` of the paths."""
    channels = sorted({c for path in agg["channels"] for c in path})
    states = ("start", *channels, "conversion", "null")
    index = {c: i + 1 for i, c in enumerate(channels)}
    n = len(states)
    conv_state, null_state = n - 2, n - 1
    counts = np.zeros((n, n), dtype="float64")
    for path, converted, count in zip(agg["channels"], agg["converted"], agg["count"], strict=True):
        seq = [0, *(index[c] for c in path), conv_state if converted else null_state]
        np.add.at(counts, (np.asarray(seq[:-1]), np.asarray(seq[1:])), float(count))
    rows = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        trans = np.where(rows > 0, counts / np.where(rows > 0, rows, 1.0), 0.0)
    return MarkovChain(states=states, transition=trans, counts=counts)


def markov_attribution(paths: pd.DataFrame, **columns: str) -> pd.DataFrame:
    """Channel-level Markov removal-effect attribution.

    Returns ``model, channel, weight (= removal effect), credit_share,
    credited_conversions, credited_value`` plus ``conversion_probability`` and
    ``conversion_probability_without`` (P(conv) with the channel removed).
    ``paths`` may be raw (column names via keyword arguments of
    :func:`normalize_paths`) or already normalised.
    """
    return _markov_attribution(_aggregate(_ensure_normalized(paths, columns)))


def _markov_attribution(agg: pd.DataFrame) -> pd.DataFrame:
    """:func:`markov_attribution` of the :func:`_aggregate` of the normalised paths."""
    chain = _chain(agg)
    total_conv = float(agg.loc[agg["converted"], "count"].sum())
    total_value = float(agg.loc[agg["converted"], "value"].sum())
    base = chain.conversion_probability() if chain.channels else 0.0
    rows = []
    for c in chain.channels:
        without = chain.conversion_probability(c)
        re = 1.0 - without / base if base > 0 else 0.0
        rows.append((c, max(re, 0.0), without))
    out = pd.DataFrame(rows, columns=["channel", "weight", "conversion_probability_without"])
    return _finish(out, "markov", total_conv, total_value, base)


# ---------------------------------------------------------------------------
# Shapley


def _converting_sets(agg: pd.DataFrame, worth: str) -> tuple[list[str], dict[frozenset[str], float]]:
    channels = sorted({c for path in agg["channels"] for c in path})
    sets: dict[frozenset[str], float] = {}
    conv = agg[agg["converted"]]
    col = "count" if worth == "conversions" else "value"
    for path, w in zip(conv["channels"], conv[col], strict=True):
        key = frozenset(path)
        sets[key] = sets.get(key, 0.0) + float(w)
    return channels, sets


def shapley_values(
    paths: pd.DataFrame,
    *,
    worth: Literal["conversions", "value"] = "conversions",
    method: Literal["exact", "enumerate"] = "exact",
    max_channels: int = 15,
    **columns: str,
) -> dict[str, float]:
    """Shapley value of every channel for the subset-worth game (see module docstring)."""
    return _shapley_values(_aggregate(_ensure_normalized(paths, columns)), worth, method, max_channels)


def _shapley_values(
    agg: pd.DataFrame, worth: Literal["conversions", "value"], method: Literal["exact", "enumerate"], max_channels: int
) -> dict[str, float]:
    """:func:`shapley_values` of the :func:`_aggregate` of the normalised paths."""
    channels, sets = _converting_sets(agg, worth)
    if method == "exact":
        phi = dict.fromkeys(channels, 0.0)
        for members, w in sets.items():
            share = w / len(members)
            for c in members:
                phi[c] += share
        return phi
    if method != "enumerate":
        raise ValueError("method must be 'exact' or 'enumerate'")
    n = len(channels)
    if n > max_channels:
        raise ValueError(f"{n} channels: enumeration over 2^{n} coalitions exceeds max_channels={max_channels}")
    bit = {c: 1 << i for i, c in enumerate(channels)}
    size = 1 << n
    # worth of exactly-this-set, then subset sums (zeta transform): v(S) = sum_{T subset S} w(T)
    v = np.zeros(size, dtype="float64")
    for members, w in sets.items():
        v[sum(bit[c] for c in members)] += w
    masks = np.arange(size)
    for i in range(n):
        has = (masks >> i) & 1 == 1
        v[has] += v[masks[has] ^ (1 << i)]
    popcount = np.array([bin(m).count("1") for m in range(size)], dtype="int64")
    coef = np.array([factorial(s) * factorial(n - s - 1) / factorial(n) for s in range(n)], dtype="float64")
    phi = {}
    for i, c in enumerate(channels):
        without = masks[((masks >> i) & 1) == 0]
        phi[c] = float(np.sum(coef[popcount[without]] * (v[without | (1 << i)] - v[without])))
    return phi


def shapley_attribution(
    paths: pd.DataFrame,
    *,
    worth: Literal["conversions", "value"] = "conversions",
    method: Literal["exact", "enumerate"] = "exact",
    max_channels: int = 15,
    **columns: str,
) -> pd.DataFrame:
    """Channel-level Shapley attribution (``model, channel, weight (= Shapley value), credit_share, ...``)."""
    return _shapley_attribution(_aggregate(_ensure_normalized(paths, columns)), worth, method, max_channels)


def _shapley_attribution(
    agg: pd.DataFrame, worth: Literal["conversions", "value"], method: Literal["exact", "enumerate"], max_channels: int
) -> pd.DataFrame:
    """:func:`shapley_attribution` of the :func:`_aggregate` of the normalised paths."""
    phi = _shapley_values(agg, worth, method, max_channels)
    total_conv = float(agg.loc[agg["converted"], "count"].sum())
    total_value = float(agg.loc[agg["converted"], "value"].sum())
    out = pd.DataFrame({"channel": list(phi), "weight": [max(v, 0.0) for v in phi.values()]})
    return _finish(out, "shapley", total_conv, total_value, None)


def channel_attribution(
    paths: pd.DataFrame,
    models: Sequence[Model] = ("markov", "shapley"),
    **columns: str,
) -> pd.DataFrame:
    """Both models side by side, columns :data:`ATTRIBUTION_COLUMNS` (one row per model x channel)."""
    norm = _ensure_normalized(paths, columns)
    frames = []
    for m in models:
        if m == "markov":
            frames.append(markov_attribution(norm)[list(ATTRIBUTION_COLUMNS)])
        elif m == "shapley":
            frames.append(shapley_attribution(norm)[list(ATTRIBUTION_COLUMNS)])
        else:
            raise ValueError(f"unknown attribution model {m!r}")
    return pd.concat(frames, ignore_index=True)


def _finish(
    out: pd.DataFrame, model: str, total_conv: float, total_value: float, base: float | None
) -> pd.DataFrame:
    total_w = float(out["weight"].sum()) if len(out) else 0.0
    out["credit_share"] = out["weight"] / total_w if total_w > 0 else 0.0
    out["credited_conversions"] = out["credit_share"] * total_conv
    out["credited_value"] = out["credit_share"] * total_value
    out.insert(0, "model", model)
    if base is not None:
        out["conversion_probability"] = base
    return out.sort_values("channel", kind="mergesort").reset_index(drop=True)


def _ensure_normalized(paths: pd.DataFrame, columns: Mapping[str, str]) -> pd.DataFrame:
    # normalize_paths is idempotent, so normalised input passes through unchanged
    return normalize_paths(paths, **columns)


# ---------------------------------------------------------------------------
# per-order credits


def order_credits(
    orders: pd.DataFrame,
    weights: Mapping[str, Mapping[str, float]] | pd.DataFrame,
    *,
    id_col: str = "order_id",
    channels_col: str = "channels",
    value_col: str = "value",
) -> pd.DataFrame:
    """Distribute each order's value over its touchpoints (columns :data:`ORDER_CREDIT_COLUMNS`).

    ``orders``: one row per converting order with its ordered ``channels`` and
    ``value`` (revenue).  ``weights``: ``{model: {channel: weight}}`` or the
    frame returned by :func:`channel_attribution` (``model, channel, weight``).
    For every model and order, ``credit_fraction`` of a touchpoint is its
    channel weight divided by the sum of the weights of the order's
    touchpoints (equal split if that sum is 0), so the fractions of each order
    sum to 1; ``credited_revenue = credit_fraction * value``.  Orders without
    touchpoints produce no rows.
    """
    if isinstance(weights, pd.DataFrame):
        wmap: dict[str, dict[str, float]] = {}
        for m, c, w in zip(weights["model"], weights["channel"], weights["weight"], strict=True):
            wmap.setdefault(str(m), {})[str(c)] = float(w)
    else:
        wmap = {str(m): {str(c): float(w) for c, w in ws.items()} for m, ws in weights.items()}
    missing = [c for c in (id_col, channels_col, value_col) if c not in orders.columns]
    if missing:
        raise ValueError(f"orders frame is missing column(s) {missing}; got {list(orders.columns)}")
    if orders[id_col].duplicated().any():
        raise ValueError(f"{id_col} must be unique (one row per converting order)")
    touch = pd.DataFrame(
        {
            "order_id": orders[id_col].to_numpy(),
            "channel": [list(_as_channel_tuple(v)) for v in orders[channels_col].tolist()],
            "value": pd.to_numeric(orders[value_col]).fillna(0.0).astype("float64").to_numpy(),
        }
    ).explode("channel", ignore_index=True)
    touch = touch[touch["channel"].notna()].reset_index(drop=True)
    touch["channel"] = touch["channel"].astype(str)
    touch["touchpoint_index"] = touch.groupby("order_id", sort=False).cumcount().astype("int64") + 1
    frames = []
    for model, ws in wmap.items():
        t = touch.copy()
        w = t["channel"].map(ws).fillna(0.0).clip(lower=0.0).astype("float64")
        g = t["order_id"]
        total = w.groupby(g, sort=False).transform("sum")
        n_touch = w.groupby(g, sort=False).transform("size").astype("float64")
        t["credit_fraction"] = np.where(total > 0, w / total.where(total > 0, 1.0), 1.0 / n_touch)
        t["credited_revenue"] = t["credit_fraction"] * t["value"]
        t["model"] = model
        frames.append(t[list(ORDER_CREDIT_COLUMNS)])
    if not frames:
        return pd.DataFrame(columns=list(ORDER_CREDIT_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def attribution_diagnostics(paths: pd.DataFrame, **columns: str) -> dict[str, float]:
    """Counts behind an attribution run (paths, conversions, value, channels, empty paths)."""
    return _attribution_diagnostics(_ensure_normalized(paths, columns))


def _attribution_diagnostics(norm: pd.DataFrame) -> dict[str, float]:
    """:func:`attribution_diagnostics` of normalised paths."""
    empty = norm["channels"].map(len) == 0
    count = norm["count"]
    return {
        "n_paths": int(count.sum()),
        "n_paths_without_touchpoints": int(count[empty].sum()),
        "n_conversions": int(count[~empty & norm["converted"]].sum()),
        "conversion_value": float(norm.loc[~empty, "value"].sum()),
        "n_channels": int(len({c for p in norm["channels"] for c in p})),
    }


def attribute_paths(paths: pd.DataFrame, **columns: str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """(:func:`markov_attribution`, :func:`shapley_attribution` with its defaults,
    :func:`attribution_diagnostics`) of the same paths, normalising and aggregating them once
    (each of the three does both; at a million journeys that is most of their time)."""
    norm = _ensure_normalized(paths, columns)
    agg = _aggregate(norm)
    return (_markov_attribution(agg), _shapley_attribution(agg, "conversions", "exact", 15),
            _attribution_diagnostics(norm))


__all__ = [
    "ATTRIBUTION_COLUMNS",
    "ORDER_CREDIT_COLUMNS",
    "MarkovChain",
    "attribute_paths",
    "attribution_diagnostics",
    "channel_attribution",
    "markov_attribution",
    "markov_chain",
    "normalize_paths",
    "order_credits",
    "shapley_attribution",
    "shapley_values",
]
