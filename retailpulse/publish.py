"""Publish gold for analysts and BI tools, after a green run.

* **Serving copy** (every target): gold is copied into a new DuckDB file beside the serving
  file, checkpointed, made read-only (mode 0444) and renamed over
  ``<serving>/retailpulse_serving.duckdb``. A rename is atomic, so a reader opens either the old
  complete file or the new complete one, never a half-written file, and a reader that has the
  old file open keeps reading it.
* **Parquet** (every target): one file per gold table in a new directory
  ``<serving>/parquet-<stamp>/``; ``<serving>/parquet`` is a symbolic link swapped atomically to
  the new directory (where symbolic links are not available, the directory is renamed into
  place). The history tables (:data:`HISTORY_TABLES`: one full scoring appended a day) are a
  directory with one file per date instead, ``<table>/<YYYY-MM-DD>.parquet``.
* **History by date** (DuckDB target): a day's publish writes only the dates of a history table
  that changed since the previous publish (per-date row count and sum of row hashes): the new
  serving file starts as a copy of the previous one and keeps those tables' unchanged dates;
  unchanged Parquet date files are hard links to the previous generation's. So the daily publish
  does not rewrite a growing score history.
* **Large tables row by row** (DuckDB target): the other tables of the previous copy with at least
  :data:`DELTA_MIN_ROWS` rows and gold's columns are brought up to gold by replacing only the rows
  whose hash differs (:func:`_apply_row_delta`; a full copy when more than a quarter differ): a day
  changes a few thousand of the millions of rows of the sessions, attribution credits and identity
  map. Their Parquet files are written whole (one file per table). A fresh copy is
  built when there is no previous one, when it holds more free than used space, and for
  erasure (``keep_previous=False``: no earlier bytes may survive). The previous copy's
  fingerprints are those recorded beside it when it was published
  (``<serving>/retailpulse_serving.fingerprints.json``, trusted only while the file has the
  inode, size and modification time recorded there), so only gold's history is read.
* **Postgres target**: gold lives in Postgres; the role ``settings.bi_role`` (``retailpulse_bi``)
  is created or refreshed so that it can SELECT gold and nothing else (USAGE on gold, SELECT on
  its tables, default privileges for future tables, everything on bronze/silver/ops revoked).
  NOLOGIN unless ``RETAILPULSE_BI_PASSWORD`` is set.
* **DuckDB target with ``RETAILPULSE_PUBLISH_POSTGRES_DSN``**: gold is also copied into that
  Postgres (each table replaced in one transaction) and the same BI role is granted there.

Raw PII never reaches a published copy: publishing refuses, naming the column, when a gold
column's name looks like raw personal data (e-mail, phone, a person's name); hashed columns such
as ``email_sha256`` are allowed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from retailpulse.settings import Settings
from retailpulse.warehouse import SCHEMAS, DuckDBWarehouse, Warehouse, WarehouseError, get_warehouse, ident

log = logging.getLogger(__name__)

SERVING_FILE = "retailpulse_serving.duckdb"
PARQUET_LINK = "parquet"
# gold tables that keep a history by date: the ML stage appends a full scoring every day and
# replaces only the date it scores (published by date, see the module docstring)
HISTORY_TABLES: dict[str, str] = {"customer_scores": "as_of_date", "customer_segments": "as_of_date"}
FINGERPRINTS_FILE = "_fingerprints.json"  # per history table directory: {date: [rows, row-hash sum]}
# beside the serving file: its history tables' fingerprints, and the file's inode, size and mtime
# when they were taken (the next publish trusts them only while the file is still that file)
SERVING_FINGERPRINTS = "retailpulse_serving.fingerprints.json"
# a table of the previous serving copy with at least this many rows (and gold's columns) is
# brought up to date row by row (:func:`_apply_row_delta`) instead of being copied again, unless
# more than DELTA_MAX_SHARE of its rows differ from gold's: a day changes a few thousand rows of
# the large fact tables (sessions, attribution credits, the identity map), and comparing row
# hashes costs a fraction of writing millions of rows again
DELTA_MIN_ROWS = 50_000
DELTA_MAX_SHARE = 0.25
# zstd at level 1: the files are as small as at the default level 3 (within 1% on the medium gold
# tables) and written about a quarter faster (publish runs every day)
PARQUET_OPTIONS = "format parquet, compression zstd, compression_level 1"


class PublishError(WarehouseError):
    """Publishing was refused or failed; the message says why (never a secret)."""


# --- raw PII guard -------------------------------------------------------------------------------
PII_ALLOWLIST = frozenset({"hashed_email", "email_sha256"})
_PII_EXACT = {
    "email": "e-mail", "e_mail": "e-mail", "email_address": "e-mail", "emailaddress": "e-mail",
    "phone": "phone number", "phone_number": "phone number", "phonenumber": "phone number",
    "mobile": "phone number", "mobilephone": "phone number", "mobile_phone": "phone number",
    "first_name": "person's name", "firstname": "person's name", "last_name": "person's name",
    "lastname": "person's name", "full_name": "person's name", "fullname": "person's name",
    "middle_name": "person's name", "given_name": "person's name", "family_name": "person's name",
    "surname": "person's name", "name": "person's name", "person_name": "person's name",
    "customer_name": "person's name", "contact_name": "person's name", "lead_name": "person's name",
    "user_name": "person's name", "username": "person's name", "display_name": "person's name",
    "street": "postal address", "street_address": "postal address", "address": "postal address",
    "address_line1": "postal address", "address_line_1": "postal address", "postal_address": "postal address",
    "date_of_birth": "date of birth", "birth_date": "date of birth", "birthdate": "date of birth",
    "ip_address": "IP address", "ip": "IP address",
}
# columns that talk ABOUT e-mail/phone without holding one: flags, counts, hashes
_NOT_PII = re.compile(r"^(is|has|n|num|count|pct|share)_|_(count|flag|sha256|hash|hashed|opted_out|optin|opt_in|consent)$"
                      r"|^hashed_")


def pii_kind(column: str) -> str | None:
    """What raw personal data a column name suggests (None when it looks harmless)."""
    name = column.strip().lower()
    if name in PII_ALLOWLIST or _NOT_PII.search(name):
        return None
    if name in _PII_EXACT:
        return _PII_EXACT[name]
    tokens = [t for t in re.split(r"[^a-z0-9]+", name) if t]
    if any(t in ("email", "emailaddress", "e_mail") for t in tokens) or "email" in name.replace("_", ""):
        return "e-mail"
    if any(t in ("phone", "mobilephone", "telephone", "msisdn") for t in tokens):
        return "phone number"
    if len(tokens) >= 2 and tokens[-1] == "name" and tokens[-2] in (
            "first", "last", "full", "middle", "given", "family", "customer", "contact", "person", "lead", "user"):
        return "person's name"
    return None


def check_no_raw_pii(columns: dict[str, list[str]]) -> None:
    """Raise PublishError naming every gold column that looks like raw PII.

    ``columns``: table -> column names.
    """
    bad = [f"gold.{t}.{c} ({kind})" for t, cols in sorted(columns.items()) for c in cols if (kind := pii_kind(c))]
    if bad:
        raise PublishError(
            "publish refused: raw personal data must not reach the serving copy or the BI role, but "
            + ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
            + " looks like raw PII; hash it (e.g. email_sha256) or keep it in silver"
        )


def gold_columns(wh: Warehouse) -> dict[str, list[str]]:
    schema = wh.schema_name("gold")
    rows = wh.query(
        "select table_name, column_name from information_schema.columns where table_schema = ? "
        "order by table_name, ordinal_position",
        [schema],
    )
    out: dict[str, list[str]] = {}
    for table, column in rows:
        out.setdefault(table, []).append(column)
    return out


# --- serving copy ----------------------------------------------------------------------------------
def _sql_str(value: str | Path) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _row_hash(con: Any, relation: str) -> str:
    """SQL for the hash of a whole row of ``relation``, from its columns by name:
    ``hash(row(...))`` equals the hash of the row (``hash(alias)``) but, unlike a table alias,
    cannot be shadowed by a column of the alias' name (SQL names ignore case, so a column ``T``
    would stand in for the row of ``... as t``)."""
    names = [d[0] for d in con.execute(f"select * from {relation} limit 0").description]
    return "hash(row(" + ", ".join(ident(n) for n in names) + "))"


def _tmp_name(prefix: str, suffix: str = "") -> str:
    return f".{prefix}-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}{suffix}"


Fingerprints = dict[str, list[str]]


def _date_fingerprints(con: Any, relation: str, column: str) -> Fingerprints:
    """``{date: [rows, sum of row hashes]}`` of a history table (the date as text, "null" for NULL):
    equal fingerprints mean the same rows on that date (up to a 64-bit hash collision)."""
    rows = con.execute(
        f"select coalesce(cast({ident(column)} as varchar), 'null'), count(*), sum({_row_hash(con, relation)}) "
        f"from {relation} group by 1"
    ).fetchall()
    return {str(k): [str(n), str(h)] for k, n, h in rows}


def _file_stamp(path: Path) -> list[int]:
    st = os.stat(path)
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _stored_fingerprints(serving_file: Path) -> dict[str, Fingerprints]:
    """The history fingerprints recorded when ``serving_file`` was published ({} when there are
    none, or when the file is no longer the one they describe: then they are computed again)."""
    try:
        stored = json.loads((serving_file.parent / SERVING_FINGERPRINTS).read_text())
        if stored.get("serving_file") != _file_stamp(serving_file):
            return {}
        return {str(t): {str(k): [str(v[0]), str(v[1])] for k, v in fp.items()}
                for t, fp in stored["tables"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return {}


def _store_fingerprints(serving_file: Path, fingerprints: dict[str, Fingerprints]) -> None:
    """Record the history fingerprints of the serving file just swapped in (see :data:`SERVING_FINGERPRINTS`)."""
    path = serving_file.parent / SERVING_FINGERPRINTS
    tmp = serving_file.parent / _tmp_name("fingerprints", ".json")
    try:
        tmp.write_text(json.dumps({"serving_file": _file_stamp(serving_file), "tables": fingerprints}))
        os.replace(tmp, path)
    except OSError as exc:  # the publish stands; the next one computes the fingerprints
        log.warning("could not record the serving copy's history fingerprints: %s", exc)
        with contextlib.suppress(OSError):
            tmp.unlink()


def _date_predicate(column: str, keys: Iterable[str]) -> str:
    keys = sorted(keys)
    dated = [k for k in keys if k != "null"]
    parts = [f"cast({ident(column)} as varchar) in ({', '.join(_sql_str(k) for k in dated)})"] if dated else []
    if "null" in keys:
        parts.append(f"{ident(column)} is null")
    return " or ".join(parts) or "false"


def _columns(con: Any, catalog: str, table: str) -> list[tuple[str, str]]:
    return [(str(c), str(t)) for c, t in con.execute(
        "select column_name, data_type from information_schema.columns where table_catalog = ? "
        "and table_schema = 'gold' and table_name = ? order by ordinal_position", [catalog, table]).fetchall()]


def _open_previous_copy(con: Any, previous: Path | None, tmp_db: Path) -> bool:
    """Attach ``tmp_db`` as ``__rp_serving``: a copy of the previous serving file when there is a
    usable one (True), else a new file (False)."""
    import duckdb

    if previous is not None and previous.is_file():
        try:
            shutil.copyfile(previous, tmp_db)
            os.chmod(tmp_db, 0o644)
            con.execute(f"attach {_sql_str(tmp_db)} as __rp_serving (read_only false)")
            free, total = con.execute("select free_blocks, total_blocks from pragma_database_size() "
                                      "where database_name = '__rp_serving'").fetchall()[0]
            if 2 * int(free) <= int(total):
                return True
            log.info("previous serving copy is %d of %d blocks free: building a fresh copy", free, total)
            con.execute("detach __rp_serving")
        except (OSError, duckdb.Error) as exc:
            log.warning("previous serving copy not reusable (%s): building a fresh copy", str(exc).splitlines()[0])
            with contextlib.suppress(duckdb.Error):
                con.execute("detach __rp_serving")
        tmp_db.unlink(missing_ok=True)
        Path(str(tmp_db) + ".wal").unlink(missing_ok=True)
    con.execute(f"attach {_sql_str(tmp_db)} as __rp_serving (read_only false)")
    return False


def _apply_row_delta(con: Any, table: str) -> dict[str, int] | None:
    """Bring ``__rp_serving.gold.<table>`` (a copy of the previous serving copy's table, with
    gold's columns) up to gold's rows by replacing only the rows that differ: rows are compared by
    their hash, as a multiset (a row hash whose number of rows differs between the two sides has
    all its rows deleted from the copy and gold's inserted), so the copy ends with exactly gold's
    rows (up to a 64-bit hash collision between a changed row and the row it replaced).

    Returns ``{"serving_rows_deleted", "serving_rows_inserted"}``, or None without changing the
    copy when more than :data:`DELTA_MAX_SHARE` of the rows differ (copying the table again is
    cheaper then)."""
    name = ident(table)
    row = _row_hash(con, f"__rp_serving.gold.{name}")  # the same columns as gold's (checked by the caller)
    con.execute(
        f"create or replace temp table __rp_delta as "
        f"select h, count(*) filter (where side = 1) as gold_rows, count(*) filter (where side = 0) as serving_rows "
        f"from (select {row} as h, 1 as side from gold.{name} "
        f"union all select {row} as h, 0 as side from __rp_serving.gold.{name}) as rows "
        f"group by h having count(*) filter (where side = 1) <> count(*) filter (where side = 0)")
    try:
        inserted, deleted = (int(v) for v in con.execute(
            "select coalesce(sum(gold_rows), 0), coalesce(sum(serving_rows), 0) from __rp_delta").fetchall()[0])
        total = int(con.execute(f"select count(*) from __rp_serving.gold.{name}").fetchall()[0][0])
        if inserted + deleted > DELTA_MAX_SHARE * max(total, 1):
            return None
        if deleted:
            con.execute(f"delete from __rp_serving.gold.{name} where {row} in (select h from __rp_delta)")
        if inserted:
            con.execute(f"insert into __rp_serving.gold.{name} select * from gold.{name} "
                        f"where {row} in (select h from __rp_delta)")
    finally:
        con.execute("drop table if exists temp.__rp_delta")
    return {"serving_rows_deleted": deleted, "serving_rows_inserted": inserted}


def _history_parquet(con: Any, table: str, column: str, fingerprints: Fingerprints, out: Path,
                     previous: Path | None) -> dict[str, int]:
    """One Parquet file per date of a history table in ``out``; a date whose fingerprint equals
    the previous generation's is a hard link to its file there. Returns written/linked counts."""
    out.mkdir()
    before: Fingerprints = {}
    if previous is not None:
        with contextlib.suppress(OSError, ValueError):
            before = json.loads((previous / FINGERPRINTS_FILE).read_text())
    linked = 0
    for key, fp in sorted(fingerprints.items()):
        name = f"{key}.parquet"
        if previous is not None and before.get(key) == fp:
            try:
                os.link(previous / name, out / name)
                linked += 1
                continue
            except OSError:
                pass  # no such file, or no hard links here: write it
        con.execute(f"copy (select * from gold.{ident(table)} where {_date_predicate(column, [key])}) "
                    f"to {_sql_str(out / name)} ({PARQUET_OPTIONS})")
    (out / FINGERPRINTS_FILE).write_text(json.dumps(fingerprints, sort_keys=True))
    return {"parquet_dates_written": len(fingerprints) - linked, "parquet_dates_linked": linked}


def _write_parquet(con: Any, tables: list[str], history: dict[str, str], fingerprints: dict[str, Fingerprints],
                   parquet_dir: Path, previous_parquet: Path | None) -> dict[str, dict[str, int]]:
    """One Parquet file per gold table in ``parquet_dir`` (a history table: a directory by date,
    :func:`_history_parquet`), on its own connection ``con`` (closed at the end). Returns, per
    history table, the dates written and linked."""
    done: dict[str, dict[str, int]] = {}
    try:
        for t in tables:
            col = history.get(t)
            if col is not None:
                earlier = previous_parquet / t if previous_parquet is not None else None
                done[t] = _history_parquet(con, t, col, fingerprints[t], parquet_dir / t,
                                           earlier if earlier is not None and earlier.is_dir() else None)
            else:
                con.execute(f"copy (select * from gold.{ident(t)}) to {_sql_str(parquet_dir / (t + '.parquet'))} "
                            f"({PARQUET_OPTIONS})")
    finally:
        con.close()
    return done


def _copy_duckdb_gold(settings: Settings, tables: list[str], tmp_db: Path, parquet_dir: Path,
                      previous: Path | None = None, previous_parquet: Path | None = None,
                      ) -> tuple[dict[str, int], dict[str, dict[str, Any]], dict[str, Fingerprints],
                                 dict[str, dict[str, int]]]:
    """DuckDB target: copy gold table by table inside DuckDB (no round trip through pandas).

    With ``previous`` (the current serving file) the copy starts from it: history tables keep
    their unchanged dates, large tables are updated row by row (:func:`_apply_row_delta`), the
    others are copied again; ``previous_parquet``: the current
    Parquet generation, whose unchanged history dates are linked. The previous copy's dates are
    compared by the fingerprints recorded when it was published (:data:`SERVING_FINGERPRINTS`;
    computed from the file when there are none), so a publish reads the growing history once
    (gold's), not twice. Returns the row counts, per history table what was rewritten
    (``serving_dates_rewritten``: None for a full copy), and the history tables' fingerprints
    (those of the new copy, to record beside it)."""
    wh = get_warehouse(settings)
    assert isinstance(wh, DuckDBWarehouse)
    counts: dict[str, int] = {}
    report: dict[str, dict[str, Any]] = {}
    deltas: dict[str, dict[str, int]] = {}
    stored = _stored_fingerprints(previous) if previous is not None and previous.is_file() else {}
    # read-write on purpose: in-process readers must share the configuration of the writer (dbt
    # keeps its connection open); publish runs in the one-slot pool. Autocommit: one transaction
    # per statement (a DuckDB transaction may write to one attached database only).
    import duckdb

    try:
        con = duckdb.connect(str(wh.path))
    except duckdb.IOException as exc:
        raise PublishError(f"cannot open {wh.path}: {str(exc).splitlines()[0]} (another process is writing)") from None
    # rows may be written in any order (no reader relies on the physical order of a gold table):
    # DuckDB then writes Parquet row groups in parallel, about a fifth faster. The setting belongs
    # to the database instance, which this process may share with dbt: it is put back at the end.
    order = con.execute("select current_setting('preserve_insertion_order')").fetchall()[0][0]
    con.execute("set preserve_insertion_order = false")
    try:
        wh.apply_limits(con)
        reused = _open_previous_copy(con, previous, tmp_db)
        try:
            con.execute("create schema if not exists __rp_serving.gold")
            kept: dict[str, Fingerprints] = {}  # history tables updated by date in the copy
            delta: set[str] = set()  # other tables of the copy updated row by row (_apply_row_delta)
            gold_catalog = con.execute("select current_database()").fetchall()[0][0]
            # the history tables of this gold (those that have their date column)
            history = {t: HISTORY_TABLES[t] for t in tables if t in HISTORY_TABLES
                       and HISTORY_TABLES[t] in {c for c, _ in _columns(con, gold_catalog, t)}}
            if reused:
                for t, col in history.items():
                    if _columns(con, "__rp_serving", t) == _columns(con, gold_catalog, t):
                        kept[t] = stored[t] if t in stored else _date_fingerprints(
                            con, f"__rp_serving.gold.{ident(t)}", col)
                # the other large tables of the copy that still have gold's columns: updated row by row
                for t in tables:
                    cols = _columns(con, gold_catalog, t) if t not in history else []
                    if cols and _columns(con, "__rp_serving", t) == cols and int(con.execute(
                            f"select count(*) from __rp_serving.gold.{ident(t)}").fetchall()[0][0]) >= DELTA_MIN_ROWS:
                        delta.add(t)
                stale = [r[0] for r in con.execute(
                    "select table_name from information_schema.tables where table_catalog = '__rp_serving' "
                    "and table_schema = 'gold'").fetchall() if r[0] not in kept and r[0] not in delta]
                for t in stale:
                    con.execute(f"drop table if exists __rp_serving.gold.{ident(t)}")
                con.execute("checkpoint __rp_serving")  # the dropped tables' blocks are reused below
            fingerprints = {t: _date_fingerprints(con, f"gold.{ident(t)}", col) for t, col in history.items()}
            # the Parquet files are written by a second connection while this one fills the serving
            # copy: each statement alone keeps the two cores about three quarters busy
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="publish-parquet") as pool:
                parquet = pool.submit(_write_parquet, con.cursor(), tables, history, fingerprints, parquet_dir,
                                      previous_parquet)
                try:
                    for t in tables:
                        col = history.get(t)
                        if t in kept and col is not None:
                            changed = {k for k in fingerprints[t].keys() | kept[t].keys()
                                       if fingerprints[t].get(k) != kept[t].get(k)}
                            report[t] = {"serving_dates_rewritten": sorted(changed)}
                            if changed:
                                con.execute(f"delete from __rp_serving.gold.{ident(t)} "
                                            f"where {_date_predicate(col, changed)}")
                                con.execute(f"insert into __rp_serving.gold.{ident(t)} select * from gold.{ident(t)} "
                                            f"where {_date_predicate(col, changed)}")
                        else:
                            applied = _apply_row_delta(con, t) if t in delta else None
                            if applied is not None:
                                deltas[t] = applied
                            else:
                                if t in delta:  # too much changed: copied again
                                    con.execute(f"drop table __rp_serving.gold.{ident(t)}")
                                con.execute(f"create table __rp_serving.gold.{ident(t)} as "
                                            f"select * from gold.{ident(t)}")
                        counts[t] = int(con.execute(f"select count(*) from __rp_serving.gold.{ident(t)}").fetchall()[0][0])
                except BaseException:
                    wait([parquet])  # its connection closes before this one; this error is the one raised
                    raise
                written = parquet.result()  # the Parquet writer's error, if any, is raised here
            for t, done in written.items():
                report.setdefault(t, {"serving_dates_rewritten": None}).update(done)
            con.execute("checkpoint __rp_serving")
        finally:
            con.execute("detach __rp_serving")
    finally:
        with contextlib.suppress(duckdb.Error):
            con.execute(f"set preserve_insertion_order = {'true' if order else 'false'}")
        con.close()
    # the copy's history tables now equal gold's: kept dates had gold's fingerprints, the others
    # were written from gold
    return counts, report, fingerprints, deltas


def _copy_frames_gold(settings: Settings, tables: list[str], tmp_db: Path, parquet_dir: Path) -> dict[str, int]:
    """Other targets: read each gold table into a frame and write it into the DuckDB copy."""
    import duckdb

    wh = get_warehouse(settings)
    counts: dict[str, int] = {}
    con = duckdb.connect(str(tmp_db))
    try:
        con.execute("create schema if not exists gold")
        for t in tables:
            df = wh.query_df(f"select * from {ident(wh.schema_name('gold'))}.{ident(t)}")
            con.register("__rp_frame", df)
            try:
                con.execute(f"create table gold.{ident(t)} as select * from __rp_frame")
            finally:
                con.unregister("__rp_frame")
            col = HISTORY_TABLES.get(t)
            if col and col in df.columns:
                _history_parquet(con, t, col, _date_fingerprints(con, f"gold.{ident(t)}", col), parquet_dir / t, None)
            else:
                con.execute(f"copy gold.{ident(t)} to {_sql_str(parquet_dir / (t + '.parquet'))} ({PARQUET_OPTIONS})")
            counts[t] = len(df)
        con.execute("checkpoint")
    finally:
        con.close()
    return counts


def _swap_parquet(serving: Path, new_dir: Path, keep_previous: bool = True) -> Path:
    """Point ``<serving>/parquet`` at ``new_dir`` atomically.

    Older published directories are removed, except (with ``keep_previous``) the one the link
    pointed at until now, so that a reader that resolved the link a moment ago can finish.
    """
    link = serving / PARQUET_LINK
    previous = link.resolve() if link.is_symlink() else None
    tmp_link = serving / _tmp_name("parquet-link")
    try:
        os.symlink(new_dir.name, tmp_link, target_is_directory=True)
        if link.exists() and not link.is_symlink():  # a real directory from an earlier version
            os.rename(link, serving / _tmp_name("old-parquet"))
        os.replace(tmp_link, link)  # atomic: a symlink renamed over a symlink
    except OSError:  # no symbolic links here (e.g. Windows without the privilege): rename the directory
        with contextlib.suppress(FileNotFoundError):
            tmp_link.unlink()
        if link.is_symlink():
            link.unlink()
        elif link.exists():
            os.rename(link, serving / _tmp_name("old-parquet"))
        os.rename(new_dir, link)
        new_dir = link
        previous = None
    keep = {new_dir.resolve()}
    if keep_previous and previous is not None:
        keep.add(previous)
    for p in serving.iterdir():
        if p.is_symlink() or not p.is_dir() or p.resolve() in keep:
            continue
        if p.name.startswith("parquet-") or p.name.startswith(".old-parquet"):
            shutil.rmtree(p, ignore_errors=True)
    return link


def publish_serving_copy(settings: Settings, tables: list[str] | None = None, keep_previous: bool = True) -> dict[str, Any]:
    """Copy gold into the read-only serving DuckDB file and Parquet (both swapped in atomically).

    ``keep_previous=False`` (used by erasure) removes the previous Parquet generation at once.
    """
    wh = get_warehouse(settings)
    if tables is None:
        tables = wh.list_tables("gold")
    serving = settings.serving_path
    serving.mkdir(parents=True, exist_ok=True)
    stamp = f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:6]}"
    tmp_db = serving / _tmp_name("retailpulse_serving", ".duckdb")
    parquet_dir = serving / f"parquet-{stamp}"
    parquet_dir.mkdir()
    final = serving / SERVING_FILE
    try:
        if wh.target == "duckdb":
            link = serving / PARQUET_LINK
            previous_parquet = link.resolve() if keep_previous and link.is_dir() else None
            counts, history, fingerprints, deltas = _copy_duckdb_gold(
                settings, tables, tmp_db, parquet_dir, previous=final if keep_previous else None,
                previous_parquet=previous_parquet)
        else:
            counts, history, fingerprints, deltas = _copy_frames_gold(settings, tables, tmp_db, parquet_dir), {}, {}, {}
        Path(str(tmp_db) + ".wal").unlink(missing_ok=True)  # checkpointed: nothing left in a WAL
        os.chmod(tmp_db, 0o444)  # the serving copy is read-only for everyone
        os.replace(tmp_db, final)
        _store_fingerprints(final, fingerprints)
        parquet = _swap_parquet(serving, parquet_dir, keep_previous)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_db.unlink()
        Path(str(tmp_db) + ".wal").unlink(missing_ok=True)
        if parquet_dir.exists() and not (serving / PARQUET_LINK).resolve() == parquet_dir.resolve():
            shutil.rmtree(parquet_dir, ignore_errors=True)
        raise
    for t, done in history.items():
        log.info("published %s by date: serving copy %s, Parquet %d dates written, %d linked", t,
                 "rebuilt" if done["serving_dates_rewritten"] is None
                 else f"{len(done['serving_dates_rewritten'])} dates rewritten",
                 done.get("parquet_dates_written", 0), done.get("parquet_dates_linked", 0))
    for t, d in deltas.items():
        log.info("published %s row by row: %d rows of the previous serving copy replaced by %d", t,
                 d["serving_rows_deleted"], d["serving_rows_inserted"])
    return {"serving_file": str(final), "parquet_dir": str(parquet), "tables": counts, "history": history,
            "row_deltas": deltas}


# --- Postgres: the BI role and the optional BI copy ------------------------------------------------
def _role_ident(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise PublishError(f"invalid BI role name {name!r}: use lower-case letters, digits and underscores")
    return f'"{name}"'


def grant_bi_role(con: Any, settings: Settings, gold_schema: str, other_schemas: Iterable[str]) -> str:
    """Create or refresh the BI role on a psycopg2 connection: SELECT on gold, nothing else.

    Returns "login" or "nologin". The caller commits.
    """
    role = _role_ident(settings.bi_role)
    cur = con.cursor()
    cur.execute("select 1 from pg_roles where rolname = %s", [settings.bi_role])
    if cur.fetchone() is None:
        try:
            cur.execute(f"create role {role} nologin")
        except Exception as exc:  # noqa: BLE001 - a concurrent publish created it first
            if "already exists" not in str(exc):
                raise
            con.rollback()
    if settings.bi_password is not None and settings.bi_password.get_secret_value():
        # the password is passed as a bound parameter, never formatted into logged SQL
        cur.execute(f"alter role {role} with login password %s", [settings.bi_password.get_secret_value()])
        mode = "login"
    else:
        cur.execute(f"alter role {role} with nologin")
        mode = "nologin"
    cur.execute(f"alter role {role} with nosuperuser nocreatedb nocreaterole noinherit")
    for schema in other_schemas:
        cur.execute("select 1 from information_schema.schemata where schema_name = %s", [schema])
        if cur.fetchone() is None:
            continue
        cur.execute(f"revoke all on all tables in schema {ident(schema)} from {role}")
        cur.execute(f"revoke all on all sequences in schema {ident(schema)} from {role}")
        cur.execute(f"revoke all on schema {ident(schema)} from {role}")
        cur.execute(f"alter default privileges in schema {ident(schema)} revoke all on tables from {role}")
    cur.execute(f"create schema if not exists {ident(gold_schema)}")
    cur.execute(f"revoke all on all tables in schema {ident(gold_schema)} from {role}")
    cur.execute(f"grant usage on schema {ident(gold_schema)} to {role}")
    cur.execute(f"grant select on all tables in schema {ident(gold_schema)} to {role}")
    # tables dbt (or the next publish) creates later, as the same owner, are readable too
    cur.execute(f"alter default privileges in schema {ident(gold_schema)} grant select on tables to {role}")
    return mode


def _postgres_settings(settings: Settings, dsn: str) -> Settings:
    from pydantic import SecretStr

    return settings.model_copy(update={"target": "postgres", "postgres_dsn": SecretStr(dsn)})


def refresh_bi_role_on_warehouse(settings: Settings) -> dict[str, Any]:
    """Postgres target: gold lives in the warehouse; (re)grant the BI role there."""
    wh = get_warehouse(settings)
    gold = wh.schema_name("gold")
    others = [wh.schema_name(s) for s in SCHEMAS if s != "gold"]
    with wh.connect() as con:
        mode = grant_bi_role(con, settings, gold, others)
    return {"role": settings.bi_role, "mode": mode, "schema": gold}


def copy_gold_to_postgres(settings: Settings, tables: list[str]) -> dict[str, Any]:
    """DuckDB target + publish_postgres_dsn: replace gold in that Postgres, one transaction per table,
    drop gold tables that no longer exist, and grant the BI role."""
    assert settings.publish_postgres_dsn is not None
    source = get_warehouse(settings)
    target = get_warehouse(_postgres_settings(settings, settings.publish_postgres_dsn.get_secret_value()))
    gold = target.schema_name("gold")
    target.ensure_schemas(["gold"])
    counts: dict[str, int] = {}
    for t in tables:
        df = source.query_df(f"select * from {ident(source.schema_name('gold'))}.{ident(t)}")
        with target.connect() as con:  # one transaction per table: readers see old or new rows
            existing = list(target._column_types(con, gold, t))
            if existing == [str(c) for c in df.columns]:
                # same shape: keep the table (and analysts' views on it), swap its rows
                target._exec(con, f"truncate table {ident(gold)}.{ident(t)}")
            else:
                target._exec(con, f"drop table if exists {ident(gold)}.{ident(t)} cascade")
                target._create_from_df(con, gold, t, df)
            if len(df):
                target._insert_df(con, gold, t, df)
        counts[t] = len(df)
    stale = [t for t in target.list_tables("gold") if t not in counts]
    with target.connect() as con:
        for t in stale:
            target._exec(con, f"drop table if exists {ident(gold)}.{ident(t)} cascade")
        others = [target.schema_name(s) for s in SCHEMAS if s != "gold"]
        mode = grant_bi_role(con, settings, gold, others)
    return {"tables": counts, "dropped": stale, "role": settings.bi_role, "mode": mode, "schema": gold}


# --- the publish stage -----------------------------------------------------------------------------
def publish_gold(settings: Settings, keep_previous: bool = True) -> dict[str, Any]:
    """Refuse raw PII, then publish the serving copy (+ Parquet), the BI role / BI Postgres copy.

    Returns ``{"serving_file", "parquet_dir", "tables": {table: rows}, ...}``. Raises
    PublishError (naming the column) when a gold column looks like raw PII; nothing is published
    then and the previous serving copy stays.
    """
    wh = get_warehouse(settings)
    columns = gold_columns(wh)
    check_no_raw_pii(columns)
    tables = sorted(columns)
    result = publish_serving_copy(settings, tables, keep_previous=keep_previous)
    if wh.target == "postgres":
        result["bi_role"] = refresh_bi_role_on_warehouse(settings)
    elif settings.publish_postgres_dsn is not None and settings.publish_postgres_dsn.get_secret_value():
        result["postgres"] = copy_gold_to_postgres(settings, tables)
    log.info("published %d gold tables to %s", len(tables), result["serving_file"])
    return result


__all__ = [
    "HISTORY_TABLES",
    "PII_ALLOWLIST",
    "PublishError",
    "check_no_raw_pii",
    "copy_gold_to_postgres",
    "grant_bi_role",
    "pii_kind",
    "publish_gold",
    "publish_serving_copy",
    "refresh_bi_role_on_warehouse",
]
