"""What every RetailPulse DAG shares: default task arguments, the failure alert, settings.

Kept free of heavy imports: DAG files import it at parse time.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

WAREHOUSE_POOL = "retailpulse_warehouse"


def failure_alert(dag_id: str):  # type: ignore[no-untyped-def]
    """An on_failure_callback that appends one clear line to <data>/alerts.log."""

    def _alert(context: Any) -> None:
        from retailpulse.pipeline import write_alert
        from retailpulse.settings import load_settings

        ti = context.get("task_instance")
        err = context.get("exception")
        write_alert(load_settings(), f"{dag_id} task {getattr(ti, 'task_id', '?')} failed for run "
                                     f"{context.get('run_id')}: {type(err).__name__ if err else 'error'}: {err}")

    return _alert


def default_args(dag_id: str, *, timeout: dt.timedelta, retry_delay: dt.timedelta = dt.timedelta(seconds=30),
                 retries: int = 2) -> dict[str, Any]:
    """Retries with exponential backoff, a timeout and the failure alert on every task."""
    return {
        "owner": "retailpulse",
        "retries": retries,
        "retry_delay": retry_delay,
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(minutes=15),
        "execution_timeout": timeout,
        "on_failure_callback": failure_alert(dag_id),
    }


def task_settings():  # type: ignore[no-untyped-def]
    """Fresh settings for a task, with every configured secret registered for redaction."""
    from retailpulse.logging_setup import install_redaction
    from retailpulse.settings import load_settings

    settings = load_settings()
    install_redaction(settings)
    return settings
