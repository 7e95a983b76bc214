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
    for f in spec.fields:
        col = raw[f.name] if f.name in raw.columns else pd.Series([None] * len(raw), index=raw.index, dtype="object")
        col = col.astype("object").where(col.notna(), None)
        typed, bad = _cast(col, f)
        out[f.name] = typed
        failures.extend((int(i), f.name) for i in raw.index[bad.to_numpy()])
    declared = {f.name for f in spec.fields}
    drift = [c for c in raw.columns if c not in declared]
    for c in drift:
        out[c] = raw[c].map(lambda v: v if isinstance(v, str) else json.dumps(v, default=str), na_action="ignore").astype("string")
    cast_failures = pd.DataFrame(failures, columns=["row", "field"])
    out.attrs["present_columns"] = sorted(raw.columns)  # fields that occur in at least one record
    return out, cast_failures, drift


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
