"""HTTP behaviour shared by connectors: a bounded request rate and retry timing."""

from __future__ import annotations

import random
import threading
import time
from email.utils import parsedate_to_datetime


class RateLimiter:
    """Token bucket: at most ``rate`` requests per second on average, bursts of ``burst``."""

    def __init__(self, rate: float, burst: int = 5) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = float(max(1, burst))
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Block until a request may go; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return waited
                need = (1 - self.tokens) / self.rate
            time.sleep(need)
            waited += need


def backoff_delay(attempt: int, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter for retry ``attempt`` (1-based)."""
    r = rng or random
    return r.uniform(0, min(cap, base * (2 ** (attempt - 1))))


def retry_after_seconds(value: str | None, cap: float = 120.0) -> float | None:
    """Parse a Retry-After header (seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return min(cap, max(0.0, float(value)))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
        return min(cap, max(0.0, when.timestamp() - time.time()))
    except (TypeError, ValueError):
        return None
