"""The encoder's feature cache: the real pretrained encoder on a few images, keyed and reused."""

import json
import shutil

import pytest
import torch

from data import DataError, features


@pytest.fixture
def tiny_dataset(sydney_dir, tmp_path):
    """Three images of the real dataset, as a dataset folder of their own."""
    raw = json.loads((sydney_dir / "dataset.json").read_text())
    chosen = raw["images"][:3]
    for new_id, image in enumerate(chosen):
        image["imgid"] = new_id
    folder = tmp_path / "tiny"
    (folder / "images").mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps({"dataset": "tiny", "images": chosen}))
    for image in chosen:
        stem = image["filename"].rsplit(".", 1)[0]
        source = next((sydney_dir / "images").glob(f"{stem}.*"))
        shutil.copy(source, folder / "images" / source.name)
    return folder


def test_features_have_the_grid_shape_and_are_reused(tiny_dataset, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    path = features.extract(tiny_dataset, cache_dir=cache, log=lambda *_: None)
    loaded = features.load(tiny_dataset, cache_dir=cache, log=lambda *_: None)
    assert loaded.shape == (3, 256, 1280) and loaded.dtype == torch.float32
    assert torch.isfinite(loaded).all() and loaded.abs().sum() > 0
    # one pass filled the other layer too
    assert len(list((cache / "features").glob("efficientnet-lite0-blocks-512px-*.pt"))) == 1
    assert features.load(tiny_dataset, layer="blocks", cache_dir=cache, log=lambda *_: None).shape == (3, 256, 320)

    def no_encoder(*args, **kwargs):
        raise AssertionError("the cached features should have been reused")

    monkeypatch.setattr(features, "Encoder", no_encoder)
    assert features.extract(tiny_dataset, cache_dir=cache) == path


def test_a_changed_image_gets_a_new_key(tiny_dataset):
    images = sorted((tiny_dataset / "images").iterdir())
    key = features.cache_key("efficientnet-lite0", "head", images)
    assert features.cache_key("efficientnet-lite0", "blocks", images) != key
    assert features.cache_key("resnet18", "head", images) != key
    assert features.cache_key("efficientnet-lite0", "head", images[:2]) != key
    images[0].write_bytes(images[0].read_bytes() + b"\0")
    assert features.cache_key("efficientnet-lite0", "head", images) != key


def test_unreadable_image_is_named_and_nothing_is_cached(tiny_dataset, tmp_path):
    broken = sorted((tiny_dataset / "images").iterdir())[1]
    broken.write_bytes(b"not an image")
    with pytest.raises(DataError, match=f"{broken}.* not a readable image"):
        features.extract(tiny_dataset, cache_dir=tmp_path / "cache", log=lambda *_: None)
    assert not list((tmp_path / "cache").rglob("*.pt"))


def test_unknown_encoder_or_layer_is_refused(tiny_dataset, tmp_path):
    with pytest.raises(DataError, match="unknown encoder"):
        features.extract(tiny_dataset, encoder="vgg", cache_dir=tmp_path)
    with pytest.raises(DataError, match="no layer 'fc'"):
        features.extract(tiny_dataset, layer="fc", cache_dir=tmp_path)


def test_damaged_cache_file_is_removed_with_a_message(tiny_dataset, tmp_path):
    cache = tmp_path / "cache"
    path = features.extract(tiny_dataset, cache_dir=cache, log=lambda *_: None)
    path.write_bytes(b"garbage")
    with pytest.raises(DataError, match="unreadable .* removed"):
        features.load(tiny_dataset, cache_dir=cache, log=lambda *_: None)
    assert not path.exists()
