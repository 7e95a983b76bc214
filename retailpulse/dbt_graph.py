"""dbt in Airflow with one dbt process per run: the model graph from the manifest, reports from run_results.

The daily DAG runs ``dbt build`` once (task ``dbt.build``) for every node except the ML-fed
ones (models reading the dbt source ``ml`` that the ML stage writes, and everything below them:
:attr:`DbtNode.after_ml`), which task ``ml_score`` builds once after scoring; each build writes
dbt's ``run_results.json`` for the run. Then one light task per model, seed and snapshot
(``dbt.<name>``), wired like the manifest's graph (ML-fed ones after ``ml_score``), reports that
node's status, timing and the results of its tests, and fails when the node or one of its tests
failed. Imports only the standard library: DAG files call :func:`load_graph` at parse time.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RENDERED = ("model", "seed", "snapshot")
FAILED = ("error", "fail", "runtime error")
ML_SOURCE = "ml"  # the dbt source group of the tables the ML stage writes (dbt/models/marts/_ml__sources.yml)
ML_FED_SELECTOR = f"source:{ML_SOURCE}+"  # dbt selector: models reading them and everything below


@dataclass(frozen=True)
class DbtNode:
    unique_id: str
    name: str
    resource_type: str
    parents: tuple[str, ...]  # unique ids of rendered nodes this one selects from
    tests: tuple[str, ...] = field(default=())  # unique ids of its data and unit tests
    after_ml: bool = False  # reads the ML stage's tables (directly or below): built after ML scoring


def project_home() -> Path:
    env = os.environ.get("RETAILPULSE_HOME")
    return Path(env).resolve() if env else Path(__file__).resolve().parent.parent


def manifest_path() -> Path:
    """``RETAILPULSE_DBT_MANIFEST``, else ``<home>/dbt/target/manifest.json`` (``retailpulse init`` parses it)."""
    env = os.environ.get("RETAILPULSE_DBT_MANIFEST")
    return Path(env) if env else project_home() / "dbt" / "target" / "manifest.json"


def _topological(nodes: dict[str, list[str]]) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()

    def visit(uid: str, stack: tuple[str, ...]) -> None:
        if uid in seen:
            return
        if uid in stack:
            raise ValueError(f"cycle in the dbt graph at {uid}")
        for p in nodes[uid]:
            visit(p, (*stack, uid))
        seen.add(uid)
        order.append(uid)

    for uid in sorted(nodes):
        visit(uid, ())
    return order


def graph_from_manifest(manifest: dict[str, Any]) -> list[DbtNode]:
    """Rendered nodes (models, seeds, snapshots; ephemeral models folded into their children)
    in topological order, each with its parents, the tests attached to it and whether it is
    ML-fed. A test over an ML-fed node runs in the after-ML build (dbt's selection puts it there):
    it is reported by its most downstream ML-fed node."""
    all_nodes: dict[str, dict[str, Any]] = manifest["nodes"]
    sources: dict[str, dict[str, Any]] = manifest.get("sources") or {}
    fed: dict[str, bool] = {}

    def ml_fed(uid: str) -> bool:  # reads a source of the ML group, itself or through any model above it
        if uid not in fed:
            fed[uid] = False  # cycle guard
            deps = (all_nodes.get(uid) or {}).get("depends_on", {}).get("nodes", [])
            fed[uid] = any((sources.get(d) or {}).get("source_name") == ML_SOURCE
                           or (d in all_nodes and all_nodes[d]["resource_type"] == "model" and ml_fed(d))
                           for d in deps)
        return fed[uid]

    def is_rendered(n: dict[str, Any]) -> bool:
        return n["resource_type"] in RENDERED and (n.get("config") or {}).get("materialized") != "ephemeral"

    def rendered_parents(uid: str, seen: frozenset[str] = frozenset()) -> set[str]:
        out: set[str] = set()
        for p in (all_nodes.get(uid) or {}).get("depends_on", {}).get("nodes", []):
            node = all_nodes.get(p)
            if node is None or p in seen:
                continue  # sources, or a cycle guard
            if is_rendered(node):
                out.add(p)
            elif node["resource_type"] == "model":  # ephemeral: look through it
                out |= rendered_parents(p, seen | {p})
        return out

    parents = {uid: sorted(rendered_parents(uid)) for uid, n in all_nodes.items() if is_rendered(n)}
    order = _topological(parents)
    rank = {uid: i for i, uid in enumerate(order)}
    tests: dict[str, list[str]] = {uid: [] for uid in order}
    for uid, n in all_nodes.items():
        if n["resource_type"] != "test":
            continue
        owner = n.get("attached_node")
        deps = [d for d in n.get("depends_on", {}).get("nodes", []) if d in rank]
        after = [d for d in deps if ml_fed(d)]
        if after and not (owner in tests and ml_fed(owner)):  # runs after ML: reported there
            owner = max(after, key=rank.__getitem__)
        elif owner not in tests:  # singular tests over several models: the most downstream one
            owner = max(deps, key=rank.__getitem__) if deps else None
        if owner is not None:
            tests[owner].append(uid)
    for uid, ut in (manifest.get("unit_tests") or {}).items():
        deps = [d for d in ut.get("depends_on", {}).get("nodes", []) if d in rank]
        if deps:
            tests[max(deps, key=rank.__getitem__)].append(uid)
    return [DbtNode(uid, all_nodes[uid]["name"], all_nodes[uid]["resource_type"], tuple(parents[uid]),
                    tuple(sorted(tests[uid])), ml_fed(uid)) for uid in order]


def load_graph(path: Path | None = None) -> list[DbtNode] | None:
    """The graph from the manifest, or None (logged) when it is missing or unreadable."""
    path = path or manifest_path()
    try:
        with path.open() as fh:
            nodes = graph_from_manifest(json.load(fh))
    except FileNotFoundError:
        log.warning("dbt manifest %s not found (run `retailpulse init`): dbt runs as a single task", path)
        return None
    except Exception as exc:  # a half-written or foreign manifest must not break the DAG import
        log.warning("dbt manifest %s unreadable (%s: %s): dbt runs as a single task", path, type(exc).__name__, exc)
        return None
    if not nodes:
        log.warning("dbt manifest %s has no models: dbt runs as a single task", path)
        return None
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        log.warning("dbt manifest %s has duplicate node names: dbt runs as a single task", path)
        return None
    return nodes


def task_name(node: DbtNode) -> str:
    """A valid Airflow task id for the node (dbt names are already identifiers)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", node.name)


def run_results_path(data_path: Path, run_id: str, part: str = "build") -> Path:
    """Where the daily run ``run_id`` keeps dbt's run_results.json: of ``dbt.build`` (``part``
    "build") or of the ML-fed marts' build in ``ml_score`` ("ml")."""
    name = "run_results.json" if part == "build" else f"run_results_{part}.json"
    return data_path / "dbt_runs" / re.sub(r"[^A-Za-z0-9_.-]", "_", run_id) / name


def prune_run_results(data_path: Path, keep: int = 14) -> None:
    """Keep the run_results of the ``keep`` most recent runs."""
    root = data_path / "dbt_runs"
    if not root.is_dir():
        return
    runs = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in runs[keep:]:
        for f in old.iterdir():
            f.unlink()
        old.rmdir()


class NodeFailed(RuntimeError):
    pass


def node_report(results: dict[str, Any], node: DbtNode) -> dict[str, Any]:
    """The node's own result and its tests' from a run_results document.

    Raises NodeFailed, naming the node or tests, when the node errored, was not built in this
    run, or one of its tests failed or errored (warnings are reported, not failures).
    """
    by_id = {r["unique_id"]: r for r in results.get("results", [])}
    own = by_id.get(node.unique_id)
    if own is None:
        raise NodeFailed(f"{node.resource_type} {node.name} is not in this run's dbt results (not built)")
    tests = [by_id[t] for t in node.tests if t in by_id]
    report = {
        "node": node.unique_id,
        "status": own["status"],
        "seconds": round(float(own.get("execution_time") or 0.0), 3),
        "rows_affected": (own.get("adapter_response") or {}).get("rows_affected"),
        "tests": {"total": len(tests), "passed": sum(t["status"] == "pass" for t in tests),
                  "warned": sum(t["status"] == "warn" for t in tests),
                  "failed": sum(t["status"] in FAILED for t in tests),
                  "skipped": sum(t["status"] == "skipped" for t in tests),
                  "seconds": round(sum(float(t.get("execution_time") or 0.0) for t in tests), 3)},
        "not_run_tests": len(node.tests) - len(tests),
    }
    problems = []
    if own["status"] in FAILED or own["status"] == "skipped":
        problems.append(f"{node.resource_type} {node.name} {own['status']}: {str(own.get('message'))[:300]}")
    for t in tests:
        if t["status"] in FAILED:
            parts = t["unique_id"].split(".")
            name = parts[-1] if parts[0] == "unit_test" or len(parts) < 3 else parts[2]
            problems.append(f"test {name} {t['status']}: {str(t.get('message'))[:200]}")
    if problems:
        report["problems"] = problems
        raise NodeFailed("; ".join(problems[:6]) + (f" (+{len(problems) - 6} more)" if len(problems) > 6 else ""))
    return report
