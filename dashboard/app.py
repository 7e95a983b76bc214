"""Streamlit entry point: ``streamlit run dashboard/app.py`` (``make dashboard``).

Reads only the published serving copy (``<serving>/retailpulse_serving.duckdb``, schema gold).
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

if __package__ in (None, ""):  # `streamlit run dashboard/app.py` puts dashboard/ on sys.path, not the repo
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamlit as st  # noqa: E402

from dashboard import data  # noqa: E402
from dashboard.pages import PAGES  # noqa: E402

DEFAULT_DAYS = 28


def sidebar_filters() -> data.Filters | None:
    bounds = data.data_bounds()
    if bounds is None:
        return None
    lo, hi = bounds
    default = (max(lo, hi - dt.timedelta(days=DEFAULT_DAYS - 1)), hi)
    with st.sidebar:
        st.markdown("### Filters")
        picked = st.date_input("Date range", value=default, min_value=lo, max_value=hi, key="date_range")
        if isinstance(picked, (tuple, list)):
            start, end = (picked[0], picked[1]) if len(picked) == 2 else (picked[0], picked[0]) if picked else default
        else:
            start = end = picked
        channel = st.selectbox("Channel", data.channel_options(), key="channel")
        when = data.published()
        if when is not None:
            st.caption(f"Data through {hi:%d %b %Y} · serving copy published {when:%Y-%m-%d %H:%M} UTC")
    return data.Filters(start=start, end=end, channel=channel)


def main() -> None:
    st.set_page_config(page_title="RetailPulse", page_icon=":material/insights:", layout="wide")
    path = data.serving_path()
    if not path.exists():
        st.title("RetailPulse")
        st.warning(f"No serving copy at `{path}` yet: not built yet: run `make run`.", icon="⏳")
        return
    filters = sidebar_filters()

    def page(fn):
        def run() -> None:
            if filters is None:
                st.header(title_of[fn])
                st.warning("gold.kpi_daily / gold.fct_orders not built yet: run `make run`.", icon="⏳")
                return
            fn(filters)
        return run

    title_of = {fn: title for _, title, _, fn in PAGES}
    nav = st.navigation([st.Page(page(fn), title=title, icon=icon, url_path=slug, default=(i == 0))
                         for i, (slug, title, icon, fn) in enumerate(PAGES)])
    nav.run()


main()
