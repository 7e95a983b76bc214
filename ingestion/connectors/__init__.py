"""One connector per source. Each declares its objects (specs) and extracts raw records."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingestion.connectors.base import Connector
    from retailpulse.settings import Settings

SOURCES = ("stripe",)


def get_connector(source: str, settings: Settings) -> Connector:
    if source == "stripe":
        from ingestion.connectors.stripe import StripeConnector

        return StripeConnector(settings)
    raise ValueError(f"unknown source {source!r}: choose one of {', '.join(SOURCES)}")
