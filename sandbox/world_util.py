"""Vectorised helpers for the sandbox world generator (ids, strings, time, random streams).

Everything here works on whole numpy / pyarrow arrays; nothing loops over rows in Python.
Times inside the generator are ``int64`` microseconds since the Unix epoch (UTC).
"""

from __future__ import annotations

import datetime as dt
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

US = 1_000_000
MINUTE = 60 * US
HOUR = 3600 * US
DAY = 86_400 * US

TS = pa.timestamp("us", tz="UTC")

BASE62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
ALNUM = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
DIGITS = np.frombuffer(b"0123456789", dtype=np.uint8)
_SF_CHECK = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", dtype=np.uint8)


class Streams:
    """Named, independent random sub-streams: ``streams("people")`` is a fresh
    ``Generator(PCG64(SeedSequence([seed, crc32(name)])))`` - adding a stream never shifts another."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def __call__(self, name: str) -> np.random.Generator:
        ss = np.random.SeedSequence([self.seed, zlib.crc32(name.encode())])
        return np.random.Generator(np.random.PCG64(ss))


# --------------------------------------------------------------------------------------------
# time
def date_us(d: dt.date) -> int:
    return int((dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc).timestamp())) * US


def ts_array(us: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """int64 microseconds -> timestamp[us, tz=UTC] (mask = True where null)."""
    arr = pa.array(np.asarray(us, dtype=np.int64), mask=mask)
    return arr.cast(TS)


def date_array(us: np.ndarray) -> pa.Array:
    days = (np.asarray(us, dtype=np.int64) // DAY).astype(np.int32)
    return pa.array(days, type=pa.int32()).cast(pa.date32())


def diurnal_offsets(rng: np.random.Generator, n: int) -> np.ndarray:
    """Time-of-day offsets (us) following an online-shopping day curve (UTC-ish)."""
    w = np.array([2, 1.2, .8, .6, .6, .8, 1.5, 2.5, 3.5, 4, 4.2, 4.5,
                  4.8, 4.8, 4.6, 4.5, 4.6, 5, 5.6, 6.2, 6.4, 5.8, 4.4, 3], dtype=float)
    hours = rng.choice(24, size=n, p=w / w.sum())
    return hours.astype(np.int64) * HOUR + rng.integers(0, HOUR, size=n, dtype=np.int64)


def group_starts(keys_sorted: np.ndarray) -> np.ndarray:
    """Boolean: first row of each run of equal keys (array must be sorted by key)."""
    n = len(keys_sorted)
    out = np.ones(n, dtype=bool)
    if n > 1:
        out[1:] = keys_sorted[1:] != keys_sorted[:-1]
    return out


def rank_in_group(keys_sorted: np.ndarray) -> np.ndarray:
    """0-based position of each row within its run of equal keys (sorted input)."""
    n = len(keys_sorted)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = group_starts(keys_sorted)
    idx = np.arange(n, dtype=np.int64)
    start_idx = np.maximum.accumulate(np.where(starts, idx, 0))
    return idx - start_idx


def segment_cumsum(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Cumulative sum restarting at every segment (segments given by their lengths)."""
    cs = np.cumsum(values)
    ends = np.cumsum(counts)
    starts = ends - counts
    base = np.zeros(len(counts), dtype=cs.dtype)
    nz = starts > 0
    base[nz] = cs[starts[nz] - 1]
    return cs - np.repeat(base, counts)


# --------------------------------------------------------------------------------------------
# strings
def strings_from_matrix(mat: np.ndarray) -> pa.Array:
    """uint8 matrix (n, width) of ASCII codes -> pyarrow string array (fixed width)."""
    mat = np.ascontiguousarray(mat, dtype=np.uint8)
    n, w = mat.shape
    offsets = np.arange(0, (n + 1) * w, w, dtype=np.int32) if n * w < 2**31 else None
    if offsets is None:
        offsets64 = np.arange(0, (n + 1) * w, w, dtype=np.int64)
        return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets64), pa.py_buffer(mat.tobytes())).cast(pa.string())
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(mat.tobytes()))


def random_strings(rng: np.random.Generator, n: int, width: int, alphabet: np.ndarray = ALNUM,
                   prefix: str = "") -> pa.Array:
    raw = np.frombuffer(rng.bytes(n * width), dtype=np.uint8).reshape(n, width)
    body = alphabet[raw % len(alphabet)]
    if prefix:
        p = np.frombuffer(prefix.encode(), dtype=np.uint8)
        body = np.hstack([np.broadcast_to(p, (n, len(p))), body])
    return strings_from_matrix(body)


def digit_matrix(values: np.ndarray, width: int) -> np.ndarray:
    v = np.asarray(values, dtype=np.int64)
    pw = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (DIGITS[(v[:, None] // pw[None, :]) % 10]).astype(np.uint8)


def padded_ids(prefix: str, values: np.ndarray, width: int) -> pa.Array:
    """prefix + zero-padded decimal number, e.g. ``ord_0000042``."""
    v = np.asarray(values, dtype=np.int64)
    p = np.frombuffer(prefix.encode(), dtype=np.uint8)
    mat = np.hstack([np.broadcast_to(p, (len(v), len(p))), digit_matrix(v, width)])
    return strings_from_matrix(mat)


def number_strings(values: np.ndarray) -> pa.Array:
    """Decimal text of non-negative ints (variable width)."""
    return pc.cast(pa.array(np.asarray(values, dtype=np.int64)), pa.string())


def sf_ids(prefix: str, seq: np.ndarray, pod: str = "8d") -> pa.Array:
    """Salesforce-style 18-character ids: 3-char key prefix + pod + base62 sequence + the
    real case-safety checksum (3 chars)."""
    seq = np.asarray(seq, dtype=np.int64)
    n = len(seq)
    head = np.frombuffer((prefix + pod).encode(), dtype=np.uint8)
    width = 15 - len(head)
    pw = 62 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    body = BASE62[(seq[:, None] // pw[None, :]) % 62]
    mat15 = np.hstack([np.broadcast_to(head, (n, len(head))), body]).astype(np.uint8)
    upper = ((mat15 >= ord("A")) & (mat15 <= ord("Z"))).astype(np.int64).reshape(n, 3, 5)
    bits = (upper * (1 << np.arange(5))[None, None, :]).sum(axis=2)
    check = _SF_CHECK[bits]
    return strings_from_matrix(np.hstack([mat15, check]))


def join(*parts) -> pa.Array:
    """Element-wise concatenation of arrays and/or python strings (nulls propagate)."""
    args = [p if isinstance(p, (pa.Array, pa.ChunkedArray)) else pa.scalar(str(p)) for p in parts]
    return pc.binary_join_element_wise(*args, "")


def take(strings, idx: np.ndarray) -> pa.Array:
    """Look up a (small) vocabulary by integer codes."""
    vocab = strings if isinstance(strings, pa.Array) else pa.array(list(strings), type=pa.string())
    return vocab.take(pa.array(np.asarray(idx, dtype=np.int64)))


def where(mask: np.ndarray, a, b) -> pa.Array:
    return pc.if_else(pa.array(np.asarray(mask, dtype=bool)), a, b)


def null_where(mask: np.ndarray, arr: pa.Array) -> pa.Array:
    return pc.if_else(pa.array(np.asarray(mask, dtype=bool)), pa.scalar(None, type=arr.type), arr)


def to_py_strings(arr: pa.Array) -> list:
    return arr.to_pylist()


def dict_col(vocab, idx: np.ndarray, mask: np.ndarray | None = None) -> pa.DictionaryArray:
    """Dictionary-encoded column (indices into a vocabulary): no string copies. Written with
    ``store_schema=False`` so readers get plain ``string`` columns back."""
    if not isinstance(vocab, pa.Array):
        vocab = pa.array(list(vocab), type=pa.string())
    if isinstance(vocab, pa.DictionaryArray):
        vocab = vocab.dictionary.take(vocab.indices)
    idx = np.asarray(idx, dtype=np.int32)
    if vocab.null_count:      # parquet cannot write nulls inside a dictionary: move them to the indices
        vnull = vocab.is_null().to_numpy(zero_copy_only=False)
        mask = vnull[idx] if mask is None else (np.asarray(mask, dtype=bool) | vnull[idx])
        vocab = vocab.fill_null("")
    ind = pa.array(idx, mask=None if mask is None else np.asarray(mask, dtype=bool))
    return pa.DictionaryArray.from_arrays(ind, vocab)
