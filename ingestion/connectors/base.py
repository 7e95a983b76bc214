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

    @abc.abstractmethod
    def window(self, obj: str, interval: Interval, state: dict[str, Any]) -> Interval:
        """The source-time window to extract for ``interval`` (lookbacks, re-syncs)."""

    @abc.abstractmethod
    def extract(self, obj: str, window: Interval) -> Iterator[dict[str, Any]]:
        """Raw records of ``obj`` in ``window`` as the API returned them."""

    def objects(self) -> list[str]:
        return list(self.specs)
