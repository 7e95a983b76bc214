"""What every connector provides to the extraction runner."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from typing import Any

from ingestion.interval import Interval
from ingestion.spec import ObjectSpec


class ConnectorError(RuntimeError):
    """Extraction failed after retries; the message says what to check (never a secret)."""


class Connector(abc.ABC):
    source: str
    specs: dict[str, ObjectSpec]

    @classmethod
    def is_configured(cls, settings: Any) -> bool:
        """Whether credentials/locations for this source are configured (else the run skips it)."""
        return True

    @classmethod
    def planner(cls, settings: Any) -> Connector:
        """An instance usable for batch planning only (no credentials, no network)."""
        obj = cls.__new__(cls)
        obj.settings = settings  # type: ignore[attr-defined]
        return obj

    @abc.abstractmethod
    def window(self, obj: str, interval: Interval, state: dict[str, Any]) -> Interval:
        """The source-time window to extract for ``interval`` (lookbacks, re-syncs)."""

    @abc.abstractmethod
    def extract(self, obj: str, window: Interval) -> Iterator[dict[str, Any]]:
        """Raw records of ``obj`` in ``window`` as the API returned them."""

    def batches(self, obj: str, interval: Interval) -> list[Interval]:
        """The landing batches a run over ``interval`` writes (default: one, the interval).

        GA4 overrides this to land one batch per export day, re-reading the last days.
        """
        return [interval]

    def objects(self) -> list[str]:
        return list(self.specs)
