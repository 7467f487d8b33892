"""Fashion-MNIST: checksums guard the cache, the splits are the hand-out's."""

import gzip

import pytest
import torch

from data import DataError, fashion_mnist as fm


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A folder of the four official gzip files, rebuilt from the verified cache."""
    folder = tmp_path_factory.mktemp("source")
    for name in fm.OFFICIAL_FILES:
        data = (fm.raw_dir() / name).read_bytes()
        (folder / f"{name}.gz").write_bytes(gzip.compress(data, compresslevel=1))
    return folder


def _replace(source, name, data, tmp_path):
    """A copy of `source` where `name`.gz holds `data` (already compressed or not)."""
    folder = tmp_path / "bad-source"
    folder.mkdir()
    for other in fm.OFFICIAL_FILES:
        (folder / f"{other}.gz").symlink_to(source / f"{other}.gz")
    (folder / f"{name}.gz").unlink()
    (folder / f"{name}.gz").write_bytes(data)
    return folder


def test_verified_files_are_cached(source, tmp_path):
    folder = fm.prepare(cache_dir=tmp_path, source_dir=source, log=lambda *_: None)
    assert sorted(p.name for p in folder.iterdir()) == sorted(fm.OFFICIAL_FILES)


@pytest.mark.parametrize("damage, message", [
    (lambda raw: raw[:-100], "bytes after decompression"),           # truncated
    (lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]), "MD5"),            # one bit altered
])
def test_damaged_file_is_rejected_and_never_cached(source, tmp_path, damage, message):
    name = "train-labels-idx1-ubyte"
    raw = (fm.raw_dir() / name).read_bytes()
    bad = _replace(source, name, gzip.compress(damage(raw)), tmp_path)
    with pytest.raises(DataError) as error:
        fm.prepare(cache_dir=tmp_path / "cache", source_dir=bad, log=lambda *_: None)
    assert name in str(error.value) and message in str(error.value)
    assert "make data" in str(error.value)
    cached = fm.raw_dir(tmp_path / "cache")
    assert not (cached / name).exists()
    assert [p.name for p in cached.iterdir()] == ["train-images-idx3-ubyte"]  # only the good file before it


def test_file_that_is_not_gzip_is_rejected(source, tmp_path):
    name = "t10k-labels-idx1-ubyte"
    bad = _replace(source, name, b"<html>404 not found</html>", tmp_path)
    with pytest.raises(DataError, match=f"{name}.gz .* not a readable gzip"):
        fm.prepare(cache_dir=tmp_path / "cache", source_dir=bad, log=lambda *_: None)
    assert not (fm.raw_dir(tmp_path / "cache") / name).exists()


def test_corrupted_cache_is_fetched_again(source, tmp_path):
    folder = fm.prepare(cache_dir=tmp_path, source_dir=source, log=lambda *_: None)
    target = folder / "t10k-labels-idx1-ubyte"
    target.write_bytes(target.read_bytes()[:50])
    messages = []
    fm.prepare(cache_dir=tmp_path, source_dir=source, log=messages.append)
    fm.check_file(target, target.name)
    assert any("Fetching it again" in m for m in messages)


def test_loading_a_corrupted_cache_fails_with_the_fix(source, tmp_path):
    folder = fm.prepare(cache_dir=tmp_path, source_dir=source, log=lambda *_: None)
    (folder / "t10k-images-idx3-ubyte").write_bytes(b"\0" * 16)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.*make data"):
        fm.load_splits(cache_dir=tmp_path)


def test_missing_cache_names_the_command(tmp_path):
    with pytest.raises(DataError, match="make data"):
        fm.load_splits(cache_dir=tmp_path)


def test_split_indices_are_a_fixed_disjoint_partition():
    train, dev = fm.split_indices()
    assert len(train) == 50_000 and len(dev) == 10_000
    assert torch.equal(torch.cat([train, dev]).sort().values, torch.arange(60_000))
    again_train, _ = fm.split_indices()
    assert torch.equal(train, again_train)
    other_train, _ = fm.split_indices(seed=1)
    assert not torch.equal(train, other_train)


def test_splits_have_the_hand_out_sizes_and_scaling():
    splits = fm.load_splits()
    sizes = {name: len(X) for name, (X, _) in splits.items()}
    assert sizes == {"train": 50_000, "dev": 10_000, "test": 10_000}
    for X, y in splits.values():
        assert X.dtype == torch.float32 and X.shape[1:] == (1, 28, 28)
        assert y.dtype == torch.int64 and set(y.unique().tolist()) == set(range(10))
        assert X.min() == 0 and X.max() == 255 / 256
    # the dev images are training images the train split does not contain
    train_X, dev_X = splits["train"][0], splits["dev"][0]
    train_rows = {bytes(row.numpy()) for row in (train_X[:, 0] * 256).to(torch.uint8)}
    dev_rows = [bytes(row.numpy()) for row in (dev_X[:, 0] * 256).to(torch.uint8)]
    overlap = sum(row in train_rows for row in dev_rows)
    assert overlap < 50, f"{overlap} dev images also in train (only exact duplicates of the dataset allowed)"
