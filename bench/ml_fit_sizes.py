"""Benchmark: ML fit and scoring time on the medium and large sandbox worlds.

    python -m bench.ml_fit_sizes                                  # medium + large -> bench/results/ml_fit_sizes.json
    python -m bench.ml_fit_sizes --sizes medium --worlds-dir /tmp/worlds --output /tmp/ml.json

Per size, in a fresh subprocess (so peak memory is per size):

1. the world (``sandbox.world.generate_world``; reused when ``<worlds-dir>/<size>-<seed>`` exists);
2. its paid orders of the observation period written to ``gold.fct_orders`` of a scratch DuckDB
   warehouse (customer = the world's person; net revenue in USD after the refunds known by the
   observation end) -- the part of gold the models read;
3. the product's steps, timed one by one: the RFM summary in SQL (:func:`ml.jobs.rfm_summary_from_gold`),
   the transaction log from gold, the weighted BG/NBD + Gamma-Gamma fit and prediction, the
   training set (features as of END - 90 days, labels in the 90 days after), xgboost churn
   classifier and CLV regressor training, scoring every customer (features as of END, CLV
   model, calibrated churn model, tiers and bands) and the behavioural segmentation;
4. the product's jobs end to end: :func:`ml.jobs.train_models` (backtest, final models, artifacts,
   gold.ml_model_runs) and :func:`ml.jobs.score_daily` (scores and segments written to gold);
5. the scores against the world's truth (CLV Spearman, churn AUC) as a sanity check.

Timings are wall-clock seconds of one run each; the machine is shared, so treat some noise as normal.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "ml_fit_sizes.json"
REPO = Path(__file__).resolve().parent.parent
HORIZON_DAYS = 90


class _Clock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        self.seconds[name] = round(time.perf_counter() - t, 3)
        print(f"  {name:34s} {self.seconds[name]:9.2f}s", file=sys.stderr, flush=True)
        return out


def _orders_frame(world_dir: Path, end: date):
    """gold.fct_orders rows (the columns the ML stage reads) from the world's truth orders."""
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    o = pq.read_table(world_dir / "truth" / "truth_orders.parquet",
                      columns=["order_id", "person_id", "ordered_at", "amount_minor", "amount_usd", "is_failed",
                               "refunded_minor", "refunded_at", "in_observation"]).to_pandas()
    o = o[o["in_observation"].to_numpy()]
    end_ts = pd.Timestamp(end, tz="UTC") + pd.Timedelta(days=1)
    refund_known = o["refunded_at"].notna() & (o["refunded_at"] < end_ts)
    share = np.where(refund_known, o["refunded_minor"] / o["amount_minor"].clip(lower=1), 0.0)
    paid = ~o["is_failed"].to_numpy()
    gross = np.where(paid, o["amount_usd"], 0.0)
    return pd.DataFrame({
        "order_id": o["order_id"].astype(str).to_numpy(),
        "customer_id": o["person_id"].astype(str).to_numpy(),
        "ordered_at": o["ordered_at"].dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]").to_numpy(),
        "gross_revenue": gross,
        "refunded_revenue": gross * share,
        "net_revenue": gross * (1 - share),
        "is_paid": paid,
    })


def _one(size: str, seed: int, worlds_dir: Path) -> dict[str, Any]:
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    from ml import jobs
    from ml.clv import fit_clv, predict_clv
    from ml.evaluation import churn_metrics, clv_metrics
    from ml.scoring import build_customer_scores
    from ml.segments import segment_customers
    from ml.supervised import build_features, build_training_set, train_churn_model, train_clv_regressor
    from retailpulse.settings import Settings
    from retailpulse.warehouse import get_warehouse
    from sandbox.world import generate_world

    clock = _Clock()
    world_dir = worlds_dir / f"{size}-{seed}"
    generated = not (world_dir / "world.json").exists()
    if generated:
        world_dir = clock("world_generation", generate_world, size, seed, worlds_dir)
    meta = json.loads((world_dir / "world.json").read_text())
    end = date.fromisoformat(str(meta.get("end", "2025-12-31"))[:10])
    with tempfile.TemporaryDirectory(prefix=f"rp-ml-bench-{size}-") as tmp:
        settings = Settings(home=REPO, data_dir=Path(tmp) / "data", warehouse_path=Path(tmp) / "wh" / "rp.duckdb",
                            serving_dir=Path(tmp) / "wh" / "serving", target="duckdb", _env_file=None)
        orders = clock("read_world_orders", _orders_frame, world_dir, end)
        wh = get_warehouse(settings)
        wh.ensure_schemas(("gold",))
        clock("write_gold_fct_orders", wh.replace_rows, "gold", "fct_orders", orders)
        n_orders = int(orders["is_paid"].sum())
        del orders

        # the product's steps, one by one
        rfm = clock("rfm_summary_sql", jobs.rfm_summary_from_gold, settings, end)
        tx = clock("transactions_from_gold", jobs.transactions_from_gold, settings, end)
        model = clock("bgnbd_gg_fit_weighted", fit_clv, rfm, weighted=True)
        clock("bgnbd_gg_predict_all", predict_clv, model, rfm)
        train = clock("training_set_features_and_labels", build_training_set, tx, pd.Timestamp(end),
                      horizon_days=HORIZON_DAYS)
        churn = clock("xgb_churn_train_and_calibrate", train_churn_model, train.X, train.churned,
                      horizon_days=HORIZON_DAYS, feature_names=train.feature_names)
        clock("xgb_clv_regressor_train", train_clv_regressor, train.X, train.future_spend,
              horizon_days=HORIZON_DAYS, feature_names=train.feature_names)

        def score() -> pd.DataFrame:
            feats, _ = build_features(tx, end, horizon_days=HORIZON_DAYS, clv_model=model)
            p = churn.predict_proba(feats)
            scores = build_customer_scores(
                feats[["customer_id", "p_alive", "expected_purchases_90d", "expected_purchases_365d",
                       "predicted_clv_12m"]], p, as_of_date=end, model_version="bench")
            return feats.drop(columns=["p_alive", "predicted_clv_12m"]).merge(
                scores[["customer_id", "p_alive", "churn_probability", "predicted_clv_12m"]], on="customer_id")

        scored = clock("score_all_customers", score)
        seg = clock("behavioural_segments", segment_customers, scored, horizon_days=HORIZON_DAYS)
        del scored, train

        # the product's jobs end to end (warehouse in, warehouse out)
        training = clock("jobs_train_models", jobs.train_models, settings, end, behavior_features=True)
        daily = clock("jobs_score_daily", jobs.score_daily, settings, end, rebuild_marts=False, attribution=False)

        # sanity: the written scores against the world's truth
        truth = pq.read_table(world_dir / "truth" / "truth_person_horizon.parquet").to_pandas()
        s = wh.query_df(f"select customer_id, churn_probability, predicted_clv_12m from \"gold\".customer_scores "
                        f"where as_of_date = date '{end.isoformat()}'")
        frame = s.merge(truth, left_on="customer_id", right_on="person_id")
        clv = clv_metrics(frame["revenue_next_365d_usd"].clip(lower=0), frame["predicted_clv_12m"])
        auc = churn_metrics((frame["purchases_next_90d"] == 0).astype(int), frame["churn_probability"])["auc"]

    return {
        "size": size, "seed": seed, "as_of": end.isoformat(), "world_generated_in_this_run": generated,
        "people": int(meta["counts"]["truth_people"]), "paid_orders": n_orders, "customers": int(len(rfm)),
        "repeat_buyers": int((rfm["frequency"] > 0).sum()),
        "seconds": clock.seconds,
        "fit_seconds_total": round(sum(clock.seconds[k] for k in (
            "rfm_summary_sql", "bgnbd_gg_fit_weighted", "training_set_features_and_labels",
            "xgb_churn_train_and_calibrate", "xgb_clv_regressor_train")), 2),
        "scoring_seconds_total": round(clock.seconds["score_all_customers"] + clock.seconds["behavioural_segments"], 2),
        "customers_scored": int(daily["customers_scored"]),
        "clv_params": {k: round(float(v), 6) for k, v in model.params.items()},
        "segments": {"k": seg.k, "silhouette": round(seg.silhouette, 4),
                     "names": seg.profiles["segment_name"].tolist(), "sizes": seg.profiles["customers"].tolist()},
        "champions": training["champions"],
        "holdout": {r["model_name"]: {k: r["metrics"].get(k) for k in ("spearman", "normalized_gini", "auc", "brier")
                                      if r["metrics"].get(k) is not None} for r in training["runs"]},
        "vs_truth": {"clv_spearman": round(float(clv["spearman"]), 4),
                     "clv_normalized_gini": round(float(clv["normalized_gini"]), 4),
                     "churn_auc": round(float(auc), 4)},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def run(sizes: list[str], seed: int, worlds_dir: Path) -> dict[str, Any]:
    results = []
    for size in sizes:
        print(f"{size}:", file=sys.stderr, flush=True)
        out = subprocess.run(
            [sys.executable, "-m", "bench.ml_fit_sizes", "--one", size, "--seed", str(seed),
             "--worlds-dir", str(worlds_dir)],
            check=True, stdout=subprocess.PIPE, text=True, cwd=REPO,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {
        "benchmark": "ml_fit_sizes",
        "recorded_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "xgboost": version("xgboost"), "lifetimes": version("lifetimes"), "duckdb": version("duckdb"),
                    "scikit-learn": version("scikit-learn"), "pandas": version("pandas"),
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ml_fit_sizes", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="medium,large", help="comma-separated: small,medium,large")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--worlds-dir", type=Path, default=Path(tempfile.gettempdir()) / "rp-bench-worlds",
                    help="where the worlds are generated (and reused from)")
    ap.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        print(json.dumps(_one(a.one, a.seed, a.worlds_dir)))
        return 0
    result = run([s.strip() for s in a.sizes.split(",") if s.strip()], a.seed, a.worlds_dir)
    a.output.parent.mkdir(parents=True, exist_ok=True)
    a.output.write_text(json.dumps(result, indent=2) + "\n")
    print(a.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
