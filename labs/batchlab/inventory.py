"""A batch's entries parsed once and folded by identity: the one definition every reader of a batch uses.

"Parse every entry, keep the valid ones, fold by identity (first occurrence kept), count the
invalid ones by code" is what the metrics, the grader's analysis and scoring, the dashboard's
board, the report and chaos all need before they look at a ledger. :class:`Inventory` does it
once, so that "unique", "rejected" and "duplicates in the input" mean the same everywhere.

:class:`Inventory` keeps every entry (a tuple): right for the lesson's batches and the grader's. A
reader of a batch that may be a million documents (``batchlab validate``, the demo's and chaos's
inputs, the report, the batch service) folds a stream instead: :func:`iter_entries` parses one entry
at a time and keeps nothing, :func:`count_input` counts what an :class:`Inventory` would answer with
the identities seen kept in a :class:`batchlab.fold_store.FoldStore` (on disk past
:data:`~batchlab.fold_store.SPILL_KEYS`), and :func:`iter_unique` yields each identity's first document.
The same parse and the same fold by identity, so both give the same figures (tests compare them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .docmodel import Document, ident_of, try_parse
from .errors import InvalidDocumentError
from .fold_store import SPILL_KEYS, FoldStore


@dataclass(frozen=True)
class Entry:
    """One entry of a batch, in input order: the raw mapping and what parsing made of it."""

    index: int
    raw: Any
    parsed: Document | InvalidDocumentError
    #: The identity of a valid entry (:func:`batchlab.documents.ident_of`); None for an invalid one.
    ident: str | None

    @property
    def document(self) -> Document | None:
        return self.parsed if isinstance(self.parsed, Document) else None

    @property
    def error(self) -> InvalidDocumentError | None:
        return self.parsed if isinstance(self.parsed, InvalidDocumentError) else None

    @property
    def raw_id(self) -> Any:
        """The raw ``id`` field of the entry (None when it has none or is not an object)."""
        return self.raw.get("id") if isinstance(self.raw, Mapping) else None


@dataclass(frozen=True)
class Inventory:
    """Every entry of one batch, parsed, with the valid documents folded by identity."""

    entries: tuple[Entry, ...]
    #: The first valid document of each identity, in input order.
    by_ident: Mapping[str, Document]

    @classmethod
    def of(cls, documents: Sequence[Any]) -> Inventory:
        """Parse every raw entry once (:func:`batchlab.documents.try_parse`) and fold the valid ones by identity."""
        entries: list[Entry] = []
        by_ident: dict[str, Document] = {}
        for index, raw in enumerate(documents):
            parsed = try_parse(raw)
            ident = None
            if isinstance(parsed, Document):
                ident = ident_of(parsed)
                by_ident.setdefault(ident, parsed)
            entries.append(Entry(index, raw, parsed, ident))
        return cls(entries=tuple(entries), by_ident=by_ident)

    @property
    def total(self) -> int:
        """N: every entry, valid or not."""
        return len(self.entries)

    @property
    def unique(self) -> int:
        """U: distinct identities among the valid entries."""
        return len(self.by_ident)

    @property
    def valid(self) -> int:
        """Valid entries, re-sent duplicates included."""
        return sum(1 for e in self.entries if e.ident is not None)

    @property
    def rejected(self) -> int:
        """R: invalid entries, each counted."""
        return self.total - self.valid

    @property
    def duplicates_in_input(self) -> int:
        """Valid entries whose identity came earlier in the input."""
        return self.valid - self.unique

    @property
    def idents(self) -> frozenset[str]:
        return frozenset(self.by_ident)

    def invalid(self) -> Iterator[Entry]:
        """The invalid entries, in input order."""
        return (e for e in self.entries if e.ident is None)

    def reasons(self) -> Counter[str]:
        """How many invalid entries per ``InvalidDocumentError.code``."""
        return Counter(e.error.code for e in self.invalid() if e.error is not None)

    def valid_documents(self) -> list[Document]:
        """Every valid entry's document, in input order (duplicates kept)."""
        return [e.parsed for e in self.entries if isinstance(e.parsed, Document)]

    def unique_documents(self) -> list[Document]:
        """The first document of each identity, in input order: what a run must commit once each."""
        return list(self.by_ident.values())

    def first_id(self, ident: str) -> str:
        """The id (as written) of the first document with ``ident``; the ident itself if the batch has none."""
        doc = self.by_ident.get(ident)
        return doc.id if doc is not None else ident


def iter_entries(documents: Iterable[Any]) -> Iterator[Entry]:
    """Each raw entry parsed as :meth:`Inventory.of` parses it, one at a time, nothing kept (no fold by identity)."""
    for index, raw in enumerate(documents):
        parsed = try_parse(raw)
        yield Entry(index, raw, parsed, ident_of(parsed) if isinstance(parsed, Document) else None)


def spills(documents: int | None) -> bool:
    """Whether the identities of a batch of ``documents`` entries go to a file rather than memory."""
    return (documents or 0) > SPILL_KEYS


def iter_unique(documents: Iterable[Any], *, on_disk: bool = False) -> Iterator[Document]:
    """The first valid document of each identity, in input order (:meth:`Inventory.unique_documents`, streamed).

    The identities met are kept in a scratch SQLite table (a file with ``on_disk``), not in a Python set:
    memory does not grow with the batch when it is large.
    """
    with FoldStore(on_disk=on_disk) as seen:
        for entry in iter_entries(documents):
            doc = entry.document
            if doc is not None and entry.ident is not None and seen.add_ident(entry.ident, doc.id):
                yield doc


@dataclass
class InputCounts:
    """What an :class:`Inventory` counts, counted as a stream goes by (:func:`count_input`)."""

    total: int = 0
    valid: int = 0
    unique: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    #: ``Document.source`` of every valid entry, re-sent duplicates included (what ``batchlab validate`` prints).
    sources: Counter[str] = field(default_factory=Counter)

    @property
    def rejected(self) -> int:
        return self.total - self.valid

    @property
    def duplicates_in_input(self) -> int:
        return self.valid - self.unique


def count_input(documents: Iterable[Any], *, on_disk: bool = False) -> InputCounts:
    """N, valid, U, the invalid entries' reasons and the valid ones' sources of a batch, in one streamed pass."""
    counts = InputCounts()
    with FoldStore(on_disk=on_disk) as seen:
        for entry in iter_entries(documents):
            counts.total += 1
            doc = entry.document
            if doc is None or entry.ident is None:
                if entry.error is not None:
                    counts.reasons[entry.error.code] += 1
                continue
            counts.valid += 1
            counts.sources[doc.source] += 1
            counts.unique += seen.add_ident(entry.ident, doc.id)
    return counts
