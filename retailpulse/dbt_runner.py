"""Run dbt in-process against the configured warehouse.

The profile is generated from :meth:`Warehouse.dbt_profile` (the one place that knows how to
reach the warehouse) into a private profiles directory, so dbt never needs a hand-written
``~/.dbt/profiles.yml`` and secrets never land in the repository.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from retailpulse import dbt_logic
from retailpulse.settings import Settings
from retailpulse.warehouse import get_warehouse

log = logging.getLogger(__name__)


class DbtError(RuntimeError):
    pass


@dataclass
class DbtResult:
    success: bool
    nodes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [n for n in self.nodes if n["status"] in ("error", "fail", "runtime error")]


def write_profiles(settings: Settings) -> Path:
    """Write profiles.yml for the configured target; returns its directory (mode 0700)."""
    wh = get_warehouse(settings)
    profiles_dir = settings.data_path / "dbt_profiles"
    profiles_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(profiles_dir, 0o700)
    profile = {"retailpulse": {"target": wh.target, "outputs": {wh.target: wh.dbt_profile()}}}
    path = profiles_dir / "profiles.yml"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(profile, sort_keys=False))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return profiles_dir


def release_dbt_duckdb() -> None:
    """Close the DuckDB database dbt-duckdb keeps open at class level after an in-process run.

    Otherwise a later write through ``Warehouse.connect`` in the same process (dag.test runs
    every task in one process) can land in another database instance than the one the next dbt
    run reads, and incremental models see stale bronze.
    """
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # dbt-duckdb not installed (Postgres-only environments)
        return
    env = getattr(DuckDBConnectionManager, "_ENV", None)
    if env is not None:
        try:
            env.close()
        finally:
            DuckDBConnectionManager._ENV = None


# commands that write target/manifest.json and run_results.json as a side effect of running nodes
_NODE_COMMANDS = frozenset({"build", "run", "test", "seed", "snapshot"})
MANIFEST_FINGERPRINT = ".retailpulse_manifest_fingerprint"
# the manifest fingerprint of the last whole-project build whose unit tests all passed
UNIT_TESTS_PASSED = ".retailpulse_unit_tests_passed"


def manifest_fingerprint(project: Path, profiles_dir: Path, cli: list[str]) -> str:
    """A digest of everything dbt's parsed manifest depends on: every file of the project (but its
    target/, logs/ and packages), the profile, the command-line vars, the dbt version and the
    ``RETAILPULSE_*`` / ``DBT_*`` environment (read by ``env_var`` in the project)."""
    import dbt.version

    h = hashlib.sha256()
    skip = {"target", "logs", "dbt_packages", "dbt_modules"}
    for path in sorted(p for p in project.rglob("*") if p.is_file()):
        rel = path.relative_to(project)
        if rel.parts[0] in skip:
            continue
        h.update(str(rel).encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    h.update((profiles_dir / "profiles.yml").read_bytes())
    vars_arg = cli[cli.index("--vars") + 1] if "--vars" in cli else ""
    h.update(f"\0{vars_arg}\0{dbt.version.__version__}\0".encode())
    for key in sorted(k for k in os.environ if k.startswith(("RETAILPULSE_", "DBT_"))):
        h.update(f"{key}={os.environ[key]}\0".encode())
    return h.hexdigest()


def _target_dir(project: Path) -> Path:
    env = os.environ.get("DBT_TARGET_PATH")
    return Path(env) if env else project / "target"


def _stamp_line(fingerprint: str, manifest: Path) -> str:
    """The fingerprint with the manifest file's size and mtime: a manifest that another dbt process
    (a user's own ``dbt`` command) wrote since does not match."""
    try:
        st = manifest.stat()
    except FileNotFoundError:
        return f"{fingerprint} missing"
    return f"{fingerprint} {st.st_size} {st.st_mtime_ns}"


def _current_manifest(project: Path, profiles_dir: Path, cli: list[str], target: Path) -> dict[str, Any] | None:
    """The manifest of this project, profile and vars: target/manifest.json when the stamp says it
    was written from them, else parsed now (``dbt parse``, which writes it and its stamp)."""
    from dbt.cli.main import dbtRunner

    fingerprint = manifest_fingerprint(project, profiles_dir, cli)
    manifest = target / "manifest.json"
    stamp = target / MANIFEST_FINGERPRINT
    if not (stamp.is_file() and stamp.read_text().strip() == _stamp_line(fingerprint, manifest)):
        options = cli[1:]
        for flag in ("--full-refresh", "--fail-fast", "-x"):
            while flag in options:
                options.remove(flag)
        options = _without_selection(options)
        try:
            res = dbtRunner().invoke(["parse", *options])
        finally:
            release_dbt_duckdb()
        if not res.success:
            return None  # the build itself reports why the project does not parse
        stamp.write_text(_stamp_line(fingerprint, manifest) + "\n")
    return dbt_logic.read_manifest(manifest)


_SELECTION_FLAGS = {"--select", "-s", "--models", "-m", "--exclude", "--selector", "--resource-type",
                    "--resource-types", "--exclude-resource-type", "--exclude-resource-types", "--threads"}


def _without_selection(options: list[str]) -> list[str]:
    """Command-line options of a build without its node selection (``dbt parse`` takes none)."""
    out: list[str] = []
    skipping = False
    for opt in options:
        if opt in _SELECTION_FLAGS:
            skipping = True
            continue
        if skipping and not opt.startswith("-"):
            continue
        skipping = False
        out.append(opt)
    return out


def run_dbt(settings: Settings, args: list[str], vars: dict[str, Any] | None = None,
            run_results_path: Path | None = None, unit_tests: str = "always") -> DbtResult:
    """Invoke ``dbt <args>`` in-process; raises DbtError naming the failed nodes.

    With ``run_results_path``, dbt's run_results.json of this invocation is also written there
    (written from the in-process result, before any DbtError: the daily DAG's per-model tasks
    read it, and other runs sharing dbt/target cannot overwrite it).

    ``unit_tests="when_changed"`` (a ``build`` of the whole project, as the daily run does): dbt's
    unit tests check the SQL of models against fixed inputs, not the data, so, as dbt advises,
    they need not run on every production build. They run when the project, profile, vars, dbt
    version or ``RETAILPULSE_*``/``DBT_*`` environment differ from the last build in which they
    all passed (the manifest fingerprint, kept in ``target/.retailpulse_unit_tests_passed``), and
    are left out otherwise. ``"always"``: dbt's own behaviour.
    """
    if unit_tests not in ("always", "when_changed"):
        raise ValueError(f"unit_tests must be 'always' or 'when_changed', not {unit_tests!r}")
    from dbt.cli.main import dbtRunner

    profiles_dir = write_profiles(settings)
    project = settings.dbt_project_dir
    all_vars = {"reporting_currency": settings.reporting_currency,
                "attribution_lookback_days": settings.attribution_lookback_days, **(vars or {})}

    def command_line(run_vars: dict[str, Any]) -> list[str]:
        line = [*args, "--project-dir", str(project), "--profiles-dir", str(profiles_dir),
                "--vars", yaml.safe_dump(run_vars, default_flow_style=True).strip()]
        if not any(a.startswith("--log-path") for a in args):
            line += ["--log-path", str(settings.data_path / "dbt_logs")]
        return line

    cli = command_line(all_vars)
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    target = _target_dir(project)
    # incremental models whose logic changed since they were last built are rebuilt in full
    # (retailpulse.dbt_logic); every build or run records the logic of the models it built
    wh = get_warehouse(settings)
    tracks_logic = bool(args) and args[0] in ("build", "run") and not any(
        a.startswith(("--target-path", "--empty")) for a in args)
    record = dbt_logic.recorded(wh) if tracks_logic else {}
    logic: dict[str, str] | None = None  # the fingerprints of the manifest in target/ before this invocation
    if record and "--full-refresh" not in args:
        manifest = _current_manifest(project, profiles_dir, cli, target)
        if manifest is not None:
            logic = dbt_logic.logic_fingerprints(manifest, dbt_logic.project_vars(project, all_vars))
            changed = dbt_logic.changed_models(logic, record)
            if changed:
                one = len(changed) == 1
                log.warning("dbt: the logic of %s changed since %s last built: %s rebuilt in full, so that %s older "
                            "rows follow the new rules too", ", ".join(c.rsplit(".", 1)[-1] for c in changed),
                            "it was" if one else "they were", "it is" if one else "they are", "its" if one else "their")
                cli = command_line({**all_vars, dbt_logic.FULL_REFRESH_VAR: changed})
    # Writing manifest.json costs about a second per invocation (twice over a 3 MB document). A run
    # of nodes skips it when the manifest in target/ was written from this very project, profile,
    # vars and dbt version (the daily DAG reads it); run_results.json is then written below.
    fingerprint = stamp = None
    if args and args[0] in _NODE_COMMANDS and not any(a.startswith(("--target-path", "--write-json", "--no-write-json"))
                                                     for a in args):
        fingerprint = manifest_fingerprint(project, profiles_dir, cli)
        stamp = target / MANIFEST_FINGERPRINT
        before = _stamp_line(fingerprint, target / "manifest.json")
        if stamp.is_file() and stamp.read_text().strip() == before:
            cli.append("--no-write-json")
        else:
            stamp.unlink(missing_ok=True)
    # only a build of the whole project (exclusions aside) runs every unit test it could record
    selecting = {"--select", "-s", "--models", "-m", "--selector", "--resource-type", "--resource-types"}
    whole_build = bool(args) and args[0] == "build" and not selecting.intersection(args)
    unit_stamp = target / UNIT_TESTS_PASSED if unit_tests == "when_changed" and whole_build else None
    if unit_stamp is not None:
        fingerprint = fingerprint or manifest_fingerprint(project, profiles_dir, cli)
        if unit_stamp.is_file() and unit_stamp.read_text().strip() == fingerprint:
            cli += ["--exclude-resource-type", "unit_test"]
            log.info("dbt unit tests left out: they passed on this project, profile and vars (%s)", unit_stamp)
    try:
        res = dbtRunner().invoke(cli)
    finally:
        release_dbt_duckdb()
    if "--no-write-json" in cli:
        if hasattr(res.result, "write"):
            res.result.write(str(target / "run_results.json"))
    elif fingerprint is not None and stamp is not None:
        after = _stamp_line(fingerprint, target / "manifest.json")
        if after != before and not after.endswith(" missing"):  # this invocation wrote the manifest
            stamp.write_text(after + "\n")
    if run_results_path is not None and hasattr(res.result, "write"):
        run_results_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = run_results_path.with_suffix(".tmp")
        res.result.write(str(tmp))
        os.replace(tmp, run_results_path)
    nodes: list[dict[str, Any]] = []
    results = getattr(res.result, "results", None) or []
    for r in results:
        node = getattr(r, "node", None)
        nodes.append({
            "unique_id": getattr(node, "unique_id", "?"),
            "name": getattr(node, "name", "?"),
            "resource_type": str(getattr(node, "resource_type", "?")),
            "status": str(getattr(r, "status", "?")),
            "message": getattr(r, "message", None),
            "seconds": getattr(r, "execution_time", None),
        })
    result = DbtResult(success=bool(res.success), nodes=nodes)
    built = [n["unique_id"] for n in nodes if n["resource_type"] == "model" and n["status"] == "success"]
    if tracks_logic and built:
        current = logic if logic is not None and "--no-write-json" in cli else None  # target/ kept that manifest
        if current is None:
            manifest = dbt_logic.read_manifest(target / "manifest.json")  # the one this invocation wrote
            current = (dbt_logic.logic_fingerprints(manifest, dbt_logic.project_vars(project, all_vars))
                       if manifest is not None else {})
        dbt_logic.record_built(wh, current, [b for b in built if b in current and record.get(b) != current[b]])
    if unit_stamp is not None and fingerprint is not None:
        units = [n["status"] for n in nodes if n["resource_type"] == "unit_test"]
        if units and all(status == "pass" for status in units):
            unit_stamp.parent.mkdir(parents=True, exist_ok=True)
            unit_stamp.write_text(fingerprint + "\n")
        elif units:
            unit_stamp.unlink(missing_ok=True)
    if not res.success:
        failed = result.failures
        if failed:
            detail = "; ".join(f"{n['name']} ({n['status']}: {str(n['message'])[:200]})" for n in failed[:5])
        else:
            detail = str(res.exception or "see dbt logs")[:500]
        raise DbtError(f"dbt {args[0]} failed: {detail}")
    return result
