"""The dashboard's pages. Each reads pre-aggregated gold through :mod:`dashboard.data`.

A page whose gold table is not in the serving copy yet says so ("not built yet: run
`make run`") instead of failing.
"""

from __future__ import annotations

import datetime as dt
import json
import math

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import data
from dashboard.data import Filters

DEFAULT_MODEL = "last_non_direct"
MODEL_ORDER = ["first_touch", "last_touch", "last_non_direct", "linear", "time_decay", "position_based", "markov",
               "shapley"]
TIER_ORDER = ["platinum", "gold", "silver", "bronze"]
TIER_COLORS = ["#6c6f9e", "#d4a017", "#a8a9ad", "#cd7f32"]
HORIZON_DAYS = 90


# --- helpers ----------------------------------------------------------------------------------
def need(*names: str) -> bool:
    """True when every gold table exists; otherwise show the 'not built yet' message."""
    missing = [n for n in names if not data.has(n)]
    if missing:
        counts = data.row_counts()
        what = ", ".join(f"gold.{m}" + (" (empty)" if m in counts else "") for m in missing)
        st.warning(f"{what} not built yet: run `make run` (the pipeline publishes it to the serving copy).", icon="⏳")
        return False
    return True


def chart(c: alt.Chart) -> None:
    st.altair_chart(c, width="stretch")


def money(v: float | None, currency: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    prefix = "$" if currency in ("", "USD") else ""
    suffix = "" if currency in ("", "USD") else f" {currency}"
    return f"{prefix}{v:,.0f}{suffix}" if abs(v) >= 100 else f"{prefix}{v:,.2f}{suffix}"


def num(v: float | None, digits: int = 0) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:,.{digits}f}"


def change(now: float | None, before: float | None) -> str | None:
    """Relative change as text for st.metric's delta (None when not computable)."""
    if now is None or before is None or pd.isna(now) or pd.isna(before) or before == 0:
        return None
    return f"{(now - before) / abs(before):+.1%}"


def _f(v) -> float | None:
    return None if v is None or pd.isna(v) else float(v)


def currency() -> str:
    if data.has("kpi_daily") and "reporting_currency" in data.columns("kpi_daily"):
        df = data.query("select any_value(reporting_currency) as c from gold.kpi_daily")
        if len(df) and isinstance(df.loc[0, "c"], str):
            return df.loc[0, "c"]
    return "USD"


def revenue_lines(alias: str = "o") -> str:
    """Rows of fct_orders that move revenue: paid orders and imported returns (negative net), as
    kpi_daily counts them; copies published before returns existed have no is_return."""
    if "is_return" in data.columns("fct_orders"):
        return f"({alias}.is_paid or {alias}.is_return)"
    return f"{alias}.is_paid"


def period_caption(f: Filters) -> None:
    p0, p1 = f.previous
    st.caption(f"{f.start:%d %b %Y} – {f.end:%d %b %Y} ({f.days} days) vs previous {p0:%d %b} – {p1:%d %b %Y}"
               + ("" if f.channel_selected is None else f" · channel: {f.channel}"))


# --- executive --------------------------------------------------------------------------------
def executive(f: Filters) -> None:
    st.header("Executive summary")
    if not need("fct_orders"):
        return
    period_caption(f)
    cur = currency()
    p0, p1 = f.previous
    join, where, params = "", "", [f.start, f.end, p0, p1, p0, f.end]
    if f.channel_selected and data.has("dim_customers"):
        join = "join gold.dim_customers d using (customer_id)"
        where = "and d.acquisition_channel = ?"
        params.append(f.channel_selected)
        st.caption(f"Orders of customers acquired through {f.channel}.")
    rev = revenue_lines("o")
    sql = f"""
        select case when o.order_date between ? and ? then 'now' when o.order_date between ? and ? then 'before' end as period,
            count(*) filter (where o.is_paid) as orders,
            coalesce(sum(o.net_revenue) filter (where {rev}), 0) as revenue,
            coalesce(sum(o.net_revenue) filter (where o.is_paid), 0) as paid_revenue,
            count(distinct o.customer_id) filter (where o.is_paid) as active_customers,
            count(distinct o.customer_id) filter (where o.is_first_order) as new_customers,
            count(distinct o.customer_id) filter (where o.is_paid and o.customer_order_number > 1) as returning_customers
        from gold.fct_orders o {join}
        where o.order_date between ? and ? {where}
        group by 1"""
    df = data.query(sql, params).set_index("period")
    get = lambda period, col: _f(df.loc[period, col]) if period in df.index else 0.0  # noqa: E731
    kpis = {k: (get("now", k), get("before", k)) for k in
            ("revenue", "paid_revenue", "orders", "active_customers", "new_customers", "returning_customers")}
    # AOV = net revenue of paid orders / paid orders (returns lower revenue, not the order value)
    aov_now = kpis["paid_revenue"][0] / kpis["orders"][0] if kpis["orders"][0] else None
    aov_before = kpis["paid_revenue"][1] / kpis["orders"][1] if kpis["orders"][1] else None
    cols = st.columns(3)
    cols[0].metric("Net revenue", money(kpis["revenue"][0], cur), change(*kpis["revenue"]), border=True)
    cols[1].metric("Orders", num(kpis["orders"][0]), change(*kpis["orders"]), border=True)
    cols[2].metric("Average order value", money(aov_now, cur), change(aov_now, aov_before), border=True)
    cols = st.columns(3)
    cols[0].metric("Active customers", num(kpis["active_customers"][0]), change(*kpis["active_customers"]), border=True)
    cols[1].metric("New customers", num(kpis["new_customers"][0]), change(*kpis["new_customers"]), border=True)
    cols[2].metric("Returning customers", num(kpis["returning_customers"][0]), change(*kpis["returning_customers"]),
                   border=True)

    if f.channel_selected is None and data.has("kpi_daily"):
        daily = data.query(
            "select date_day::date as day, net_revenue, orders, new_customers, returning_customers "
            "from gold.kpi_daily where date_day between ? and ? order by 1", [f.start, f.end])
    else:
        daily = data.query(f"""
            select o.order_date::date as day, coalesce(sum(o.net_revenue) filter (where {rev}), 0) as net_revenue,
                count(*) filter (where o.is_paid) as orders,
                count(distinct o.customer_id) filter (where o.is_first_order) as new_customers,
                count(distinct o.customer_id) filter (where o.is_paid and o.customer_order_number > 1) as returning_customers
            from gold.fct_orders o {join} where o.order_date between ? and ? {where} group by 1 order by 1""",
            [f.start, f.end] + ([f.channel_selected] if where else []))
    if daily.empty:
        st.info("No orders in the selected period.")
        return
    left, right = st.columns(2)
    with left:
        st.subheader("Net revenue per day")
        chart(alt.Chart(daily).mark_area(line=True, opacity=0.3).encode(
            x=alt.X("day:T", title=None), y=alt.Y("net_revenue:Q", title=f"net revenue ({cur})"),
            tooltip=["day:T", alt.Tooltip("net_revenue:Q", format=",.2f"), "orders:Q"]).properties(height=280))
    with right:
        st.subheader("New vs returning customers per week")
        weekly = daily.assign(week=pd.to_datetime(daily["day"]).dt.to_period("W-SUN").dt.start_time)
        weekly = weekly.groupby("week", as_index=False)[["new_customers", "returning_customers"]].sum()
        long = weekly.melt("week", var_name="type", value_name="customers")
        long["type"] = long["type"].str.replace("_customers", "")
        chart(alt.Chart(long).mark_bar().encode(
            x=alt.X("yearmonthdate(week):O", title="week starting", axis=alt.Axis(format="%d %b", labelAngle=0)),
            y=alt.Y("customers:Q", stack=True),
            color=alt.Color("type:N", scale=alt.Scale(domain=["new", "returning"])),
            tooltip=["week:T", "type:N", "customers:Q"]).properties(height=280))


# --- customers --------------------------------------------------------------------------------
def customers(f: Filters) -> None:
    st.header("Customers")
    if not need("dim_customers"):
        return
    cols = data.columns("dim_customers")
    cur = currency()
    where, params = "", []
    if f.channel_selected:
        where, params = "and acquisition_channel = ?", [f.channel_selected]
    st.caption("Snapshot as of the latest scores (the date range does not apply)"
               + ("" if not f.channel_selected else f" · customers acquired through {f.channel}"))
    scored = "predicted_clv_12m" in cols
    head = data.query(f"""
        select count(*) filter (where is_customer) as customers, count(*) filter (where not is_customer) as prospects,
            {'count(predicted_clv_12m)' if scored else '0'} as scored,
            {'sum(predicted_clv_12m)' if scored else 'null'} as clv,
            {'max(scores_as_of_date)' if 'scores_as_of_date' in cols else 'null'} as as_of
        from gold.dim_customers where true {where}""", params)
    h = head.iloc[0]
    c = st.columns(4)
    c[0].metric("Customers", num(_f(h["customers"])), border=True)
    c[1].metric("Prospects", num(_f(h["prospects"])), border=True)
    c[2].metric("Scored customers", num(_f(h["scored"])), border=True)
    c[3].metric("Predicted CLV, next 12 months", money(_f(h["clv"]), cur), border=True)
    if not scored or not _f(h["scored"]):
        st.warning("Customer scores not built yet: run `make run` (the ML stage writes gold.customer_scores).", icon="⏳")
    else:
        if pd.notna(h["as_of"]):
            st.caption(f"Scores as of {pd.Timestamp(h['as_of']):%d %b %Y}.")
        left, right = st.columns(2)
        with left:
            st.subheader("CLV distribution")
            hist = data.query(f"""
                with s as (select predicted_clv_12m as v from gold.dim_customers where predicted_clv_12m is not null {where}),
                cap as (select greatest(quantile_cont(v, 0.99), 1e-9) as hi from s)
                select least(floor(v / (cap.hi / 30)), 30) * (cap.hi / 30) as clv_from,
                    (least(floor(v / (cap.hi / 30)), 30) + 1) * (cap.hi / 30) as clv_to, count(*) as customers
                from s, cap group by all order by 1""", params)
            chart(alt.Chart(hist).mark_bar().encode(
                x=alt.X("clv_from:Q", title=f"predicted CLV 12m ({cur}); last bar = top 1 %", bin="binned"),
                x2="clv_to:Q", y=alt.Y("customers:Q"),
                tooltip=[alt.Tooltip("clv_from:Q", format=",.0f"), alt.Tooltip("clv_to:Q", format=",.0f"),
                         "customers:Q"]).properties(height=280))
        with right:
            st.subheader("Value tiers")
            tiers = data.query(f"""
                select value_tier, count(*) as customers, sum(predicted_clv_12m) as predicted_clv,
                    avg(churn_probability) as avg_churn_probability
                from gold.dim_customers where value_tier is not null {where} group by 1""", params)
            chart(alt.Chart(tiers).mark_bar().encode(
                x=alt.X("value_tier:N", sort=TIER_ORDER, title=None), y=alt.Y("predicted_clv:Q", title=f"predicted CLV ({cur})"),
                color=alt.Color("value_tier:N", legend=None,
                                scale=alt.Scale(domain=TIER_ORDER, range=TIER_COLORS)),
                tooltip=["value_tier:N", "customers:Q", alt.Tooltip("predicted_clv:Q", format=",.0f"),
                         alt.Tooltip("avg_churn_probability:Q", format=".1%")]).properties(height=280))
    if "rfm_segment" in cols:
        st.subheader("RFM segments")
        seg = data.query(f"""
            select rfm_segment, count(*) as customers, sum(net_revenue) as net_revenue
            from gold.dim_customers where rfm_segment is not null {where} group by 1 order by customers desc""", params)
        if seg.empty:
            st.info("No customers with an RFM segment for this filter.")
        else:
            chart(alt.Chart(seg).mark_bar().encode(
                y=alt.Y("rfm_segment:N", sort="-x", title=None), x=alt.X("customers:Q"),
                color=alt.Color("net_revenue:Q", title=f"net revenue ({cur})"),
                tooltip=["rfm_segment:N", "customers:Q", alt.Tooltip("net_revenue:Q", format=",.0f")]).properties(height=300))
    if scored and _f(h["scored"]):
        st.subheader("High-value customers at risk of churning")
        include_medium = st.checkbox("include medium churn risk", value=False)
        bands = ["high", "medium"] if include_medium else ["high"]
        at_risk = high_value_at_risk(f.channel_selected, bands)
        st.caption(f"{len(at_risk):,} customers in the platinum/gold value tiers with {' or '.join(bands)} churn risk "
                   "(e-mail only as SHA-256, for audience matching; respect is_email_opted_out).")
        st.download_button("Download CSV", at_risk.to_csv(index=False).encode(), file_name="high_value_at_risk.csv",
                           mime="text/csv", icon=":material/download:")
        st.dataframe(at_risk.head(500), hide_index=True, height="auto" if len(at_risk) <= 10 else 400)


AT_RISK_COLUMNS = ["customer_id", "email_sha256", "rfm_segment", "value_tier", "churn_risk_band", "churn_probability",
                   "p_alive", "predicted_clv_12m", "orders", "net_revenue", "last_order_at", "acquisition_channel",
                   "country", "is_email_opted_out", "scores_as_of_date"]


def high_value_at_risk(channel: str | None = None, bands: tuple[str, ...] | list[str] = ("high",)) -> pd.DataFrame:
    """Platinum/gold customers whose churn risk band is in ``bands`` (highest predicted CLV first):
    the downloadable list. E-mail only as its SHA-256 (gold has nothing else)."""
    cols = data.columns("dim_customers")
    sel = ", ".join(c for c in AT_RISK_COLUMNS if c in cols)
    where, params = ("and acquisition_channel = ?", [channel]) if channel else ("", [])
    return data.query(f"""
        select {sel} from gold.dim_customers
        where value_tier in ('platinum', 'gold') and churn_risk_band in ({', '.join('?' for _ in bands)}) {where}
        order by predicted_clv_12m desc, customer_id""", [*bands, *params])


# --- acquisition ------------------------------------------------------------------------------
def acquisition(f: Filters) -> None:
    st.header("Acquisition")
    if not need("channel_performance_daily"):
        return
    period_caption(f)
    cur = currency()
    models = data.query("select distinct model from gold.channel_performance_daily")["model"].tolist()
    models = sorted(models, key=lambda m: (MODEL_ORDER.index(m) if m in MODEL_ORDER else 99, m))
    if not models:
        st.info("gold.channel_performance_daily is empty.")
        return
    model = st.selectbox("Attribution model", models,
                         index=models.index(DEFAULT_MODEL) if DEFAULT_MODEL in models else 0)
    where, params = "date_day between ? and ?", [f.start, f.end]
    if f.channel_selected:
        where += " and channel_group = ?"
        params.append(f.channel_selected)
    by_channel = data.query(f"""
        select channel_group, sum(spend) as spend, sum(clicks) as clicks, sum(sessions) as sessions,
            sum(attributed_conversions) as conversions, sum(attributed_revenue) as revenue,
            sum(attributed_new_customers) as new_customers,
            sum(attributed_revenue) / nullif(sum(spend), 0) as roas, sum(spend) / nullif(sum(attributed_new_customers), 0) as cac
        from gold.channel_performance_daily where {where} and model = ? group by 1 order by revenue desc""",
        [*params, model])
    tot = by_channel[["spend", "revenue", "new_customers", "conversions"]].sum()
    c = st.columns(4)
    c[0].metric("Ad spend", money(_f(tot["spend"]), cur), border=True)
    c[1].metric(f"Attributed revenue ({model})", money(_f(tot["revenue"]), cur), border=True)
    c[2].metric("ROAS", num(_f(tot["revenue"]) / _f(tot["spend"]), 2) + "×" if tot["spend"] else "–", border=True)
    c[3].metric("CAC", money(_f(tot["spend"]) / _f(tot["new_customers"]), cur) if tot["new_customers"] else "–",
                border=True)
    left, right = st.columns(2)
    with left:
        st.subheader("Spend and attributed revenue by channel")
        long = by_channel.melt("channel_group", ["spend", "revenue"], "measure", "amount")
        chart(alt.Chart(long).mark_bar().encode(
            y=alt.Y("channel_group:N", title=None, sort="-x"), x=alt.X("amount:Q", title=cur),
            yOffset="measure:N", color="measure:N",
            tooltip=["channel_group:N", "measure:N", alt.Tooltip("amount:Q", format=",.0f")]).properties(height=300))
    with right:
        st.subheader("Daily spend vs attributed revenue")
        daily = data.query(f"""
            select date_day::date as day, sum(spend) as spend, sum(attributed_revenue) as revenue
            from gold.channel_performance_daily where {where} and model = ? group by 1 order by 1""", [*params, model])
        chart(alt.Chart(daily.melt("day", ["spend", "revenue"], "measure", "amount")).mark_line().encode(
            x=alt.X("day:T", title=None), y=alt.Y("amount:Q", title=cur), color="measure:N",
            tooltip=["day:T", "measure:N", alt.Tooltip("amount:Q", format=",.2f")]).properties(height=300))
    st.dataframe(by_channel, hide_index=True, column_config={
        "spend": st.column_config.NumberColumn(format="%.0f"), "revenue": st.column_config.NumberColumn(format="%.0f"),
        "conversions": st.column_config.NumberColumn(format="%.1f"),
        "new_customers": st.column_config.NumberColumn(format="%.1f"),
        "roas": st.column_config.NumberColumn(format="%.2f"), "cac": st.column_config.NumberColumn(format="%.2f")})

    st.subheader("Campaigns")
    camp = data.query(f"""
        select channel_group, campaign, any_value(campaign_name) as campaign_name, sum(spend) as spend, sum(clicks) as clicks,
            sum(attributed_conversions) as conversions, sum(attributed_revenue) as revenue,
            sum(attributed_revenue) / nullif(sum(spend), 0) as roas,
            sum(spend) / nullif(sum(attributed_new_customers), 0) as cac
        from gold.channel_performance_daily where {where} and model = ? group by 1, 2
        order by spend desc, revenue desc limit 50""", [*params, model])
    st.dataframe(camp, hide_index=True, height=260, column_config={
        "spend": st.column_config.NumberColumn(format="%.0f"), "revenue": st.column_config.NumberColumn(format="%.0f"),
        "conversions": st.column_config.NumberColumn(format="%.1f"),
        "roas": st.column_config.NumberColumn(format="%.2f"), "cac": st.column_config.NumberColumn(format="%.2f")})

    st.subheader("All attribution models side by side")
    side = data.query(f"""
        select channel_group, model, sum(attributed_revenue) as revenue, sum(attributed_conversions) as conversions,
            sum(attributed_revenue) / nullif(sum(spend), 0) as roas
        from gold.channel_performance_daily where {where} group by 1, 2""", params)
    chart(alt.Chart(side).mark_bar().encode(
        x=alt.X("channel_group:N", title=None), xOffset=alt.XOffset("model:N", sort=MODEL_ORDER),
        y=alt.Y("revenue:Q", title=f"attributed revenue ({cur})"), color=alt.Color("model:N", sort=MODEL_ORDER),
        tooltip=["channel_group:N", "model:N", alt.Tooltip("revenue:Q", format=",.0f"),
                 alt.Tooltip("conversions:Q", format=",.1f"), alt.Tooltip("roas:Q", format=".2f")]).properties(height=320))
    pivot = side.pivot_table(index="channel_group", columns="model", values="conversions", aggfunc="sum")
    pivot = pivot[[m for m in MODEL_ORDER if m in pivot.columns] + [m for m in pivot.columns if m not in MODEL_ORDER]]
    st.caption("Attributed conversions by channel under each model")
    st.dataframe(pivot.round(1))


# --- journeys ---------------------------------------------------------------------------------
def journeys(f: Filters) -> None:
    st.header("Customer journeys")
    period_caption(f)
    if data.has("funnel_daily"):
        where, params = "date_day between ? and ?", [f.start, f.end]
        if f.channel_selected:
            where += " and channel_group = ?"
            params.append(f.channel_selected)
        fun = data.query(f"""
            select sum(sessions) as sessions, sum(view_item_sessions) as view_item, sum(add_to_cart_sessions) as add_to_cart,
                sum(begin_checkout_sessions) as begin_checkout, sum(purchase_sessions) as purchase
            from gold.funnel_daily where {where}""", params)
        steps = fun.T.reset_index().set_axis(["step", "sessions"], axis=1).fillna(0)
        steps["of_sessions"] = steps["sessions"] / steps["sessions"].iloc[0] if steps["sessions"].iloc[0] else 0.0
        steps["of_previous"] = steps["sessions"] / steps["sessions"].shift(1)
        st.subheader("Shopping funnel")
        order = steps["step"].tolist()
        base = alt.Chart(steps).encode(y=alt.Y("step:N", sort=order, title=None))
        chart((base.mark_bar().encode(x=alt.X("sessions:Q"),
                                      tooltip=["step:N", "sessions:Q", alt.Tooltip("of_sessions:Q", format=".1%"),
                                               alt.Tooltip("of_previous:Q", format=".1%")])
               + base.mark_text(align="left", dx=4).encode(x="sessions:Q", text=alt.Text("of_sessions:Q", format=".1%")))
              .properties(height=240))
    else:
        need("funnel_daily")
    if not data.has("fct_conversion_paths"):
        need("fct_conversion_paths")
        return
    where, params = "order_date between ? and ?", [f.start, f.end]
    if f.channel_selected:
        where += " and list_contains(string_split(channel_path, ' > '), ?)"
        params.append(f.channel_selected)
    left, right = st.columns([3, 2])
    with left:
        st.subheader("Top conversion paths")
        paths = data.query(f"""
            select channel_path, count(*) as conversions, sum(net_revenue) as revenue, avg(touch_count) as avg_touches,
                avg(days_to_convert) as avg_days_to_convert
            from gold.fct_conversion_paths where {where} group by 1 order by conversions desc, revenue desc limit 15""",
            params)
        if paths.empty:
            st.info("No conversions in the selected period.")
        else:
            chart(alt.Chart(paths).mark_bar().encode(
                y=alt.Y("channel_path:N", sort="-x", title=None, axis=alt.Axis(labelLimit=320, labelOverlap=False)),
                x=alt.X("conversions:Q"),
                tooltip=["channel_path:N", "conversions:Q", alt.Tooltip("revenue:Q", format=",.0f"),
                         alt.Tooltip("avg_touches:Q", format=".1f"),
                         alt.Tooltip("avg_days_to_convert:Q", format=".1f")]).properties(height=max(200, 24 * len(paths))))
    with right:
        st.subheader("Days to convert")
        days = data.query(f"""
            select case when days_to_convert < 1 then '0 (same day)' when days_to_convert < 2 then '1'
                        when days_to_convert < 4 then '2-3' when days_to_convert < 8 then '4-7'
                        when days_to_convert < 15 then '8-14' when days_to_convert < 31 then '15-30' else '31+' end as days,
                   count(*) as conversions
            from gold.fct_conversion_paths where {where} group by 1""", params)
        chart(alt.Chart(days).mark_bar().encode(
            x=alt.X("days:N", sort=["0 (same day)", "1", "2-3", "4-7", "8-14", "15-30", "31+"], title="days from first touch"),
            y="conversions:Q", tooltip=["days:N", "conversions:Q"]).properties(height=360))


# --- cohorts ----------------------------------------------------------------------------------
def cohorts(f: Filters) -> None:
    st.header("Cohort retention")
    if not need("cohort_retention_monthly"):
        return
    first = min(f.start, (f.end.replace(day=1) - dt.timedelta(days=330)).replace(day=1))
    st.caption(f"Cohorts (month of the first paid order) from {first:%b %Y} to {f.end:%b %Y} (at least the 12 months "
               "up to the end of the date range); the channel filter does not apply.")
    metric = st.radio("Show", ["retention_rate", "active_customers", "net_revenue"], horizontal=True,
                      format_func=lambda m: m.replace("_", " "))
    df = data.query("""
        select strftime(cohort_month, '%Y-%m') as cohort, months_since_first_order as month, cohort_size,
            active_customers, retention_rate, net_revenue
        from gold.cohort_retention_monthly
        where cohort_month between date_trunc('month', ?::date) and ? order by cohort_month, month""", [first, f.end])
    if df.empty:
        st.info("No cohorts in the selected period.")
        return
    fmt = ".0%" if metric == "retention_rate" else ",.0f"
    base = alt.Chart(df).encode(x=alt.X("month:O", title="months since first order"), y=alt.Y("cohort:O", title="cohort"))
    heat = base.mark_rect().encode(
        color=alt.Color(f"{metric}:Q", scale=alt.Scale(scheme="blues")),
        tooltip=["cohort:O", "month:O", "cohort_size:Q", "active_customers:Q",
                 alt.Tooltip("retention_rate:Q", format=".1%"), alt.Tooltip("net_revenue:Q", format=",.0f")])
    text = base.mark_text(fontSize=10).encode(
        text=alt.Text(f"{metric}:Q", format=fmt),
        color=alt.condition(f"datum.{metric} > 0.5 * {float(df[metric].max() or 1)}", alt.value("white"), alt.value("black")))
    chart((heat + text).properties(height=max(220, 26 * df["cohort"].nunique())))
    curve = df[df["month"] > 0].groupby("month", as_index=False)[["active_customers", "cohort_size"]].sum()
    curve["retention_rate"] = curve["active_customers"] / curve["cohort_size"]
    if len(curve):
        st.subheader("Average retention curve (customer-weighted)")
        chart(alt.Chart(curve).mark_line(point=True).encode(
            x=alt.X("month:O", title="months since first order"),
            y=alt.Y("retention_rate:Q", axis=alt.Axis(format="%")),
            tooltip=["month:O", alt.Tooltip("retention_rate:Q", format=".1%")]).properties(height=240))


# --- model quality ----------------------------------------------------------------------------
def _metrics_long(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in runs.to_dict("records"):
        for kind, col in (("model", "metrics_json"), ("baseline", "baseline_metrics_json")):
            try:
                metrics = json.loads(r.get(col) or "{}")
            except (TypeError, ValueError):
                metrics = {}
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and k != "n" and v is not None and not math.isnan(v):
                    rows.append({"model_name": r["model_name"], "cutoff_date": r["cutoff_date"], "metric": k,
                                 "kind": kind, "value": float(v)})
    return pd.DataFrame(rows, columns=["model_name", "cutoff_date", "metric", "kind", "value"])


def outcome_date() -> dt.date | None:
    """The latest scoring date whose 90-day outcome window is complete in fct_orders."""
    if not data.has("customer_scores", "fct_orders"):
        return None
    end = "(select max(order_date) from gold.fct_orders)"
    if data.has("kpi_daily"):
        end = f"greatest({end}, (select max(date_day) from gold.kpi_daily))"
    df = data.query(f"""
        select max(as_of_date)::date as d from gold.customer_scores
        where as_of_date + interval {HORIZON_DAYS} day <= {end}""")
    d = df.loc[0, "d"] if len(df) else None
    return None if d is None or pd.isna(d) else pd.Timestamp(d).date()


def _outcomes_sql() -> str:
    return f"""
        with s as (select * from gold.customer_scores where as_of_date = ?
                   qualify row_number() over (partition by customer_id order by model_version desc) = 1),
        o as (select customer_id, count(*) as orders, sum(net_revenue) as revenue from gold.fct_orders
              where is_paid and order_date > ? and order_date <= ?::date + interval {HORIZON_DAYS} day group by 1)
        select s.customer_id, s.churn_probability, s.expected_purchases_90d, s.predicted_clv_12m,
            coalesce(o.orders, 0) as actual_orders, coalesce(o.revenue, 0) as actual_revenue,
            (coalesce(o.orders, 0) = 0)::int as churned
        from s left join o using (customer_id)"""


def holdout_training() -> pd.Series | None:
    """The training whose holdout deciles the page shows: the one that made the latest scores
    (its training_id is their model_version), else the latest one recorded."""
    if not data.has("ml_holdout_deciles"):
        return None
    serving = "null"
    if data.has("customer_scores"):
        serving = ("(select max(model_version) from gold.customer_scores "
                   "where as_of_date = (select max(as_of_date) from gold.customer_scores))")
    df = data.query(f"""
        with t as (select distinct training_id, cutoff_date::date as cutoff_date, evaluation_start::date as evaluation_start,
                       evaluation_end::date as evaluation_end, horizon_days from gold.ml_holdout_deciles)
        select * from t order by (training_id = {serving}) desc nulls last, cutoff_date desc, training_id limit 1""")
    return None if df.empty else df.iloc[0]


def _calibration_chart(cal: pd.DataFrame) -> None:
    diag = pd.DataFrame({"predicted": [0.0, 1.0], "observed": [0.0, 1.0]})
    chart((alt.Chart(diag).mark_line(strokeDash=[4, 4], color="gray").encode(x="predicted:Q", y="observed:Q")
           + alt.Chart(cal).mark_line(point=True).encode(
               x=alt.X("predicted:Q", title="mean predicted churn probability", scale=alt.Scale(domain=[0, 1])),
               y=alt.Y("observed:Q", title="observed churn rate", scale=alt.Scale(domain=[0, 1])),
               tooltip=["decile:O", "customers:Q", alt.Tooltip("predicted:Q", format=".2f"),
                        alt.Tooltip("observed:Q", format=".2f")])).properties(height=300))


def _decile_chart(dec: pd.DataFrame, what: str) -> None:
    chart(alt.Chart(dec.melt(["decile"], ["predicted", "actual"], "kind", "value"))
          .mark_bar().encode(x=alt.X("decile:O", title="decile (1 = highest predicted)"), xOffset="kind:N",
                             y=alt.Y("value:Q", title=what), color="kind:N",
                             tooltip=["decile:O", "kind:N", alt.Tooltip("value:Q", format=",.2f")])
          .properties(height=300))


def holdout_section() -> bool:
    """Calibration and decile charts of the latest training's time-split holdout
    (gold.ml_holdout_deciles): predictions of models that never saw the outcomes."""
    t = holdout_training()
    if t is None:
        return False
    cur = currency()
    st.subheader("Holdout evaluation")
    st.caption(f"Training {t['training_id']}: models trained without the last {int(t['horizon_days'])} days scored "
               f"every customer as of {pd.Timestamp(t['evaluation_start']):%d %b %Y}; compared with what they did "
               f"up to {pd.Timestamp(t['evaluation_end']):%d %b %Y} (paid orders, gold.fct_orders).")
    rows = data.query("""
        select model_name, bin as decile, customers, mean_predicted as predicted, mean_observed as observed
        from gold.ml_holdout_deciles where training_id = ? order by model_name, bin""", [t["training_id"]])
    left, right = st.columns(2)
    with left:
        st.subheader("Churn calibration (holdout)")
        _calibration_chart(rows[rows["model_name"] == "churn_xgb"])
    with right:
        st.subheader(f"Predicted vs actual revenue by decile ({int(t['horizon_days'])} days, holdout)")
        clv = sorted(set(rows["model_name"]) - {"churn_xgb"})
        pick = st.radio("CLV model", clv, horizontal=True, key="holdout_clv_model",
                        index=clv.index("clv_bgnbd_gg") if "clv_bgnbd_gg" in clv else 0) if len(clv) > 1 else clv[0]
        dec = rows[rows["model_name"] == pick].rename(columns={"observed": "actual"})
        _decile_chart(dec[["decile", "predicted", "actual"]], f"revenue per customer ({cur})")
    return True


def model_quality(f: Filters) -> None:
    st.header("Model quality")
    if data.has("ml_model_runs"):
        runs = data.query("select * from gold.ml_model_runs order by cutoff_date, model_name")
        st.subheader("Training and evaluation runs")
        show = [c for c in ("model_name", "task", "model_version", "cutoff_date", "train_start", "train_end",
                            "horizon_days", "n_customers", "is_champion", "promoted_at", "trained_at")
                if c in runs.columns]
        st.dataframe(runs[show].sort_values(["cutoff_date", "model_name"], ascending=[False, True]), hide_index=True,
                     height=220)
        long = _metrics_long(runs)
        if not long.empty:
            st.subheader("Metrics history (holdout), model vs naive baseline")
            names = sorted(long["model_name"].unique())
            name = st.selectbox("Model", names, index=names.index("churn_xgb") if "churn_xgb" in names else 0)
            sub = long[long["model_name"] == name]
            chart(alt.Chart(sub).mark_line(point=True).encode(
                x=alt.X("cutoff_date:T", title="cutoff date"), y=alt.Y("value:Q", title=None),
                color="kind:N", strokeDash="kind:N", facet=alt.Facet("metric:N", columns=3),
                tooltip=["metric:N", "kind:N", "cutoff_date:T", alt.Tooltip("value:Q", format=".4f")])
                .properties(height=150, width=220).resolve_scale(y="independent"))
    else:
        need("ml_model_runs")

    shown = holdout_section()
    if not data.has("customer_scores"):
        if not shown:
            need("customer_scores")
        return
    st.subheader("Live scores: realised outcomes")
    d = outcome_date()
    if d is None:
        msg = (f"These charts compare the daily scores with what happened in the {HORIZON_DAYS} days after they "
               f"were made: they appear once gold.customer_scores holds a scoring date at least {HORIZON_DAYS} days "
               "before the last order (the scores history builds up with daily runs).")
        if not shown:
            msg += " Train the models (the weekly DAG, or the first daily run) to see their holdout evaluation above."
        st.info(msg)
        return
    st.caption(f"Realised outcomes of the scores as of {d:%d %b %Y}: paid orders in the next {HORIZON_DAYS} days "
               "(gold.fct_orders).")
    outcomes = _outcomes_sql()
    left, right = st.columns(2)
    with left:
        st.subheader("Churn calibration")
        cal = data.query(f"""
            with x as ({outcomes}), b as (select *, ntile(10) over (order by churn_probability) as decile from x)
            select decile, count(*) as customers, avg(churn_probability) as predicted, avg(churned) as observed
            from b group by 1 order by 1""", [d, d, d])
        _calibration_chart(cal)
    with right:
        st.subheader(f"Expected vs actual purchases by decile ({HORIZON_DAYS} days)")
        dec = data.query(f"""
            with x as ({outcomes}), b as (select *, ntile(10) over (order by expected_purchases_90d desc) as decile from x)
            select decile, avg(expected_purchases_90d) as predicted, avg(actual_orders) as actual
            from b group by 1 order by 1""", [d, d, d])
        _decile_chart(dec, "purchases per customer")


# --- data health ------------------------------------------------------------------------------
def data_health(f: Filters) -> None:
    st.header("Data health")
    when = data.published()
    now = dt.datetime.now(dt.timezone.utc)
    if when is not None:
        st.caption(f"Serving copy published {when:%Y-%m-%d %H:%M} UTC ({(now - when).total_seconds() / 3600:,.1f} h ago).")
    if not need("data_health"):
        st.caption("gold.data_health (one row per loaded batch: ops.load_audit) is published by the pipeline; "
                   "see dashboard/README.md.")
        return
    h = data.query("""
        select source, object, interval_key, status, extracted, loaded, rejected, loaded_at,
            strptime(split_part(interval_key, '_', 2), '%Y%m%dT%H%M%SZ') as interval_end,
            strptime(split_part(interval_key, '_', 1), '%Y%m%dT%H%M%SZ')::date as interval_day,
            (strptime(split_part(interval_key, '_', 2), '%Y%m%dT%H%M%SZ') - interval 1 microsecond)::date as interval_last_day
        from gold.data_health""")
    if h.empty:
        st.info("No loads recorded yet.")
        return
    last = pd.to_datetime(h["loaded_at"], utc=True).max()
    c = st.columns(4)
    c[0].metric("Last load (UTC)", f"{last:%d %b %H:%M}", help=f"{last:%Y-%m-%d %H:%M} UTC", border=True)
    c[1].metric("Batches loaded", num(int((h["status"] == "loaded").sum())), border=True)
    c[2].metric("Batches refused (GX)", num(int((h["status"] != "loaded").sum())), border=True)
    c[3].metric("Rejected records", num(int(h["rejected"].sum())), border=True)

    st.subheader("Freshness per source")
    fresh = data.query("""
        select source, max(loaded_at) as last_loaded_at,
            max(strptime(split_part(interval_key, '_', 2), '%Y%m%dT%H%M%SZ')) filter (where status = 'loaded') as data_through,
            count(*) filter (where status <> 'loaded') as refused_batches
        from gold.data_health group by 1 order by 1""")
    through = pd.to_datetime(fresh["data_through"], utc=True)
    newest = through.max()
    fresh["hours_behind_newest"] = ((newest - through).dt.total_seconds() / 3600).round(1)
    fresh["hours_since_load"] = ((pd.Timestamp(now) - pd.to_datetime(fresh["last_loaded_at"], utc=True))
                                 .dt.total_seconds() / 3600).round(1)
    left, right = st.columns([2, 3])
    with left:
        st.dataframe(fresh, hide_index=True)
    with right:
        chart(alt.Chart(fresh).mark_bar().encode(
            y=alt.Y("source:N", title=None), x=alt.X("hours_behind_newest:Q", title="hours behind the freshest source"),
            color=alt.condition("datum.hours_behind_newest > 24", alt.value("#d62728"), alt.value("#2ca02c")),
            tooltip=["source:N", "data_through:T", "last_loaded_at:T", "hours_behind_newest:Q"]).properties(height=220))

    # batches whose interval overlaps the selected range (a backfill batch covers many days)
    window = h[(h["interval_day"] <= pd.Timestamp(f.end)) & (h["interval_last_day"] >= pd.Timestamp(f.start))]
    st.subheader("Great Expectations results per batch")
    st.caption("Batches whose interval overlaps the selected date range; a refused batch failed a critical "
               "expectation and loaded nothing.")
    if window.empty:
        st.info("No batches in the selected period.")
    else:
        gx = window.groupby(["source", "status"], as_index=False).size()
        chart(alt.Chart(gx).mark_bar().encode(
            y=alt.Y("source:N", title=None), x=alt.X("size:Q", title="batches"),
            color=alt.Color("status:N", scale=alt.Scale(domain=["loaded", "refused"], range=["#2ca02c", "#d62728"])),
            tooltip=["source:N", "status:N", "size:Q"]).properties(height=200))
    if "critical_failures" in data.columns("data_health"):
        refused = data.query("""
            select source, object, interval_key, loaded_at, critical_failures from gold.data_health
            where status <> 'loaded' order by loaded_at desc limit 50""")
        if not refused.empty:
            st.caption("Refused batches")
            st.dataframe(refused, hide_index=True)

    st.subheader("Rejected records")
    daily = window.groupby(["interval_day", "source"], as_index=False)["rejected"].sum()
    if daily.empty or not daily["rejected"].sum():
        st.success("No rejected records in the selected period.")
    else:
        chart(alt.Chart(daily).mark_bar().encode(
            x=alt.X("interval_day:T", title=None), y=alt.Y("rejected:Q", title="rejected records"), color="source:N",
            tooltip=["interval_day:T", "source:N", "rejected:Q"]).properties(height=220))
    if data.has("data_health_rejections"):
        rules = data.query("""
            select source, object, rule, sum(rejected_records) as rejected_records, max(last_rejected_at) as last_rejected_at
            from gold.data_health_rejections
            where strptime(split_part(interval_key, '_', 1), '%Y%m%dT%H%M%SZ')::date <= ?
              and strptime(split_part(interval_key, '_', 2), '%Y%m%dT%H%M%SZ') > ?
            group by all order by rejected_records desc""", [f.end, f.start])
        st.caption("By expectation (the rejected rows themselves stay in bronze.rejected_records)")
        st.dataframe(rules, hide_index=True)


PAGES = [
    ("executive", "Executive", ":material/monitoring:", executive),
    ("customers", "Customers", ":material/group:", customers),
    ("acquisition", "Acquisition", ":material/campaign:", acquisition),
    ("journeys", "Journeys", ":material/route:", journeys),
    ("cohorts", "Cohorts", ":material/grid_on:", cohorts),
    ("model-quality", "Model quality", ":material/model_training:", model_quality),
    ("data-health", "Data health", ":material/health_and_safety:", data_health),
]
