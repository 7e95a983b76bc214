"""GDPR erasure: remove one person everywhere, keep them out, and audit it without PII.

``erase_person(settings, email=... | customer_id=...)``

1. **Resolve** the person to every source identifier the warehouse holds: the customer(s) the
   e-mail (lower-cased, trimmed) resolves to in ``gold.customer_identity_map`` (or the given
   customer_id), all identifiers of those customers, then a closure over bronze following the
   sources' own links (Stripe customer -> charges -> orders/refunds/events, CRM contact ->
   leads/cases/household account, GA4 user_id -> devices -> purchases, the same e-mail in any
   record, ...) until nothing new appears. A household account or a GA4 device is included only
   when no one else uses it.
2. **Suppress**: salted SHA-256 hashes of the normalised identifiers go to ``ops.suppression``
   (salt in ``<data>/state/suppression_salt``, mode 0600). The bronze loader drops every incoming
   row carrying one of them (rule ``gdpr_suppressed``, raw record not stored) and replaces the
   landed line by a tombstone, so a re-extraction never brings the person back.
3. **Remove** from landing files (each matching line replaced by the tombstone
   ``{"_gdpr_suppressed":true}`` so the manifest's record_count and the load audit still
   reconcile; the batch directory is swapped atomically), from every bronze table (the rows
   become ``gdpr_suppressed`` rejects without the record; ``ops.load_audit`` moves them from
   loaded to rejected), from ``bronze.rejected_records`` (record cleared), from every silver and
   gold table (incremental models, the CRM contacts snapshot and ``gold.customer_scores`` keep
   history that a rebuild would not drop), from model artifacts under ``<data>/models`` and
   from any other text file in the data directory (logs, validation results, Data Docs).
4. **Rebuild** silver/gold with ``dbt build``, re-publish the serving copy (the previous
   Parquet generation is removed at once) and **verify** that no table of the warehouse or of the
   serving copy still holds one of the identifiers.
5. **Audit**: one row in ``ops.erasure_audit`` (request id, times, identifier type, the salted
   hash of the identifier, counts per table/file, status) -- no PII.

The sandbox world is the external source and is never touched. What is not covered: backups and
copies outside the project's data and warehouse directories, and free pages of the DuckDB file
(deleted rows are unreadable through SQL but DuckDB does not zero freed blocks; copy the file
with ``COPY FROM DATABASE`` offline for a byte-level purge).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from retailpulse.settings import Settings
from retailpulse.warehouse import Warehouse, WarehouseError, get_warehouse, ident

log = logging.getLogger(__name__)

TOMBSTONE_FIELD = "_gdpr_suppressed"
TOMBSTONE_LINE = json.dumps({TOMBSTONE_FIELD: True}, separators=(",", ":"))
SUPPRESSED_RULE = "gdpr_suppressed"
SUPPRESSION_TABLE = "suppression"
AUDIT_TABLE = "erasure_audit"
SALT_FILE = "suppression_salt"
MIN_NEEDLE = 5  # identifiers shorter than this are never matched (they would match by accident)


class ErasureError(RuntimeError):
    """The erasure could not be completed; the message says what to do (never PII)."""


class SuppressionError(RuntimeError):
    """The suppression list cannot be applied (e.g. its salt is missing)."""


# --- normalisation and hashing -------------------------------------------------------------------
def normalise(value: Any) -> str:
    """The comparison form of an identifier: text, trimmed, lower-cased."""
    return str(value).strip().lower()


def normalise_email(email: str) -> str:
    value = normalise(email)
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
        raise ErasureError("not an e-mail address: give --email name@domain")
    return value


def sha256_hex(value: str) -> str:
    """Plain SHA-256 of a normalised value, as gold stores hashed e-mails (email_sha256)."""
    return hashlib.sha256(value.encode()).hexdigest()


def salt_path(settings: Settings) -> Path:
    return settings.state_path / SALT_FILE


def load_salt(state_path: Path, create: bool = False) -> bytes | None:
    """The suppression salt; created (random, mode 0600) when missing and ``create``."""
    path = Path(state_path) / SALT_FILE
    if path.exists():
        return path.read_bytes().strip()
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{SALT_FILE}.{uuid.uuid4().hex[:8]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_hex(32).encode())
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process created it first: keep theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    os.chmod(path, 0o600)
    return path.read_bytes().strip()


def hash_identifier(salt: bytes, value: Any) -> str:
    """Salted SHA-256 of the normalised identifier (what ops.suppression stores)."""
    return hashlib.sha256(salt + b"\x00" + normalise(value).encode()).hexdigest()


# --- suppression of incoming records (used by the bronze loader) ---------------------------------
_ID_COLUMN = re.compile(
    r"(email|(^|_)id$|_id__c$|(^|_)ref$|^customer$|^charge$|__customer$|__charge$|contactid$|accountid$"
    r"|user_pseudo_id$|transaction_id$)"
)
_EMAIL_TOKEN = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
_QUOTED_TOKEN = re.compile(r'"([^"\\]{%d,200})"' % MIN_NEEDLE)


def is_identifier_column(name: str) -> bool:
    """Whether a bronze column (flattened API field name) can carry a person's identifier."""
    return bool(_ID_COLUMN.search(name.lower()))


def is_tombstone(record: Any) -> bool:
    return isinstance(record, dict) and record.get(TOMBSTONE_FIELD) is True and len(record) == 1


class Suppressor:
    """Matches incoming values against the hashed suppression list."""

    def __init__(self, salt: bytes, hashes: Iterable[str]) -> None:
        self.salt = salt
        self.hashes = frozenset(hashes)
        self._cache: dict[str, bool] = {}

    @classmethod
    def load(cls, wh: Warehouse) -> Suppressor | None:
        """The active suppression list of the warehouse, or None when nobody is suppressed."""
        if not _table_exists(wh, "ops", SUPPRESSION_TABLE):
            return None
        rows = wh.query(f"select identifier_hash from {_t(wh, 'ops', SUPPRESSION_TABLE)}")
        if not rows:
            return None
        salt = load_salt(wh.settings.state_path, create=False)
        if salt is None:
            raise SuppressionError(
                f"{len(rows)} identifiers are suppressed (GDPR erasures) but the salt "
                f"{wh.settings.state_path / SALT_FILE} is missing: restore it from backup before loading, "
                "or erased people could come back"
            )
        return cls(salt, (r[0] for r in rows))

    def matches(self, value: Any) -> bool:
        if value is None:
            return False
        norm = normalise(value)
        if len(norm) < MIN_NEEDLE:
            return False
        hit = self._cache.get(norm)
        if hit is None:
            hit = hash_identifier(self.salt, norm) in self.hashes
            if len(self._cache) < 2_000_000:
                self._cache[norm] = hit
        return hit

    def frame_mask(self, frame: pd.DataFrame) -> pd.Series:
        """Rows of a flattened bronze frame with a suppressed identifier in an identifier column."""
        mask = pd.Series(False, index=frame.index)
        for col in frame.columns:
            if not is_identifier_column(str(col)):
                continue
            values = frame[col]
            if not (pd.api.types.is_string_dtype(values) or pd.api.types.is_object_dtype(values)
                    or pd.api.types.is_integer_dtype(values)):
                continue
            present = values.dropna()
            if present.empty:
                continue
            norm = present.astype(str).str.strip().str.lower()
            hits = {u for u in pd.unique(norm) if self.matches(u)}
            if hits:
                mask.loc[norm.index[norm.isin(hits).to_numpy()]] = True
        return mask

    def record_matches(self, record: dict[str, Any]) -> bool:
        from ingestion.flatten import column_name, flatten_record

        for key, value in flatten_record(record).items():
            if is_identifier_column(column_name(key)) and isinstance(value, (str, int)) and not isinstance(value, bool):
                if self.matches(value):
                    return True
        return False

    def text_matches(self, text: str) -> bool:
        """A line that is not valid JSON: any e-mail or quoted token in it that is suppressed."""
        return any(self.matches(t) for t in _EMAIL_TOKEN.findall(text)) or any(
            self.matches(t) for t in _QUOTED_TOKEN.findall(text))


# --- landing files ---------------------------------------------------------------------------------
def _landing_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [ln.rstrip("\n") for ln in fh if ln.rstrip("\n")]


def rewrite_landing_batch(zone: Any, source: str, obj: str, interval: Any, rows: set[int],
                          expected_batch_id: str | None = None) -> int:
    """Replace the landed records at ``rows`` (0-based, as the loader numbers them) with the
    tombstone line; the batch directory is swapped atomically, the manifest keeps its
    record_count and gets the new checksum and ``stats.gdpr_suppressed``. Returns the number of
    lines newly tombstoned. Skips (returns 0) when the batch was re-landed meanwhile."""
    from ingestion.landing import MANIFEST, PART, LandingZone

    final = zone.batch_dir(source, obj, interval)
    part = final / PART
    if not rows or not part.exists():
        return 0
    manifest = json.loads((final / MANIFEST).read_text())
    if expected_batch_id is not None and manifest.get("batch_id") != expected_batch_id:
        return 0
    lines = _landing_lines(part)
    changed = 0
    for i in rows:
        if 0 <= i < len(lines) and lines[i] != TOMBSTONE_LINE:
            lines[i] = TOMBSTONE_LINE
            changed += 1
    if not changed:
        return 0
    tmp = final.parent / f".tmp-erase-{interval.key}-{uuid.uuid4().hex[:8]}"
    shutil.copytree(final, tmp)
    try:
        sha = hashlib.sha256()
        with gzip.open(tmp / PART, "wt", encoding="utf-8", compresslevel=5) as fh:
            for line in lines:
                fh.write(line + "\n")
                sha.update(line.encode())
        files = manifest.get("files") or [{"name": PART}]
        for f in files:
            if f.get("name") == PART:
                f["sha256"] = sha.hexdigest()
                f["rows"] = len(lines)
        manifest["files"] = files
        manifest.setdefault("stats", {})[SUPPRESSED_RULE] = sum(1 for ln in lines if ln == TOMBSTONE_LINE)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        current = json.loads((final / MANIFEST).read_text())
        if current.get("batch_id") != manifest.get("batch_id"):  # re-landed while we worked
            shutil.rmtree(tmp, ignore_errors=True)
            return 0
        LandingZone._swap(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return changed


# --- the person's identifiers --------------------------------------------------------------------
# bronze table -> (column, kind); kinds ending in "*" are linked but not followed automatically
# (a household account or a GA4 device is the person's only when no one else uses it).
LINKS: dict[str, list[tuple[str, str]]] = {
    "stripe__customers": [("id", "stripe_customer"), ("email", "email")],
    "stripe__charges": [("id", "stripe_charge"), ("customer", "stripe_customer"), ("receipt_email", "email"),
                        ("metadata__order_id", "order")],
    "stripe__refunds": [("id", "stripe_refund"), ("charge", "stripe_charge")],
    "stripe__events": [("id", "stripe_event"), ("data__object__id", "stripe_object"),
                       ("data__object__customer", "stripe_customer"), ("data__object__charge", "stripe_charge"),
                       ("data__object__email", "email"), ("data__object__receipt_email", "email"),
                       ("data__object__metadata__order_id", "order")],
    "salesforce__contact": [("id", "sf_contact"), ("email", "email"), ("stripe_customer_id__c", "stripe_customer"),
                            ("web_user_id__c", "ga4_user_id"), ("accountid", "sf_account*")],
    "salesforce__lead": [("id", "sf_lead"), ("email", "email"), ("convertedcontactid", "sf_contact")],
    "salesforce__case": [("id", "sf_case"), ("contactid", "sf_contact"), ("accountid", "sf_account*")],
    "salesforce__account": [("id", "sf_account*")],
    "salesforce__opportunity": [("id", "sf_opportunity"), ("accountid", "sf_account*")],
    "ga4__events": [("user_id", "ga4_user_id"), ("user_pseudo_id", "ga4_user_pseudo_id*"),
                    ("ecommerce__transaction_id", "order")],
    "transactions__imported": [("transaction_id", "transaction"), ("customer_ref", "imported_customer")],
}
# records that describe a person: everything they link to is the person's
PERSON_TABLES = {"stripe__customers", "salesforce__contact", "salesforce__lead", "transactions__imported"}
# a transactional record that matched only through an e-mail (a guest checkout, a receipt sent to
# the person) is the person's, but the entity it references (the paying customer) is not
OWN_COLUMNS = {
    "stripe__charges": {"id", "metadata__order_id", "receipt_email"},
    "stripe__events": {"id", "data__object__id", "data__object__email", "data__object__receipt_email",
                       "data__object__metadata__order_id"},
}
# columns holding personal details that are not identifiers (used to redact files, never to match)
DETAILS: dict[str, dict[str, list[str]]] = {
    "stripe__customers": {"phone": ["phone"], "name": ["name"]},
    "stripe__events": {"phone": ["data__object__phone"], "name": ["data__object__name"]},
    "salesforce__contact": {"phone": ["phone", "mobilephone"], "name": ["firstname", "lastname"]},
    "salesforce__lead": {"phone": ["phone"], "name": ["firstname", "lastname"]},
    "salesforce__account": {"phone": ["phone"]},
}
_STRIPE_PREFIX = {"cus_": "stripe_customer", "ch_": "stripe_charge", "re_": "stripe_refund", "py_": "stripe_charge"}
IDENTITY_KINDS = {  # gold.customer_identity_map identifier_type -> kind
    "stripe_customer": "stripe_customer", "sf_contact": "sf_contact", "sf_lead": "sf_lead",
    "ga4_user_id": "ga4_user_id", "ga4_user_pseudo_id": "ga4_user_pseudo_id", "imported_customer": "imported_customer",
}


@dataclass
class Person:
    """Everything that identifies one person (normalised). PII: never logged or stored."""

    ids: dict[str, set[str]] = field(default_factory=dict)  # kind -> normalised values
    email_hashes: set[str] = field(default_factory=set)      # plain sha256 of e-mails (gold's form)
    customer_ids: set[str] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)            # as found in records (for file redaction)
    names: set[str] = field(default_factory=set)             # "first last" as found in records
    weak: set[str] = field(default_factory=set)              # ids known only through an e-mail match

    def add(self, kind: str, value: Any) -> bool:
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return False
        norm = normalise(value)
        if len(norm) < MIN_NEEDLE or norm in ("none", "nan", "null"):
            return False
        if kind == "stripe_object":
            kind = next((k for p, k in _STRIPE_PREFIX.items() if norm.startswith(p)), "stripe_object")
        bucket = self.ids.setdefault(kind, set())
        if norm in bucket:
            return False
        bucket.add(norm)
        if kind == "email":
            self.email_hashes.add(sha256_hex(norm))
        return True

    @property
    def emails(self) -> set[str]:
        return set(self.ids.get("email", set()))

    def needles(self) -> set[str]:
        """Every value whose presence in a column means a row is this person's."""
        out: set[str] = set()
        for values in self.ids.values():
            out |= values
        return out | self.email_hashes | self.customer_ids

    def suppressible(self) -> dict[str, set[str]]:
        return {k: set(v) for k, v in self.ids.items() if v}

    def counts(self) -> dict[str, int]:
        out = {k: len(v) for k, v in sorted(self.ids.items()) if v}
        if self.customer_ids:
            out["customer_id"] = len(self.customer_ids)
        return out

    @property
    def empty(self) -> bool:
        return not any(self.ids.values()) and not self.customer_ids


def _t(wh: Warehouse, schema: str, table: str) -> str:
    return f"{ident(wh.schema_name(schema))}.{ident(table)}"


def _table_exists(wh: Warehouse, schema: str, table: str, con: Any = None) -> bool:
    sql = "select count(*) from information_schema.tables where table_schema = ? and table_name = ?"
    params = [wh.schema_name(schema), table]
    if con is not None:
        return bool(wh._exec(con, sql, params).fetchone()[0])
    return bool(wh.scalar(sql, params))


def _tables(wh: Warehouse, con: Any, schema: str) -> list[tuple[str, str]]:
    """(table, table_type) of a schema."""
    cur = wh._exec(con, "select table_name, table_type from information_schema.tables where table_schema = ? "
                        "order by table_name", [wh.schema_name(schema)])
    return [(r[0], str(r[1]).upper()) for r in cur.fetchall()]


def _columns(wh: Warehouse, con: Any, schema: str, table: str) -> dict[str, str]:
    return {k: str(v).lower() for k, v in wh._column_types(con, wh.schema_name(schema), table).items()}


def _is_text(data_type: str) -> bool:
    t = data_type.lower()
    return t in ("varchar", "text", "character varying", "string", "json", "jsonb") or t.startswith(("varchar", "character varying"))


def _in_list(wh: Warehouse, values: Iterable[str]) -> tuple[str, list[str]]:
    vals = sorted(values)
    if not vals:
        return "(null)", []
    return "(" + ", ".join(["?"] * len(vals)) + ")", vals


def _norm_sql(col: str) -> str:
    return f"lower(trim(cast({ident(col)} as varchar)))"


def _closure_round(wh: Warehouse, con: Any, person: Person) -> tuple[bool, dict[str, set[str]]]:
    """One pass over the linked bronze tables; returns (anything new, linked-only candidates)."""
    new = False
    candidates: dict[str, set[str]] = {}
    needles = person.needles()
    if not needles:
        return False, candidates
    for table, links in LINKS.items():
        cols = _columns(wh, con, "bronze", table)
        links = [(c, k) for c, k in links if c in cols]
        if not links:
            continue
        in_sql, vals = _in_list(wh, needles)
        where = " or ".join(f"{_norm_sql(c)} in {in_sql}" for c, _ in links)
        detail_cols = [c for cs in DETAILS.get(table, {}).values() for c in cs if c in cols]
        select = [c for c, _ in links] + detail_cols
        sql = f"select {', '.join(ident(c) for c in select)} from {_t(wh, 'bronze', table)} where {where}"
        rows = wh._exec(con, sql, vals * len(links)).fetchall()
        for row in rows:
            values = dict(zip(select, row))
            own = OWN_COLUMNS.get(table)
            strong = table in PERSON_TABLES or own is None or any(
                kind != "email" and values[c] is not None and normalise(values[c]) in needles
                and normalise(values[c]) not in person.weak for c, kind in links)
            for c, kind in links:
                if not strong and c not in own:
                    continue  # matched through an e-mail only: do not follow references
                if kind.endswith("*"):
                    if values[c] is not None:
                        candidates.setdefault(kind[:-1], set()).add(normalise(values[c]))
                    continue
                added = person.add(kind, values[c])
                if values[c] is not None and kind != "email":
                    norm = normalise(values[c])
                    if not strong and added:
                        person.weak.add(norm)
                    elif strong and norm in person.weak:
                        person.weak.discard(norm)
                        added = True
                new |= added
            details = DETAILS.get(table, {})
            for c in details.get("phone", []):
                if values.get(c):
                    person.phones.add(str(values[c]).strip())
            names = [str(values[c]).strip() for c in details.get("name", []) if values.get(c)]
            if names:
                person.names.add(" ".join(names))
    return new, candidates


def _exclusive_accounts(wh: Warehouse, con: Any, person: Person, candidates: set[str]) -> set[str]:
    """Household accounts only the person's contacts use."""
    if not candidates or not _table_exists(wh, "bronze", "salesforce__contact", con):
        return set()
    in_sql, vals = _in_list(wh, candidates)
    mine = person.ids.get("sf_contact", set())
    not_mine, mvals = _in_list(wh, mine) if mine else ("('')", [])
    shared = wh._exec(con, f"select distinct {_norm_sql('accountid')} from {_t(wh, 'bronze', 'salesforce__contact')} "
                           f"where {_norm_sql('accountid')} in {in_sql} and {_norm_sql('id')} not in {not_mine}",
                      vals + mvals).fetchall()
    return candidates - {r[0] for r in shared}


def _exclusive_devices(wh: Warehouse, con: Any, person: Person, candidates: set[str]) -> set[str]:
    """GA4 devices on which no one but the person ever logged in."""
    if not candidates or not _table_exists(wh, "bronze", "ga4__events", con):
        return set()
    in_sql, vals = _in_list(wh, candidates)
    mine = person.ids.get("ga4_user_id", set())
    not_mine, mvals = _in_list(wh, mine) if mine else ("('')", [])
    shared = wh._exec(con, f"select distinct {_norm_sql('user_pseudo_id')} from {_t(wh, 'bronze', 'ga4__events')} "
                           f"where {_norm_sql('user_pseudo_id')} in {in_sql} and user_id is not null "
                           f"and {_norm_sql('user_id')} not in {not_mine}", vals + mvals).fetchall()
    return candidates - {r[0] for r in shared}


def _email_hash_sql(wh: Warehouse, col: str) -> str:
    if wh.target == "postgres":
        return f"encode(sha256(convert_to(lower(trim({ident(col)})), 'UTF8')), 'hex')"
    return f"sha256(lower(trim({ident(col)})))"


def resolve_person(wh: Warehouse, email: str | None = None, customer_id: str | None = None,
                   email_sha256: str | None = None, max_rounds: int = 12) -> Person:
    """All identifiers of the person named by exactly one of e-mail, customer_id or e-mail hash."""
    person = Person()
    with wh.connect() as con:
        has_map = _table_exists(wh, "gold", "customer_identity_map", con)
        if email is not None:
            person.add("email", normalise_email(email))
        if email_sha256 is not None:
            person.email_hashes.add(email_sha256.strip().lower())
            # the raw addresses behind the hash, wherever bronze has an e-mail column
            for table, links in LINKS.items():
                cols = _columns(wh, con, "bronze", table)
                for c, kind in links:
                    if kind == "email" and c in cols:
                        for (value,) in wh._exec(con, f"select distinct {ident(c)} from {_t(wh, 'bronze', table)} "
                                                      f"where {ident(c)} is not null and {_email_hash_sql(wh, c)} = ?",
                                                 [email_sha256.strip().lower()]).fetchall():
                            person.add("email", value)
        if customer_id is not None:
            person.customer_ids.add(customer_id.strip())
        candidates: dict[str, set[str]] = {}
        for _ in range(max_rounds):
            grew = False
            if has_map:
                hashes = sorted(person.email_hashes)
                if hashes:
                    in_sql, vals = _in_list(wh, hashes)
                    rows = wh._exec(con, f"select distinct customer_id from {_t(wh, 'gold', 'customer_identity_map')} "
                                         f"where identifier_type = 'email' and lower(identifier_value) in {in_sql} "
                                         "and customer_id is not null", vals).fetchall()
                    for (cid,) in rows:
                        if cid not in person.customer_ids:
                            person.customer_ids.add(cid)
                            grew = True
                if person.customer_ids:
                    in_sql, vals = _in_list(wh, person.customer_ids)
                    rows = wh._exec(con, f"select identifier_type, identifier_value from "
                                         f"{_t(wh, 'gold', 'customer_identity_map')} where customer_id in {in_sql}",
                                    vals).fetchall()
                    for itype, value in rows:
                        if itype == "email":
                            if value and normalise(value) not in person.email_hashes:
                                person.email_hashes.add(normalise(value))
                                grew = True
                        elif itype in IDENTITY_KINDS:
                            grew |= person.add(IDENTITY_KINDS[itype], value)
                        elif value:
                            grew |= person.add(str(itype), value)
                # raw e-mails behind hashes the identity map gave us
                unknown = person.email_hashes - {sha256_hex(e) for e in person.emails}
                if unknown:
                    in_sql, vals = _in_list(wh, unknown)
                    for table, links in LINKS.items():
                        cols = _columns(wh, con, "bronze", table)
                        for c, kind in links:
                            if kind == "email" and c in cols:
                                for (value,) in wh._exec(
                                        con, f"select distinct {ident(c)} from {_t(wh, 'bronze', table)} "
                                             f"where {ident(c)} is not null and {_email_hash_sql(wh, c)} in {in_sql}",
                                        vals).fetchall():
                                    grew |= person.add("email", value)
            new, found = _closure_round(wh, con, person)
            grew |= new
            for kind, values in found.items():
                candidates.setdefault(kind, set()).update(values)
            for v in _exclusive_accounts(wh, con, person, candidates.get("sf_account", set())):
                grew |= person.add("sf_account", v)
            for v in _exclusive_devices(wh, con, person, candidates.get("ga4_user_pseudo_id", set())):
                grew |= person.add("ga4_user_pseudo_id", v)
            if not grew:
                break
    return person


# --- warehouse removal -------------------------------------------------------------------------------
def _load_needles(wh: Warehouse, con: Any, needles: set[str]) -> None:
    wh._exec(con, "drop table if exists __rp_erase_needles")
    wh._exec(con, "create temporary table __rp_erase_needles (v varchar)")
    vals = sorted(needles)
    for i in range(0, len(vals), 500):
        chunk = vals[i:i + 500]
        wh._exec(con, "insert into __rp_erase_needles (v) values " + ", ".join(["(?)"] * len(chunk)), chunk)


def _row_predicate(cols: dict[str, str], emails: set[str], dialect: str = "duckdb") -> tuple[str, list[str]] | None:
    """SQL matching rows where a text column equals a needle, ends with ``:<needle>`` (identity
    node ids such as ``stripe_customer:cus_...``) or contains one of the e-mails."""
    text_cols = [c for c, t in cols.items() if _is_text(t)]
    if not text_cols:
        return None
    parts: list[str] = []
    params: list[str] = []
    for c in text_cols:
        low = f"lower(cast({ident(c)} as varchar))"
        suffix = (f"substring({low} from ':([^:]*)$')" if dialect == "postgres"
                  else f"regexp_extract({low}, ':([^:]*)$', 1)")
        parts.append(f"{_norm_sql(c)} in (select v from __rp_erase_needles)")
        parts.append(f"(position(':' in {low}) > 0 and {suffix} in (select v from __rp_erase_needles))")
        for e in sorted(emails):
            parts.append(f"position(? in lower(cast({ident(c)} as varchar))) > 0")
            params.append(e)
    return " or ".join(parts), params


def _rejects_predicate(person: Person) -> tuple[str, list[str]]:
    """rejected_records.record is raw JSON text: quoted ids, e-mails anywhere."""
    parts, params = [], []
    for e in sorted(person.emails):
        parts.append("position(? in lower(record)) > 0")
        params.append(e)
    for v in sorted(person.needles() - person.emails):
        parts.append("position(? in lower(record)) > 0")
        params.append(f'"{v}"')
    return (" or ".join(parts) or "false"), params


def remove_from_warehouse(wh: Warehouse, person: Person, schemas: Iterable[str] = ("bronze", "silver", "gold"),
                          now: dt.datetime | None = None) -> dict[str, int]:
    """Delete the person's rows from every table of ``schemas`` in one transaction.

    Bronze rows become ``gdpr_suppressed`` rejects (no record) and ops.load_audit moves them from
    loaded to rejected, so every extracted record still ends in bronze or rejected_records.
    Returns rows removed per ``schema.table``.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    needles = person.needles()
    removed: dict[str, int] = {}
    if not needles:
        return removed
    with wh.connect() as con:
        _load_needles(wh, con, needles)
        has_rejects = _table_exists(wh, "bronze", "rejected_records", con)
        has_audit = _table_exists(wh, "ops", "load_audit", con)
        for schema in schemas:
            for table, ttype in _tables(wh, con, schema):
                if "VIEW" in ttype or (schema == "bronze" and table == "rejected_records"):
                    continue
                cols = _columns(wh, con, schema, table)
                pred = _row_predicate(cols, person.emails, wh.target)
                if pred is None:
                    continue
                where, params = pred
                full = _t(wh, schema, table)
                loader_managed = schema == "bronze" and {"_interval_key", "_batch_id", "_row_number"} <= set(cols) \
                    and "__" in table
                if loader_managed and has_rejects:
                    source, obj = table.split("__", 1)
                    per_interval = wh._exec(con, f"select _interval_key, count(*) from {full} where {where} group by 1",
                                            params).fetchall()
                    if not per_interval:
                        continue
                    wh._exec(con, f"insert into {_t(wh, 'bronze', 'rejected_records')} "
                                  "(source, object, interval_key, batch_id, row_number, rule, record, rejected_at) "
                                  f"select ?, ?, _interval_key, _batch_id, _row_number, ?, null, ? from {full} "
                                  f"where {where}", [source, obj, SUPPRESSED_RULE, now, *params])
                    if has_audit:
                        for key, n in per_interval:
                            wh._exec(con, f"update {_t(wh, 'ops', 'load_audit')} set loaded = loaded - ?, "
                                          "rejected = rejected + ? where source = ? and object = ? and interval_key = ?",
                                     [int(n), int(n), source, obj, key])
                n = wh._exec(con, f"select count(*) from {full} where {where}", params).fetchone()[0]
                if n:
                    wh._exec(con, f"delete from {full} where {where}", params)
                    removed[f"{schema}.{table}"] = int(n)
        if "bronze" in schemas and has_rejects:
            where, params = _rejects_predicate(person)
            full = _t(wh, "bronze", "rejected_records")
            n = wh._exec(con, f"select count(*) from {full} where record is not null and ({where})", params).fetchone()[0]
            if n:
                wh._exec(con, f"update {full} set record = null, rule = ? where record is not null and ({where})",
                         [SUPPRESSED_RULE, *params])
                removed["bronze.rejected_records"] = int(n)
        wh._exec(con, "drop table if exists __rp_erase_needles")
    return removed


def residual_in_warehouse(wh: Warehouse, person: Person, schemas: Iterable[str] = ("bronze", "silver", "gold")
                          ) -> dict[str, int]:
    """Rows (tables and views) that still hold one of the person's identifiers."""
    out: dict[str, int] = {}
    needles = person.needles()
    if not needles:
        return out
    with wh.connect() as con:
        _load_needles(wh, con, needles)
        for schema in schemas:
            for table, ttype in _tables(wh, con, schema):
                if "VIEW" in ttype:  # derived from the tables checked here
                    continue
                cols = _columns(wh, con, schema, table)
                if schema == "bronze" and table == "rejected_records":
                    where, params = _rejects_predicate(person)
                else:
                    pred = _row_predicate(cols, person.emails, wh.target)
                    if pred is None:
                        continue
                    where, params = pred
                n = wh._exec(con, f"select count(*) from {_t(wh, schema, table)} where {where}", params).fetchone()[0]
                if n:
                    out[f"{schema}.{table}"] = int(n)
        wh._exec(con, "drop table if exists __rp_erase_needles")
    return out


def residual_in_serving(settings: Settings, person: Person) -> dict[str, int]:
    import duckdb

    path = settings.serving_path / "retailpulse_serving.duckdb"
    out: dict[str, int] = {}
    if not path.exists() or not person.needles():
        return out
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"attach '{str(path).replace(chr(39), chr(39) * 2)}' as serving (read_only)")
        con.execute("create temp table __rp_erase_needles (v varchar)")
        con.executemany("insert into __rp_erase_needles values (?)", [[v] for v in sorted(person.needles())])
        tables = con.execute("select table_schema, table_name from information_schema.tables "
                             "where table_catalog = 'serving'").fetchall()
        for schema, table in tables:
            cols = {r[0]: str(r[1]).lower() for r in con.execute(
                "select column_name, data_type from information_schema.columns where table_catalog = 'serving' "
                "and table_schema = ? and table_name = ?", [schema, table]).fetchall()}
            pred = _row_predicate(cols, person.emails)
            if pred is None:
                continue
            n = con.execute(f"select count(*) from serving.{ident(schema)}.{ident(table)} where {pred[0]}",
                            pred[1]).fetchone()[0]
            if n:
                out[f"serving:{schema}.{table}"] = int(n)
    finally:
        con.close()
    return out


# --- files -------------------------------------------------------------------------------------------
def _file_pattern(person: Person) -> re.Pattern[str] | None:
    needles = {n for n in person.needles() if len(n) >= MIN_NEEDLE}
    needles |= {p for p in person.phones if len(re.sub(r"\D", "", p)) >= 7}
    needles |= {n for n in person.names if " " in n.strip() and len(n) >= MIN_NEEDLE}
    if not needles:
        return None
    alternatives = sorted((re.escape(n) for n in needles), key=len, reverse=True)
    return re.compile(r"(?<![A-Za-z0-9_])(?:" + "|".join(alternatives) + r")(?![A-Za-z0-9_])", re.IGNORECASE)


def _record_is_persons(record: Any, person: Person, needles: set[str]) -> bool:
    from ingestion.flatten import flatten_record

    if not isinstance(record, dict):
        return False
    for value in flatten_record(record).values():
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, (str, int, float)):
            norm = normalise(value)
            if norm in needles:
                return True
            if isinstance(value, str) and any(e in norm for e in person.emails):
                return True
    return False


def scrub_landing(settings: Settings, person: Person) -> dict[str, int]:
    """Tombstone the person's records in every landed batch; returns records per source/object."""
    from ingestion.interval import Interval
    from ingestion.landing import PART, LandingZone

    root = settings.landing_path
    pattern = _file_pattern(person)
    out: dict[str, int] = {}
    if pattern is None or not root.exists():
        return out
    needles = person.needles()
    zone = LandingZone(root)
    for part in sorted(root.glob(f"*/*/*/{PART}")):
        batch = part.parent
        if any(p.startswith(".") for p in batch.relative_to(root).parts):
            continue
        obj_dir = batch.parent
        source, obj = obj_dir.parent.name, obj_dir.name
        lines = _landing_lines(part)
        if not any(pattern.search(ln) for ln in lines):
            continue
        rows: set[int] = set()
        for i, line in enumerate(lines):
            if line == TOMBSTONE_LINE or not pattern.search(line):
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                rows.add(i)  # not JSON and mentions the person: never keep it
                continue
            # ids and e-mails decide; a name or phone alone may be someone else's (same name, household)
            if _record_is_persons(record, person, needles) or not isinstance(record, dict):
                rows.add(i)
        try:
            interval = Interval.from_key(batch.name)
        except ValueError:
            continue
        manifest = zone.read_manifest(source, obj, interval)
        n = rewrite_landing_batch(zone, source, obj, interval, rows,
                                  expected_batch_id=manifest.batch_id if manifest else None)
        if n:
            out[f"landing:{source}/{obj}"] = out.get(f"landing:{source}/{obj}", 0) + n
    return out


_TEXT_SUFFIXES = {".json", ".jsonl", ".ndjson", ".log", ".txt", ".html", ".htm", ".csv", ".tsv", ".md", ".yml",
                  ".yaml", ".sql", ".xml", ".js", ".css", ".out", ".err"}
_SKIP_SUFFIXES = {".duckdb", ".wal", ".db", ".sqlite", ".parquet", ".gz", ".joblib", ".pkl", ".pickle"}


def _is_binary(path: Path) -> bool:
    with path.open("rb") as fh:
        return b"\x00" in fh.read(8192)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.erase-{uuid.uuid4().hex[:8]}")
    tmp.write_bytes(data)
    with contextlib.suppress(OSError):
        os.chmod(tmp, path.stat().st_mode & 0o7777)
    os.replace(tmp, path)


def _scrub_table_file(path: Path, person: Person) -> int:
    """Parquet/CSV with per-row data: drop the person's rows. Returns rows removed."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    needles = pa.array(sorted(person.needles()), type=pa.string())
    if path.suffix == ".parquet":
        table = pq.read_table(path)
    else:
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types={}))
    keep = pa.array([True] * table.num_rows)
    for i, f in enumerate(table.schema):
        if not (pa.types.is_string(f.type) or pa.types.is_large_string(f.type)):
            continue
        col = pc.utf8_lower(pc.utf8_trim_whitespace(table.column(i)))
        hit = pc.fill_null(pc.is_in(col, value_set=needles), False)
        for e in person.emails:
            hit = pc.or_(hit, pc.fill_null(pc.match_substring(col, e), False))
        keep = pc.and_(keep, pc.invert(hit))
    removed = table.num_rows - pc.sum(pc.cast(keep, pa.int64())).as_py() if table.num_rows else 0
    if removed:
        filtered = table.filter(keep)
        tmp = path.with_name(f".{path.name}.erase-{uuid.uuid4().hex[:8]}")
        if path.suffix == ".parquet":
            pq.write_table(filtered, tmp)
        else:
            pacsv.write_csv(filtered, tmp)
        os.replace(tmp, path)
    return int(removed)


def scrub_model_artifacts(settings: Settings, person: Person) -> dict[str, int]:
    """<data>/models: drop the person's rows from tabular files (training sets, scored frames);
    remove an artifact whose binary files mention the person (it must be retrained)."""
    root = settings.data_path / "models"
    out: dict[str, int] = {}
    pattern = _file_pattern(person)
    if pattern is None or not root.exists():
        return out
    raw_needles = [n.encode() for n in person.needles()]
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if not path.exists():  # removed with its artifact directory
            continue
        rel = str(path.relative_to(settings.data_path))
        if path.suffix in (".parquet", ".csv", ".tsv"):
            n = _scrub_table_file(path, person)
            if n:
                out[f"file:{rel}"] = n
        elif path.suffix in _TEXT_SUFFIXES and not _is_binary(path):
            n = _redact_text_file(path, pattern)
            if n:
                out[f"file:{rel}"] = n
        else:
            data = path.read_bytes().lower()
            if any(n in data for n in raw_needles):
                artifact = next((p for p in path.parents if root in p.parents and (p / "metadata.json").exists()),
                                path)
                if artifact.is_dir():
                    shutil.rmtree(artifact, ignore_errors=True)
                else:
                    artifact.unlink(missing_ok=True)
                out[f"artifact removed:{artifact.relative_to(settings.data_path)}"] = 1
    return out


def _redact_text_file(path: Path, pattern: re.Pattern[str]) -> int:
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    new, n = pattern.subn("[erased]", text)
    if n:
        _atomic_write(path, new.encode("utf-8", errors="surrogateescape"))
    return n


def scrub_files(settings: Settings, person: Person, roots: Iterable[Path]) -> tuple[dict[str, int], list[str]]:
    """Redact the person's identifiers in every other text file under ``roots`` (logs, validation
    results, Data Docs ...). The sandbox world, landing parts, model artifacts, database and
    Parquet files are handled elsewhere. Returns (replacements per file, binary files that still
    mention the person)."""
    pattern = _file_pattern(person)
    out: dict[str, int] = {}
    binary_hits: list[str] = []
    if pattern is None:
        return out, binary_hits
    skip_dirs = {settings.sandbox_path.resolve(), (settings.data_path / "models").resolve(),
                 settings.serving_path.resolve()}
    from ingestion.landing import PART

    raw_needles = [n.encode() for n in person.needles()]
    for root in roots:
        root = Path(root)
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath).resolve()
            dirnames[:] = [d for d in dirnames if (here / d).resolve() not in skip_dirs]
            for name in filenames:
                path = here / name
                if name == PART or name == SALT_FILE or path.is_symlink():
                    continue
                suffix = path.suffix.lower()
                try:
                    if suffix in _SKIP_SUFFIXES:
                        if suffix not in (".duckdb", ".wal") and path.stat().st_size < 256 * 1024 * 1024:
                            data = path.read_bytes().lower()
                            if any(n in data for n in raw_needles):
                                binary_hits.append(str(path))
                        continue
                    if path.stat().st_size > 512 * 1024 * 1024 or _is_binary(path):
                        continue
                    n = _redact_text_file(path, pattern)
                except OSError:
                    continue
                if n:
                    out[f"file:{path}"] = n
    return out, binary_hits


# --- suppression list and audit ---------------------------------------------------------------------
def _ensure_ops_tables(wh: Warehouse) -> None:
    wh.ensure_schemas(["ops"])
    with wh.connect() as con:
        if not _table_exists(wh, "ops", SUPPRESSION_TABLE, con):
            wh._exec(con, f"create table {_t(wh, 'ops', SUPPRESSION_TABLE)} (identifier_hash varchar, "
                          "identifier_type varchar, request_id varchar, suppressed_at timestamptz)")
        if not _table_exists(wh, "ops", AUDIT_TABLE, con):
            wh._exec(con, f"create table {_t(wh, 'ops', AUDIT_TABLE)} (request_id varchar, requested_at timestamptz, "
                          "completed_at timestamptz, identifier_type varchar, identifier_hash varchar, status varchar, "
                          "identifiers_found varchar, removed varchar, suppressed_identifiers bigint, "
                          "warnings varchar)")


def record_suppression(wh: Warehouse, salt: bytes, identifiers: dict[str, set[str]], request_id: str,
                       now: dt.datetime) -> int:
    """Add the hashed identifiers to ops.suppression (existing ones are kept); returns how many are new."""
    rows = {hash_identifier(salt, v): kind for kind, values in identifiers.items() for v in values}
    if not rows:
        return 0
    with wh.connect() as con:
        existing = {r[0] for r in wh._exec(con, f"select identifier_hash from {_t(wh, 'ops', SUPPRESSION_TABLE)}").fetchall()}
        new = [(h, k) for h, k in sorted(rows.items()) if h not in existing]
        for i in range(0, len(new), 500):
            chunk = new[i:i + 500]
            params: list[Any] = []
            for h, k in chunk:
                params += [h, k, request_id, now]
            wh._exec(con, f"insert into {_t(wh, 'ops', SUPPRESSION_TABLE)} "
                          "(identifier_hash, identifier_type, request_id, suppressed_at) values "
                          + ", ".join(["(?, ?, ?, ?)"] * len(chunk)), params)
    return len(new)


@dataclass
class ErasureReport:
    request_id: str
    identifier_type: str
    identifier_hash: str
    requested_at: dt.datetime
    completed_at: dt.datetime | None = None
    status: str = "running"
    found: bool = False
    identifiers: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    suppressed: int = 0
    rebuilt: bool = False
    published: bool = False
    residual: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for k in ("requested_at", "completed_at"):
            data[k] = data[k].isoformat() if data[k] else None
        return data

    def summary(self) -> str:
        what = {"email": "e-mail", "customer_id": "customer id", "email_sha256": "e-mail hash"}.get(
            self.identifier_type, self.identifier_type)
        if not self.found:
            head = (f"Erasure {self.request_id}: nothing in the warehouse matches this {what}"
                    + ("; it is on the suppression list, so it will never be loaded" if self.suppressed or
                       self.identifier_type != "customer_id" else "") + ".")
        else:
            ids = ", ".join(f"{n} {k}" for k, n in self.identifiers.items())
            tables = {k: v for k, v in self.removed.items() if not k.startswith(("landing:", "file:", "artifact"))}
            landing = {k: v for k, v in self.removed.items() if k.startswith("landing:")}
            files = {k: v for k, v in self.removed.items() if k.startswith(("file:", "artifact"))}
            head = (f"Erasure {self.request_id}: found the person ({ids}); removed {sum(tables.values())} rows from "
                    f"{len(tables)} tables, {sum(landing.values())} landed records in {len(landing)} objects"
                    + (f" and personal data in {len(files)} other files" if files else "")
                    + f"; {self.suppressed} identifiers newly on the suppression list, so later runs drop them.")
        tail = []
        if self.rebuilt:
            tail.append("silver/gold rebuilt with dbt")
        if self.published:
            tail.append("serving copy re-published")
        if self.residual:
            tail.append("STILL PRESENT in " + ", ".join(f"{k} ({v})" for k, v in sorted(self.residual.items())))
        elif self.found:
            tail.append("verified: no table of the warehouse or the serving copy holds the identifiers")
        tail.append(f"status {self.status}; audit row in ops.erasure_audit")
        text = head + " " + "; ".join(tail) + "."
        if self.warnings:
            text += " Warnings: " + "; ".join(self.warnings) + "."
        return text


def _write_audit(wh: Warehouse, report: ErasureReport) -> None:
    row = pd.DataFrame([{
        "request_id": report.request_id,
        "requested_at": report.requested_at,
        "completed_at": report.completed_at,
        "identifier_type": report.identifier_type,
        "identifier_hash": report.identifier_hash,
        "status": report.status,
        "identifiers_found": json.dumps(report.identifiers, sort_keys=True),
        "removed": json.dumps(_audit_removed(report.removed), sort_keys=True),
        "suppressed_identifiers": int(report.suppressed),
        "warnings": json.dumps(report.warnings),
    }])
    wh.replace_rows("ops", AUDIT_TABLE, row, where={"request_id": report.request_id})


def _audit_removed(removed: dict[str, int]) -> dict[str, int]:
    """File paths in the audit are relative to their directory kind (no home paths)."""
    out: dict[str, int] = {}
    for k, v in removed.items():
        if k.startswith("file:/"):
            k = "file:" + Path(k[5:]).name
        out[k] = out.get(k, 0) + v
    return out


def _previous_audit(wh: Warehouse, identifier_hash: str) -> list[tuple[str, str]]:
    if not _table_exists(wh, "ops", AUDIT_TABLE):
        return []
    return [(r[0], r[1]) for r in wh.query(
        f"select request_id, status from {_t(wh, 'ops', AUDIT_TABLE)} where identifier_hash = ? "
        "order by requested_at", [identifier_hash])]


# --- the erasure ---------------------------------------------------------------------------------------
def erase_person(settings: Settings, email: str | None = None, customer_id: str | None = None,
                 request_id: str | None = None, email_sha256: str | None = None, rebuild: bool = True,
                 publish: bool = True) -> ErasureReport:
    """Erase one person (by e-mail, customer_id or the SHA-256 of the normalised e-mail) everywhere.

    Idempotent: re-running with the same request_id (e.g. an Airflow retry) finishes what a
    failed attempt left. Raises ErasureError (after writing the audit row) when a step failed.
    """
    given = [x for x in (email, customer_id, email_sha256) if x]
    if len(given) != 1:
        raise ErasureError("give exactly one of --email or --customer-id")
    if email_sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", email_sha256.strip()):
        raise ErasureError("email_sha256 must be 64 hex digits (SHA-256 of the lower-cased, trimmed e-mail)")
    now = dt.datetime.now(dt.timezone.utc)
    request_id = request_id or f"erase-{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    wh = get_warehouse(settings)
    wh.ensure_schemas()
    _ensure_ops_tables(wh)
    salt = load_salt(settings.state_path, create=True)
    assert salt is not None
    if email:
        id_type, id_value = "email", normalise_email(email)
    elif customer_id:
        id_type, id_value = "customer_id", customer_id.strip()
    else:
        id_type, id_value = "email_sha256", str(email_sha256).strip().lower()
    report = ErasureReport(request_id=request_id, identifier_type=id_type,
                           identifier_hash=hash_identifier(salt, id_value), requested_at=now)
    previous = _previous_audit(wh, report.identifier_hash)
    unfinished = any(status != "completed" for _, status in previous)
    errors: list[str] = []

    # 1. resolve
    person = resolve_person(wh, email=email, customer_id=customer_id, email_sha256=email_sha256)
    report.found = any(v for k, v in person.ids.items() if k != "email")
    report.identifiers = person.counts()
    log.info("erasure %s: %d identifiers resolved", request_id, sum(report.identifiers.values()))

    # 2. suppress first, so that nothing loaded from now on brings the person back
    report.suppressed = record_suppression(wh, salt, person.suppressible(), request_id, now)

    # 3. remove
    if not person.empty:
        try:
            report.removed.update(scrub_landing(settings, person))
        except Exception as exc:  # noqa: BLE001 - finish the other steps, report the failure
            errors.append(f"landing files: {type(exc).__name__}: {_safe(exc, person)}")
        report.removed.update(remove_from_warehouse(wh, person, now=now))
    # 4. rebuild silver/gold, then clear what history-keeping tables could still hold
    if rebuild and (report.found or unfinished):
        from retailpulse.dbt_runner import run_dbt

        try:
            run_dbt(settings, ["build"])
            report.rebuilt = True
        except Exception as exc:  # noqa: BLE001
            errors.append(f"dbt build failed ({_safe(exc, person)[:300]}); the person's rows were deleted from "
                          "silver/gold but aggregates still include them until the next green build")
        after = remove_from_warehouse(wh, person, schemas=("silver", "gold"), now=now)
        for k, v in after.items():
            report.removed[k] = report.removed.get(k, 0) + v
            report.warnings.append(f"{k} held {v} rows again after the rebuild (removed)")
    if not person.empty:
        try:
            report.removed.update(scrub_model_artifacts(settings, person))
            roots = [settings.data_path]
            if settings.duckdb_path.parent.name == "warehouse":  # only a dedicated warehouse directory
                roots.append(settings.duckdb_path.parent)
            files, binary_hits = scrub_files(settings, person, roots)
            report.removed.update(files)
            for path in binary_hits:
                report.warnings.append(f"binary file still mentions the person: {Path(path).name}")
        except Exception as exc:  # noqa: BLE001
            errors.append(f"files: {type(exc).__name__}: {_safe(exc, person)}")
    # 5. re-publish: the serving copy and BI copies must not keep the person
    serving_exists = (settings.serving_path / "retailpulse_serving.duckdb").exists()
    if publish and (report.found or unfinished) and (serving_exists or settings.publish_postgres_dsn or
                                                     settings.target == "postgres"):
        try:
            from retailpulse.publish import publish_gold

            publish_gold(settings, keep_previous=False)
            report.published = True
        except Exception as exc:  # noqa: BLE001
            errors.append(f"re-publish failed: {_safe(exc, person)[:300]}")
    # 6. verify; fold the write-ahead log into the database file (it held the deleted rows)
    _checkpoint(settings)
    report.residual = residual_in_warehouse(wh, person)
    report.residual.update(residual_in_serving(settings, person))
    report.completed_at = dt.datetime.now(dt.timezone.utc)
    if errors or report.residual:
        report.status = "incomplete"
        report.warnings.extend(errors)
    else:
        report.status = "completed"
    _write_audit(wh, report)
    if report.status != "completed":
        raise ErasureError(report.summary())
    return report


def _checkpoint(settings: Settings) -> None:
    if settings.target != "duckdb":
        return
    import duckdb

    try:
        con = duckdb.connect(str(settings.duckdb_path))
    except duckdb.Error:
        return
    try:
        con.execute("force checkpoint")
    except duckdb.Error as exc:
        log.warning("checkpoint after erasure failed: %s", type(exc).__name__)
    finally:
        con.close()


def _safe(exc: BaseException, person: Person) -> str:
    """An error message with the person's identifiers masked."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    pattern = _file_pattern(person)
    return pattern.sub("[erased]", text) if pattern else text


def erase_command(settings: Settings, email: str | None = None, customer_id: str | None = None) -> str:
    """``retailpulse erase --email ... | --customer-id ...``: the one-paragraph summary to print."""
    return erase_person(settings, email=email, customer_id=customer_id).summary()


__all__ = [
    "ErasureError",
    "ErasureReport",
    "Person",
    "SUPPRESSED_RULE",
    "Suppressor",
    "TOMBSTONE_FIELD",
    "erase_command",
    "erase_person",
    "hash_identifier",
    "is_tombstone",
    "load_salt",
    "normalise",
    "resolve_person",
    "rewrite_landing_batch",
]
