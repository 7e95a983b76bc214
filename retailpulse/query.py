"""``retailpulse query``: read-only SQL, printed as a table, CSV or JSON."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
from typing import Any

from retailpulse.settings import Settings
from retailpulse.warehouse import WarehouseError, get_warehouse


def _jsonable(v: Any) -> Any:
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return float(v)
    return v


def execute_read_only(settings: Settings, sql: str, serving: bool = False) -> tuple[list[str], list[tuple]]:
    if serving:
        import duckdb

        path = settings.serving_path / "retailpulse_serving.duckdb"
        if not path.exists():
            raise WarehouseError(f"no serving copy at {path}: a green pipeline run publishes it")
        con = duckdb.connect(str(path), read_only=True)
        try:
            cur = con.execute(sql)
            return [d[0] for d in cur.description or []], cur.fetchall()
        finally:
            con.close()
    wh = get_warehouse(settings)
    with wh.connect(read_only=True) as con:
        cur = wh._exec(con, sql)
        cols = [d[0] for d in cur.description or []]
        return cols, [tuple(r) for r in cur.fetchall()] if cols else []


def format_rows(cols: list[str], rows: list[tuple], fmt: str = "table", limit: int = 1000) -> str:
    if fmt == "json":
        return json.dumps([{c: _jsonable(v) for c, v in zip(cols, r)} for r in rows], indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(cols)
        w.writerows([[_jsonable(v) for v in r] for r in rows])
        return buf.getvalue()
    shown = rows[:limit]
    cells = [[("NULL" if v is None else str(_jsonable(v))) for v in r] for r in shown]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    line = " | ".join(c.ljust(w) for c, w in zip(cols, widths))
    sep = "-+-".join("-" * w for w in widths)
    body = [" | ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    tail = [f"({len(rows)} rows" + (f", first {limit} shown)" if len(rows) > limit else ")")]
    return "\n".join([line, sep, *body, *tail])


def run_query(settings: Settings, sql: str, fmt: str = "table", serving: bool = False, limit: int = 1000) -> str:
    try:
        cols, rows = execute_read_only(settings, sql, serving=serving)
    except WarehouseError:
        raise
    except Exception as exc:  # SQL errors: one line, with the engine's words
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "read-only" in first.lower() or "read only" in first.lower():
            raise WarehouseError(f"query is read-only: {first}") from None
        raise WarehouseError(f"query failed: {first}") from None
    return format_rows(cols, rows, fmt, limit)
