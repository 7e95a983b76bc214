"""Landing records -> typed bronze rows, following the object's spec.

Nested objects are flattened with ``__`` (``metadata.order_id`` -> ``metadata__order_id``),
lists become JSON text. Values that cannot be cast to the declared type are reported per row
(the loader rejects those rows with the rule ``type:<field>``); unknown fields (schema drift)
are kept as text columns so nothing is silently dropped.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ingestion.spec import FieldSpec, ObjectSpec

_SAFE = re.compile(r"[^a-z0-9_]")


def flatten_record(rec: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in rec.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            if v:
                out.update(flatten_record(v, name + "__"))
            else:
                out[name] = None
        elif isinstance(v, list):
            out[name] = json.dumps(v, separators=(",", ":"), default=str)
        else:
            out[name] = v
    return out


def column_name(raw: str) -> str:
    name = _SAFE.sub("_", raw.lower()).strip("_") or "field"
    return name if not name[0].isdigit() else f"f_{name}"


def _kind(series: pd.Series) -> str:
    return pd.api.types.infer_dtype(series, skipna=True)


def _cast(series: pd.Series, spec: FieldSpec) -> tuple[pd.Series, pd.Series]:
    """Returns (typed values, mask of rows whose present value failed to cast).

    Vectorised fast paths cover the common case (values already of the declared type); the
    per-value path only runs for mixed columns (schema drift, malformed records).
    """
    present = series.notna()
    no_fail = pd.Series(False, index=series.index)
    t = spec.type
    kind = _kind(series)
    if t in ("string", "json"):
        if kind in ("string", "empty"):
            return series.astype("string"), no_fail
        if t == "string":
            out = series.map(lambda v: v if isinstance(v, str) else (json.dumps(v) if isinstance(v, (dict, list)) else str(v)), na_action="ignore")
        else:
            out = series.map(lambda v: v if isinstance(v, str) else json.dumps(v), na_action="ignore")
        return out.astype("string"), no_fail
    if t == "bool":
        if kind in ("boolean", "empty"):
            return series.astype("boolean"), no_fail

        def to_bool(v: Any) -> Any:
            if isinstance(v, (bool, np.bool_)):
                return bool(v)
            if isinstance(v, str) and v.lower() in ("true", "false"):
                return v.lower() == "true"
            return np.nan
        out = series.map(to_bool, na_action="ignore")
        bad = present & out.isna()
        return out.astype("boolean"), bad
    if t in ("int", "epoch_s", "epoch_us"):
        typed = None
        if kind in ("integer", "empty"):
            try:
                typed, bad = series.astype("Int64"), no_fail
            except (OverflowError, TypeError, ValueError):
                typed = None
        if typed is None:
            def to_int(v: Any) -> Any:
                if isinstance(v, bool):
                    return None
                if isinstance(v, (int, np.integer)):
                    return int(v) if -(2**63) < int(v) < 2**63 else None
                if isinstance(v, float) and v.is_integer():
                    return int(v)
                if isinstance(v, str) and re.fullmatch(r"-?\d+", v.strip()):
                    return int(v.strip())
                return None
            out = series.map(to_int, na_action="ignore")
            bad = present & out.isna()
            typed = pd.Series(pd.array(out.where(out.notna(), None).tolist(), dtype="Int64"), index=series.index)
        if t == "int":
            return typed, bad
        unit = "s" if t == "epoch_s" else "us"
        ts = pd.to_datetime(typed.astype("float64"), unit=unit, utc=True)
        return ts, bad
    if t == "float":
        clean = series if kind in ("integer", "floating", "mixed-integer-float", "empty", "decimal") else \
            series.map(lambda v: np.nan if isinstance(v, bool) else v, na_action="ignore")
        out = pd.to_numeric(clean, errors="coerce")
        bad = present & out.isna()
        return out.astype("float64"), bad
    if t == "timestamp":
        try:
            out = pd.to_datetime(series, errors="coerce", utc=True, format="ISO8601")
        except (ValueError, TypeError):
            out = pd.to_datetime(series, errors="coerce", utc=True, format="mixed")
        retry = present & out.isna()
        if retry.any():
            out = out.copy()
            out[retry] = pd.to_datetime(series[retry], errors="coerce", utc=True, format="mixed")
        bad = present & out.isna()
        return out, bad
    if t == "date":
        out = pd.to_datetime(series, errors="coerce", format="mixed")
        bad = present & out.isna()
        dates = [d.date() if not pd.isna(d) else None for d in out]
        return pd.Series(dates, index=series.index, dtype=pd.ArrowDtype(pa.date32())), bad
    raise ValueError(f"unknown field type {t!r} for {spec.name}")


def records_to_frame(records: list[dict[str, Any]], spec: ObjectSpec) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Flatten and type ``records``.

    Returns (frame, cast_failures, drift_columns): ``frame`` has every declared field (typed,
    NULL where absent) plus unknown fields as text; ``cast_failures`` has one row per
    (record index, field) whose value could not be cast.
    """
    flat = [flatten_record(spec.prepare(r) if spec.prepare else r) for r in records]
    return flat_records_to_frame(flat, spec)


def flat_records_to_frame(flat: list[dict[str, Any]], spec: ObjectSpec) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """:func:`records_to_frame` for records already flattened (and prepared)."""
    raw = pd.DataFrame.from_records(flat) if flat else pd.DataFrame()
    raw.columns = [column_name(c) for c in raw.columns]
    raw = raw.loc[:, ~raw.columns.duplicated()]
    out = pd.DataFrame(index=raw.index)
    failures: list[tuple[int, str]] = []
    # A declared scalar field sent as a JSON object was flattened into <field>__<key> columns:
    # that is a malformed value of the declared field (a reasoned reject), not schema drift.
    declared = {f.name for f in spec.fields}
    scalars = [f.name for f in spec.fields if f.type != "json"
               and not any(d.startswith(f.name + "__") for d in declared)]
    for name in scalars:
        children = [c for c in raw.columns if c.startswith(name + "__") and c not in declared]
        if children:
            broken = raw[children].notna().any(axis=1)
            failures.extend((int(i), name) for i in raw.index[broken.to_numpy()])
            raw = raw.drop(columns=children)
    for f in spec.fields:
        col = raw[f.name] if f.name in raw.columns else pd.Series([None] * len(raw), index=raw.index, dtype="object")
        col = col.astype("object").where(col.notna(), None)
        typed, bad = _cast(col, f)
        out[f.name] = typed
        failures.extend((int(i), f.name) for i in raw.index[bad.to_numpy()])
    drift = [c for c in raw.columns if c not in declared]
    for c in drift:
        out[c] = raw[c].map(lambda v: v if isinstance(v, str) else json.dumps(v, default=str), na_action="ignore").astype("string")
    cast_failures = pd.DataFrame(failures, columns=["row", "field"])
    out.attrs["present_columns"] = sorted(raw.columns)  # fields that occur in at least one record
    return out, cast_failures, drift


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# --- the vectorised path (pyarrow) ---------------------------------------------------------------
class NotArrowable(Exception):
    """The lines need the per-record path (the reason is in the message)."""


def parse_lines(lines: list[bytes], spec: ObjectSpec, buf: bytes | None = None) -> pa.Table:
    """Parse NDJSON lines with pyarrow's JSON reader: declared fields with the spec's explicit
    schema, undeclared ones inferred. Raises NotArrowable on malformed JSON or a type conflict.
    ``buf``: the lines already joined (``b"\\n".join(lines) + b"\\n"``), if the caller has them."""
    import io

    import pyarrow.json as pj

    if spec.arrow_schema is None:
        raise NotArrowable("no arrow schema")
    if buf is None:
        buf = b"\n".join(lines) + b"\n"
    try:
        return pj.read_json(
            io.BytesIO(buf),
            read_options=pj.ReadOptions(use_threads=True, block_size=max(1 << 20, len(buf) + 1)),
            parse_options=pj.ParseOptions(explicit_schema=spec.arrow_schema(), unexpected_field_behavior="infer",
                                          newlines_in_values=False),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise NotArrowable(str(exc)[:200]) from None


def _flatten_table(table: pa.Table, null_structs: frozenset[str]) -> list[tuple[str, pa.ChunkedArray | pa.Array]]:
    """Struct columns -> ``parent__child`` columns (as :func:`flatten_record`), in order."""
    out: list[tuple[str, Any]] = []

    def walk(name: str, arr: Any) -> None:
        if pa.types.is_struct(arr.type):
            arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
            lname = name.lower()
            # an empty object is a column of its own (as in flatten_record); a null object next to
            # non-empty ones cannot be told from an absent one in Arrow: its children carry it
            if arr.type.num_fields == 0 and lname not in null_structs:
                out.append((name, pa.nulls(len(arr), pa.string())))
            for i in range(arr.type.num_fields):
                walk(f"{name}__{arr.type.field(i).name}", arr.flatten()[i])
            return
        out.append((name, arr))

    for name, col in zip(table.column_names, table.columns):
        walk(name, col)
    return out


def _json_text(arr: Any) -> pd.Series:
    """A list / object column as JSON text (as :func:`flatten_record` writes lists)."""
    import pyarrow.compute as pc

    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    text = np.full(len(arr), None, dtype=object)
    valid = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        lengths = np.asarray(pc.list_value_length(arr).fill_null(0).to_numpy(zero_copy_only=False))
        text[valid & (lengths == 0)] = "[]"
        todo = np.flatnonzero(valid & (lengths > 0))
    else:
        todo = np.flatnonzero(valid)
    if len(todo):
        encode = _COMPACT_JSON.encode  # json.dumps(v, separators=(",", ":"), default=str), one encoder
        text[todo] = [encode(v) for v in arr.take(pa.array(todo)).to_pylist()]
    return pd.Series(text, dtype="object")


_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), default=str)


def _drift_text(arr: Any) -> pd.Series:
    """An undeclared column as text: strings as is, other values as JSON (record path rules)."""
    import pyarrow.compute as pc

    t = arr.type
    if pa.types.is_null(t):
        return pd.Series([None] * len(arr), dtype="string")
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t):
        return pd.Series(pc.cast(arr, pa.string()).to_pandas(types_mapper=pd.ArrowDtype).astype("string"))
    if pa.types.is_boolean(t):
        return pd.Series(pc.if_else(arr, "true", "false").to_pandas(types_mapper=pd.ArrowDtype).astype("string"))
    if pa.types.is_floating(t):
        return pd.Series([None if v is None else json.dumps(v) for v in arr.to_pylist()], dtype="string")
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_struct(t):
        return _json_text(arr).astype("string")
    raise NotArrowable(f"drift column of type {t}")  # e.g. a timestamp inferred from text


def _typed(arr: Any, f: FieldSpec) -> pd.Series:
    t = f.type
    if t in ("string", "json") and (pa.types.is_list(arr.type) or pa.types.is_struct(arr.type)):
        return _json_text(arr).astype("string")
    if pa.types.is_null(arr.type):
        series = pd.Series([None] * len(arr), dtype="object")
        typed, _ = _cast(series, f)
        return typed
    if t in ("string", "json") and pa.types.is_string(arr.type):
        return arr.to_pandas(types_mapper=pd.ArrowDtype).astype("string")
    if t in ("int", "epoch_us", "epoch_s") and pa.types.is_integer(arr.type):
        typed = arr.to_pandas(types_mapper={arr.type: pd.Int64Dtype()}.get).astype("Int64")
        if t == "int":
            return typed
        return pd.to_datetime(typed.astype("float64"), unit="s" if t == "epoch_s" else "us", utc=True)
    if t == "float" and (pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type)):
        return arr.to_pandas().astype("float64")
    if t == "bool" and pa.types.is_boolean(arr.type):
        return arr.to_pandas(types_mapper=pd.ArrowDtype).astype("boolean")
    raise NotArrowable(f"{f.name}: {arr.type} for a {t} field")


def lines_to_frame(lines: list[bytes], spec: ObjectSpec) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """:func:`records_to_frame` for landed NDJSON lines, vectorised with pyarrow.

    Same output (typed declared fields, drift columns as text, ``attrs['present_columns']``).
    A declared field counts as present when a record sets it or its key occurs in the lines
    (absent and null are the same in Arrow). Raises NotArrowable when a line is not a JSON
    object or a value needs the per-record casting rules; the caller then uses the record path.
    """
    if spec.prepare_table is None:
        raise NotArrowable("no table prepare")
    # the lines joined once: parsed by pyarrow, and searched for keys (a trailing newline does
    # not change what a search for a key token finds)
    buf = b"\n".join([*lines, b""]) if lines else b""
    table = parse_lines(lines, spec, buf) if lines else None
    if table is None or table.num_rows != len(lines):
        raise NotArrowable("empty batch or row count mismatch")
    table = spec.prepare_table(table, lines)
    if table is None:
        raise NotArrowable("values need the record path")
    cols: dict[str, Any] = {}
    for raw_name, arr in _flatten_table(table, spec.null_structs):
        name = column_name(raw_name)
        if name not in cols:  # as the record path: the first of colliding names wins
            cols[name] = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    declared = {f.name for f in spec.fields}
    present: set[str] = set()
    occurs: dict[bytes, bool] = {}
    out: dict[str, pd.Series] = {}
    schema_only = _SCHEMA_ONLY(spec)
    for f in spec.fields:
        arr = cols.get(f.name)
        if arr is None:
            arr = pa.nulls(len(lines), pa.null())
        if arr.null_count < len(arr):
            present.add(f.name)
        elif f.name in cols and f.name not in schema_only:
            present.add(f.name)  # inferred from the lines: the key occurs
        elif f.name in schema_only:
            token = f'"{f.name.rsplit("__", 1)[-1]}":'.encode()
            if token not in occurs:  # several fields can share a key token (one search each)
                occurs[token] = token in buf
            if occurs[token]:
                present.add(f.name)
        out[f.name] = _typed(arr, f).reset_index(drop=True)
    drift = [c for c in cols if c not in declared]
    for c in drift:
        out[c] = _drift_text(cols[c]).reset_index(drop=True)
        present.add(c)
    frame = pd.DataFrame(out)
    frame.attrs["present_columns"] = sorted(present)
    return frame, pd.DataFrame({"row": pd.Series([], dtype="int64"), "field": pd.Series([], dtype="object")}), drift


def _SCHEMA_ONLY(spec: ObjectSpec) -> set[str]:
    """Columns that exist because the explicit schema declares them (present or not)."""
    names: set[str] = set()
    if spec.arrow_schema is None:
        return names

    def walk(prefix: str, field: pa.Field) -> None:
        name = f"{prefix}{field.name}"
        if pa.types.is_struct(field.type):
            for i in range(field.type.num_fields):
                walk(name + "__", field.type.field(i))
        else:
            names.add(column_name(name))

    for field in spec.arrow_schema():
        walk("", field)
    return names
