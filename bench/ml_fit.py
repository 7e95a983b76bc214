"""Benchmark: weighted BG/NBD (+ Gamma-Gamma) fit on a million synthetic customers.

    python -m bench.ml_fit                      # 1,000,000 customers -> bench/results/ml_fit.json
    python -m bench.ml_fit --customers 100000 --no-unweighted --output /tmp/ml_fit.json

Customers are simulated from known BG/NBD + Gamma-Gamma parameters (CDNOW's,
in days) with daily resolution (integer ages 1..730 days and integer
recencies), as a daily transaction log would give.  Timings are wall-clock
seconds of one run each; the weighted fit is compared with the per-customer
(unweighted) fit of the same data, which must give the same parameters.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from ml.clv import collapse_rfm, fit_bgnbd, fit_clv, predict_clv
from ml.synthetic import SyntheticParams, simulate_rfm_summary

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "ml_fit.json"


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, round(time.perf_counter() - start, 3)


def run(n_customers: int = 1_000_000, *, seed: int = 0, unweighted: bool = True) -> dict[str, Any]:
    truth = SyntheticParams()
    summary, t_sim = _timed(simulate_rfm_summary, n_customers, truth, T=(1.0, 731.0), seed=seed, integer_days=True)
    patterns, t_collapse = _timed(collapse_rfm, summary)
    bgf, t_weighted = _timed(fit_bgnbd, summary, weighted=True)
    model, t_full = _timed(fit_clv, summary, weighted=True)
    pred, t_predict = _timed(predict_clv, model, summary)
    result: dict[str, Any] = {
        "benchmark": "ml_fit",
        "recorded_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "n_customers": int(n_customers),
        "n_repeat_buyers": int((summary["frequency"] > 0).sum()),
        "n_patterns": int(len(patterns)),
        "collapse_ratio": round(n_customers / len(patterns), 2),
        "seconds": {
            "simulate": t_sim,
            "collapse_patterns": t_collapse,
            "bgnbd_weighted_fit": t_weighted,
            "clv_fit_bgnbd_and_gamma_gamma_weighted": t_full,
            "predict_all_customers": t_predict,
        },
        "true_params": truth.as_dict(),
        "fitted_params": {k: round(v, 6) for k, v in model.params.items()},
        "mean_predicted_clv_12m": round(float(pred["predicted_clv_12m"].mean()), 4),
    }
    if unweighted:
        bgf_u, t_unweighted = _timed(fit_bgnbd, summary, weighted=False)
        result["seconds"]["bgnbd_unweighted_fit"] = t_unweighted
        result["speedup_weighted_vs_unweighted"] = round(t_unweighted / max(t_weighted, 1e-9), 2)
        w, u = bgf.params_.to_numpy(), bgf_u.params_.to_numpy()
        result["max_rel_diff_weighted_vs_unweighted"] = float(np.max(np.abs(w - u) / np.abs(u)))
    result["environment"] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "lifetimes": version("lifetimes"),
        "numpy": version("numpy"),
        "pandas": version("pandas"),
        "scipy": version("scipy"),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-unweighted", action="store_true", help="skip the per-customer comparison fit")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    result = run(args.customers, seed=args.seed, unweighted=not args.no_unweighted)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
