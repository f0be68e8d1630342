"""The Lesson 15 grader: ``pytest grader [--impl PATH] [--step STEP] [--hidden] [--results FILE]``.

See ``grader/README.md`` for what is graded, how points are given, and the decisions behind it.
"""
