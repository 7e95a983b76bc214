"""Read-only access to the published serving copy (``<serving>/retailpulse_serving.duckdb``).

The dashboard, the scores API and the weekly report read gold from here, never from the
warehouse file a run is writing. ``stage_publish`` swaps a new copy in with ``os.replace``:
a connection opened before the swap keeps reading the old file (same inode), so readers
reopen when the file's identity (:func:`serving_version`) changes.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from retailpulse.settings import Settings
from retailpulse.warehouse import WarehouseError

SERVING_FILE = "retailpulse_serving.duckdb"
GOLD = "gold"


class ServingUnavailable(WarehouseError):
    """There is no serving copy yet (a green pipeline run publishes it)."""


def serving_file(settings: Settings) -> Path:
    return settings.serving_path / SERVING_FILE


def serving_version(path: Path) -> tuple[int, int] | None:
    """(inode, mtime_ns) of the serving file, or None when it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def published_at(path: Path) -> dt.datetime | None:
    """When the serving copy was published (the file's mtime, UTC)."""
    try:
        return dt.datetime.fromtimestamp(os.stat(path).st_mtime, tz=dt.timezone.utc)
    except FileNotFoundError:
        return None


def connect(path: Path):
    """A read-only DuckDB connection to the serving copy."""
    import duckdb

    if not path.exists():
        raise ServingUnavailable(f"no serving copy at {path}: run `make run` (a green pipeline run publishes it)")
    return duckdb.connect(str(path), read_only=True)


def plain(value: Any) -> Any:
    """Python values a JSON encoder and pydantic take (Decimal -> float, NaN -> None, naive
    timestamps -> UTC)."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dt.datetime) and value.tzinfo is None:  # gold timestamps are UTC
        return value.replace(tzinfo=dt.timezone.utc)
    return value


class ServingReader:
    """A cached read-only connection that follows re-publications; one cursor per query
    (DuckDB connections are not shared between threads, cursors are cheap)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._con: Any = None
        self._version: tuple[int, int] | None = None
        self._tables: dict[str, list[str]] = {}

    def _connection(self):
        version = serving_version(self.path)
        with self._lock:
            if version is None:
                self._close()
                raise ServingUnavailable(
                    f"no serving copy at {self.path}: run `make run` (a green pipeline run publishes it)")
            if self._con is None or version != self._version:
                self._close()
                self._con = connect(self.path)
                self._version = version
                rows = self._con.execute(
                    "select table_name, column_name from information_schema.columns "
                    "where table_schema = ? order by table_name, ordinal_position", [GOLD]).fetchall()
                tables: dict[str, list[str]] = {}
                for t, c in rows:
                    tables.setdefault(t, []).append(c)
                self._tables = tables
            return self._con

    def _close(self) -> None:
        if self._con is not None:
            try:
                self._con.close()
            except Exception:  # noqa: BLE001
                pass
        self._con, self._version, self._tables = None, None, {}

    def close(self) -> None:
        with self._lock:
            self._close()

    @property
    def version(self) -> tuple[int, int] | None:
        return serving_version(self.path)

    def tables(self) -> dict[str, list[str]]:
        """gold table -> its columns."""
        self._connection()
        return dict(self._tables)

    def has_table(self, table: str) -> bool:
        return table in self.tables()

    def columns(self, table: str) -> list[str]:
        return self.tables().get(table, [])

    def rows(self, sql: str, params: Sequence[Any] | None = None) -> tuple[list[str], list[tuple]]:
        cur = self._connection().cursor()
        try:
            res = cur.execute(sql, list(params or []))
            cols = [d[0] for d in res.description or []]
            return cols, [tuple(plain(v) for v in r) for r in res.fetchall()]
        finally:
            cur.close()

    def records(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        cols, rows = self.rows(sql, params)
        return [dict(zip(cols, r)) for r in rows]

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        _, rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    def df(self, sql: str, params: Sequence[Any] | None = None):
        cur = self._connection().cursor()
        try:
            return cur.execute(sql, list(params or [])).df()
        finally:
            cur.close()

    def counts(self) -> dict[str, int]:
        return {t: int(self.scalar(f'select count(*) from {GOLD}."{t}"')) for t in sorted(self.tables())}
