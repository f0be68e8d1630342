"""Grading a class: ``batchlab grade-all`` (a folder of submissions to a gradebook and a class report) and
``batchlab autograder`` (the grader packaged for Gradescope).

A room of its own (README, Architecture): it imports only the core and itself. It never imports the grader
or the teaching room: each submission is graded by a child process running ``batchlab grade --exec``, the
same verb a TA runs for one file, so the grader's command line keeps its one builder
(``batchlab.teach.grading.grader_command``).
"""
