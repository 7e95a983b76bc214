"""retailpulse_weekly_train: train and evaluate the ML models, promote the champion, score.

Wiring only; every step is a function in ml.jobs:

1. ``train`` -- :func:`ml.jobs.train_models`: time-split training and holdout evaluation of the
   CLV (BG/NBD + Gamma-Gamma, xgboost) and churn (xgboost) models on gold, artifacts under
   ``<data>/models/<model_version>/``, one row per model in gold.ml_model_runs.
2. ``promote`` -- :func:`ml.jobs.promote_champion`: the new serving models become the champion
   (``<data>/models/champion.json``, ``promoted_at`` in gold.ml_model_runs) when they beat their
   baselines, or when there is no champion yet; otherwise the previous champion keeps serving.
3. ``score`` -- :func:`ml.jobs.score_daily` for the training date with the champion: writes
   gold.customer_scores and gold.attribution_channel_weights and rebuilds dim_customers, fct_attribution
   and channel_performance_daily. (retailpulse_daily scores every day after its dbt build.)

The as-of date is ``{"as_of": "YYYY-MM-DD"}`` from the run conf, else the last day with a paid
order in gold.fct_orders (the data, not the wall clock, decides what can be evaluated);
``{"horizon_days": N}`` overrides the 90-day horizon. Every task writes the warehouse and takes
the one slot of the ``retailpulse_warehouse`` pool. While gold holds too little history to train
(less than 2 x horizon_days of orders), the run is skipped with the reason, not failed.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, get_current_context, task

from retailpulse.dag_support import WAREHOUSE_POOL, default_args, task_settings
from airflow.sdk.exceptions import AirflowSkipException



DEFAULTS = default_args("retailpulse_weekly_train", timeout=dt.timedelta(hours=3),
                        retry_delay=dt.timedelta(minutes=1))


_settings = task_settings


def _conf() -> dict:
    dag_run = get_current_context().get("dag_run")
    return (getattr(dag_run, "conf", None) or {}) if dag_run else {}


@dag(
    dag_id="retailpulse_weekly_train",
    schedule="@weekly",
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULTS,
    tags=["retailpulse", "ml"],
    doc_md=__doc__,
)
def retailpulse_weekly_train():
    @task(pool=WAREHOUSE_POOL)
    def train() -> dict:
        from ml.jobs import DEFAULT_HORIZON_DAYS, InsufficientHistoryError, latest_order_date, train_models

        settings = _settings()
        conf = _conf()
        as_of = dt.date.fromisoformat(str(conf["as_of"])) if conf.get("as_of") else latest_order_date(settings)
        horizon = int(conf.get("horizon_days") or DEFAULT_HORIZON_DAYS)
        try:
            return train_models(settings, as_of, horizon, promote=False)
        except InsufficientHistoryError as exc:  # retrying cannot help; promote and score skip too
            raise AirflowSkipException(f"not enough history to train yet: {exc}") from exc

    @task(pool=WAREHOUSE_POOL)
    def promote(training: dict) -> dict:
        from ml.jobs import promote_champion

        return promote_champion(_settings(), training)

    @task(pool=WAREHOUSE_POOL)
    def score(training: dict) -> dict:
        from ml.jobs import score_daily

        return score_daily(_settings(), dt.date.fromisoformat(training["as_of"]))

    trained = train()
    promoted = promote(trained)
    promoted >> score(trained)


retailpulse_weekly_train()
