"""A batch's entries parsed once and folded by identity: the one definition every reader of a batch uses.

"Parse every entry, keep the valid ones, fold by identity (first occurrence kept), count the
invalid ones by code" is what the metrics, the grader's analysis and scoring, the dashboard's
board, the report and chaos all need before they look at a ledger. :class:`Inventory` does it
once, so that "unique", "rejected" and "duplicates in the input" mean the same everywhere.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .docmodel import Document, ident_of, try_parse
from .errors import InvalidDocumentError


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
