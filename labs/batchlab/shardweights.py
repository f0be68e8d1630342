"""How much work each shard of a batch holds: the fleet's estimate, so the longest shards are claimed first.

A batch's shards are as unequal as a hash makes them: on 2 000 documents in 8 shards, 360 to 477 service calls
each. Claimed in shard order, a worker that drew two long ones finished 0.4 s after another that drew two short
ones, and 4 workers lost 7 % of their time waiting for the last (issue 18's scaling target). Claimed heaviest
first (longest processing time first, :meth:`batchlab.leases.SqliteLeaseStore.claim`), the short shards fill
the end and the workers finish together.

The weight of a shard is the service calls its valid documents plan (their chunks, :func:`batchlab.pipeline
.chunk_text` of the cleaned content; calls are what a pass waits for). Which shard a document belongs to is the
*processor's* decision (``in_shard(make_idempotency_key(doc, layer), "i/n")``), so the estimate asks the
processor's own module, in a child process as the passes load it (``python -m batchlab.shardweights INPUT
--impl IMPL --layer L --of N`` prints the weights as JSON). The weights only order the claims: a module without
those functions, or one that raises, gives none (every weight 0, the claim order of before), and a wrong
estimate costs balance, never a document.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

#: How long the estimate may take before the fleet starts without it (seconds).
WEIGH_TIMEOUT_S = 120.0


def shard_of(module: ModuleType, key: str, n: int) -> int | None:
    """The shard of ``n`` that the module's ``in_shard`` gives ``key`` (None if none does)."""
    return next((i for i in range(n) if module.in_shard(key, f"{i}/{n}")), None)


def weigh(input_path: str | Path, module: ModuleType, layer: str, n: int) -> list[float]:
    """Each shard's planned service calls, the input read once; raises whatever the module raises."""
    from .batchstream import open_batch
    from .documents import parse_document
    from .pipeline import chunk_text, clean_text

    parse = getattr(module, "parse_document", parse_document)
    weights = [0.0] * n
    for raw in open_batch(input_path):
        try:
            doc = parse(raw)
        except Exception:  # noqa: BLE001 - an invalid entry plans no call
            continue
        shard = shard_of(module, module.make_idempotency_key(doc, layer), n)
        if shard is not None:
            weights[shard] += max(1, len(chunk_text(clean_text(doc.content))))
    return weights


def start(input_path: str | Path, impl: str | Path, layer: str, n: int) -> subprocess.Popen[str]:
    """The estimate in a child process (read its result with :func:`result`)."""
    return subprocess.Popen([sys.executable, "-m", "batchlab.shardweights", str(input_path), "--impl", str(impl),
                             "--layer", layer, "--of", str(n)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)


def result(proc: subprocess.Popen[str], n: int, timeout_s: float = WEIGH_TIMEOUT_S) -> list[float] | None:
    """The weights the child printed, or None (it failed, timed out, or printed something else)."""
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None
    try:
        weights = json.loads(out)
    except ValueError:
        return None
    if proc.returncode != 0 or not isinstance(weights, list) or len(weights) != n:
        return None
    return [float(w) for w in weights]


def estimate(input_path: str | Path, impl: str | Path, layer: str, n: int) -> list[float] | None:
    """:func:`start` then :func:`result`: each shard's weight, or None when the module cannot tell."""
    return result(start(input_path, impl, layer, n), n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batchlab.shardweights")
    parser.add_argument("input", type=Path)
    parser.add_argument("--impl", type=Path, required=True)
    parser.add_argument("--layer", default="chunks")
    parser.add_argument("--of", type=int, required=True)
    args = parser.parse_args(argv)
    from .worker import load_impl

    try:
        weights = weigh(args.input, load_impl(args.impl), args.layer, args.of)
    except Exception as exc:  # noqa: BLE001 - no estimate: the claims keep the shard order
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(weights))
    return 0


if __name__ == "__main__":
    sys.exit(main())
