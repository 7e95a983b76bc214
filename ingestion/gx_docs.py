"""Great Expectations suites as files, and Data Docs built from the recorded validations.

* ``great_expectations/expectations/<source>.<object>.json`` — one expectation suite per source
  object, generated from its :class:`~ingestion.spec.ObjectSpec` by :func:`write_suites`
  (``python -m ingestion.gx_docs write-suites``) and committed; a test checks that the committed
  files match the specs (:func:`check_suites`). The loader validates every batch with the same
  rules (:func:`ingestion.validation.build_suite`), so the files document exactly what runs.
  Each expectation's ``meta`` says whether a failure refuses the whole batch (critical) or
  sends the failing rows to ``bronze.rejected_records``.
* :func:`build_data_docs` renders GX Data Docs (HTML) into ``<data>/gx_docs``: the suites plus one
  validation page per landed batch, from the ``validation.json`` sidecar the loader writes
  beside every batch (``retailpulse docs`` calls it). When the loader validated several batches
  in one GX run, a batch's page shows that run's row-level results (over all its batches) and
  the batch's own table-level checks.

The folder ``great_expectations/`` deliberately holds no Python package (an ``__init__.py``
there would shadow the ``great_expectations`` library for code run from the project root).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from ingestion.spec import ObjectSpec

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
log = logging.getLogger(__name__)

SUITES_DIR = Path("great_expectations") / "expectations"
SITE_NAME = "retailpulse"
VALIDATION_SIDECAR = "validation.json"

# rules the loader applies outside GX (documented in every suite's meta)
LOADER_RULES = {
    "malformed_json": "a landed line that is not a JSON object -> rejected_records",
    "duplicate_record": "an exact repeat of an earlier record in the batch -> rejected_records",
    "type:<field>": "a value that cannot be cast to the declared type -> rejected_records",
    "duplicate_key_superseded": "an earlier record with the same key in the batch (the last one is kept) "
                                "-> rejected_records",
}


def all_specs() -> list[ObjectSpec]:
    """Every declared object: the registered connectors' and the transaction import's."""
    from ingestion.connectors import SOURCES, get_specs
    from ingestion.transactions import SPECS as IMPORT_SPECS

    specs = [spec for source in SOURCES for spec in get_specs(source).values()]
    specs.extend(IMPORT_SPECS.values())
    return specs


def suite_dict(spec: ObjectSpec) -> dict[str, Any]:
    """The spec's expectation suite as a GX suite JSON document (deterministic, no ids)."""
    from ingestion.validation import build_suite

    expectations = []
    for exp, critical in build_suite(spec, {f.name for f in spec.fields}, []):
        cfg = exp.configuration
        expectations.append({
            "type": cfg.type,
            "kwargs": {k: v for k, v in dict(cfg.kwargs).items() if k != "batch_id"},
            "meta": {"critical": critical,
                     "on_failure": "the batch is refused (nothing loads)" if critical
                     else "failing rows go to bronze.rejected_records"},
        })
    if spec.min_volume_ratio > 0:
        expectations.append({
            "type": "expect_table_row_count_to_be_between",
            "kwargs": {"min_value": {"$PARAMETER": "volume_floor"}},
            "meta": {"critical": True, "on_failure": "the batch is refused (nothing loads)",
                     "volume_floor": f"{spec.min_volume_ratio:g} x the median of the last 7 loaded batches"
                     + (" (empty batches exempt)" if spec.extra.get("volume_check") == "non_empty" else "")},
        })
    return {
        "name": spec.suite_name,
        "expectations": expectations,
        "meta": {
            "source": spec.source,
            "object": spec.name,
            "bronze_table": f"bronze.{spec.bronze_table}",
            "key": spec.key,
            "description": spec.description,
            "typed_fields": {f.name: f.type for f in spec.fields},
            "max_reject_fraction": spec.max_reject_fraction,
            "loader_rules": {**LOADER_RULES,
                             f"rejected_fraction_at_most_{spec.max_reject_fraction:g}":
                                 "more rejected rows than that fraction of the batch refuses the batch"},
            "generated_by": "python -m ingestion.gx_docs write-suites (from the ObjectSpec; do not edit)",
        },
        "notes": {"format": "markdown",
                  "content": [f"Expectations for `{spec.source}.{spec.name}`, loaded into "
                              f"`bronze.{spec.bronze_table}`. {spec.description}"]},
    }


def suites_dir(home: Path | None = None) -> Path:
    if home is None:
        home = Path(__file__).resolve().parent.parent
    return Path(home) / SUITES_DIR


def _suite_text(spec: ObjectSpec) -> str:
    return json.dumps(suite_dict(spec), indent=2, sort_keys=False, default=str) + "\n"


def write_suites(home: Path | None = None) -> list[Path]:
    """(Re)write every suite file from the specs; removes files of objects that no longer exist."""
    out_dir = suites_dir(home)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    wanted = set()
    for spec in all_specs():
        path = out_dir / f"{spec.suite_name}.json"
        wanted.add(path.name)
        text = _suite_text(spec)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    for stale in out_dir.glob("*.json"):
        if stale.name not in wanted:
            stale.unlink()
    return written


def check_suites(home: Path | None = None) -> list[str]:
    """Differences between the committed suite files and the specs (empty = in sync)."""
    out_dir = suites_dir(home)
    problems = []
    wanted = set()
    for spec in all_specs():
        path = out_dir / f"{spec.suite_name}.json"
        wanted.add(path.name)
        if not path.exists():
            problems.append(f"{path.name}: missing")
        elif path.read_text() != _suite_text(spec):
            problems.append(f"{path.name}: differs from the spec of {spec.source}.{spec.name}")
    if out_dir.exists():
        problems.extend(f"{p.name}: no such object" for p in out_dir.glob("*.json") if p.name not in wanted)
    return problems


# --------------------------------------------------------------------------------------------
# Data Docs
# --------------------------------------------------------------------------------------------
_NO_EXCEPTION = {"raised_exception": False, "exception_traceback": None, "exception_message": None}
_LABEL = re.compile(r"^(?P<type>[a-z_]+)(?:\((?P<column>[^)]*)\))?$")


def _config(type_: str, kwargs: dict[str, Any], meta: dict[str, Any] | None = None) -> Any:
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    return ExpectationConfiguration(type=type_, kwargs=kwargs, meta=meta or {})


def _validation_result(sidecar: dict[str, Any], meta: dict[str, Any]) -> Any:
    """A GX ExpectationSuiteValidationResult from a loader sidecar (GX part + the loader's
    table-level checks, which run outside GX)."""
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )

    results = []
    gx_part = sidecar.get("gx_result") or {}
    seen_types: set[tuple[str, str | None]] = set()
    for r in gx_part.get("results") or []:
        cfg = r.get("expectation_config") or {}
        kwargs = {k: v for k, v in (cfg.get("kwargs") or {}).items() if k != "batch_id"}
        type_ = cfg.get("type", "expect_column_to_exist")
        if "column_list" in kwargs:
            # several batches validated in one run: key uniqueness was checked per batch
            cols = [c for c in kwargs.pop("column_list") if c != "_batch_no"]
            if len(cols) == 1 and type_ == "expect_compound_columns_to_be_unique":
                type_, kwargs["column"] = "expect_column_values_to_be_unique", cols[0]
            else:
                kwargs["column_list"] = cols
        seen_types.add((type_, kwargs.get("column")))
        results.append(ExpectationValidationResult(
            success=bool(r.get("success")), result=r.get("result") or {},
            expectation_config=_config(type_, kwargs, cfg.get("meta")),
            exception_info={**_NO_EXCEPTION, **(r.get("exception_info") or {})},
        ))
    for r in sidecar.get("results") or []:  # table-level checks (and everything, if GX did not run)
        m = _LABEL.match(str(r.get("expectation", "")))
        if not m or (m.group("type"), m.group("column")) in seen_types or (gx_part and not r.get("critical")):
            continue
        if m.group("type") == "expect_compound_columns_to_be_unique":
            continue  # per-batch key uniqueness: shown as expect_column_values_to_be_unique by GX's part
        kwargs: dict[str, Any] = {}
        if m.group("column"):
            kwargs["column"] = m.group("column")
        if m.group("type") == "expect_table_row_count_to_be_between":
            kwargs["min_value"] = 0
        result: dict[str, Any] = {}
        if r.get("observed_value") is not None:
            result["observed_value"] = r["observed_value"]
        if r.get("unexpected_count") is not None:
            result["unexpected_count"] = r["unexpected_count"]
        results.append(ExpectationValidationResult(
            success=bool(r.get("success")), result=result,
            expectation_config=_config(m.group("type"), kwargs, {"critical": bool(r.get("critical"))}),
            exception_info=dict(_NO_EXCEPTION),
        ))
    ok = sum(1 for r in results if r.success)
    stats = {"evaluated_expectations": len(results), "successful_expectations": ok,
             "unsuccessful_expectations": len(results) - ok,
             "success_percent": (100.0 * ok / len(results)) if results else None}
    return ExpectationSuiteValidationResult(
        success=bool(sidecar.get("success")), results=results, suite_name=sidecar.get("suite") or meta["suite"],
        statistics=stats, meta={**(gx_part.get("meta") or {}), **meta},
    )


def _iter_sidecars(landing: Path):
    if not landing.exists():
        return
    for path in sorted(landing.glob(f"*/*/*/{VALIDATION_SIDECAR}")):
        batch_dir = path.parent
        if batch_dir.name.startswith("."):
            continue
        try:
            sidecar = json.loads(path.read_text())
            manifest = json.loads((batch_dir / "manifest.json").read_text())
        except (OSError, ValueError):
            log.warning("skipping unreadable validation sidecar %s", path)
            continue
        yield batch_dir, sidecar, manifest


def build_data_docs(settings: Any, *, clean: bool = True) -> Path:
    """Render GX Data Docs into ``<data>/gx_docs`` and return its ``index.html``.

    Expectation suites come from ``great_expectations/expectations`` (the specs when a file is
    missing); validation results from every landed batch's ``validation.json``.
    """
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    for name in ("great_expectations", "great_expectations.core", "great_expectations._docs_decorators",
                 "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.WARNING)
    out = Path(settings.data_path) / "gx_docs"
    if clean and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    context.add_data_docs_site(SITE_NAME, {
        "class_name": "SiteBuilder",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(out)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    })
    home = Path(getattr(settings, "home", Path(__file__).resolve().parent.parent))
    committed = suites_dir(home)
    for spec in all_specs():
        path = committed / f"{spec.suite_name}.json"
        doc = json.loads(path.read_text()) if path.exists() else suite_dict(spec)
        context.suites.add(gx.ExpectationSuite(name=doc["name"], expectations=doc["expectations"],
                                               meta=doc.get("meta"), notes=doc.get("notes")))
    count = 0
    for batch_dir, sidecar, manifest in _iter_sidecars(Path(settings.landing_path)):
        suite = sidecar.get("suite") or f"{manifest['source']}.{manifest['object']}"
        meta = {"suite": suite, "source": manifest["source"], "object": manifest["object"],
                "interval_key": manifest["interval_key"], "batch_id": manifest["batch_id"],
                "record_count": manifest["record_count"], "critical_failures": sidecar.get("critical_failures"),
                "rejected_rows": sidecar.get("rejected_rows")}
        run_time = manifest.get("extracted_at") or dt.datetime.now(dt.timezone.utc).isoformat()
        run_id = RunIdentifier(run_name=manifest["interval_key"], run_time=run_time)
        meta["run_id"] = run_id
        meta["active_batch_definition"] = {
            "datasource_name": manifest["source"], "data_connector_name": "landing",
            "data_asset_name": f"{manifest['source']}.{manifest['object']} {manifest['interval_key']}",
            "batch_identifiers": {"interval_key": manifest["interval_key"]},
        }
        try:
            result = _validation_result(sidecar, meta)
        except Exception as exc:  # noqa: BLE001 - one odd sidecar must not stop the docs
            log.warning("cannot render the validation of %s: %s", batch_dir, exc)
            continue
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite),
            run_id=run_id, batch_identifier=manifest["batch_id"],
        )
        context.validation_results_store.set(key, result)
        count += 1
    sites = context.build_data_docs(site_names=[SITE_NAME])
    index = out / "index.html"
    log.info("GX Data Docs: %d suites, %d batch validations -> %s", len(all_specs()), count, sites.get(SITE_NAME))
    return index


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m ingestion.gx_docs")
    ap.add_argument("command", choices=("write-suites", "check-suites", "build-docs"))
    a = ap.parse_args(argv)
    if a.command == "write-suites":
        for p in write_suites():
            print(p)
        return 0
    if a.command == "check-suites":
        problems = check_suites()
        for p in problems:
            print(p)
        return 1 if problems else 0
    from retailpulse.settings import load_settings

    print(build_data_docs(load_settings()))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
