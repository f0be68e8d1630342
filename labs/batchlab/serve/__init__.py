"""The batch service (``batchlab serve``): the kit's runner and worker behind an HTTP API.

Layout, model apart from view (docs/design.md, principle 6):

* :mod:`.store`: a batch's record on disk (``DATA/batches/ID/batch.json``) and the index;
* :mod:`.progress`: what a batch's ledger says (counts per state, retries, ETA), folded incrementally;
* :mod:`.manager`: :class:`~.manager.BatchManager`, plain Python: states, actions, one worker per batch;
* resource samples come from the core's :mod:`batchlab.resources` (the dashboard records them too);
* :mod:`.app`: the FastAPI layer, thin over the manager; :mod:`.server`: uvicorn and the command.

Importing this package imports no web framework: ``batchlab --help`` stays fast.
"""
