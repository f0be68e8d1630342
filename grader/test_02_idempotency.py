"""Step 02 (idempotency): ``make_idempotency_key(doc, layer)`` names a document stably and precisely.

The probe computes the student's key for a set of document variants; these tests
compare them. The stability test computes the same keys in two processes with
different ``PYTHONHASHSEED`` (a key built on ``hash()`` would change on every
restart and break resume).
"""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest

from grader.tasks import Context, task

pytestmark = pytest.mark.step("idempotency")

TEXT = "A checkpoint records how far the batch has come.  Café résumé,\n\tnaïve déjà vu."
BASE = {"id": "doc-0137", "source": "wiki", "content": TEXT, "title": "T", "metadata": {"updated_at": "2026-11-01"}}

#: name -> document variant (with an optional layer)
VARIANTS: dict[str, dict[str, Any]] = {
    "base": BASE,
    "base_again": dict(BASE),
    "base_layer_default": {**BASE, "layer": "chunks"},
    "id_case_space": {**BASE, "id": "  DOC-0137 \n"},
    "content_nfd": {**BASE, "content": unicodedata.normalize("NFD", TEXT)},
    "content_spacing": {**BASE, "content": "  " + " ".join(TEXT.split()).replace(" ", "   \n ", 4) + "\n\n"},
    "metadata_changed": {**BASE, "metadata": {"updated_at": "2026-12-31T23:59:59Z", "owner": "ops"}},
    "title_changed": {**BASE, "title": "A new title"},
    "content_changed": {**BASE, "content": TEXT.replace("batch", "batches")},
    "layer_vectors": {**BASE, "layer": "vectors"},
    "source_changed": {**BASE, "source": "faq"},
    "id_changed": {**BASE, "id": "doc-0138"},
}


def _keys_probe(ctx: Context, hash_seed: str) -> Any:
    docs = [{k: v for k, v in spec.items()} for spec in VARIANTS.values()]
    return ctx.probe("keys", {"docs": docs}, workdir="keys", env={"PYTHONHASHSEED": hash_seed})


@task("keys:seed1")
def keys_seed1(ctx: Context) -> Any:
    return _keys_probe(ctx, "1")


@task("keys:seed2")
def keys_seed2(ctx: Context) -> Any:
    return _keys_probe(ctx, "2")


def _keys(grade: Any, name: str = "keys:seed1") -> dict[str, Any]:
    values = grade.verdict("make_idempotency_key", name)
    keys = dict(zip(VARIANTS, values, strict=False))
    bad = {n: k for n, k in keys.items() if not isinstance(k, str) or not k}
    if bad:
        name, key = next(iter(bad.items()))
        grade.fail(f"make_idempotency_key must return a non-empty str; for {name} it returned {key}")
    return keys


def _same(keys: dict[str, str], a: str, b: str) -> bool:
    return keys[a] == keys[b]


@pytest.mark.points(2)
@pytest.mark.task("keys:seed1")
def test_key_is_stable(grade: Any) -> None:
    """The same document gets the same key, in the same process and after a restart"""
    keys = _keys(grade)
    other = _keys(grade, "keys:seed2")
    problems = []
    if not _same(keys, "base", "base_again"):
        problems.append(f"two calls on the same document gave {keys['base']!r} and {keys['base_again']!r}")
    if not _same(keys, "base", "base_layer_default"):
        problems.append("the default layer is not 'chunks' (make_idempotency_key(doc) != "
                        "make_idempotency_key(doc, 'chunks'))")
    changed = [n for n in VARIANTS if keys[n] != other[n]]
    if changed:
        problems.append(f"keys differ between two processes (PYTHONHASHSEED 1 vs 2) for {', '.join(changed[:4])}: "
                        "use hashlib (sha256), never hash()")
    if problems:
        grade.fail("stable key: " + "; ".join(problems))
    grade.note(f"stable across calls and processes, e.g. {keys['base']}")


@pytest.mark.points(2)
@pytest.mark.task("keys:seed1")
def test_key_is_normalized(grade: Any) -> None:
    """The id is trimmed and case-folded; the content is NFC-normalized and its whitespace collapsed"""
    keys = _keys(grade)
    problems = []
    for name, what in (("id_case_space", "id '  DOC-0137 \\n' (trim + case-fold)"),
                       ("content_nfd", "content in Unicode NFD form (NFC-normalize)"),
                       ("content_spacing", "content with extra spaces and newlines (collapse whitespace)")):
        if not _same(keys, "base", name):
            problems.append(f"{what} gave a different key")
    if problems:
        grade.fail("normalization: the same document must get the same key, but " + "; ".join(problems))
    grade.note("id case/spaces, Unicode form and whitespace do not change the key")


@pytest.mark.points(2)
@pytest.mark.task("keys:seed1")
def test_key_is_content_and_layer_sensitive(grade: Any) -> None:
    """Another content, layer, source or id gives another key"""
    keys = _keys(grade)
    same = [what for name, what in (("content_changed", "a changed content"), ("layer_vectors", "layer 'vectors'"),
                                    ("source_changed", "another source"), ("id_changed", "another id"))
            if _same(keys, "base", name)]
    if same:
        grade.fail(f"sensitivity: {', '.join(same)} gave the same key as the original: a changed document would "
                   "be skipped as already done (source + normalized id + content hash + layer)")
    grade.note("content, layer, source and id each change the key")


@pytest.mark.points(2)
@pytest.mark.task("keys:seed1")
def test_key_ignores_metadata(grade: Any) -> None:
    """Volatile metadata (timestamps) and the title never change the key"""
    keys = _keys(grade)
    changed = [what for name, what in (("metadata_changed", "a new updated_at timestamp in metadata"),
                                       ("title_changed", "a new title")) if not _same(keys, "base", name)]
    if changed:
        grade.fail(f"metadata: {' and '.join(changed)} changed the key, so an unchanged document would be "
                   "processed again (llama_index#21461): hash the normalized content only")
    grade.note("metadata and title are not part of the key")
