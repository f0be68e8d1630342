"""The input's side of the metric fold: each input entry parsed and keyed, each identity's outputs judged once.

Split from :mod:`batchlab.metric_fold` (the ledger's side and the whole fold), which re-exports these names.
:class:`InputFold` counts N, R, U, the reasons, and each identity met for the first time against its
committed outputs (the oracle's texts, :mod:`batchlab.metric_sinks`); :class:`InputBlock` is a run of
entries folded as far as they can be without the entries before them (:mod:`batchlab.metric_split`'s
child sends them; :meth:`InputFold.merge` finishes them in input order).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .docmodel import Document, ident_of_normalized, try_parse
from .fold_store import FoldStore
from .metric_sinks import Judged
from .pipeline import MODE_DEGRADED, clean_text

#: Input entries judged together (one query for their identities, one for their outputs); under SQLite's 999 variables.
BLOCK = 128


class Judge(Protocol):
    """What the fold asks of a sink: each committed output of each identity against the oracle."""

    def verdicts_of(self, block: Sequence[Judged]) -> list[list[tuple[str, str, bool]]]: ...


#: What the fold keeps of one identity's committed outputs: committed correctly, its first correct output
#: degraded, and the document ids of the wrong ones (:func:`verdict_of`).
Verdict = tuple[bool, bool, list[str]]


def verdict_of(outputs: Iterable[tuple[str, str, bool]]) -> Verdict:
    """One identity's ``(doc_id, mode, equals the oracle's)`` outputs, in the sink's order, as the figures count them."""
    done = degraded = False
    wrong: list[str] = []
    for doc_id, mode, ok in outputs:
        if ok:
            if not done and mode == MODE_DEGRADED:
                degraded = True
            done = True
        else:
            wrong.append(doc_id)
    return done, degraded, wrong


@dataclass
class InputBlock:
    """Consecutive input entries folded as far as they can be without the entries before them.

    What :mod:`batchlab.metric_split`'s child sends for the end of the input: the rejections' codes, the
    valid entries' ``(ident, doc_id)`` in order, and each one's verdict. :meth:`InputFold.merge`
    finishes it in input order (the verdicts of identities met before are not used).
    """

    total: int
    reasons: list[str]
    pairs: list[tuple[str, str]]
    verdicts: list[Verdict]


def parsed_entries(documents: Iterable[Any], reject: Callable[[str], None]) -> Iterator[Judged]:
    """The valid entries of ``documents`` as ``(ident, document, cleaned text)``; each rejection's code to ``reject``."""
    for raw in documents:
        parsed = try_parse(raw)
        if not isinstance(parsed, Document):
            reject(parsed.code)
            continue
        text = clean_text(parsed.content)  # once, for the identity and the oracle
        yield ident_of_normalized(parsed, text), parsed, text


@dataclass
class InputFold:
    """The input side: N, R, U, reasons, and how each identity's committed outputs compare with the oracle."""

    total: int = 0
    rejected: int = 0
    unique: int = 0
    completed: int = 0
    committed_degraded: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    missing: list[str] = field(default_factory=list)
    wrong: set[str] = field(default_factory=set)

    def see_all(self, documents: Iterable[Any], store: FoldStore, sink: Judge,
                between: Callable[[], None] | None = None) -> None:
        """Every input entry in order, valid ones judged :data:`BLOCK` at a time (the figures do not depend on it).

        ``between`` is called after each block (:class:`batchlab.metric_split.InputSplit` may end ``documents`` there).
        """
        block: list[Judged] = []
        for judged in parsed_entries(documents, self._reject):
            self.total += 1
            block.append(judged)
            if len(block) == BLOCK:
                self._judge(block, store, sink)
                block = []
                if between is not None:
                    between()
        if block:
            self._judge(block, store, sink)

    def _reject(self, code: str) -> None:
        self.total += 1
        self.rejected += 1
        self.reasons[code] += 1

    def _judge(self, block: list[Judged], store: FoldStore, sink: Judge) -> None:
        """Each identity met for the first time in ``block``: committed correctly (full or degraded), wrongly, or not."""
        firsts = [block[i] for i in store.add_idents([(ident, doc.id) for ident, doc, _ in block])]
        for (ident, doc, _), outputs in zip(firsts, sink.verdicts_of(firsts), strict=True):
            self._count(ident, doc.id, verdict_of(outputs))

    def _count(self, ident: str, doc_id: str, verdict: Verdict) -> None:
        done, degraded, wrong = verdict
        self.unique += 1
        self.committed_degraded += degraded
        self.wrong.update(wrong)
        if done:
            self.completed += 1
        elif ident:
            self.missing.append(doc_id)

    def merge(self, block: InputBlock, store: FoldStore) -> None:
        """Fold a block of entries that follow every entry seen so far (:class:`InputBlock`)."""
        self.total += block.total
        self.rejected += len(block.reasons)
        self.reasons.update(block.reasons)
        for i in store.add_idents(block.pairs):
            ident, doc_id = block.pairs[i]
            self._count(ident, doc_id, block.verdicts[i])
