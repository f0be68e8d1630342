"""Synthetic batch inputs: ``batchlab make-input`` and ``examples/input_example.json``.

Documents look like what a RAG ingestion job sees: Chinese and English prose of
mixed sizes (a log-uniform spread between ``min_bytes`` and ``max_bytes``), a
few duplicates that differ only in id case or whitespace (the idempotency key
must fold them), and a few invalid entries (no id, content of the wrong type,
empty content) that must end ``failed`` without stopping the batch.
Generation is seeded: the same arguments always give the same file.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

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
    small = n < 100
    n_dup = duplicates if duplicates is not None else (0 if small else max(3, n // 50))
    n_inv = invalid if invalid is not None else (0 if small else max(2, n // 100))
    n_empty = empty if empty is not None else (0 if small else 1)
    n_valid = max(n - n_dup - n_inv - n_empty, 1)
    docs: list[dict[str, Any]] = []
    lo, hi = math.log(max(min_bytes, 1)), math.log(max(max_bytes, min_bytes, 1))
    for i in range(n_valid):
        size = int(math.exp(rng.uniform(lo, hi)))
        zh = rng.random() < 0.5
        docs.append({
            "id": f"doc-{i:05d}",
            "source": SOURCES[i % len(SOURCES)],
            "title": f"{'文档' if zh else 'Document'} {i}",
            "content": _text(rng, size, zh),
            "metadata": {"lang": "zh" if zh else "en", "updated_at": f"2026-11-{1 + i % 28:02d}T08:00:00Z"},
        })
    for j in range(n_dup):
        original = docs[rng.randrange(n_valid)]
        variant = dict(original)
        if j % 2 == 0:
            variant["id"] = original["id"].upper()
        else:
            variant["id"] = f"  {original['id']} "
            variant["content"] = original["content"].replace(" ", "  ", 3) + "\n"
        variant["metadata"] = {**original["metadata"], "updated_at": "2026-11-30T23:59:59Z"}
        docs.insert(rng.randrange(len(docs) + 1), variant)
    bad: list[dict[str, Any]] = []
    for k in range(n_inv):
        if k % 2 == 0:
            bad.append({"source": "wiki", "content": "A document without an id cannot be keyed."})
        else:
            bad.append({"id": f"bad-{k:03d}", "source": "faq", "content": 12345})
    bad.extend({"id": f"empty-{k:03d}", "source": "tickets", "content": "   \n  "} for k in range(n_empty))
    for entry in bad:
        docs.insert(rng.randrange(len(docs) + 1), entry)
    return docs


def write_input(path: str | Path, documents: list[dict[str, Any]], *, batch_id: str = "batch-001") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"batch_id": batch_id, "documents": documents}
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return path


def example_documents() -> list[dict[str, Any]]:
    """The committed example: 124 entries, 100 B to 50 KB, 3 duplicates, 2 invalid, 1 empty."""
    return make_documents(124, seed=15, duplicates=3, invalid=2, empty=1)
