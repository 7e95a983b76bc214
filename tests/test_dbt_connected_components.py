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


def _stitch_inputs(settings, sessions: list[tuple], identity: list[tuple]) -> None:
    """silver.int_ga4__sessions (session_id, user_pseudo_id, user_id, country, processed_at) and
    silver.int_identity__resolved (node_id, customer_id, changed_at) by hand, plus the countries
    seed (as dbt seed would write it)."""
    con = duckdb.connect(str(settings.duckdb_path))
    try:
        con.execute("create schema if not exists silver")
        con.execute("create or replace table silver.int_ga4__sessions (session_id varchar, user_pseudo_id varchar, "
                    "user_id varchar, country varchar, processed_at timestamp)")
        con.executemany("insert into silver.int_ga4__sessions values (?, ?, ?, ?, ?)", sessions)
        con.execute("create or replace table silver.int_identity__resolved (node_id varchar, customer_id varchar, "
                    "changed_at timestamp)")
        con.executemany("insert into silver.int_identity__resolved values (?, ?, ?)", identity)
        con.execute("create or replace table silver.countries (country_code varchar, country_name varchar)")
        con.execute("insert into silver.countries values ('DE', 'Germany'), ('FR', 'France')")
    finally:
        con.close()


def _stitched(settings) -> dict[str, tuple]:
    con = duckdb.connect(str(settings.duckdb_path))
    try:
        return {r[0]: r[1:] for r in con.execute(
            "select session_id, customer_id, stitched_by, country_code, stitched_at from silver.int_sessions__stitched"
        ).fetchall()}
    finally:
        con.close()


def test_incremental_stitching_re_stitches_what_changed_and_equals_a_full_refresh(tmp_path):
    """int_sessions__stitched's daily run re-stitches the sessions rewritten upstream, the sessions
    of identifiers whose resolution changed and those stitched through an identifier that left the
    graph; it keeps every other session as it was and equals a full refresh."""
    import datetime as dt

    from retailpulse.dbt_runner import run_dbt

    settings = load_settings(warehouse_path=tmp_path / "st.duckdb", data_dir=tmp_path / "data")
    model = ["run", "--select", "int_sessions__stitched"]
    t0, t1 = dt.datetime(2025, 1, 1), dt.datetime(2025, 1, 2)
    _stitch_inputs(settings, [
        ("s1", "d1", "u1", "Germany", t0),   # logged in: through u1
        ("s2", "d1", None, "DE", t0),        # the same device before its login: through d1
        ("s3", "d2", "u2", "France", t0),    # u2 will leave the graph (its device stays c2's)
        ("s4", "d3", None, "FR", t0),        # d3 will change customer
        ("s5", "d4", None, "Spain", t0),     # untouched, anonymous device
        ("s6", "d5", "u5", "DE", t0),        # untouched, logged in
    ], [
        ("ga4_user_id:u1", "c1", t0), ("ga4_user_pseudo_id:d1", "c1", t0),
        ("ga4_user_id:u2", "c2", t0), ("ga4_user_pseudo_id:d2", "c2", t0),
        ("ga4_user_pseudo_id:d3", "c3", t0), ("ga4_user_pseudo_id:d4", None, t0),
        ("ga4_user_id:u5", "c5", t0), ("ga4_user_pseudo_id:d5", "c5", t0),
    ])
    run_dbt(settings, model)  # the first run stitches everything
    first = _stitched(settings)
    assert {k: v[:3] for k, v in first.items()} == {
        "s1": ("c1", "user_id", "DE"), "s2": ("c1", "device", "DE"), "s3": ("c2", "user_id", "FR"),
        "s4": ("c3", "device", "FR"), "s5": (None, None, "SPAIN"), "s6": ("c5", "user_id", "DE")}
    stamp = first["s1"][3]
    # the next day: s1 rewritten upstream (now in France), s7 new; u2 left the graph (its row
    # deleted, not changed); d3 resolved to c1 now; everything else as before
    t2 = stamp + dt.timedelta(seconds=1)  # written after the first run started, like a later run
    _stitch_inputs(settings, [
        ("s1", "d1", "u1", "France", t2), ("s2", "d1", None, "DE", t0), ("s3", "d2", "u2", "France", t0),
        ("s4", "d3", None, "FR", t0), ("s5", "d4", None, "Spain", t0), ("s6", "d5", "u5", "DE", t0),
        ("s7", "d3", None, "DE", t2),
    ], [
        ("ga4_user_id:u1", "c1", t0), ("ga4_user_pseudo_id:d1", "c1", t0), ("ga4_user_pseudo_id:d2", "c2", t0),
        ("ga4_user_pseudo_id:d3", "c1", t2), ("ga4_user_pseudo_id:d4", None, t0),
        ("ga4_user_id:u5", "c5", t0), ("ga4_user_pseudo_id:d5", "c5", t0),
    ])
    run_dbt(settings, model)
    daily = _stitched(settings)
    assert {k: v[:3] for k, v in daily.items()} == {
        "s1": ("c1", "user_id", "FR"), "s2": ("c1", "device", "DE"), "s3": ("c2", "device", "FR"),
        "s4": ("c1", "device", "FR"), "s5": (None, None, "SPAIN"), "s6": ("c5", "user_id", "DE"),
        "s7": ("c1", "device", "DE")}
    restitched = {k for k, v in daily.items() if v[3] != stamp}
    assert restitched == {"s1", "s3", "s4", "s7"}, restitched
    # a session gone upstream is deleted
    con = duckdb.connect(str(settings.duckdb_path))
    try:
        con.execute("delete from silver.int_ga4__sessions where session_id = 's6'")
    finally:
        con.close()
    run_dbt(settings, model)
    assert "s6" not in _stitched(settings)
    daily = {k: v[:3] for k, v in _stitched(settings).items()}
    run_dbt(settings, [*model, "--full-refresh"])
    assert {k: v[:3] for k, v in _stitched(settings).items()} == daily
