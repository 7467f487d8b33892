"""Obtaining and caching the homework's data.

- `data.fashion_mnist`: Question 2's images, verified by checksum, split 50k/10k/10k.
- `data.sydney_captions`: Question 3's captions, splits and vocabulary, read from the
  folder named by `SYDNEY_DIR`.
- `data.features`: the frozen pretrained encoder and its cached feature file.

Everything derived is cached under `data/cache/` (or `$HW2_CACHE_DIR`), never committed.
Command line: `python -m data --help`.
"""

import os
from pathlib import Path

CACHE_DIR = Path(os.environ.get("HW2_CACHE_DIR") or Path(__file__).resolve().parent / "cache")


class DataError(Exception):
    """A data file is missing, unreadable or not what it should be; the message says the fix."""
