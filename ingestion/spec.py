"""Declared shape of every source object: its bronze table, key, typed fields and rules.

The spec drives flattening (landing record -> bronze row), type casting and the Great
Expectations suite of the object, so a new object is one declaration, not new code paths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

FieldType = Literal["string", "int", "float", "bool", "timestamp", "epoch_s", "epoch_us", "date", "json"]

EMAIL_RE = r"^\s*[^@\s]+@[^@\s]+\.[^@\s]+\s*$"
CURRENCY_RE = r"^[A-Za-z]{3}$"


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: FieldType = "string"
    required: bool = False          # null -> row rejected
    pattern: str | None = None      # regex the (string) value must match when present
    accepted: tuple[str, ...] | None = None
    min_value: float | None = None
    max_value: float | None = None


@dataclass(frozen=True)
class ObjectSpec:
    source: str
    name: str
    key: str
    fields: tuple[FieldSpec, ...]
    # columns that must exist in a batch for it to load at all (critical expectations)
    critical_columns: tuple[str, ...] = ()
    # fraction of rows that may be rejected before the batch is refused (critical)
    max_reject_fraction: float = 0.2
    # a batch smaller than this fraction of the recent median is refused (volume check)
    min_volume_ratio: float = 0.0
    description: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    # optional per-record reshaping before flattening (e.g. GA4 event_params -> param__<key>);
    # must be pure: the landed record stays untouched
    prepare: Callable[..., dict[str, Any]] | None = None
    # optional vectorised path (ingestion.flatten.lines_to_frame): the explicit pyarrow JSON
    # schema of the declared fields, the table-level ``prepare`` (None: use the record path) and
    # nested objects whose null value is "no values" rather than a column of its own
    arrow_schema: Callable[[], Any] | None = None
    prepare_table: Callable[[Any, list[bytes]], Any] | None = None
    null_structs: frozenset[str] = frozenset()

    @property
    def bronze_table(self) -> str:
        return f"{self.source}__{self.name}"

    @property
    def suite_name(self) -> str:
        return f"{self.source}.{self.name}"

    def field(self, name: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.name == name), None)
