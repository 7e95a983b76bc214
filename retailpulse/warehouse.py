"""The one way to reach the warehouse.

Everything that reads or writes the warehouse (bronze loader, dbt profile, ML write-back,
publish, CLI queries) goes through :func:`get_warehouse`. A new target (Snowflake, BigQuery)
is one more :class:`Warehouse` implementation, not edits across the code base.

DuckDB allows one writing process at a time: callers open a connection for the shortest
useful span (``with wh.connect() as con:``) and Airflow routes every writing task through a
one-slot pool.
"""

from __future__ import annotations

import abc
import contextlib
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from retailpulse.settings import Settings

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SCHEMAS = ("bronze", "silver", "gold", "ops")


class WarehouseError(RuntimeError):
    """A warehouse problem the user can act on (the message says what to do)."""


def ident(name: str) -> str:
    """Validate an identifier (schema, table, column) and quote it."""
    if not _IDENT.match(name):
        raise WarehouseError(f"invalid identifier {name!r}: use letters, digits and underscores")
    return f'"{name}"'


class Warehouse(abc.ABC):
    """Common interface of every warehouse target."""

    target: str

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # --- connections -------------------------------------------------------------------
    @abc.abstractmethod
    def connect(self, read_only: bool = False) -> contextlib.AbstractContextManager[Any]:
        """A DB-API-like connection; commits on success, rolls back on error."""

    @contextlib.contextmanager
    def kept_open(self) -> Iterator[None]:
        """Keep the warehouse open for the block, so that the many short :meth:`connect` calls of a
        stage do not each open (and, after a write, checkpoint) the database. A no-op here; see
        :meth:`DuckDBWarehouse.kept_open`. Do not run dbt inside the block."""
        yield

    @abc.abstractmethod
    def dbt_profile(self) -> dict[str, Any]:
        """The dbt ``outputs`` entry for this target."""

    @abc.abstractmethod
    def _column_types(self, con: Any, schema: str, table: str) -> dict[str, str]:
        """Existing columns of a table (empty when it does not exist)."""

    @abc.abstractmethod
    def _insert_df(self, con: Any, schema: str, table: str, df: pd.DataFrame) -> None:
        """Append a frame whose columns all exist in the table."""

    @abc.abstractmethod
    def _create_from_df(self, con: Any, schema: str, table: str, df: pd.DataFrame) -> None:
        """Create a table shaped like the frame (no rows)."""

    @abc.abstractmethod
    def _sql_type(self, series: pd.Series) -> str:
        """The column type to add for a new frame column (schema drift)."""

    # --- generic operations --------------------------------------------------------------
    def schema_name(self, schema: str) -> str:
        return schema

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        with self.connect() as con:
            self._exec(con, sql, params)

    def query(self, sql: str, params: Sequence[Any] | None = None, read_only: bool = False) -> list[tuple]:
        with self.connect(read_only=read_only) as con:
            cur = self._exec(con, sql, params)
            return [tuple(r) for r in cur.fetchall()]

    def query_df(self, sql: str, params: Sequence[Any] | None = None, read_only: bool = False) -> pd.DataFrame:
        with self.connect(read_only=read_only) as con:
            cur = self._exec(con, sql, params)
            cols = [d[0] for d in cur.description] if cur.description else []
            return pd.DataFrame([tuple(r) for r in cur.fetchall()], columns=cols)

    def query_frame(self, sql: str, params: Sequence[Any] | None = None, read_only: bool = False) -> pd.DataFrame:
        """A query's rows as a frame, faster than :meth:`query_df` for large results.

        :meth:`query_df` infers each column's dtype from the Python values of the rows; here it
        follows the column's SQL type (DuckDB: the result goes through Arrow, no Python object per
        value for numbers, text and timestamps).  The two agree, NULLs included, for text,
        integer, double, boolean, decimal, date and timestamp columns (a zoned timestamp has the
        same zone name, possibly another tzinfo class); they differ where inference differs:
        HUGEINT (what DuckDB's ``sum`` of integers returns) comes as ``Decimal`` objects, an
        all-NULL column keeps its type (NaN rather than None), intervals and nested types come
        as Arrow converts them.  Callers coerce the columns they use.  Targets without a fast
        path return :meth:`query_df`.
        """
        return self.query_df(sql, params, read_only=read_only)

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        rows = self.query(sql, params)
        return rows[0][0] if rows else None

    def _exec(self, con: Any, sql: str, params: Sequence[Any] | None = None) -> Any:
        cur = con.cursor()
        cur.execute(sql, list(params) if params is not None else None)
        return cur

    def ensure_schemas(self, schemas: Sequence[str] = SCHEMAS) -> None:
        with self.connect() as con:
            for s in schemas:
                self._exec(con, f"create schema if not exists {ident(self.schema_name(s))}")

    def table_exists(self, schema: str, table: str) -> bool:
        # not read_only: DuckDB refuses a read-only connection in a process that already holds
        # the file read-write (dag.test runs every task in one process)
        with self.connect() as con:
            return bool(self._column_types(con, self.schema_name(schema), table))

    def list_tables(self, schema: str) -> list[str]:
        rows = self.query(
            "select table_name from information_schema.tables where table_schema = ? order by 1"
            if self.target == "duckdb"
            else "select table_name from information_schema.tables where table_schema = %s order by 1",
            [self.schema_name(schema)],
        )
        return [r[0] for r in rows]

    def row_count(self, schema: str, table: str) -> int:
        return int(self.scalar(f"select count(*) from {ident(self.schema_name(schema))}.{ident(table)}"))

    def replace_rows(
        self,
        schema: str,
        table: str,
        df: pd.DataFrame,
        where: Mapping[str, Any] | None = None,
        con: Any | None = None,
    ) -> int:
        """Atomically delete the rows matching ``where`` (all rows when None) and insert ``df``.

        New columns in ``df`` are added to the table (schema drift), missing ones are NULL.
        A list value in ``where`` matches any of its values. Returns the number of rows
        inserted. With ``con`` the caller owns the transaction.
        """
        if con is None:
            with self.connect() as own:
                return self.replace_rows(schema, table, df, where, con=own)
        s = self.schema_name(schema)
        self._exec(con, f"create schema if not exists {ident(s)}")
        existing = self._column_types(con, s, table)
        if not existing:
            self._create_from_df(con, s, table, df)
        else:
            for col in df.columns:
                if col not in existing:
                    self._exec(con, f"alter table {ident(s)}.{ident(table)} add column {ident(col)} {self._sql_type(df[col])}")
            if where is None:
                self._exec(con, f"delete from {ident(s)}.{ident(table)}")
            elif where:
                parts, params = [], []
                for k, v in where.items():
                    if isinstance(v, (list, tuple, set)):
                        values = list(v)
                        parts.append(f"{ident(k)} in ({', '.join([self._param] * len(values))})" if values else "false")
                        params.extend(values)
                    else:
                        parts.append(f"{ident(k)} = {self._param}")
                        params.append(v)
                self._exec(con, f"delete from {ident(s)}.{ident(table)} where {' and '.join(parts)}", params)
        if len(df):
            self._insert_df(con, s, table, df)
        return len(df)

    _param = "?"

    def append_rows(self, schema: str, table: str, df: pd.DataFrame, con: Any | None = None) -> int:
        return self.replace_rows(schema, table, df, where={}, con=con)


class DuckDBWarehouse(Warehouse):
    target = "duckdb"

    @property
    def path(self) -> Path:
        return self.settings.duckdb_path

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[Any]:
        if read_only and not self.path.exists():
            raise WarehouseError(f"no warehouse at {self.path}: run `make run` (or `retailpulse init`) first")
        con = self._open(read_only)
        try:
            if not read_only:
                con.execute("begin transaction")
            yield con
            if not read_only:
                con.execute("commit")
        except BaseException:
            if not read_only:
                with contextlib.suppress(Exception):
                    con.execute("rollback")
            raise
        finally:
            con.close()

    @contextlib.contextmanager
    def kept_open(self) -> Iterator[None]:
        """Hold one connection for the block. DuckDB shares one database instance between the
        connections a process has open to a file, so every :meth:`connect` inside the block
        attaches to the open instance (about 1 ms) instead of opening the file (30-50 ms at the
        medium world) and checkpointing it on close after a write; the database is checkpointed
        once, when the block ends. Not around dbt: dbt-duckdb opens the file with its own
        configuration, which DuckDB refuses while an instance with another one is open."""
        holder = self._open(read_only=False)
        try:
            yield
        finally:
            holder.close()

    def _open(self, read_only: bool) -> Any:
        """A connection to the database file with this warehouse's limits applied."""
        import duckdb

        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:  # another process holds the write lock
            raise WarehouseError(
                f"cannot open {self.path}: {str(exc).splitlines()[0]} "
                "(another process is writing; wait for it or query the serving copy)"
            ) from None
        try:
            self.apply_limits(con)
        except BaseException:
            con.close()
            raise
        return con

    def _exec(self, con: Any, sql: str, params: Sequence[Any] | None = None) -> Any:
        return con.execute(sql, list(params) if params is not None else None)

    def query_frame(self, sql: str, params: Sequence[Any] | None = None, read_only: bool = False) -> pd.DataFrame:
        import pyarrow as pa

        with self.connect(read_only=read_only) as con:
            rel = con.sql(sql, params=list(params) if params is not None else None)
            if rel is None:  # a statement without a result
                return pd.DataFrame()
            table = rel.to_arrow_table()
        # integers as int64 (float64 with NULLs), as query_df infers them from Python ints
        wide = pa.schema([
            f.with_type(pa.int64()) if pa.types.is_integer(f.type) and f.type != pa.uint64() else f
            for f in table.schema
        ])
        return table.cast(wide).to_pandas()

    def apply_limits(self, con: Any) -> None:
        """DuckDB's memory limit for this database (``RETAILPULSE_DUCKDB_MEMORY_LIMIT``). A SET,
        not connect-time config: every connection to one file in a process shares one instance,
        and dbt's open connection would refuse a second connect with another config."""
        con.execute(f"set memory_limit = '{self.settings.duckdb_memory_limit_setting}'")

    def dbt_profile(self) -> dict[str, Any]:
        return {"type": "duckdb", "path": str(self.path), "threads": self.settings.dbt_threads,
                "settings": {"memory_limit": self.settings.duckdb_memory_limit_setting}}

    def _column_types(self, con: Any, schema: str, table: str) -> dict[str, str]:
        rows = con.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = ? and table_name = ? order by ordinal_position",
            [schema, table],
        ).fetchall()
        return {r[0]: r[1] for r in rows}

    def _create_from_df(self, con: Any, schema: str, table: str, df: pd.DataFrame) -> None:
        rp_create_frame = df  # noqa: F841 - read by the SQL below (replacement scan, see _insert_df)
        con.execute(f"create table {ident(schema)}.{ident(table)} as select * from rp_create_frame limit 0")

    def _insert_df(self, con: Any, schema: str, table: str, df: pd.DataFrame) -> None:
        # DuckDB's replacement scan reads the local variable by name. Not con.register: a
        # registered frame stays alive until the transaction commits, even after unregister, so
        # a long load (one transaction over many groups) held every group's frame (GA4 at
        # medium: +280 MB per group, 8 GB peak; bench/results/ga4_load_memory_medium*.json).
        rp_insert_frame = df  # noqa: F841 - read by the SQL below
        con.execute(f"insert into {ident(schema)}.{ident(table)} by name select * from rp_insert_frame")

    def _sql_type(self, series: pd.Series) -> str:
        if str(series.dtype).startswith("date32"):
            return "date"
        if pd.api.types.is_bool_dtype(series):
            return "boolean"
        if pd.api.types.is_integer_dtype(series):
            return "bigint"
        if pd.api.types.is_float_dtype(series):
            return "double"
        if pd.api.types.is_datetime64_any_dtype(series):
            return "timestamptz" if getattr(series.dt, "tz", None) is not None else "timestamp"
        return "varchar"


class PostgresWarehouse(Warehouse):
    target = "postgres"
    _param = "%s"

    def schema_name(self, schema: str) -> str:
        return f"{self.settings.postgres_schema_prefix}{schema}"

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[Any]:
        import psycopg2

        try:
            con = psycopg2.connect(self.settings.postgres_dsn.get_secret_value(), connect_timeout=10)
        except psycopg2.OperationalError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "connection failed"
            raise WarehouseError(
                f"cannot reach Postgres ({first}); check RETAILPULSE_POSTGRES_DSN"
            ) from None
        try:
            if read_only:
                con.set_session(readonly=True)
            yield con
            con.commit()
        except BaseException:
            con.rollback()
            raise
        finally:
            con.close()

    def _exec(self, con: Any, sql: str, params: Sequence[Any] | None = None) -> Any:
        cur = con.cursor()
        cur.execute(sql.replace("?", "%s") if params else sql, list(params) if params else None)
        return cur

    def dbt_profile(self) -> dict[str, Any]:
        from urllib.parse import unquote, urlparse

        url = urlparse(self.settings.postgres_dsn.get_secret_value())
        return {
            "type": "postgres",
            "host": url.hostname or "127.0.0.1",
            "port": url.port or 5432,
            "user": unquote(url.username or "postgres"),
            "password": unquote(url.password or ""),
            "dbname": (url.path or "/postgres").lstrip("/") or "postgres",
            "schema": self.schema_name("public"),
            "threads": self.settings.dbt_threads,
        }

    def _column_types(self, con: Any, schema: str, table: str) -> dict[str, str]:
        cur = con.cursor()
        cur.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = %s and table_name = %s order by ordinal_position",
            [schema, table],
        )
        return {r[0]: r[1] for r in cur.fetchall()}

    def _sql_type(self, series: pd.Series) -> str:
        if str(series.dtype).startswith("date32"):
            return "date"
        if pd.api.types.is_bool_dtype(series):
            return "boolean"
        if pd.api.types.is_integer_dtype(series):
            return "bigint"
        if pd.api.types.is_float_dtype(series):
            return "double precision"
        if pd.api.types.is_datetime64_any_dtype(series):
            return "timestamptz" if getattr(series.dt, "tz", None) is not None else "timestamp"
        return "text"

    def _create_from_df(self, con: Any, schema: str, table: str, df: pd.DataFrame) -> None:
        cols = ", ".join(f"{ident(c)} {self._sql_type(df[c])}" for c in df.columns)
        self._exec(con, f"create table {ident(schema)}.{ident(table)} ({cols})")

    def _insert_df(self, con: Any, schema: str, table: str, df: pd.DataFrame) -> None:
        buf = io.StringIO()
        df.to_csv(buf, index=False, header=False, na_rep="\\N")
        buf.seek(0)
        cols = ", ".join(ident(c) for c in df.columns)
        cur = con.cursor()
        cur.copy_expert(
            f"copy {ident(schema)}.{ident(table)} ({cols}) from stdin with (format csv, null '\\N')", buf
        )


def get_warehouse(settings: Settings) -> Warehouse:
    """The warehouse for the configured target (RETAILPULSE_TARGET)."""
    if settings.target == "duckdb":
        return DuckDBWarehouse(settings)
    if settings.target == "postgres":
        return PostgresWarehouse(settings)
    raise WarehouseError(f"unknown target {settings.target!r}: use duckdb or postgres")
