"""Shared fixtures. Each block is owned by one area; keep additions inside a named block."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
os.environ.setdefault("RETAILPULSE_HOME", str(REPO))


def _use_project_airflow_home() -> None:
    """Point Airflow at the project's home (.airflow/, initialised by `make test`) before any
    test module imports airflow, so no test ever touches ~/airflow."""
    from retailpulse.airflow_setup import apply_env
    from retailpulse.settings import Settings

    apply_env(Settings(home=REPO, _env_file=None))


_use_project_airflow_home()


# --- settings / warehouse -------------------------------------------------------------------
@pytest.fixture
def settings_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Settings isolated in a temp dir (own data dir, DuckDB file, serving dir)."""
    from retailpulse.settings import Settings

    for key in list(os.environ):
        if key.startswith("RETAILPULSE_") and key not in ("RETAILPULSE_REQUIRE_POSTGRES",):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RETAILPULSE_HOME", str(REPO))

    def make(**overrides):
        base = dict(
            home=REPO,
            data_dir=tmp_path / "data",
            warehouse_path=tmp_path / "warehouse" / "retailpulse.duckdb",
            serving_dir=tmp_path / "warehouse" / "serving",
            _env_file=None,
        )
        base.update(overrides)
        return Settings(**base)

    return make


@pytest.fixture
def settings(settings_factory):
    return settings_factory()


def drop_postgres_schemas(dsn: str, prefix: str) -> None:
    """Drop every schema whose name starts with ``prefix`` (a test's isolated Postgres warehouse)."""
    import psycopg2

    con = psycopg2.connect(dsn)
    con.autocommit = True
    cur = con.cursor()
    cur.execute("select schema_name from information_schema.schemata where schema_name like %s", [prefix + "%"])
    for (name,) in cur.fetchall():
        cur.execute(f'drop schema "{name}" cascade')
    con.close()


def postgres_dsn() -> str | None:
    """DSN of the local test Postgres if reachable; skip (or fail in CI) otherwise."""
    dsn = os.environ.get("RETAILPULSE_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        import psycopg2

        psycopg2.connect(dsn, connect_timeout=3).close()
        return dsn
    except Exception as exc:  # noqa: BLE001
        reason = f"PostgreSQL not reachable at {dsn} ({str(exc).strip().splitlines()[0] if str(exc).strip() else exc})"
        if os.environ.get("RETAILPULSE_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason + " and RETAILPULSE_REQUIRE_POSTGRES=1")
        pytest.skip(reason)


@pytest.fixture
def pg_settings(settings_factory, request):
    """Settings targeting Postgres, with a schema prefix unique to the test (dropped after)."""
    import uuid

    dsn = postgres_dsn()
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    s = settings_factory(target="postgres", postgres_dsn=dsn, postgres_schema_prefix=prefix)
    yield s
    drop_postgres_schemas(dsn, prefix)
# --- end settings / warehouse ---------------------------------------------------------------


# --- sandbox world + mock APIs (owner: sandbox APIs) ----------------------------------------
SANDBOX_TEST_SEED = 42


def _generated_world_path(out_dir: Path, result) -> Path:
    """Where generate_world put the world (it may return a path, a World or nothing)."""
    if isinstance(result, (str, os.PathLike)) and (Path(result) / "world.json").exists():
        return Path(result)
    for attr in ("path", "root", "dir"):
        p = getattr(result, attr, None)
        if p is not None and (Path(p) / "world.json").exists():
            return Path(p)
    if (out_dir / "world.json").exists():
        return out_dir
    found = sorted(out_dir.rglob("world.json"))
    if not found:
        raise RuntimeError(f"generate_world wrote no world.json under {out_dir}")
    return found[0].parent


@pytest.fixture(scope="session")
def small_world(tmp_path_factory) -> Path:
    """Directory of the small sandbox world (seed 42), generated once per test session."""
    from sandbox.world import generate_world

    root = tmp_path_factory.mktemp("sandbox")
    return _generated_world_path(root, generate_world("small", SANDBOX_TEST_SEED, root))


@pytest.fixture(scope="session")
def sandbox_server(small_world: Path, tmp_path_factory):
    """A running SandboxServer (port 0, faults off) over ``small_world``; GA4 files in a temp dir.

    Tests that move the clock or turn faults on must put them back (``sandbox_server.set_clock(
    sandbox_server.default_as_of)``, ``sandbox_server.set_faults(FaultConfig())``).
    """
    from sandbox.server import SandboxServer

    server = SandboxServer(small_world, ga4_export_dir=tmp_path_factory.mktemp("ga4_export"))
    server.start()
    server.wait_ga4()
    yield server
    server.stop()
# --- end sandbox world + mock APIs ----------------------------------------------------------


# --- dbt warehouse on the small world (owner: dbt) ----------------------------------------
@pytest.fixture(scope="session")
def built(small_world: Path, tmp_path_factory):
    """The small world's bronze built by dbt on DuckDB, once per session (tests/dbt_fixtures.py);
    shared by the dbt warehouse tests and the DuckDB-vs-Postgres comparison."""
    from tests.dbt_fixtures import build_small_world_warehouse

    return build_small_world_warehouse(small_world, tmp_path_factory.mktemp("dbt_wh"))
# --- end dbt warehouse --------------------------------------------------------------------


# --- consumption: dashboard, scores API, weekly report (owner: consumption) -----------------
CONSUMPTION_API_TOKEN = "test-api-token-7f3a9c"


@pytest.fixture(scope="session")
def gold_serving(tmp_path_factory):
    """Settings whose serving copy holds the small fixture gold (tests/consumption_fixtures.py),
    published once per session through the pipeline's stage_publish."""
    from pydantic import SecretStr

    from retailpulse.settings import Settings
    from tests.consumption_fixtures import build_serving_copy

    root = tmp_path_factory.mktemp("gold_serving")
    settings = Settings(
        home=REPO, data_dir=root / "data", warehouse_path=root / "warehouse" / "retailpulse.duckdb",
        serving_dir=root / "serving", reports_dir=root / "reports", api_token=SecretStr(CONSUMPTION_API_TOKEN),
        api_token_file=root / "api_token", report_email_to=None, _env_file=None,
    )
    build_serving_copy(settings)
    return settings
# --- end consumption ----------------------------------------------------------------------
