"""The daily publish of large gold tables: row by row against a full copy.

A day changes a few percent of the rows of the large gold tables (attribution credits re-weighted
by the data-driven model, the sessions of the GA4 re-processing window, identifiers whose
resolution moved). Since the row-by-row publish (``retailpulse.publish._apply_row_delta``), a
table of the previous serving copy with at least ``DELTA_MIN_ROWS`` rows is brought up to gold by
replacing the rows whose hash differs, instead of being copied again.

This builds a warehouse shaped like the medium world's large gold tables (``--scale`` 1.0:
3M attribution rows, 0.95M sessions, 1.04M identifiers, 0.19M orders), publishes it, applies one
day's changes to gold, then times the next publish from the same previous serving copy in both
modes, alternating, ``--repeats`` times (the median is reported; a shared 2-core VM drifts by
10-20% within minutes, so the two modes are measured side by side, not in separate runs):

* ``full_copy``: every table copied again (``DELTA_MIN_ROWS`` set above every table's size:
  what each daily publish did before), and
* ``row_delta``: the default.

Both write the Parquet files whole, as the daily publish does.

    python -m bench.publish_delta [--scale 1.0] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import machine, now, write_result

# one day's changes, as shares of each table's rows (the medium world's day, measured: ~33k of the
# 3M credits re-weighted, a few thousand sessions in the re-processing window, ~1k identifiers)
DAY = {"fct_attribution": (0.012, 0.003), "fct_sessions": (0.004, 0.002), "customer_identity_map": (0.001, 0.001),
       "fct_orders": (0.001, 0.003)}  # (share updated, share added)


def _settings(root: Path) -> Any:
    from retailpulse.settings import Settings

    return Settings(home=Path(__file__).resolve().parent.parent, data_dir=root / "data",
                    warehouse_path=root / "warehouse" / "retailpulse.duckdb",
                    serving_dir=root / "warehouse" / "serving", target="duckdb", _env_file=None)


def _build(wh: Any, scale: float) -> dict[str, int]:
    rows = {"fct_attribution": int(2_989_000 * scale), "fct_sessions": int(943_665 * scale),
            "customer_identity_map": int(1_038_807 * scale), "fct_orders": int(192_696 * scale)}
    wh.ensure_schemas()
    with wh.connect() as con:
        con.execute(
            "create table gold.fct_attribution as select md5(cast(i as varchar)) as attribution_id, "
            "'ord_' || (i // 18) as order_id, 'cus_' || (i % 98400) as customer_id, "
            "['first_touch', 'last_touch', 'linear', 'position_based', 'time_decay', 'markov', 'shapley'][i % 7 + 1] "
            "as model, cast(i % 5 as integer) as touchpoint_index, 'ses_' || (i // 3) as session_id, "
            "['Organic Search', 'Paid Search', 'Paid Social', 'Email', 'Direct', 'Referral'][i % 6 + 1] as channel_group, "
            "'google' as source, 'cpc' as medium, 'campaign ' || (i % 57) as campaign, "
            "'cmp_' || (i % 57) as campaign_key, timestamp '2024-01-01' + to_seconds(i * 21) as touched_at, "
            "((i * 7919) % 1000) / 1000.0 as credit, ((i * 7919) % 1000) / 10.0 as attributed_revenue, "
            f"i % 7 >= 5 as is_data_driven from range({rows['fct_attribution']}) t(i)")
        con.execute(
            "create table gold.fct_sessions as select 'ses_' || i as session_id, 'cus_' || (i % 98400) as customer_id, "
            "'device' as stitched_by, 'dev_' || (i % 400000) as user_pseudo_id, "
            "timestamp '2024-01-01' + to_seconds(i * 66) as started_at, "
            "timestamp '2024-01-01' + to_seconds(i * 66 + 300) as ended_at, "
            "cast(timestamp '2024-01-01' + to_seconds(i * 66) as date) as session_date, 'google' as source, "
            "'organic' as medium, ['Organic Search', 'Direct', 'Email'][i % 3 + 1] as channel_group, "
            "cast(i % 9 as integer) as page_views, i % 11 = 0 as is_converted "
            f"from range({rows['fct_sessions']}) t(i)")
        con.execute(
            "create table gold.customer_identity_map as select md5('id' || i) as identifier_key, "
            "['email', 'ga4_user_pseudo_id', 'stripe_customer', 'sf_contact'][i % 4 + 1] as identifier_type, "
            "md5('v' || i) as identifier_value, true as is_hashed, 'cus_' || (i % 98400) as customer_id, "
            "'email_exact' as match_rule, 1.0 as match_confidence, false as is_anonymous, "
            "timestamp '2024-01-01' + to_seconds(i * 60) as first_seen_at, timestamp '2025-12-30' as changed_at "
            f"from range({rows['customer_identity_map']}) t(i)")
        con.execute(
            "create table gold.fct_orders as select 'ord_' || i as order_id, 'cus_' || (i % 98400) as customer_id, "
            "timestamp '2024-01-01' + to_seconds(i * 327) as ordered_at, (i % 500) * 1.1 as net_revenue, "
            f"'USD' as currency from range({rows['fct_orders']}) t(i)")
    return rows


def _a_day(wh: Any, rows: dict[str, int]) -> None:
    """One day's changes in gold: a share of each table's rows updated, new rows added."""
    keys = {"fct_attribution": "attribution_id", "fct_sessions": "session_id",
            "customer_identity_map": "identifier_key", "fct_orders": "order_id"}
    change = {"fct_attribution": "credit = credit * 0.97, attributed_revenue = attributed_revenue * 0.97",
              "fct_sessions": "page_views = page_views + 1",
              "customer_identity_map": "customer_id = customer_id || '_merged', changed_at = timestamp '2025-12-31'",
              "fct_orders": "net_revenue = net_revenue - 1"}
    with wh.connect() as con:
        for table, (updated, added) in DAY.items():
            every = max(1, round(1 / updated))
            con.execute(f"update gold.{table} set {change[table]} where hash({keys[table]}) % {every} = 0")
            n = int(rows[table] * added)
            # the added rows: copies of the last rows under new keys
            con.execute(f"insert into gold.{table} select * replace ('new_' || {keys[table]} as {keys[table]}) "
                        f"from gold.{table} order by {keys[table]} limit {n}")


def measure(scale: float, repeats: int) -> dict[str, Any]:
    from retailpulse import publish
    from retailpulse.warehouse import get_warehouse

    with tempfile.TemporaryDirectory(prefix="rp-bench-publish-delta-") as tmp:
        root = Path(tmp)
        settings = _settings(root)
        wh = get_warehouse(settings)
        rows = _build(wh, scale)
        publish.publish_gold(settings, keep_previous=False)
        saved = root / "serving-before-the-day"
        shutil.copytree(settings.serving_path, saved, symlinks=True)
        _a_day(wh, rows)
        times: dict[str, list[float]] = {"full_copy": [], "row_delta": []}
        deltas: dict[str, Any] = {}
        default_min = publish.DELTA_MIN_ROWS
        try:
            for r in range(repeats):
                for mode in ("full_copy", "row_delta") if r % 2 == 0 else ("row_delta", "full_copy"):
                    shutil.rmtree(settings.serving_path)
                    shutil.copytree(saved, settings.serving_path, symlinks=True)
                    os.sync()
                    publish.DELTA_MIN_ROWS = 10**12 if mode == "full_copy" else default_min
                    began = time.perf_counter()
                    result = publish.publish_gold(settings)
                    times[mode].append(round(time.perf_counter() - began, 2))
                    if mode == "row_delta":
                        deltas = result["row_deltas"]
                    elif result["row_deltas"]:
                        raise RuntimeError(f"the full-copy mode published row by row: {result['row_deltas']}")
                    print(f"  {mode:10s} {times[mode][-1]:6.2f} s", flush=True)
        finally:
            publish.DELTA_MIN_ROWS = default_min
        medians = {m: round(statistics.median(t), 2) for m, t in times.items()}
        print(f"  median: full copy {medians['full_copy']:.2f} s, row by row {medians['row_delta']:.2f} s", flush=True)
        return {"scale": scale, "rows_before_the_day": rows, "day_changes": {t: {"updated_share": u, "added_share": a}
                                                                             for t, (u, a) in DAY.items()},
                "seconds": times, "median_seconds": medians, "row_deltas": deltas,
                "speedup": round(medians["full_copy"] / medians["row_delta"], 2) if medians["row_delta"] else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.publish_delta")
    ap.add_argument("--scale", type=float, default=1.0, help="table sizes as a multiple of the medium world's")
    ap.add_argument("--repeats", type=int, default=3, help="publishes per mode, alternating (median reported)")
    args = ap.parse_args(argv)
    started = machine()
    run = measure(args.scale, args.repeats)
    write_result("publish_delta", {"benchmark": "publish_delta", "recorded_at": now(), "machine": started,
                                   "load_avg_at_end": [round(x, 2) for x in os.getloadavg()], **run})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
