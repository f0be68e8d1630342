"""A checkpoint that cannot be rebuilt: the sink is asked only about documents the checkpoint left ``processing``.

A plausible shortcut: "a kill between ``sink.put`` and ``done`` leaves the document
``processing``, so only those need the sink". It heals the one victim of a kill
after a commit and passes every scenario where the checkpoint survives. But the
checkpoint is an index of the sink, not the truth: once it is lost (deleted,
corrupt, a new machine) every committed document looks new and is executed again.

Like most students' code it does not group its checkpoint marks (组提交): under the reference's group a kill
also loses ``processing`` marks, so the shortcut would fail far more than the scenarios that lose the checkpoint.
"""

REPLACEMENTS = [
    ("        with grouped(run.store, config.shard) as run.group:  # marks the sink heals, committed in groups\n",
     "        with MarkGroup(None) as run.group:  # no group commit: every mark durable when it returns\n"),
    ("    if key in run.committed:\n",
     "    if entry is not None and entry.state == PROCESSING and key in run.committed:  # trusts the checkpoint\n"),
]
LOSES = {"test_scenario[checkpoint_lost]", "test_shards_partition_the_batch"}
MAY_LOSE: set[str] = set()
SCENARIO_CHECKS = {"exactly-once", "duplicate rate", "checkpoint rebuilt"}
MESSAGE = r"checkpoint-rebuilt-from-sink"
