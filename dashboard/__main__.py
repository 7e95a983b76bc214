"""``python -m dashboard`` (``make dashboard``): run the Streamlit app on the configured address.

Binds RETAILPULSE_DASHBOARD_HOST:RETAILPULSE_DASHBOARD_PORT (127.0.0.1:8501), headless, with
Streamlit's usage statistics off. Extra arguments are passed to ``streamlit run``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from retailpulse.settings import load_settings


def command(host: str, port: int, extra: list[str] | None = None) -> list[str]:
    app = Path(__file__).resolve().parent / "app.py"
    return [sys.executable, "-m", "streamlit", "run", str(app),
            "--server.address", host, "--server.port", str(port), "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal", *(extra or [])]


def main() -> None:
    settings = load_settings()
    extra = sys.argv[1:]
    host, port = settings.dashboard_host, settings.dashboard_port
    for i, arg in enumerate(extra[:-1]):  # `python -m dashboard --server.port 8600` wins
        if arg == "--server.address":
            host = extra[i + 1]
        elif arg == "--server.port":
            port = int(extra[i + 1])
    cmd = command(settings.dashboard_host, settings.dashboard_port, extra)
    print(f"RetailPulse dashboard on http://{host}:{port} "
          f"(serving copy {settings.serving_path / 'retailpulse_serving.duckdb'})", flush=True)
    os.execv(sys.executable, cmd)


if __name__ == "__main__":
    main()
