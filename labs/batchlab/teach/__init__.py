"""The teaching front-ends: what students, teachers and maintainers run on top of the harness.

Each module here imports the harness (the flat modules of :mod:`batchlab`) and never the other
rooms (``serve/``, ``grade/``); the harness and the grader never import this package
(``tests/test_architecture.py`` enforces both). Importing it loads nothing heavy: matplotlib,
ipywidgets and tqdm are imported inside the functions that draw or display.

* :mod:`.notebook` - what the step notebooks import: ``load_student``, ``student_cell``, ``work_dir`` (students);
* :mod:`.selfcheck` - ``check()``: the grader's tests of one step, from a notebook (students);
* :mod:`.grading` - ``batchlab grade`` and the one grader command line (students, TAs);
* :mod:`.demo` - the lesson's story in one call: run, crash, resume, metrics (teacher);
* :mod:`.dashboard` - the live ipywidgets dashboard: board, model, render, view (teacher);
* :mod:`.chaos` - many SIGKILLs of the real CLI, then an integrity check (teacher, maintainers);
* :mod:`.report` - the submission report: ledger views, Markdown, plot style and plots, build (students);
* :mod:`.bench` - figures of the reference processor (maintainers);
* :mod:`.release` - the student skeleton and distribution, generated from the solution (maintainers).
"""
