"""Instructor tooling for Homework 2, one module per step of the pipeline:

    generate     solution/ -> assignment/ (stubs where the reference has solution blocks)
    submission   a student's tree beside the provided files; the reference's modules
    worker       one question's checks, run in a child process, one JSON line per test
    checks/      one check per rubric test (q2.py, q3.py), using compare.py's got/expected messages
    rubric       rubric.toml: points and visibility, validated
    calibration  thresholds of the training tests, measured from the reference
    results      the aggregator: results.json (Gradescope), feedback.md, summary table
    grade        the whole grading of one tree

Command line: `python -m autograder --help`.
"""
