"""Sydney-Captions: splits, vocabulary, and clear messages for a broken dataset folder."""

import shutil

import pytest

from data import DataError, sydney_captions


def test_split_sizes_and_captions(sydney):
    assert [len(sydney.split(name)) for name in ("train", "val", "test")] == [497, 58, 58]
    assert len(sydney.images) == 613
    assert all(len(image.captions) == 5 for image in sydney.images)
    assert {image.stem for image in sydney.split("test")} >= {"219", "540", "357"}


def test_vocabulary_is_the_training_words_plus_specials(sydney):
    vocab = sydney.vocab
    train_words = {w for image in sydney.split("train") for caption in image.captions for w in caption}
    assert set(vocab.itos) == train_words | {"<pad>", "<start_seq>", "<end_seq>", "<unk>"}
    assert len(vocab) == len(train_words) + 4 == 190
    assert vocab.pad == 0 and all(w == w.lower() for w in vocab.itos)
    assert sydney.max_caption_length == 20


def test_encode_and_decode_round_trip(sydney):
    vocab = sydney.vocab
    encoded = vocab.encode(("a", "residential", "zeppelin"))
    assert encoded[0] == vocab.start and encoded[-1] == vocab.end
    assert vocab.itos[encoded[3]] == "<unk>"
    assert vocab.decode(encoded + [vocab.pad] * 3) == ["a", "residential", "<unk>"]


def test_unset_dir_says_what_to_set(monkeypatch):
    monkeypatch.delenv("SYDNEY_DIR", raising=False)
    with pytest.raises(DataError, match="SYDNEY_DIR is not set"):
        sydney_captions.load()


def _copy_dataset(sydney_dir, tmp_path):
    folder = tmp_path / "sydney"
    folder.mkdir()
    shutil.copy(sydney_dir / "dataset.json", folder / "dataset.json")
    (folder / "images").symlink_to((sydney_dir / "images").resolve())
    return folder


@pytest.mark.parametrize("corrupt, message", [
    (lambda text: text[: len(text) // 2], "dataset.json is malformed"),
    (lambda text: text.replace('"split"', '"spilt"', 1), "missing field 'split'"),
    (lambda text: text.replace('"split": "train"', '"split": "training"', 1), "split 'training'"),
])
def test_malformed_dataset_json_is_named(sydney_dir, tmp_path, corrupt, message):
    folder = _copy_dataset(sydney_dir, tmp_path)
    (folder / "dataset.json").write_text(corrupt((folder / "dataset.json").read_text()))
    with pytest.raises(DataError, match=message) as error:
        sydney_captions.load(folder)
    assert str(folder / "dataset.json") in str(error.value)


def test_missing_image_is_named(sydney_dir, tmp_path):
    folder = tmp_path / "sydney"
    (folder / "images").mkdir(parents=True)
    shutil.copy(sydney_dir / "dataset.json", folder)
    with pytest.raises(DataError, match=r"image 1 is missing.*1\.tif"):
        sydney_captions.image_path("1", folder)


def test_either_extension_is_found(sydney_dir, tmp_path):
    folder = tmp_path / "sydney"
    (folder / "images").mkdir(parents=True)
    shutil.copy(sydney_dir / "dataset.json", folder)
    (folder / "images" / "7.tif").write_bytes(b"x")
    assert sydney_captions.image_path("7", folder).name == "7.tif"
    assert sydney_captions.image_path("219", sydney_dir).suffix in (".tif", ".jpg")
