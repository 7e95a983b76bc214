"""The one warehouse module: DuckDB (default) and Postgres behave the same."""

from __future__ import annotations

import pandas as pd
import pytest

from retailpulse.warehouse import WarehouseError, get_warehouse, ident


def _exercise(wh) -> None:
    wh.ensure_schemas()
    df = pd.DataFrame({"k": ["a", "b", "c"], "part": ["p1", "p1", "p2"], "v": [1, 2, 3]})
    assert wh.replace_rows("bronze", "t", df, where={"part": "p1"}) == 3
    assert wh.row_count("bronze", "t") == 3
    # replacing partition p1 only touches p1
    again = pd.DataFrame({"k": ["a2"], "part": ["p1"], "v": [10]})
    wh.replace_rows("bronze", "t", again, where={"part": "p1"})
    schema = wh.schema_name("bronze")
    rows = wh.query(f'select k, v from "{schema}"."t" order by k')
    assert rows == [("a2", 10), ("c", 3)]
    # schema drift: a new column is added, old rows get NULL
    drift = pd.DataFrame({"k": ["d"], "part": ["p3"], "v": [4], "extra": ["x"]})
    wh.replace_rows("bronze", "t", drift, where={"part": "p3"})
    rows = wh.query(f'select k, extra from "{schema}"."t" order by k')
    assert rows == [("a2", None), ("c", None), ("d", "x")]
    assert "t" in wh.list_tables("bronze")
    # a failure inside the transaction leaves the previous state
    with pytest.raises(RuntimeError):
        with wh.connect() as con:
            wh.replace_rows("bronze", "t", pd.DataFrame({"k": ["z"], "part": ["p3"], "v": [9]}), where={"part": "p3"}, con=con)
            raise RuntimeError("crash mid-batch")
    assert wh.query(f'select k from "{schema}"."t" where part = \'p3\'') == [("d",)]


def test_duckdb_roundtrip(settings):
    wh = get_warehouse(settings)
    assert wh.target == "duckdb"
    _exercise(wh)
    assert settings.duckdb_path.exists()


@pytest.mark.postgres
def test_postgres_roundtrip(pg_settings):
    wh = get_warehouse(pg_settings)
    assert wh.target == "postgres"
    _exercise(wh)
    prof = wh.dbt_profile()
    assert prof["type"] == "postgres" and prof["host"] == "127.0.0.1"


def test_identifiers_are_validated():
    assert ident("fct_orders") == '"fct_orders"'
    with pytest.raises(WarehouseError):
        ident('x"; drop table y; --')


def test_read_only_without_warehouse_says_what_to_do(settings):
    wh = get_warehouse(settings)
    with pytest.raises(WarehouseError, match="make run"):
        with wh.connect(read_only=True):
            pass


def test_dbt_profile_points_at_the_settings_file(settings):
    prof = get_warehouse(settings).dbt_profile()
    assert prof == {"type": "duckdb", "path": str(settings.duckdb_path), "threads": settings.dbt_threads,
                    "settings": {"memory_limit": settings.duckdb_memory_limit_setting}}


def test_inserted_frames_are_released_before_the_transaction_commits(settings):
    """A long load writes many groups inside one transaction: each group's frame must be freed
    once inserted (con.register kept them all alive until commit: GA4 at medium peaked at 8 GB)."""
    import gc
    import weakref

    wh = get_warehouse(settings)
    wh.ensure_schemas()
    with wh.connect() as con:
        refs = []
        for group in range(3):
            frame = pd.DataFrame({"k": [f"{group}-{i}" for i in range(5000)], "v": range(5000)})
            refs.append(weakref.ref(frame))
            wh.replace_rows("bronze", "groups", frame, where={} if group else None, con=con)
            del frame
            gc.collect()
            assert all(r() is None for r in refs), f"group {group}: an inserted frame is still referenced"
    assert wh.row_count("bronze", "groups") == 15000


def test_kept_open_holds_one_duckdb_instance_for_the_block(settings):
    """Inside kept_open every connect() attaches to the open database: a write is not checkpointed
    when its connection closes (the WAL stays until the block ends), and it behaves as outside."""
    wh = get_warehouse(settings)
    wal = settings.duckdb_path.with_name(settings.duckdb_path.name + ".wal")
    wh.ensure_schemas()
    one = pd.DataFrame({"k": ["a"], "part": ["p1"], "v": [1]})
    wh.replace_rows("bronze", "t0", one, where={"part": "p1"})
    assert not wal.exists()  # the last connection closed: checkpointed
    with wh.kept_open():
        _exercise(wh)  # the same semantics, rollback included
        assert wal.exists()  # the writes of the closed connections wait in the WAL
        with wh.connect() as con:  # and the open instance serves every connection
            assert con.execute("select count(*) from bronze.t").fetchone()[0] == 3
    assert not wal.exists()
    assert wh.query('select k, extra from "bronze"."t" order by k') == [("a2", None), ("c", None), ("d", "x")]


def test_kept_open_is_a_no_op_on_postgres(pg_settings):
    wh = get_warehouse(pg_settings)
    with wh.kept_open():
        _exercise(wh)
