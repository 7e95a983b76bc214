"""The sandbox: one process serving the simulated world through mock source APIs on loopback.

Two listeners (standard-library ``ThreadingHTTPServer``):

* ``http://127.0.0.1:P``   — Stripe (``/v1/...``), Google Ads REST (``/vNN/customers/...``),
  Meta Marketing API (``/vNN.0/act_.../insights``) and the admin endpoints (``/_sandbox/...``);
* ``https://127.0.0.1:P+1`` — Salesforce REST (``/services/data/...``) and the admin endpoints,
  with a certificate from a private CA written to ``<tls dir>/ca.pem`` that clients trust
  explicitly (``requests`` ``verify=ca_path``).

GA4 has no API here: a writer materialises BigQuery-export files ``events_YYYYMMDD.json.gz``
into ``ga4_export_dir`` for the events visible at the clock.

The clock ("now" of every source) starts at ``as_of`` (default: the end of the world's
observation period) and is moved with :meth:`SandboxServer.set_clock` or
``POST /_sandbox/clock {"as_of": ISO8601}`` (``GET`` reads it; ``GET /_sandbox/health``;
``GET|POST /_sandbox/faults`` reads or replaces the fault settings). Python use::

    with SandboxServer(world_path, ga4_export_dir=tmp / "ga4") as sb:
        client = stripe.StripeClient(sb.credentials["stripe_api_key"], base_addresses={"api": sb.http_url})

        session = requests.Session()
        session.verify = str(sb.ca_path)
        session.trust_env = False  # else REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE silently override session.verify
        sf = simple_salesforce.Salesforce(instance_url=sb.https_url, session=session,
                                          session_id=sb.credentials["salesforce_session_id"], version="59.0")

        sb.set_clock("2025-06-30T00:00:00Z")   # every API (and the GA4 files) now show that moment

Rate-limit shapes: Stripe 429 + ``Stripe-Should-Retry: true``; Salesforce 403
``REQUEST_LIMIT_EXCEEDED`` (what Salesforce answers; simple-salesforce raises
``SalesforceRefusedRequest``); Google Ads 429 ``RESOURCE_EXHAUSTED``; Meta HTTP 400 with error
code 17 (subcode 2446079), 613 or 4 and ``X-Business-Use-Case-Usage``. All carry ``Retry-After: 1``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import signal
import ssl
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow.parquet as pq

from sandbox.apis.common import Request, Response, iso_z, json_response, parse_ts, to_us
from sandbox.apis.faults import FaultConfig, FaultInjector
from sandbox.apis.tls import ensure_tls

log = logging.getLogger("sandbox.server")

__all__ = ["SandboxServer", "FaultConfig", "load_world", "main"]


# --------------------------------------------------------------------------------------------
# world access
# --------------------------------------------------------------------------------------------
def load_world(path: str | os.PathLike[str]) -> Any:
    """``sandbox.world.World.load(path)`` when available, else a plain reader of the same files."""
    path = Path(path)
    try:
        from sandbox.world import World  # type: ignore[attr-defined]
    except ImportError:
        World = None  # noqa: N806
    if World is not None and hasattr(World, "load"):
        return World.load(path)
    ns = SimpleNamespace(meta=json.loads((path / "world.json").read_text()), path=path)
    for f in sorted(path.glob("*.parquet")):
        setattr(ns, f.stem, pq.read_table(f))
    return ns


def _meta(world: Any) -> dict[str, Any]:
    m = getattr(world, "meta", None)
    if m is None and hasattr(world, "path"):
        m = json.loads((Path(world.path) / "world.json").read_text())
    return dict(m or {})


def world_credentials(meta: dict[str, Any]) -> dict[str, str]:
    seed = meta.get("seed", 0)
    return {
        "stripe_api_key": str(meta.get("stripe_api_key") or f"sk_test_sandbox_{seed}"),
        "salesforce_session_id": str(meta.get("salesforce_session_id") or f"00Dsandbox!{seed}"),
        "google_ads_developer_token": str(meta.get("google_ads_developer_token") or f"sandbox-dev-token-{seed}"),
        "google_ads_customer_id": str(meta.get("google_ads_customer_id") or "1234567890").replace("-", ""),
        "google_ads_access_token": str(meta.get("google_ads_access_token") or f"ya29.sandbox-{seed}"),
        "meta_access_token": str(meta.get("meta_access_token") or f"EAAsandbox{seed}"),
        "meta_account_id": str(meta.get("meta_account_id") or "1000000001").removeprefix("act_"),
    }


def default_as_of(meta: dict[str, Any]) -> dt.datetime:
    end = meta.get("end")
    if not end:
        return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    d = dt.date.fromisoformat(str(end)[:10])
    return dt.datetime(d.year, d.month, d.day, 23, 59, 59, tzinfo=dt.timezone.utc)


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "RetailPulseSandbox/1.0"
    sys_version = ""
    timeout = 120
    disable_nagle_algorithm = True  # headers and body go out at once: no 40 ms delayed-ACK stalls

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815

    def _dispatch(self) -> None:
        srv: _Listener = self.server  # type: ignore[assignment]
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        body = self.rfile.read(length) if length > 0 else b""
        url = urlsplit(self.path)
        host = self.headers.get("Host") or f"{srv.server_address[0]}:{srv.server_address[1]}"
        req = Request(
            method=self.command, path=unquote(url.path) or "/", raw_query=url.query,
            headers={k.lower(): v for k, v in self.headers.items()}, body=body,
            base_url=f"{srv.scheme}://{host}", scheme=srv.scheme,
        )
        try:
            resp = srv.app.dispatch(req, srv.scheme)
        except Exception:  # a bug in a mock API: answer 500, keep serving
            log.error("sandbox error on %s %s\n%s", req.method, req.path, traceback.format_exc())
            resp = json_response(500, {"error": {"message": "sandbox internal error", "type": "api_error"}})
        try:
            self.send_response(resp.status)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Content-Length", str(len(resp.body)))
            for k, v in resp.headers.items():
                self.send_header(k, v)
            # end_headers() + body in a single write (no small-segment / delayed-ACK stalls)
            self._headers_buffer.append(b"\r\n")
            if self.command != "HEAD":
                self._headers_buffer.append(resp.body)
            self.flush_headers()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("%s %s", self.address_string(), format % args)


class _Listener(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = False

    def __init__(self, addr: tuple[str, int], app: "SandboxServer", scheme: str,
                 ssl_ctx: ssl.SSLContext | None = None):
        self.app = app
        self.scheme = scheme
        self.ssl_ctx = ssl_ctx
        super().__init__(addr, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.ssl_ctx is None:
            return super().finish_request(request, client_address)
        request.settimeout(30)  # handshake happens here, in the worker thread, not in accept()
        try:
            tls_sock = self.ssl_ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log.debug("TLS handshake failed from %s: %s", client_address, e)
            return
        try:
            self.RequestHandlerClass(tls_sock, client_address, self)
        finally:
            try:
                tls_sock.close()
            except OSError:
                pass


def _bind(host: str, port: int, app: "SandboxServer", scheme: str, ctx: ssl.SSLContext | None) -> _Listener:
    return _Listener((host, port), app, scheme, ctx)


# --------------------------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------------------------
class SandboxServer:
    """Serve one world. ``port`` is the HTTP port (0 = any free one); HTTPS listens on port+1."""

    def __init__(
        self,
        world_path: str | os.PathLike[str],
        host: str = "127.0.0.1",
        port: int = 0,
        as_of: Any = None,
        faults: FaultConfig | None = None,
        ga4_export_dir: str | os.PathLike[str] | None = None,
        tls_dir: str | os.PathLike[str] | None = None,
        ga4_format: str = "json",
    ):
        self.world_path = Path(world_path).resolve()
        self.host = host
        self.requested_port = int(port)
        self._initial_as_of = as_of
        self.faults = FaultInjector(faults or FaultConfig())
        self.ga4_export_dir = Path(ga4_export_dir).resolve() if ga4_export_dir else None
        self.ga4_format = ga4_format
        self.tls_dir = Path(tls_dir).resolve() if tls_dir else self.world_path.parent / "tls"
        self.world: Any = None
        self.meta: dict[str, Any] = {}
        self.credentials: dict[str, str] = {}
        self.http_url = ""
        self.https_url = ""
        self.ca_path: Path | None = None
        self._clock_lock = threading.RLock()
        self._t_us = 0
        self._http: _Listener | None = None
        self._https: _Listener | None = None
        self._threads: list[threading.Thread] = []
        self._apis: dict[str, Any] = {}
        self._routes: dict[str, list[tuple[str, re.Pattern[str], Any, Any, str]]] = {"http": [], "https": []}
        self.ga4: Any = None
        self.ga4_error: str | None = None
        self._ga4_thread: threading.Thread | None = None
        self._started = False
        self.default_as_of: dt.datetime | None = None

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> "SandboxServer":
        if self._started:
            return self
        t0 = time.monotonic()
        self.world = load_world(self.world_path)
        self.meta = _meta(self.world)
        self.credentials = world_credentials(self.meta)
        as_of = self._initial_as_of if self._initial_as_of is not None else default_as_of(self.meta)
        self._t_us = to_us(as_of)
        self.default_as_of = parse_ts(as_of)
        self._build_apis()
        tls = ensure_tls(self.tls_dir, (self.host,))
        ctx = tls.server_context()
        for p in (tls.cert_path, tls.key_path):  # loaded into memory: no private key left lying around
            p.unlink(missing_ok=True)
        self.ca_path = tls.ca_path
        self._http, self._https = self._bind_pair(ctx)
        hp, sp = self._http.server_address[1], self._https.server_address[1]
        shown = self.host if ":" not in self.host else f"[{self.host}]"
        self.http_url = f"http://{shown}:{hp}"
        self.https_url = f"https://{shown}:{sp}"
        for name, srv in (("http", self._http), ("https", self._https)):
            th = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                                  name=f"sandbox-{name}", daemon=True)
            th.start()
            self._threads.append(th)
        self._started = True
        if self.ga4_export_dir is not None:  # indexing + the first write run in the background
            self._ga4_thread = threading.Thread(target=self._ga4_start, name="sandbox-ga4", daemon=True)
            self._ga4_thread.start()
        log.info("sandbox started in %.2fs: %s %s", time.monotonic() - t0, self.http_url, self.https_url)
        return self

    def _bind_pair(self, ctx: ssl.SSLContext) -> tuple[_Listener, _Listener]:
        if self.requested_port:
            http = _bind(self.host, self.requested_port, self, "http", None)
            try:
                https = _bind(self.host, self.requested_port + 1, self, "https", ctx)
            except OSError:
                http.server_close()
                raise
            return http, https
        for _ in range(20):  # any free port P with P+1 free as well
            http = _bind(self.host, 0, self, "http", None)
            try:
                return http, _bind(self.host, http.server_address[1] + 1, self, "https", ctx)
            except OSError:
                http.server_close()
        http = _bind(self.host, 0, self, "http", None)
        return http, _bind(self.host, 0, self, "https", ctx)

    def stop(self) -> None:
        for srv in (self._http, self._https):
            if srv is not None:
                srv.shutdown()
                srv.server_close()
        for th in self._threads:
            th.join(timeout=5)
        if self._ga4_thread is not None:
            self._ga4_thread.join(timeout=60)
        self._http = self._https = None
        self._threads.clear()
        self._started = False

    def __enter__(self) -> "SandboxServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- clock -----------------------------------------------------------------------------
    @property
    def as_of(self) -> dt.datetime:
        from sandbox.apis.common import from_us
        return from_us(self._t_us)

    @property
    def clock_us(self) -> int:
        return self._t_us

    def set_clock(self, ts: Any) -> dict[str, Any]:
        """Move "now" (any ISO 8601 string, date, datetime or epoch seconds).

        The APIs see the new time at once; the GA4 export is brought up to it before returning.
        """
        self._t_us = to_us(ts)
        result: dict[str, Any] = {"as_of": iso_z(self._t_us)}
        self.wait_ga4()  # the export built at start must exist before it can be moved
        with self._clock_lock:
            if self.ga4 is not None and self._started:
                result["ga4"] = self.ga4.write(self._t_us)  # the latest clock, even if another call moved it
        return result

    def set_faults(self, config: FaultConfig) -> None:
        """Replace the fault configuration (and restart the per-endpoint request counters).

        GA4 export files are rewritten when the record-fault settings that apply to them change.
        """
        self.faults.configure(config)
        self.wait_ga4()
        with self._clock_lock:
            if self.ga4 is not None and self._started:
                self.ga4.write(self._t_us)

    def wait_ga4(self, timeout: float | None = None) -> None:
        """Block until the GA4 export written at start is complete; raise if it failed."""
        th = self._ga4_thread
        if th is not None and th is not threading.current_thread():
            th.join(timeout)
        if self.ga4_error:
            raise RuntimeError("the GA4 export writer failed: " + self.ga4_error.strip().splitlines()[-1])

    def _ga4_start(self) -> None:
        from sandbox.apis.ga4_export import GA4ExportWriter

        try:
            writer = GA4ExportWriter(self.world, self.ga4_export_dir, self.meta, faults=self.faults,
                                     fmt=self.ga4_format)
            with self._clock_lock:
                writer.write(self._t_us)
                self.ga4 = writer
        except Exception:
            self.ga4_error = traceback.format_exc()
            log.error("GA4 export failed\n%s", self.ga4_error)

    # --- APIs ------------------------------------------------------------------------------
    def _build_apis(self) -> None:
        from sandbox.apis.stripe import StripeAPI

        c = self.credentials
        self._apis = {"stripe": StripeAPI(self.world, c["stripe_api_key"])}
        try:
            from sandbox.apis.salesforce import SalesforceAPI
            self._apis["salesforce"] = SalesforceAPI(self.world, c["salesforce_session_id"])
        except ImportError:
            pass
        try:
            from sandbox.apis.google_ads import GoogleAdsAPI
            self._apis["google_ads"] = GoogleAdsAPI(self.world, c)
        except ImportError:
            pass
        try:
            from sandbox.apis.meta import MetaAPI
            self._apis["meta"] = MetaAPI(self.world, c)
        except ImportError:
            pass
        listeners = {"stripe": "http", "google_ads": "http", "meta": "http", "salesforce": "https"}
        self._routes = {"http": [], "https": []}
        for name, api in self._apis.items():
            for method, rx, handler, endpoint in api.routes():
                self._routes[listeners[name]].append((method, re.compile(rx), api, handler, endpoint))

    def dispatch(self, req: Request, scheme: str) -> Response:
        if req.path.startswith("/_sandbox/"):
            return self._admin(req)
        path_hit = None
        for method, rx, api, handler, endpoint in self._routes.get(scheme, []):
            m = rx.fullmatch(req.path)
            if m is None:
                continue
            if method != req.method:
                path_hit = api
                continue
            denied = api.authenticate(req)
            if denied is not None:
                return denied
            draw = self.faults.draw(api.name, endpoint)
            if draw.slow:
                time.sleep(self.faults.config.slow_seconds)
            if draw.request_fault == "429":
                return api.rate_limited(draw)
            if draw.request_fault == "5xx":
                return api.server_error(draw)
            resp = api.handle(req, self._t_us, draw, handler, m)
            self.faults.record_applied(draw)
            return resp
        if path_hit is not None:
            return path_hit.not_found(req)
        for api in self._apis.values():
            if scheme == ("https" if api.name == "salesforce" else "http") and api.owns(req.path):
                return api.not_found(req)
        return json_response(404, {"error": {"message": f"no sandbox endpoint {req.method} {req.path}",
                                             "type": "not_found"}})

    # --- admin -----------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        ga4 = None
        if self.ga4_export_dir is not None:
            busy = self._ga4_thread is not None and self._ga4_thread.is_alive()
            state = "writing" if busy else "failed" if self.ga4_error else "ready"
            ga4 = {"dir": str(self.ga4_export_dir), "state": state,
                   "days": self.ga4.days_written() if self.ga4 is not None else 0}
        return {
            "status": "ok", "as_of": iso_z(self._t_us),
            "world": {"path": str(self.world_path), "size": self.meta.get("size"), "seed": self.meta.get("seed"),
                      "start": self.meta.get("start"), "end": self.meta.get("end")},
            "http_url": self.http_url, "https_url": self.https_url, "ca_path": str(self.ca_path),
            "apis": sorted(self._apis), "faults": str(self.faults.config), "ga4_export": ga4,
        }

    def _admin(self, req: Request) -> Response:
        p = req.path.rstrip("/")
        try:
            if p == "/_sandbox/health" and req.method == "GET":
                return json_response(200, self.health())
            if p == "/_sandbox/clock":
                if req.method == "GET":
                    return json_response(200, {"as_of": iso_z(self._t_us)})
                if req.method == "POST":
                    body = req.json()
                    if not isinstance(body, dict) or "as_of" not in body:
                        return json_response(400, {"error": {"message": 'expected JSON {"as_of": ISO8601}'}})
                    return json_response(200, self.set_clock(parse_ts(body["as_of"])))
            if p == "/_sandbox/faults":
                if req.method == "GET":
                    return json_response(200, self.faults.snapshot())
                if req.method == "POST":
                    body = req.json()
                    cfg = FaultConfig.parse(body) if isinstance(body, str) else FaultConfig.from_dict(body or {})
                    self.set_faults(cfg)
                    return json_response(200, self.faults.snapshot())
        except (ValueError, TypeError) as e:
            return json_response(400, {"error": {"message": str(e)}})
        return json_response(404, {"error": {"message": f"no admin endpoint {req.method} {req.path}"}})

    # --- connector settings ----------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """RETAILPULSE_* settings that point the connectors at this sandbox."""
        c = self.credentials
        env = {
            "RETAILPULSE_STRIPE_API_BASE": self.http_url,
            "RETAILPULSE_STRIPE_API_KEY": c["stripe_api_key"],
            "RETAILPULSE_SALESFORCE_INSTANCE_URL": self.https_url,
            "RETAILPULSE_SALESFORCE_SESSION_ID": c["salesforce_session_id"],
            "RETAILPULSE_SALESFORCE_CA_BUNDLE": str(self.ca_path),
            "RETAILPULSE_GA4_EXPORT_URL": str(self.ga4_export_dir) if self.ga4_export_dir else "",
            "RETAILPULSE_GOOGLE_ADS_BASE_URL": self.http_url,
            "RETAILPULSE_GOOGLE_ADS_CUSTOMER_ID": c["google_ads_customer_id"],
            "RETAILPULSE_GOOGLE_ADS_DEVELOPER_TOKEN": c["google_ads_developer_token"],
            "RETAILPULSE_GOOGLE_ADS_ACCESS_TOKEN": c["google_ads_access_token"],
            "RETAILPULSE_META_BASE_URL": self.http_url,
            "RETAILPULSE_META_ACCOUNT_ID": c["meta_account_id"],
            "RETAILPULSE_META_ACCESS_TOKEN": c["meta_access_token"],
        }
        return env


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------
def _data_dir() -> Path:
    try:
        from retailpulse.settings import Settings
        return Settings().sandbox_path
    except Exception:
        home = os.environ.get("RETAILPULSE_HOME")
        return (Path(home) if home else Path.cwd()) / "data" / "sandbox"


def _ensure_world(size: str, seed: int, data_dir: Path) -> Path:
    from sandbox.world import ensure_world

    return Path(ensure_world(data_dir, size, seed, progress=True))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="retailpulse sandbox", description="Serve the simulated world on loopback.")
    ap.add_argument("--world", choices=("small", "medium", "large"), default="small")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765, help="HTTP port P; Salesforce HTTPS listens on P+1")
    ap.add_argument("--as-of", default=None, help="ISO 8601 start clock (default: end of the observation period)")
    ap.add_argument("--faults", default="", help='e.g. "429=0.05,5xx=0.02,slow=0.01,malformed=0.01,duplicate=0.01,drift=0.01"')
    ap.add_argument("--fault-seed", type=int, default=None, help="seed of the fault sequence (default: --seed)")
    ap.add_argument("--ga4-export-dir", default=None, help="where GA4 export files go (default <data>/sandbox/ga4_export/<size>-<seed>)")
    ap.add_argument("--verbose", "-v", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        faults = FaultConfig.parse(args.faults, seed=args.seed if args.fault_seed is None else args.fault_seed)
        as_of = parse_ts(args.as_of) if args.as_of else None
        data_dir = _data_dir()
        print(f"preparing the {args.world} world (seed {args.seed}) in {data_dir} ...", file=sys.stderr, flush=True)
        world_path = _ensure_world(args.world, args.seed, data_dir)
        ga4_dir = Path(args.ga4_export_dir) if args.ga4_export_dir else data_dir / "ga4_export" / f"{args.world}-{args.seed}"
        server = SandboxServer(world_path, host=args.host, port=args.port, as_of=as_of, faults=faults,
                               ga4_export_dir=ga4_dir)
        server.start()
    except (OSError, ValueError, RuntimeError) as e:
        print(f"error: sandbox could not start: {e}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, _on_signal)
        except ValueError:  # not the main thread
            pass
    print(f"# RetailPulse sandbox: {args.world} world seed {args.seed}, as of {iso_z(server.clock_us)}, "
          f"faults {server.faults.config}")
    print(f"# Stripe, Google Ads, Meta, admin: {server.http_url}   Salesforce: {server.https_url}")
    print(f"# clock: curl -X POST {server.http_url}/_sandbox/clock -d '{{\"as_of\": \"2025-06-30T00:00:00Z\"}}'")
    for k, v in server.env().items():
        print(f"{k}={v}")
    print("# Ctrl-C to stop", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    print("stopping sandbox ...", file=sys.stderr, flush=True)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
