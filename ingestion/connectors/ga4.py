"""GA4 through its BigQuery export files, read with fsspec (a local path or an object-store URL).

``RETAILPULSE_GA4_EXPORT_URL`` points at a folder of daily export files ``events_YYYYMMDD``
as newline-delimited JSON (``.json``, ``.ndjson``, ``.jsonl``, optionally gzipped — detected by
content, not by name) or Parquet, possibly split in shards (``events_YYYYMMDD_000000000000.json.gz``,
``events_YYYYMMDD-*.parquet``). Intraday tables (``events_intraday_*``) are not read.

A daily table keeps receiving late events for up to three days, so a run over an interval lands
one batch per export day covering the interval plus the ``RETAILPULSE_GA4_REREAD_DAYS`` days
before it; the batch interval is that day, so the batch of a day replaces the day's rows. A day
without a file is an empty batch (the export may not have run yet); for a day older than the
re-read horizon that is suspicious and logged as a warning.

Bronze shape (``prepare``): ``event_params`` are unnested into ``param__<key>`` columns holding
the one typed value that is set (string, int, float or double); ``event_timestamp`` (µs) becomes
a timestamp; ``event_key`` identifies the event: a hash of user_pseudo_id, event_timestamp,
event_name, ga_session_id and the event's position — the export's ``batch_event_index`` when
present, else a digest of the whole event, so identical duplicate lines share a key (and are
dropped as duplicates) while distinct events at the same microsecond do not.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

from ingestion.connectors.base import Connector, ConnectorError
from ingestion.interval import Interval
from ingestion.spec import CURRENCY_RE, FieldSpec as F, ObjectSpec
from retailpulse.settings import Settings

log = logging.getLogger(__name__)

LATE_DAYS = 3
_SHARD = re.compile(r"^events_(\d{8})(?:[_-][0-9A-Za-z-]+)?\.(json|ndjson|jsonl|parquet)(\.gz)?$")

# event_params unnested into these typed columns; other keys land as text columns (drift)
PARAMS: tuple[F, ...] = (
    F("param__ga_session_id", "int"),
    F("param__ga_session_number", "int", min_value=1),
    F("param__page_location"),
    F("param__page_title"),
    F("param__page_referrer"),
    F("param__engagement_time_msec", "int", min_value=0),
    F("param__source"),
    F("param__medium"),
    F("param__campaign"),
    F("param__gclid"),
    F("param__transaction_id"),
    F("param__value", "float"),
    F("param__currency", pattern=CURRENCY_RE),
)

FIELDS: tuple[F, ...] = (
    F("event_key", required=True),
    F("event_date", required=True, pattern=r"^\d{8}$"),
    F("event_timestamp", "epoch_us", required=True),
    F("event_name", required=True),
    F("user_pseudo_id"),            # null for cookieless (consent-mode) pings: not required
    F("user_id"),
    F("user_first_touch_timestamp", "epoch_us"),
    F("platform", accepted=("WEB", "IOS", "ANDROID")),
    F("stream_id"),
    *PARAMS,
    F("device__category"),
    F("device__operating_system"),
    F("device__operating_system_version"),
    F("device__mobile_brand_name"),
    F("device__mobile_model_name"),
    F("device__language"),
    F("device__is_limited_ad_tracking"),
    F("device__web_info__browser"),
    F("device__web_info__browser_version"),
    F("device__web_info__hostname"),
    F("geo__country"),
    F("geo__region"),
    F("geo__city"),
    F("geo__continent"),
    F("app_info__id"),
    F("app_info__version"),
    F("app_info__install_source"),
    F("traffic_source__name"),
    F("traffic_source__medium"),
    F("traffic_source__source"),
    F("collected_traffic_source__manual_campaign_id"),
    F("collected_traffic_source__manual_campaign_name"),
    F("collected_traffic_source__manual_source"),
    F("collected_traffic_source__manual_medium"),
    F("collected_traffic_source__manual_term"),
    F("collected_traffic_source__manual_content"),
    F("collected_traffic_source__gclid"),
    F("collected_traffic_source__dclid"),
    F("collected_traffic_source__srsltid"),
    F("ecommerce__transaction_id"),
    F("ecommerce__purchase_revenue", "float", min_value=0),
    F("ecommerce__purchase_revenue_in_usd", "float", min_value=0),
    F("ecommerce__total_item_quantity", "int", min_value=0),
    F("ecommerce__unique_items", "int", min_value=0),
    F("ecommerce__refund_value", "float"),
    F("ecommerce__refund_value_in_usd", "float"),
    F("ecommerce__shipping_value", "float"),
    F("ecommerce__shipping_value_in_usd", "float"),
    F("ecommerce__tax_value", "float"),
    F("ecommerce__tax_value_in_usd", "float"),
    F("items", "json"),
    F("user_properties", "json"),
)
_DECLARED = {f.name for f in FIELDS}
# nested structs whose children are declared: a null struct is "no values", not a new column
_STRUCTS = {parts for f in FIELDS for parts in ("__".join(f.name.split("__")[:i]) for i in range(1, f.name.count("__") + 1))}


def _param_value(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    for k in ("string_value", "int_value", "float_value", "double_value"):
        v = value.get(k)
        if v is not None:
            return v
    return None


def _drop_null_structs(rec: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in rec.items():
        name = f"{prefix}{k.lower()}"
        if v is None and name in _STRUCTS and name not in _DECLARED:
            continue
        out[k] = _drop_null_structs(v, name + "__") if isinstance(v, dict) else v
    return out


def event_key(rec: dict[str, Any], session_id: Any) -> str:
    position = rec.get("batch_event_index")
    if position is None:
        position = hashlib.sha256(json.dumps(rec, sort_keys=True, separators=(",", ":"), default=str)
                                  .encode()).hexdigest()
    parts = (rec.get("user_pseudo_id"), rec.get("event_timestamp"), rec.get("event_name"), session_id, position)
    return hashlib.sha256("|".join("" if p is None else str(p) for p in parts).encode()).hexdigest()[:32]


def prepare_event(rec: dict[str, Any]) -> dict[str, Any]:
    """Export event -> bronze shape (pure: the landed record is not modified)."""
    out = _drop_null_structs(rec)
    params = out.get("event_params")
    session_id = None
    if isinstance(params, list):
        out.pop("event_params")
        for p in params:
            if not isinstance(p, dict) or not isinstance(p.get("key"), str):
                continue
            value = _param_value(p.get("value"))
            name = "param__" + p["key"]
            if name not in out or out[name] is None:
                out[name] = value
        session_id = out.get("param__ga_session_id")
    # a malformed event_params (not a list) stays as a column of its own: nothing is hidden
    out["event_key"] = event_key(rec, session_id)
    return out


SPECS: dict[str, ObjectSpec] = {
    "events": ObjectSpec(
        "ga4", "events", key="event_key",
        critical_columns=("event_date", "event_timestamp", "event_name"),
        fields=FIELDS,
        # a day with under a tenth of the recent daily volume is a broken export, unless it is
        # empty: a day without a file is a legitimate empty batch
        min_volume_ratio=0.1,
        extra={"volume_check": "non_empty"},
        prepare=prepare_event,
        description="GA4 BigQuery-export events, one row per event, event_params unnested",
    ),
}


class GA4Connector(Connector):
    source = "ga4"
    specs = SPECS

    @classmethod
    def is_configured(cls, settings: Settings) -> bool:
        return bool(settings.ga4_export_url)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if not settings.ga4_export_url:
            raise ConnectorError("no GA4 export location: set RETAILPULSE_GA4_EXPORT_URL (a folder or fsspec URL)")
        import fsspec

        try:
            self.fs, self.root = fsspec.core.url_to_fs(settings.ga4_export_url)
        except (ImportError, ValueError) as exc:
            raise ConnectorError(f"cannot open the GA4 export location {_safe_url(settings.ga4_export_url)}: "
                                 f"{exc}") from None
        self.root = self.root.rstrip("/")

    # --- planning ---------------------------------------------------------------------------
    def batches(self, obj: str, interval: Interval) -> list[Interval]:
        days = interval.days()
        reread = max(0, int(getattr(self.settings, "ga4_reread_days", LATE_DAYS)))
        first = days[0] - dt.timedelta(days=reread)
        out = []
        d = first
        while d <= days[-1]:
            out.append(Interval.for_dates(d, d))
            d += dt.timedelta(days=1)
        return out

    def window(self, obj: str, interval: Interval, state: dict[str, Any]) -> Interval:
        return interval

    # --- reading ----------------------------------------------------------------------------
    def day_files(self, day: dt.date) -> list[str]:
        stamp = day.strftime("%Y%m%d")
        try:
            names = self.fs.glob(f"{self.root}/events_{stamp}*")
        except (OSError, ValueError) as exc:
            raise ConnectorError(f"cannot list GA4 export files in {_safe_url(self.settings.ga4_export_url)}: "
                                 f"{type(exc).__name__}") from None
        picked = []
        for name in sorted(names):
            base = name.rsplit("/", 1)[-1]
            m = _SHARD.match(base)
            if m and m.group(1) == stamp:
                picked.append(name)
        return picked

    def extract(self, obj: str, window: Interval) -> Iterator[dict[str, Any] | str]:
        for day in window.days():
            files = self.day_files(day)
            if not files:
                horizon = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=LATE_DAYS)
                if day < horizon:
                    log.warning("ga4: no export file events_%s in %s (day is past the %d-day late-data horizon)",
                                day.strftime("%Y%m%d"), _safe_url(self.settings.ga4_export_url), LATE_DAYS)
                else:
                    log.info("ga4: no export file for %s yet", day)
                continue
            for path in files:
                yield from self._read(path)

    def _read(self, path: str) -> Iterator[dict[str, Any] | str]:
        """Stream one export file: NDJSON (gzip detected by its magic bytes) or Parquet."""
        name = path.rsplit("/", 1)[-1]
        try:
            with self.fs.open(path, "rb") as fh:
                head = fh.read(4)
                fh.seek(0)
                if head[:4] == b"PAR1":
                    yield from self._read_parquet(name, fh)
                    return
                stream: Any = gzip.GzipFile(fileobj=fh, mode="rb") if head[:2] == b"\x1f\x8b" else fh
                text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="")
                for line in text:
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        yield line  # landed as is; the loader rejects it as malformed_json
                        continue
                    yield rec if isinstance(rec, dict) else line
        except (OSError, EOFError) as exc:
            raise ConnectorError(f"cannot read GA4 export file {name}: {type(exc).__name__}: {exc} "
                                 "(a truncated or still-uploading file?)") from None

    @staticmethod
    def _read_parquet(name: str, fh: Any) -> Iterator[dict[str, Any]]:
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(fh)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types
            raise ConnectorError(f"GA4 export file {name} is not readable Parquet: {exc}") from None
        for batch in pf.iter_batches(batch_size=50_000):
            yield from batch.to_pylist()


def _safe_url(url: str | None) -> str:
    """The export location without credentials or query string (signed URLs carry tokens)."""
    if not url:
        return ""
    return re.sub(r"//[^/@]*@", "//", url.split("?", 1)[0])
