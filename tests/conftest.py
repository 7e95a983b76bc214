"""Shared fixtures. Each block is owned by one area; keep additions inside a named block."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")


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

    import psycopg2

    dsn = postgres_dsn()
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    s = settings_factory(target="postgres", postgres_dsn=dsn, postgres_schema_prefix=prefix)
    yield s
    con = psycopg2.connect(dsn)
    con.autocommit = True
    cur = con.cursor()
    cur.execute("select schema_name from information_schema.schemata where schema_name like %s", [prefix + "%"])
    for (name,) in cur.fetchall():
        cur.execute(f'drop schema "{name}" cascade')
    con.close()
# --- end settings / warehouse ---------------------------------------------------------------
