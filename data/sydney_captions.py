"""Sydney-Captions: splits, captions and vocabulary, read from the folder named by SYDNEY_DIR.

The folder holds `dataset.json` (Karpathy-style: each image has `filename` "N.tif",
`imgid`, `split` train/val/test and 5 `sentences` with `tokens`) and `images/N.tif` or
`images/N.jpg` (either extension is accepted for a stem). It is read-only input: nothing is
written there.

Tokens are lower-cased on loading, as in the hand-out's data (some copies capitalise the first
word of every caption). The vocabulary is the words of the training captions plus `<unk>`,
`<start_seq>`, `<end_seq>` and `<pad>` (index 0).
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from data import DataError

PAD, START, END, UNK = "<pad>", "<start_seq>", "<end_seq>", "<unk>"
SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = (".tif", ".jpg")
CAPTIONS_PER_IMAGE = 5


def sydney_dir(folder=None):
    """The dataset folder: `folder`, else $SYDNEY_DIR; checked to hold dataset.json and images/."""
    folder = folder or os.environ.get("SYDNEY_DIR")
    if not folder:
        raise DataError("SYDNEY_DIR is not set. Point it at the Sydney-Captions folder (the one holding "
                        "dataset.json and images/), e.g. `make features SYDNEY_DIR=/path/to/sydney-captions` "
                        "or `export SYDNEY_DIR=/path/to/sydney-captions`.")
    folder = Path(folder).expanduser()
    if not (folder / "dataset.json").is_file() or not (folder / "images").is_dir():
        raise DataError(f"SYDNEY_DIR={folder} does not hold dataset.json and images/. Point SYDNEY_DIR at the "
                        f"Sydney-Captions folder.")
    return folder


@dataclass(frozen=True)
class Image:
    imgid: int
    stem: str  # "219" for 219.tif / 219.jpg
    split: str  # train, val or test
    captions: tuple  # 5 tuples of lower-cased tokens


def load_images(folder=None):
    """The 613 images of dataset.json, ordered by imgid; a malformed file stops with its name."""
    path = sydney_dir(folder) / "dataset.json"
    try:
        raw = json.loads(path.read_text())
        images = []
        for entry in raw["images"]:
            captions = tuple(tuple(token.lower() for token in sentence["tokens"]) for sentence in entry["sentences"])
            if entry["split"] not in SPLITS:
                raise ValueError(f"image {entry['filename']}: split {entry['split']!r} is not one of {SPLITS}")
            if len(captions) != CAPTIONS_PER_IMAGE or not all(captions):
                raise ValueError(f"image {entry['filename']}: expected {CAPTIONS_PER_IMAGE} non-empty captions")
            images.append(Image(int(entry["imgid"]), Path(entry["filename"]).stem, entry["split"], captions))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
        detail = f"missing field {error}" if isinstance(error, KeyError) else str(error)
        raise DataError(f"{path} is malformed ({detail}). It must be the Sydney-Captions dataset.json: "
                        f'{{"images": [{{"filename", "imgid", "split", "sentences": [{{"tokens"}}, ...]}}]}}. '
                        f"Restore it from the course's copy (check it with SHA256SUMS.json).") from error
    images.sort(key=lambda image: image.imgid)
    if [image.imgid for image in images] != list(range(len(images))):
        raise DataError(f"{path} is malformed: imgid must run 0..{len(images) - 1} without gaps or repeats.")
    return images


def image_path(stem, folder=None):
    """images/<stem>.tif or images/<stem>.jpg, whichever exists."""
    images = sydney_dir(folder) / "images"
    for extension in IMAGE_EXTENSIONS:
        candidate = images / f"{stem}{extension}"
        if candidate.is_file():
            return candidate
    raise DataError(f"image {stem} is missing: neither {images / (stem + '.tif')} nor {stem}.jpg exists. "
                    f"Restore the dataset folder (check it with SHA256SUMS.images).")


class Vocabulary:
    """Words of the training captions plus the special tokens; `<pad>` is index 0."""

    def __init__(self, captions):
        words = sorted({word for caption in captions for word in caption})
        self.itos = [PAD, START, END, UNK] + words
        self.stoi = {word: index for index, word in enumerate(self.itos)}

    def __len__(self):
        return len(self.itos)

    @property
    def pad(self):
        return self.stoi[PAD]

    @property
    def start(self):
        return self.stoi[START]

    @property
    def end(self):
        return self.stoi[END]

    def encode(self, caption):
        """[<start_seq>, words..., <end_seq>] as indices, unknown words as <unk>."""
        unk = self.stoi[UNK]
        return [self.start] + [self.stoi.get(word, unk) for word in caption] + [self.end]

    def decode(self, indices):
        """Words up to the first <end_seq>, without start and padding tokens."""
        words = []
        for index in indices:
            if index == self.end:
                break
            if index not in (self.start, self.pad):
                words.append(self.itos[index])
        return words


@dataclass
class SydneyCaptions:
    """Everything Question 3 reads from the dataset folder."""

    images: list  # all images, ordered by imgid (the row order of the feature file)
    vocab: Vocabulary
    max_caption_length: int  # longest training caption, in words (20)

    def split(self, name):
        return [image for image in self.images if image.split == name]

    def find(self, stem):
        for image in self.images:
            if image.stem == str(stem):
                return image
        raise KeyError(f"no image {stem} in the dataset")


def load(folder=None):
    images = load_images(folder)
    train_captions = [caption for image in images if image.split == "train" for caption in image.captions]
    return SydneyCaptions(images, Vocabulary(train_captions), max(map(len, train_captions)))
