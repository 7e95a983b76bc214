"""``retailpulse import-transactions``: a transaction log (CSV or Parquet) into bronze.

For businesses without the source APIs, and for public data sets such as the UCI Online Retail
log (InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID, Country).
The file goes through the same path as every source: normalised records are landed as one
batch, validated by Great Expectations and loaded into ``bronze.transactions__imported``
(one row per transaction; see docs/bronze_contract.md) with ``bronze.rejected_records`` and
``ops.load_audit`` beside it.

Columns are mapped by name (``ColumnMapping``) or guessed from common names. Every input line
is classified exactly once, in this order, and the report counts each category:

* ``duplicates``          exact repeats of an earlier line (export artefacts) — rejected;
* ``unparseable_dates``   no date could be read (or before 1900) — rejected;
* ``missing_customer``    no customer id (CLV needs one; 25% of the UCI log) — rejected;
* ``unparseable_amounts`` amount / price / quantity is not a number — rejected;
* ``out_of_range``        an amount or quantity beyond ``max_abs_amount`` (typos, overflow) — rejected;
* ``future_dates``        later than now + 1 day — rejected;
* ``invalid_currency``    not a 3-letter code — rejected;
* ``zero_value``          amount 0 (free items, adjustments) — not revenue, rejected;
* ``conflicting_orders``  one order id used by several customers or currencies — rejected;
* ``returns``             negative amount / quantity or a ``C``-prefixed invoice — kept, as
  transactions with a negative amount and ``is_return`` = true;
* ``kept``                everything else.

Lines of one order id become one transaction (amount and quantity summed, earliest time);
without an order id every line is a transaction with a content-derived id. Rejected lines are
landed too, grouped per order and reason, with their original values, so each one ends in
``bronze.rejected_records`` (rule ``expect_column_values_to_be_in_set(import_status)``, the
reason in the record's ``import_status``): nothing is dropped silently.

Dates: ISO 8601, day-first or month-first ``D/M/Y`` (decided from the values: a first part over
12 means day-first, a second part over 12 month-first; ambiguous columns are read day-first with
a warning unless told), Excel serial days, Unix seconds or milliseconds, and anything pandas
can read; naive times are in ``timezone`` (default UTC). Encodings: UTF-8 (with or without BOM),
then Windows-1252, then Latin-1 — the report says which was used.

The import batch's interval is the exact time span of its transactions
``[first, last + 1s)``: re-importing a file replaces its earlier import.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ingestion.interval import Interval
from ingestion.spec import CURRENCY_RE, FieldSpec as F, ObjectSpec

log = logging.getLogger(__name__)

SOURCE, OBJECT = "transactions", "imported"
MAX_ABS_AMOUNT = 1e9
CATEGORIES = ("kept", "returns", "duplicates", "unparseable_dates", "missing_customer", "unparseable_amounts",
              "out_of_range", "future_dates", "invalid_currency", "zero_value", "conflicting_orders")
REJECT_CATEGORIES = CATEGORIES[2:]
# category -> import_status of its landed records
STATUS = {"duplicates": "duplicate_line", "unparseable_dates": "unparseable_date",
          "missing_customer": "missing_customer", "unparseable_amounts": "unparseable_amount",
          "out_of_range": "amount_out_of_range", "future_dates": "future_date",
          "invalid_currency": "invalid_currency", "zero_value": "zero_value",
          "conflicting_orders": "conflicting_order_id", "malformed_lines": "malformed_line"}

SPECS: dict[str, ObjectSpec] = {
    OBJECT: ObjectSpec(
        SOURCE, OBJECT, key="transaction_id",
        critical_columns=("transaction_id", "customer_ref", "ordered_at", "amount"),
        fields=(
            F("transaction_id", required=True),
            F("customer_ref", required=True),
            F("ordered_at", "timestamp", required=True),
            F("amount", "float", required=True, min_value=-MAX_ABS_AMOUNT, max_value=MAX_ABS_AMOUNT),
            F("currency", required=True, pattern=CURRENCY_RE),
            F("quantity", "float"),
            F("source_file", required=True),
            F("is_return", "bool"),
            F("line_count", "int", min_value=1),
            F("country"),
            F("source_lines", "json"),
            F("import_status", required=True, accepted=("ok",)),
        ),
        # public logs are dirty (a quarter of UCI lines have no customer): the report shows why
        max_reject_fraction=0.5,
        description="Imported transaction log: one row per transaction (order), returns negative",
    ),
}


class TransactionImportError(ValueError):
    """The file cannot be imported; the message says why and what to pass instead."""


@dataclass
class ColumnMapping:
    """Column names in the file for each role (None = guess from common names)."""

    customer: str | None = None
    timestamp: str | None = None
    amount: str | None = None
    unit_price: str | None = None
    quantity: str | None = None
    order_id: str | None = None
    currency: str | None = None
    country: str | None = None


GUESSES: dict[str, tuple[str, ...]] = {
    "customer": ("customerid", "customer_id", "customer", "customerref", "customer_ref", "customerno",
                 "customernumber", "clientid", "client_id", "client", "userid", "user_id", "buyerid", "memberid",
                 "accountid", "customeremail", "email"),
    "timestamp": ("invoicedate", "orderedat", "ordered_at", "orderdate", "order_date", "transactiondate",
                  "transaction_date", "purchasedate", "purchase_date", "invoicedatetime", "datetime", "timestamp",
                  "createdat", "created_at", "created", "date", "time", "saledate"),
    "amount": ("amount", "total", "totalamount", "total_amount", "ordertotal", "order_total", "linetotal",
               "line_total", "revenue", "sales", "value", "grandtotal", "grosssales", "netsales", "price_total",
               "totalprice"),
    "unit_price": ("unitprice", "unit_price", "price", "priceeach", "itemprice", "unitcost"),
    "quantity": ("quantity", "qty", "units", "count", "quantityordered"),
    "order_id": ("invoiceno", "invoice_no", "invoice", "invoiceid", "invoicenumber", "orderid", "order_id",
                 "ordernumber", "order_number", "orderno", "transactionid", "transaction_id", "receiptid"),
    "currency": ("currency", "currencycode", "currency_code", "curr"),
    "country": ("country", "countrycode", "country_code", "billingcountry"),
}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


@dataclass
class ImportReport:
    source_file: str
    file_format: str
    encoding: str | None
    delimiter: str | None
    rows: int
    columns: dict[str, str]
    date_format: str
    currency: str
    counts: dict[str, int]
    transactions: int = 0
    rejected_records: int = 0
    interval_key: str | None = None
    loaded: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        c = self.counts
        out = [
            f"imported {self.source_file} ({self.file_format}"
            + (f", encoding {self.encoding}" if self.encoding else "")
            + (f", delimiter {self.delimiter!r}" if self.delimiter else "") + ")",
            f"  columns: " + ", ".join(f"{k}={v}" for k, v in self.columns.items()),
            f"  dates read as {self.date_format}; currency {self.currency}",
            f"  {self.rows:,} lines: kept {c['kept']:,} (returns {c['returns']:,}), duplicates {c['duplicates']:,}, "
            f"zero-value {c['zero_value']:,}, unparseable dates {c['unparseable_dates']:,}, "
            f"missing customer {c['missing_customer']:,}",
        ]
        other = {k: v for k, v in c.items() if k in ("unparseable_amounts", "out_of_range", "future_dates",
                                                       "invalid_currency", "conflicting_orders", "malformed_lines")
                 and v}
        if other:
            out.append("  also rejected: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in other.items()))
        out.append(f"  loaded {self.loaded:,} transactions into bronze.transactions__imported "
                   f"(batch {self.interval_key}); {self.rejected_records:,} rejected records with reasons in "
                   "bronze.rejected_records")
        out.extend(f"  warning: {w}" for w in self.warnings)
        return out


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")


def _decode(data: bytes, encoding: str | None) -> tuple[str, str]:
    if encoding:
        try:
            return data.decode(encoding), encoding
        except LookupError:
            raise TransactionImportError(f"unknown encoding {encoding!r}") from None
        except UnicodeDecodeError as exc:
            raise TransactionImportError(
                f"the file is not valid {encoding} (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                "try --encoding cp1252 or latin-1") from None
    for enc in ENCODINGS:
        try:
            text = data.decode(enc)
        except UnicodeDecodeError:
            continue
        return text, ("utf-8" if enc == "utf-8-sig" else enc)
    raise AssertionError("latin-1 decodes any byte string")  # pragma: no cover


def _sniff_delimiter(text: str) -> str:
    sample = "\n".join(text[:65536].splitlines()[:50])
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        header = sample.splitlines()[0] if sample else ""
        counts = {d: header.count(d) for d in ",;\t|"}
        best = max(counts, key=counts.get)
        return best if counts[best] else ","


def read_table(path: Path, encoding: str | None = None, delimiter: str | None = None
               ) -> tuple[pd.DataFrame, str, str | None, str | None, list[tuple[int, str]]]:
    """(frame, format, encoding, delimiter, malformed lines) — CSV columns are all strings.

    ``frame.index`` holds each row's line number in the file (the header is line 1) when that
    can be told (no quoted line breaks); Parquet rows are numbered from 2 likewise."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TransactionImportError(f"no such file: {path}") from None
    except OSError as exc:
        raise TransactionImportError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not data.strip():
        raise TransactionImportError(f"{path.name} is empty")
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise TransactionImportError(f"{path.name} is not a valid gzip file: {exc}") from None
    if data[:4] == b"PAR1":
        import pyarrow.parquet as pq

        try:
            frame = pq.read_table(io.BytesIO(data)).to_pandas()
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types
            raise TransactionImportError(f"{path.name} is not readable Parquet: {exc}") from None
        frame.index = pd.RangeIndex(2, len(frame) + 2)
        return frame, "parquet", None, None, []
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") and not encoding:
        encoding = "utf-16"  # a byte-order mark says so
    if data[:4] == b"PK\x03\x04":
        raise TransactionImportError(f"{path.name} looks like an Excel workbook or zip archive: save it as CSV first")
    if b"\x00" in data[:65536] and not (encoding or "").lower().startswith("utf-16"):
        raise TransactionImportError(f"{path.name} is a binary file, not CSV or Parquet (UTF-16 files: re-save as UTF-8)")
    text, used = _decode(data, encoding)
    sep = delimiter or _sniff_delimiter(text)
    kw: dict[str, Any] = dict(sep=sep, dtype=str, keep_default_na=False, skipinitialspace=True)
    malformed: list[tuple[int, str]] = []
    try:
        frame = pd.read_csv(io.StringIO(text), **kw)
    except pd.errors.EmptyDataError:
        raise TransactionImportError(f"{path.name} has no header row") from None
    except pd.errors.ParserError:
        # some lines have more fields than the header: read again, keeping them aside
        try:
            frame = pd.read_csv(io.StringIO(text), engine="python", on_bad_lines=lambda fields: None, **kw)
        except (pd.errors.ParserError, csv.Error) as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TransactionImportError(f"{path.name} is not well-formed CSV ({detail}); check the quoting "
                                         "and --delimiter") from None
        malformed = [(0, "")]  # numbered below
    frame.columns = [str(c).strip() for c in frame.columns]
    good, bad = _row_lines(text, sep, len(frame.columns))
    if malformed:
        malformed = bad or [(0, "(line not identified)")]
    frame.index = pd.Index(good) if len(good) == len(frame) else pd.RangeIndex(2, len(frame) + 2)
    return frame, "csv", used, sep, malformed


def _row_lines(text: str, sep: str, width: int) -> tuple[list[int], list[tuple[int, str]]]:
    """Line numbers of the data rows pandas keeps, and the rows with too many fields."""
    good: list[int] = []
    bad: list[tuple[int, str]] = []
    try:
        reader = csv.reader(io.StringIO(text), delimiter=sep, skipinitialspace=True)
        next(reader, None)
        prev = reader.line_num
        for row in reader:
            start, prev = prev + 1, reader.line_num
            if not row:
                continue
            if len(row) > width:
                bad.append((start, sep.join(row)))
            else:
                good.append(start)
    except csv.Error:
        return [], bad
    return good, bad


def resolve_mapping(columns: list[str], mapping: ColumnMapping) -> dict[str, str]:
    """Role -> actual column name; raises with the columns found when a needed one is missing."""
    by_norm = {_norm(c): c for c in columns}
    out: dict[str, str] = {}
    for role in asdict(mapping):
        wanted = getattr(mapping, role)
        if wanted:
            hit = wanted if wanted in columns else by_norm.get(_norm(wanted))
            if hit is None:
                raise TransactionImportError(
                    f"column {wanted!r} (for {role.replace('_', ' ')}) is not in the file; columns found: "
                    + ", ".join(columns))
            out[role] = hit
            continue
        for guess in GUESSES[role]:
            if guess in by_norm and by_norm[guess] not in out.values():
                out[role] = by_norm[guess]
                break
    missing = [r for r in ("customer", "timestamp") if r not in out]
    if "amount" not in out and "unit_price" not in out:
        missing.append("amount (or unit price)")
    if missing:
        flags = {"customer": "--customer-col", "timestamp": "--timestamp-col",
                 "amount (or unit price)": "--amount-col / --unit-price-col"}
        raise TransactionImportError(
            "cannot find the " + " and ".join(m.replace("_", " ") for m in missing) + " column"
            + ("s" if len(missing) > 1 else "") + "; columns found: " + ", ".join(columns)
            + " (name them with " + ", ".join(flags[m] for m in missing) + ")")
    return out


# --------------------------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------------------------
_NUM_JUNK = re.compile(r"[\s\u00a0'’$€£¥₹]|[A-Za-z]{3}$|^[A-Za-z]{3}")


def parse_numbers(values: pd.Series) -> pd.Series:
    """Numbers written by humans: thousands separators, decimal commas, currency signs, (neg)."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return pd.to_numeric(values, errors="coerce").astype("float64")
    s = values.astype("string").str.strip().fillna("")
    neg = s.str.match(r"^\(.*\)$")
    s = s.str.replace(r"^\((.*)\)$", r"\1", regex=True).str.replace(_NUM_JUNK, "", regex=True)
    present = s != ""
    has_dot, has_comma = s.str.contains(".", regex=False), s.str.contains(",", regex=False)
    # a column whose values look like 12,5 / 1.234,56 and never like 1,234.56 uses decimal commas
    decimal_comma = bool((s[present].str.match(r"^-?\d{1,3}(\.\d{3})*,\d{1,2}$|^-?\d+,\d{1,2}$")).any()) and not bool(
        (s[present].str.match(r"^-?\d{1,3}(,\d{3})+\.\d+$")).any())
    if decimal_comma:
        s = s.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    else:
        both = has_dot & has_comma
        s = s.where(~both, s.str.replace(",", "", regex=False))
        s = s.where(~(has_comma & ~has_dot & s.str.match(r"^-?\d{1,3}(,\d{3})+$")), s.str.replace(",", "", regex=False))
    out = pd.to_numeric(s.where(present, None), errors="coerce").astype("float64")
    return out.where(~neg, -out)


_DMY = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2}|\d{4})"
                  r"(?:[ T,]+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?\s*([AaPp]\.?[Mm]\.?)?)?$")
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?\s*(?:Z|[+-]\d{2}:?\d{2}|UTC)?$")
_YMD_SLASH = re.compile(r"^\d{4}[/.]\d{1,2}[/.]\d{1,2}(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?$")
_SERIAL = re.compile(r"^\d{5}(?:\.\d+)?$")
_EPOCH_S = re.compile(r"^1\d{9}(?:\.\d+)?$")
_EPOCH_MS = re.compile(r"^1\d{12}$")


def _ns(values: pd.Series) -> pd.Series:
    """Parsed timestamps at nanosecond resolution, the unit the parse buffers hold.

    pandas returns a coarser unit for dates outside 1677..2262 (year 0001, 9999-12-31), which
    cannot be stored next to ordinary dates: earlier ones become NaT (rejected as unparseable, like
    every date before 1900), later ones the latest representable moment (rejected as future dates).
    """
    if not pd.api.types.is_datetime64_any_dtype(values):
        values = pd.to_datetime(values, errors="coerce")
    if values.dt.unit == "ns":
        return values
    tz = values.dt.tz
    lo, hi = pd.Timestamp("1677-09-22"), pd.Timestamp("2262-04-11")  # whole days inside the ns range
    if tz is not None:
        lo, hi = lo.tz_localize("UTC"), hi.tz_localize("UTC")
        values = values.dt.tz_convert("UTC")
    values = values.where(values.isna() | (values >= lo)).mask(values > hi, hi)
    return values.astype("datetime64[ns, UTC]" if tz is not None else "datetime64[ns]")


def parse_timestamps(values: pd.Series, day_first: bool | None = None, date_format: str | None = None,
                     timezone: str = "UTC") -> tuple[pd.Series, str, list[str]]:
    """(UTC timestamps with NaT where unreadable, how they were read, warnings)."""
    warnings: list[str] = []
    idx = values.index
    if pd.api.types.is_datetime64_any_dtype(values):
        ts = pd.to_datetime(values, errors="coerce")
        ts = ts.dt.tz_localize(timezone) if ts.dt.tz is None else ts
        return ts.dt.tz_convert("UTC"), "native timestamps", warnings
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        values = values.map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else repr(v)
                            if isinstance(v, float) else str(v))
    s = values.astype("string").str.strip().fillna("")
    out = pd.Series(pd.NaT, index=idx, dtype="datetime64[ns]")
    aware = pd.Series(pd.NaT, index=idx, dtype="datetime64[ns, UTC]")
    used: dict[str, int] = {}
    todo = s != ""
    if date_format:
        got = _ns(pd.to_datetime(s.where(todo, None), format=date_format, errors="coerce"))
        if getattr(got.dt, "tz", None) is not None:
            aware = got.dt.tz_convert("UTC")
        else:
            out = got
        used[f"format {date_format}"] = int(got.notna().sum())
        todo = pd.Series(False, index=idx)
    iso = todo & s.str.match(_ISO)
    if iso.any():
        vals = s[iso].str.replace(r"\s*UTC$", "Z", regex=True)
        has_tz = vals.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", regex=True)
        if has_tz.any():
            aware.loc[has_tz[has_tz].index] = _ns(pd.to_datetime(vals[has_tz], format="ISO8601", utc=True,
                                                                 errors="coerce"))
        if (~has_tz).any():
            out.loc[has_tz[~has_tz].index] = _ns(pd.to_datetime(vals[~has_tz], format="ISO8601", errors="coerce"))
        used["ISO 8601"] = int(iso.sum())
        todo &= ~iso
    ymd = todo & s.str.match(_YMD_SLASH)
    if ymd.any():
        out.loc[ymd] = _ns(pd.to_datetime(s[ymd].str.replace(r"[/.]", "-", regex=True), format="mixed",
                                          errors="coerce"))
        used["Y/M/D"] = int(ymd.sum())
        todo &= ~ymd
    dmy = todo & s.str.match(_DMY)
    if dmy.any():
        parts = s[dmy].astype(str).str.extract(_DMY).fillna("").astype(str)

        def num(col: int, default: str = "0") -> pd.Series:
            return parts[col].replace("", default).astype(int)

        a, b = num(0), num(1)
        if day_first is None:
            first_over, second_over = bool((a > 12).any()), bool((b > 12).any())
            if first_over and not second_over:
                day_first = True
            elif second_over and not first_over:
                day_first = False
            elif first_over and second_over:
                day_first = bool((a > 12).sum() >= (b > 12).sum())
                warnings.append("dates mix day-first and month-first values; read as "
                                + ("day-first" if day_first else "month-first")
                                + " (the others are unparseable); pass --day-first or --month-first")
            else:
                day_first = True
                warnings.append("every D/M/Y date is ambiguous (both parts <= 12): read as day-first; "
                                "pass --month-first for US dates")
        day, month = (a, b) if day_first else (b, a)
        year = num(2)
        year = year.where(parts[2].str.len() == 4, year + np.where(year < 70, 2000, 1900))
        hour = num(3)
        ampm = parts[7].str.lower().str[:1]
        hour = hour.where(ampm == "", (hour % 12) + np.where(ampm == "p", 12, 0))
        frame = pd.DataFrame({"year": year, "month": month, "day": day, "hour": hour,
                              "minute": num(4), "second": num(5)})
        out.loc[dmy] = _ns(pd.to_datetime(frame, errors="coerce"))
        used["day-first D/M/Y" if day_first else "month-first M/D/Y"] = int(dmy.sum())
        todo &= ~dmy
    num = todo & (s.str.match(_SERIAL) | s.str.match(_EPOCH_S) | s.str.match(_EPOCH_MS))
    if num.any():
        n = pd.to_numeric(s[num], errors="coerce")
        serial = (n >= 20000) & (n < 80000)
        epoch_s = (n >= 1e9) & (n < 1e11)
        epoch_ms = n >= 1e12
        if serial.any():
            out.loc[serial[serial].index] = pd.Timestamp("1899-12-30") + pd.to_timedelta(n[serial], unit="D")
            used["Excel serial days"] = int(serial.sum())
        if epoch_s.any():
            aware.loc[epoch_s[epoch_s].index] = pd.to_datetime(n[epoch_s], unit="s", utc=True)
            used["Unix seconds"] = int(epoch_s.sum())
        if epoch_ms.any():
            aware.loc[epoch_ms[epoch_ms].index] = pd.to_datetime(n[epoch_ms], unit="ms", utc=True)
            used["Unix milliseconds"] = int(epoch_ms.sum())
        todo &= ~num
    if todo.any():  # anything else pandas can read ("01 Dec 2010 08:26", "Dec 1, 2010")
        try:
            got = pd.to_datetime(s[todo], format="mixed", errors="coerce", dayfirst=bool(day_first), utc=False)
        except ValueError:  # several time zones in the column: read each value on its own
            got = pd.Series([pd.to_datetime(v, errors="coerce", dayfirst=bool(day_first)) for v in s[todo]],
                            index=s[todo].index, dtype=object)
        typed = pd.api.types.is_datetime64_any_dtype(got)
        if typed:  # one zone or none
            got = _ns(got)
        years = s[todo].str.findall(r"(?<!\d)(\d{4})(?!\d)")
        for i, v in got.items():
            if pd.isna(v):
                continue
            written = years.get(i)
            if written and str(v.year).zfill(4) not in written:
                continue  # dateutil reads "Jan 1, 0001" as 2001: the written year wins (unparseable)
            if not typed:
                v = _ns(pd.Series([v])).iloc[0]
                if pd.isna(v):
                    continue
            if v.tzinfo is not None:
                aware.loc[i] = v.tz_convert("UTC")
            else:
                out.loc[i] = v
        used["other formats"] = int(got.notna().sum())
    try:
        local = out.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="shift_forward").dt.tz_convert("UTC")
    except Exception as exc:  # noqa: BLE001 - bad time zone names
        raise TransactionImportError(f"unknown time zone {timezone!r}: {exc}") from None
    result = aware.where(aware.notna(), local)
    description = ", ".join(f"{k} ({v:,})" for k, v in used.items() if v) or "no readable dates"
    return result, description, warnings


def _clean_ids(values: pd.Series) -> pd.Series:
    """Ids as text: stripped, empty -> NA, 17850.0 -> 17850 (ids read as floats)."""
    if pd.api.types.is_float_dtype(values):
        values = values.map(lambda v: None if pd.isna(v) else (str(int(v)) if float(v).is_integer() else repr(v)))
    s = values.astype("string").str.strip()
    s = s.str.replace(r"^(\d+)\.0+$", r"\1", regex=True)
    return s.mask(s.str.lower().isin(["", "nan", "null", "none", "n/a", "na", "-"]))


# --------------------------------------------------------------------------------------------
# the import
# --------------------------------------------------------------------------------------------
def _jsonable(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (pd.Timestamp, dt.datetime, dt.date)):
        return v.isoformat()
    if hasattr(v, "item"):
        return v.item()
    return v


def prepare_records(frame: pd.DataFrame, cols: dict[str, str], source_file: str, *, currency: str,
                    day_first: bool | None, date_format: str | None, timezone: str, now: dt.datetime,
                    max_abs_amount: float, malformed: list[tuple[int, str]]
                    ) -> tuple[list[dict[str, Any]], dict[str, int], str, list[str], pd.Series]:
    """Classify every line and build the landed records. Returns (records, counts, date format,
    warnings, ordered_at of the kept transactions)."""
    line_no = pd.Series(np.asarray(frame.index, dtype="int64"), index=frame.index)  # line 1 is the header
    customer = _clean_ids(frame[cols["customer"]])
    ts, how, warnings = parse_timestamps(frame[cols["timestamp"]], day_first, date_format, timezone)
    qty = parse_numbers(frame[cols["quantity"]]) if "quantity" in cols else pd.Series(np.nan, index=frame.index)
    if "amount" in cols:
        amount = parse_numbers(frame[cols["amount"]])
        bad_amount = amount.isna()
    else:
        price = parse_numbers(frame[cols["unit_price"]])
        q = qty if "quantity" in cols else pd.Series(1.0, index=frame.index)
        amount = (price * q).round(6)
        bad_amount = price.isna() | q.isna()
    if "quantity" in cols:
        bad_amount |= qty.isna() & _clean_ids(frame[cols["quantity"]].astype("string")).notna()
    order = _clean_ids(frame[cols["order_id"]]) if "order_id" in cols else pd.Series(pd.NA, index=frame.index,
                                                                                     dtype="string")
    if "currency" in cols:
        cur = frame[cols["currency"]].astype("string").str.strip().str.upper()
        cur = cur.mask(cur.isna() | (cur == ""), currency)
    else:
        cur = pd.Series(currency, index=frame.index, dtype="string")
    country = _clean_ids(frame[cols["country"]]) if "country" in cols else None

    cat = pd.Series("kept", index=frame.index, dtype="object")
    open_ = pd.Series(True, index=frame.index)

    def assign(mask: pd.Series, name: str) -> None:
        nonlocal open_
        hit = open_ & mask.fillna(False).astype(bool)
        cat[hit] = name
        open_ &= ~hit

    assign(frame.duplicated(keep="first"), "duplicates")
    assign(ts.isna() | (ts < pd.Timestamp("1900-01-01", tz="UTC")), "unparseable_dates")
    assign(customer.isna(), "missing_customer")
    assign(bad_amount, "unparseable_amounts")
    huge = ~np.isfinite(amount.fillna(0)) | (amount.abs() > max_abs_amount) | (qty.abs() > max_abs_amount)
    assign(huge, "out_of_range")
    assign(ts > pd.Timestamp(now) + pd.Timedelta(days=1), "future_dates")
    assign(~cur.fillna("").str.match(CURRENCY_RE), "invalid_currency")
    assign(amount == 0, "zero_value")
    if "order_id" in cols:
        live = open_ & order.notna()
        per_order = pd.DataFrame({"o": order[live], "c": customer[live], "k": cur[live]})
        if len(per_order):
            spread = per_order.groupby("o").agg(c=("c", "nunique"), k=("k", "nunique"))
            bad_orders = spread.index[(spread["c"] > 1) | (spread["k"] > 1)]
            assign(order.isin(bad_orders), "conflicting_orders")
    is_return = (amount < 0) | (qty < 0) | order.fillna("").str.match(r"^[Cc]\d")
    counts = {k: 0 for k in CATEGORIES}
    counts.update({k: int(v) for k, v in cat.value_counts().items()})
    counts["returns"] = int((open_ & is_return).sum())
    counts["malformed_lines"] = len(malformed)

    records: list[dict[str, Any]] = []
    # kept lines -> transactions (one per order id; one per line without an order id)
    kept = frame.index[open_.to_numpy()]
    k = pd.DataFrame({"order": order[kept], "customer": customer[kept], "ts": ts[kept], "amount": amount[kept],
                      "qty": qty[kept], "cur": cur[kept], "line": line_no[kept], "ret": is_return[kept]})
    if country is not None:
        k["country"] = country[kept]
    with_order = k[k["order"].notna()]
    if len(with_order):
        g = with_order.groupby("order", sort=False)
        agg = g.agg(customer=("customer", "first"), ts=("ts", "min"), amount=("amount", "sum"), qty=("qty", "sum"),
                    cur=("cur", "first"), ret=("ret", "any"), lines=("line", list), qty_known=("qty", "count"),
                    **({"country": ("country", "first")} if "country" in k else {}))
        agg.insert(0, "tid", agg.index.astype(str))
        records.extend(_transactions(agg, source_file))
    without = k[k["order"].isna()]
    if len(without):
        basis = (without["customer"].astype(str) + "|" + without["ts"].map(lambda t: t.isoformat()) + "|"
                 + without["amount"].map(repr) + "|" + without["qty"].map(repr) + "|" + without["cur"].astype(str))
        h = basis.map(lambda b: hashlib.sha256(b.encode()).hexdigest()[:16])
        nth = h.groupby(h).cumcount() + 1
        tid = ("tx_" + h).where(nth == 1, "tx_" + h + "_" + nth.astype(str))
        single = pd.DataFrame({"tid": tid, "customer": without["customer"], "ts": without["ts"],
                               "amount": without["amount"], "qty": without["qty"], "cur": without["cur"],
                               "ret": without["ret"], "lines": without["line"].map(lambda x: [int(x)]),
                               "qty_known": without["qty"].notna().astype(int)})
        if "country" in without:
            single["country"] = without["country"]
        records.extend(_transactions(single, source_file))
    kept_ts = k["ts"]
    # rejected lines -> one record per (reason, order) with the original values
    rejected = frame.index[(~open_).to_numpy()]
    if len(rejected):
        raw = frame.loc[rejected]
        lines_r = line_no[rejected].to_numpy()
        originals = [{"line": int(ln), **{str(c): _jsonable(v) for c, v in row.items()}}
                     for ln, row in zip(lines_r, raw.to_dict("records"))]
        order_r = order[rejected].fillna("")
        amt = amount[rejected]
        rej = pd.DataFrame({
            "status": cat[rejected].map(STATUS),
            "grp": np.where(order_r == "", "line-" + pd.Series(lines_r, index=rejected).astype(str), order_r),
            "customer": customer[rejected].astype(object), "ts": ts[rejected], "amount": amt,
            "bad_amount": ~np.isfinite(amt.to_numpy(dtype="float64", na_value=np.nan)),
            "cur": cur[rejected].astype(object), "orig": originals,
        }, index=rejected)
        agg = rej.groupby(["status", "grp"], sort=False).agg(
            customer=("customer", "first"), ts=("ts", "first"), amount=("amount", "sum"),
            bad_amount=("bad_amount", "any"), cur=("cur", "first"), n=("orig", "size"), lines=("orig", list))
        for (status, grp), r in zip(agg.index, agg.itertuples(index=False)):
            records.append({
                "transaction_id": f"{grp}!{status}",
                "customer_ref": None if pd.isna(r.customer) else str(r.customer),
                "ordered_at": None if pd.isna(r.ts) else r.ts.isoformat(),
                "amount": None if r.bad_amount else float(r.amount),
                "currency": None if pd.isna(r.cur) else str(r.cur),
                "source_file": source_file, "line_count": int(r.n),
                "source_lines": r.lines, "import_status": status,
            })
    for line, text in malformed:
        records.append({"transaction_id": f"line-{line}!malformed_line", "source_file": source_file,
                        "line_count": 1, "source_lines": [{"line": line, "raw": text}],
                        "import_status": STATUS["malformed_lines"]})
    return records, counts, how, warnings, kept_ts


def _transactions(frame: pd.DataFrame, source_file: str) -> list[dict[str, Any]]:
    """Landed records of kept transactions (columns tid, customer, ts, amount, qty, cur, ret, lines,
    qty_known and optionally country)."""
    has_country = "country" in frame.columns
    out = []
    for r in frame.itertuples(index=False):
        amount = float(r.amount)
        rec = {
            "transaction_id": str(r.tid),
            "customer_ref": str(r.customer),
            "ordered_at": r.ts.isoformat(),
            "amount": round(amount, 6),
            "currency": str(r.cur),
            "quantity": float(r.qty) if r.qty_known and not pd.isna(r.qty) else None,
            "source_file": source_file,
            "is_return": bool(r.ret) or amount < 0,
            "line_count": len(r.lines),
            "source_lines": [int(x) for x in r.lines],
            "import_status": "ok",
        }
        if has_country and not pd.isna(r.country):
            rec["country"] = str(r.country)
        out.append(rec)
    return out


def import_transactions_command(
    settings: Any,
    path: str | Path,
    mapping: ColumnMapping | dict[str, str] | None = None,
    *,
    currency: str | None = None,
    day_first: bool | None = None,
    date_format: str | None = None,
    timezone: str = "UTC",
    delimiter: str | None = None,
    encoding: str | None = None,
    max_reject_fraction: float | None = None,
    max_abs_amount: float = MAX_ABS_AMOUNT,
    now: dt.datetime | None = None,
) -> ImportReport:
    """Import one transaction log into ``bronze.transactions__imported`` and report what happened.

    Raises :class:`TransactionImportError` (one clear line) when the file cannot be imported.
    """
    from ingestion.bronze import BatchRefused, load_batch
    from ingestion.landing import LandingZone
    from retailpulse.warehouse import get_warehouse

    path = Path(path).expanduser()
    if isinstance(mapping, dict):
        unknown = set(mapping) - set(asdict(ColumnMapping()))
        if unknown:
            raise TransactionImportError(f"unknown mapping roles {sorted(unknown)}; use {list(asdict(ColumnMapping()))}")
        mapping = ColumnMapping(**mapping)
    mapping = mapping or ColumnMapping()
    if delimiter is not None and len(delimiter) != 1:
        delimiter = {"tab": "\t", "\\t": "\t"}.get(delimiter.lower(), delimiter)
        if len(delimiter) != 1:
            raise TransactionImportError(f"delimiter must be one character (got {delimiter!r})")
    default_currency = (currency or getattr(settings, "reporting_currency", "USD") or "USD").strip().upper()
    if not re.fullmatch(CURRENCY_RE, default_currency):
        raise TransactionImportError(f"currency must be a 3-letter code (got {currency!r})")
    frame, fmt, used_encoding, sep, malformed = read_table(path, encoding, delimiter)
    if frame.empty and malformed:
        raise TransactionImportError(f"no readable rows in {path.name}: {len(malformed):,} line(s) are not "
                                     "well-formed CSV (check the quoting and --delimiter)")
    if frame.empty:
        raise TransactionImportError(f"{path.name} has a header but no rows")
    if not frame.columns.is_unique:
        dup = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
        raise TransactionImportError(f"{path.name} has duplicate column names: {', '.join(dup)}")
    cols = resolve_mapping([str(c) for c in frame.columns], mapping)
    now = now or dt.datetime.now(dt.timezone.utc)
    records, counts, how, warnings, kept_ts = prepare_records(
        frame, cols, path.name, currency=default_currency, day_first=day_first, date_format=date_format,
        timezone=timezone, now=now, max_abs_amount=max_abs_amount, malformed=malformed)
    if "currency" not in cols and currency is None:
        warnings.append(f"no currency column: amounts taken as {default_currency} (pass --currency)")
    if malformed:
        warnings.append(f"{len(malformed):,} line(s) had the wrong number of fields (rejected as malformed_line)")
    report = ImportReport(
        source_file=path.name, file_format=fmt, encoding=used_encoding, delimiter=sep, rows=len(frame),
        columns=cols, date_format=how, currency=default_currency if "currency" not in cols else f"from {cols['currency']}",
        counts=counts, warnings=warnings,
    )
    if counts["kept"] == 0:
        reasons = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in counts.items() if v and k != "kept")
        raise TransactionImportError(f"no importable line in {path.name} ({reasons}); check the column mapping "
                                     f"({', '.join(f'{k}={v}' for k, v in cols.items())}) and date format")
    start = kept_ts.min().floor("s").to_pydatetime()
    end = kept_ts.max().floor("s").to_pydatetime() + dt.timedelta(seconds=1)
    interval = Interval(start, end)
    report.interval_key = interval.key
    report.transactions = sum(1 for r in records if r.get("import_status") == "ok")
    report.rejected_records = len(records) - report.transactions

    spec = SPECS[OBJECT]
    if max_reject_fraction is not None:
        spec = replace(spec, max_reject_fraction=float(max_reject_fraction))
    zone = LandingZone(settings.landing_path)
    zone.write_batch(SOURCE, OBJECT, interval, records, stats={"import": report.to_dict()})
    wh = get_warehouse(settings)
    wh.ensure_schemas()
    zone.write_sidecar(SOURCE, OBJECT, interval, "import_report.json", report.to_dict())
    try:
        loaded = load_batch(wh, zone, spec, interval)
    except BatchRefused as exc:
        why = str(exc).strip().splitlines()[0]
        lines = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in report.counts.items() if v)
        raise TransactionImportError(
            f"import refused: {why} (lines: {lines}); nothing was loaded — fix the mapping or pass "
            f"--max-reject-fraction (now {spec.max_reject_fraction:g}) to load the good lines anyway") from None
    report.loaded = loaded.loaded
    report.rejected_records = loaded.rejected
    if loaded.loaded != report.transactions:
        report.warnings.append(f"{report.transactions - loaded.loaded:,} transactions failed validation too "
                               "(see bronze.rejected_records)")
    zone.write_sidecar(SOURCE, OBJECT, interval, "import_report.json", report.to_dict())
    for line in report.lines():
        log.info(line)
    return report


def _main(argv: list[str] | None = None) -> int:  # pragma: no cover - a thin manual entry point
    import argparse
    import sys

    from retailpulse.settings import load_settings

    ap = argparse.ArgumentParser(prog="python -m ingestion.transactions")
    ap.add_argument("file")
    for role in asdict(ColumnMapping()):
        ap.add_argument(f"--{role.replace('_', '-')}-col", dest=role)
    ap.add_argument("--currency")
    ap.add_argument("--day-first", dest="day_first", action="store_true", default=None)
    ap.add_argument("--month-first", dest="day_first", action="store_false")
    ap.add_argument("--date-format")
    ap.add_argument("--timezone", default="UTC")
    ap.add_argument("--delimiter")
    ap.add_argument("--encoding")
    ap.add_argument("--max-reject-fraction", type=float)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    mapping = ColumnMapping(**{r: getattr(a, r) for r in asdict(ColumnMapping())})
    try:
        rep = import_transactions_command(load_settings(), a.file, mapping, currency=a.currency, day_first=a.day_first,
                                          date_format=a.date_format, timezone=a.timezone, delimiter=a.delimiter,
                                          encoding=a.encoding, max_reject_fraction=a.max_reject_fraction)
    except TransactionImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(rep.to_dict(), indent=2, default=str) if a.json else "\n".join(rep.lines()))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
