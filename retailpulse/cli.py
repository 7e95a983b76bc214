"""The ``retailpulse`` command.

Errors are one clear line on stderr and a non-zero exit, never a traceback (set
RETAILPULSE_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from retailpulse.settings import Settings, load_settings


class CliError(Exception):
    """A user-facing error: printed as one line."""


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _print(msg: str = "") -> None:
    print(msg, flush=True)


# --- commands ---------------------------------------------------------------------------------

def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    from retailpulse import airflow_setup
    from retailpulse.pipeline import init_warehouse

    init_warehouse(settings)
    did = airflow_setup.init(settings)
    if not args.quiet:
        _print(f"warehouse: {settings.duckdb_path if settings.target == 'duckdb' else 'postgres'} (schemas ready)")
        _print(f"airflow home: {settings.airflow_home} ({'initialised' if did else 'already initialised'})")
    return 0


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from retailpulse import airflow_setup

    start, end = args.start, args.end or args.start
    if end < start:
        raise CliError(f"--end {end} is before --start {start}")
    airflow_setup.init(settings)
    if args.daily:
        day = start
        while day <= end:
            _print(f"running retailpulse_daily for {day} ...")
            airflow_setup.run_daily(settings, day, day)
            day += dt.timedelta(days=1)
    else:
        _print(f"running retailpulse_daily for {start}..{end} ...")
        airflow_setup.run_daily(settings, start, end)
    _print_summary(settings)
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    """make run: sandbox up, one DAG run over the demo period, sandbox down, summary."""
    from retailpulse.demo import run_demo

    run_demo(settings, force=args.force, progress=_print)
    _print_summary(settings, demo=True)
    return 0


def cmd_query(settings: Settings, args: argparse.Namespace) -> int:
    from retailpulse.query import run_query

    out = run_query(settings, args.sql, fmt=args.format, serving=args.serving, limit=args.limit)
    sys.stdout.write(out)
    if not out.endswith("\n"):
        sys.stdout.write("\n")
    return 0


def cmd_sandbox(settings: Settings, args: argparse.Namespace) -> int:
    try:
        from sandbox.server import main as sandbox_main
    except ImportError as exc:
        raise CliError(f"the sandbox server is not available: {exc}") from None
    argv = ["--world", args.world, "--seed", str(args.seed), "--port", str(args.port)]
    if args.as_of:
        argv += ["--as-of", args.as_of]
    if args.faults:
        argv += ["--faults", args.faults]
    return int(sandbox_main(argv) or 0)


def cmd_airflow(settings: Settings, args: argparse.Namespace) -> int:
    from retailpulse.airflow_ui import serve

    return serve(settings, port=args.port)


def cmd_import_transactions(settings: Settings, args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ingestion.transactions import ColumnMapping, import_transactions_command

    mapping = ColumnMapping(**{role: getattr(args, f"{role}_col") for role in asdict(ColumnMapping())})
    report = import_transactions_command(
        settings, args.file, mapping, currency=args.currency, day_first=args.day_first,
        date_format=args.date_format, timezone=args.timezone, delimiter=args.delimiter,
        encoding=args.encoding, max_reject_fraction=args.max_reject_fraction,
    )
    _print(json.dumps(report.to_dict(), indent=2, default=str) if args.json else "\n".join(report.lines()))
    if args.build:
        from retailpulse.pipeline import stage_dbt

        _print("building silver and gold with dbt ...")
        stage_dbt(settings)
        _print_summary(settings)
    return 0


def cmd_docs(settings: Settings, args: argparse.Namespace) -> int:
    from ingestion.gx_docs import build_data_docs
    from retailpulse.dbt_runner import run_dbt
    from retailpulse.pipeline import init_warehouse

    init_warehouse(settings)
    run_dbt(settings, ["docs", "generate", "--target-path", str(settings.data_path / "dbt_docs")])
    gx_index = build_data_docs(settings)
    _print(f"dbt docs: {settings.data_path / 'dbt_docs' / 'index.html'} "
           f"(serve with: .venv/bin/dbt docs serve --project-dir dbt --target-path {settings.data_path / 'dbt_docs'} "
           f"--profiles-dir {settings.data_path / 'dbt_profiles'} --host 127.0.0.1)")
    _print(f"Great Expectations Data Docs: {gx_index}")
    return 0


def cmd_erase(settings: Settings, args: argparse.Namespace) -> int:
    from retailpulse.erasure import erase_command

    if bool(args.email) == bool(args.customer_id):
        raise CliError("give exactly one of --email or --customer-id")
    _print(erase_command(settings, email=args.email, customer_id=args.customer_id))
    return 0


def _print_summary(settings: Settings, demo: bool = False) -> None:
    from retailpulse.pipeline import gold_counts

    counts = gold_counts(settings)
    _print("")
    _print("Gold tables built:")
    width = max((len(t) for t in counts), default=10)
    for table, n in sorted(counts.items()):
        _print(f"  gold.{table:<{width}}  {n:>10,} rows")
    _print("")
    _print("What next:")
    _print('  retailpulse query "select order_date, sum(net_revenue) from gold.fct_orders group by 1 order by 1 desc limit 7"')
    _print(f"  serving copy for BI tools: {settings.serving_path / 'retailpulse_serving.duckdb'}")
    _print("  make airflow   # the Airflow UI on http://127.0.0.1:8080 (login printed at start)")
    _print("  make dashboard # the executive dashboard on http://127.0.0.1:8501; make api for the scores API")


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "init": cmd_init,
    "run": cmd_run,
    "demo": cmd_demo,
    "query": cmd_query,
    "sandbox": cmd_sandbox,
    "airflow": cmd_airflow,
    "import-transactions": cmd_import_transactions,
    "docs": cmd_docs,
    "erase": cmd_erase,
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="retailpulse",
        description="RetailPulse: customer-analytics warehouse (sources -> bronze -> dbt gold -> ML scores -> BI).",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("init", help="create the warehouse schemas and the project's Airflow home")
    s.add_argument("--quiet", action="store_true")

    s = sub.add_parser("run", help="run the retailpulse_daily DAG for a date or a date range")
    s.add_argument("--start", type=_date, required=True, help="first date (YYYY-MM-DD)")
    s.add_argument("--end", type=_date, help="last date, inclusive (default: --start)")
    s.add_argument("--daily", action="store_true", help="one DAG run per day instead of one run over the range")

    s = sub.add_parser("demo", help="start the sandbox, run the pipeline over the demo period, print what was built")
    s.add_argument("--force", action="store_true", help="run even if the demo already ran on this world")

    s = sub.add_parser("query", help="read-only SQL against the warehouse")
    s.add_argument("sql")
    s.add_argument("--format", choices=["table", "csv", "json"], default="table")
    s.add_argument("--serving", action="store_true", help="query the published serving copy instead")
    s.add_argument("--limit", type=int, default=1000, help="rows to print at most (table format)")

    s = sub.add_parser("sandbox", help="serve the simulated retailer's APIs on 127.0.0.1")
    s.add_argument("--world", choices=["small", "medium", "large"], default="small")
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--as-of", help="serve the world as of this ISO date/time")
    s.add_argument("--faults", help='fault rates, e.g. "429=0.05,5xx=0.02,malformed=0.01"')

    s = sub.add_parser("airflow", help="start the Airflow UI (127.0.0.1) with the project's DAGs")
    s.add_argument("--port", type=int, default=8080)

    s = sub.add_parser("import-transactions", help="load a CSV or Parquet transaction log (no APIs needed)")
    s.add_argument("file", help="CSV (any delimiter, optionally gzipped) or Parquet file")
    for role in ("customer", "timestamp", "amount", "unit_price", "quantity", "order_id", "currency", "country"):
        s.add_argument(f"--{role.replace('_', '-')}-col", dest=f"{role}_col", metavar="COLUMN",
                       help=f"column holding the {role.replace('_', ' ')} (default: guessed from common names)")
    s.add_argument("--currency", help="ISO currency of the amounts when the file has no currency column")
    s.add_argument("--day-first", dest="day_first", action="store_true", default=None, help="dates are DD/MM/YYYY")
    s.add_argument("--month-first", dest="day_first", action="store_false", help="dates are MM/DD/YYYY")
    s.add_argument("--date-format", help="explicit strptime format, e.g. %%d.%%m.%%Y %%H:%%M")
    s.add_argument("--timezone", default="UTC", help="time zone of naive timestamps (default UTC)")
    s.add_argument("--delimiter", help="CSV delimiter (default: sniffed)")
    s.add_argument("--encoding", help="file encoding (default: utf-8, then cp1252/latin-1)")
    s.add_argument("--max-reject-fraction", type=float, help="refuse the import above this share of rejected lines")
    s.add_argument("--json", action="store_true", help="print the import report as JSON")
    s.add_argument("--build", action="store_true", help="run dbt afterwards so gold includes the import")

    sub.add_parser("docs", help="build the dbt docs and the Great Expectations Data Docs")

    s = sub.add_parser("erase", help="erase one person everywhere (GDPR), with a hashed suppression entry and an audit row")
    s.add_argument("--email", help="the person's e-mail (any case/whitespace variant)")
    s.add_argument("--customer-id", help="the resolved customer_id from gold.dim_customers")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    debug = os.environ.get("RETAILPULSE_DEBUG") == "1"
    try:
        settings = load_settings()
        from retailpulse.airflow_setup import apply_env
        from retailpulse.logging_setup import configure_cli_logging

        apply_env(settings)  # before anything imports airflow: the project's own Airflow home

        configure_cli_logging(settings, verbose=args.verbose)
        return COMMANDS[args.command](settings, args)
    except KeyboardInterrupt:
        print("retailpulse: interrupted", file=sys.stderr)
        return 130
    except ValidationError as exc:  # bad settings: name the variable
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first.get("loc") else "?"
        print(f"retailpulse: error: invalid setting RETAILPULSE_{field.upper()}: {first['msg']}", file=sys.stderr)
        return 1
    except Exception as exc:  # one clear line, no traceback
        if debug:
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        try:
            from retailpulse.logging_setup import RedactingFilter

            msg = RedactingFilter(load_settings().secret_values()).redact(msg)
        except Exception:
            pass
        print(f"retailpulse: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
