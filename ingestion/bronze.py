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
from collections.abc import Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ingestion.flatten import flat_records_to_frame as records_to_frame_flat
from ingestion.flatten import records_to_frame
from ingestion.interval import Interval
from ingestion.landing import LandingZone
from ingestion.spec import ObjectSpec
from ingestion.validation import ValidationOutcome, validate_batches
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
    # GDPR: landed rows that carry a suppressed identifier and are not tombstones yet
    scrub_rows: list[int] = field(default_factory=list)


@dataclass
class _TypedBatch:
    interval: Interval
    raw: list[Any]
    frame: pd.DataFrame             # typed rows eligible for GX (index = landed row number)
    present: set[str]
    pre_rules: dict[int, list[str]]  # rows rejected before GX (type casts, superseded keys)
    pre_rejects: list[dict[str, Any]]  # malformed JSON, exact duplicates
    drift: list[str]
    duplicates: int
    batch_id: str
    extracted_at: str
    suppressed: int = 0                                 # rows rejected as gdpr_suppressed
    scrub_rows: list[int] = field(default_factory=list)  # of those, landed lines to tombstone


class _LandedRecords:
    """The landed lines of a batch, parsed on access (only rejected rows are ever shown)."""

    def __init__(self, lines: list[bytes]) -> None:
        self.lines = lines

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, i: int) -> Any:
        text = self.lines[i].decode("utf-8", errors="replace")
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text


@dataclass
class _RawBatch:
    interval: Interval
    manifest: Any
    raw: Any                      # landed records by row number (_LandedRecords)
    good_idx: list[int]
    flat: list[dict[str, Any]] | None   # None: typed by the Arrow path from ``lines``
    present: set[str]
    pre_rejects: list[dict[str, Any]]
    duplicates: int
    tombstones: list[int]
    suppressed: set[int]
    lines: list[bytes] = field(default_factory=list)  # the good lines (Arrow path)


def _is_tombstone_line(line: bytes) -> bool:
    from retailpulse.erasure import TOMBSTONE_FIELD, TOMBSTONE_LINE, is_tombstone

    if line == TOMBSTONE_LINE.encode():
        return True
    if TOMBSTONE_FIELD.encode() not in line:
        return False
    try:
        return is_tombstone(json.loads(line))
    except ValueError:
        return False


def _read_raw(zone: LandingZone, spec: ObjectSpec, interval: Interval, suppressor: Any = None,
              data: bytes | None = None) -> _RawBatch:
    """Read a landed batch: tombstones and exact duplicate lines out. Specs with an Arrow path
    keep the remaining lines for :func:`_type_batches`; the others are parsed and flattened
    here (malformed lines out). ``data``: the landed file's text, when already read."""
    from retailpulse.erasure import TOMBSTONE_FIELD

    manifest = zone.read_manifest(spec.source, spec.name, interval)
    if manifest is None:
        raise FileNotFoundError(
            f"no landed batch for {spec.source}.{spec.name} {interval}: run the extract task first"
        )
    if data is None:
        data = zone.read_data(spec.source, spec.name, interval)
    lines = [ln for ln in data.split(b"\n") if ln]
    if len(lines) != manifest.record_count:
        raise BatchRefused(
            f"{spec.source}.{spec.name} {interval.key}: manifest says {manifest.record_count} records, "
            f"file has {len(lines)}; re-run the extract for this interval"
        )
    raw = _LandedRecords(lines)
    pre_rejects: list[dict[str, Any]] = []
    duplicates = 0
    tombstones: list[int] = []
    # a tombstone line holds the marker field: without it anywhere in the batch, none is one
    maybe_tombstones = TOMBSTONE_FIELD.encode() in data
    del data
    if not maybe_tombstones and len(set(lines)) == len(lines):  # the common case: every line is good
        good_idx = list(range(len(lines)))
        good_lines = lines
    else:
        good_idx = []
        seen: dict[bytes, int] = {}
        for i, line in enumerate(lines):
            if maybe_tombstones and _is_tombstone_line(line):
                tombstones.append(i)
                continue
            first = seen.get(line)
            if first is not None:
                duplicates += 1
                pre_rejects.append({"row": i, "rule": "duplicate_record", "record": raw[i], "first": first})
                continue
            seen[line] = i
            good_idx.append(i)
        good_lines = [lines[i] for i in good_idx]
    rb = _RawBatch(interval, manifest, raw, good_idx, None, set(), pre_rejects, duplicates, tombstones, set(),
                   good_lines)
    if spec.prepare_table is None:
        _parse_records(spec, rb, suppressor)
    return rb


def _parse_records(spec: ObjectSpec, rb: _RawBatch, suppressor: Any = None) -> None:
    """The record path: parse and flatten the good lines; malformed lines become rejects."""
    from ingestion.flatten import column_name, flatten_record

    flat: list[dict[str, Any]] = []
    good_idx: list[int] = []
    for i, line in zip(rb.good_idx, rb.lines):
        rec = rb.raw[i]
        if not isinstance(rec, dict):
            if suppressor is not None and suppressor.text_matches(line.decode("utf-8", errors="replace")):
                rb.suppressed.add(i)
                continue
            rb.pre_rejects.append({"row": i, "rule": "malformed_json", "record": rec})
            continue
        if spec.prepare is None:
            flat.append(flatten_record(rec))
        elif spec.prepare_table is not None:  # the line is part of the record's identity (GA4 key)
            flat.append(flatten_record(spec.prepare(rec, line)))
        else:
            flat.append(flatten_record(spec.prepare(rec)))
        good_idx.append(i)
    keys: set[str] = set()
    for f in flat:
        keys.update(f)
    rb.flat, rb.good_idx, rb.lines = flat, good_idx, []
    rb.present = {column_name(k) for k in keys}


def _slice_present(set_any: Any, candidates: list[str], lines: list[bytes]) -> set[str]:
    """Columns (``candidates``) that one batch's records set: a value in the batch's rows
    (``set_any``, one bool per candidate), else the key occurring in its lines."""
    present = {c for c, hit in zip(candidates, set_any) if hit}
    blob: bytes | None = None
    for c, hit in zip(candidates, set_any):
        if hit:
            continue
        if blob is None:
            blob = b"\n".join(lines)
        token = (f'"key":"{c[7:]}"' if c.startswith("param__") else f'"{c.rsplit("__", 1)[-1]}":').encode()
        if token in blob:
            present.add(c)
    return present


def _arrow_frames(spec: ObjectSpec, raws: list[_RawBatch]) -> list[tuple[pd.DataFrame, list[str], set[str]] | None]:
    """Type the Arrow-path batches: all in one pyarrow pass when possible, else one by one;
    None for a batch that needs the record path."""
    import numpy as np

    from ingestion.flatten import NotArrowable, lines_to_frame

    out: list[tuple[pd.DataFrame, list[str], set[str]] | None] = [None] * len(raws)
    todo = [b for b, rb in enumerate(raws) if rb.flat is None and rb.lines]
    for b, rb in enumerate(raws):
        if rb.flat is None and not rb.lines:
            rb.flat = []
    if not todo:
        return out
    groups = [todo] if len(todo) > 1 else []
    groups += [[b] for b in todo]
    done: set[int] = set()
    for group in groups:
        if done.issuperset(group):
            continue
        lines = [ln for b in group for ln in raws[b].lines]
        try:
            frame, _, drift = lines_to_frame(lines, spec)
        except NotArrowable as exc:
            if len(group) == 1:
                log.info("%s.%s %s: record path (%s)", spec.source, spec.name, raws[group[0]].interval.key, exc)
            continue
        candidates = list(frame.attrs["present_columns"])
        sizes = [len(raws[b].lines) for b in group]
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
        set_any = np.logical_or.reduceat(frame[candidates].notna().to_numpy(), starts, axis=0) \
            if candidates else np.zeros((len(group), 0), dtype=bool)
        for k, b in enumerate(group):
            start, n = int(starts[k]), sizes[k]
            part = frame.iloc[start:start + n].reset_index(drop=True)
            present = _slice_present(set_any[k], candidates, raws[b].lines) if len(group) > 1 else set(candidates)
            out[b] = (part, [c for c in drift if c in present], present)
            done.add(b)
    return out


def _type_batches(spec: ObjectSpec, raws: list[_RawBatch], suppressor: Any = None) -> list[_TypedBatch]:
    """Type the records of all batches in few passes (the per-field casting has a fixed cost per
    call that dominates small batches), then finish each batch on its slice. Batches of a spec
    with an Arrow path are typed by pyarrow; the others (and Arrow misfits) record by record."""
    import numpy as np

    arrow = _arrow_frames(spec, raws) if spec.prepare_table is not None else [None] * len(raws)
    for rb, a in zip(raws, arrow):
        if a is None and rb.flat is None:
            _parse_records(spec, rb, suppressor)
    py = [b for b, a in enumerate(arrow) if a is None]
    all_flat = [f for b in py for f in raws[b].flat]
    frame_all, failures_all, drift = records_to_frame_flat(all_flat, spec)
    sizes = [len(raws[b].flat) for b in py]
    owner = np.repeat(np.arange(len(py)), sizes)
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    fail_owner = owner[failures_all["row"].to_numpy()] if len(failures_all) else np.array([], dtype=int)
    out = []
    for b, rb in enumerate(raws):
        if arrow[b] is not None:
            frame, batch_drift, present = arrow[b]
            rb.present = present
            empty = pd.DataFrame({"row": pd.Series([], dtype="int64"), "field": pd.Series([], dtype="object")})
            out.append(_finish_typing(spec, rb, frame, empty, batch_drift, suppressor))
            continue
        k = py.index(b)
        frame = frame_all.iloc[starts[k]:starts[k + 1]]
        cast_failures = failures_all[fail_owner == k].copy()
        cast_failures["row"] = cast_failures["row"] - starts[k]
        batch_drift = [c for c in drift if c in rb.present]
        out.append(_finish_typing(spec, rb, frame, cast_failures, batch_drift, suppressor))
    return out


def _finish_typing(spec: ObjectSpec, rb: _RawBatch, frame: pd.DataFrame, cast_failures: pd.DataFrame,
                   drift: list[str], suppressor: Any = None) -> _TypedBatch:
    from retailpulse.erasure import SUPPRESSED_RULE

    interval, manifest, raw, good_idx = rb.interval, rb.manifest, rb.raw, rb.good_idx
    pre_rejects, duplicates, tombstones, suppressed = rb.pre_rejects, rb.duplicates, rb.tombstones, set(rb.suppressed)
    present = set(rb.present) | set(drift)
    frame = frame.copy(deep=False)  # copy-on-write: the caller's frame keeps its index
    frame.index = good_idx
    if suppressor is not None and len(frame):
        hit = suppressor.frame_mask(frame)
        if hit.any():
            rows = {int(i) for i in frame.index[hit.to_numpy()]}
            suppressed |= rows
            frame = frame.loc[~hit.to_numpy()]
            for r in pre_rejects:  # exact copies of a suppressed record
                if r["rule"] == "duplicate_record" and r.get("first") in rows:
                    suppressed.add(r["row"])
            pre_rejects = [r for r in pre_rejects if r["row"] not in suppressed]
    for r in pre_rejects:
        r.pop("first", None)
    pre_rejects.extend({"row": i, "rule": SUPPRESSED_RULE, "record": None} for i in sorted(set(tombstones) | suppressed))
    pre_rules: dict[int, list[str]] = {}
    for row, fld in cast_failures.itertuples(index=False):
        if good_idx[row] not in suppressed:
            pre_rules.setdefault(good_idx[row], []).append(f"type:{fld}")
    # same key, different content: keep the last landed version
    if spec.key in frame.columns and len(frame):
        keys = frame[spec.key]
        dup_mask = keys.notna() & keys.duplicated(keep="last")
        for i in frame.index[dup_mask.to_numpy()]:
            pre_rules.setdefault(int(i), []).append("duplicate_key_superseded")
    eligible = frame.drop(index=list(pre_rules)) if pre_rules else frame
    return _TypedBatch(interval, raw, eligible, present, pre_rules, pre_rejects, drift, duplicates,
                       manifest.batch_id, manifest.extracted_at,
                       suppressed=len(tombstones) + len(suppressed), scrub_rows=sorted(suppressed))


def _finish(spec: ObjectSpec, tb: _TypedBatch, outcome: ValidationOutcome) -> PreparedBatch:
    row_rules = {k: list(v) for k, v in tb.pre_rules.items()}
    positions = list(tb.frame.index)
    for pos, rules in outcome.row_rejects.items():
        row_rules.setdefault(int(positions[pos]), []).extend(rules)
    reject_rows = list(tb.pre_rejects)
    for i, rules in sorted(row_rules.items()):
        reject_rows.append({"row": i, "rule": ";".join(rules), "record": tb.raw[i]})
    in_frame = tb.frame.index
    dropped = [i for i in row_rules if i in in_frame] if row_rules else []
    passed = tb.frame.drop(index=dropped) if dropped else tb.frame
    extracted = len(tb.raw)
    # GDPR-suppressed rows are not data-quality rejects: they do not count against the batch
    counted, considered = len(reject_rows) - tb.suppressed, extracted - tb.suppressed
    if considered and counted / considered > spec.max_reject_fraction:
        outcome.critical_failures.append(
            f"rejected_fraction_at_most_{spec.max_reject_fraction:g} failed "
            f"({counted} of {considered} rows rejected)"
        )
        outcome.success = False
    rejects = pd.DataFrame(reject_rows, columns=["row", "rule", "record"])
    return PreparedBatch(passed, rejects, outcome, tb.drift, tb.duplicates, extracted, tb.batch_id, tb.extracted_at,
                         scrub_rows=list(tb.scrub_rows))


def _read_landed(zone: LandingZone, spec: ObjectSpec, intervals: list[Interval]) -> list[bytes | None]:
    """The landed files' text of several batches, decompressed by a few threads (zlib works
    without the GIL); None where reading failed (:func:`_read_raw` reads it again and reports)."""
    if len(intervals) < 2:
        return [None] * len(intervals)
    import os
    from concurrent.futures import ThreadPoolExecutor

    def read(iv: Interval) -> bytes | None:
        try:
            return zone.read_data(spec.source, spec.name, iv)
        except Exception:  # noqa: BLE001 - read again in order, where the error is reported
            return None

    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        return list(pool.map(read, intervals))


def prepare_batches(
    zone: LandingZone,
    spec: ObjectSpec,
    intervals: list[Interval],
    recent: list[list[int]] | None = None,
    suppressor: Any = None,
) -> list[PreparedBatch]:
    """Read, type and validate several landed batches of one object (one GX run for all)."""
    datas = _read_landed(zone, spec, intervals)
    raws = []
    for k, iv in enumerate(intervals):
        raws.append(_read_raw(zone, spec, iv, suppressor, datas[k]))
        datas[k] = None
    typed = _type_batches(spec, raws, suppressor)
    outcomes = validate_batches(spec, [t.frame for t in typed], [t.present for t in typed], recent)
    return [_finish(spec, t, o) for t, o in zip(typed, outcomes)]


def empty_bronze_frame(spec: ObjectSpec) -> pd.DataFrame:
    frame, _, _ = records_to_frame([], spec)
    frame.insert(0, "_interval_key", pd.Series([], dtype="string"))
    frame["_batch_id"] = pd.Series([], dtype="string")
    frame["_source"] = pd.Series([], dtype="string")
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
    from ingestion.transactions import SPECS as TRANSACTION_SPECS

    specs = [spec for source in SOURCES for spec in get_specs(source).values()] + list(TRANSACTION_SPECS.values())
    with wh.connect() as con:
        for spec in specs:
            if not wh._column_types(con, wh.schema_name("bronze"), spec.bronze_table):
                wh.replace_rows("bronze", spec.bronze_table, empty_bronze_frame(spec), where={}, con=con)
        if not wh._column_types(con, wh.schema_name("bronze"), "rejected_records"):
            empty = pd.DataFrame({k: pd.Series([], dtype=v) for k, v in REJECTS_EMPTY.items()})
            wh.replace_rows("bronze", "rejected_records", empty, where={}, con=con)


def _recent_volume_map(wh: Warehouse, spec: ObjectSpec, intervals: list[Interval], n: int = 7) -> list[list[int]]:
    """For each interval, the extracted counts of up to ``n`` earlier loaded batches."""
    if not wh.table_exists("ops", "load_audit"):
        return [[] for _ in intervals]
    rows = wh.query(
        "select interval_key, extracted from ops.load_audit where source = ? and object = ? and status = 'loaded' "
        "order by interval_key desc",
        [spec.source, spec.name],
    )
    out = []
    for iv in intervals:
        out.append([int(e) for k, e in rows if k < iv.key][:n])
    return out


def _body(prepared: PreparedBatch, interval: Interval, now: dt.datetime, source: str) -> pd.DataFrame:
    body = prepared.frame.copy(deep=False)  # copy-on-write: columns are added to this copy only
    n = len(body)
    # constant columns by broadcasting one value (no per-row Python objects)
    body.insert(0, "_interval_key", _const(interval.key, n, body.index, "string"))
    body["_batch_id"] = _const(prepared.batch_id, n, body.index, "string")
    body["_source"] = _const(source, n, body.index, "string")
    body["_interval_start"] = _const(interval.start, n, body.index, "datetime64[us, UTC]")
    body["_interval_end"] = _const(interval.end, n, body.index, "datetime64[us, UTC]")
    body["_extracted_at"] = _const(pd.Timestamp(prepared.extracted_at), n, body.index, "datetime64[us, UTC]")
    body["_row_number"] = body.index.astype("int64")
    body["_loaded_at"] = _const(now, n, body.index, "datetime64[us, UTC]")
    return body.reset_index(drop=True)


def _const(value: Any, n: int, index: Any = None, dtype: str = "string") -> pd.Series:
    """``pd.Series([value] * n, index=index, dtype=dtype)`` without the list: the value is cast
    once (a one-row series) and repeated."""
    one = pd.Series([value], dtype=dtype)
    out = one.iloc[np.zeros(n, dtype=np.intp)]
    out.index = index if index is not None else pd.RangeIndex(n)
    return out


def _rejects(spec: ObjectSpec, prepared: PreparedBatch, interval: Interval, now: dt.datetime) -> pd.DataFrame:
    n = len(prepared.rejects)
    return pd.DataFrame({
        "source": _const(spec.source, n),
        "object": _const(spec.name, n),
        "interval_key": _const(interval.key, n),
        "batch_id": _const(prepared.batch_id, n),
        "row_number": prepared.rejects["row"].astype("int64").reset_index(drop=True),
        "rule": prepared.rejects["rule"].astype("string").reset_index(drop=True),
        "record": prepared.rejects["record"].map(  # None: content withheld (gdpr_suppressed)
            lambda r: None if r is None else (r if isinstance(r, str) else json.dumps(r, default=str))
        ).astype("string").reset_index(drop=True),
        "rejected_at": _const(now, n, None, "datetime64[us, UTC]"),
    })


GROUP_ROWS = 250_000  # landed records validated and written per step (bounded memory)


def _groups(zone: LandingZone, spec: ObjectSpec, intervals: list[Interval], max_rows: int) -> list[list[int]]:
    """Consecutive runs of batches with at most ``max_rows`` landed records (a bigger batch
    is a group of its own)."""
    groups: list[list[int]] = []
    rows = 0
    for i, iv in enumerate(intervals):
        m = zone.read_manifest(spec.source, spec.name, iv)
        n = m.record_count if m is not None else 0
        if not groups or rows + n > max_rows:
            groups.append([])
            rows = 0
        groups[-1].append(i)
        rows += n
    return groups


PARALLEL_MIN_GROUPS = 3  # fewer groups: starting worker processes (~5 s of imports) costs more than it saves


def _worker_context(zone: LandingZone, spec: ObjectSpec, suppressor: Any) -> bytes | None:
    """What every load worker receives first, pickled once; None when it cannot be sent to
    another process (a spec built with a lambda): the caller prepares in-process."""
    import pickle

    try:
        return pickle.dumps((zone, spec, suppressor), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - pickling raises many types
        return None


def _prepared_groups(zone: LandingZone, spec: ObjectSpec, jobs: list[tuple[list[Interval], list[list[int]]]],
                     suppressor: Any, workers: int) -> Iterator[tuple[list[Interval], list[PreparedBatch]]]:
    """``prepare_batches`` of every group (intervals, their recent volumes), in order.

    With ``workers`` > 1 and enough groups, the groups are prepared by that many worker
    processes (:mod:`ingestion.load_workers`; reading, typing and validating are CPU-bound
    Python), at most two groups ahead of each, so the caller writes a group while the next ones
    are prepared and memory stays bounded by a few groups. An error in a worker is raised here,
    for its group, as it would be in-process."""
    context = _worker_context(zone, spec, suppressor) if workers > 1 and len(jobs) >= PARALLEL_MIN_GROUPS else None
    if context is None:
        for ivs, recent in jobs:
            yield ivs, prepare_batches(zone, spec, ivs, recent, suppressor)
        return
    from ingestion.load_workers import LoadWorkerError, WorkerPool

    pool = WorkerPool(min(workers, len(jobs)), context)
    ok = False
    try:
        for (ivs, _), prepared in zip(jobs, pool.map(jobs)):
            yield ivs, prepared
        ok = True
    except LoadWorkerError as exc:
        raise LoadWorkerError(
            f"{spec.source}.{spec.name}: {exc}; nothing of this load was committed. Run it again, with "
            "RETAILPULSE_LOAD_WORKERS=1 to prepare the batches in the loader's own process"
        ) from exc
    finally:
        pool.close(kill=not ok)


def load_batches(wh: Warehouse, zone: LandingZone, spec: ObjectSpec, intervals: list[Interval],
                 group_rows: int | None = None, workers: int | None = None) -> list[LoadReport]:
    """Validate and load landed batches of one object in one transaction.

    Batches that pass replace their interval's rows in bronze; a refused batch loads nothing
    (its audit row says why) and, after the others are committed, BatchRefused is raised
    naming the failed expectations. Batches are read, typed, validated and written in groups
    of about ``group_rows`` records, inside the one transaction, so memory stays bounded by a
    group whatever the range; ``workers`` processes (default: the ``load_workers`` setting)
    prepare the groups of a big load while this one writes.
    """
    if not intervals:
        return []
    from retailpulse.erasure import Suppressor

    suppressor = Suppressor.load(wh)  # GDPR erasures: None when nobody is suppressed
    recent = _recent_volume_map(wh, spec, intervals)
    reports: list[LoadReport] = []
    refused: list[tuple[Interval, PreparedBatch]] = []
    scrubs: list[tuple[Interval, PreparedBatch]] = []
    jobs = [([intervals[i] for i in g], [recent[i] for i in g])
            for g in _groups(zone, spec, intervals, group_rows or GROUP_ROWS)]
    workers = workers if workers is not None else wh.settings.load_workers
    with closing(_prepared_groups(zone, spec, jobs, suppressor, workers)) as prepared_groups, wh.connect() as con:
        for ivs, prepared_all in prepared_groups:
            now = dt.datetime.now(dt.timezone.utc)
            audits, bodies, rejects = [], [], []
            for interval, prepared in zip(ivs, prepared_all):
                zone.write_sidecar(spec.source, spec.name, interval, VALIDATION_SIDECAR, prepared.outcome.to_json())
                ok = prepared.outcome.success
                report = LoadReport(
                    source=spec.source, object=spec.name, interval_key=interval.key, batch_id=prepared.batch_id,
                    extracted=prepared.extracted, loaded=len(prepared.frame) if ok else 0,
                    rejected=len(prepared.rejects), duplicates=prepared.duplicates, drift_columns=prepared.drift,
                    status="loaded" if ok else "refused",
                )
                reports.append(report)
                audits.append({**asdict(report), "drift_columns": json.dumps(report.drift_columns),
                               "critical_failures": json.dumps(prepared.outcome.critical_failures), "loaded_at": now})
                if ok:
                    bodies.append(_body(prepared, interval, now, spec.source))
                    rejects.append(_rejects(spec, prepared, interval, now))
                else:
                    refused.append((interval, prepared))
                if prepared.scrub_rows:
                    scrubs.append((interval, prepared))
            loaded_keys = [iv.key for iv, p in zip(ivs, prepared_all) if p.outcome.success]
            del prepared_all
            wh.replace_rows("ops", "load_audit", pd.DataFrame(audits),
                            where={"source": spec.source, "object": spec.name, "interval_key": [iv.key for iv in ivs]},
                            con=con)
            if loaded_keys:
                frames = [b for b in bodies if len(b)]
                body = pd.concat(frames, ignore_index=True) if len(frames) > 1 else (frames or bodies)[0]
                del bodies, frames
                wh.replace_rows("bronze", spec.bronze_table, body, where={"_interval_key": loaded_keys}, con=con)
                del body
                frames = [r for r in rejects if len(r)]
                rej = pd.concat(frames, ignore_index=True) if len(frames) > 1 else (frames or rejects)[0]
                wh.replace_rows("bronze", "rejected_records", rej,
                                where={"source": spec.source, "object": spec.name, "interval_key": loaded_keys},
                                con=con)
    _scrub_suppressed(zone, spec, [iv for iv, _ in scrubs], [p for _, p in scrubs])
    for r in reports:
        if r.status == "loaded":
            log.info(r.line())
    if refused:
        details = "; ".join(f"{iv.key}: " + "; ".join(p.outcome.critical_failures) for iv, p in refused[:3])
        raise BatchRefused(f"{spec.source}.{spec.name}: {len(refused)} batch(es) not loaded: {details}")
    return reports


def _scrub_suppressed(zone: LandingZone, spec: ObjectSpec, intervals: list[Interval],
                      prepared_all: list[PreparedBatch]) -> None:
    """Replace landed lines of suppressed people by tombstones, so that the raw record does not
    stay in the landing zone (re-loading the batch gives the same result)."""
    from retailpulse.erasure import rewrite_landing_batch

    for interval, prepared in zip(intervals, prepared_all):
        if not prepared.scrub_rows:
            continue
        try:
            rewrite_landing_batch(zone, spec.source, spec.name, interval, set(prepared.scrub_rows),
                                  expected_batch_id=prepared.batch_id)
        except OSError as exc:  # the load stands; the next load of the batch tries again
            log.warning("%s.%s %s: could not tombstone %d suppressed landed records: %s", spec.source, spec.name,
                        interval.key, len(prepared.scrub_rows), type(exc).__name__)


def load_batch(wh: Warehouse, zone: LandingZone, spec: ObjectSpec, interval: Interval) -> LoadReport:
    """Validate and load one landed batch. Raises BatchRefused on a critical failure."""
    return load_batches(wh, zone, spec, [interval])[0]
