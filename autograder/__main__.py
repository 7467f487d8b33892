"""Command line of the instructor tooling: `python -m autograder <command> ...`.

    grade <tree> [--out DIR] [--only 2.2,3.1b]   grade a tree, write results.json and feedback.md
    grade-all <dir> [--out DIR] [--jobs N]       grade a class, write gradebook.csv
              [--scheduler ADDRESS --tls DIR]    ... on a Dask cluster, over mutual TLS
    report <grades> [--out DIR]                  class report of a grade-all output: report.html, report-tests.csv
    similarity <dir> [--out DIR]                 similar pairs of students, and students close to the reference
    generate <solution> <assignment>             generate the student tree from the reference
    calibrate [--only 2.2-accuracy,timing,...]   re-measure the thresholds and the reference's times
    release <dir>                                build the students' repository
    gradescope <zip> --sydney-dir DIR            build the Gradescope autograder bundle
"""

import argparse
import contextlib
import os
import sys
from pathlib import Path


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    grade = sub.add_parser("grade", help="grade a tree laid out like assignment/")
    grade.add_argument("tree")
    grade.add_argument("--out", help="default grades/<name of the tree>")
    grade.add_argument("--only", help="comma-separated questions or test ids, e.g. 2.2,3.1b-bleu")
    grade.add_argument("--unsandboxed", action="store_true",
                       help="grade even where student code cannot be isolated (it then runs with your privileges; "
                            "the results say so)")
    batch = sub.add_parser("grade-all", help="grade every submission under a folder, write gradebook.csv")
    batch.add_argument("submissions", help="one folder or .zip per student")
    batch.add_argument("--out", default="grades/class")
    batch.add_argument("--jobs", type=int, default=2)
    batch.add_argument("--only", help="comma-separated questions")
    batch.add_argument("--regrade", action="store_true", help="grade again students already graded")
    batch.add_argument("--unsandboxed", action="store_true", help="as for grade")
    batch.add_argument("--scheduler", help="grade on this Dask cluster: the scheduler's address (tls://host:8786) "
                                           "or its scheduler file; --jobs is then ignored")
    batch.add_argument("--tls", metavar="DIR", help="the folder of this client's certificates for the cluster: ca.pem, "
                                                    "cert.pem, key.pem (sh tools/cluster-certs.sh makes them)")
    batch.add_argument("--insecure-scheduler", action="store_true",
                       help="accept a plain tcp:// scheduler (no authentication: whoever reaches it runs code on the "
                            "workers); the gradebook and the report say so")
    gen = sub.add_parser("generate", help="generate the student tree from the reference tree")
    gen.add_argument("reference", help="reference tree, e.g. solution")
    gen.add_argument("student", help="student tree to (re)write, e.g. assignment")
    cal = sub.add_parser("calibrate", help="re-measure the thresholds of the training tests and every test's time")
    cal.add_argument("--only", help="comma-separated test ids, and/or 'timing'")
    rel = sub.add_parser("release", help="build the students' repository (skeletons, provided code, public tests)")
    rel.add_argument("out", help="folder to (re)write, e.g. dist/homework2")
    gs = sub.add_parser("gradescope", help="build the Gradescope autograder bundle (setup.sh, run_autograder)")
    gs.add_argument("zip", help="e.g. dist/autograder.zip")
    gs.add_argument("--sydney-dir", default=os.environ.get("SYDNEY_DIR"), help="default $SYDNEY_DIR")
    rep = sub.add_parser("report", help="class report of a grade-all output (report.html, report-tests.csv)")
    rep.add_argument("grades", help="the --out folder of grade-all, e.g. grades/class")
    rep.add_argument("--out", help="folder to write into (default: the grades folder)")
    sim = sub.add_parser("similarity", help="similar pairs of students: similarity.html, similarity.csv, reference.csv")
    sim.add_argument("submissions", help="one folder or .zip per student, as for grade-all")
    sim.add_argument("--out", default="grades/similarity", help="default grades/similarity")
    args = parser.parse_args(argv)

    if args.command == "grade":
        from autograder import template

        with template.warm_template(args.unsandboxed):  # it imports torch while this process does
            _grade(args)
    elif args.command == "grade-all":
        from autograder.batch import grade_all

        with _exit_when_grading_stops(f"{args.out}/gradebook.csv holds the students graded so far; run the same "
                                      f"command again to grade the rest"):
            path, rows = grade_all(args.submissions, args.out, args.jobs, args.only.split(",") if args.only else None,
                                   args.regrade, allow_unsandboxed=args.unsandboxed, scheduler=args.scheduler,
                                   tls=args.tls, insecure_scheduler=args.insecure_scheduler)
        print(f"Wrote {path} ({len(rows)} students) and {args.out}/<student>/results.json, feedback.md")
        from autograder.batch import REDUCED_BUDGET
        from autograder.thresholds import budget_in_use
        if budget_in_use()[0] == "test":
            print(f"WARNING: {REDUCED_BUDGET}")
    elif args.command == "generate":
        from autograder.generate import MarkerError, generate

        try:
            files = generate(args.reference, args.student)
        except MarkerError as error:
            sys.exit(f"error: {error}")
        print(f"wrote {len(files)} files to {args.student}/: {', '.join(map(str, files))}")
    elif args.command == "calibrate":
        from autograder.calibration import calibrate
        from autograder.thresholds import CalibrationError

        try:
            calibrate(args.only.split(",") if args.only else None)
        except CalibrationError as error:
            sys.exit(f"error: {error}")
    elif args.command == "release":
        from autograder.release import build

        try:
            files = build(args.out)
        except ValueError as error:
            sys.exit(f"error: {error}")
        print(f"wrote the students' repository to {args.out}/ ({len(files)} files); `cd {args.out} && make test` "
              f"runs its public tests")

    elif args.command == "gradescope":
        from autograder.gradescope import build as build_bundle

        try:
            names = build_bundle(args.zip, args.sydney_dir)
        except FileNotFoundError as error:
            sys.exit(f"error: {error}")
        size = Path(args.zip).stat().st_size / 1e6
        print(f"wrote {args.zip} ({len(names)} files, {size:.0f} MB): upload it as the autograder of a "
              f"Gradescope programming assignment (Ubuntu 24.04 base image)")
    elif args.command == "report":
        from autograder.report import NotAGradeAllOutput, TESTS_FILE, write_report

        try:
            page = write_report(args.grades, args.out)
        except NotAGradeAllOutput as error:
            sys.exit(f"error: {error}")
        print(f"wrote {page} and {page.with_name(TESTS_FILE)} (one row per student and test)")
    elif args.command == "similarity":
        from autograder.similarity import similarity

        try:
            similarity(args.submissions, args.out)
        except FileNotFoundError as error:
            sys.exit(f"error: {error}")


def _grade(args):
    """`python -m autograder grade`."""
    from autograder.grade import grade

    out = Path(args.out or Path("grades") / Path(args.tree).resolve().name)
    with _exit_when_grading_stops(f"{out / 'results.json'} holds the tests done so far (marked incomplete); grade "
                                  f"again for the rest"):
        _stop_past_memory_limit()
        results = grade(args.tree, out, args.only.split(",") if args.only else None,
                        allow_unsandboxed=args.unsandboxed)
    print()
    print(results.summary_table())
    print(f"Wrote {out / 'results.json'} and {out / 'feedback.md'}")


@contextlib.contextmanager
def _exit_when_grading_stops(interrupted):
    """`grade` and `grade-all`: exit with the message of an error that stops grading before it starts (no
    tree, the rubric, the calibration, the sandbox, the environment), or with status 130 and
    `interrupted` (what was kept) after Ctrl-C or SIGTERM."""
    from autograder.rubric import RubricError
    from autograder.sandbox import SandboxError
    from autograder.selfcheck import EnvironmentBroken
    from autograder.thresholds import CalibrationError

    try:
        yield
    except (FileNotFoundError, RubricError, CalibrationError, SandboxError, EnvironmentBroken) as error:
        sys.exit(f"error: {error}")
    except KeyboardInterrupt:
        print(f"\ninterrupted: {interrupted}", file=sys.stderr)
        sys.exit(130)


def _stop_past_memory_limit():
    """`grade`'s own memory bound (grade-all's grading processes are watched from outside:
    batch.run_grading_process): past HW2_GRADER_MEMORY_GB of resident memory, grading is interrupted as by
    SIGTERM (the results written so far stay valid, marked interrupted), and ended 10 s later if it has not
    stopped. RubricError for a setting that is not a positive number."""
    import signal
    import threading
    import time

    from autograder.batch import POLL_SECONDS, _resident_bytes, grading_limits

    _, limit = grading_limits()

    def watch():
        while (used := _resident_bytes(os.getpid())) <= limit:
            time.sleep(POLL_SECONDS)
        print(f"\nerror: the grading process used {used / 2**30:.1f} GB of memory, more than its limit of "
              f"{limit / 2**30:g} GB (HW2_GRADER_MEMORY_GB); grading stopped", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


if __name__ == "__main__":
    main()
