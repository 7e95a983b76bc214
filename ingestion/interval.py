"""Extraction intervals: half-open UTC ranges [start, end) named by a stable key."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

UTC = dt.timezone.utc


def to_utc(value: dt.datetime | dt.date | str) -> dt.datetime:
    """A timezone-aware UTC datetime from a datetime, a date (midnight) or an ISO string."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, dt.datetime):
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        # a plain datetime even from a subclass (Airflow passes pendulum DateTimes, whose
        # arithmetic with a stdlib tzinfo yields naive values)
        return dt.datetime(value.year, value.month, value.day, value.hour, value.minute, value.second,
                           value.microsecond, tzinfo=UTC)
    return dt.datetime(value.year, value.month, value.day, tzinfo=UTC)


@dataclass(frozen=True, order=True)
class Interval:
    start: dt.datetime
    end: dt.datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", to_utc(self.start))
        object.__setattr__(self, "end", to_utc(self.end))
        if self.end <= self.start:
            raise ValueError(f"interval end {self.end:%Y-%m-%d %H:%M} must be after start {self.start:%Y-%m-%d %H:%M}")

    @classmethod
    def for_dates(cls, first: dt.date, last: dt.date) -> Interval:
        """The interval covering whole days first..last (inclusive)."""
        return cls(to_utc(first), to_utc(last + dt.timedelta(days=1)))

    @property
    def key(self) -> str:
        return f"{self.start:%Y%m%dT%H%M%SZ}_{self.end:%Y%m%dT%H%M%SZ}"

    @classmethod
    def from_key(cls, key: str) -> Interval:
        a, b = key.split("_")
        fmt = "%Y%m%dT%H%M%SZ"
        return cls(dt.datetime.strptime(a, fmt).replace(tzinfo=UTC), dt.datetime.strptime(b, fmt).replace(tzinfo=UTC))

    def days(self) -> list[dt.date]:
        d, out = self.start.date(), []
        while to_utc(d) < self.end:
            out.append(d)
            d += dt.timedelta(days=1)
        return out

    def widen(self, before: dt.timedelta) -> Interval:
        return Interval(self.start - before, self.end)

    def __str__(self) -> str:
        return f"[{self.start:%Y-%m-%d %H:%M}, {self.end:%Y-%m-%d %H:%M}) UTC"
