"""Synthetic batch inputs: ``batchlab make-input`` and ``examples/input_example.json``.

Documents look like what a RAG ingestion job sees: Chinese and English prose of
mixed sizes (a log-uniform spread between ``min_bytes`` and ``max_bytes``), a
few duplicates that differ only in id case or whitespace (the idempotency key
must fold them), and a few invalid entries (no id, content of the wrong type,
empty content) that must end ``failed`` without stopping the batch.
Generation is seeded: the same arguments always give the same file.

Two generators: :func:`make_documents` builds a list (the lesson's inputs, the grader's scenarios;
its inserts make it quadratic, fine up to about 100 000); :func:`iter_documents` yields the same
kinds of documents one at a time in constant memory, for ``batchlab make-input`` at any size, and
:func:`write_documents` streams them to a ``.json`` or ``.jsonl`` file.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

ZH_SENTENCES = (
    "检查点记录了批处理的进度，崩溃之后可以从这里继续。",
    "幂等键由来源、规范化的编号、内容哈希和层级组成。",
    "外部服务偶尔超时，需要指数退避和随机抖动来重试。",
    "降级路径只做清洗和固定分块，保证批次能够收敛。",
    "文档级并发可以提高吞吐，但同一文档的分块必须按顺序处理。",
    "重复处理率是衡量恢复质量的关键指标之一。",
    "向量库写入成功之后，才能把检查点标记为完成。",
    "可观测性包括进度、失败原因分布、吞吐和延迟。",
    "在至少一次投递的基础上，用幂等写入实现工程上的恰好一次。",
    "长尾任务会拖慢整个批次，需要合理的超时和并发上限。",
)
EN_SENTENCES = (
    "A checkpoint records how far the batch has come, so a restart can continue from there.",
    "The idempotency key combines the source, the normalized id, the content hash and the layer.",
    "The embedding service times out now and then, so calls are retried with exponential backoff.",
    "The degraded path cleans the text and cuts fixed-size chunks without calling the service.",
    "Documents are processed concurrently, but the chunks of one document go strictly in order.",
    "Resume time is measured from the restart to the first call on an unfinished document.",
    "Only after the vector store confirms the write may the checkpoint say done.",
    "Failure reasons are classified so that the report can show where time and work were lost.",
    "At-least-once delivery plus idempotent writes gives exactly-once results in practice.",
    "A poison document must end failed or degraded while the rest of the batch goes on.",
)
SOURCES = ("wiki", "handbook", "faq", "tickets")


def _counts(n: int, duplicates: int | None, invalid: int | None, empty: int | None) -> tuple[int, int, int, int]:
    """(valid, duplicates, invalid, empty) for ``n`` entries: about 2 % and 1 %, at least 3, 2 and 1 for n >= 100."""
    small = n < 100
    n_dup = duplicates if duplicates is not None else (0 if small else max(3, n // 50))
    n_inv = invalid if invalid is not None else (0 if small else max(2, n // 100))
    n_empty = empty if empty is not None else (0 if small else 1)
    return max(n - n_dup - n_inv - n_empty, 1), n_dup, n_inv, n_empty


def _valid_document(rng: random.Random, i: int, lo: float, hi: float) -> dict[str, Any]:
    size = int(math.exp(rng.uniform(lo, hi)))
    zh = rng.random() < 0.5
    return {
        "id": f"doc-{i:05d}",
        "source": SOURCES[i % len(SOURCES)],
        "title": f"{'文档' if zh else 'Document'} {i}",
        "content": _text(rng, size, zh),
        "metadata": {"lang": "zh" if zh else "en", "updated_at": f"2026-11-{1 + i % 28:02d}T08:00:00Z"},
    }


def _variant(original: dict[str, Any], j: int) -> dict[str, Any]:
    """A re-sent copy of ``original`` that differs only in id case or whitespace (the same identity)."""
    variant = dict(original)
    if j % 2 == 0:
        variant["id"] = original["id"].upper()
    else:
        variant["id"] = f"  {original['id']} "
        variant["content"] = original["content"].replace(" ", "  ", 3) + "\n"
    variant["metadata"] = {**original["metadata"], "updated_at": "2026-11-30T23:59:59Z"}
    return variant


def _invalid(k: int) -> dict[str, Any]:
    if k % 2 == 0:
        return {"source": "wiki", "content": "A document without an id cannot be keyed."}
    return {"id": f"bad-{k:03d}", "source": "faq", "content": 12345}


def _empty(k: int) -> dict[str, Any]:
    return {"id": f"empty-{k:03d}", "source": "tickets", "content": "   \n  "}


def _text(rng: random.Random, target_bytes: int, zh: bool) -> str:
    pool = ZH_SENTENCES if zh else EN_SENTENCES
    parts: list[str] = []
    size = 0
    while size < target_bytes:
        sentence = rng.choice(pool)
        if rng.random() < 0.15:
            sentence += "\n\n"
        parts.append(sentence)
        size += len(sentence.encode("utf-8")) + 1
    text = (" " if not zh else "").join(parts)
    return text.encode("utf-8")[:target_bytes].decode("utf-8", errors="ignore").strip() or pool[0]


def make_documents(
    n: int,
    *,
    seed: int = 15,
    min_bytes: int = 100,
    max_bytes: int = 50_000,
    duplicates: int | None = None,
    invalid: int | None = None,
    empty: int | None = None,
) -> list[dict[str, Any]]:
    """``n`` raw documents; by default about 2 % duplicates and 1 % invalid (at least 3, 2 and 1 for n >= 100)."""
    if n < 1:
        raise ValueError("n must be at least 1")
    rng = random.Random(seed)
    n_valid, n_dup, n_inv, n_empty = _counts(n, duplicates, invalid, empty)
    lo, hi = math.log(max(min_bytes, 1)), math.log(max(max_bytes, min_bytes, 1))
    docs = [_valid_document(rng, i, lo, hi) for i in range(n_valid)]
    for j in range(n_dup):
        variant = _variant(docs[rng.randrange(n_valid)], j)
        docs.insert(rng.randrange(len(docs) + 1), variant)
    bad = [_invalid(k) for k in range(n_inv)] + [_empty(k) for k in range(n_empty)]
    for entry in bad:
        docs.insert(rng.randrange(len(docs) + 1), entry)
    return docs


#: How many recent valid documents :func:`iter_documents` keeps to re-send as duplicates (its memory bound).
RESEND_WINDOW = 256


class _Corpus:
    """Seeded prose in each language, long enough for the largest document; a document is a slice of it.

    Slicing at a sentence start costs a few microseconds where assembling sentence by sentence
    (:func:`_text`) costs about fifty: ``make-input`` writes a million documents in seconds.
    """

    def __init__(self, seed: int, max_bytes: int) -> None:
        rng = random.Random(f"{seed}:corpus")
        self.text: dict[bool, str] = {}
        self.starts: dict[bool, list[int]] = {}
        for zh in (False, True):
            pool, parts, starts, length = (ZH_SENTENCES if zh else EN_SENTENCES), [], [], 0
            while length < 2 * max_bytes + 4096:
                sentence = rng.choice(pool) + ("\n\n" if rng.random() < 0.15 else ("" if zh else " "))
                starts.append(length)
                parts.append(sentence)
                length += len(sentence)
            self.text[zh] = "".join(parts)
            self.starts[zh] = [i for i in starts if i <= length - max_bytes] or [0]

    def document(self, rng: random.Random, i: int, lo: float, hi: float) -> dict[str, Any]:
        size = int(math.exp(rng.uniform(lo, hi)))
        zh = rng.random() < 0.5
        starts = self.starts[zh]
        start = starts[int(rng.random() * len(starts))]
        text = self.text[zh][start:start + (size // 3 if zh else size)].strip()
        return {
            "id": f"doc-{i:05d}",
            "source": SOURCES[i % len(SOURCES)],
            "title": f"{'文档' if zh else 'Document'} {i}",
            "content": text or (ZH_SENTENCES if zh else EN_SENTENCES)[0],
            "metadata": {"lang": "zh" if zh else "en", "updated_at": f"2026-11-{1 + i % 28:02d}T08:00:00Z"},
        }


def iter_documents(n: int, *, seed: int = 15, min_bytes: int = 100, max_bytes: int = 50_000) -> Iterator[dict[str, Any]]:
    """``n`` raw documents, one at a time, in memory independent of ``n``: the mix of :func:`make_documents`.

    Valid documents of the same kinds (sizes log-uniform between ``min_bytes`` and ``max_bytes``,
    Chinese or English prose, ids ``doc-00000`` ...), cut from a seeded corpus; the extras (about 2 %
    re-sent duplicates of one of the last :data:`RESEND_WINDOW` documents, 1 % invalid, one empty)
    placed by selection sampling (each slot is an extra with probability extras left / slots left).
    Not the same file as :func:`make_documents` gives for the seed: that one inserts into a list.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    rng, layout, corpus = random.Random(seed), random.Random(f"{seed}:layout"), _Corpus(seed, max(max_bytes, 1))
    n_valid, n_dup, n_inv, n_empty = _counts(n, None, None, None)
    left = {"dup": n_dup, "inv": n_inv, "empty": n_empty}
    recent: deque[dict[str, Any]] = deque(maxlen=RESEND_WINDOW)
    lo, hi = math.log(max(min_bytes, 1)), math.log(max(max_bytes, min_bytes, 1))
    made = 0
    for slot in range(n):
        extras = sum(left.values())
        kind = None
        if extras and layout.random() * (n - slot) < extras:
            kind = layout.choices(list(left), weights=list(left.values()))[0]
            if kind == "dup" and not recent:
                kind = None  # nothing to re-send yet: this slot is a valid document, the extra comes later
        if kind is None:
            doc = corpus.document(rng, made, lo, hi)
            made += 1
            recent.append(doc)
            yield doc
            continue
        k = {"dup": n_dup, "inv": n_inv, "empty": n_empty}[kind] - left[kind]
        left[kind] -= 1
        yield (_variant(recent[int(layout.random() * len(recent))], k) if kind == "dup"
               else _invalid(k) if kind == "inv" else _empty(k))


_ENCODE = json.JSONEncoder(ensure_ascii=False).encode


def write_input(path: str | Path, documents: list[dict[str, Any]], *, batch_id: str = "batch-001") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"batch_id": batch_id, "documents": documents}
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return path


def write_documents(path: str | Path, documents: Iterable[dict[str, Any]], *, batch_id: str = "batch-001",
                    format: Literal["json", "jsonl"] = "json") -> int:
    """Stream ``documents`` to ``path`` (one per line), atomically; the number written.

    ``json`` writes ``{"batch_id": ..., "documents": [...]}`` with a document per line; ``jsonl`` a
    header line ``{"header": true, "batch_id": ...}`` and a document per line (:mod:`batchlab.batchstream`).
    The file appears whole or not at all (a temporary file beside it, then ``os.replace``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    count = 0
    with open(tmp, "w", encoding="utf-8", buffering=1 << 20) as out:
        if format == "jsonl":
            out.write(json.dumps({"header": True, "batch_id": batch_id}) + "\n")
        else:
            out.write(json.dumps({"batch_id": batch_id}, ensure_ascii=False)[:-1] + ', "documents": [\n')
        for doc in documents:
            if count and format == "json":
                out.write(",\n")
            out.write(_ENCODE(doc))
            if format == "jsonl":
                out.write("\n")
            count += 1
        if format == "json":
            out.write("\n]}\n")
    os.replace(tmp, path)
    return count


def example_documents() -> list[dict[str, Any]]:
    """The committed example: 124 entries, 100 B to 50 KB, 3 duplicates, 2 invalid, 1 empty."""
    return make_documents(124, seed=15, duplicates=3, invalid=2, empty=1)
