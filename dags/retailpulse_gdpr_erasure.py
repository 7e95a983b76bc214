"""retailpulse_gdpr_erasure: erase one person everywhere (GDPR art. 17), on request.

Wiring only; the work is :func:`retailpulse.erasure.erase_person`. Trigger it with ONE of the
params ``email``, ``customer_id`` or ``email_sha256`` (SHA-256 hex of the lower-cased, trimmed
address: it keeps the address itself out of Airflow's metadata database and logs). The request id
is the DAG run id, so a retry finishes what a failed attempt left. The erasure writes the
warehouse, so it takes the one slot of the ``retailpulse_warehouse`` pool; the run's return value
(XCom) holds counts only, never the person's data. The audit row is ``ops.erasure_audit``.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, dag, get_current_context, task

from retailpulse.dag_support import WAREHOUSE_POOL, default_args


DEFAULTS = default_args("retailpulse_gdpr_erasure", timeout=dt.timedelta(hours=2),
                        retry_delay=dt.timedelta(minutes=1))


def _request() -> dict:
    params = get_current_context()["params"]
    given = {k: str(params[k]).strip() for k in ("email", "customer_id", "email_sha256") if params.get(k)}
    return given


@dag(
    dag_id="retailpulse_gdpr_erasure",
    schedule=None,
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULTS,
    params={
        "email": Param(None, type=["null", "string"], description="the person's e-mail (any case/spacing)"),
        "customer_id": Param(None, type=["null", "string"], description="gold.dim_customers.customer_id"),
        "email_sha256": Param(None, type=["null", "string"],
                              description="sha256 hex of the lower-cased, trimmed e-mail (keeps it out of Airflow)"),
    },
    render_template_as_native_obj=True,
    tags=["retailpulse", "gdpr"],
    doc_md=__doc__,
)
def retailpulse_gdpr_erasure():
    @task(execution_timeout=dt.timedelta(minutes=5))
    def check_request() -> str:
        """Fail fast, without the warehouse lock, on a malformed request."""
        from airflow.sdk.exceptions import AirflowFailException

        given = _request()
        if len(given) != 1:
            raise AirflowFailException("give exactly one of the params email, customer_id, email_sha256")
        return next(iter(given))  # the kind of identifier only

    @task(pool=WAREHOUSE_POOL)
    def erase(kind: str) -> dict:
        from retailpulse.erasure import erase_person
        from retailpulse.logging_setup import install_redaction
        from retailpulse.settings import load_settings

        settings = load_settings()
        install_redaction(settings)
        value = _request()[kind]
        run_id = get_current_context()["run_id"]
        report = erase_person(settings, request_id=f"airflow:{run_id}", **{kind: value})
        return report.to_json()  # counts and hashes only

    erase(check_request())


retailpulse_gdpr_erasure()
