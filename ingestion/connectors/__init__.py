"""One connector per source. Each declares its objects (specs) and extracts raw records.

To add a source: write ``ingestion/connectors/<source>.py`` with a ``SPECS`` dict and a
``Connector`` subclass, then register it in ``_REGISTRY`` below.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingestion.connectors.base import Connector
    from ingestion.spec import ObjectSpec
    from retailpulse.settings import Settings

# source -> (module, connector class)
_REGISTRY: dict[str, tuple[str, str]] = {
    "stripe": ("ingestion.connectors.stripe", "StripeConnector"),
    "salesforce": ("ingestion.connectors.salesforce", "SalesforceConnector"),
    "ga4": ("ingestion.connectors.ga4", "GA4Connector"),
    "google_ads": ("ingestion.connectors.google_ads", "GoogleAdsConnector"),
    "meta": ("ingestion.connectors.meta", "MetaConnector"),
}
SOURCES = tuple(_REGISTRY)


def _module(source: str):  # type: ignore[no-untyped-def]
    if source not in _REGISTRY:
        raise ValueError(f"unknown source {source!r}: choose one of {', '.join(SOURCES)}")
    return importlib.import_module(_REGISTRY[source][0])


def get_specs(source: str) -> dict[str, ObjectSpec]:
    return _module(source).SPECS


def get_connector(source: str, settings: Settings, for_load: bool = False) -> Connector:
    """The connector for ``source``. ``for_load``: only batch planning is needed (no credentials)."""
    cls = getattr(_module(source), _REGISTRY[source][1])
    if for_load:
        return cls.planner(settings)
    return cls(settings)


def is_configured(source: str, settings: Settings) -> bool:
    return bool(getattr(_module(source), _REGISTRY[source][1]).is_configured(settings))
