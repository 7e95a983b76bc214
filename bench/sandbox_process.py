"""The sandbox in its own process, for the pipeline benchmark.

The sources RetailPulse reads are remote services: their work (building API pages, writing
the GA4 export) does not run in the pipeline's process. ``SandboxServer`` started inside the
benchmark would share the benchmark's interpreter lock with the pipeline and charge the
source's CPU to the pipeline's stages, so the benchmark serves the world from
``python -m sandbox.server`` in a child process and drives its clock over the admin endpoint,
the way a user drives a sandbox started with ``retailpulse sandbox``.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench._common import Peak


def _free_port_pair() -> int:
    """A port P with P+1 free as well (HTTP on P, Salesforce HTTPS on P+1)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free pair of loopback ports for the sandbox")


class SandboxProcess:
    """``python -m sandbox.server`` for one world, with the interface the benchmark uses
    (``env()``, ``set_clock()``, ``stop()``) and the child's peak resident memory."""

    def __init__(self, size: str, seed: int, ga4_export_dir: Path, env: dict[str, str] | None = None,
                 start_timeout: float = 900.0) -> None:
        self.size, self.seed = size, seed
        self.ga4_export_dir = Path(ga4_export_dir)
        self._env = {**os.environ, **(env or {})}
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen[str] | None = None
        self._env_lines: dict[str, str] = {}
        self.http_url = ""
        self._peak: Peak | None = None
        self._stderr: list[str] = []

    def start(self) -> SandboxProcess:
        port = _free_port_pair()
        cmd = [sys.executable, "-m", "sandbox.server", "--world", self.size, "--seed", str(self.seed),
               "--port", str(port), "--ga4-export-dir", str(self.ga4_export_dir)]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self._env)
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self._peak = Peak(self._proc.pid).__enter__()
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read_stdout, args=(lines,), daemon=True).start()
        deadline = time.monotonic() + self.start_timeout
        while True:  # the CLI prints the connector settings, then "# Ctrl-C to stop"
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise RuntimeError(f"the sandbox process did not start within {self.start_timeout:g} s: "
                                   + "".join(self._stderr[-20:]).strip()) from None
            if line is None or line.startswith("# Ctrl-C"):
                break
            if "=" in line and not line.startswith("#"):
                k, _, v = line.partition("=")
                self._env_lines[k] = v
        if self._proc.poll() is not None or not self._env_lines:
            self.stop()
            time.sleep(0.2)  # the stderr reader catches up with the error the CLI printed
            raise RuntimeError("the sandbox process did not start: " + "".join(self._stderr[-20:]).strip())
        self.http_url = f"http://127.0.0.1:{port}"
        return self

    def _read_stdout(self, lines: queue.Queue[str | None]) -> None:
        """Every stdout line into ``lines`` (the pipe stays drained while the sandbox runs); None at the end."""
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    def _drain_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line)
            del self._stderr[:-200]

    @property
    def peak_rss(self) -> int:
        """Peak resident memory of the sandbox process so far (bytes)."""
        return self._peak.peak if self._peak is not None else 0

    def env(self) -> dict[str, str]:
        return dict(self._env_lines)

    def _admin(self, path: str, body: dict[str, Any] | None = None, timeout: float = 3600.0) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.http_url + path, data=data, method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())

    def set_clock(self, ts: Any) -> dict[str, Any]:
        """Move the sandbox's "now"; returns once its GA4 export is written up to it."""
        return self._admin("/_sandbox/clock", {"as_of": ts.isoformat() if hasattr(ts, "isoformat") else str(ts)})

    def wait_ga4(self) -> None:
        """Block until the GA4 export started with the sandbox is written (or failed)."""
        while True:
            ga4 = self._admin("/_sandbox/health").get("ga4_export") or {}
            if ga4.get("state") == "failed":
                raise RuntimeError("the sandbox's GA4 export failed: " + "".join(self._stderr[-20:]).strip())
            if ga4.get("state") != "writing":
                return
            time.sleep(0.5)

    def stop(self) -> None:
        p = self._proc
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=90)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self._peak is not None:
            self._peak.__exit__(None, None, None)

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
