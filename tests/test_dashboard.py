"""The Streamlit dashboard: every page renders its charts from the fixture serving copy (in
process with Streamlit's AppTest, and for real: ``streamlit run`` on 127.0.0.1 opened in headless
Chromium over the DevTools protocol, one screenshot per page under test-artifacts/dashboard/);
pages whose gold table is missing say "not built yet" instead of failing."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from dashboard.pages import PAGES
from tests.conftest import REPO
from tests.consumption_fixtures import build_serving_copy

# minimum charts each page draws on the fixture's gold (every table present)
MIN_CHARTS = {"executive": 2, "customers": 3, "acquisition": 3, "journeys": 3, "cohorts": 2, "model-quality": 5,
              "data-health": 3}
HEADERS = {"executive": "Executive summary", "customers": "Customers", "acquisition": "Acquisition",
           "journeys": "Customer journeys", "cohorts": "Cohort retention", "model-quality": "Model quality",
           "data-health": "Data health"}
ARTIFACTS = REPO / "test-artifacts" / "dashboard"


def page_script(slug: str) -> None:
    """One page with the app's default filters (the last 28 days with data)."""
    import datetime as dt

    from dashboard import data
    from dashboard.pages import PAGES

    fn = {s: f for s, _, _, f in PAGES}[slug]
    bounds = data.data_bounds()
    if bounds is None:
        lo = hi = dt.date(2025, 6, 29)
    else:
        lo, hi = bounds
    fn(data.Filters(start=max(lo, hi - dt.timedelta(days=27)), end=hi))


@pytest.fixture
def serving_env(monkeypatch):
    """Point the dashboard (env-configured, like `make dashboard`) at a serving dir; fresh caches."""

    def use(settings):
        monkeypatch.setenv("RETAILPULSE_SERVING_DIR", str(settings.serving_path))
        st.cache_data.clear()
        st.cache_resource.clear()

    yield use
    st.cache_data.clear()
    st.cache_resource.clear()


def test_pages_are_the_seven_of_the_brief():
    assert [slug for slug, *_ in PAGES] == list(MIN_CHARTS)


@pytest.mark.parametrize("slug", list(MIN_CHARTS))
def test_every_page_renders_its_charts(gold_serving, serving_env, slug):
    serving_env(gold_serving)
    at = AppTest.from_function(page_script, args=(slug,), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("vega_lite_chart")) >= MIN_CHARTS[slug]
    assert not [w for w in at.warning if "not built yet" in w.value]


def test_the_app_starts_on_the_executive_page_with_filters(gold_serving, serving_env):
    serving_env(gold_serving)
    at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.header[0].value == "Executive summary"
    assert len(at.metric) == 6 and all(m.value not in ("", "–") for m in at.metric)
    assert at.sidebar.date_input[0].value == (dt.date(2025, 6, 2), dt.date(2025, 6, 29))
    assert "Paid Search" in at.sidebar.selectbox[0].options
    at.sidebar.selectbox[0].select("Paid Search").run()  # the channel filter re-runs the page
    assert not at.exception
    assert "Paid Search" in " ".join(c.value for c in at.caption)


def test_missing_gold_tables_say_not_built_yet(serving_env, settings_factory):
    missing = ("channel_performance_daily", "funnel_daily", "fct_conversion_paths", "cohort_retention_monthly",
               "ml_model_runs", "ml_holdout_deciles", "customer_scores", "data_health", "data_health_rejections")
    settings = settings_factory()
    build_serving_copy(settings, skip=missing)
    serving_env(settings)
    for slug in MIN_CHARTS:
        at = AppTest.from_function(page_script, args=(slug,), default_timeout=60).run()
        assert not at.exception, (slug, [e.value for e in at.exception])
        if slug not in ("executive", "customers"):
            assert any("not built yet: run `make run`" in w.value for w in at.warning), slug


def test_no_serving_copy_at_all(serving_env, settings_factory):
    serving_env(settings_factory())
    at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert any("not built yet: run `make run`" in w.value for w in at.warning)


def test_high_value_at_risk_list(gold_serving, serving_env):
    serving_env(gold_serving)
    from dashboard.pages import high_value_at_risk

    df = high_value_at_risk()
    assert len(df) >= 1
    assert set(df["value_tier"]) <= {"platinum", "gold"} and set(df["churn_risk_band"]) == {"high"}
    assert list(df["predicted_clv_12m"]) == sorted(df["predicted_clv_12m"], reverse=True)
    assert len(high_value_at_risk(bands=("high", "medium"))) >= len(df)
    csv = df.to_csv(index=False)
    assert "@" not in csv and "email_sha256" in csv.splitlines()[0]


# --- the real thing: streamlit run + headless Chromium -------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dashboard_server(gold_serving):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETAILPULSE_")}
    env.update(RETAILPULSE_HOME=str(REPO), RETAILPULSE_SERVING_DIR=str(gold_serving.serving_path),
               RETAILPULSE_DASHBOARD_HOST="127.0.0.1", RETAILPULSE_DASHBOARD_PORT=str(port))
    log = open(gold_serving.data_path.parent / f"streamlit-{port}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "dashboard", "--server.fileWatcherType", "none"],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail(f"streamlit did not start: {(gold_serving.data_path.parent / f'streamlit-{port}.log').read_text()[-2000:]}")
        time.sleep(0.25)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)
    log.close()


PAGE_STATE_JS = """(() => {
  const q = s => Array.from(document.querySelectorAll(s));
  return {
    exceptions: q('[data-testid="stException"]').map(e => e.innerText.slice(0, 500)),
    charts: q('[data-testid="stVegaLiteChart"]').length,
    drawn: q('[data-testid="stVegaLiteChart"]').filter(c => c.querySelector('canvas, svg.marks')).length,
    metrics: q('[data-testid="stMetric"]').length,
    notBuilt: q('[data-testid="stAlert"]').filter(a => a.innerText.includes('not built yet')).length,
    running: q('[data-testid="stStatusWidget"]').length,
    headers: q('h1, h2').map(h => h.innerText),
    subheaders: q('h3').map(h => h.innerText.trim()),
    metricValues: Object.fromEntries(q('[data-testid="stMetric"]').map(m => [
      (m.querySelector('[data-testid="stMetricLabel"]') || m).innerText.trim(),
      (m.querySelector('[data-testid="stMetricValue"]') || m).innerText.trim()])),
    dataframes: q('[data-testid="stDataFrame"]').length,
    alerts: q('[data-testid="stAlert"]').map(a => a.innerText.trim().slice(0, 200)),
    download: q('[data-testid="stDownloadButton"]').length,
  };
})()"""

# what the data-health and model-quality pages must show, checked in the DOM
PAGE_SECTIONS = {
    "data-health": ["Freshness per source", "Great Expectations results per batch", "Rejected records"],
    "model-quality": ["Training and evaluation runs", "Holdout evaluation", "Churn calibration (holdout)"],
}
DATA_HEALTH_METRICS = ("Last load (UTC)", "Batches loaded", "Batches refused (GX)", "Rejected records")


def fixture_health_numbers(settings) -> dict[str, str]:
    """The data-health metrics as the page must print them, computed here from the serving copy."""
    import duckdb

    from retailpulse.serving import serving_file

    con = duckdb.connect(str(serving_file(settings)), read_only=True)
    try:
        loaded, refused, rejected, last = con.execute(
            "select count(*) filter (where status = 'loaded'), count(*) filter (where status <> 'loaded'), "
            "sum(rejected), max(loaded_at) from gold.data_health").fetchone()
    finally:
        con.close()
    last = pd.Timestamp(last)
    last = last.tz_convert("UTC") if last.tzinfo else last
    return {"Batches loaded": f"{loaded:,}", "Batches refused (GX)": f"{refused:,}", "Rejected records": f"{int(rejected):,}",
            "Last load (UTC)": f"{last:%d %b %H:%M}"}


def test_dashboard_in_headless_chromium(dashboard_server, gold_serving):
    from tests.cdp import Chromium, find_chromium

    binary = find_chromium()
    if binary is None:
        pytest.skip("Chromium is not installed (/usr/bin/chromium): `apt-get install -y chromium` "
                    "(`make test` installs it where apt-get can)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    health = fixture_health_numbers(gold_serving)
    with Chromium(binary) as browser:
        for slug, *_ in PAGES:
            url = dashboard_server + ("/" if slug == PAGES[0][0] else f"/{slug}")
            began = time.monotonic()
            browser.navigate(url)
            state, last, stable = None, None, 0
            while time.monotonic() - began < 45:
                time.sleep(0.25)
                state = browser.evaluate(PAGE_STATE_JS)
                done = state["headers"] and not state["running"] and state["drawn"] == state["charts"]
                stable = stable + 1 if done and state == last else 0
                last = state
                if stable >= 4 or state["exceptions"]:
                    break
            browser.screenshot(ARTIFACTS / f"{slug}.png")
            assert state is not None
            assert not state["exceptions"], (slug, state["exceptions"])
            assert HEADERS[slug] in state["headers"], (slug, state["headers"])
            assert state["drawn"] >= MIN_CHARTS[slug], (slug, state)
            assert state["notBuilt"] == 0, (slug, state)
            if slug in ("executive", "customers", "acquisition", "data-health"):
                assert state["metrics"] >= 4, (slug, state)
            if slug == "customers":
                assert state["download"] == 1
            for section in PAGE_SECTIONS.get(slug, []):
                assert any(section in h for h in state["subheaders"]), (slug, section, state["subheaders"])
            if slug == "data-health":
                # last run, freshness per source, GX results, rejected records (by expectation)
                assert {k: state["metricValues"].get(k) for k in DATA_HEALTH_METRICS} == health, state["metricValues"]
                assert int(health["Rejected records"].replace(",", "")) > 0 and health["Batches refused (GX)"] == "1"
                assert state["dataframes"] >= 3, state  # freshness, refused batches, rejected records by rule
        assert not browser.console_errors, browser.console_errors[:3]
    assert all((ARTIFACTS / f"{slug}.png").stat().st_size > 10_000 for slug, *_ in PAGES)


def test_fixture_matches_the_gold_contract(gold_serving):
    """The fixture's gold tables have exactly the columns dbt/models/marts documents (re-read on
    every run, so a changed mart shows up here first); data_health* are the proposed additions."""
    import duckdb

    from retailpulse.serving import serving_file
    from tests.consumption_fixtures import gold_contract

    con = duckdb.connect(str(serving_file(gold_serving)), read_only=True)
    try:
        rows = con.execute("select table_name, column_name from information_schema.columns "
                           "where table_schema = 'gold'").fetchall()
    finally:
        con.close()
    fixture: dict[str, set[str]] = {}
    for t, c in rows:
        fixture.setdefault(t, set()).add(c)
    contract = gold_contract()
    product = {"dim_customers", "customer_identity_map", "fct_orders", "fct_sessions", "fct_conversion_paths",
               "fct_attribution", "channel_performance_daily", "customer_rfm", "cohort_retention_monthly",
               "funnel_daily", "kpi_daily", "fct_support_cases", "customer_scores", "ml_model_runs", "ml_holdout_deciles"}
    assert product <= set(fixture)
    for table in sorted(product):
        if contract.get(table):
            assert fixture[table] == set(contract[table]), (table, set(contract[table]) ^ fixture[table])
    assert set(fixture) - product == {"data_health", "data_health_rejections"}


# --- the real thing, part two: `make run` then `make dashboard` -----------------------------------
# minimum charts each page draws on the small world right after `retailpulse demo` (one DAG run):
# no live score is 90 days old yet, so model quality shows the holdout charts only; the small
# world has no rejected records, so data health has no rejected-records chart
DEMO_MIN_CHARTS = {"executive": 2, "customers": 3, "acquisition": 3, "journeys": 3, "cohorts": 2, "model-quality": 3,
                   "data-health": 2}


@pytest.fixture(scope="module")
def demo_serving(small_world, tmp_path_factory):
    """``retailpulse demo`` (what `make run` runs) on the small world, in its own data dir: the
    sandbox served on 127.0.0.1, one retailpulse_daily run through Airflow, the serving copy
    published. Yields the Settings the dashboard reads (env-configured, like `make dashboard`)."""
    from retailpulse.demo import run_demo
    from retailpulse.settings import load_settings

    root = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("RETAILPULSE_") and k != "RETAILPULSE_REQUIRE_POSTGRES"]:
            mp.delenv(key)
        mp.setenv("RETAILPULSE_HOME", str(REPO))
        mp.setenv("RETAILPULSE_DATA_DIR", str(root / "data"))
        mp.setenv("RETAILPULSE_WAREHOUSE_PATH", str(root / "warehouse" / "retailpulse.duckdb"))
        mp.setenv("RETAILPULSE_SERVING_DIR", str(root / "warehouse" / "serving"))
        mp.setenv("RETAILPULSE_SANDBOX_WORLD", "small")
        mp.setenv("RETAILPULSE_SANDBOX_SEED", "42")
        settings = load_settings(_env_file=None)
        (settings.sandbox_path).mkdir(parents=True, exist_ok=True)
        (settings.sandbox_path / small_world.name).symlink_to(small_world)  # the session's small-42 world
        began = time.monotonic()
        assert run_demo(settings, force=True, progress=lambda _: None)
        print(f"\nretailpulse demo on the small world: {time.monotonic() - began:.0f}s")
        yield settings


def _chart_rows(element) -> list[int]:
    """Rows of every dataset a vega-lite chart element carries (Arrow IPC in the proto)."""
    import pyarrow as pa

    return [pa.ipc.open_stream(d.data.data).read_all().num_rows for d in element.proto.datasets]


def test_make_run_then_every_page_shows_data(demo_serving, serving_env):
    """After `make run`, every page draws its charts from the real pipeline's serving copy: each
    chart's every dataset has rows, no page raises, none says "not built yet"."""
    serving_env(demo_serving)
    for slug in DEMO_MIN_CHARTS:
        at = AppTest.from_function(page_script, args=(slug,), default_timeout=60).run()
        assert not at.exception, (slug, [e.value for e in at.exception])
        assert not [w.value for w in at.warning], (slug, [w.value for w in at.warning])
        charts = at.get("vega_lite_chart")
        assert len(charts) >= DEMO_MIN_CHARTS[slug], (slug, len(charts))
        for i, c in enumerate(charts):
            rows = _chart_rows(c)
            assert rows and all(n > 0 for n in rows), (slug, i, rows)
        for df in at.dataframe:
            assert len(df.value) > 0 or slug == "data-health", slug
        if slug == "model-quality":
            assert "Holdout evaluation" in [h.value for h in at.subheader]
        if slug == "data-health":
            assert [m.label for m in at.metric] == ["Last load (UTC)", "Batches loaded", "Batches refused (GX)",
                                                    "Rejected records"]


def test_demo_holdout_deciles_are_the_training_holdout(demo_serving):
    """gold.ml_holdout_deciles (what the calibration and decile charts show) is the holdout of the
    training recorded in gold.ml_model_runs: same customers, and its expected calibration error and
    aggregate relative error are the ones the training reported."""
    import json

    import duckdb

    from retailpulse.serving import serving_file

    con = duckdb.connect(str(serving_file(demo_serving)), read_only=True)
    try:
        dec = con.execute("select * from gold.ml_holdout_deciles").df()
        runs = con.execute("select model_name, training_id, metrics_json from gold.ml_model_runs").df()
        scores_version = con.execute("select distinct model_version from gold.customer_scores").fetchall()
    finally:
        con.close()
    assert set(dec["training_id"]) == set(runs["training_id"]) == {scores_version[0][0]}
    for r in runs.itertuples():
        m = json.loads(r.metrics_json)
        d = dec[dec["model_name"] == r.model_name]
        assert d["customers"].sum() == m["n"], r.model_name
        if r.model_name == "churn_xgb":
            ece = float((d["customers"] * (d["mean_predicted"] - d["mean_observed"]).abs()).sum() / d["customers"].sum())
            assert ece == pytest.approx(m["ece"], abs=1e-9)
            assert len(d) == 10 and d["mean_predicted"].is_monotonic_increasing
        else:
            predicted = float((d["customers"] * d["mean_predicted"]).sum())
            actual = float(d["total_observed"].sum())
            assert (predicted - actual) / actual == pytest.approx(m["aggregate_relative_error"], abs=1e-9)
            assert list(d.sort_values("bin")["mean_predicted"]) == sorted(d["mean_predicted"], reverse=True)


def test_demo_api_answers_a_customer_with_the_scores_of_gold(demo_serving):
    """The scores API on the real pipeline's serving copy: the highest-CLV customer's latest scores
    are exactly gold.customer_scores' row."""
    import duckdb
    from fastapi.testclient import TestClient

    from retailpulse.api import create_app
    from retailpulse.serving import serving_file

    con = duckdb.connect(str(serving_file(demo_serving)), read_only=True)
    try:
        cur = con.execute("select * from gold.customer_scores order by as_of_date desc, predicted_clv_12m desc, "
                          "customer_id limit 1")
        row = dict(zip([d[0] for d in cur.description], cur.fetchone()))
    finally:
        con.close()
    with TestClient(create_app(demo_serving, token="demo-token")) as client:
        r = client.get(f"/customers/{row['customer_id']}", headers={"Authorization": "Bearer demo-token"})
    assert r.status_code == 200, r.text
    scores = r.json()["scores"]
    assert scores["as_of_date"] == row["as_of_date"].isoformat() and scores["model_version"] == row["model_version"]
    for f in ("p_alive", "churn_probability", "expected_purchases_90d", "expected_purchases_365d", "predicted_clv_12m"):
        assert scores[f] == pytest.approx(row[f], rel=1e-12), f
    assert (scores["value_tier"], scores["churn_risk_band"]) == (row["value_tier"], row["churn_risk_band"])
