"""The connected_components macro (identity resolution's label propagation) on a graph built to
hit its corner cases, against a union-find reference: the rounds run over integer stand-ins for
the text ids and labels, which must give exactly the labels the text keys give."""

from __future__ import annotations

import duckdb

from retailpulse.settings import load_settings

NODES = [  # node_id, label_key
    ("n1", "c"), ("n2", "a"), ("n3", "d"), ("n4", "b"),          # a chain: every node gets "a"
    ("n5", "z"), ("n6", "y"),                                     # linked only through "x", not a node
    ("n7", "m"),                                                  # isolated: keeps its label
    ("n8", "q"), ("n9", "q"), ("n10", "r"),                       # a label shared by two nodes
    ("n11", None), ("n12", "k"),                                  # a node without a label
    ("n13", "é"), ("n14", "e"),                                   # labels compared as text, not by length
    ("n15", "aa"), ("n16", "a0"),
]
EDGES = [("n1", "n2"), ("n2", "n3"), ("n3", "n4"), ("n5", "x"), ("x", "n6"), ("n8", "n10"), ("n9", "n10"),
         ("n11", "n12"), ("n13", "n14"), ("n16", "n15"), ("n15", "n15")]


def reference() -> dict[str, str | None]:
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        while parent.setdefault(a, a) != a:
            a = parent[a]
        return a

    for a, b in EDGES:
        parent[find(a)] = find(b)
    labels = dict(NODES)
    ids = {n for n, _ in NODES} | {x for e in EDGES for x in e}
    best: dict[str, str] = {}
    for n in ids:
        lab = labels.get(n)
        if lab is not None and (find(n) not in best or lab < best[find(n)]):
            best[find(n)] = lab
    return {n: best.get(find(n)) for n in ids}


def test_connected_components_match_a_union_find_reference(tmp_path):
    settings = load_settings(warehouse_path=tmp_path / "cc.duckdb", data_dir=tmp_path / "data")
    con = duckdb.connect(str(settings.duckdb_path))
    con.execute("create table main.cc_nodes (node_id varchar, label_key varchar)")
    con.executemany("insert into main.cc_nodes values (?, ?)", NODES)
    con.execute("create table main.cc_edges (node_a varchar, node_b varchar)")
    con.executemany("insert into main.cc_edges values (?, ?)", EDGES)
    con.close()

    sql = compiled(settings, "{{ connected_components('main.cc_nodes', 'main.cc_edges', 4) }}")
    assert "cc_round_4" in sql and "cc_round_5" not in sql
    con = duckdb.connect(str(settings.duckdb_path))
    got = dict(con.execute(sql).fetchall())
    con.close()
    assert got == reference()
    assert got["n1"] == got["n4"] == "a" and got["x"] == got["n5"] == "y" and got["n7"] == "m"
    assert got["n11"] == "k" and got["n8"] == got["n9"] == "q" and got["n13"] == "e" and got["n15"] == "a0"


def test_too_few_rounds_leave_the_chain_unconverged(tmp_path):
    """What the identity_components_converged test guards against: labels travel one hop per round."""
    settings = load_settings(warehouse_path=tmp_path / "cc.duckdb", data_dir=tmp_path / "data")
    con = duckdb.connect(str(settings.duckdb_path))
    con.execute("create table main.cc_nodes as select 'n' || i as node_id, chr(cast(100 - i as integer)) as label_key "
                "from range(1, 5) as t(i)")  # n1 'c', n2 'b', n3 'a', n4 '`'
    con.execute("create table main.cc_edges as select 'n' || i as node_a, 'n' || (i + 1) as node_b from range(1, 4) as t(i)")
    con.close()
    con = duckdb.connect(str(settings.duckdb_path))
    one = dict(con.execute(compiled(settings, "{{ connected_components('main.cc_nodes', 'main.cc_edges', 1) }}")).fetchall())
    three = dict(con.execute(compiled(settings, "{{ connected_components('main.cc_nodes', 'main.cc_edges', 3) }}")).fetchall())
    con.close()
    assert one == {"n1": "b", "n2": "a", "n3": "`", "n4": "`"}
    assert set(three.values()) == {"`"}


def compiled(settings, inline: str) -> str:
    from dbt.cli.main import dbtRunner

    from retailpulse.dbt_runner import release_dbt_duckdb, write_profiles

    profiles = write_profiles(settings)
    try:
        res = dbtRunner().invoke(["compile", "--inline", inline, "--project-dir", str(settings.dbt_project_dir),
                                  "--profiles-dir", str(profiles), "--log-path", str(settings.data_path / "dbt_logs"),
                                  "--quiet"])
    finally:
        release_dbt_duckdb()
    assert res.success, res.exception
    return res.result.results[0].node.compiled_code


def _graph(settings, nodes: list[tuple[str, str]], edges: list[tuple[str, str]]) -> None:
    """silver.int_identity__nodes / __edges by hand (dbt --select reads them as they are)."""
    con = duckdb.connect(str(settings.duckdb_path))
    try:
        con.execute("create schema if not exists silver")
        con.execute("create or replace table silver.int_identity__nodes (node_id varchar, label_key varchar)")
        con.executemany("insert into silver.int_identity__nodes values (?, ?)", nodes)
        con.execute("create or replace table silver.int_identity__edges (node_a varchar, node_b varchar, match_rule varchar)")
        con.executemany("insert into silver.int_identity__edges values (?, ?, 'r')", edges)
    finally:
        con.close()


def _components(settings) -> dict[str, str]:
    con = duckdb.connect(str(settings.duckdb_path))
    try:
        return dict(con.execute("select node_id, exact_label from silver.int_identity__exact_components").fetchall())
    finally:
        con.close()


def test_incremental_exact_components_recompute_the_changed_components(tmp_path):
    """int_identity__exact_components' daily run recomputes the components with a changed node
    (label, links, gone) and the new nodes, keeps the rest, and equals a full refresh."""
    from retailpulse.dbt_runner import run_dbt

    settings = load_settings(warehouse_path=tmp_path / "cc.duckdb", data_dir=tmp_path / "data")
    model = ["run", "--select", "int_identity__exact_components"]
    _graph(settings,
           [("a", "5a"), ("b", "5b"), ("c", "5c"), ("d", "5d"), ("e", "5e"), ("f", "5f"), ("h", "5h"), ("i", "5i"),
            ("j", "5j"), ("k", "5k")],
           [("a", "b"), ("b", "c"), ("d", "e"), ("h", "i"), ("j", "k")])
    con = duckdb.connect(str(settings.duckdb_path))
    try:  # the table as an older version wrote it: no label keys, no fingerprints, stale labels
        con.execute("create table silver.int_identity__exact_components as "
                    "select node_id, 'stale' as exact_label from silver.int_identity__nodes union all select 'gone', 'stale'")
    finally:
        con.close()
    run_dbt(settings, model)  # the first run after the upgrade recomputes everything
    first = _components(settings)
    assert first == {"a": "5a", "b": "5a", "c": "5a", "d": "5d", "e": "5d", "f": "5f", "h": "5h", "i": "5h",
                     "j": "5j", "k": "5j"}
    # a gone (with its link), b-c cut, e-f linked, d's label now the largest, g new and linked to c,
    # k's label smaller (j-k now labelled by k); h-i untouched
    _graph(settings,
           [("b", "5b"), ("c", "5c"), ("d", "9d"), ("e", "5e"), ("f", "5f"), ("g", "4g"), ("h", "5h"), ("i", "5i"),
            ("j", "5j"), ("k", "1k")],
           [("c", "g"), ("d", "e"), ("e", "f"), ("h", "i"), ("j", "k")])
    run_dbt(settings, model)
    daily = _components(settings)
    assert daily == {"b": "5b", "c": "4g", "g": "4g", "d": "5e", "e": "5e", "f": "5e", "h": "5h", "i": "5h",
                     "j": "1k", "k": "1k"}
    run_dbt(settings, [*model, "--full-refresh"])
    assert _components(settings) == daily
