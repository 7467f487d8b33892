"""Command line: `python -m data fashion-mnist` fetches, verifies and caches Fashion-MNIST."""

import argparse
import sys

from data import DataError


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fashion-mnist", help="fetch, verify and cache the four official files")
    args = parser.parse_args(argv)
    try:
        if args.command == "fashion-mnist":
            from data import fashion_mnist

            folder = fashion_mnist.prepare()
            print(f"Fashion-MNIST ready in {folder}")
    except DataError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
