"""The weekly HTML report: the week's KPIs vs the previous week, from the serving copy.

:func:`render_weekly_report` writes one self-contained HTML file (inline CSS and SVG charts, no
external assets) to ``<reports>/retailpulse_weekly_<week_end>.html`` (``RETAILPULSE_REPORTS_DIR``,
default ``<home>/reports``). :func:`email_report` sends it through Airflow's SMTP connection
(``RETAILPULSE_REPORT_SMTP_CONN_ID``, default ``smtp_default``) to ``RETAILPULSE_REPORT_EMAIL_TO``
when both are configured, and otherwise logs why it skipped. The DAG
``retailpulse_weekly_report`` runs both every Monday.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retailpulse.serving import ServingReader, ServingUnavailable, published_at, serving_file
from retailpulse.settings import Settings

log = logging.getLogger(__name__)

ATTRIBUTION_MODEL = "last_non_direct"
COLORS = ("#1f6feb", "#9ec5fe")  # this week, previous week


# --- tiny SVG charts (no dependencies, render in any browser) -------------------------------------
def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    import math

    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp:
            return m * exp
    return 10 * exp


def _fmt(v: float) -> str:
    if abs(v) >= 1_000_000:
        return f"{v / 1_000_000:.1f}M"
    if abs(v) >= 1_000:
        return f"{v / 1_000:.1f}k"
    return f"{v:.0f}" if abs(v) >= 10 or v == int(v) else f"{v:.1f}"


def svg_grouped_bars(categories: Sequence[str], series: dict[str, Sequence[float]], title: str,
                     width: int = 640, height: int = 260, colors: Sequence[str] = COLORS) -> str:
    """Vertical grouped bars: one group per category, one bar per series."""
    left, right, top, bottom = 48, 12, 28, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    vmax = _nice_max(max([float(v) for vals in series.values() for v in vals] + [0.0]))
    n_cat, n_ser = max(len(categories), 1), max(len(series), 1)
    group_w = plot_w / n_cat
    bar_w = group_w * 0.8 / n_ser
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="{html.escape(title)}" font-family="Helvetica,Arial,sans-serif" font-size="11">',
             f'<text x="{left}" y="16" font-size="13" font-weight="bold" fill="#222">{html.escape(title)}</text>']
    for i in range(5):
        v = vmax * i / 4
        y = top + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#666">{_fmt(v)}</text>')
    for ci, cat in enumerate(categories):
        gx = left + ci * group_w + group_w * 0.1
        for si, (name, vals) in enumerate(series.items()):
            v = float(vals[ci]) if ci < len(vals) and vals[ci] is not None else 0.0
            h = plot_h * v / vmax if vmax else 0
            x = gx + si * bar_w
            parts.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 1:.1f}" height="{h:.1f}" '
                         f'fill="{colors[si % len(colors)]}"><title>{html.escape(name)} {html.escape(str(cat))}: '
                         f'{v:,.2f}</title></rect>')
        parts.append(f'<text x="{left + ci * group_w + group_w / 2:.1f}" y="{top + plot_h + 14}" text-anchor="middle" '
                     f'fill="#444">{html.escape(str(cat))}</text>')
    lx = left
    for si, name in enumerate(series):
        parts.append(f'<rect x="{lx}" y="{height - 14}" width="10" height="10" fill="{colors[si % len(colors)]}"/>'
                     f'<text x="{lx + 14}" y="{height - 5}" fill="#444">{html.escape(name)}</text>')
        lx += 24 + 7 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def svg_hbars(labels: Sequence[str], values: Sequence[float], title: str, width: int = 640,
              color: str = COLORS[0]) -> str:
    """Horizontal bars, one per label (e.g. attributed revenue per channel)."""
    row, left, top, right = 22, 150, 28, 70
    height = top + row * max(len(labels), 1) + 8
    vmax = max([float(v) for v in values] + [0.0]) or 1.0
    plot_w = width - left - right
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="{html.escape(title)}" font-family="Helvetica,Arial,sans-serif" font-size="11">',
             f'<text x="0" y="16" font-size="13" font-weight="bold" fill="#222">{html.escape(title)}</text>']
    for i, (lab, v) in enumerate(zip(labels, values)):
        y = top + i * row
        w = plot_w * max(float(v), 0.0) / vmax
        parts.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end" fill="#444">{html.escape(str(lab))}</text>'
                     f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" fill="{color}"/>'
                     f'<text x="{left + w + 4:.1f}" y="{y + 14}" fill="#444">{_fmt(float(v))}</text>')
    parts.append("</svg>")
    return "".join(parts)


# --- data ---------------------------------------------------------------------------------------------
@dataclass
class Kpi:
    name: str
    now: float | None
    before: float | None
    kind: str = "number"  # number | money | rate

    @property
    def change(self) -> float | None:
        if self.now is None or self.before is None or self.before == 0:
            return None
        return (self.now - self.before) / abs(self.before)


@dataclass
class WeeklyData:
    week_start: dt.date
    week_end: dt.date
    currency: str
    data_through: dt.date
    kpis: list[Kpi]
    daily_now: list[float]
    daily_before: list[float]
    channels: list[dict[str, Any]] = field(default_factory=list)
    at_risk: int | None = None
    segments: list[tuple[str, int]] = field(default_factory=list)
    freshness: list[dict[str, Any]] = field(default_factory=list)
    published: dt.datetime | None = None


def _nz(v: Any) -> float:
    return 0.0 if v is None else float(v)


def collect(reader: ServingReader, week_end: dt.date | None = None) -> WeeklyData:
    """Everything the report shows, from the serving copy."""
    if not reader.has_table("fct_orders"):
        raise ServingUnavailable("gold.fct_orders is not in the serving copy yet: run `make run`")
    has_kpi = reader.has_table("kpi_daily") and bool(reader.scalar("select count(*) from gold.kpi_daily"))
    through = reader.scalar("select max(date_day)::date from gold.kpi_daily" if has_kpi
                            else "select max(order_date)::date from gold.fct_orders")
    if through is None:
        raise ServingUnavailable("gold.fct_orders is empty: run `make run`")
    end = week_end or through
    start = end - dt.timedelta(days=6)
    p_start, p_end = start - dt.timedelta(days=7), start - dt.timedelta(days=1)
    # revenue lines = paid orders and imported returns (negative net), as kpi_daily counts them
    rev = "(is_paid or is_return)" if "is_return" in reader.columns("fct_orders") else "is_paid"
    row = reader.records(f"""
        select
            count(*) filter (where is_paid and order_date between $1 and $2) as orders_now,
            count(*) filter (where is_paid and order_date between $3 and $4) as orders_before,
            sum(net_revenue) filter (where {rev} and order_date between $1 and $2) as revenue_now,
            sum(net_revenue) filter (where {rev} and order_date between $3 and $4) as revenue_before,
            sum(net_revenue) filter (where is_paid and order_date between $1 and $2) as paid_revenue_now,
            sum(net_revenue) filter (where is_paid and order_date between $3 and $4) as paid_revenue_before,
            sum(refunded_revenue) filter (where {rev} and order_date between $1 and $2) as refunds_now,
            sum(refunded_revenue) filter (where {rev} and order_date between $3 and $4) as refunds_before,
            count(distinct customer_id) filter (where is_paid and order_date between $1 and $2) as active_now,
            count(distinct customer_id) filter (where is_paid and order_date between $3 and $4) as active_before,
            count(distinct customer_id) filter (where is_first_order and order_date between $1 and $2) as new_now,
            count(distinct customer_id) filter (where is_first_order and order_date between $3 and $4) as new_before,
            count(distinct customer_id) filter (where is_paid and customer_order_number > 1
                                                and order_date between $1 and $2) as returning_now,
            count(distinct customer_id) filter (where is_paid and customer_order_number > 1
                                                and order_date between $3 and $4) as returning_before,
            any_value(reporting_currency) as currency
        from gold.fct_orders where order_date between $3 and $2""", [start, end, p_start, p_end])[0]
    aov = lambda r, o: (_nz(r) / o) if o else None  # noqa: E731
    kpis = [
        Kpi("Net revenue", _nz(row["revenue_now"]), _nz(row["revenue_before"]), "money"),
        Kpi("Orders", _nz(row["orders_now"]), _nz(row["orders_before"])),
        Kpi("Average order value", aov(row["paid_revenue_now"], row["orders_now"]),
            aov(row["paid_revenue_before"], row["orders_before"]), "money"),
        Kpi("Active customers", _nz(row["active_now"]), _nz(row["active_before"])),
        Kpi("New customers", _nz(row["new_now"]), _nz(row["new_before"])),
        Kpi("Returning customers", _nz(row["returning_now"]), _nz(row["returning_before"])),
        Kpi("Refunds and returns", _nz(row["refunds_now"]), _nz(row["refunds_before"]), "money"),
    ]
    if has_kpi:
        s = reader.records("""
            select sum(sessions) filter (where date_day between $1 and $2) as s_now,
                   sum(sessions) filter (where date_day between $3 and $4) as s_before,
                   sum(converted_sessions) filter (where date_day between $1 and $2) as c_now,
                   sum(converted_sessions) filter (where date_day between $3 and $4) as c_before
            from gold.kpi_daily where date_day between $3 and $2""", [start, end, p_start, p_end])[0]
        if _nz(s["s_now"]) or _nz(s["s_before"]):
            kpis.append(Kpi("Sessions", _nz(s["s_now"]), _nz(s["s_before"])))
            kpis.append(Kpi("Session conversion rate", _nz(s["c_now"]) / _nz(s["s_now"]) if s["s_now"] else None,
                            _nz(s["c_before"]) / _nz(s["s_before"]) if s["s_before"] else None, "rate"))
    by_day = dict(reader.rows(f"""
        select order_date::date, sum(net_revenue) from gold.fct_orders
        where {rev} and order_date between ? and ? group by 1""", [p_start, end])[1])
    daily_now = [_nz(by_day.get(start + dt.timedelta(days=i))) for i in range(7)]
    daily_before = [_nz(by_day.get(p_start + dt.timedelta(days=i))) for i in range(7)]
    data = WeeklyData(week_start=start, week_end=end, currency=row["currency"] or "USD", data_through=through,
                      kpis=kpis, daily_now=daily_now, daily_before=daily_before)

    if reader.has_table("channel_performance_daily"):
        models = [r[0] for r in reader.rows("select distinct model from gold.channel_performance_daily")[1]]
        model = ATTRIBUTION_MODEL if ATTRIBUTION_MODEL in models else (sorted(models)[0] if models else None)
        if model:
            data.channels = reader.records("""
                select channel_group, sum(spend) as spend, sum(attributed_revenue) as revenue,
                    sum(attributed_conversions) as conversions,
                    sum(attributed_revenue) / nullif(sum(spend), 0) as roas,
                    sum(spend) / nullif(sum(attributed_new_customers), 0) as cac, ? as model
                from gold.channel_performance_daily where model = ? and date_day between ? and ?
                group by 1 order by revenue desc nulls last""", [model, model, start, end])
    if reader.has_table("dim_customers"):
        cols = reader.columns("dim_customers")
        if {"value_tier", "churn_risk_band"} <= set(cols):
            n_scored = reader.scalar("select count(value_tier) from gold.dim_customers")
            if n_scored:
                data.at_risk = int(reader.scalar(
                    "select count(*) from gold.dim_customers where value_tier in ('platinum', 'gold') "
                    "and churn_risk_band = 'high'"))
        if "rfm_segment" in cols:
            data.segments = [(s, int(n)) for s, n in reader.rows(
                "select rfm_segment, count(*) from gold.dim_customers where rfm_segment is not null "
                "group by 1 order by 2 desc")[1]]
    if reader.has_table("data_health"):
        data.freshness = reader.records("""
            select source, max(strptime(split_part(interval_key, '_', 2), '%Y%m%dT%H%M%SZ'))
                       filter (where status = 'loaded') as data_through,
                   count(*) filter (where status <> 'loaded') as refused_batches, sum(rejected) as rejected_records
            from gold.data_health group by 1 order by 1""")
    data.published = published_at(reader.path)
    return data


# --- HTML -----------------------------------------------------------------------------------------------
CSS = """
body{font-family:Helvetica,Arial,sans-serif;color:#222;max-width:760px;margin:24px auto;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:16px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
.muted{color:#777;font-size:12px}table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:6px 8px;border-bottom:1px solid #eee;text-align:right}th:first-child,td:first-child{text-align:left}
th{background:#f6f8fa}.up{color:#1a7f37}.down{color:#cf222e}.note{background:#fff8c5;padding:8px;font-size:13px}
"""


def _value(v: float | None, kind: str, currency: str) -> str:
    if v is None:
        return "–"
    if kind == "money":
        return f"{v:,.2f} {currency}"
    if kind == "rate":
        return f"{v:.2%}"
    return f"{v:,.0f}"


def _opt(v: Any, fmt: str) -> str:
    return "–" if v is None else fmt.format(v)


def _change(k: Kpi) -> str:
    c = k.change
    if c is None:
        return '<td class="muted">–</td>'
    good = c >= 0 if not k.name.startswith("Refunds") else c <= 0
    return f'<td class="{"up" if good else "down"}">{c:+.1%}</td>'


def render_html(d: WeeklyData, generated: dt.datetime) -> str:
    e = html.escape
    cur = d.currency
    out = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
           f"<title>RetailPulse weekly report {d.week_start:%Y-%m-%d} – {d.week_end:%Y-%m-%d}</title>",
           f"<style>{CSS}</style></head><body>",
           "<h1>RetailPulse weekly report</h1>",
           f'<p class="muted">Week {d.week_start:%a %d %b %Y} – {d.week_end:%a %d %b %Y} vs the week before · '
           f"revenue in {e(cur)} · generated {generated:%Y-%m-%d %H:%M} UTC"
           + (f" from the serving copy published {d.published:%Y-%m-%d %H:%M} UTC" if d.published else "") + "</p>"]
    if d.data_through < d.week_end:
        out.append(f'<p class="note">Data only runs through {d.data_through:%a %d %b %Y}: the last '
                   f"{(d.week_end - d.data_through).days} day(s) of the week have no data yet.</p>")
    out.append("<h2>Key figures</h2><table><tr><th>Metric</th><th>This week</th><th>Previous week</th><th>Change</th></tr>")
    for k in d.kpis:
        out.append(f"<tr><td>{e(k.name)}</td><td>{_value(k.now, k.kind, cur)}</td>"
                   f"<td>{_value(k.before, k.kind, cur)}</td>{_change(k)}</tr>")
    out.append("</table>")
    out.append("<h2>Net revenue per day</h2>")
    days = [f"{d.week_start + dt.timedelta(days=i):%a}" for i in range(7)]
    out.append(svg_grouped_bars(days, {"this week": d.daily_now, "previous week": d.daily_before},
                                f"Net revenue per day ({cur})"))
    if d.channels:
        model = d.channels[0]["model"]
        out.append(f"<h2>Channels (attribution: {e(model)})</h2>")
        out.append(svg_hbars([c["channel_group"] for c in d.channels], [_nz(c["revenue"]) for c in d.channels],
                             f"Attributed revenue by channel ({cur})"))
        out.append("<table><tr><th>Channel</th><th>Spend</th><th>Attributed revenue</th><th>Conversions</th>"
                   "<th>ROAS</th><th>CAC</th></tr>")
        for c in d.channels:
            out.append(f"<tr><td>{e(str(c['channel_group']))}</td><td>{_nz(c['spend']):,.0f}</td>"
                       f"<td>{_nz(c['revenue']):,.0f}</td><td>{_nz(c['conversions']):,.1f}</td>"
                       f"<td>{_opt(c['roas'], '{:.2f}')}</td><td>{_opt(c['cac'], '{:,.2f}')}</td></tr>")
        out.append("</table>")
    if d.at_risk is not None or d.segments:
        out.append("<h2>Customers</h2>")
        if d.at_risk is not None:
            out.append(f"<p><b>{d.at_risk:,}</b> high-value customers (platinum/gold) are at high risk of churning: "
                       "the list is on the dashboard's Customers page.</p>")
        if d.segments:
            out.append(svg_hbars([s for s, _ in d.segments], [n for _, n in d.segments], "Customers by RFM segment",
                                 color="#6f42c1"))
    if d.freshness:
        out.append("<h2>Data health</h2><table><tr><th>Source</th><th>Data through</th><th>Refused batches</th>"
                   "<th>Rejected records</th></tr>")
        for f in d.freshness:
            through = f["data_through"]
            out.append(f"<tr><td>{e(str(f['source']))}</td><td>{_opt(through, '{:%Y-%m-%d %H:%M}')}"
                       f"</td><td>{int(_nz(f['refused_batches']))}</td><td>{int(_nz(f['rejected_records']))}</td></tr>")
        out.append("</table>")
    out.append('<p class="muted">RetailPulse · numbers from the gold tables of the published serving copy.</p>')
    out.append("</body></html>")
    return "\n".join(out)


def report_path(settings: Settings, week_end: dt.date) -> Path:
    return settings.reports_path / f"retailpulse_weekly_{week_end:%Y-%m-%d}.html"


def render_weekly_report(settings: Settings, week_end: dt.date | str | None = None) -> Path:
    """Render the week ending ``week_end`` (default: the last day with data) vs the week before
    into a self-contained HTML file; returns its path (re-rendering replaces it atomically)."""
    if isinstance(week_end, str):
        week_end = dt.date.fromisoformat(week_end)
    reader = ServingReader(serving_file(settings))
    try:
        data = collect(reader, week_end)
    finally:
        reader.close()
    page = render_html(data, dt.datetime.now(dt.timezone.utc))
    path = report_path(settings, data.week_end)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    log.info("weekly report for %s – %s written to %s", data.week_start, data.week_end, path)
    return path


# --- e-mail ----------------------------------------------------------------------------------------------
def _smtp_configured(conn_id: str) -> bool:
    try:
        from airflow.sdk import BaseHook
    except Exception:  # pragma: no cover - Airflow not installed
        return False
    try:
        BaseHook.get_connection(conn_id)
        return True
    except Exception:
        return False


def email_report(settings: Settings, path: Path, subject: str | None = None) -> bool:
    """E-mail the report (HTML body + the file attached) through the Airflow SMTP connection.
    Returns False, with a log line saying why, when no connection or no recipients are configured."""
    recipients = [a.strip() for a in (settings.report_email_to or "").split(",") if a.strip()]
    if not recipients:
        log.info("weekly report not e-mailed: no recipients (set RETAILPULSE_REPORT_EMAIL_TO); report at %s", path)
        return False
    conn_id = settings.report_smtp_conn_id
    if not _smtp_configured(conn_id):
        log.info("weekly report not e-mailed: no Airflow SMTP connection %r configured; report at %s", conn_id, path)
        return False
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    body = Path(path).read_text(encoding="utf-8")
    subject = subject or f"RetailPulse weekly report ({Path(path).stem.rsplit('_', 1)[-1]})"
    with SmtpHook(smtp_conn_id=conn_id) as hook:
        hook.send_email_smtp(to=recipients, subject=subject, html_content=body, files=[str(path)])
    log.info("weekly report e-mailed to %d recipient(s) through connection %r", len(recipients), conn_id)
    return True
