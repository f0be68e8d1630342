"""Hidden scenarios: run only with ``pytest grader --hidden``; never part of a student distribution."""
