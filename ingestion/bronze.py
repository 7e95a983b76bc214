"""Validate a landed batch and load it into bronze, atomically and idempotently.

For one (source, object, interval): read the landed records, flatten and type them, drop
exact duplicates, run the Great Expectations suite, then in ONE warehouse transaction replace
that interval's rows in ``bronze.<source>__<object>``, ``bronze.rejected_records`` and
``ops.load_audit``. A crash before commit leaves the previous state; re-running the interval
gives the same bronze. Every landed record ends in bronze or in rejected_records with a reason.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from ingestion.flatten import records_to_frame
from ingestion.interval import Interval
from ingestion.landing import LandingZone
from ingestion.spec import ObjectSpec
from ingestion.validation import ValidationOutcome, validate_frame
from retailpulse.warehouse import Warehouse

log = logging.getLogger(__name__)

VALIDATION_SIDECAR = "validation.json"


class BatchRefused(RuntimeError):
    """A landed batch failed a critical expectation and was not loaded."""


@dataclass
class LoadReport:
    source: str
    object: str
    interval_key: str
    batch_id: str
    extracted: int
    loaded: int
    rejected: int
    duplicates: int
    drift_columns: list[str]
    status: str

    def line(self) -> str:
        return (f"{self.source}.{self.object} {self.interval_key}: extracted {self.extracted}, loaded {self.loaded}, "
                f"rejected {self.rejected} (duplicates {self.duplicates})")


def _record_hash(rec: Any) -> str:
    text = rec if isinstance(rec, str) else json.dumps(rec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class PreparedBatch:
    frame: pd.DataFrame            # typed rows that pass (index = landed row number)
    rejects: pd.DataFrame          # rule, record rows
    outcome: ValidationOutcome
    drift: list[str]
    duplicates: int
    extracted: int
    batch_id: str
    extracted_at: str


def prepare_batch(
    zone: LandingZone,
    spec: ObjectSpec,
    interval: Interval,
    recent_volumes: list[int] | None = None,
) -> PreparedBatch:
    manifest = zone.read_manifest(spec.source, spec.name, interval)
    if manifest is None:
        raise FileNotFoundError(
            f"no landed batch for {spec.source}.{spec.name} {interval}: run the extract task first"
        )
    raw = list(zone.iter_records(spec.source, spec.name, interval))
    if len(raw) != manifest.record_count:
        raise BatchRefused(
            f"{spec.source}.{spec.name} {interval.key}: manifest says {manifest.record_count} records, "
            f"file has {len(raw)}; re-run the extract for this interval"
        )
    reject_rows: list[dict[str, Any]] = []
    good: list[dict[str, Any]] = []
    good_idx: list[int] = []
    seen: set[str] = set()
    duplicates = 0
    for i, rec in enumerate(raw):
        if not isinstance(rec, dict):
            reject_rows.append({"row": i, "rule": "malformed_json", "record": rec})
            continue
        h = _record_hash(rec)
        if h in seen:
            duplicates += 1
            reject_rows.append({"row": i, "rule": "duplicate_record", "record": rec})
            continue
        seen.add(h)
        good.append(rec)
        good_idx.append(i)
    frame, cast_failures, drift = records_to_frame(good, spec)
    frame.index = good_idx
    present = {c for c in frame.columns if frame[c].notna().any()} | set(drift)
    # columns that exist in at least one record count as present (even if null there)
    present |= {k for rec in good for k in _top_keys(spec.prepare(rec) if spec.prepare else rec)}
    bad_cast: dict[int, list[str]] = {}
    for row, fld in cast_failures.itertuples(index=False):
        bad_cast.setdefault(good_idx[row], []).append(f"type:{fld}")
    # same key, different content: keep the last landed version
    if spec.key in frame.columns and len(frame):
        keys = frame[spec.key]
        dup_mask = keys.notna() & keys.duplicated(keep="last")
        for i in frame.index[dup_mask.to_numpy()]:
            bad_cast.setdefault(int(i), []).append("duplicate_key_superseded")
    ok_for_gx = frame.drop(index=list(bad_cast)) if bad_cast else frame
    outcome = validate_frame(spec, ok_for_gx, present, recent_volumes)
    row_rules = dict(bad_cast)
    positions = list(ok_for_gx.index)
    for pos, rules in outcome.row_rejects.items():
        row_rules.setdefault(int(positions[pos]), []).extend(rules)
    for i, rules in sorted(row_rules.items()):
        reject_rows.append({"row": i, "rule": ";".join(rules), "record": raw[i]})
    passed = frame.drop(index=list(row_rules)) if row_rules else frame
    extracted = len(raw)
    if extracted and len(reject_rows) / extracted > spec.max_reject_fraction:
        outcome.critical_failures.append(
            f"rejected_fraction_at_most_{spec.max_reject_fraction:g} failed "
            f"({len(reject_rows)} of {extracted} rows rejected)"
        )
        outcome.success = False
    rejects = pd.DataFrame(reject_rows, columns=["row", "rule", "record"])
    return PreparedBatch(passed, rejects, outcome, drift, duplicates, extracted, manifest.batch_id, manifest.extracted_at)


def _top_keys(rec: dict[str, Any]) -> list[str]:
    from ingestion.flatten import column_name, flatten_record

    return [column_name(k) for k in flatten_record(rec)]


def recent_volumes(wh: Warehouse, spec: ObjectSpec, before: Interval, n: int = 7) -> list[int]:
    if not wh.table_exists("ops", "load_audit"):
        return []
    rows = wh.query(
        "select extracted from ops.load_audit where source = ? and object = ? and interval_key < ? "
        "and status = 'loaded' order by interval_key desc limit ?",
        [spec.source, spec.name, before.key, n],
    )
    return [int(r[0]) for r in rows]


def empty_bronze_frame(spec: ObjectSpec) -> pd.DataFrame:
    frame, _, _ = records_to_frame([], spec)
    frame.insert(0, "_interval_key", pd.Series([], dtype="string"))
    frame["_batch_id"] = pd.Series([], dtype="string")
    frame["_interval_start"] = pd.Series([], dtype="datetime64[us, UTC]")
    frame["_interval_end"] = pd.Series([], dtype="datetime64[us, UTC]")
    frame["_extracted_at"] = pd.Series([], dtype="datetime64[us, UTC]")
    frame["_row_number"] = pd.Series([], dtype="int64")
    frame["_loaded_at"] = pd.Series([], dtype="datetime64[us, UTC]")
    return frame


REJECTS_EMPTY = {
    "source": "string", "object": "string", "interval_key": "string", "batch_id": "string",
    "row_number": "int64", "rule": "string", "record": "string", "rejected_at": "datetime64[us, UTC]",
}


def ensure_bronze_tables(wh: Warehouse) -> None:
    """Create (empty) every declared bronze table and bronze.rejected_records if missing."""
    from ingestion.connectors import SOURCES, get_specs

    with wh.connect() as con:
        for source in SOURCES:
            for spec in get_specs(source).values():
                if not wh._column_types(con, wh.schema_name("bronze"), spec.bronze_table):
                    wh.replace_rows("bronze", spec.bronze_table, empty_bronze_frame(spec), where={}, con=con)
        if not wh._column_types(con, wh.schema_name("bronze"), "rejected_records"):
            empty = pd.DataFrame({k: pd.Series([], dtype=v) for k, v in REJECTS_EMPTY.items()})
            wh.replace_rows("bronze", "rejected_records", empty, where={}, con=con)


def load_batch(wh: Warehouse, zone: LandingZone, spec: ObjectSpec, interval: Interval) -> LoadReport:
    """Validate and load one landed batch. Raises BatchRefused on a critical failure."""
    prepared = prepare_batch(zone, spec, interval, recent_volumes(wh, spec, interval))
    zone.write_sidecar(spec.source, spec.name, interval, VALIDATION_SIDECAR, prepared.outcome.to_json())
    now = dt.datetime.now(dt.timezone.utc)
    status = "loaded" if prepared.outcome.success else "refused"
    report = LoadReport(
        source=spec.source, object=spec.name, interval_key=interval.key, batch_id=prepared.batch_id,
        extracted=prepared.extracted, loaded=len(prepared.frame) if prepared.outcome.success else 0,
        rejected=len(prepared.rejects), duplicates=prepared.duplicates, drift_columns=prepared.drift,
        status=status,
    )
    where = {"source": spec.source, "object": spec.name, "interval_key": interval.key}
    audit = pd.DataFrame([{**asdict(report), "drift_columns": json.dumps(report.drift_columns),
                           "critical_failures": json.dumps(prepared.outcome.critical_failures),
                           "loaded_at": now}])
    with wh.connect() as con:
        wh.replace_rows("ops", "load_audit", audit, where=where, con=con)
        if not prepared.outcome.success:
            # nothing of a refused batch reaches bronze; the audit row says why
            pass
        else:
            body = prepared.frame.copy()
            body.insert(0, "_interval_key", interval.key)
            body["_batch_id"] = prepared.batch_id
            body["_interval_start"] = pd.Series([interval.start] * len(body), index=body.index, dtype="datetime64[us, UTC]")
            body["_interval_end"] = pd.Series([interval.end] * len(body), index=body.index, dtype="datetime64[us, UTC]")
            body["_extracted_at"] = pd.Series([pd.Timestamp(prepared.extracted_at)] * len(body), index=body.index,
                                              dtype="datetime64[us, UTC]")
            body["_row_number"] = body.index.astype("int64")
            body["_loaded_at"] = pd.Series([now] * len(body), index=body.index, dtype="datetime64[us, UTC]")
            wh.replace_rows("bronze", spec.bronze_table, body.reset_index(drop=True),
                            where={"_interval_key": interval.key}, con=con)
            rej = pd.DataFrame({
                "source": spec.source,
                "object": spec.name,
                "interval_key": interval.key,
                "batch_id": prepared.batch_id,
                "row_number": prepared.rejects["row"].astype("int64"),
                "rule": prepared.rejects["rule"].astype("string"),
                "record": prepared.rejects["record"].map(
                    lambda r: r if isinstance(r, str) else json.dumps(r, default=str)).astype("string"),
                "rejected_at": pd.Series([now] * len(prepared.rejects), dtype="datetime64[us, UTC]"),
            })
            wh.replace_rows("bronze", "rejected_records", rej, where=where, con=con)
    if not prepared.outcome.success:
        raise BatchRefused(
            f"{spec.source}.{spec.name} {interval.key} not loaded: " + "; ".join(prepared.outcome.critical_failures)
        )
    log.info(report.line())
    return report
