"""RetailPulse machine learning: pure functions from pandas DataFrames to DataFrames.

Modules (only :mod:`ml.artifacts` touches the file system, only :mod:`ml.jobs` the warehouse):

- :mod:`ml.features`    RFM summary (lifetimes' definitions; reference for the SQL model),
                        behavioural features and future-window labels from a transaction log.
- :mod:`ml.clv`         BG/NBD + Gamma-Gamma through lifetimes, fitted on weighted
                        (frequency, recency, T) patterns; p_alive, expected purchases, 12-month CLV.
- :mod:`ml.supervised`  xgboost churn classifier (calibrated) and CLV regressor on a time split.
- :mod:`ml.evaluation`  CLV and churn metrics, naive baselines, the champion rule.
- :mod:`ml.attribution` exact first-order Markov removal effects, Shapley values, per-order credits.
- :mod:`ml.scoring`     rows for gold.customer_scores and gold.ml_model_runs.
- :mod:`ml.segments`    behavioural segments: k-means on scaled RFM + engagement, k by silhouette,
                        readable names and profiles (gold.customer_segments, gold.segment_profiles).
- :mod:`ml.pipeline`    one call: backtest, train, score (``run_ml``).
- :mod:`ml.artifacts`   save/load model artifacts with metadata.
- :mod:`ml.synthetic`   BG/NBD + Gamma-Gamma simulator with known parameters (tests, benchmarks).
- :mod:`ml.jobs`        the warehouse integration: features from gold (RFM in SQL), weekly training
                        with gold.ml_model_runs and champion.json, daily scoring into
                        gold.customer_scores, gold.customer_segments, gold.segment_profiles and
                        gold.attribution_channel_weights (Markov / Shapley channel weights).
"""
