"""Great Expectations checks for every landed batch (pandas engine).

The suite of an object is derived from its :class:`~ingestion.spec.ObjectSpec`: critical
expectations (a required column missing, too many rejected rows, a collapse in volume) refuse
the whole batch; row-level expectations (keys not null and unique, formats, accepted values,
ranges) send the failing rows to ``bronze.rejected_records`` with the expectation's name.
GX's SQL engine on DuckDB is broken upstream (issues 10738, 11579), so batches are validated
as pandas frames before they reach the warehouse.
"""

from __future__ import annotations

import logging
import os
import statistics
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ingestion.spec import ObjectSpec

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
log = logging.getLogger(__name__)


@dataclass
class ValidationOutcome:
    suite: str
    success: bool
    critical_failures: list[str] = field(default_factory=list)
    row_rejects: dict[int, list[str]] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)
    # the GX validation result (unexpected lists trimmed), rendered by Data Docs
    gx_result: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "success": self.success,
            "critical_failures": self.critical_failures,
            "rejected_rows": len(self.row_rejects),
            "results": self.results,
            "gx_result": self.gx_result,
        }


GX_LIST_KEYS = ("unexpected_list", "unexpected_index_list", "partial_unexpected_list",
                "partial_unexpected_index_list", "partial_unexpected_counts")


def _trimmed_gx_result(result: Any, keep: int = 20) -> dict[str, Any] | None:
    """The GX result as JSON, with per-row lists cut to ``keep`` items (sidecars stay small)."""
    try:
        data = result.to_json_dict()
    except Exception:  # noqa: BLE001 - docs are a nicety, validation must not fail on them
        return None
    for r in data.get("results", []):
        info = r.get("result") or {}
        for k in GX_LIST_KEYS:
            if isinstance(info.get(k), list) and len(info[k]) > keep:
                info[k] = info[k][:keep]
        info.pop("unexpected_index_query", None)
    return data


def _quiet_gx() -> None:
    for name in ("great_expectations", "great_expectations.core", "great_expectations._docs_decorators",
                 "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.WARNING)


def build_suite(
    spec: ObjectSpec,
    present_columns: set[str],
    recent_volumes: list[int],
    *,
    table_level: bool = True,
    batch_column: str | None = None,
) -> list[tuple[Any, bool]]:
    """(expectation, is_critical) pairs for a batch with the given columns.

    ``table_level=False`` leaves out the table-level (critical) expectations, which
    :func:`validate_batches` evaluates per batch; ``batch_column`` makes key uniqueness
    per batch when several batches are validated as one frame.
    """
    import great_expectations as gx

    E = gx.expectations
    out: list[tuple[Any, bool]] = []
    if table_level:
        for col in spec.critical_columns:
            out.append((E.ExpectColumnToExist(column=col), True))
        if recent_volumes and spec.min_volume_ratio > 0:
            floor = int(statistics.median(recent_volumes) * spec.min_volume_ratio)
            out.append((E.ExpectTableRowCountToBeBetween(min_value=floor), True))
    for f in spec.fields:
        if f.name not in present_columns:
            continue
        if f.required or f.name == spec.key:
            out.append((E.ExpectColumnValuesToNotBeNull(column=f.name), False))
        if f.name == spec.key:
            if batch_column:
                out.append((E.ExpectCompoundColumnsToBeUnique(column_list=[batch_column, f.name]), False))
            else:
                out.append((E.ExpectColumnValuesToBeUnique(column=f.name), False))
        if f.pattern:
            out.append((E.ExpectColumnValuesToMatchRegex(column=f.name, regex=f.pattern), False))
        if f.accepted:
            out.append((E.ExpectColumnValuesToBeInSet(column=f.name, value_set=list(f.accepted)), False))
        if f.min_value is not None or f.max_value is not None:
            out.append((E.ExpectColumnValuesToBeBetween(column=f.name, min_value=f.min_value, max_value=f.max_value), False))
    return out


GX_SAMPLE_ROWS = int(os.environ.get("RETAILPULSE_GX_SAMPLE_ROWS", "20000"))


def _label(exp: Any) -> str:
    cfg = exp.configuration if hasattr(exp, "configuration") else exp
    kwargs = cfg.kwargs
    column = kwargs.get("column") or ",".join(c for c in (kwargs.get("column_list") or []) if c != "_batch_no") or None
    return f"{cfg.type}({column})" if column else cfg.type


def row_level_checks(expectations: list[tuple[Any, bool]], data: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """The row-level expectations of a suite evaluated with pandas on every row:
    (label, mask of failing rows) per expectation, same rules as GX's pandas engine (nulls are
    not checked except by not-null; uniqueness flags every copy)."""
    out = []
    for exp, critical in expectations:
        if critical:
            continue
        name = type(exp).__name__
        kw = exp.configuration.kwargs
        label = _label(exp)
        if name == "ExpectCompoundColumnsToBeUnique":
            cols = list(kw["column_list"])
            sub = data[cols]
            ok_rows = sub.notna().all(axis=1)
            bad = ok_rows & sub.duplicated(keep=False)
            out.append((label, bad))
            continue
        col = data[kw["column"]]
        present = col.notna()
        if name == "ExpectColumnValuesToNotBeNull":
            bad = ~present
        elif name == "ExpectColumnValuesToBeUnique":
            bad = present & col.duplicated(keep=False)
        elif name == "ExpectColumnValuesToMatchRegex":  # only the set values are matched
            hit = col[present].astype(str).str.contains(kw["regex"], regex=True).fillna(False).astype(bool)
            bad = pd.Series(False, index=col.index)
            bad[present.to_numpy()] = ~hit.to_numpy()
        elif name == "ExpectColumnValuesToBeInSet":
            bad = present & ~col.isin(list(kw["value_set"]))
        elif name == "ExpectColumnValuesToBeBetween":
            num = pd.to_numeric(col, errors="coerce")
            bad = present & num.isna()
            if kw.get("min_value") is not None:
                bad |= present & (num < kw["min_value"])
            if kw.get("max_value") is not None:
                bad |= present & (num > kw["max_value"])
        else:
            raise ValueError(f"no row-level implementation for {name}")
        out.append((label, bad.fillna(False).astype(bool)))
    return out


def validate_frame(
    spec: ObjectSpec,
    frame: pd.DataFrame,
    present_columns: set[str],
    recent_volumes: list[int] | None = None,
    *,
    table_level: bool = True,
    batch_column: str | None = None,
    sample_rows: int | None = None,
) -> ValidationOutcome:
    """Validate ``frame`` (typed, one row per landed record) with the object's suite.

    Up to ``sample_rows`` rows (``RETAILPULSE_GX_SAMPLE_ROWS``, 20,000) Great Expectations runs
    on the whole frame. Above that, the row-level expectations are evaluated on every row with
    pandas (:func:`row_level_checks`, the same rules) and Great Expectations runs the suite on
    a sample: the first rows plus the rows the pandas checks flagged (up to the sample size);
    its result is the batch's Data Docs record and its failing rows are rejected too, so the
    two engines can only add rejects, never hide one."""
    limit = GX_SAMPLE_ROWS if sample_rows is None else sample_rows
    if len(frame) <= limit:
        return _validate_gx(spec, frame, present_columns, recent_volumes, table_level=table_level,
                            batch_column=batch_column)
    volumes = recent_volumes or []
    expectations = build_suite(spec, present_columns, volumes, table_level=False, batch_column=batch_column)
    cols = [c for c in frame.columns if c in present_columns]
    data = frame[cols].reset_index(drop=True)
    checks = row_level_checks(expectations, data)
    flagged = np.zeros(len(data), dtype=bool)
    for _, bad in checks:
        flagged |= bad.to_numpy()
    head = np.arange(min(limit, len(data)))
    extra = np.flatnonzero(flagged)[: limit // 2]
    sample_pos = np.unique(np.concatenate([head[: limit - len(extra)], extra]))
    sample = frame.iloc[sample_pos]
    if batch_column:  # uniqueness is checked on every row above; the sample keeps it per batch
        pass
    outcome = _validate_gx(spec, sample, present_columns, recent_volumes, table_level=table_level,
                           batch_column=batch_column)
    gx_rejects = {int(sample_pos[pos]): rules for pos, rules in outcome.row_rejects.items()}
    outcome.row_rejects = {}
    for label, bad in checks:
        for pos in np.flatnonzero(bad.to_numpy()):
            outcome.row_rejects.setdefault(int(pos), []).append(label)
    disagree = 0
    for pos, rules in gx_rejects.items():
        have = outcome.row_rejects.setdefault(pos, [])
        for r in rules:
            if r not in have:
                have.append(r)
                disagree += 1
    if disagree:
        log.warning("%s: Great Expectations rejected %d row/rule pairs the pandas checks did not", spec.suite_name,
                    disagree)
    counts = {label: int(bad.sum()) for label, bad in checks}
    for r in outcome.results:
        if r["expectation"] in counts and not r["critical"]:
            r["unexpected_count"] = counts[r["expectation"]]
            r["success"] = counts[r["expectation"]] == 0 and r["success"]
    outcome.results.append({"expectation": "gx_sample_rows", "success": True, "critical": False,
                            "unexpected_count": None, "observed_value": f"{len(sample_pos)} of {len(frame)}"})
    return outcome


def _validate_gx(
    spec: ObjectSpec,
    frame: pd.DataFrame,
    present_columns: set[str],
    recent_volumes: list[int] | None = None,
    *,
    table_level: bool = True,
    batch_column: str | None = None,
) -> ValidationOutcome:
    """Run the object's suite on ``frame`` with Great Expectations (pandas engine)."""
    import great_expectations as gx

    _quiet_gx()
    volumes = recent_volumes or []
    if frame.empty and spec.extra.get("volume_check") == "non_empty":
        volumes = []  # the source legitimately has empty batches (e.g. a GA4 export day with no file)
    expectations = build_suite(spec, present_columns, volumes, table_level=table_level, batch_column=batch_column)
    if frame.empty:
        # an empty batch carries no columns: column-existence checks apply to batches with records
        expectations = [(e, c) for e, c in expectations if type(e).__name__ != "ExpectColumnToExist"]
    outcome = ValidationOutcome(suite=spec.suite_name, success=True)
    if not expectations:
        return outcome
    # validate only columns that were present in the batch; GX works on a plain object frame
    cols = [c for c in frame.columns if c in present_columns]
    data = frame[cols].copy()
    for c in data.columns:
        if str(data[c].dtype) in ("string", "boolean", "Int64") or isinstance(data[c].dtype, pd.ArrowDtype):
            data[c] = data[c].astype("object").where(data[c].notna(), None)
    data = data.reset_index(drop=True)

    context = gx.get_context(mode="ephemeral")
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_pandas(f"{spec.source}")
    asset = source.add_dataframe_asset(spec.name)
    batch_def = asset.add_batch_definition_whole_dataframe("batch")
    suite = gx.ExpectationSuite(name=spec.suite_name)
    critical: dict[int, bool] = {}
    for exp, is_critical in expectations:
        added = suite.add_expectation(exp)
        critical[id(added)] = is_critical
    criticality = [c for _, c in expectations]
    suite = context.suites.add(suite)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{spec.suite_name}.batch", data=batch_def, suite=suite)
    )
    result = definition.run(
        batch_parameters={"dataframe": data},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": []},
    )
    outcome.gx_result = _trimmed_gx_result(result)
    by_config = {str(e.configuration): c for (e, c) in zip(suite.expectations, criticality)}
    for r in result.results:
        cfg = r.expectation_config
        is_critical = by_config.get(str(cfg), False)
        name = cfg.type
        column = cfg.kwargs.get("column") or ",".join(
            c for c in (cfg.kwargs.get("column_list") or []) if c != "_batch_no") or None
        label = f"{name}({column})" if column else name
        info = r.result or {}
        outcome.results.append({
            "expectation": label,
            "success": bool(r.success),
            "critical": is_critical,
            "unexpected_count": info.get("unexpected_count"),
            "observed_value": info.get("observed_value"),
        })
        if r.success:
            continue
        if is_critical or not info.get("unexpected_index_list"):
            raised = (r.exception_info or {}).get("exception_message") if r.exception_info else None
            outcome.critical_failures.append(
                f"{label} failed" + (f": {raised}" if raised else f" (observed {info.get('observed_value')!r})")
            )
            continue
        for idx in info.get("unexpected_index_list") or []:
            row = int(idx if not isinstance(idx, dict) else next(iter(idx.values())))
            outcome.row_rejects.setdefault(row, []).append(label)
    outcome.success = not outcome.critical_failures
    return outcome


def _table_level_checks(spec: ObjectSpec, frame: pd.DataFrame, present: set[str], volumes: list[int]) -> ValidationOutcome:
    """The critical, table-level expectations of one batch (same rules as the GX suite)."""
    outcome = ValidationOutcome(suite=spec.suite_name, success=True)
    if len(frame):
        for col in spec.critical_columns:
            ok = col in present
            outcome.results.append({"expectation": f"expect_column_to_exist({col})", "success": ok, "critical": True,
                                    "unexpected_count": None, "observed_value": None})
            if not ok:
                outcome.critical_failures.append(f"expect_column_to_exist({col}) failed (absent from the batch)")
    empty_ok = frame.empty and spec.extra.get("volume_check") == "non_empty"
    if volumes and spec.min_volume_ratio > 0 and not empty_ok:
        floor = int(statistics.median(volumes) * spec.min_volume_ratio)
        ok = len(frame) >= floor
        outcome.results.append({"expectation": "expect_table_row_count_to_be_between", "success": ok, "critical": True,
                                "unexpected_count": None, "observed_value": len(frame)})
        if not ok:
            outcome.critical_failures.append(
                f"expect_table_row_count_to_be_between failed (observed {len(frame)}, at least {floor} expected "
                f"from the recent median {statistics.median(volumes):g})"
            )
    outcome.success = not outcome.critical_failures
    return outcome


def validate_batches(
    spec: ObjectSpec,
    frames: list[pd.DataFrame],
    presents: list[set[str]],
    recent_volumes: list[list[int]] | None = None,
) -> list[ValidationOutcome]:
    """Validate several landed batches of one object with ONE Great Expectations run.

    GX's fixed cost per run (about a second) dominates small batches, and a range run lands
    hundreds of them (GA4 has one per export day). Table-level expectations (column exists,
    volume) are evaluated per batch; row-level ones run once over the batches concatenated,
    with key uniqueness per batch, and failing rows are mapped back to their batch.
    """
    vols = recent_volumes or [[] for _ in frames]
    outcomes = [_table_level_checks(spec, f, p, v) for f, p, v in zip(frames, presents, vols)]
    live = [i for i, (f, o) in enumerate(zip(frames, outcomes)) if o.success and len(f)]
    if not live:
        return outcomes
    if len(live) == 1:
        i = live[0]
        row = validate_frame(spec, frames[i], presents[i], None, table_level=False)
        outcomes[i].results.extend(row.results)
        outcomes[i].row_rejects = row.row_rejects
        outcomes[i].critical_failures.extend(row.critical_failures)
        outcomes[i].gx_result = row.gx_result
        outcomes[i].success = not outcomes[i].critical_failures
        return outcomes
    parts, owners = [], []
    for i in live:
        part = frames[i].reset_index(drop=True)
        part.insert(0, "_batch_no", i)
        parts.append(part)
        owners.extend((i, pos) for pos in range(len(part)))
    combined = pd.concat(parts, ignore_index=True)
    present = set().union(*(presents[i] for i in live)) | {"_batch_no"}
    row = validate_frame(spec, combined, present, None, table_level=False, batch_column="_batch_no")
    for i in live:
        outcomes[i].results.extend(row.results)
        outcomes[i].gx_result = row.gx_result
        outcomes[i].critical_failures.extend(row.critical_failures)
    for pos, rules in row.row_rejects.items():
        i, local = owners[pos]
        outcomes[i].row_rejects.setdefault(local, []).extend(rules)
    for o in outcomes:
        o.success = not o.critical_failures
    return outcomes
