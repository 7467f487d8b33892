"""Fashion-MNIST: obtain the four official files, verify them, cache them, split them.

Where the files come from, in order:
  1. Debian's package `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist`),
  2. the official download location (Zalando's S3 bucket).

Each file is decompressed into a temporary file next to the cache, checked by size and
MD5 of its *decompressed* contents, and only then moved into place, so a truncated or
altered file never lands in the cache. Parsing is torchvision's (`datasets.FashionMNIST`).

Splits follow the hand-out: the 60,000 training images are split 50,000 train /
10,000 dev by a fixed seed; the official 10,000 test images are the test set; pixels
are scaled by 1/256.
"""

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import torch

from data import CACHE_DIR, DataError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
OFFICIAL_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

# name of the decompressed file -> (size in bytes, md5 of the decompressed contents)
OFFICIAL_FILES = {
    "train-images-idx3-ubyte": (47_040_016, "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    "train-labels-idx1-ubyte": (60_008, "9018921c3c673c538a1fc5bad174d6f9"),
    "t10k-images-idx3-ubyte": (7_840_016, "8181f5470baa50b63fa0f6fddb340f0a"),
    "t10k-labels-idx1-ubyte": (10_008, "15d484375f8d13e6eb1aabb0c3f46965"),
}

NUM_TRAIN, NUM_DEV, NUM_TEST = 50_000, 10_000, 10_000
SPLIT_SEED = 42
PIXEL_SCALE = 256.0

FIX = "run `make data` again (it re-fetches the file), or reinstall Debian's `dataset-fashion-mnist`"


def raw_dir(cache_dir=CACHE_DIR):
    """Folder holding the four decompressed files, laid out as torchvision expects."""
    return Path(cache_dir) / "FashionMNIST" / "raw"


def _md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_file(path, name):
    """Raise DataError unless `path` holds exactly the official decompressed `name`."""
    size, md5 = OFFICIAL_FILES[name]
    found_size = path.stat().st_size
    if found_size != size:
        raise DataError(f"{name}: {found_size:,} bytes after decompression, expected {size:,} "
                        f"(truncated or not the official file). Fix: {FIX}.")
    found_md5 = _md5(path)
    if found_md5 != md5:
        raise DataError(f"{name}: MD5 {found_md5}, expected {md5} (the file was altered). "
                        f"Fix: {FIX}.")


def _fetch_gzip(name, source_dir, dest):
    """Copy or download `name`.gz into `dest`; return where it came from."""
    local = Path(source_dir) / f"{name}.gz" if source_dir is not None else None
    if local is not None and local.exists():
        shutil.copyfile(local, dest)
        return str(local)
    url = OFFICIAL_URL + f"{name}.gz"
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as error:
        raise DataError(f"{name}.gz: not in {source_dir} and the download from {url} failed "
                        f"({error}). Fix: `apt-get install dataset-fashion-mnist`, or copy the "
                        f"official file into {source_dir}.") from error
    return url


def prepare(cache_dir=CACHE_DIR, source_dir=DEBIAN_DIR, log=print):
    """Make sure the four verified decompressed files are in the cache; return its folder."""
    folder = raw_dir(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for name in OFFICIAL_FILES:
        target = folder / name
        if target.exists():
            try:
                check_file(target, name)
                continue
            except DataError as error:
                log(f"cached {error} Fetching it again.")
                target.unlink()
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            packed = Path(tmp) / f"{name}.gz"
            unpacked = Path(tmp) / name
            origin = _fetch_gzip(name, source_dir, packed)
            try:
                with gzip.open(packed, "rb") as f_in, open(unpacked, "wb") as f_out:
                    shutil.copyfileobj(f_in, f_out)
            except (OSError, EOFError) as error:
                raise DataError(f"{name}.gz from {origin} is not a readable gzip file "
                                f"({error}). Fix: {FIX}.") from error
            try:
                check_file(unpacked, name)
            except DataError as error:
                raise DataError(f"{error} (source: {origin})") from None
            os.replace(unpacked, target)
        log(f"{name}: verified and cached from {origin}")
    return folder


def split_indices(seed=SPLIT_SEED):
    """Indices of the 60,000 official training images that form (train, dev): 50,000 / 10,000."""
    order = torch.from_numpy(np.random.RandomState(seed).permutation(NUM_TRAIN + NUM_DEV))
    return order[:NUM_TRAIN], order[NUM_TRAIN:]


def load_splits(cache_dir=CACHE_DIR, seed=SPLIT_SEED):
    """Return {"train": (X, y), "dev": (X, y), "test": (X, y)}.

    X: float32 tensor (n, 1, 28, 28), pixels in [0, 1) (scaled by 1/256);
    y: int64 tensor (n,), class indices 0..9. Sizes 50,000 / 10,000 / 10,000.
    """
    from torchvision.datasets import FashionMNIST

    folder = raw_dir(cache_dir)
    for name in OFFICIAL_FILES:
        if not (folder / name).exists():
            raise DataError(f"Fashion-MNIST is not in the cache ({folder / name} is missing). "
                            f"Fix: run `make data`.")
        check_file(folder / name, name)
    train = FashionMNIST(str(cache_dir), train=True, download=False)
    test = FashionMNIST(str(cache_dir), train=False, download=False)

    train_idx, dev_idx = split_indices(seed)

    def as_xy(images, labels):
        return (images.unsqueeze(1).float() / PIXEL_SCALE, labels.long())

    return {
        "train": as_xy(train.data[train_idx], train.targets[train_idx]),
        "dev": as_xy(train.data[dev_idx], train.targets[dev_idx]),
        "test": as_xy(test.data, test.targets),
    }
