"""Instructor tooling for Homework 2, one module per step of the pipeline:

    generate     solution/ -> assignment/ (stubs where the reference has solution blocks)
    submission   a student's tree beside the provided files; the reference's modules
    probes       the only code that calls the student's functions; returns plain values
    sandbox      bubblewrap around the child process (no reference, no network)
    runner       the child process: runs the probes the grader asks for
    isolation    the grader's side: a child per question, deadlines, answers read safely
    checks/      one check per rubric test (q2.py, q3.py): inputs, reference, comparison
                 (compare.py's got/expected messages), in the grading process
    rubric       rubric.toml: points and visibility, validated
    calibration  thresholds of the training tests, measured from the reference
    results      the aggregator: results.json (Gradescope), feedback.md, summary table
    grade        the whole grading of one tree

Command line: `python -m autograder --help`.
"""
