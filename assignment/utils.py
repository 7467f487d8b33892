"""Provided helpers shared by the homework scripts (you do not need to change this file)."""

import json
import os
import random
from pathlib import Path

import numpy as np
import torch


def configure_seed(seed):
    """Seed Python, numpy and torch so that a run can be repeated exactly."""
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_fashion_mnist():
    """Fashion-MNIST splits as in the hand-out, from the verified cache (`make data`).

    Returns {"train": (X, y), "dev": (X, y), "test": (X, y)} with
    X: float32 (n, 1, 28, 28) scaled by 1/256 and y: int64 (n,); n = 50000 / 10000 / 10000.
    """
    from data.fashion_mnist import load_splits

    return load_splits()


def load_captioning_data(encoder=None, layer=None):
    """Sydney-Captions from $SYDNEY_DIR and the cached image features (`make features`).

    Returns (dataset, features): dataset.images (ordered by imgid), dataset.split("train"),
    dataset.vocab, dataset.max_caption_length; features: float32 (613, num_locations, encoder_dim),
    row i for the image with imgid i.
    """
    from data import features, sydney_captions

    dataset = sydney_captions.load()
    return dataset, features.load(encoder=encoder or features.DEFAULT_ENCODER,
                                  layer=layer or features.DEFAULT_LAYER)


def sydney_image_path(stem):
    """Path of image `stem` (e.g. "219") in $SYDNEY_DIR/images, .tif or .jpg."""
    from data.sydney_captions import image_path

    return image_path(stem)


def plot_curve(epochs, values, ylabel, path, title=None):
    """Save a line plot of `values` against `epochs` as a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(epochs, values, marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_json(obj, path):
    """Write `obj` as indented JSON, creating the folder if needed."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
