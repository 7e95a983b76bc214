"""Logging with secrets redacted: no configured credential ever reaches a log line."""

from __future__ import annotations

import logging
import sys

from retailpulse.settings import Settings

MASK = "***"


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for s in self.secrets:
            if s in text:
                text = text.replace(s, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        msg = record.getMessage()
        clean = self.redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text = self.redact(str(exc))
            if text != str(exc):
                record.exc_info = None
                record.exc_text = None
                record.msg = f"{record.msg} ({type(exc).__name__}: {text})"
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def install_redaction(settings: Settings) -> RedactingFilter:
    """Attach the redacting filter to every root handler; tell Airflow's masker too."""
    secrets = settings.secret_values()
    filt = RedactingFilter(secrets)
    root = logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(filt)
    try:
        from airflow.sdk.log import mask_secret

        for s in secrets:
            mask_secret(s)
    except Exception:  # Airflow not importable here: the filter alone applies
        pass
    return filt


def configure_cli_logging(settings: Settings, verbose: bool = False) -> None:
    """Logs go to stderr (stdout stays clean for --format csv/json); INFO with --verbose."""
    try:  # Airflow configures logging (to stdout) when first imported: let it, then take over
        import airflow  # noqa: F401
    except Exception:
        pass
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("great_expectations", "urllib3", "stripe", "simple_salesforce"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    install_redaction(settings)
