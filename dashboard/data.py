"""Cached, read-only queries against the serving copy.

Every query result is cached with ``st.cache_data`` keyed on the SQL, its parameters and the
serving file's identity (inode, mtime): a new publication invalidates the cache by itself, and
nothing ever opens the warehouse file a run is writing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from retailpulse.serving import published_at, serving_file, serving_version
from retailpulse.settings import Settings, load_settings

ALL_CHANNELS = "All channels"


@st.cache_resource(show_spinner=False)
def settings() -> Settings:
    return load_settings()


def serving_path() -> Path:
    return serving_file(settings())


@st.cache_data(show_spinner=False, max_entries=512)
def _query(path: str, version: tuple[int, int], sql: str, params: tuple[Any, ...]) -> pd.DataFrame:
    import duckdb

    con = duckdb.connect(path, read_only=True)
    try:
        return con.execute(sql, list(params)).df()
    finally:
        con.close()


def query(sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
    """Run read-only SQL on the serving copy (cached until the copy is re-published)."""
    path = serving_path()
    version = serving_version(path)
    if version is None:
        raise FileNotFoundError(str(path))
    return _query(str(path), version, sql, tuple(params))


@st.cache_data(show_spinner=False, max_entries=16)
def _tables(path: str, version: tuple[int, int]) -> dict[str, list[str]]:
    import duckdb

    con = duckdb.connect(path, read_only=True)
    try:
        rows = con.execute("select table_name, column_name from information_schema.columns "
                           "where table_schema = 'gold' order by table_name, ordinal_position").fetchall()
    finally:
        con.close()
    out: dict[str, list[str]] = {}
    for t, c in rows:
        out.setdefault(t, []).append(c)
    return out


def tables() -> dict[str, list[str]]:
    """gold table -> columns; empty when there is no serving copy."""
    path = serving_path()
    version = serving_version(path)
    return {} if version is None else _tables(str(path), version)


@st.cache_data(show_spinner=False, max_entries=16)
def _counts(path: str, version: tuple[int, int]) -> dict[str, int]:
    import duckdb

    con = duckdb.connect(path, read_only=True)
    try:
        names = [r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'gold'").fetchall()]
        return {n: int(con.execute(f'select count(*) from gold."{n}"').fetchall()[0][0]) for n in names}
    finally:
        con.close()


def row_counts() -> dict[str, int]:
    path = serving_path()
    version = serving_version(path)
    return {} if version is None else _counts(str(path), version)


def has(*names: str) -> bool:
    """Every table exists in the serving copy and has rows (an empty table is not built yet)."""
    counts = row_counts()
    return all(counts.get(n, 0) > 0 for n in names)


def columns(table: str) -> list[str]:
    return tables().get(table, [])


def published() -> dt.datetime | None:
    return published_at(serving_path())


@dataclass(frozen=True)
class Filters:
    start: dt.date
    end: dt.date
    channel: str = ALL_CHANNELS

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def previous(self) -> tuple[dt.date, dt.date]:
        """The period of the same length just before."""
        return self.start - dt.timedelta(days=self.days), self.start - dt.timedelta(days=1)

    @property
    def channel_selected(self) -> str | None:
        return None if self.channel == ALL_CHANNELS else self.channel


def data_bounds() -> tuple[dt.date, dt.date] | None:
    """First and last day with business data (kpi_daily, else fct_orders / funnel / channels)."""
    for table, col in (("kpi_daily", "date_day"), ("fct_orders", "order_date"),
                       ("channel_performance_daily", "date_day"), ("funnel_daily", "date_day")):
        if has(table):
            df = query(f"select min({col})::date as lo, max({col})::date as hi from gold.{table}")
            if len(df) and pd.notna(df.loc[0, "lo"]):
                return pd.Timestamp(df.loc[0, "lo"]).date(), pd.Timestamp(df.loc[0, "hi"]).date()
    return None


def channel_options() -> list[str]:
    parts = []
    if has("channel_performance_daily"):
        parts.append("select distinct channel_group as c from gold.channel_performance_daily")
    if has("funnel_daily"):
        parts.append("select distinct channel_group as c from gold.funnel_daily")
    if has("dim_customers") and "acquisition_channel" in columns("dim_customers"):
        parts.append("select distinct acquisition_channel as c from gold.dim_customers")
    if not parts:
        return [ALL_CHANNELS]
    df = query(" union ".join(parts) + " order by 1")
    return [ALL_CHANNELS] + [c for c in df.iloc[:, 0].tolist() if isinstance(c, str) and c]
