"""Per-source extraction state (watermarks), kept beside the landing zone as JSON.

Extract tasks run in parallel and never touch the warehouse, so state lives in files written
atomically: ``<data>/state/<source>.json`` = ``{object: {"last_extracted_end": ISO}}``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class StateStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, source: str) -> Path:
        return self.root / f"{source}.json"

    def get(self, source: str) -> dict[str, Any]:
        path = self._path(source)
        return json.loads(path.read_text()) if path.exists() else {}

    def update(self, source: str, obj: str, **values: Any) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        state = self.get(source)
        state.setdefault(obj, {}).update(values)
        tmp = self._path(source).with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        os.replace(tmp, self._path(source))
