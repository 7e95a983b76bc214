"""The scores API: by example (TestClient) and against its own OpenAPI schema (schemathesis)."""

from __future__ import annotations

import os
import shutil
import stat

import duckdb
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings as hsettings
from schemathesis import GenerationMode

from retailpulse.api import RFM_SEGMENTS, TokenError, create_app, resolve_token
from retailpulse.serving import serving_file
from tests.conftest import CONSUMPTION_API_TOKEN
from tests.consumption_fixtures import END, KNOWN_CUSTOMER, MODEL_VERSIONS

AUTH = {"Authorization": f"Bearer {CONSUMPTION_API_TOKEN}"}
SCORE_FIELDS = ("p_alive", "churn_probability", "expected_purchases_90d", "expected_purchases_365d",
                "predicted_clv_12m", "value_tier", "churn_risk_band", "model_version")


@pytest.fixture(scope="module")
def app(gold_serving):
    return create_app(gold_serving)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


def gold(settings, sql, params=()):
    con = duckdb.connect(str(serving_file(settings)), read_only=True)
    try:
        cur = con.execute(sql, list(params))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]
    finally:
        con.close()


def assert_error(resp, status, code):
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"}, body
    assert body["error"]["status"] == status and body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


# --- by example -------------------------------------------------------------------------------
def test_health_needs_no_token_and_counts_gold_tables(client, gold_serving):
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["serving_copy"]["file"] == "retailpulse_serving.duckdb"
    assert body["serving_copy"]["age_seconds"] >= 0
    counts = {r["table_name"]: None for r in gold(
        gold_serving, "select table_name from information_schema.tables where table_schema = 'gold'")}
    assert set(body["tables"]) == set(counts)
    n = gold(gold_serving, "select count(*) as n from gold.dim_customers")[0]["n"]
    assert body["tables"]["dim_customers"] == n


@pytest.mark.parametrize("path", [f"/customers/{KNOWN_CUSTOMER}", "/segments", "/segments/Loyal/customers"])
def test_missing_or_bad_token_is_401(client, path):
    err = assert_error(client.get(path), 401, "unauthorized")
    assert "missing" in err["message"]
    r = client.get(path, headers={"Authorization": "Bearer wrong-token"})
    err = assert_error(r, 401, "unauthorized")
    assert "invalid" in err["message"]
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert_error(client.get(path, headers={"Authorization": f"Basic {CONSUMPTION_API_TOKEN}"}), 401, "unauthorized")


def test_known_customer_has_the_scores_of_gold_customer_scores(client, gold_serving):
    r = client.get(f"/customers/{KNOWN_CUSTOMER}", headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    # latest as_of_date, then the highest model_version (the rule dim_customers uses)
    expected = gold(gold_serving, """
        select * from gold.customer_scores where customer_id = ?
        order by as_of_date desc, model_version desc limit 1""", [KNOWN_CUSTOMER])[0]
    assert expected["as_of_date"] == END and expected["model_version"] == max(MODEL_VERSIONS)
    scores = body["scores"]
    assert scores["as_of_date"] == END.isoformat()
    for f in SCORE_FIELDS:
        assert scores[f] == pytest.approx(expected[f]) if isinstance(expected[f], float) else scores[f] == expected[f], f
    assert body["value_tier"] == expected["value_tier"]
    assert body["churn_risk_band"] == expected["churn_risk_band"]
    dim = gold(gold_serving, "select * from gold.dim_customers where customer_id = ?", [KNOWN_CUSTOMER])[0]
    assert body["segment"] == dim["rfm_segment"]
    assert body["profile"]["orders"] == dim["orders"]
    assert body["profile"]["net_revenue"] == pytest.approx(dim["net_revenue"])
    assert body["profile"]["last_order_at"].endswith("Z")  # UTC, explicit


def test_no_raw_or_hashed_email_leaves_the_api(client, gold_serving):
    hashes = {r["email_sha256"] for r in gold(gold_serving, "select email_sha256 from gold.dim_customers")}
    texts = [client.get(f"/customers/{KNOWN_CUSTOMER}", headers=AUTH).text]
    for seg in RFM_SEGMENTS:
        texts.append(client.get(f"/segments/{seg}/customers", params={"limit": 1000}, headers=AUTH).text)
    for text in texts:
        assert "@" not in text
        assert "email_sha256" not in text
        assert not any(h in text for h in hashes)


def test_unknown_customer_and_segment_are_404(client):
    err = assert_error(client.get("/customers/cust_9999", headers=AUTH), 404, "not_found")
    assert "cust_9999" in err["message"]
    assert_error(client.get("/segments/Whales/customers", headers=AUTH), 404, "not_found")
    assert_error(client.get("/no/such/route", headers=AUTH), 404, "not_found")


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"limit": "ten"}, {"offset": -1}])
def test_bad_parameters_are_422_with_details(client, params):
    err = assert_error(client.get("/segments/Loyal/customers", params=params, headers=AUTH), 422, "invalid_request")
    assert err["details"] and err["details"][0]["location"][0] == "query"


def test_segment_pages_cover_the_segment_once_in_clv_order(client, gold_serving):
    total = gold(gold_serving, "select count(*) as n from gold.dim_customers where rfm_segment = 'Hibernating'")[0]["n"]
    seen, offset, clvs = [], 0, []
    while offset is not None:
        r = client.get("/segments/hibernating/customers", params={"limit": 4, "offset": offset}, headers=AUTH)
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["segment"] == "Hibernating" and page["total"] == total and page["limit"] == 4
        seen += [i["customer_id"] for i in page["items"]]
        clvs += [i["predicted_clv_12m"] for i in page["items"]]
        offset = page["next_offset"]
    assert len(seen) == len(set(seen)) == total
    known = [c for c in clvs if c is not None]
    assert known == sorted(known, reverse=True)
    for alias in ("At Risk", "at-risk", "AT_RISK"):
        assert client.get(f"/segments/{alias}/customers", headers=AUTH).json()["segment"] == "At Risk"
    listing = client.get("/segments", headers=AUTH).json()["segments"]
    assert {s["segment"] for s in listing} >= set(RFM_SEGMENTS)


def test_openapi_is_served_with_bearer_security(client):
    spec = client.get("/openapi.json").json()
    assert {"/health", "/customers/{customer_id}", "/segments/{segment}/customers"} <= set(spec["paths"])
    schemes = spec["components"]["securitySchemes"]
    assert any(s.get("scheme", "").lower() == "bearer" for s in schemes.values())
    assert "401" in spec["paths"]["/customers/{customer_id}"]["get"]["responses"]
    assert client.get("/docs").status_code == 200


# --- token handling ------------------------------------------------------------------------------
def test_token_file_is_generated_0600_and_world_readable_files_are_refused(settings_factory, tmp_path):
    s = settings_factory(api_token_file=tmp_path / "secret" / "api_token")
    with pytest.raises(TokenError):
        resolve_token(s)  # nothing configured and not asked to generate
    with pytest.raises(TokenError):
        create_app(s)  # the API refuses to start without a token
    token, source = resolve_token(s, generate=True)
    path = tmp_path / "secret" / "api_token"
    assert source == str(path) and len(token) >= 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert resolve_token(s, generate=True)[0] == token  # reused, not regenerated
    os.chmod(path, 0o644)
    with pytest.raises(TokenError, match="chmod 600"):
        resolve_token(s)


def test_make_api_generates_a_token_file_and_serves_on_loopback(gold_serving, tmp_path):
    """`python -m retailpulse.api` (make api): no token configured -> a 0600 token file is
    generated and its path (never the token) printed; the server answers on 127.0.0.1."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from tests.conftest import REPO

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token_file = tmp_path / "api_token"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETAILPULSE_")}
    env.update(RETAILPULSE_HOME=str(REPO), RETAILPULSE_SERVING_DIR=str(gold_serving.serving_path),
               RETAILPULSE_DATA_DIR=str(tmp_path / "data"), RETAILPULSE_API_TOKEN_FILE=str(token_file),
               RETAILPULSE_API_PORT=str(port))
    proc = subprocess.Popen([sys.executable, "-m", "retailpulse.api"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the API did not start: {proc.stdout.read() if proc.stdout else ''}")
                time.sleep(0.25)
        token = token_file.read_text().strip()
        assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
        req = urllib.request.Request(f"http://127.0.0.1:{port}/customers/{KNOWN_CUSTOMER}",
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    assert str(token_file) in out and f"http://127.0.0.1:{port}" in out
    assert token not in out


def test_no_serving_copy_is_503_in_the_same_shape(settings_factory):
    app = create_app(settings_factory(), token="t")
    with TestClient(app) as c:
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "unavailable"
        assert_error(c.get(f"/customers/{KNOWN_CUSTOMER}", headers={"Authorization": "Bearer t"}), 503, "unavailable")


def test_a_new_publication_is_picked_up(gold_serving, tmp_path):
    """The API follows the serving file when stage_publish swaps a new copy in."""
    settings = gold_serving.model_copy(update={"serving_dir": tmp_path / "serving"})
    settings.__dict__.pop("serving_path", None)
    (tmp_path / "serving").mkdir()
    shutil.copy(serving_file(gold_serving), tmp_path / "serving" / "retailpulse_serving.duckdb")
    with TestClient(create_app(settings, token="t")) as c:
        assert c.get(f"/customers/{KNOWN_CUSTOMER}", headers={"Authorization": "Bearer t"}).status_code == 200
        new = tmp_path / "serving" / ".new.duckdb"
        con = duckdb.connect(str(new))
        con.execute(f"attach '{serving_file(gold_serving)}' as src (read_only)")
        con.execute("create schema gold")
        con.execute("create table gold.dim_customers as select * from src.gold.dim_customers "
                    f"where customer_id <> '{KNOWN_CUSTOMER}'")
        con.close()
        os.replace(new, tmp_path / "serving" / "retailpulse_serving.duckdb")
        assert_error(c.get(f"/customers/{KNOWN_CUSTOMER}", headers={"Authorization": "Bearer t"}), 404, "not_found")
        assert set(c.get("/health").json()["tables"]) == {"dim_customers"}


# --- against its own OpenAPI schema ----------------------------------------------------------------
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_api_conforms_to_its_openapi_schema(app, mode):
    """Generated requests (valid and invalid) to every operation get responses that match the
    schema: documented status codes, content types and bodies, no 5xx; negative data is
    rejected; an operation does not answer without its token. 25 examples per mode,
    deterministic (derandomized, no example database)."""
    api = schemathesis.openapi.from_asgi("/openapi.json", app)

    @given(case=api.as_strategy(generation_mode=mode))
    @hsettings(max_examples=25, derandomize=True, deadline=None, database=None,
               suppress_health_check=list(HealthCheck))
    def check(case):
        case.call_and_validate(headers=AUTH)

    check()
