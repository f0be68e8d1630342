"""A poison document aborts the batch: the per-document guard catches only the service's errors.

One odd but valid document whose service answer cannot be decoded (``MalformedResponseError``,
a ``ValueError``) escapes ``run_one``; ``asyncio.TaskGroup`` cancels every other document and
the batch raises. Derived from the reference with a one-line change.
"""

REPLACEMENTS = [
    ("    except Exception as exc:  # a poison document must not stop the batch\n",
     "    except (PermanentServiceError, TransientServiceError) as exc:  # only the service's errors\n"),
]
LOSES = {"test_poison_document_does_not_stop_the_batch",
         *(f"test_scenario[{name}]" for name in ("transient_faults", "crash_during_call", "large_batch"))}
MAY_LOSE: set[str] = set()
SCENARIO_CHECKS = {"not scored"}
MESSAGE = r"poison-document-isolated: .*\n?.*(px-3|doc-00050|doc-00077|doc-00480)|px-3"
