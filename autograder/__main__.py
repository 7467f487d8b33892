"""Command line of the instructor tooling: `python -m autograder <command> ...`."""

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m autograder")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="generate the student tree from the reference tree")
    gen.add_argument("reference", help="reference tree, e.g. solution")
    gen.add_argument("student", help="student tree to (re)write, e.g. assignment")
    args = parser.parse_args(argv)

    if args.command == "generate":
        from autograder.generate import MarkerError, generate

        try:
            files = generate(args.reference, args.student)
        except MarkerError as error:
            sys.exit(f"error: {error}")
        print(f"wrote {len(files)} files to {args.student}/: {', '.join(map(str, files))}")


if __name__ == "__main__":
    main()
