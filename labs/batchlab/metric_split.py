"""The input's half of a run's metric fold shared with the ledger's child once the child's own half is done.

:mod:`batchlab.metric_child` folds the ledger while the caller folds the input; on two cores the
ledger's half ends first (a million documents: about two thirds of the input's half in CPU, two fifths
since its calls and commits are read by the scanner's regex), and
the child then sat idle. So the child says when its half is done, and the caller (:class:`InputSplit`,
between two of its blocks) gives it the end of what is left of a JSON Lines input: :data:`CHILD_SHARE`
of the bytes left, from a line start. The child folds those lines as far as they can be folded
without the lines before them (:func:`input_blocks`: rejections, identities, the verdict of every
valid line) into a scratch file; the caller, done with its own part, merges them in
input order (:meth:`batchlab.metric_input.InputFold.merge`), so every identity is still counted once,
at its first occurrence, and the figures are those of one process. A JSON array cannot be entered in
the middle and is not split. Whenever the child fails, the caller folds that part itself, with the
same code (a scratch file damaged after the child said it wrote it whole is reported, never guessed).
"""

from __future__ import annotations

import os
import pickle
import select
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from .batchstream import BatchStream, open_batch
from .fold_store import FoldStore
from .metric_input import BLOCK, InputBlock, InputFold, Judge, parsed_entries, verdict_of
from .metric_sinks import Judged

#: Less than this many bytes of input left when the child is free: not worth a split (a block round trip).
MIN_SPLIT_BYTES = 1 << 20
#: The part of the bytes left that the child gets: more than half, as the caller also merges the child's blocks
#: and then folds the hits and duplicates (CPU of both processes at 200 000 documents: 5.2 and 4.7 s at a half;
#: at a million, once the ledger's half was read by the regex: 21.8 and 20.3 s at 0.55, 24.0 and 24.9 s at 0.6,
#: on a loaded machine).
CHILD_SHARE = 0.6


class InputSplit:
    """The caller's side: its part of the input, a split once the child is free, then the child's part merged."""

    def __init__(self, stream: BatchStream, child: Any, folder: str | None = None) -> None:
        self.stream, self.child = stream, child
        self.boundary: int | None = None
        self._end = 0  # the byte after the last entry handed out
        self._folder = folder
        self._out: str | None = None

    def documents(self) -> Iterator[Any]:
        """The raw entries before the boundary (all of them when there is none)."""
        for entry in self.stream.entries():
            if self.boundary is not None and entry.offset >= self.boundary:
                return
            self._end = entry.offset + entry.length
            yield entry.raw

    def poll(self) -> None:
        """Between two blocks: when the child has just finished the ledger, hand it the end of the input."""
        if self.child.answered or not self.child.ready():
            return
        if self.child.half() is None or self.stream.header.format != "jsonl":
            self.child.no_order()
            return
        header = self.stream.header
        left = header.size - self._end
        boundary = _line_start(Path(header.path), self._end + int(left * (1 - CHILD_SHARE))) if left else header.size
        if left < MIN_SPLIT_BYTES or boundary >= header.size:
            self.child.no_order()
            return
        fd, self._out = tempfile.mkstemp(prefix="metrics-part-", suffix=".pickle", dir=self._folder)
        os.close(fd)
        self.child.order({"boundary": boundary, "input": header.path, "size": header.size,
                          "mtime_ns": header.mtime_ns, "out": self._out})
        self.boundary = boundary

    def rest(self, inputs: InputFold, store: FoldStore, sink: Judge) -> None:
        """Fold the part after the boundary: the child's blocks merged in order, or read here if it failed."""
        if self.boundary is None or self._out is None:
            return
        count = self.child.finished()
        if count is not None:
            for block in _read_blocks(self._out, count):
                inputs.merge(block, store)
            return
        rest = (e.raw for e in self.stream.entries(start=(1, self.boundary, 1)))
        inputs.see_all(rest, store, sink)

    def close(self) -> None:
        if self._out is not None:
            Path(self._out).unlink(missing_ok=True)
            self._out = None


def _line_start(path: Path, at: int) -> int:
    """The first line start at or after byte ``at`` (the file's size when none)."""
    with open(path, "rb") as fh:
        fh.seek(max(0, at - 1))
        return max(0, at - 1) + len(fh.readline()) if at > 0 else 0


def _read_blocks(path: str, count: int) -> Iterator[InputBlock]:
    """The child's ``count`` blocks, one at a time (our own child's file, in the system's temporary folder).

    The child said it wrote them all; a file that then ends early or holds something else (nothing
    but a broken disk does that) raises ``ValueError``: the metrics report the run's records unreadable.
    """
    with open(path, "rb") as fh:
        for _ in range(count):
            try:
                block = pickle.load(fh)
            except (EOFError, pickle.UnpicklingError) as exc:
                raise ValueError(f"the metrics' scratch file {path} is damaged: {exc}") from None
            if not isinstance(block, InputBlock):
                raise ValueError(f"the metrics' scratch file {path} holds {type(block).__name__}")
            yield block


def input_blocks(documents: Iterable[Any], sink: Judge) -> Iterator[InputBlock]:
    """The child's part of the input folded :data:`BLOCK` valid entries at a time."""
    reasons: list[str] = []
    block: list[Judged] = []
    for judged in parsed_entries(documents, reasons.append):
        block.append(judged)
        if len(block) == BLOCK:
            yield _input_block(block, reasons[:], sink)
            block = []
            reasons.clear()
    if block or reasons:
        yield _input_block(block, reasons, sink)


def _input_block(block: list[Judged], reasons: list[str], sink: Judge) -> InputBlock:
    """Every valid entry judged: the caller keeps the verdict of each identity's first occurrence in the whole input.

    No identity is remembered here (no second store of a million keys): a repeat is judged again, which a
    good input has few of, and the verdict kept is always the first occurrence's own.
    """
    return InputBlock(total=len(block) + len(reasons), reasons=reasons,
                      pairs=[(ident, doc.id) for ident, doc, _ in block],
                      verdicts=[verdict_of(o) for o in sink.verdicts_of(block)])


def fold_part(order: dict[str, Any], sink: Judge) -> int:
    """The child's part of the input (``order``: from :meth:`InputSplit.poll`) into ``order["out"]``: its block count.

    Refused (an exception: the caller then folds the part itself) when the input is not the file the caller read.
    """
    path = str(order["input"])
    st = os.stat(path)
    if st.st_size != int(order["size"]) or st.st_mtime_ns != int(order["mtime_ns"]):
        raise RuntimeError(f"the input {path} changed")
    stream = open_batch(path, validate=False, format="jsonl")
    count = 0
    with open(str(order["out"]), "wb") as out:
        rest = (e.raw for e in stream.entries(start=(1, int(order["boundary"]), 1)))
        for block in input_blocks(rest, sink):
            pickle.dump(block, out, protocol=pickle.HIGHEST_PROTOCOL)
            count += 1
    return count


def ready(fh: IO[bytes]) -> bool:
    """True when ``fh`` (a pipe) has something to read now."""
    return bool(select.select([fh], [], [], 0)[0])
