"""Instructor tooling for Homework 2, one module per step of the pipeline:

    generate     solution/ -> assignment/ (stubs where the reference has solution blocks)
    submission   a student's tree taken in (regular files only), the provided files, the reference
    child/       everything that runs in the student's process: the runner, the wire format,
                 the probes (the only code that calls the student's functions), comparisons
    sandbox      the layer the child runs in: bubblewrap, or an unprivileged uid; never root
    isolation    the grader's side: a child per student file, deadlines, bounded answers
    template     the warm template children are forked from (child/template.py: the forking side)
    standins     correct definitions (from the solution) for a training test's wrong parts
    checks/      one check per rubric test (q1.py, q2.py, q3.py): inputs, reference,
                 comparison (child/compare.py's got/expected messages), in the grading process
    rubric       rubric.toml: each test's points, visibility, time allowance, training budget and margin
    calibration  measures the thresholds of the training tests and the reference's times
    thresholds   reads what calibration measured (calibration.json)
    selfcheck    the grader checks itself before it grades anyone
    results      the aggregator: results.json (Gradescope), feedback.md, summary table
    grade        the whole grading of one tree
    batch        a class: a grading process per student, the gradebook (cluster: on a Dask cluster)
    report       the class report; similarity: similar pairs of students

Command line: `python -m autograder --help`.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository: solution/, assignment/, data/, autograder/
