"""Behavioural segments: k-means on scaled RFM and engagement features, with readable profiles.

Input: one row per scored customer with (some of) the columns of :data:`SEGMENT_FEATURES` --
the transaction features of :func:`ml.features.behavioral_features` (``days_since_last``,
``frequency``, ``avg_order_value``, ``T``) and the gold behaviour features of
:func:`ml.jobs.behavior_features_from_gold` (sessions, channel mix, funnel depth, support cases,
refunds).  Optional score columns (``predicted_clv_12m``, ``churn_probability``, ``p_alive``)
only feed the profiles and the segment order, never the clustering.

Features.  Each feature is transformed (``log1p`` for counts, days and money; shares and the
funnel depth as they are), a missing value in a present column becomes the feature's "nothing"
value (``fill``: no sessions, no cases, no refunds), and the column is standardised (z-score).
A column that is entirely missing (its source does not exist -- a transaction log has no web
or CRM data) or constant is **left out**, never faked; :attr:`Segmentation.features` lists the
features used.

Choice of k (the stated rule).  For every k in ``k_range`` (default 3..8), k-means
(``n_init=10``, ``random_state=seed``) is fitted on a random sample of at most ``sample_size``
customers (same seed) and scored by the silhouette coefficient on that sample; the k with the
highest silhouette wins, ties going to the smaller k.  The final model is fitted with the chosen
k on a sample of at most ``fit_size`` customers and assigns every customer to its nearest
centroid.  Everything is deterministic for a fixed seed and input.

Segment ids.  Segments are numbered 1..k by the mean of their ``predicted_clv_12m`` (or, without
it, of (frequency + 1) x average order value), highest first: segment 1 is the most
valuable.

Names.  Built from the segment's means against the whole population (see :func:`segment_name`):
``<activity> <purchase pattern> <value>`` plus at most one distinctive engagement trait, e.g.
"active frequent high spenders", "lapsed one-time buyers", "lapsing occasional buyers, refund-prone".
Duplicates get further traits, then the segment id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import pairwise_distances, silhouette_score
from threadpoolctl import threadpool_limits  # a scikit-learn dependency


@dataclass(frozen=True)
class SegmentFeature:
    column: str
    transform: Literal["log1p", "identity"]
    fill: float | None
    """Value of a missing entry in a present column (None: the column must be complete)."""
    label: str


SEGMENT_FEATURES: tuple[SegmentFeature, ...] = (
    # RFM and tenure, from the transaction log
    SegmentFeature("days_since_last", "log1p", None, "recency (days since last purchase)"),
    SegmentFeature("frequency", "log1p", None, "repeat purchase days"),
    SegmentFeature("avg_order_value", "log1p", None, "average order value"),
    SegmentFeature("T", "log1p", None, "tenure (days since first purchase)"),
    # engagement, from gold (absent on a bare transaction log)
    SegmentFeature("sessions_last_90d", "log1p", 0.0, "sessions in the last 90 days"),
    SegmentFeature("share_sessions_paid", "identity", 0.0, "share of sessions from paid channels"),
    SegmentFeature("funnel_depth_90d", "identity", 0.0, "funnel depth in the last 90 days"),
    SegmentFeature("support_cases_total", "log1p", 0.0, "support cases"),
    SegmentFeature("refund_share", "identity", 0.0, "refunded share of revenue"),
)

# engagement traits a name may carry: (column, z-score of the segment mean at least, phrase)
TRAITS: tuple[tuple[str, str], ...] = (
    ("sessions_last_90d", "highly engaged online"),
    ("funnel_depth_90d", "deep in the funnel"),
    ("share_sessions_paid", "paid-channel driven"),
    ("support_cases_total", "with support cases"),
    ("refund_share", "refund-prone"),
)
TRAIT_MIN_Z = 0.75

# profile columns (gold.segment_profiles), in order, with the input column they average
PROFILE_MEANS: tuple[tuple[str, str], ...] = (
    ("mean_days_since_last_purchase", "days_since_last"),
    ("mean_repeat_purchase_days", "frequency"),
    ("mean_orders", "n_orders"),
    ("mean_avg_order_value", "avg_order_value"),
    ("mean_total_spend", "total_spend"),
    ("mean_tenure_days", "T"),
    ("mean_sessions_last_90d", "sessions_last_90d"),
    ("mean_share_sessions_paid", "share_sessions_paid"),
    ("mean_funnel_depth_90d", "funnel_depth_90d"),
    ("mean_support_cases", "support_cases_total"),
    ("mean_refund_share", "refund_share"),
    ("mean_p_alive", "p_alive"),
    ("mean_churn_probability", "churn_probability"),
    ("mean_predicted_clv_12m", "predicted_clv_12m"),
)
PROFILE_COLUMNS: tuple[str, ...] = (
    "as_of_date", "segmentation_version", "segment_id", "segment_name", "customers", "customer_share",
    "share_one_time_buyers", *[c for c, _ in PROFILE_MEANS], "k", "silhouette", "features_json",
)
SEGMENT_COLUMNS: tuple[str, ...] = ("customer_id", "as_of_date", "segmentation_version", "segment_id", "segment_name")


class SegmentationError(ValueError):
    """Too few customers or usable features to segment."""


@dataclass
class Segmentation:
    assignments: pd.DataFrame
    """``customer_id``, ``segment_id`` (1 = most valuable), ``segment_name``."""
    profiles: pd.DataFrame
    """One row per segment: size, share and means (:data:`PROFILE_COLUMNS` without date/version)."""
    k: int
    silhouette: float
    silhouette_by_k: dict[int, float]
    features: list[str]
    """Features the clustering used (present and not constant)."""
    dropped_features: list[str]
    centroids: pd.DataFrame
    """Segment x feature centroid in standardised units (z-scores)."""
    version: str
    warnings: list[str] = field(default_factory=list)


def _design(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Transformed (not yet standardised) design matrix, used and dropped features."""
    cols: dict[str, np.ndarray] = {}
    dropped: list[str] = []
    for f in SEGMENT_FEATURES:
        if f.column not in frame.columns:
            dropped.append(f.column)
            continue
        x = pd.to_numeric(frame[f.column], errors="coerce").astype("float64")
        if x.isna().all():
            dropped.append(f.column)
            continue
        if x.isna().any():
            if f.fill is None:
                raise SegmentationError(f"{f.column} has missing values")
            x = x.fillna(f.fill)
        v = x.to_numpy()
        if f.transform == "log1p":
            v = np.log1p(np.clip(v, 0.0, None))
        if np.nanstd(v) < 1e-12:
            dropped.append(f.column)
            continue
        cols[f.column] = v
    return pd.DataFrame(cols, index=frame.index), list(cols), dropped


def _sample(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= size else np.sort(rng.choice(n, size=size, replace=False))


def segment_name(z: pd.Series, means: pd.Series, population: pd.Series, horizon_days: int = 90) -> list[str]:
    """Name parts of one segment, most important first (see the module docstring).

    ``z``: the centroid in standardised units; ``means``/``population``: raw means of the segment
    and of everybody (``days_since_last``, ``frequency``, ``avg_order_value``, ``one_time_share``).
    Activity: mean days since the last purchase <= horizon "active", <= 2 x horizon "lapsing",
    else "lapsed".  Purchase pattern: >= 80 % one-time buyers "one-time", >= 50 % "occasional",
    else mean repeat days at least twice the population's (and >= 2) "frequent", else "repeat".  Value: mean order value
    >= 1.5 x the population's "high spenders", <= 2/3 "low spenders", else "buyers".  Traits:
    engagement columns whose centroid z-score is at least :data:`TRAIT_MIN_Z`, strongest first.
    """
    days = float(means["days_since_last"])
    activity = "active" if days <= horizon_days else ("lapsing" if days <= 2 * horizon_days else "lapsed")
    if float(means["one_time_share"]) >= 0.8:
        pattern = "one-time"
    elif float(means["one_time_share"]) >= 0.5:
        pattern = "occasional"
    elif float(means["frequency"]) >= max(2.0, 2.0 * float(population["frequency"])):
        pattern = "frequent"
    else:
        pattern = "repeat"
    ratio = float(means["avg_order_value"]) / max(float(population["avg_order_value"]), 1e-9)
    value = "high spenders" if ratio >= 1.5 else ("low spenders" if ratio <= 2 / 3 else "buyers")
    traits = sorted(
        ((float(z[c]), phrase) for c, phrase in TRAITS if c in z.index and float(z[c]) >= TRAIT_MIN_Z),
        key=lambda t: -t[0],
    )
    return [f"{activity} {pattern} {value}", *[p for _, p in traits]]


def segment_customers(
    frame: pd.DataFrame,
    *,
    k_range: Sequence[int] = range(3, 9),
    seed: int = 0,
    sample_size: int = 4000,
    fit_size: int = 50_000,
    horizon_days: int = 90,
    n_threads: int = 1,
) -> Segmentation:
    """Cluster the customers of ``frame`` (one row each, ``customer_id`` + features); see the module docstring."""
    if "customer_id" not in frame.columns:
        raise SegmentationError("frame needs a customer_id column")
    if frame["customer_id"].duplicated().any():
        raise SegmentationError("frame has duplicate customer_id values")
    frame = frame.reset_index(drop=True)
    missing_core = [c for c in ("days_since_last", "frequency", "avg_order_value") if c not in frame.columns]
    if missing_core:
        raise SegmentationError(f"frame lacks the RFM column(s) {missing_core}")
    design, used, dropped = _design(frame)
    ks = sorted({int(k) for k in k_range if int(k) >= 2})
    if len(used) < 2:
        raise SegmentationError(f"fewer than two usable features ({used}); dropped {dropped}")
    if not ks or len(frame) < 10 * max(ks):
        raise SegmentationError(f"{len(frame)} customers are too few for k up to {max(ks, default=0)}")
    mean, std = design.mean(), design.std(ddof=0)
    z = ((design - mean) / std).to_numpy(dtype="float64")
    rng = np.random.default_rng(seed)
    sample = _sample(len(z), sample_size, rng)
    scores: dict[int, float] = {}
    # one OpenMP thread: k-means threads spin under CPU contention (8x slower on a shared 2-core machine)
    with threadpool_limits(limits=n_threads):
        # the sample's pairwise distances once, not once per k (they are most of the silhouettes' cost)
        distances = pairwise_distances(z[sample], metric="euclidean")
        for k in ks:
            km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(z[sample])
            if len(np.unique(km.labels_)) < 2:
                continue
            scores[k] = float(silhouette_score(distances, km.labels_, metric="precomputed"))
        del distances
        if not scores:
            raise SegmentationError("k-means found no structure (every k collapsed to one cluster)")
        best = max(scores.values())
        k = min(kk for kk, s in scores.items() if s == best)
        fit_rows = _sample(len(z), fit_size, np.random.default_rng(seed + 1))
        model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(z[fit_rows])
        raw = model.predict(z)

    # order segments by value, highest first
    if "predicted_clv_12m" in frame.columns and frame["predicted_clv_12m"].notna().all():
        value = pd.to_numeric(frame["predicted_clv_12m"]).astype("float64")
    else:
        value = (pd.to_numeric(frame["frequency"]) + 1) * pd.to_numeric(frame["avg_order_value"])
    order = value.groupby(raw).mean().sort_values(ascending=False, kind="mergesort").index.to_list()
    relabel = {old: new for new, old in enumerate(order, start=1)}
    seg = pd.Series(raw).map(relabel).to_numpy(dtype="int64")

    # profiles and names
    stats = frame.copy()
    stats["one_time_share"] = (pd.to_numeric(stats["frequency"]) == 0).astype("float64")
    basis = stats[["days_since_last", "frequency", "avg_order_value", "one_time_share"]].astype("float64")
    population = basis.mean()
    seg_means = basis.groupby(seg).mean()
    centroids = pd.DataFrame(z, columns=used).groupby(seg).mean()
    parts = {s: segment_name(centroids.loc[s], seg_means.loc[s], population, horizon_days) for s in centroids.index}
    # the base name and the strongest trait; duplicates get their next traits, then the segment id
    names = {s: ", ".join(p[:2]) for s, p in parts.items()}
    for depth in range(3, len(TRAITS) + 2):
        counts = pd.Series(names).value_counts()
        dup = [s for s, n in names.items() if counts[n] > 1]
        if not dup:
            break
        for s in dup:
            names[s] = ", ".join(parts[s][:depth])
    counts = pd.Series(names).value_counts()
    names = {s: (f"{n} (segment {s})" if counts[n] > 1 else n) for s, n in names.items()}

    assignments = pd.DataFrame({
        "customer_id": frame["customer_id"].to_numpy(),
        "segment_id": seg,
        "segment_name": [names[s] for s in seg],
    })
    groups = stats.groupby(seg)
    prof = pd.DataFrame({"segment_id": centroids.index.astype("int64")})
    prof["segment_name"] = [names[s] for s in prof["segment_id"]]
    prof["customers"] = groups.size().reindex(prof["segment_id"]).to_numpy(dtype="int64")
    prof["customer_share"] = prof["customers"] / len(frame)
    prof["share_one_time_buyers"] = seg_means["one_time_share"].reindex(prof["segment_id"]).to_numpy()
    for out_col, src in PROFILE_MEANS:
        if src in stats.columns and pd.to_numeric(stats[src], errors="coerce").notna().any():
            prof[out_col] = pd.to_numeric(stats[src], errors="coerce").groupby(seg).mean().reindex(prof["segment_id"]).to_numpy()
        else:
            prof[out_col] = np.nan
    prof["k"] = k
    prof["silhouette"] = scores[k]
    prof["features_json"] = json.dumps(used)
    version = "seg-" + hashlib.sha256(json.dumps({
        "features": used, "k": k, "seed": seed, "centroids": np.round(model.cluster_centers_, 6).tolist(),
        "k_range": ks, "sample_size": sample_size, "fit_size": fit_size,
    }, sort_keys=True).encode()).hexdigest()[:12]
    warnings = []
    if dropped:
        warnings.append(f"features not available (no source or constant), left out of the clustering: {dropped}")
    return Segmentation(
        assignments=assignments, profiles=prof, k=k, silhouette=scores[k], silhouette_by_k=scores,
        features=used, dropped_features=dropped, centroids=centroids, version=version, warnings=warnings,
    )


def segment_tables(seg: Segmentation, as_of_date: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows for gold.customer_segments (:data:`SEGMENT_COLUMNS`) and gold.segment_profiles (:data:`PROFILE_COLUMNS`)."""
    day = pd.Timestamp(as_of_date).date()
    a = seg.assignments.copy()
    a["customer_id"] = a["customer_id"].astype(str)
    a["as_of_date"] = day
    a["segmentation_version"] = seg.version
    p = seg.profiles.copy()
    p["as_of_date"] = day
    p["segmentation_version"] = seg.version
    for c in p.columns:
        if c.startswith(("mean_", "share_")) or c in ("customer_share", "silhouette"):
            p[c] = p[c].astype("float64")
    p["customers"] = p["customers"].astype("int64")
    p["k"] = p["k"].astype("int64")
    p["segment_id"] = p["segment_id"].astype("int64")
    return a[list(SEGMENT_COLUMNS)], p[list(PROFILE_COLUMNS)]


__all__ = [
    "PROFILE_COLUMNS",
    "SEGMENT_COLUMNS",
    "SEGMENT_FEATURES",
    "Segmentation",
    "SegmentationError",
    "segment_customers",
    "segment_name",
    "segment_tables",
]
