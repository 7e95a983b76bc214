"""run_dbt: the manifest in target/ is written only when what it is parsed from changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from retailpulse.settings import Settings

REPO = Path(__file__).resolve().parent.parent
MODEL = "stg_meta__campaign_insights"


def _mtime(path: Path) -> int:
    return path.stat().st_mtime_ns


def test_runs_of_an_unchanged_project_keep_the_manifest_and_write_run_results(tmp_path: Path) -> None:
    from retailpulse.dbt_runner import MANIFEST_FINGERPRINT, run_dbt
    from retailpulse.pipeline import init_warehouse

    home = tmp_path / "home"
    shutil.copytree(REPO / "dbt", home / "dbt", ignore=shutil.ignore_patterns("target", "logs"))
    settings = Settings(home=home, _env_file=None)
    init_warehouse(settings)
    target = home / "dbt" / "target"
    manifest, run_results = target / "manifest.json", target / "run_results.json"
    build = ["build", "--select", MODEL]

    def results() -> list[str]:
        return [r["unique_id"] for r in json.loads(run_results.read_text())["results"]]

    run_dbt(settings, build)  # first run: parses and writes the manifest
    assert (target / MANIFEST_FINGERPRINT).is_file()
    written = _mtime(manifest)

    run_dbt(settings, ["run", "--select", MODEL])  # same project: the manifest stays
    assert _mtime(manifest) == written
    # but run_results.json is this run's (the model, no tests)
    assert f"model.retailpulse.{MODEL}" in results() and not [r for r in results() if r.startswith("test.")]

    run_dbt(settings, build)
    assert _mtime(manifest) == written
    assert [r for r in results() if r.startswith("test.")]  # the model and its tests

    # a changed model file: the manifest is parsed and written again, with the change
    sql = home / "dbt" / "models" / "staging" / "meta" / f"{MODEL}.sql"
    sql.write_text(sql.read_text() + "\n-- changed by the test\n")
    run_dbt(settings, build)
    assert _mtime(manifest) != written
    nodes = json.loads(manifest.read_text())["nodes"]
    assert "changed by the test" in nodes[f"model.retailpulse.{MODEL}"]["raw_code"]
    written = _mtime(manifest)

    # other vars: written again
    run_dbt(settings, build, vars={"attribution_half_life_days": 3})
    assert _mtime(manifest) != written
    written = _mtime(manifest)
    run_dbt(settings, build, vars={"attribution_half_life_days": 3})
    assert _mtime(manifest) == written

    # a manifest that another dbt process wrote since (a user's own dbt command) is replaced
    manifest.write_text(manifest.read_text())
    foreign = _mtime(manifest)
    run_dbt(settings, build, vars={"attribution_half_life_days": 3})
    assert _mtime(manifest) != foreign


def test_the_daily_build_runs_unit_tests_again_only_when_the_project_changed(tmp_path: Path) -> None:
    from retailpulse.dbt_runner import UNIT_TESTS_PASSED, DbtError, run_dbt
    from retailpulse.pipeline import dbt_build_args, init_warehouse

    home = tmp_path / "home"
    shutil.copytree(REPO / "dbt", home / "dbt", ignore=shutil.ignore_patterns("target", "logs"))
    settings = Settings(home=home, _env_file=None)
    init_warehouse(settings)
    stamp = home / "dbt" / "target" / UNIT_TESTS_PASSED
    daily = dbt_build_args(before_ml=True)

    def kinds(result) -> dict[str, int]:  # noqa: ANN001
        out: dict[str, int] = {}
        for n in result.nodes:
            out[n["resource_type"]] = out.get(n["resource_type"], 0) + 1
        return out

    first = kinds(run_dbt(settings, daily, unit_tests="when_changed"))
    assert first.get("unit_test", 0) >= 4 and stamp.is_file()
    second = kinds(run_dbt(settings, daily, unit_tests="when_changed"))  # same project: left out
    assert "unit_test" not in second and second["test"] == first["test"] and second["model"] == first["model"]
    assert kinds(run_dbt(settings, daily)).get("unit_test") == first["unit_test"]  # "always": dbt's default
    # other vars (here one the unit tests do not depend on, given explicitly): they run again
    assert kinds(run_dbt(settings, daily, vars={"ga4_extra_lookback_days": 0},
                         unit_tests="when_changed")).get("unit_test") == first["unit_test"]
    # a build with --select does not record them (it may not have run all of them)
    stamp.unlink()
    run_dbt(settings, ["build", "--select", "int_attribution__credits"], unit_tests="when_changed")
    assert not stamp.exists()

    # a changed model that breaks its unit test: it runs, fails the build and is not recorded as passed
    run_dbt(settings, daily, unit_tests="when_changed")
    assert stamp.is_file()
    sql = home / "dbt" / "models" / "intermediate" / "marketing" / "int_attribution__credits.sql"
    original = sql.read_text()
    broken = original.replace("when 'linear' then 1.0 / touch_count", "when 'linear' then 0.5 / touch_count")
    assert broken != original
    sql.write_text(broken)
    with pytest.raises(DbtError, match="attribution_models_split_credit_as_documented"):
        run_dbt(settings, daily, unit_tests="when_changed")
    assert not stamp.exists()
    sql.write_text(original)  # repaired: they run (and pass) before they are left out again
    assert kinds(run_dbt(settings, daily, unit_tests="when_changed")).get("unit_test") == first["unit_test"]
    assert "unit_test" not in kinds(run_dbt(settings, daily, unit_tests="when_changed"))


def test_not_null_columns_names_every_column_that_holds_nulls(tmp_path: Path) -> None:
    """The model-level not_null_columns test (one node for all of a model's not-null columns)
    passes on clean data and fails with one row per column that holds NULLs, with their count."""
    import duckdb
    import pytest

    from retailpulse.dbt_runner import DbtError, run_dbt
    from retailpulse.pipeline import init_warehouse

    settings = Settings(home=REPO, warehouse_path=tmp_path / "wh.duckdb", data_dir=tmp_path / "data", _env_file=None)
    init_warehouse(settings)
    run_dbt(settings, ["seed", "--select", "countries"])
    test = ["test", "--select", "countries,test_name:not_null_columns", "--store-failures"]
    assert [n["status"] for n in run_dbt(settings, test).nodes if n["resource_type"] == "test"] == ["pass"]

    con = duckdb.connect(str(settings.duckdb_path))
    try:  # two rows without a calling code, one without a name; trunk_prefix is not a listed column
        con.execute("update silver.countries set calling_code = null where country_code in ('US', 'GB')")
        con.execute("update silver.countries set country_name = null where country_code = 'DE'")
        con.execute("update silver.countries set trunk_prefix = null")
    finally:
        con.close()
    with pytest.raises(DbtError, match="not_null_columns_countries"):
        run_dbt(settings, test)
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    try:
        schema, table = con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_name like 'not_null_columns_countries%'").fetchone()
        rows = con.execute(f'select column_name, null_rows from "{schema}"."{table}" order by column_name').fetchall()
    finally:
        con.close()
    assert rows == [("calling_code", 2), ("country_name", 1)]
