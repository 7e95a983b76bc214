"""How many rounds of min-label propagation the identity graphs of a warehouse need.

dbt's ``connected_components`` macro unrolls ``var('identity_propagation_rounds')`` rounds (10 in
dbt_project.yml); the data test ``assert_identity_components_converged`` fails when a component
needs more. This replays the same propagation in pandas on the warehouse's
``int_identity__nodes`` / ``int_identity__edges`` (exact graph) and on the exact components
joined by ``int_identity__fuzzy_matches`` (fuzzy graph) until nothing changes, and reports the
rounds each needed and the biggest components.

    python -m bench.identity_rounds --warehouse data/bench-work/medium/direct/warehouse/retailpulse.duckdb
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

from bench._common import machine, now, write_result


def rounds_needed(nodes: pd.DataFrame, edges: pd.DataFrame, cap: int = 500) -> tuple[int, pd.Series]:
    """Rounds until min-label propagation stops changing (the macro's round i = min over the
    node and its neighbours of round i-1), and the converged labels."""
    lab = nodes.drop_duplicates("node_id").set_index("node_id")["label_key"]
    links = pd.concat([edges.set_axis(["n", "m"], axis=1), edges[["node_b", "node_a"]].set_axis(["n", "m"], axis=1)],
                      ignore_index=True)
    links = links[links["n"].isin(lab.index) & links["m"].isin(lab.index)]
    for r in range(cap):
        nb = links.assign(label=links["m"].map(lab)).groupby("n")["label"].min()
        new = lab.copy()
        new.loc[nb.index] = pd.concat([lab.loc[nb.index], nb], axis=1).min(axis=1)
        if new.equals(lab):
            return r, lab
        lab = new
    raise RuntimeError(f"no convergence after {cap} rounds")


def run(warehouse: Path) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)

    def table(name: str, cols: str) -> pd.DataFrame:
        schema = con.execute("select table_schema from information_schema.tables where table_name = ?", [name]).fetchone()[0]
        return con.execute(f'select {cols} from "{schema}"."{name}"').df()

    nodes = table("int_identity__nodes", "node_id, label_key")
    edges = table("int_identity__edges", "node_a, node_b")
    fuzzy = table("int_identity__fuzzy_matches", "label_a, label_b")
    con.close()
    r_exact, lab = rounds_needed(nodes, edges)
    sizes = lab.value_counts()
    comp = pd.DataFrame({"node_id": sizes.index, "label_key": sizes.index})
    r_fuzzy, merged = rounds_needed(comp, fuzzy.rename(columns={"label_a": "node_a", "label_b": "node_b"}))
    return {
        "benchmark": "identity_rounds", "recorded_at": now(), "machine": machine(), "warehouse": str(warehouse),
        "nodes": len(nodes), "exact_edges": len(edges), "fuzzy_matches": len(fuzzy),
        "exact_components": int(len(sizes)), "largest_exact_components": [int(x) for x in sizes.head(5)],
        "rounds_needed_exact": r_exact, "rounds_needed_fuzzy": r_fuzzy,
        "note": "fuzzy rounds computed over converged exact components; dbt runs "
                "var identity_propagation_rounds rounds (dbt/dbt_project.yml) on both graphs",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.identity_rounds")
    ap.add_argument("--warehouse", type=Path, required=True)
    ap.add_argument("--name", default="identity_rounds")
    args = ap.parse_args(argv)
    result = run(args.warehouse)
    print(f"  exact graph needs {result['rounds_needed_exact']} rounds, fuzzy graph {result['rounds_needed_fuzzy']}",
          flush=True)
    write_result(args.name, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
