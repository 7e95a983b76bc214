"""Incremental models rebuilt in full when their logic changed (retailpulse.dbt_logic)."""

from __future__ import annotations

import copy
import logging
import shutil
from pathlib import Path

import pytest

from retailpulse import dbt_logic


def _node(uid: str, materialized: str, checksum: str, parents=(), macros=(), raw_code: str = "select 1",
          **config) -> dict:
    return {"unique_id": uid, "resource_type": uid.split(".")[0], "package_name": "p", "raw_code": raw_code,
            "checksum": {"name": "sha256", "checksum": checksum},
            "config": {"materialized": materialized, "tags": [], "docs": {"show": True}, **config},
            "depends_on": {"nodes": list(parents), "macros": list(macros)}}


def _manifest() -> dict:
    nodes = [
        _node("seed.p.countries", "seed", "c1"),
        _node("model.p.stg", "view", "s1", ["seed.p.countries", "source.p.raw.events"]),
        _node("model.p.inc_a", "incremental", "a1", ["model.p.stg"], ["macro.p.normalize"],
              raw_code="select {{ normalize('email') }} as email from {{ ref('stg') }}", unique_key="id"),
        _node("model.p.inc_b", "incremental", "b1", ["model.p.inc_a"]),
        _node("model.p.inc_other", "incremental", "o1", ["source.p.raw.events"]),
        _node("model.p.mart", "table", "m1", ["model.p.inc_b"]),
        _node("test.p.unique_inc_a_id", "test", "t1", ["model.p.inc_a"]),
    ]
    macros = {
        "macro.p.normalize": {"macro_sql": "{% macro normalize(x) %}lower({{ helper(x) }}){% endmacro %}",
                              "depends_on": {"macros": ["macro.p.helper"]}},
        "macro.p.helper": {"macro_sql": "{% macro helper(x) %}trim({{ x }}){% endmacro %}",
                           "depends_on": {"macros": []}},
    }
    return {"nodes": {n["unique_id"]: n for n in nodes}, "macros": macros}


VARS = {"attribution_lookback_days": 30}


def _changed(edit) -> set[str]:
    before = dbt_logic.logic_fingerprints(_manifest(), VARS)
    manifest, vars = copy.deepcopy(_manifest()), dict(VARS)
    edit(manifest, vars)
    after = dbt_logic.logic_fingerprints(manifest, vars)
    assert set(before) == set(after) == {"model.p.inc_a", "model.p.inc_b", "model.p.inc_other"}
    return {uid for uid in before if before[uid] != after[uid]}


def test_a_change_above_an_incremental_model_changes_its_logic_and_that_of_those_below_it():
    def model_sql(m, v):
        m["nodes"]["model.p.stg"]["checksum"]["checksum"] = "s2"

    def seed(m, v):
        m["nodes"]["seed.p.countries"]["checksum"]["checksum"] = "c2"

    def nested_macro(m, v):
        m["macros"]["macro.p.helper"]["macro_sql"] = "{% macro helper(x) %}{{ x }}{% endmacro %}"

    def own_key(m, v):
        m["nodes"]["model.p.inc_a"]["config"]["unique_key"] = "other_id"

    def below(m, v):
        m["nodes"]["model.p.inc_b"]["checksum"]["checksum"] = "b2"

    assert _changed(model_sql) == {"model.p.inc_a", "model.p.inc_b"}
    assert _changed(seed) == {"model.p.inc_a", "model.p.inc_b"}
    assert _changed(nested_macro) == {"model.p.inc_a", "model.p.inc_b"}
    assert _changed(own_key) == {"model.p.inc_a", "model.p.inc_b"}
    assert _changed(below) == {"model.p.inc_b"}
    assert _changed(lambda m, v: v.update(attribution_lookback_days=60)) == {
        "model.p.inc_a", "model.p.inc_b", "model.p.inc_other"}


def test_documentation_tests_and_tables_below_do_not_change_the_logic():
    def docs(m, v):
        m["nodes"]["model.p.stg"]["config"].update(tags=["daily"], docs={"show": False}, meta={"owner": "x"})

    def test_and_mart(m, v):
        m["nodes"]["test.p.unique_inc_a_id"]["checksum"]["checksum"] = "t2"
        m["nodes"]["model.p.mart"]["checksum"]["checksum"] = "m2"

    def runtime_macro(m, v):  # dbt adds the macros a build happened to call to a written manifest
        m["nodes"]["model.p.inc_a"]["depends_on"]["macros"].append("macro.p.should_full_refresh")
        m["macros"]["macro.p.should_full_refresh"] = {"macro_sql": "{% macro should_full_refresh() %}{% endmacro %}",
                                                      "depends_on": {"macros": []}}

    assert _changed(docs) == set()
    assert _changed(test_and_mart) == set()
    assert _changed(runtime_macro) == set()
    # the var naming the models to rebuild and the re-processed window are not logic; the rest is
    project = Path(__file__).resolve().parents[1] / "dbt"
    base = dbt_logic.project_vars(project, {})
    assert "session_timeout_minutes" in base and "ga4_lookback_days" not in base
    assert dbt_logic.project_vars(project, {dbt_logic.FULL_REFRESH_VAR: ["model.p.inc_a"], "ga4_extra_lookback_days": 5,
                                            "ga4_lookback_days": 7}) == base
    assert dbt_logic.project_vars(project, {"session_timeout_minutes": 45}) != base


def test_only_recorded_models_whose_logic_differs_are_changed():
    current = {"model.p.inc_a": "new", "model.p.inc_b": "same", "model.p.inc_other": "x"}
    record = {"model.p.inc_a": "old", "model.p.inc_b": "same"}  # inc_other: built before the record existed
    assert dbt_logic.changed_models(current, record) == ["model.p.inc_a"]


def _tamper(wh, identifier: str) -> None:
    with wh.connect() as con:
        con.execute("update gold.customer_identity_map set match_rule = 'tampered' "
                    "where identifier_type = 'stripe_customer' and identifier_value = ?", [identifier])


def _rule(wh, identifier: str) -> str:
    return wh.scalar("select match_rule from gold.customer_identity_map "
                     "where identifier_type = 'stripe_customer' and identifier_value = ?", [identifier])


def test_a_changed_incremental_model_is_rebuilt_in_full_once(built, tmp_path, caplog):
    """On a copy of the dbt test warehouse and project: a daily run leaves a tampered row of the
    incremental gold.customer_identity_map alone; after the model's SQL changed, the next run
    rebuilds it in full (the row is mapped again, the log says why) and records the new logic, so
    the run after is incremental again; a change upstream (int_identity__resolved) rebuilds both."""
    from retailpulse.dbt_runner import release_dbt_duckdb, run_dbt
    from retailpulse.warehouse import get_warehouse
    from tests.conftest import REPO
    from tests.dbt_fixtures import _settings

    release_dbt_duckdb()
    home = tmp_path / "home"
    shutil.copytree(REPO / "dbt", home / "dbt", ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    (tmp_path / "warehouse").mkdir()
    shutil.copyfile(built.settings.duckdb_path, tmp_path / "warehouse" / "retailpulse.duckdb")
    settings = _settings(tmp_path, home=home)
    wh = get_warehouse(settings)
    record = dbt_logic.recorded(wh)
    map_id = "model.retailpulse.customer_identity_map"
    resolved_id = "model.retailpulse.int_identity__resolved"
    assert map_id in record and resolved_id in record  # the fixture's builds recorded them
    identifier = wh.scalar("select identifier_value from gold.customer_identity_map where "
                           "identifier_type = 'stripe_customer' and customer_id is not null order by identifier_key limit 1")
    rule = _rule(wh, identifier)
    select = ["run", "--select", "customer_identity_map"]

    _tamper(wh, identifier)
    run_dbt(settings, select)  # same logic as recorded: incremental, the tampered row stays
    release_dbt_duckdb()
    assert _rule(wh, identifier) == "tampered"
    assert dbt_logic.recorded(wh) == record

    model = home / "dbt" / "models" / "marts" / "core" / "customer_identity_map.sql"
    model.write_text(model.read_text() + "\n-- rules changed\n")
    with caplog.at_level(logging.WARNING, logger="retailpulse.dbt_runner"):
        run_dbt(settings, select)
    release_dbt_duckdb()
    assert _rule(wh, identifier) == rule  # rebuilt in full
    assert "customer_identity_map changed since it was last built: it is rebuilt in full" in caplog.text
    after = dbt_logic.recorded(wh)
    assert after[map_id] != record[map_id] and after[resolved_id] == record[resolved_id]

    _tamper(wh, identifier)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="retailpulse.dbt_runner"):
        run_dbt(settings, select)  # the new logic is recorded: incremental again
    release_dbt_duckdb()
    assert _rule(wh, identifier) == "tampered"
    assert "rebuilt in full" not in caplog.text

    upstream = home / "dbt" / "models" / "intermediate" / "identity" / "int_identity__resolved.sql"
    upstream.write_text(upstream.read_text() + "\n-- rules changed\n")
    with caplog.at_level(logging.WARNING, logger="retailpulse.dbt_runner"):
        run_dbt(settings, ["run", "--select", "int_identity__resolved", "customer_identity_map"])
    release_dbt_duckdb()
    assert _rule(wh, identifier) == rule
    # the incremental models below int_identity__resolved are named too (rebuilt when next selected)
    warning = next(r.getMessage() for r in caplog.records if "rebuilt in full" in r.getMessage())
    assert "they are rebuilt in full" in warning
    for name in ("int_identity__resolved", "customer_identity_map", "int_sessions__stitched", "int_attribution__credits"):
        assert name in warning
    final = dbt_logic.recorded(wh)
    assert final[map_id] != after[map_id] and final[resolved_id] != record[resolved_id]


@pytest.mark.parametrize("options, expected", [
    (["--select", "a", "b+", "--exclude", "c", "--project-dir", "p"], ["--project-dir", "p"]),
    (["--full-refresh", "--vars", "{x: 1}"], ["--full-refresh", "--vars", "{x: 1}"]),
])
def test_a_builds_selection_is_left_out_of_its_parse(options, expected):
    from retailpulse.dbt_runner import _without_selection

    assert _without_selection(options) == expected
