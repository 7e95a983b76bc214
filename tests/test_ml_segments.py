"""ml.segments: k-means behavioural segments, the k rule, readable names, missing sources."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from ml.segments import PROFILE_COLUMNS, SEGMENT_COLUMNS, SegmentationError, segment_customers, segment_tables

NAME = re.compile(r"^(active|lapsing|lapsed) (one-time|occasional|repeat|frequent) (high spenders|low spenders|buyers)"
                  r"(, [a-z -]+)*( \(segment \d\))?$")


def planted(n_per: int = 600, seed: int = 1) -> tuple[pd.DataFrame, np.ndarray]:
    """Three planted groups: active frequent big spenders, lapsed one-time small spenders, and
    lapsing repeat buyers with many support cases and refunds."""
    rng = np.random.default_rng(seed)
    groups = []
    specs = [
        # days_since_last, frequency (poisson mean), aov, tenure, sessions, support, refund
        (12, 8.0, 180.0, 500, 6.0, 0.1, 0.01),
        (300, 0.0, 25.0, 320, 0.1, 0.1, 0.01),
        (120, 2.0, 60.0, 400, 1.0, 3.0, 0.5),
    ]
    for g, (days, freq, aov, tenure, sess, sup, ref) in enumerate(specs):
        groups.append(pd.DataFrame({
            "days_since_last": rng.gamma(20, days / 20, n_per).round(),
            "frequency": rng.poisson(freq, n_per) if freq else np.zeros(n_per, dtype=int),
            "avg_order_value": rng.gamma(30, aov / 30, n_per),
            "T": rng.gamma(30, tenure / 30, n_per).round(),
            "sessions_last_90d": rng.poisson(sess, n_per),
            "share_sessions_paid": rng.uniform(0.2, 0.4, n_per),
            "funnel_depth_90d": np.where(rng.random(n_per) < 0.5, np.nan, 2.0),
            "support_cases_total": rng.poisson(sup, n_per),
            "refund_share": np.clip(rng.normal(ref, 0.05, n_per), 0, 1),
            "group": g,
        }))
    frame = pd.concat(groups, ignore_index=True)
    frame["days_since_last"] = np.minimum(frame["days_since_last"], frame["T"])
    frame["predicted_clv_12m"] = (frame["frequency"] + 1) * frame["avg_order_value"] * np.exp(-frame["days_since_last"] / 200)
    frame.insert(0, "customer_id", [f"c{i:05d}" for i in range(len(frame))])
    order = rng.permutation(len(frame))
    frame = frame.iloc[order].reset_index(drop=True)
    return frame.drop(columns=["group"]), frame["group"].to_numpy()


@pytest.fixture(scope="module")
def planted_frame():
    return planted()


@pytest.fixture(scope="module")
def seg(planted_frame):
    return segment_customers(planted_frame[0], seed=0)


def test_recovers_planted_groups_with_the_silhouette_rule(seg, planted_frame):
    frame, truth = planted_frame
    # the stated rule: the k with the highest silhouette over 3..8 (ties to the smaller k)
    assert sorted(seg.silhouette_by_k) == [3, 4, 5, 6, 7, 8]
    assert seg.k == min(k for k, s in seg.silhouette_by_k.items() if s == max(seg.silhouette_by_k.values()))
    assert seg.k == 3 and seg.silhouette > 0.3
    labels = seg.assignments.set_index("customer_id").loc[frame["customer_id"], "segment_id"].to_numpy()
    assert adjusted_rand_score(truth, labels) > 0.95
    # every customer exactly once, ids 1..k
    assert seg.assignments["customer_id"].is_unique and len(seg.assignments) == len(frame)
    assert sorted(seg.assignments["segment_id"].unique()) == [1, 2, 3]


def test_segments_are_ordered_by_value_and_named_from_their_centroids(seg, planted_frame):
    frame, truth = planted_frame
    names = seg.profiles.set_index("segment_id")["segment_name"].to_dict()
    assert all(NAME.match(n) for n in names.values()), names
    assert len(set(names.values())) == seg.k
    # segment 1 = highest mean predicted CLV = the planted big spenders
    assert names[1].startswith("active frequent high spenders")
    assert names[3].startswith("lapsed one-time low spenders")
    # one (the strongest) engagement trait is named when unique names do not need more
    assert names[2] in ("lapsing repeat buyers, refund-prone", "lapsing repeat buyers, with support cases")
    clv = seg.profiles.set_index("segment_id")["mean_predicted_clv_12m"]
    assert clv.is_monotonic_decreasing
    p = seg.profiles.set_index("segment_id")
    assert p["customers"].sum() == len(frame) and np.isclose(p["customer_share"].sum(), 1.0)
    assert p.loc[3, "share_one_time_buyers"] == 1.0 and p.loc[1, "mean_repeat_purchase_days"] > 6
    assert p.loc[1, "mean_days_since_last_purchase"] < 30 < 250 < p.loc[3, "mean_days_since_last_purchase"]


def test_fixed_seed_is_deterministic_and_other_seeds_agree(seg, planted_frame):
    frame, _ = planted_frame
    again = segment_customers(frame, seed=0)
    pd.testing.assert_frame_equal(again.assignments, seg.assignments)
    pd.testing.assert_frame_equal(again.profiles, seg.profiles)
    assert again.version == seg.version
    # input order does not matter, nor (much) the seed
    shuffled = segment_customers(frame.sample(frac=1.0, random_state=3), seed=0)
    a = seg.assignments.set_index("customer_id")["segment_id"]
    b = shuffled.assignments.set_index("customer_id")["segment_id"].reindex(a.index)
    assert adjusted_rand_score(a, b) > 0.95
    other = segment_customers(frame, seed=7).assignments.set_index("customer_id")["segment_id"].reindex(a.index)
    assert adjusted_rand_score(a, other) > 0.95


def test_missing_sources_are_left_out_not_faked(planted_frame):
    """A bare transaction log: engagement columns are entirely NULL (or absent)."""
    frame, truth = planted_frame
    bare = frame.copy()
    for c in ("sessions_last_90d", "share_sessions_paid", "funnel_depth_90d", "support_cases_total"):
        bare[c] = np.nan
    bare = bare.drop(columns=["refund_share"])
    seg = segment_customers(bare, seed=0)
    assert seg.features == ["days_since_last", "frequency", "avg_order_value", "T"]
    assert set(seg.dropped_features) == {"sessions_last_90d", "share_sessions_paid", "funnel_depth_90d",
                                         "support_cases_total", "refund_share"}
    assert seg.warnings and "left out" in seg.warnings[0]
    p = seg.profiles
    assert p["mean_sessions_last_90d"].isna().all() and p["mean_refund_share"].isna().all()
    assert not any("support" in n or "refund" in n for n in p["segment_name"])
    labels = seg.assignments.set_index("customer_id").loc[frame["customer_id"], "segment_id"].to_numpy()
    assert adjusted_rand_score(truth, labels) > 0.6  # RFM alone still separates the planted groups


def test_tables_and_errors(seg, planted_frame):
    segments, profiles = segment_tables(seg, "2025-12-31")
    assert list(segments.columns) == list(SEGMENT_COLUMNS) and list(profiles.columns) == list(PROFILE_COLUMNS)
    assert (segments["segmentation_version"] == seg.version).all() and str(segments["as_of_date"].iloc[0]) == "2025-12-31"
    assert profiles["customers"].dtype == "int64" and profiles["silhouette"].dtype == "float64"
    frame, _ = planted_frame
    with pytest.raises(SegmentationError, match="too few"):
        segment_customers(frame.head(50))
    with pytest.raises(SegmentationError, match="duplicate"):
        segment_customers(pd.concat([frame.head(200), frame.head(1)]))
    with pytest.raises(SegmentationError, match="RFM column"):
        segment_customers(frame.drop(columns=["avg_order_value"]))
