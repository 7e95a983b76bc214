"""Incremental models rebuilt in full when their logic changed since they were last built.

A daily build runs the incremental models incrementally: rows written by earlier runs stay as
those runs computed them. After an upgrade that changes a model's SQL (or a model, seed or macro
it reads, or a project var), those older rows follow the old rules while the new rows follow the
new ones, and no later daily run repairs them. So every build through
:func:`retailpulse.dbt_runner.run_dbt` records, per incremental model it built, the *logic
fingerprint* it was built with (table ``ops.dbt_incremental_logic``), and a later build rebuilds
in full (dbt's ``--full-refresh``, for that model alone, at its place in the build) every
incremental model whose fingerprint differs from the recorded one (macro ``should_full_refresh``
in ``dbt/macros/full_refresh.sql``, var ``rp_full_refresh_models``).

The fingerprint of an incremental model digests: the code of the model and of every model, seed
and snapshot upstream of it (dbt's checksums), their configs (materialization, keys, hooks, ...;
not descriptions, docs, tags or meta), the SQL of every macro they call (read from their SQL and
hooks, with the macros those call), and the project vars (``dbt_project.yml`` and the command
line) but those that only choose the days a run re-processes (:data:`OPERATIONAL_VARS`). A change
anywhere above a model therefore rebuilds it and every incremental model below it, whose rows
were derived from it. A model without a recorded fingerprint (built before this record existed) counts as
current: the record starts with its first build by this version.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from retailpulse.warehouse import Warehouse, ident

log = logging.getLogger(__name__)

RECORD_SCHEMA, RECORD_TABLE = "ops", "dbt_incremental_logic"
FULL_REFRESH_VAR = "rp_full_refresh_models"  # read by dbt/macros/full_refresh.sql
# vars that choose which days a run re-processes, not how rows are computed (dbt_project.yml):
# raising them after an outage widens the window, it does not rebuild the incremental models
OPERATIONAL_VARS = frozenset({FULL_REFRESH_VAR, "ga4_lookback_days", "ga4_extra_lookback_days"})
# config keys that document a model without changing the rows it computes
_DOC_KEYS = frozenset({"docs", "meta", "tags", "persist_docs", "grants", "group", "access", "description"})
_RENDERED = ("model", "seed", "snapshot")


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def project_vars(project_dir: Path, cli_vars: Mapping[str, Any]) -> dict[str, Any]:
    """The vars that make a model's logic: ``dbt_project.yml``'s, then the command line's (which
    win), without the :data:`OPERATIONAL_VARS`."""
    data = yaml.safe_load((project_dir / "dbt_project.yml").read_text()) or {}
    merged = {**(data.get("vars") or {}), **cli_vars}
    return {k: v for k, v in merged.items() if k not in OPERATIONAL_VARS}


def logic_fingerprints(manifest: Mapping[str, Any], vars: Mapping[str, Any]) -> dict[str, str]:
    """The logic fingerprint of every incremental model of ``manifest`` (dbt's manifest.json),
    by unique id (see the module docstring)."""
    nodes: Mapping[str, Any] = manifest["nodes"]
    macros: Mapping[str, Any] = manifest.get("macros") or {}
    upstream: dict[str, set[str]] = {}

    def ancestors(uid: str) -> set[str]:
        if uid not in upstream:
            upstream[uid] = set()  # a cycle (impossible in dbt) ends here
            found: set[str] = set()
            for parent in nodes[uid]["depends_on"].get("nodes", []):
                if parent in nodes and nodes[parent]["resource_type"] in _RENDERED:
                    found |= {parent} | ancestors(parent)
            upstream[uid] = found
        return upstream[uid]

    def macro_closure(ids: Iterable[str]) -> set[str]:
        seen: set[str] = set()
        todo = [m for m in ids if m in macros]
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(d for d in (macros[m].get("depends_on") or {}).get("macros", []) if d in macros)
        return seen

    project_vars_digest = _digest(vars)
    out: dict[str, str] = {}
    for uid, node in sorted(nodes.items()):
        if node["resource_type"] != "model" or node["config"].get("materialized") != "incremental":
            continue
        members = sorted({uid} | ancestors(uid))
        h = hashlib.sha256()
        for m in members:
            n = nodes[m]
            config = {k: v for k, v in n["config"].items() if k not in _DOC_KEYS}
            h.update(f"{m}\0{n['checksum']['checksum']}\0{_digest(config)}\0".encode())
        used = macro_closure(mac for m in members for mac in _called_macros(nodes[m], macros))
        for m in sorted(used):
            h.update(f"{m}\0{hashlib.sha256(macros[m].get('macro_sql', '').encode()).hexdigest()}\0".encode())
        h.update(project_vars_digest.encode())
        out[uid] = h.hexdigest()
    return out


# a call in Jinja: name( or package.name( (SQL functions match too; those that are not macros are
# not found, the few that share a dbt macro's name only add that macro)
_CALL = re.compile(r"\b([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?)\s*\(")


def _called_macros(node: Mapping[str, Any], macros: Mapping[str, Any]) -> set[str]:
    """The macros a node's SQL and hooks call, read from their text. Not the manifest's
    ``depends_on.macros``: dbt adds to it the macros a build happened to call at run time (e.g.
    ``should_full_refresh`` once a relation exists), so it differs between manifests of one project."""
    config = node["config"]
    text = "\n".join([node.get("raw_code") or "", json.dumps(config.get("pre-hook") or []),
                      json.dumps(config.get("post-hook") or [])])
    package = node.get("package_name") or ""
    found: set[str] = set()
    for name in set(_CALL.findall(text)):
        qualified = [f"macro.{name}"] if "." in name else [f"macro.{package}.{name}", f"macro.dbt.{name}"]
        found.update(q for q in qualified if q in macros)
    return found


def recorded(wh: Warehouse) -> dict[str, str]:
    """The recorded fingerprints by model (empty before the first build that records them)."""
    schema = wh.schema_name(RECORD_SCHEMA)
    with wh.connect() as con:  # one open of the database for both statements
        if not wh._column_types(con, schema, RECORD_TABLE):
            return {}
        rows = wh._exec(con, f"select model_id, logic_fingerprint from {ident(schema)}.{ident(RECORD_TABLE)}").fetchall()
    return {str(m): str(f) for m, f in rows}


def changed_models(current: Mapping[str, str], record: Mapping[str, str]) -> list[str]:
    """Incremental models whose logic differs from the logic they were last built with."""
    return sorted(uid for uid, fp in current.items() if uid in record and record[uid] != fp)


def record_built(wh: Warehouse, current: Mapping[str, str], built: Iterable[str]) -> int:
    """Record the fingerprints of the incremental models ``built`` (successfully) now."""
    ids = sorted(set(built) & set(current))
    if not ids:
        return 0
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    frame = pd.DataFrame({"model_id": ids, "logic_fingerprint": [current[i] for i in ids], "built_at": [now] * len(ids)})
    return wh.replace_rows(RECORD_SCHEMA, RECORD_TABLE, frame, where={"model_id": ids})


def read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        with path.open() as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None
