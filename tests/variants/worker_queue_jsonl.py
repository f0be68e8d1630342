"""A correct processor in a worker-queue style: a fixed pool of ``config.concurrency`` worker tasks
fed through a bounded ``asyncio.Queue``; the checkpoint as an append-only JSON-lines log (one
``os.write`` per transition, compacted atomically on open); retries written by hand with
``backoff_delay`` (``make_retrying`` still exists for step 03, but the batch does not use it), the
per-call deadline as ``asyncio.wait_for`` and the open breaker waited out in the same hand-written loop;
the breaker itself written as an explicit state field moved by ``trip``/``reset``.
It must earn every point, public and hidden.
"""

REPLACEMENTS = [
    ('        self.path = Path(state_dir) / f"checkpoint_{batch_id}.sqlite"\n        self.path.parent.mkdir(parents=True, exist_ok=True)\n        self._conn = sqlite3.connect(str(self.path), isolation_level=None)\n        self._conn.execute("PRAGMA journal_mode=WAL")\n        self._conn.execute("PRAGMA synchronous=NORMAL")\n        self._conn.execute(\n            "CREATE TABLE IF NOT EXISTS checkpoint (batch_id TEXT NOT NULL, shard TEXT NOT NULL, "\n            "key TEXT NOT NULL, doc_id TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL, "\n            "last_error TEXT, updated_at REAL NOT NULL, PRIMARY KEY (batch_id, shard, key)) WITHOUT ROWID"\n        )  # WITHOUT ROWID: one B-tree keyed by the primary key, so a transition writes one tree, not a table and its index\n',
     '        import dataclasses\n        import json\n        import os\n\n        self.path = Path(state_dir) / f"checkpoint_{batch_id}.{self.shard or \'_\'}.jsonl"\n        self.path.parent.mkdir(parents=True, exist_ok=True)\n        self._entries: dict[str, CheckpointEntry] = {}\n        if self.path.exists():\n            with open(self.path, "rb") as log:\n                for line in log:\n                    if not line.endswith(b"\\n"):\n                        break  # torn by a kill mid-write: never acknowledged\n                    record = json.loads(line)\n                    self._entries[record["key"]] = CheckpointEntry(**record)\n        compacted = "".join(json.dumps(dataclasses.asdict(e)) + "\\n" for e in self._entries.values())\n        tmp = self.path.with_name(self.path.name + ".tmp")\n        tmp.write_text(compacted, encoding="utf-8")\n        os.replace(tmp, self.path)\n        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)\n'),
    ('        self._conn.execute(\n            "INSERT OR REPLACE INTO checkpoint (batch_id, shard, key, doc_id, state, attempts, last_error, "\n            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",\n            (self.batch_id, self.shard, key, entry.doc_id, entry.state, entry.attempts, entry.last_error,\n             entry.updated_at),\n        )\n',
     '        import dataclasses\n        import json\n        import os\n\n        os.write(self._fd, (json.dumps(dataclasses.asdict(entry)) + "\\n").encode("utf-8"))  # one short append\n        self._entries[key] = entry\n'),
    ('        # BEGIN SOLUTION step 01: close the database\n        self._conn.close()\n',
     '        # BEGIN SOLUTION step 01: close the database\n        import os\n\n        os.close(self._fd)\n'),
    ('''    async def call_once(index: int, chunk: str) -> list[float]:
        """One service call under its deadline; a call past it is cancelled and becomes a transient failure."""
        on_call()
        try:
            async with asyncio.timeout(config.call_timeout or None):
                return await service.embed(doc, index, chunk)
        except TimeoutError:
            raise TransientServiceError("deadline", f"{doc.id} chunk {index}: no answer within "
                                        f"{config.call_timeout:g} s, cancelled") from None

    async def attempt_once(index: int, chunk: str) -> list[float]:
        """One attempt, through the breaker when the batch has one."""
        if breaker is None:
            return await call_once(index, chunk)
        return await breaker.call(lambda: call_once(index, chunk))

    async def call_with_retries(index: int, chunk: str) -> list[float]:
        """Retry with backoff; while the breaker is open, wait (no attempt spent) up to breaker_max_wait.

        The first attempt runs bare: most calls succeed at once, and a tenacity retrying object costs
        more than a whole zero-latency call (about 20 us a call). One is made after a transient
        failure; its first attempt replays that failure (no second call), so tenacity counts it and
        waits backoff_delay(0), then backoff_delay(1) ... exactly as if it had made the call itself.
        """
        waited = 0.0
        while True:
            try:
                try:
                    return await attempt_once(index, chunk)
                except TransientServiceError as exc:
                    failed: TransientServiceError | None = exc
                async for attempt in make_retrying(config, sleep=sleep, before_sleep=count_retry):
                    with attempt:
                        if failed is not None:  # attempt 1 is the call above: its failure, replayed
                            replay, failed = failed, None
                            raise replay
                        vector = await attempt_once(index, chunk)
                return vector
            except CircuitOpenError as exc:
                if waited >= config.breaker_max_wait or exc.open_for >= config.breaker_max_wait:
                    raise TransientServiceError("circuit_open", f"{doc.id}: the breaker stayed open "
                                                f"{waited:.1f} s") from None
                await sleep(exc.retry_after)
                waited += exc.retry_after
''', '''    async def call_once(index: int, chunk: str) -> list[float]:
        """The deadline in another style: asyncio.wait_for cancels the call at config.call_timeout."""
        on_call()
        try:
            return await asyncio.wait_for(service.embed(doc, index, chunk), config.call_timeout or None)
        except asyncio.TimeoutError:
            raise TransientServiceError("deadline", f"{doc.id} chunk {index}: cancelled at the deadline") from None

    async def call_with_retries(index: int, chunk: str) -> list[float]:
        """Hand-written retries: backoff_delay between attempts, transient errors only; an open breaker is waited out."""
        nonlocal retries
        failures, waited = 0, 0.0
        while True:
            try:
                if breaker is None:
                    return await call_once(index, chunk)
                return await breaker.call(lambda: call_once(index, chunk))
            except CircuitOpenError as exc:  # not a failure of this call: no attempt spent, the budget starts again
                if waited >= config.breaker_max_wait:
                    raise TransientServiceError("circuit_open", f"{doc.id}: the breaker stayed open") from None
                failures = 0
                waited += exc.retry_after
                await sleep(exc.retry_after)
            except TransientServiceError:
                failures += 1
                if failures >= config.max_attempts:
                    raise
                retries += 1
                await sleep(backoff_delay(failures - 1, config))
'''),
    # The breaker in another style: an explicit state field moved by two helpers (trip, reset), the cool-down
    # checked when the state is read, and the probe as a flag set around the one call half-open admits.
    ('''        self._failures = 0
        self._opened_at: float | None = None
        self._down_since = 0.0
        self._probing = False
''', '''        self._mode = CLOSED
        self._failures = 0
        self._tripped_at = 0.0
        self._probe_out = False
'''),
    ('''        if self._opened_at is None:
            return CLOSED
        return OPEN if self.clock() - self._opened_at < self.config.breaker_cooldown else HALF_OPEN
''', '''        if self._mode == OPEN and self.clock() - self._tripped_at >= self.config.breaker_cooldown:
            self._mode = HALF_OPEN  # the cool-down is over: the next caller may probe
        return self._mode
'''),
    ('''        state = self.state
        if state == OPEN or (state == HALF_OPEN and self._probing):
            remaining = self.config.breaker_cooldown
            if state == OPEN and self._opened_at is not None:
                remaining -= self.clock() - self._opened_at
            raise CircuitOpenError(max(remaining, 1e-3), open_for=self.clock() - self._down_since)
        probe = state == HALF_OPEN
        self._probing = self._probing or probe
        try:
            result = await fn()
        except TransientServiceError:
            self._failures += 1
            if probe or (self._opened_at is None and self._failures >= self.config.breaker_failures):
                if self._opened_at is None:
                    self._down_since = self.clock()  # the outage, as the batch sees it, begins
                self._opened_at = self.clock()  # (re)open: a fresh cool-down
            raise
        except PermanentServiceError:  # an answer from a live service: the count restarts, a probe closes
            self._failures = 0
            if probe:
                self._opened_at = None
            raise
        finally:  # a cancelled probe (or a bug) tells nothing about the service: the next caller probes
            if probe:
                self._probing = False
        self._failures = 0
        if probe:
            self._opened_at = None  # the probe succeeded: closed
        return result
''', '''        def trip() -> None:
            self._mode, self._tripped_at = OPEN, self.clock()

        def reset() -> None:
            self._mode, self._failures = CLOSED, 0

        mode = self.state
        if mode == OPEN:
            raise CircuitOpenError(max(1e-3, self.config.breaker_cooldown - (self.clock() - self._tripped_at)))
        if mode == HALF_OPEN:
            if self._probe_out:
                raise CircuitOpenError(self.config.breaker_cooldown)
            self._probe_out = True
            try:
                result = await fn()
            except TransientServiceError:
                trip()
                raise
            except PermanentServiceError:
                reset()
                raise
            finally:
                self._probe_out = False
            reset()
            return result
        try:
            result = await fn()
        except TransientServiceError:
            self._failures += 1
            if self._mode == CLOSED and self._failures >= self.config.breaker_failures:
                trip()
            raise
        except PermanentServiceError:
            self._failures = 0
            raise
        self._failures = 0
        return result
'''),
    ('            await run_bounded(work_left(), run_one, limit=config.concurrency)\n',
     '            queue: asyncio.Queue[tuple[str, Document] | None] = asyncio.Queue(maxsize=config.concurrency)\n\n            async def feeder() -> None:\n                for item in work_left():\n                    await queue.put(item)\n                for _ in range(config.concurrency):\n                    await queue.put(None)\n\n            async def worker() -> None:  # a fixed pool of config.concurrency workers: one document each at a time\n                while (item := await queue.get()) is not None:\n                    await run_one(item)\n\n            await asyncio.gather(feeder(), *(worker() for _ in range(config.concurrency)))\n'),
]

# The reference reads its entries from disk (issue 17); this store keeps them in memory, so its reads do too.
REPLACEMENTS += [
    ("""        row = self._conn.execute(
            "SELECT key, doc_id, state, attempts, last_error, updated_at FROM checkpoint "
            "WHERE batch_id = ? AND shard = ? AND key = ?",
            (self.batch_id, self.shard, key),
        ).fetchone()
        return None if row is None else CheckpointEntry(*row)
""", "        return self._entries.get(key)\n"),
    ("""        rows = self._conn.execute(
            "SELECT key, doc_id, state, attempts, last_error, updated_at FROM checkpoint "
            "WHERE batch_id = ? AND shard = ?",
            (self.batch_id, self.shard),
        )
        return {row[0]: CheckpointEntry(*row) for row in rows}
""", "        return dict(self._entries)\n"),
]
GRADER_ARGS = ["--hidden"]
