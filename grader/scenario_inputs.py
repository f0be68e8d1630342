"""The acceptance scenarios' inputs, all seeded: the same scenario always sees the same documents.

A scenario names its input (``Scenario.input``); :data:`INPUTS` maps the name to the function that builds it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

from batchlab.examples import EN_SENTENCES, example_documents, make_documents
from batchlab.inventory import Inventory

#: The whales' ids: a random-kill scenario makes every call of theirs slow (``FaultPlan.slow_ids``),
#: so each stays in flight several times longer than the latest random kill (tests/grader checks it).
WHALE_IDS = ("whale-0", "whale-1", "whale-2")


def whale_documents(seed: int) -> list[dict[str, Any]]:
    """A batch led by three ~100 KB documents (about 250 chunks each, the long tail).

    A whale stays in flight for most of a pass, so a random kill always lands
    while work is outstanding, however fast the rest of the batch goes.
    """
    docs = make_documents(200, seed=seed, max_bytes=4000)
    whales = []
    for w in range(3):
        sentences = [f"{EN_SENTENCES[(i * 7 + w) % len(EN_SENTENCES)]} (part {w}.{i})" for i in range(1100)]
        whales.append({"id": f"whale-{w}", "source": "handbook", "title": f"Whale {w}",
                       "content": " ".join(sentences), "metadata": {"lang": "en"}})
    return whales + docs


def duplicate_documents(seed: int) -> list[dict[str, Any]]:
    """The example batch plus 16 re-sent documents: same identity, different id case, spacing, Unicode form, metadata."""
    docs = example_documents()
    valid = [e.raw for e in Inventory.of(docs).entries if e.document is not None]
    extra: list[dict[str, Any]] = []
    for j, original in enumerate(valid[5:45:3][:12]):
        variant = dict(original)
        kind = j % 4
        if kind == 0:
            variant["id"] = original["id"].upper()
        elif kind == 1:
            variant["id"] = f"\t{original['id']}  "
        elif kind == 2:
            variant["content"] = "  " + original["content"].replace(" ", "   ", 5) + "\n\n"
        else:
            variant["metadata"] = {**original.get("metadata", {}), "updated_at": f"2026-12-{j + 1:02d}T00:00:00Z"}
            variant["title"] = original.get("title", "") + " (v2)"
        extra.append(variant)
    accented = "Café résumé naïve: the crème brûlée was déjà vu. " * 12
    extra.append({"id": "doc-accent", "source": "wiki", "content": unicodedata.normalize("NFC", accented)})
    for k in range(3):  # the NFD spelling of the same text is the same document
        extra.append({"id": "DOC-accent" if k else "doc-accent", "source": "wiki",
                      "content": unicodedata.normalize("NFD", accented)})
    out = list(docs)
    step = max(len(out) // (len(extra) + 1), 1)
    for n, entry in enumerate(extra):
        out.insert(min((n + 1) * step + n, len(out)), entry)
    return out


def invalid_mix_documents(seed: int) -> list[Any]:
    """The example batch (3 invalid entries) plus 2 more kinds of invalid entry: 5 of 126."""
    docs: list[Any] = example_documents()
    docs.insert(17, {"id": 4711, "source": "faq", "content": "An id must be a string."})
    docs.insert(60, "not a document at all")
    return docs


def large_documents(seed: int) -> list[dict[str, Any]]:
    return make_documents(1000, seed=seed, max_bytes=3000)


def small_documents(seed: int) -> list[dict[str, Any]]:
    return make_documents(40, seed=seed, max_bytes=3000, duplicates=1, invalid=1, empty=0)


INPUTS: dict[str, Callable[[int], list[dict[str, Any]]]] = {
    "example": lambda seed: example_documents(),
    "whales": whale_documents,
    "duplicates": duplicate_documents,
    "invalid_mix": invalid_mix_documents,
    "large": large_documents,
    "small": small_documents,
}
