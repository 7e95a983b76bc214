"""The landing zone: immutable files per source, object and interval, with a manifest.

Layout: ``<landing>/<source>/<object>/<interval key>/{part-00000.ndjson.gz, manifest.json}``.
Records are landed exactly as the API returned them (NDJSON, gzipped) so a rejected row can
always be shown raw. Re-landing an interval replaces its directory atomically: readers see the
old batch or the new one, never a mix.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ingestion.interval import Interval

MANIFEST = "manifest.json"
PART = "part-00000.ndjson.gz"


@dataclass
class Manifest:
    source: str
    object: str
    interval_key: str
    batch_id: str
    record_count: int
    extracted_at: str
    files: list[dict[str, Any]] = field(default_factory=list)
    extract_window: dict[str, str] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def interval(self) -> Interval:
        return Interval.from_key(self.interval_key)


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


class LandingZone:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def batch_dir(self, source: str, obj: str, interval: Interval) -> Path:
        return self.root / source / obj / interval.key

    def write_batch(
        self,
        source: str,
        obj: str,
        interval: Interval,
        records: Iterable[dict[str, Any]],
        extract_window: Interval | None = None,
        stats: dict[str, Any] | None = None,
    ) -> Manifest:
        final = self.batch_dir(source, obj, interval)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{interval.key}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            count = 0
            sha = hashlib.sha256()
            with gzip.open(tmp / PART, "wt", encoding="utf-8", compresslevel=5) as fh:
                for rec in records:
                    line = json.dumps(rec, default=_json_default, separators=(",", ":"), ensure_ascii=False)
                    fh.write(line + "\n")
                    sha.update(line.encode())
                    count += 1
            manifest = Manifest(
                source=source,
                object=obj,
                interval_key=interval.key,
                batch_id=f"{source}-{obj}-{interval.key}-{uuid.uuid4().hex[:8]}",
                record_count=count,
                extracted_at=dt.datetime.now(dt.timezone.utc).isoformat(),
                files=[{"name": PART, "rows": count, "sha256": sha.hexdigest()}],
                extract_window={"start": (extract_window or interval).start.isoformat(),
                                "end": (extract_window or interval).end.isoformat()},
                stats=stats or {},
            )
            (tmp / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2))
            self._swap(tmp, final)
            return manifest
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def write_batch_ndjson(
        self,
        source: str,
        obj: str,
        interval: Interval,
        blocks: Iterable[tuple[bytes, bytes | None]],
        extract_window: Interval | None = None,
        stats: dict[str, Any] | None = None,
    ) -> Manifest:
        """:meth:`write_batch` for records that already are NDJSON text: ``blocks`` yields
        ``(text, gzip_member)`` pairs, ``text`` being whole lines (each ending in a newline, none
        blank, valid UTF-8). ``gzip_member`` (the same text, gzip-compressed, e.g. the source's
        own file) is copied as is; without it the text is compressed here. Same file, count and
        checksum as :meth:`write_batch` would give for those lines."""
        import zlib

        final = self.batch_dir(source, obj, interval)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{interval.key}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            count = 0
            sha = hashlib.sha256()
            with open(tmp / PART, "wb") as fh:
                for text, member in blocks:
                    if not text:
                        continue
                    count += text.count(b"\n")
                    sha.update(text.replace(b"\n", b""))
                    if member is None:
                        comp = zlib.compressobj(5, zlib.DEFLATED, 31)  # gzip wrapper
                        member = comp.compress(text) + comp.flush()
                    fh.write(member)
                if not count:  # an empty batch is still a valid (empty) gzip file
                    fh.write(gzip.compress(b""))
            manifest = Manifest(
                source=source,
                object=obj,
                interval_key=interval.key,
                batch_id=f"{source}-{obj}-{interval.key}-{uuid.uuid4().hex[:8]}",
                record_count=count,
                extracted_at=dt.datetime.now(dt.timezone.utc).isoformat(),
                files=[{"name": PART, "rows": count, "sha256": sha.hexdigest()}],
                extract_window={"start": (extract_window or interval).start.isoformat(),
                                "end": (extract_window or interval).end.isoformat()},
                stats=stats or {},
            )
            (tmp / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2))
            self._swap(tmp, final)
            return manifest
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @staticmethod
    def _swap(tmp: Path, final: Path) -> None:
        """Replace ``final`` with ``tmp``: rename is atomic on one file system."""
        if final.exists():
            trash = final.parent / f".trash-{final.name}-{uuid.uuid4().hex[:8]}"
            os.rename(final, trash)
            os.rename(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, final)

    def read_manifest(self, source: str, obj: str, interval: Interval) -> Manifest | None:
        path = self.batch_dir(source, obj, interval) / MANIFEST
        if not path.exists():
            return None
        return Manifest(**json.loads(path.read_text()))

    def iter_records(self, source: str, obj: str, interval: Interval) -> Iterator[dict[str, Any] | str]:
        """The landed records; a line that is not valid JSON is yielded as the raw string."""
        path = self.batch_dir(source, obj, interval) / PART
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                line = line.rstrip("\n")
                if not line:
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    yield line

    def read_lines(self, source: str, obj: str, interval: Interval) -> list[bytes]:
        """The landed lines (bytes, without newline, blank lines skipped), read in one go."""
        return [ln for ln in self.read_data(source, obj, interval).split(b"\n") if ln]

    def read_data(self, source: str, obj: str, interval: Interval) -> bytes:
        """The landed file's text (NDJSON bytes, decompressed)."""
        path = self.batch_dir(source, obj, interval) / PART
        return gzip.decompress(path.read_bytes())

    def write_sidecar(self, source: str, obj: str, interval: Interval, name: str, payload: dict[str, Any]) -> Path:
        path = self.batch_dir(source, obj, interval) / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2, default=_json_default))
        os.replace(tmp, path)
        return path

    def read_sidecar(self, source: str, obj: str, interval: Interval, name: str) -> dict[str, Any] | None:
        path = self.batch_dir(source, obj, interval) / name
        return json.loads(path.read_text()) if path.exists() else None

    def batches(self, source: str, obj: str) -> list[Interval]:
        base = self.root / source / obj
        if not base.exists():
            return []
        return sorted(Interval.from_key(p.name) for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
