"""One typed settings object for the whole project.

Values come from (highest wins): explicit keyword arguments, environment variables with the
``RETAILPULSE_`` prefix, a ``.env`` file in the project home, then the defaults below.
Credentials are ``SecretStr``: they never appear in ``repr()``, logs or error messages.
Credentials may also come from Airflow connections (see :mod:`retailpulse.credentials`).
"""

from __future__ import annotations

import datetime as dt
import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    env = os.environ.get("RETAILPULSE_HOME")
    if env:
        return Path(env).resolve()
    # the checkout this package lives in (editable install), else the working directory
    here = Path(__file__).resolve().parent.parent
    if (here / "dbt" / "dbt_project.yml").exists():
        return here
    return Path.cwd().resolve()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RETAILPULSE_",
        env_file=str(_default_home() / ".env"),
        env_file_encoding="utf-8",
        extra="ignore",
    )

    # --- paths -----------------------------------------------------------------------------
    home: Path = Field(default_factory=_default_home, description="project root")
    data_dir: Path | None = Field(None, description="landing files, sandbox worlds, state (default <home>/data)")
    warehouse_path: Path | None = Field(None, description="DuckDB file (default <home>/warehouse/retailpulse.duckdb)")
    serving_dir: Path | None = Field(None, description="published read-only copy (default <home>/warehouse/serving)")

    # --- warehouse -------------------------------------------------------------------------
    target: Literal["duckdb", "postgres"] = "duckdb"
    postgres_dsn: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/postgres")
    postgres_schema_prefix: str = Field("", description="prefix for bronze/silver/gold schemas on Postgres")
    dbt_threads: int = 2
    load_workers: int = Field(2, ge=1, description="processes that read, type and validate the landed batches of a big "
                              "load in parallel while the loader writes (1: all in the loader's process)")
    duckdb_memory_limit: str = Field(
        "50%", pattern=r"^\s*(\d+(\.\d+)?\s*%|\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB))\s*$",
        description="DuckDB's memory limit (every connection and dbt): a share of this machine's memory (or of the "
                    "container's limit), e.g. 50%, or a size, e.g. 8GB. DuckDB's own default (80%) leaves too little "
                    "for the other processes of a run (load workers, Airflow, the sandbox); beyond the limit DuckDB "
                    "spills to disk beside the warehouse")

    # --- publishing for BI tools (see README "Connect Tableau / Power BI") -----------------
    bi_role: str = Field("retailpulse_bi", description="Postgres role that may SELECT gold and nothing else")
    bi_password: SecretStr | None = Field(None, description="when set, the BI role can LOG IN with it (else NOLOGIN)")
    publish_postgres_dsn: SecretStr | None = Field(
        None, description="DuckDB target: also copy gold into this Postgres for BI tools (optional)")

    # --- business --------------------------------------------------------------------------
    reporting_currency: str = "USD"
    attribution_lookback_days: int = 30
    demo_start: dt.date = dt.date(2025, 1, 1)
    demo_end: dt.date = dt.date(2025, 12, 31)

    # --- sandbox ---------------------------------------------------------------------------
    sandbox_world: Literal["small", "medium", "large"] = "small"
    sandbox_seed: int = 42
    sandbox_host: str = "127.0.0.1"
    sandbox_port: int = 8765

    # --- sources ---------------------------------------------------------------------------
    # Stripe: the SDK's own api_base setting; key is a bearer secret.
    stripe_api_base: str = "https://api.stripe.com"
    stripe_api_key: SecretStr | None = None
    stripe_lookback_days: int = 3
    # Salesforce: instance URL + session id (or username/password/token)
    salesforce_instance_url: str | None = None
    salesforce_session_id: SecretStr | None = None
    salesforce_username: str | None = None
    salesforce_password: SecretStr | None = None
    salesforce_security_token: SecretStr | None = None
    salesforce_api_version: str = "59.0"
    salesforce_ca_bundle: Path | None = Field(None, description="extra CA to trust (the sandbox's self-signed one)")
    salesforce_lookback_minutes: int = 60
    # GA4 BigQuery-export files: local path or fsspec URL
    ga4_export_url: str | None = None
    ga4_reread_days: int = 3
    # Google Ads REST
    google_ads_base_url: str = "https://googleads.googleapis.com"
    google_ads_api_version: str = "v18"
    google_ads_customer_id: str | None = None
    google_ads_developer_token: SecretStr | None = None
    google_ads_access_token: SecretStr | None = None
    # Meta Marketing API
    meta_base_url: str = "https://graph.facebook.com"
    meta_api_version: str = "v21.0"
    meta_account_id: str | None = None
    meta_access_token: SecretStr | None = None
    ads_restatement_days: int = 7
    # HTTP behaviour shared by connectors
    http_timeout_seconds: float = 30.0
    http_max_retries: int = 6
    http_max_requests_per_second: float = 50.0

    # --- consumption: scores API, dashboard, weekly report ---------------------------------
    # The API refuses unauthenticated calls; without api_token it uses (or generates) a 0600
    # token file, <data>/api_token by default.
    api_token: SecretStr | None = None
    api_token_file: Path | None = Field(None, description="bearer token file (default <data>/api_token)")
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8501
    reports_dir: Path | None = Field(None, description="weekly HTML reports (default <home>/reports)")
    report_email_to: str | None = Field(None, description="comma-separated recipients of the weekly report")
    report_smtp_conn_id: str = "smtp_default"

    # --- derived paths (always absolute) ---------------------------------------------------
    @cached_property
    def data_path(self) -> Path:
        return (self.data_dir or self.home / "data").resolve()

    @cached_property
    def landing_path(self) -> Path:
        return self.data_path / "landing"

    @cached_property
    def state_path(self) -> Path:
        return self.data_path / "state"

    @cached_property
    def sandbox_path(self) -> Path:
        return self.data_path / "sandbox"

    @cached_property
    def duckdb_path(self) -> Path:
        return (self.warehouse_path or self.home / "warehouse" / "retailpulse.duckdb").resolve()

    @cached_property
    def serving_path(self) -> Path:
        return (self.serving_dir or self.home / "warehouse" / "serving").resolve()

    @cached_property
    def reports_path(self) -> Path:
        return (self.reports_dir or self.home / "reports").resolve()

    @cached_property
    def api_token_path(self) -> Path:
        return (self.api_token_file or self.data_path / "api_token").resolve()

    @property
    def dbt_project_dir(self) -> Path:
        return self.home / "dbt"

    @property
    def airflow_home(self) -> Path:
        return Path(os.environ.get("AIRFLOW_HOME", self.home / ".airflow")).resolve()

    @property
    def duckdb_memory_limit_setting(self) -> str:
        """``duckdb_memory_limit`` as a value for DuckDB's ``SET memory_limit`` (a share -> MB)."""
        value = self.duckdb_memory_limit.strip().replace(" ", "")
        if not value.endswith("%"):
            return value
        share = float(value[:-1])
        if not 0 < share <= 100:
            raise ValueError(f"RETAILPULSE_DUCKDB_MEMORY_LIMIT={self.duckdb_memory_limit!r}: a share must be "
                             "between 0 and 100%")
        return f"{max(256, int(machine_memory_bytes() * share / 100 / 2**20))}MB"

    def secret_values(self) -> list[str]:
        """Every configured secret's plain value (for log redaction only)."""
        out: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                plain = value.get_secret_value()
                if plain and len(plain) >= 4:
                    out.append(plain)
        return out


def machine_memory_bytes() -> int:
    """Physical memory, or the cgroup's (container's) memory limit when that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(path).read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and 0 < int(raw) < total:
            total = int(raw)
    return total


def load_settings(**overrides: object) -> Settings:
    """Build a fresh Settings (no module-level singleton: tests and tasks get their own)."""
    return Settings(**overrides)  # type: ignore[arg-type]
