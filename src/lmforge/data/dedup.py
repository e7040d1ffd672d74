"""Exact and near-duplicate detection: blake2b of normalised text, then MinHash + LSH.

Near dedup follows Broder (1997) and Leskovec et al., *Mining of Massive Datasets* ch. 3:
shingle each document, take a MinHash signature, band the signature (LSH) to find candidate
pairs, keep the candidates whose estimated Jaccard similarity reaches the threshold, and
keep the lowest index of each connected cluster.

The permutation scheme is datasketch's default ("affine32", datasketch >= 2.0): a 32-bit
shingle hash is pre-mixed with the MurmurHash3 finalizer, then permuted by ``a * h + b mod
2^32`` with odd ``a``, a bijection. Given the same 32-bit shingle hashes and seed our
signatures are bit-identical to ``datasketch.MinHash``; datasketch dropped the older
``(a * h + b) % (2^61 - 1)`` fold because truncating it to 32 bits inflates estimates
(datasketch issue #212), and its uint64 ``%`` measured 11x slower here. Speed comes from
hashing each distinct word once (blake2b), combining word hashes into shingle hashes with
NumPy, and permuting many documents at once in cache-sized blocks (benchmarks/RESULTS.md).
Memory: num_perm * 4 bytes of signature per document, plus one batch of shingles. A
document longer than ``LONG_DOC_CHARS`` is shingled and MinHashed in pieces of
``LONG_DOC_UNITS`` units (overlapping by ngram - 1, so every shingle is seen once; the
signature is the minimum over pieces, identical to the one-piece result): its cost is a few
copies of its text, not ~100 bytes per character of Python objects and a (perms x shingles)
block (a 15 MB Chinese line took 1.4 GB).
"""

from __future__ import annotations

import hashlib
import inspect
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from typing import Any, Literal

import numpy as np

from lmforge.core.text import is_cjk_text
from lmforge.data.clean import LONG_TEXT_CHARS, whitespace_pieces

ShingleUnit = Literal["auto", "word", "char"]

BATCH_DOCS = 2_000  # documents shingled at once, at most; bounds the memory of a batch's
BATCH_CHARS = 8_000_000  # shingles together with this (~60 MB of Python ints for English)
MAX_CACHED_UNITS = 2_000_000  # distinct words whose hash is kept; the cache restarts beyond
LONG_DOC_CHARS = 1 << 18  # longer documents are MinHashed alone, piece by piece
LONG_DOC_UNITS = 1 << 18  # words/characters per piece: a (32 x 256k) uint32 block is 32 MiB
MAX_BUCKET = 128  # an LSH bucket bigger than this compares each member with its next 127 only
_BLOCK_SHINGLES = 1 << 15  # shingles per permutation block: 32 perms x 32k x 4 B = 4 MiB, in cache
_BLOCK_PERMS = 32
_VERIFY_CHUNK = 1 << 16  # candidate pairs compared at once
_FMIX32 = (
    np.uint32(16),
    np.uint32(0x85EBCA6B),
    np.uint32(13),
    np.uint32(0xC2B2AE35),
    np.uint32(16),
)
_FMIX64 = (
    np.uint64(33),
    np.uint64(0xFF51AFD7ED558CCD),
    np.uint64(33),
    np.uint64(0xC4CEB9FE1A85EC53),
    np.uint64(33),
)
_WHITESPACE = re.compile(r"\s+")  # the characters str.split() splits at (Py_UNICODE_ISSPACE)
_NON_SPACE = re.compile(rb"[^ ]+")  # a word in _WORD_TABLE-translated bytes
# bytes.translate table: ASCII letters lowercased, digits and "_" kept, other ASCII -> space,
# non-ASCII bytes kept (so "£10m" or "don’t" stay one token). Same as \w+ on ASCII text.
_WORD_TABLE = bytes(
    c + 32 if 65 <= c <= 90 else c if c >= 128 or chr(c).isalnum() or c == 95 else 32
    for c in range(256)
)


def normalize_for_hash(text: str) -> str:
    """NFKC, casefold and collapse whitespace, so exact dedup ignores case and spacing.

    Equal to ``" ".join(t.split())``, piece by piece for a long text: without a string object
    per word held at once (about 12 bytes per character of English).
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    if len(folded) <= LONG_TEXT_CHARS:
        return " ".join(folded.split())
    pieces = whitespace_pieces(folded, LONG_TEXT_CHARS)
    return "".join(_WHITESPACE.sub(" ", p) for p in pieces).strip()


def _digest(data: bytes, size: int) -> bytes:
    return hashlib.blake2b(data, digest_size=size).digest()


def exact_dedup(texts: list[str]) -> list[int]:
    """Indices of the first occurrence of each normalised text, in input order."""
    seen: set[bytes] = set()
    keep: list[int] = []
    for i, text in enumerate(texts):
        key = _digest(normalize_for_hash(text).encode("utf-8", "surrogatepass"), 16)
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return keep


def _word_bytes(text: str) -> bytes:
    """The text as bytes in which the words are the runs of non-space bytes."""
    if not text.isascii():  # ASCII text is lowercased by the translate table
        text = unicodedata.normalize("NFKC", text).casefold()
    return text.encode("utf-8", "surrogatepass").translate(_WORD_TABLE)


def word_tokens(text: str) -> list[bytes]:
    """The words word shingles are built from: casefolded, split at ASCII non-word characters."""
    return _word_bytes(text).split()


def _char_units(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def _uses_chars(text: str, shingle: ShingleUnit) -> bool:
    return shingle == "char" or (shingle == "auto" and is_cjk_text(text))


def _unit_stream(text: str, shingle: ShingleUnit) -> Iterator[bytes | str]:
    """``word_tokens`` or ``_char_units`` of ``text`` one by one: a long document's units
    without a Python object per unit held at once."""
    if not _uses_chars(text, shingle):
        yield from (m.group() for m in _NON_SPACE.finditer(_word_bytes(text)))
        return
    folded = unicodedata.normalize("NFKC", text).casefold()
    for start in range(0, len(folded), LONG_DOC_UNITS):  # whitespace removal is per character
        yield from "".join(folded[start : start + LONG_DOC_UNITS].split())


class _UnitHasher(dict):
    """Word or character -> 64-bit blake2b, computed once per distinct unit of a corpus."""

    def __missing__(self, unit: bytes | str) -> int:
        data = unit.encode("utf-8", "surrogatepass") if isinstance(unit, str) else unit
        value = int.from_bytes(_digest(data, 8), "little")
        self[unit] = value
        return value


def _fmix64(h: np.ndarray) -> np.ndarray:
    s1, m1, s2, m2, s3 = _FMIX64
    h = h ^ (h >> s1)
    h *= m1
    h ^= h >> s2
    h *= m2
    h ^= h >> s3
    return h


@lru_cache(maxsize=8)
def _unit_multipliers(ngram: int) -> np.ndarray:
    # Fixed odd 64-bit multipliers: shingle = fmix64(sum_k unit[i + k] * m_k mod 2^64).
    return np.random.default_rng(0x5EED).integers(0, 2**63, ngram, dtype=np.uint64) * 2 + 1


def _combine(hv: np.ndarray, ngram: int) -> np.ndarray:
    """One value per run of ``ngram`` consecutive unit hashes (shingle hashes before fmix64)."""
    n_starts = max(len(hv) - ngram + 1, 0)
    combined = np.zeros(n_starts, dtype=np.uint64)
    for k, m in enumerate(_unit_multipliers(ngram)):
        combined += hv[k : k + n_starts] * m
    return combined


def _batch_shingles(
    texts: list[str], shingle: ShingleUnit, ngram: int, units: _UnitHasher
) -> tuple[np.ndarray, np.ndarray]:
    """Shingle hashes of all texts concatenated (uint64) and the count per text."""
    hashes: list[int] = []  # unit hashes of the documents with >= ngram units
    lengths: list[int] = []
    short: dict[int, int] = {}  # document -> hash of its whole text (fewer than ngram units)
    for i, text in enumerate(texts):
        doc = _char_units(text) if _uses_chars(text, shingle) else word_tokens(text)
        if len(doc) >= ngram:
            hashes += map(units.__getitem__, doc)
            lengths.append(len(doc))
        else:
            whole = doc.encode("utf-8", "surrogatepass") if isinstance(doc, str) else b" ".join(doc)
            short[i] = int.from_bytes(_digest(b"short:" + whole, 8), "little")
    combined = _combine(np.array(hashes, dtype=np.uint64), ngram)
    n_starts = len(combined)
    # Drop the ngram - 1 last starts of each document: those shingles run into the next one.
    ends = np.cumsum(np.array(lengths, dtype=np.int64))
    crossing = (ends[:, None] - np.arange(1, ngram)[None, :]).ravel()
    valid = np.ones(n_starts, dtype=bool)
    valid[crossing[crossing < n_starts]] = False
    out = _fmix64(combined[valid])
    counts = np.ones(len(texts), dtype=np.int64)
    long_docs = np.setdiff1d(np.arange(len(texts)), np.fromiter(short, dtype=np.int64))
    counts[long_docs] = np.array(lengths, dtype=np.int64) - ngram + 1
    if short:
        docs = np.fromiter(short, dtype=np.int64)
        at = np.cumsum(counts)[docs] - 1 - np.arange(len(docs))  # position among long shingles
        out = np.insert(out, at, np.fromiter(short.values(), dtype=np.uint64))
    return out, counts


def shingle_hashes(text: str, shingle: ShingleUnit = "auto", ngram: int = 5) -> np.ndarray:
    """64-bit hashes of a text's shingles (one per position; repeats are kept).

    Word n-grams, or character n-grams for Chinese/Japanese when ``shingle="auto"``; a text
    with fewer than ``ngram`` units gets one shingle, the hash of its whole text.
    """
    return _batch_shingles([text], shingle, ngram, _UnitHasher())[0]


def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    # Drawn exactly as datasketch.MinHash(num_perm, seed) draws its affine32 permutations.
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def _signatures(hashes: np.ndarray, counts: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MinHash of each document's slice of ``hashes``: (len(counts), num_perm) uint32."""
    s1, m1, s2, m2, s3 = _FMIX32
    h = hashes.astype(np.uint32)  # low 32 bits, like datasketch's sha1_hash32
    h ^= h >> s1
    h *= m1
    h ^= h >> s2
    h *= m2
    h ^= h >> s3
    starts = np.concatenate([[0], np.cumsum(counts)])
    out = np.empty((len(a), len(counts)), dtype=np.uint32)
    first = 0
    while first < len(counts):  # blocks of whole documents, about _BLOCK_SHINGLES each
        last = int(np.searchsorted(starts, starts[first] + _BLOCK_SHINGLES, "right")) - 1
        last = min(max(last, first + 1), len(counts))
        lo, hi = starts[first], starts[last]
        offsets = starts[first:last] - lo
        for p in range(0, len(a), _BLOCK_PERMS):
            block = np.multiply.outer(a[p : p + _BLOCK_PERMS], h[lo:hi])  # (perms, shingles)
            block += b[p : p + _BLOCK_PERMS, None]
            out[p : p + _BLOCK_PERMS, first:last] = np.minimum.reduceat(block, offsets, axis=1)
        first = last
    return out.T


def _long_signature(
    text: str, shingle: ShingleUnit, ngram: int, units: _UnitHasher, a: np.ndarray, b: np.ndarray
) -> np.ndarray | None:
    """MinHash of one long document, (num_perm,), piece by piece; None when it has fewer than
    ``ngram`` units (its one shingle is the hash of the whole text, as ``_batch_shingles``)."""
    stream = _unit_stream(text, shingle)
    sig = np.full(len(a), np.iinfo(np.uint32).max, dtype=np.uint32)
    tail = np.empty(0, dtype=np.uint64)  # the last ngram - 1 unit hashes of the previous piece
    seen = 0
    while piece := list(islice(stream, LONG_DOC_UNITS)):
        if len(units) > MAX_CACHED_UNITS:
            units.clear()
        hv = np.concatenate([tail, np.fromiter(map(units.__getitem__, piece), np.uint64)])
        seen += len(piece)
        shingles = _fmix64(_combine(hv, ngram))
        if len(shingles):
            counts = np.array([len(shingles)], dtype=np.int64)
            sig = np.minimum(sig, _signatures(shingles, counts, a, b)[0])
        tail = hv[max(len(hv) - (ngram - 1), 0) :]
    return sig if seen >= ngram else None


def minhash_signatures(shingle_sets: list[np.ndarray], num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures, (n, num_perm) uint32, of non-empty arrays of shingle hashes.

    Only the low 32 bits of each hash are used; with the same 32-bit hashes and seed the rows
    equal ``datasketch.MinHash(num_perm, seed).update_batch(...)`` hash values.
    """
    if any(len(s) == 0 for s in shingle_sets):
        raise ValueError("every shingle set must be non-empty (shingle_hashes never returns empty)")
    if not shingle_sets:
        return np.empty((0, num_perm), dtype=np.uint32)
    counts = np.array([len(s) for s in shingle_sets], dtype=np.int64)
    hashes = np.concatenate([np.asarray(s, dtype=np.uint64) for s in shingle_sets])
    return _signatures(hashes, counts, *_permutations(num_perm, seed))


@lru_cache(maxsize=64)
def optimal_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """LSH (bands, rows) with bands * rows <= num_perm minimising the false-positive plus
    false-negative probability mass, weighted 0.5/0.5 (datasketch's ``_optimal_param``).

    A pair of similarity s collides in some band with probability 1 - (1 - s^r)^b, a
    polynomial of degree b * r <= num_perm, so Gauss-Legendre with num_perm / 2 + 1 nodes
    integrates it exactly, for all (b, r) at once.
    """
    grid = [(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)]
    bands, rows = np.array(grid, dtype=float).T[:, :, None]  # (pairs, 1) each
    nodes, weights = np.polynomial.legendre.leggauss(num_perm // 2 + 1)
    s_fp = threshold * (nodes + 1) / 2  # nodes mapped to [0, threshold]
    s_fn = threshold + (1 - threshold) * (nodes + 1) / 2  # and to [threshold, 1]
    fp = (1 - (1 - s_fp**rows) ** bands) @ weights * threshold / 2
    fn = (1 - s_fn**rows) ** bands @ weights * (1 - threshold) / 2
    best = int(np.argmin(0.5 * fp + 0.5 * fn))  # first minimum, as datasketch's strict "<"
    return grid[best]


@dataclass
class NearDedupResult:
    keep: list[int]  # indices kept, ascending
    clusters: list[list[int]]  # groups of >= 2 near duplicates; first is the kept one
    pairs: int  # candidate pairs verified as duplicates


def _bucket_pairs(keys: np.ndarray) -> np.ndarray:
    """(i, j) pairs, i < j, of documents whose band keys are equal."""
    order = np.argsort(keys, kind="stable")  # stable: ascending index within a bucket
    sorted_keys = keys[order]
    new = np.concatenate([[True], sorted_keys[1:] != sorted_keys[:-1]])
    bucket = np.cumsum(new) - 1
    size = np.bincount(bucket)
    multi = size[bucket] >= 2
    docs, bucket = order[multi], bucket[multi]
    pairs = [np.empty((0, 2), dtype=np.int64)]
    for d in range(1, min(int(size.max()), MAX_BUCKET)):  # the d-th next member of a bucket
        same = bucket[d:] == bucket[:-d]
        pairs.append(np.stack([docs[:-d][same], docs[d:][same]], axis=1))
    return np.concatenate(pairs)


def _verified_pairs(sig: np.ndarray, bands: int, rows: int, threshold: float) -> np.ndarray:
    n, num_perm = sig.shape
    mult = _unit_multipliers(rows)
    found = []
    for k in range(bands):  # a band's rows -> one 64-bit key; collisions are verified away
        keys = (sig[:, k * rows : (k + 1) * rows].astype(np.uint64) * mult).sum(axis=1)
        p = _bucket_pairs(keys)
        found.append(p[:, 0] * n + p[:, 1])
    codes = np.unique(np.concatenate(found))
    i, j = codes // n, codes % n
    similar = np.empty(len(codes), dtype=bool)
    for s in range(0, len(codes), _VERIFY_CHUNK):
        chunk = slice(s, s + _VERIFY_CHUNK)
        equal = np.count_nonzero(sig[i[chunk]] == sig[j[chunk]], axis=1)
        similar[chunk] = equal / num_perm >= threshold  # as datasketch's MinHash.jaccard()
    return np.stack([i[similar], j[similar]], axis=1)


def _batches(texts: list[str]) -> Iterator[tuple[int, int]]:
    """(start, end) of consecutive batches of at most BATCH_DOCS documents or ~BATCH_CHARS;
    a document longer than LONG_DOC_CHARS is a batch of its own."""
    start = chars = 0
    for i, text in enumerate(texts):
        if len(text) > LONG_DOC_CHARS:
            if start < i:
                yield start, i
            yield i, i + 1
            start, chars = i + 1, 0
            continue
        chars += len(text)
        if i + 1 - start == BATCH_DOCS or chars >= BATCH_CHARS:
            yield start, i + 1
            start, chars = i + 1, 0
    if start < len(texts):
        yield start, len(texts)


def near_duplicate_pairs(
    texts: list[str],
    *,
    threshold: float = 0.8,
    num_perm: int = 128,
    bands: int | None = None,
    shingle: ShingleUnit = "auto",
    ngram: int = 5,
    seed: int = 0,
    progress: Callable[[int], object] | None = None,
) -> np.ndarray:
    """(i, j) pairs, i < j, sorted, whose estimated Jaccard similarity is >= threshold.

    Candidates are pairs equal in at least one LSH band; each is verified on the whole
    signature (the fraction of equal MinHash values), so LSH only decides what is compared.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if ngram < 1 or num_perm < 1:
        raise ValueError(f"ngram and num_perm must be >= 1, got {ngram} and {num_perm}")
    if bands is not None and (bands < 1 or num_perm % bands):
        raise ValueError(f"bands ({bands}) must be a positive divisor of num_perm ({num_perm})")
    if shingle not in ("auto", "word", "char"):
        raise ValueError(f"shingle must be 'auto', 'word' or 'char', got {shingle!r}")
    if not texts:
        return np.empty((0, 2), dtype=np.int64)
    bands, rows = (bands, num_perm // bands) if bands else optimal_bands(threshold, num_perm)
    a, b = _permutations(num_perm, seed)
    units = _UnitHasher()
    sig = np.empty((len(texts), num_perm), dtype=np.uint32)  # (docs, perms)
    for start, end in _batches(texts):
        if len(units) > MAX_CACHED_UNITS:
            units.clear()  # hashes are deterministic, so this only costs recomputation
        long = None
        if len(texts[start]) > LONG_DOC_CHARS:  # alone in its batch
            long = _long_signature(texts[start], shingle, ngram, units, a, b)
        if long is not None:
            sig[start] = long
        else:
            sig[start:end] = _signatures(
                *_batch_shingles(texts[start:end], shingle, ngram, units), a, b
            )
        if progress is not None:
            progress(end - start)
    return _verified_pairs(sig, bands, rows, threshold)


def near_dedup(texts: list[str], **options: Any) -> NearDedupResult:
    """Keep the lowest index of each cluster of near duplicates (Jaccard >= threshold).

    ``options`` are ``near_duplicate_pairs``' keywords (threshold, num_perm, bands, shingle,
    ngram, seed, progress), with its defaults. Clusters are connected components of the
    verified pairs, so a chain a~b~c is one cluster even if a and c are less similar.
    Deterministic for a given seed.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    # a misspelt keyword fails here even when there is nothing to compare
    inspect.signature(near_duplicate_pairs).bind(texts, **options)
    if not texts:
        return NearDedupResult(keep=[], clusters=[], pairs=0)
    pairs = near_duplicate_pairs(texts, **options)
    n = len(texts)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    _, first = np.unique(label, return_index=True)  # lowest index of each component
    order = np.argsort(label, kind="stable")
    groups = np.split(order, np.cumsum(np.bincount(label))[:-1])
    clusters = sorted((g.tolist() for g in groups if len(g) > 1), key=lambda g: g[0])
    return NearDedupResult(keep=sorted(first.tolist()), clusters=clusters, pairs=len(pairs))
