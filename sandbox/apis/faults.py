"""Deterministic fault injection for the mock APIs.

``FaultConfig`` holds rates (probabilities per request or per record). Whether request number
``n`` of an endpoint gets a fault is decided by a generator seeded with ``(seed, endpoint, n)``,
never by wall-clock randomness, so the same seed and the same request sequence give the same
faults. Faults only change responses, never the world: retrying a page after a 429/5xx returns
the correct page (with its own, fresh draw of record faults).

Request faults: ``429`` (each API's own rate-limit shape), ``5xx``, ``slow`` (a bounded sleep
before answering). Record faults (per record in a page): ``malformed`` (a broken value or a
missing id), ``duplicate`` (the record repeated), ``drift`` (an unknown extra field, a missing
optional field or a retyped field).
"""

from __future__ import annotations

import copy
import threading
import zlib
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import numpy as np

KINDS = ("429", "5xx", "slow", "malformed", "duplicate", "drift")
_ALIASES = {"429": "429", "rate_limit": "429", "ratelimit": "429", "5xx": "5xx", "500": "5xx",
            "slow": "slow", "timeout": "slow", "malformed": "malformed", "duplicate": "duplicate",
            "duplicates": "duplicate", "drift": "drift", "schema_drift": "drift"}
_FIELD = {"429": "rate_429", "5xx": "rate_5xx", "slow": "rate_slow", "malformed": "rate_malformed",
          "duplicate": "rate_duplicate", "drift": "rate_drift"}


@dataclass(frozen=True)
class FaultConfig:
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    rate_slow: float = 0.0
    rate_malformed: float = 0.0
    rate_duplicate: float = 0.0
    rate_drift: float = 0.0
    seed: int = 0
    slow_seconds: float = 2.0
    # restrict faults to some APIs ("stripe", "salesforce", "google_ads", "meta", "ga4"); None = all
    apis: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in _FIELD.values():
            v = getattr(self, name)
            if not (0.0 <= float(v) <= 1.0):
                raise ValueError(f"fault rate {name}={v} must be between 0 and 1")
        if not (0.0 <= self.slow_seconds <= 30.0):
            raise ValueError("slow_seconds must be between 0 and 30")

    @classmethod
    def parse(cls, text: str | None, seed: int = 0) -> "FaultConfig":
        """``"429=0.05,5xx=0.02,slow=0.01,malformed=0.01,duplicate=0.01,drift=0.01"``.

        Extra keys: ``seed=N``, ``slow_seconds=S``, ``apis=stripe+meta``.
        """
        kw: dict[str, Any] = {"seed": seed}
        for part in (text or "").replace(";", ",").split(","):
            part = part.strip()
            if not part:
                continue
            if "=" not in part:
                raise ValueError(f"bad fault spec {part!r}: expected name=rate")
            k, v = (x.strip() for x in part.split("=", 1))
            k = k.lower()
            if k == "seed":
                kw["seed"] = int(v)
            elif k in ("slow_seconds", "slow_s"):
                kw["slow_seconds"] = float(v)
            elif k == "apis":
                kw["apis"] = tuple(a.strip() for a in v.replace("|", "+").split("+") if a.strip())
            elif k in _ALIASES:
                try:
                    kw[_FIELD[_ALIASES[k]]] = float(v)
                except ValueError:
                    raise ValueError(f"bad fault rate {part!r}: not a number") from None
            else:
                raise ValueError(f"unknown fault {k!r}; known: {', '.join(KINDS)}, seed, slow_seconds, apis")
        return cls(**kw)

    @property
    def enabled(self) -> bool:
        return any(getattr(self, f) > 0 for f in _FIELD.values())

    def rate(self, kind: str) -> float:
        return float(getattr(self, _FIELD[kind]))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["apis"] = list(self.apis) if self.apis else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FaultConfig":
        d = dict(d)
        if d.get("apis") is not None:
            d["apis"] = tuple(d["apis"])
        known = {f for f in cls.__dataclass_fields__}
        # accept the short names too ("429": 0.1)
        for k in list(d):
            if k in _ALIASES:
                d[_FIELD[_ALIASES[k]]] = d.pop(k)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        return cls(**d)

    def __str__(self) -> str:
        parts = [f"{k}={self.rate(k):g}" for k in KINDS if self.rate(k) > 0]
        return ",".join(parts) or "off"


@dataclass
class FaultDraw:
    """The fault decision for one request of one endpoint."""

    endpoint: str
    n: int
    config: FaultConfig
    request_fault: str | None = None  # "429" | "5xx" | None
    slow: bool = False
    rng: np.random.Generator | None = None
    applied: list[tuple[str, int]] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.rng is not None

    def variant(self, k: int) -> int:
        """A deterministic choice among ``k`` variants (e.g. which rate-limit error code)."""
        return int(self.rng.integers(0, k)) if self.rng is not None and k > 1 else 0

    def records(
        self,
        records: list[Any],
        malform: Callable[[Any, int, bool], Any] | None,
        drift: Callable[[Any, int], Any] | None,
    ) -> list[Any]:
        """Apply record faults to a page.

        ``malform(record_copy, variant, is_last)`` and ``drift(record_copy, variant)`` return the
        broken record; ``is_last`` lets an API keep the id a client pages with.
        """
        cfg = self.config
        if self.rng is None or not records or not (cfg.rate_malformed or cfg.rate_duplicate or cfg.rate_drift):
            return records
        u = self.rng.random((len(records), 4))
        out: list[Any] = []
        last = len(records) - 1
        for i, rec in enumerate(records):
            r = rec
            if malform is not None and u[i, 0] < cfg.rate_malformed:
                r = malform(copy.deepcopy(rec), int(u[i, 3] * 1_000_000), i == last)
                self.applied.append(("malformed", i))
            elif drift is not None and u[i, 1] < cfg.rate_drift:
                r = drift(copy.deepcopy(rec), int(u[i, 3] * 1_000_000))
                self.applied.append(("drift", i))
            out.append(r)
            if u[i, 2] < cfg.rate_duplicate:
                out.append(copy.deepcopy(r))
                self.applied.append(("duplicate", i))
        return out


class FaultInjector:
    """Counts requests per endpoint and draws faults deterministically from (seed, endpoint, n)."""

    def __init__(self, config: FaultConfig | None = None):
        self._lock = threading.Lock()
        self.config = config or FaultConfig()
        self._counters: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self.log: deque[tuple[str, int, str]] = deque(maxlen=10_000)

    def configure(self, config: FaultConfig) -> None:
        """Replace the configuration and restart every endpoint's request counter."""
        with self._lock:
            self.config = config
            self._counters.clear()
            self.stats.clear()
            self.log.clear()

    def draw(self, api: str, endpoint: str) -> FaultDraw:
        cfg = self.config
        if not cfg.enabled or (cfg.apis is not None and api not in cfg.apis):
            return FaultDraw(endpoint, -1, cfg)
        key = f"{api}:{endpoint}"
        with self._lock:
            n = self._counters[key]
            self._counters[key] = n + 1
        rng = np.random.default_rng([cfg.seed & 0xFFFFFFFF, zlib.crc32(key.encode()), n])
        u = rng.random(3)
        d = FaultDraw(key, n, cfg, rng=rng)
        if u[0] < cfg.rate_429:
            d.request_fault = "429"
        elif u[1] < cfg.rate_5xx:
            d.request_fault = "5xx"
        d.slow = bool(u[2] < cfg.rate_slow)
        with self._lock:
            if d.request_fault:
                self.stats[d.request_fault] += 1
                self.log.append((key, n, d.request_fault))
            if d.slow:
                self.stats["slow"] += 1
                self.log.append((key, n, "slow"))
        return d

    def record_applied(self, d: FaultDraw) -> None:
        if not d.applied:
            return
        with self._lock:
            for kind, i in d.applied:
                self.stats[kind] += 1
                self.log.append((d.endpoint, d.n, f"{kind}@{i}"))

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"config": self.config.to_dict(), "spec": str(self.config), "stats": dict(self.stats),
                    "requests": dict(self._counters), "log": [list(x) for x in list(self.log)[-200:]]}


def with_config(config: FaultConfig, **changes: Any) -> FaultConfig:
    return replace(config, **changes)
