"""The document pipeline from Lessons 11-14, given to students as pure functions.

* :func:`clean_text` normalizes a document (NFC, whitespace collapsed);
* :func:`chunk_text` splits it at sentence boundaries into chunks of at most
  ``max_chars`` characters (the full path: its chunks are sent, in order, to the
  external embedding service);
* :func:`fixed_chunks` + :func:`local_embed` are the **degraded path**: fixed-size
  chunks and a cheap local embedding, no external service, so a document can
  still be committed (marked ``degraded``, to be backfilled later) when the
  service keeps failing;
* :func:`embed` is the deterministic embedding the simulated service returns.

Because everything here is pure and deterministic, :func:`expected_output` is
the oracle: the grader compares what a run committed with what the pipeline
gives without any fault (the 6.5840 ``mrsequential`` idea).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import struct
from collections.abc import Iterable, Sequence
from typing import Any

from .documents import Batch, Document, normalize_text

CHUNK_MAX_CHARS = 400
DEGRADED_CHUNK_CHARS = 300
EMBED_DIM = 8

MODE_FULL = "full"
MODE_DEGRADED = "degraded"

_SENTENCE_END = re.compile(r"(?<=[.!?。！？；;])")


def clean_text(text: str) -> str:
    """Normalize a document's text (Lesson 11's cleaning): NFC and collapsed whitespace."""
    return normalize_text(text)


def chunk_text(text: str, max_chars: int = CHUNK_MAX_CHARS) -> list[str]:
    """Split cleaned text into chunks of whole sentences, each at most ``max_chars`` long.

    Sentences keep their own separators (a space after "." but none after "。"),
    so joining Chinese sentences adds no space. A sentence longer than
    ``max_chars`` is cut into ``max_chars`` pieces. Deterministic: the same text
    always gives the same chunks.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    if len(text) <= max_chars:  # one chunk: every sentence fits (the loop below gives the same, slower)
        whole = text.strip()
        return [whole] if whole else []
    chunks: list[str] = []
    current = ""
    for piece in _SENTENCE_END.split(text):
        if not piece.strip():
            continue
        if len(current) + len(piece) <= max_chars:
            current += piece
            continue
        if current.strip():
            chunks.append(current.strip())
        current = piece.lstrip()
        while len(current) > max_chars:
            chunks.append(current[:max_chars].strip())
            current = current[max_chars:].lstrip()
    if current.strip():
        chunks.append(current.strip())
    return [c for c in chunks if c]


def fixed_chunks(text: str, size: int = DEGRADED_CHUNK_CHARS) -> list[str]:
    """The degraded path's chunking: fixed-size pieces, no sentence awareness."""
    if size < 1:
        raise ValueError("size must be positive")
    return [text[i : i + size] for i in range(0, len(text), size)]


_UNPACK = struct.Struct(f">{EMBED_DIM}H").unpack


def _component(v: int) -> float:
    """One vector component from one 16-bit word of the digest: in [-1, 1], five decimals."""
    return round((v / 32767.5) - 1.0, 5)


def _vector(seed: bytes) -> list[float]:
    digest = hashlib.blake2b(seed, digest_size=EMBED_DIM * 2).digest()
    return [_component(v) for v in _UNPACK(digest)]


def embed(text: str) -> list[float]:
    """The external model's embedding of one chunk (deterministic stand-in)."""
    return _vector(b"model:" + text.encode("utf-8"))


def local_embed(text: str) -> list[float]:
    """The degraded path's local embedding: cheap, deterministic, different from :func:`embed`."""
    return _vector(b"local:" + text.encode("utf-8"))


def degraded_chunks(doc: Document) -> tuple[list[str], list[list[float]]]:
    """Run the whole degraded path for one document: clean, fixed chunks, local vectors."""
    chunks = fixed_chunks(clean_text(doc.content))
    return chunks, [local_embed(c) for c in chunks]


def expected_output(doc: Document, mode: str = MODE_FULL) -> dict[str, Any]:
    """What a correct run commits for ``doc`` in ``mode`` (the oracle)."""
    text = clean_text(doc.content)
    if mode == MODE_FULL:
        chunks = chunk_text(text)
        vectors = [embed(c) for c in chunks]
    elif mode == MODE_DEGRADED:
        chunks, vectors = degraded_chunks(doc)
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return {"mode": mode, "chunks": list(chunks), "vectors": [list(v) for v in vectors]}


def output_matches(doc: Document, mode: str, chunks: Sequence[str], vectors: Sequence[Sequence[float]]) -> bool:
    """True when committed chunks and vectors equal the oracle's for ``mode``."""
    if mode not in (MODE_FULL, MODE_DEGRADED):
        return False
    want = expected_output(doc, mode)
    return bool(list(chunks) == want["chunks"] and [list(v) for v in vectors] == want["vectors"])


@functools.cache
def _component_texts() -> tuple[str, ...]:
    """The JSON text (``float.__repr__``, as :mod:`json` writes a float) of each of the 65 536 possible components."""
    return tuple(map(float.__repr__, map(_component, range(1 << 16))))


#: A string's JSON text as ``json.dumps(..., ensure_ascii=False)`` writes it (the encoder's own C function).
_STR_JSON = json.encoder.encode_basestring


def expected_json(text: str, mode: str) -> tuple[str, str]:
    """:func:`expected_output`'s chunks and vectors as JSON texts, for a document whose *cleaned* text is ``text``.

    ``json.dumps(chunks, ensure_ascii=False)`` and ``json.dumps(vectors)``, the way the sink stores an
    output, built without a float: each vector is its digest's eight words looked up in a table of
    their texts. The metrics compare a committed output's stored texts with these first; equal texts
    are equal outputs (a JSON text decodes to one value, and these decode to the oracle's own lists),
    and anything else is decoded and compared with :func:`output_matches`, so the verdict is the same.
    """
    if mode == MODE_FULL:
        chunks, prefix = chunk_text(text), b"model:"
    elif mode == MODE_DEGRADED:
        chunks, prefix = fixed_chunks(text), b"local:"
    else:
        raise ValueError(f"unknown mode {mode!r}")
    word = _component_texts().__getitem__
    if mode == MODE_FULL and len(chunks) == 1:  # one chunk, most documents: no generator, no joins of lists
        digest = hashlib.blake2b(prefix + chunks[0].encode("utf-8"), digest_size=EMBED_DIM * 2).digest()
        return "[" + _STR_JSON(chunks[0]) + "]", "[[" + ", ".join(map(word, _UNPACK(digest))) + "]]"
    blake2b, size = hashlib.blake2b, EMBED_DIM * 2
    vectors = "], [".join(", ".join(map(word, _UNPACK(blake2b(prefix + c.encode("utf-8"), digest_size=size).digest())))
                          for c in chunks)
    return "[" + ", ".join(map(_STR_JSON, chunks)) + "]", f"[[{vectors}]]" if chunks else "[]"


def planned_calls(batch: Batch | Iterable[Document]) -> int:
    """How many service calls a fault-free run of ``batch`` makes (to place a crash in the middle).

    It lives here, beside :func:`chunk_text`, because the demo, the dashboard, the notebooks and the
    grader's scenarios all place crashes with it: one count of "a call per chunk of each unique document".
    ``batch`` is a :class:`Batch`, or its unique documents already folded (a stream's:
    :func:`batchlab.inventory.iter_unique`), so a large input is counted without a list.
    """
    unique = batch.unique_documents() if isinstance(batch, Batch) else batch
    return sum(len(chunk_text(clean_text(doc.content))) for doc in unique)
