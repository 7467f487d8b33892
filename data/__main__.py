"""Command line of the data step.

    python -m data fashion-mnist                 fetch, verify and cache Fashion-MNIST
    python -m data features [--encoder --layer]  cache the encoder's features of $SYDNEY_DIR
"""

import argparse
import sys

from data import DataError


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fashion-mnist", help="fetch, verify and cache the four official files")
    feats = sub.add_parser("features", help="cache the encoder's features of Sydney-Captions ($SYDNEY_DIR)")
    feats.add_argument("--encoder", default=None, help="default: data/features.py's DEFAULT_ENCODER")
    feats.add_argument("--layer", default=None, help="default: data/features.py's DEFAULT_LAYER")
    args = parser.parse_args(argv)
    try:
        if args.command == "fashion-mnist":
            from data import fashion_mnist

            folder = fashion_mnist.prepare()
            print(f"Fashion-MNIST ready in {folder}")
        elif args.command == "features":
            from data import features

            path = features.extract(encoder=args.encoder or features.DEFAULT_ENCODER,
                                    layer=args.layer or features.DEFAULT_LAYER)
            print(f"features ready: {path}")
    except DataError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
