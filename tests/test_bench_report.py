"""bench.report's targets table: the large-world row says what the run shows."""

from __future__ import annotations

from bench.report import targets_section


def _large(**over):
    run = {"machine": {"memory_gb": 23.5, "cpus": 2}, "direct_pipeline_seconds": 2700.0,
           "incremental_day_seconds": 540.0, "incremental_share_of_full": 0.2, "sandbox_peak_rss_mb": 6100.0,
           "dbt_failures": [],
           "stages": [{"stage": "dbt build (full refresh)", "seconds": 500.0, "peak_rss_mb": 12000.0}],
           "incremental_stages": [{"stage": "incr ml scoring", "seconds": 60.0, "peak_rss_mb": 13500.0}]}
    run.update(over)
    return run


def _row(run):
    (row,) = [r for r in targets_section({"large": run}) if r.startswith("| large completes")]
    return row


def test_large_row_met_names_the_run_its_incremental_day_and_the_memory_beside_it():
    row = _row(_large())
    assert "one uninterrupted run on 2 cores, 23.5 GB: full refresh 2700 s (45 min" in row
    assert "incremental day 540 s (20% of it)" in row
    assert "largest stage peak 13,500 MB (incr ml scoring)" in row and "6,100 MB" in row
    assert row.endswith("| **met** |")


def test_large_row_not_met_without_an_incremental_day_or_with_failed_tests():
    assert _row(_large(incremental_day_seconds=None)).endswith("**not met**: the incremental day did not run |")
    failed = _large(dbt_failures=[{"stage": "dbt build (full refresh)", "failed_nodes": ["x"]}])
    assert _row(failed).endswith("**not met**: dbt tests failed |")
