"""The same dbt project built on Postgres from the whole small sandbox world, compared with the
DuckDB build of the same bronze (fixture ``built``): every model, unit test and data test green
on Postgres, the same gold tables with the same row counts, the same revenue, the same identity
resolution, and attribution credits summing to 1 per order and model."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from tests.dbt_fixtures import Built, load_bronze, release_dbt_duckdb

# (table, column) sums that must agree between the engines to the cent
REVENUE_SUMS = (
    ("fct_orders", "gross_revenue"), ("fct_orders", "refunded_revenue"), ("fct_orders", "net_revenue"),
    ("kpi_daily", "net_revenue"), ("kpi_daily", "new_customer_revenue"),
    ("channel_performance_daily", "spend"), ("channel_performance_daily", "attributed_revenue"),
    ("fct_attribution", "attributed_revenue"), ("fct_attribution", "credit"),
    ("dim_customers", "net_revenue"), ("customer_rfm", "monetary"), ("cohort_retention_monthly", "net_revenue"),
)


@pytest.fixture(scope="module")
def on_postgres(pg_module_settings, built: Built):
    """Postgres warehouse with the bronze of ``built`` (as of the world's end), built by dbt as the
    DuckDB one is: a first build with the bronze of six days before the end, then the incremental
    build with all of it (so the incremental models' Postgres SQL runs, and gold must still equal
    DuckDB's)."""
    import datetime as dt

    from retailpulse.pipeline import stage_dbt

    release_dbt_duckdb()
    t = time.monotonic()
    load_bronze(pg_module_settings, built.world, frames=built.bronze.as_of(built.bronze.end - dt.timedelta(days=6)))
    stage_dbt(pg_module_settings)
    first = time.monotonic() - t
    counts = load_bronze(pg_module_settings, built.world, frames=built.bronze.as_of(built.bronze.end))
    loaded = time.monotonic() - t - first
    summary = stage_dbt(pg_module_settings)  # raises DbtError naming the failed nodes
    print(f"\npostgres: first load and build {first:.0f}s, bronze load {loaded:.0f}s, "
          f"incremental dbt build {time.monotonic() - t - first - loaded:.0f}s")
    return pg_module_settings, counts, summary


@pytest.fixture(scope="module")
def pg_module_settings(tmp_path_factory):
    """Settings targeting Postgres with a schema prefix unique to this module (dropped after)."""
    import uuid

    from retailpulse.settings import Settings
    from tests.conftest import REPO, drop_postgres_schemas, postgres_dsn

    dsn = postgres_dsn()
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    root = tmp_path_factory.mktemp("pg_wh")
    settings = Settings(home=REPO, data_dir=root / "data", warehouse_path=root / "wh.duckdb",
                        serving_dir=root / "serving", target="postgres", postgres_dsn=dsn,
                        postgres_schema_prefix=prefix, dbt_threads=4, _env_file=None)
    yield settings
    drop_postgres_schemas(dsn, prefix)


def _wh(settings):
    from retailpulse.warehouse import get_warehouse

    return get_warehouse(settings)


def test_dbt_build_is_green_on_postgres(on_postgres, built: Built):
    _, counts, summary = on_postgres
    assert counts["ga4__events"] > 100_000 and counts["stripe__charges"] > 5_000, counts
    nodes = summary["nodes"]
    # the same nodes as on DuckDB: every model, data test, unit test and the snapshot ran green
    assert nodes == built.summary["nodes"], (nodes, built.summary["nodes"])


def test_the_logic_of_the_incremental_models_is_recorded_on_postgres(on_postgres, built: Built):
    """Each build records the logic fingerprint of the incremental models it built
    (retailpulse.dbt_logic), on Postgres as on DuckDB: a later change of their logic is found."""
    from retailpulse import dbt_logic

    settings, _, _ = on_postgres
    record = dbt_logic.recorded(_wh(settings))
    incremental = {"int_ga4__events", "int_ga4__sessions", "int_sessions__stitched", "int_identity__ga4_devices",
                   "int_identity__exact_components", "int_identity__resolved", "int_attribution__credits",
                   "customer_identity_map"}
    assert {uid.rsplit(".", 1)[-1] for uid in record} == incremental, record
    assert all(len(fp) >= 32 for fp in record.values()), record


def test_gold_row_counts_match_duckdb(on_postgres, built: Built):
    pg = _wh(on_postgres[0])
    duck = _wh(built.settings)
    duck_tables = set(duck.list_tables("gold"))
    assert set(pg.list_tables("gold")) == duck_tables
    assert len(duck_tables) >= 12
    diff = {t: (duck.row_count("gold", t), pg.row_count("gold", t)) for t in sorted(duck_tables)}
    assert {t: v for t, v in diff.items() if v[0] != v[1]} == {}, diff
    assert diff["fct_orders"][0] > 5_000 and diff["fct_sessions"][0] > 10_000


@pytest.mark.parametrize("table,column", REVENUE_SUMS)
def test_gold_revenue_matches_duckdb(on_postgres, built: Built, table: str, column: str):
    pg = _wh(on_postgres[0])
    duck = _wh(built.settings)
    got = pg.scalar(f'select sum({column}) from "{pg.schema_name("gold")}".{table}')
    want = duck.scalar(f'select sum({column}) from gold.{table}')
    assert want is not None and float(want) != 0
    assert float(got) == pytest.approx(float(want), abs=0.01), (table, column)


def test_identity_resolution_matches_duckdb(on_postgres, built: Built):
    pg = _wh(on_postgres[0])
    sql = "select identifier_key, customer_id, match_rule from {}.customer_identity_map"
    a = _wh(built.settings).query_df(sql.format("gold")).sort_values("identifier_key").reset_index(drop=True)
    b = pg.query_df(sql.format(f'"{pg.schema_name("gold")}"')).sort_values("identifier_key").reset_index(drop=True)
    assert len(a) > 10_000
    pd.testing.assert_frame_equal(a, b, check_dtype=False)


def test_postgres_net_revenue_reconciles_and_credits_sum_to_one(on_postgres, built: Built):
    pg = _wh(on_postgres[0])
    gold = pg.schema_name("gold")
    frames = built.bronze.as_of(built.bronze.end)
    ch = frames["stripe__charges"].drop_duplicates("id")
    ch = ch[(ch["status"] == "succeeded") & ch["metadata__order_id"].notna()]
    rf = frames["stripe__refunds"].drop_duplicates("id")
    fx = {"usd": 1.0, "eur": 1.08, "gbp": 1.27}
    refunded = rf.groupby("charge")["amount"].sum()
    net = ((ch["amount"] - ch["id"].map(refunded).fillna(0)) * ch["currency"].map(fx) / 100.0).sum()
    got = pg.scalar(f'select sum(net_revenue) from "{gold}".fct_orders where order_source = \'stripe\'')
    assert float(got) == pytest.approx(float(net), abs=0.01)
    bad = pg.scalar(f'select count(*) from (select order_id, model from "{gold}".fct_attribution '
                    f'group by order_id, model having abs(sum(credit) - 1) > 1e-6) as x')
    assert bad == 0
