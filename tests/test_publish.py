"""Publishing gold: the read-only serving copy swapped in atomically, Parquet, the raw-PII guard,
the Postgres BI role (SELECT on gold only) and the optional BI copy in Postgres."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from retailpulse.publish import PublishError, check_no_raw_pii, pii_kind, publish_gold
from retailpulse.warehouse import get_warehouse


def _gold(wh, generation: int, rows: int = 2000) -> None:
    """Two gold tables whose rows all carry ``generation`` (a reader can tell a mix apart)."""
    wh.ensure_schemas()
    orders = pd.DataFrame({
        "order_id": [f"ord_{i:06d}" for i in range(rows)],
        "customer_id": [f"c{i % 97}" for i in range(rows)],
        "net_revenue": [float(i) for i in range(rows)],
        "generation": [generation] * rows,
    })
    customers = pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(97)],
        "email_sha256": ["0" * 64] * 97,
        "is_email_opted_out": [False] * 97,
        "generation": [generation] * 97,
    })
    with wh.connect() as con:
        wh.replace_rows("gold", "fct_orders", orders, where=None, con=con)
        wh.replace_rows("gold", "dim_customers", customers, where=None, con=con)
        wh.replace_rows("bronze", "stripe__customers",
                        pd.DataFrame({"id": ["cus_1"], "email": ["jane@example.com"]}), where=None, con=con)


# --- the raw PII guard ---------------------------------------------------------------------------
@pytest.mark.parametrize("column", ["email", "Email", "receipt_email", "customer_email", "email_address", "phone",
                                    "mobile_phone", "phone_number", "first_name", "firstname", "last_name",
                                    "full_name", "name", "customer_name", "contact_name", "street_address"])
def test_raw_pii_column_names_are_recognised(column):
    assert pii_kind(column) is not None


@pytest.mark.parametrize("column", ["email_sha256", "hashed_email", "is_email_opted_out", "has_email", "customer_id",
                                    "campaign_name", "channel_group", "country", "order_id", "email_count",
                                    "phone_sha256", "user_pseudo_id", "reporting_currency"])
def test_harmless_column_names_pass(column):
    assert pii_kind(column) is None


def test_check_names_every_offending_column():
    with pytest.raises(PublishError) as err:
        check_no_raw_pii({"dim_customers": ["customer_id", "email", "email_sha256"], "x": ["first_name", "country"]})
    msg = str(err.value)
    assert "gold.dim_customers.email (e-mail)" in msg and "gold.x.first_name" in msg
    assert "email_sha256" not in msg.replace("e.g. email_sha256", "")


def test_publish_refuses_raw_pii_and_keeps_the_previous_copy(settings):
    wh = get_warehouse(settings)
    _gold(wh, 1)
    first = publish_gold(settings)
    wh.execute('alter table gold.dim_customers add column "email" varchar')
    with pytest.raises(PublishError, match=r"gold\.dim_customers\.email \(e-mail\)"):
        publish_gold(settings)
    # nothing half-done: the previous serving copy is untouched and no temp files are left
    import duckdb

    con = duckdb.connect(first["serving_file"], read_only=True)
    try:
        cols = [r[0] for r in con.execute("select column_name from information_schema.columns "
                                          "where table_name = 'dim_customers'").fetchall()]
    finally:
        con.close()
    assert "email" not in cols
    assert not [p for p in settings.serving_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("failing", ["parquet", "serving"])
def test_a_failure_on_either_connection_fails_the_publish_and_keeps_the_previous_copy(settings, monkeypatch, failing):
    """The Parquet files are written on a second connection while the first fills the serving copy:
    an error on either is raised, and neither the serving file nor the Parquet link moves."""
    import duckdb
    import pyarrow.parquet as pq

    from retailpulse import publish

    wh = get_warehouse(settings)
    _gold(wh, 1)
    first = publish_gold(settings)
    before = Path(first["parquet_dir"]).resolve()
    _gold(wh, 2, rows=10)
    if failing == "parquet":  # every COPY of the Parquet connection fails
        monkeypatch.setattr(publish, "PARQUET_OPTIONS", "format parquet, compression no_such_codec")
        match = "compression"
    else:  # the serving copy's CREATE TABLE of fct_orders fails; the Parquet connection works
        real_connect = duckdb.connect

        class Failing:
            def __init__(self, con):  # noqa: ANN001
                self._con = con

            def execute(self, sql, *args):  # noqa: ANN001, ANN202
                if sql.startswith("create table __rp_serving.gold.") and '"fct_orders"' in sql:
                    raise duckdb.IOException("serving copy failed at fct_orders")
                return self._con.execute(sql, *args)

            def __getattr__(self, name):  # noqa: ANN001, ANN204
                return getattr(self._con, name)

        monkeypatch.setattr(duckdb, "connect", lambda *a, **k: Failing(real_connect(*a, **k)))
        match = "serving copy failed at fct_orders"
    with pytest.raises(duckdb.Error, match=match):
        publish_gold(settings)
    monkeypatch.undo()
    parquet = settings.serving_path / "parquet"
    assert parquet.resolve() == before
    assert pq.read_table(parquet / "fct_orders.parquet").column("generation").to_pylist() == [1] * 2000
    con = duckdb.connect(first["serving_file"], read_only=True)
    try:
        assert con.execute("select count(*), min(generation) from gold.fct_orders").fetchone() == (2000, 1)
    finally:
        con.close()
    assert not [p for p in settings.serving_path.iterdir() if p.name.startswith(".")]
    assert sorted(p.name for p in settings.serving_path.iterdir() if p.name.startswith("parquet-")) == [before.name]


# --- the serving copy ----------------------------------------------------------------------------
def test_serving_copy_is_gold_only_read_only_and_has_parquet(settings):
    import duckdb
    import pyarrow.parquet as pq

    wh = get_warehouse(settings)
    _gold(wh, 1)
    result = publish_gold(settings)
    path = Path(result["serving_file"])
    assert path == settings.serving_path / "retailpulse_serving.duckdb"
    assert result["tables"] == {"dim_customers": 97, "fct_orders": 2000}
    assert not (os.stat(path).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)), "serving file is mode 0444"
    con = duckdb.connect(str(path), read_only=True)
    try:
        schemas = {r[0] for r in con.execute("select distinct table_schema from information_schema.tables").fetchall()}
        assert schemas == {"gold"}
        assert con.execute("select count(*) from gold.fct_orders").fetchone()[0] == 2000
        with pytest.raises(duckdb.Error):
            con.execute("delete from gold.fct_orders")
    finally:
        con.close()
    parquet = settings.serving_path / "parquet"
    assert pq.read_table(parquet / "fct_orders.parquet").num_rows == 2000
    # a second publish replaces both; only the current and the previous Parquet generation remain
    _gold(wh, 2, rows=10)
    publish_gold(settings)
    publish_gold(settings)
    assert pq.read_table(parquet / "fct_orders.parquet").column("generation").to_pylist() == [2] * 10
    generations = [p for p in settings.serving_path.iterdir() if p.name.startswith("parquet-")]
    assert 1 <= len(generations) <= 2
    # erasure publishes without keeping the previous generation
    publish_gold(settings, keep_previous=False)
    assert len([p for p in settings.serving_path.iterdir() if p.name.startswith("parquet-")]) == 1


def _scores(dates: list[str], customers: int = 300, version: str = "v1", shift: float = 0.0) -> pd.DataFrame:
    """gold.customer_scores rows: one scoring per date (its values differ per date and ``shift``)."""
    rows = [(f"c{i}", dt_, version, round((i % 97) / 97 + k / 1000 + shift, 6))
            for k, dt_ in enumerate(dates) for i in range(customers)]
    frame = pd.DataFrame(rows, columns=["customer_id", "as_of_date", "model_version", "p_alive"])
    frame["as_of_date"] = pd.to_datetime(frame["as_of_date"]).dt.date
    return frame


def _serving_equals_gold(settings, tables) -> None:
    import duckdb

    con = duckdb.connect(str(settings.serving_path / "retailpulse_serving.duckdb"), read_only=True)
    try:
        con.execute(f"attach '{settings.duckdb_path}' as wh (read_only)")
        for t in tables:
            for a, b in ((f"gold.{t}", f"wh.gold.{t}"), (f"wh.gold.{t}", f"gold.{t}")):
                assert con.execute(f"select count(*) from (select * from {a} except all select * from {b})").fetchall()[0][0] == 0, t
    finally:
        con.close()


def test_history_tables_are_published_by_date_and_unchanged_dates_are_kept(settings):
    """customer_scores grows by a scoring a day: a publish writes only the dates that changed
    (the serving copy keeps the previous copy's other dates, Parquet links their files), and what
    is published equals gold."""
    import pyarrow.parquet as pq

    wh = get_warehouse(settings)
    _gold(wh, 1)
    days = ["2025-01-01", "2025-01-02", "2025-01-03"]
    with wh.connect() as con:
        wh.replace_rows("gold", "customer_scores", _scores(days), where=None, con=con)
    publish_gold(settings)
    folder = settings.serving_path / "parquet" / "customer_scores"
    assert sorted(p.name for p in folder.glob("*.parquet")) == [f"{d}.parquet" for d in days]
    assert pq.read_table(folder / "2025-01-02.parquet").num_rows == 300
    inode = {d: os.stat(folder / f"{d}.parquet").st_ino for d in days}
    _serving_equals_gold(settings, ["customer_scores", "fct_orders", "dim_customers"])

    # the next day: 01-03 re-scored, 01-04 added, one customer of 01-01 erased; fct_orders changes
    _gold(wh, 2, rows=500)
    with wh.connect() as con:
        wh.replace_rows("gold", "customer_scores", _scores(["2025-01-03"], shift=0.5),
                        where={"as_of_date": dt.date(2025, 1, 3)}, con=con)
        wh.replace_rows("gold", "customer_scores", _scores(["2025-01-04"]), where={"as_of_date": dt.date(2025, 1, 4)},
                        con=con)
        con.execute("delete from gold.customer_scores where customer_id = 'c7' and as_of_date = date '2025-01-01'")
    result = publish_gold(settings)
    assert result["tables"]["customer_scores"] == 1199 and result["tables"]["fct_orders"] == 500
    # only the changed dates were rewritten in the copy of the previous serving file
    assert result["history"]["customer_scores"] == {
        "serving_dates_rewritten": ["2025-01-01", "2025-01-03", "2025-01-04"],
        "parquet_dates_written": 3, "parquet_dates_linked": 1}
    _serving_equals_gold(settings, ["customer_scores", "fct_orders", "dim_customers"])
    now = {p.stem: os.stat(p).st_ino for p in folder.glob("*.parquet")}
    assert sorted(now) == days + ["2025-01-04"]
    assert now["2025-01-02"] == inode["2025-01-02"]  # unchanged: linked, not written
    assert now["2025-01-01"] != inode["2025-01-01"] and now["2025-01-03"] != inode["2025-01-03"]
    published = pq.read_table(folder).to_pandas()
    assert len(published) == 1199 and published["p_alive"].sum() == pytest.approx(
        wh.scalar("select sum(p_alive) from gold.customer_scores"))
    assert json.loads((folder / "_fingerprints.json").read_text()).keys() == set(now)

    # a date removed from gold disappears from both; erasure (keep_previous=False) links nothing
    with wh.connect() as con:
        con.execute("delete from gold.customer_scores where as_of_date = date '2025-01-02'")
    erased = publish_gold(settings, keep_previous=False)
    assert erased["history"]["customer_scores"] == {"serving_dates_rewritten": None, "parquet_dates_written": 3,
                                                    "parquet_dates_linked": 0}
    _serving_equals_gold(settings, ["customer_scores"])
    assert sorted(p.stem for p in folder.glob("*.parquet")) == ["2025-01-01", "2025-01-03", "2025-01-04"]
    assert all(os.stat(p).st_nlink == 1 for p in folder.glob("*.parquet"))


def test_the_previous_copys_dates_are_compared_by_the_fingerprints_recorded_beside_it(settings, monkeypatch):
    """The history grows by a scoring a day: a publish fingerprints gold's history only, and takes
    the previous serving copy's from the record written when that copy was published -- unless
    the file is no longer the one recorded (then it reads the file)."""
    import duckdb

    from retailpulse import publish

    wh = get_warehouse(settings)
    _gold(wh, 1)
    with wh.connect() as con:
        wh.replace_rows("gold", "customer_scores", _scores(["2025-01-01", "2025-01-02"]), where=None, con=con)
    publish_gold(settings)
    serving = settings.serving_path / "retailpulse_serving.duckdb"
    record = json.loads((settings.serving_path / publish.SERVING_FINGERPRINTS).read_text())
    con = duckdb.connect(str(serving), read_only=True)
    try:
        assert record["tables"] == {"customer_scores": publish._date_fingerprints(con, "gold.customer_scores",
                                                                                  "as_of_date")}
    finally:
        con.close()
    st = os.stat(serving)
    assert record["serving_file"] == [st.st_ino, st.st_size, st.st_mtime_ns]

    read: list[str] = []
    real = publish._date_fingerprints

    def recording(con, relation, column):
        read.append(relation)
        return real(con, relation, column)

    monkeypatch.setattr(publish, "_date_fingerprints", recording)
    with wh.connect() as con:
        wh.replace_rows("gold", "customer_scores", _scores(["2025-01-02"], shift=0.5),
                        where={"as_of_date": dt.date(2025, 1, 2)}, con=con)
    result = publish_gold(settings)
    assert read == ['gold."customer_scores"']  # gold's history only: the previous copy's is on record
    assert result["history"]["customer_scores"]["serving_dates_rewritten"] == ["2025-01-02"]
    _serving_equals_gold(settings, ["customer_scores"])

    # a record that no longer describes the serving file (here: another file's stamp) is not used:
    # the copy's fingerprints are read from the file, and the result is still gold
    record = json.loads((settings.serving_path / publish.SERVING_FINGERPRINTS).read_text())
    record["serving_file"][2] -= 1
    record["tables"]["customer_scores"]["2025-01-01"] = ["1", "1"]  # would wrongly rewrite 01-01
    (settings.serving_path / publish.SERVING_FINGERPRINTS).write_text(json.dumps(record))
    with wh.connect() as con:
        wh.replace_rows("gold", "customer_scores", _scores(["2025-01-03"]),
                        where={"as_of_date": dt.date(2025, 1, 3)}, con=con)
    read.clear()
    result = publish_gold(settings)
    assert read == ['__rp_serving.gold."customer_scores"', 'gold."customer_scores"']
    assert result["history"]["customer_scores"]["serving_dates_rewritten"] == ["2025-01-03"]
    _serving_equals_gold(settings, ["customer_scores"])


def test_the_serving_file_does_not_grow_from_publish_to_publish(settings):
    """Each publish starts from a copy of the previous serving file and rebuilds the tables that
    are not kept by date: their old blocks are reused, the file does not grow by a copy a day."""
    wh = get_warehouse(settings)
    sizes = []
    for day in range(6):
        _gold(wh, day, rows=60_000)
        with wh.connect() as con:
            wh.replace_rows("gold", "customer_scores", _scores(["2025-01-01"], customers=20_000, shift=day),
                            where=None, con=con)
        publish_gold(settings)
        sizes.append(os.path.getsize(settings.serving_path / "retailpulse_serving.duckdb"))
    publish_gold(settings, keep_previous=False)
    fresh = os.path.getsize(settings.serving_path / "retailpulse_serving.duckdb")
    assert max(sizes[2:]) <= 1.6 * fresh, (sizes, fresh)
    _serving_equals_gold(settings, ["customer_scores", "fct_orders"])


def test_large_tables_are_updated_row_by_row_and_equal_gold(settings, monkeypatch):
    """A large table of the previous serving copy is brought up to gold by replacing only the rows
    that differ (updated, deleted, added, duplicated rows: compared as a multiset); when too much
    changed, or the columns changed, or for erasure, the table is copied again. Either way the
    published table equals gold."""
    import duckdb

    from retailpulse import publish

    monkeypatch.setattr(publish, "DELTA_MIN_ROWS", 1000)
    wh = get_warehouse(settings)
    _gold(wh, 1, rows=5000)
    assert publish_gold(settings)["row_deltas"] == {}  # no previous copy: everything copied
    with wh.connect() as con:
        con.execute("update gold.fct_orders set net_revenue = net_revenue + 0.5 where order_id < 'ord_000010'")
        con.execute("delete from gold.fct_orders where order_id between 'ord_004000' and 'ord_004004'")
        con.execute("insert into gold.fct_orders select 'new_' || i, 'c1', i, 1 from range(7) as r(i)")
        con.execute("insert into gold.fct_orders select * from gold.fct_orders where order_id = 'ord_000500'")
    result = publish_gold(settings)
    # 10 updated + 5 deleted + the duplicated row's single copy out; 10 updated + 7 new + its two copies in
    assert result["row_deltas"] == {"fct_orders": {"serving_rows_deleted": 16, "serving_rows_inserted": 19}}
    assert result["tables"]["fct_orders"] == 5003
    _serving_equals_gold(settings, ["fct_orders", "dim_customers"])

    # more than a quarter of the rows changed: copied again
    with wh.connect() as con:
        con.execute("update gold.fct_orders set generation = 2 where order_id < 'ord_002000'")
    assert publish_gold(settings)["row_deltas"] == {}
    _serving_equals_gold(settings, ["fct_orders"])
    # a column added to gold: copied again, with the column
    with wh.connect() as con:
        con.execute("alter table gold.fct_orders add column channel varchar default 'email'")
    assert publish_gold(settings)["row_deltas"] == {}
    _serving_equals_gold(settings, ["fct_orders"])
    # erasure: nothing of the previous copy is reused
    with wh.connect() as con:
        con.execute("delete from gold.fct_orders where order_id = 'ord_000001'")
    assert publish_gold(settings, keep_previous=False)["row_deltas"] == {}
    _serving_equals_gold(settings, ["fct_orders"])

    # the Parquet file is whole, and the warehouse's insertion-order setting (changed for the
    # publish, shared by every connection of this process) is put back
    con = duckdb.connect(str(settings.duckdb_path))
    try:
        with wh.connect() as wcon:
            wcon.execute("update gold.fct_orders set net_revenue = 1 where order_id = 'ord_000002'")
        assert publish_gold(settings)["row_deltas"]["fct_orders"] == {"serving_rows_deleted": 1,
                                                                      "serving_rows_inserted": 1}
        assert con.execute("select current_setting('preserve_insertion_order')").fetchall()[0][0] is True
        assert con.execute(
            f"select count(*), sum(net_revenue) from '{settings.serving_path / 'parquet' / 'fct_orders.parquet'}'"
        ).fetchall()[0] == con.execute("select count(*), sum(net_revenue) from gold.fct_orders").fetchall()[0]
    finally:
        con.close()
    _serving_equals_gold(settings, ["fct_orders", "dim_customers"])


def test_rows_are_compared_whole_even_with_a_column_named_like_the_row_alias(settings, monkeypatch):
    """A gold column named T (lifetimes' customer age; SQL names ignore case) must not stand in
    for the row in the row hashes: a change in another column of such a table is published."""
    from retailpulse import publish

    monkeypatch.setattr(publish, "DELTA_MIN_ROWS", 1000)
    wh = get_warehouse(settings)
    _gold(wh, 1)
    with wh.connect() as con:
        con.execute('create table gold.customer_age as select \'c\' || i as customer_id, 7.0 as "T", '
                    '1.0 * i as "__RP_ROW", i * 1.5 as monetary_value from range(3000) r(i)')
    publish_gold(settings)
    with wh.connect() as con:
        con.execute("update gold.customer_age set monetary_value = -1 where customer_id in ('c1', 'c2', 'c3')")
    result = publish_gold(settings)
    assert result["row_deltas"]["customer_age"] == {"serving_rows_deleted": 3, "serving_rows_inserted": 3}
    _serving_equals_gold(settings, ["customer_age"])


def test_row_by_row_updates_do_not_grow_the_serving_file(settings):
    """Daily small changes to a large table, published row by row for 20 days: the copy stays
    within twice the size of a freshly built one (a copy with more free than used space is
    rebuilt, see _open_previous_copy)."""
    wh = get_warehouse(settings)
    _gold(wh, 0, rows=60_000)
    sizes = []
    for day in range(1, 21):
        with wh.connect() as con:  # a day: 2% of the rows change, 1% are added
            con.execute(f"update gold.fct_orders set net_revenue = net_revenue + {day} "
                        f"where hash(order_id, {day}) % 50 = 0")
            con.execute(f"insert into gold.fct_orders select 'd{day}_' || i, 'c1', i, {day} from range(600) as r(i)")
        result = publish_gold(settings)
        if day > 1:
            assert set(result["row_deltas"]) == {"fct_orders"}
        sizes.append(os.path.getsize(settings.serving_path / "retailpulse_serving.duckdb"))
    _serving_equals_gold(settings, ["fct_orders"])
    publish_gold(settings, keep_previous=False)
    fresh = os.path.getsize(settings.serving_path / "retailpulse_serving.duckdb")
    # bounded: it grows by the blocks of a day's changes until half of it is free, then is rebuilt
    assert max(sizes) <= 2 * fresh, (sizes, fresh)
    assert any(after < before for before, after in zip(sizes, sizes[1:])), sizes


_READER = r"""
import json, os, sys, time
import duckdb

path, stop_at = sys.argv[1], float(sys.argv[2])
reads, errors, generations = 0, [], set()
while time.time() < stop_at:
    if not os.path.exists(path):
        continue
    try:
        con = duckdb.connect(path, read_only=True)
        try:
            rows = con.execute(
                "select (select min(generation) from gold.fct_orders), (select max(generation) from gold.fct_orders), "
                "(select count(*) from gold.fct_orders), (select min(generation) from gold.dim_customers), "
                "(select max(generation) from gold.dim_customers)").fetchone()
        finally:
            con.close()
        lo, hi, n, clo, chi = rows
        if not (lo == hi == clo == chi) or n != 2000:
            errors.append(f"mixed or partial copy: {rows}")
        generations.add(lo)
        reads += 1
    except Exception as exc:  # every failure to read is what the test looks for
        errors.append(f"{type(exc).__name__}: {exc}")
print(json.dumps([reads, errors[:5], len(errors), sorted(generations)]))
"""


def test_readers_never_see_a_half_written_serving_file(settings):
    # The reader is a separate interpreter (not multiprocessing): spawn re-imports the parent's
    # __main__, which other tests in the same session (Streamlit's AppTest) replace with a script.
    wh = get_warehouse(settings)
    _gold(wh, 0)
    publish_gold(settings)
    path = str(settings.serving_path / "retailpulse_serving.duckdb")
    proc = subprocess.Popen([sys.executable, "-c", _READER, path, str(time.time() + 12)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        published = 0
        deadline = time.time() + 9
        while time.time() < deadline or published < 3:
            published += 1
            _gold(wh, published)
            publish_gold(settings)
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    reads, errors, n_errors, generations = json.loads(stdout.strip().splitlines()[-1])
    assert n_errors == 0, errors
    assert reads > 20
    assert len(generations) >= 2, "the reader saw successive publishes"


# --- Postgres: the BI role -------------------------------------------------------------------------
def _drop_role(dsn: str, role: str) -> None:
    import psycopg2

    con = psycopg2.connect(dsn)
    con.autocommit = True
    cur = con.cursor()
    cur.execute("select 1 from pg_roles where rolname = %s", [role])
    if cur.fetchone():
        cur.execute(f'drop owned by "{role}"')
        cur.execute(f'drop role "{role}"')
    con.close()


def _as_role(dsn: str, role: str, sql: str):
    import psycopg2

    con = psycopg2.connect(dsn)
    try:
        cur = con.cursor()
        cur.execute(f'set role "{role}"')
        cur.execute(sql)
        return cur.fetchall()
    finally:
        con.rollback()
        con.close()


def test_default_bi_role_name(settings):
    assert settings.bi_role == "retailpulse_bi"
    assert settings.bi_password is None


def test_postgres_target_bi_role_selects_gold_only(pg_settings):
    import psycopg2

    role = f"rp_bi_{uuid.uuid4().hex[:8]}"
    settings = pg_settings.model_copy(update={"bi_role": role})
    dsn = settings.postgres_dsn.get_secret_value()
    wh = get_warehouse(settings)
    prefix = settings.postgres_schema_prefix
    try:
        _gold(wh, 1, rows=50)
        wh.replace_rows("ops", "load_audit", pd.DataFrame({"source": ["stripe"], "loaded": [1]}), where=None)
        wh.replace_rows("silver", "int_customers", pd.DataFrame({"email": ["jane@example.com"]}), where=None)
        result = publish_gold(settings)
        assert result["bi_role"] == {"role": role, "mode": "nologin", "schema": f"{prefix}gold"}
        assert Path(result["serving_file"]).exists() and result["tables"]["fct_orders"] == 50
        assert _as_role(dsn, role, f'select count(*) from "{prefix}gold".fct_orders') == [(50,)]
        for schema, table in (("bronze", "stripe__customers"), ("silver", "int_customers"), ("ops", "load_audit")):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                _as_role(dsn, role, f'select * from "{prefix}{schema}"."{table}"')
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            _as_role(dsn, role, f'delete from "{prefix}gold".fct_orders')
        # a gold table created later (as dbt would, same owner) is readable through default privileges
        wh.replace_rows("gold", "kpi_daily", pd.DataFrame({"orders": [3]}), where=None)
        assert _as_role(dsn, role, f'select orders from "{prefix}gold".kpi_daily') == [(3,)]
        # NOLOGIN without a password; LOGIN once RETAILPULSE_BI_PASSWORD is set
        con = psycopg2.connect(dsn)
        cur = con.cursor()
        cur.execute("select rolcanlogin, rolsuper from pg_roles where rolname = %s", [role])
        assert cur.fetchone() == (False, False)
        con.close()
        from pydantic import SecretStr

        with_password = settings.model_copy(update={"bi_password": SecretStr("bi-" + uuid.uuid4().hex)})
        assert publish_gold(with_password)["bi_role"]["mode"] == "login"
        con = psycopg2.connect(dsn)
        cur = con.cursor()
        cur.execute("select rolcanlogin from pg_roles where rolname = %s", [role])
        assert cur.fetchone() == (True,)
        con.close()
    finally:
        _drop_role(dsn, role)


def test_duckdb_target_copies_gold_into_the_bi_postgres(pg_settings, settings_factory):
    import psycopg2

    role = f"rp_bi_{uuid.uuid4().hex[:8]}"
    dsn = pg_settings.postgres_dsn.get_secret_value()
    prefix = pg_settings.postgres_schema_prefix  # pg_settings drops these schemas afterwards
    settings = settings_factory(publish_postgres_dsn=dsn, postgres_schema_prefix=prefix, bi_role=role)
    wh = get_warehouse(settings)
    try:
        _gold(wh, 1, rows=30)
        result = publish_gold(settings)
        assert result["postgres"]["tables"] == {"dim_customers": 97, "fct_orders": 30}
        assert _as_role(dsn, role, f'select count(*), max(generation) from "{prefix}gold".fct_orders') == [(30, 1)]
        # re-publishing replaces rows (same shape: truncate + insert) and drops tables gone from gold
        _gold(wh, 2, rows=5)
        wh.execute("drop table gold.dim_customers")
        result = publish_gold(settings)
        assert result["postgres"]["dropped"] == ["dim_customers"]
        assert _as_role(dsn, role, f'select count(*), max(generation) from "{prefix}gold".fct_orders') == [(5, 2)]
        con = psycopg2.connect(dsn)
        cur = con.cursor()
        cur.execute("select count(*) from information_schema.tables where table_schema = %s", [f"{prefix}gold"])
        assert cur.fetchone() == (1,)
        con.close()
    finally:
        _drop_role(dsn, role)
