"""What the harness side saw a submission forge, as the one sentence that costs it the scenario.

The service, the sink and the ledger of a scenario's passes live on the harness side of a socket
(:mod:`batchlab.harness`): the submission's process cannot write them. What it can still attempt is
recorded there, and each attempt makes the scenario unscored (:func:`forgery`):

* a full output committed for chunks the service never answered in the run (``unbacked`` on its
  ``sink_put``): the vectors were made up or computed locally, whatever the ledger says;
* a call or commit event sent by the worker for the ledger (refused, never written);
* without a sandbox, records written beside the harness (the same user can open the files): the
  ledger holding lines the harness did not write, another writer of the sink, a file replaced.
"""

from __future__ import annotations

from batchlab.ledger import Ev

from .analysis import some
from .scenario_running import ScenarioRun

RULE = ("不信任提交自己的说法（nothing a submission says about itself is trusted）：服务调用（service call）、"
        "sink 提交和账本（ledger）都由 harness 一侧记录；没有真正调用服务就提交的完整输出（full output）、"
        "伪造的账本行或对记录文件的改写都不得分。")


def forgery(run: ScenarioRun) -> str | None:
    """Why the scenario's records cannot be trusted (forged by the submission), or None."""
    found: list[str] = []
    unbacked = [e for e in run.events if e.get("ev") == Ev.SINK_PUT and e.get("unbacked")]
    if unbacked:
        named = [f"{e.get('doc_id')} ({len(e['unbacked'])} chunks)" for e in unbacked]
        found.append(f"{len(unbacked)} full outputs were committed for chunks the service never answered in "
                     f"this run: {some(named, 4)}")
    refused = sum(p.refused_events for p in run.passes)
    if refused:
        found.append(f"the worker sent {refused} ledger events only the harness writes (service calls, commits); "
                     "they were refused")
    for p in run.passes:
        found += p.foreign
    if not found:
        return None
    return "forged records: " + "; ".join(found) + ". These outputs are not earned: the scenario is not scored.\n" + RULE
