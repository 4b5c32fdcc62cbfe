"""Descriptors of any image files: `extract_images` (what `mmhpn extract` and `mmhpn rank` call).

The images go through the evaluation transform (`mmhpn.data.build_transforms`, train=False)
and `extract_features`, the same steps `mmhpn.evaluation.model.evaluate_model` takes for a
dataset's query and gallery images, with the run's evaluation options (`run_descriptor_options`:
its input size, its flip averaging, its precision and memory format), so a run's descriptor of
an image is computed as its metrics' were. (A run with a frozen, cached trunk scored stored
layer3 maps, `mmhpn.trunk_cache`; the whole network recomputes them here, in the same precision.)

* `image_paths` - the images of a folder (recursively, sorted) or of a list file;
* `load_inputs` - model inputs (N, 3, H, W) for a few image files (Grad-CAM's input);
* `extract_images` - descriptors of many files, batch by batch, with unreadable files
  stopping the extraction or reported and left out (`on_error`);
* `save_descriptors` - them as the .npz file `mmhpn extract` writes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mmhpn.atomic import atomic_path
from mmhpn.data import ImageDataset, ImageRecord, build_transforms, collate_batch
from mmhpn.errors import ConfigError, DatasetError
from mmhpn.evaluation.features import extract_features
from mmhpn.runtime import autocast

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
ON_ERROR = ("stop", "skip")


def image_paths(source: str | os.PathLike) -> tuple[list[str], list[str]]:
    """``(paths, names)`` of the images `source` names.

    A folder: every file below it whose name ends in one of `IMAGE_SUFFIXES` (any case),
    sorted by its path relative to the folder, which is its name. A text file: one image
    path per line as written (blank lines ignored), each line its own name; relative paths
    are relative to the current directory, like every path on the command line.
    """
    source = Path(source)
    if source.is_dir():
        found = sorted(p.relative_to(source).as_posix() for p in source.rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise DatasetError(f"no images under {source}: expected files ending in {', '.join(IMAGE_SUFFIXES)}")
        return [str(source / name) for name in found], found
    if source.is_file():
        lines = [line.strip() for line in source.read_text(encoding="utf-8").splitlines()]
        names = [line for line in lines if line]
        if not names:
            raise DatasetError(f"the image list {source} holds no paths; expected one image path per line")
        return names, names
    raise FileNotFoundError(f"{source} is neither a folder of images nor a text file listing images")


def _dataset(paths: Sequence[str], height: int, width: int) -> ImageDataset:
    # The record's id slot carries the image's position, so the batches say which images they hold.
    records = [ImageRecord(str(path), index, -1) for index, path in enumerate(paths)]
    return ImageDataset(records, build_transforms(height, width, train=False))


def load_inputs(paths: Sequence[str], height: int, width: int) -> torch.Tensor:
    """Model inputs (N, 3, height, width) for image files: the evaluation transform's output."""
    if not paths:
        raise ConfigError("no image paths given; expected at least one")
    dataset = _dataset(paths, height, width)
    return collate_batch([dataset[i] for i in range(len(dataset))])[0]


class _ReadableBatches:
    """(images, positions, cameras) batches of the readable images, `extract_features`' loader.

    An unreadable image raises `DatasetError` (on_error="stop") or is recorded in `skipped`
    as (path, reason) and left out (on_error="skip"); the others still fill whole batches.
    """

    def __init__(self, paths: Sequence[str], height: int, width: int, batch_size: int, on_error: str):
        self.dataset = _dataset(paths, height, width)
        self.batch_size = batch_size
        self.on_error = on_error
        self.skipped: list[tuple[str, str]] = []

    def __len__(self) -> int:  # the progress bar's total
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self):
        items, yielded = [], False
        for index in range(len(self.dataset)):
            try:
                items.append(self.dataset[index])
            except DatasetError as err:
                if self.on_error == "stop":
                    raise DatasetError(f"{err} (to leave unreadable images out instead: on_error='skip', "
                                       "`--on-error skip` on the command line)") from None
                self.skipped.append((self.dataset.records[index].path, str(err)))
            if len(items) == self.batch_size:
                yield collate_batch(items)
                items, yielded = [], True
        if items:
            yield collate_batch(items)
        elif not yielded:
            raise DatasetError(f"none of the {len(self.dataset)} images could be read, e.g. {self.skipped[0][1]}")


@dataclass
class ImageDescriptors:
    """`extract_images`' result: one descriptor row per readable image, in the order given."""

    features: torch.Tensor  # (N, D) float32 on the CPU
    positions: list[int]  # each row's index in the paths given
    paths: list[str]  # the readable images' paths, one per row of `features`
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why) of each image left out


def extract_images(model: torch.nn.Module, paths: Sequence[str], *, height: int, width: int, flip: bool = False,
                   batch_size: int = 64, device: torch.device | str = "cpu", precision: str = "fp32",
                   channels_last: bool = False, on_error: str = "stop", progress: bool = True) -> ImageDescriptors:
    """Test-time descriptors of image files under `model` (as `evaluate_model` computes them).

    `height`, `width`: the size the model was trained at (the images are resized to it).
    `flip` averages each descriptor with its mirror image's; `precision` is a concrete
    autocast precision (`mmhpn.runtime.resolve_precision`). `on_error`: "stop" raises
    `DatasetError` at the first unreadable image; "skip" leaves it out and lists it in the
    result's `skipped`. Raises `DatasetError` when no image could be read.
    """
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    paths = [str(path) for path in paths]
    if not paths:
        raise ConfigError("no image paths given; expected at least one")
    device = torch.device(device)
    batches = _ReadableBatches(paths, height, width, batch_size, on_error)
    with autocast(device, precision):
        features, positions, _ = extract_features(model, batches, device, flip=flip, progress=progress,
                                                  channels_last=channels_last)
    positions = [int(i) for i in positions]
    return ImageDescriptors(features, positions, [paths[i] for i in positions], batches.skipped)


def run_descriptor_options(config, precision: str) -> dict:
    """`extract_images`' options that make a run's descriptors as its evaluations made them
    (`mmhpn.training.evaluation_options`: the input size, the flip averaging, the memory
    format) at the concrete `precision` (the run's own, resolved on this device, for the
    descriptors its metrics were computed from)."""
    from mmhpn.training import evaluation_options  # the training loop imports this package

    options = evaluation_options(config, precision)
    return {key: options[key] for key in ("height", "width", "flip", "precision", "channels_last")}


def save_descriptors(path: str | os.PathLike, descriptors: ImageDescriptors, names: Sequence[str], *, run_hash: str,
                     flip: bool, precision: str) -> Path:
    """Write `descriptors` to `path` (.npz, atomically; `np.load` reads it without pickle).

    `names`: one per path given to `extract_images` (e.g. `image_paths`' names). Arrays:
    ``features`` (N, D) float32, ``names`` (N,) of its rows, ``skipped`` the names of the
    images left out, ``run_hash``, ``descriptor_dim``, ``flip``, ``precision``.
    """
    path = Path(path)
    kept = set(descriptors.positions)
    features = descriptors.features.numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:  # a file object: savez adds no suffix
        np.savez(handle, features=features, names=np.array([names[i] for i in descriptors.positions], dtype=str),
                 skipped=np.array([name for i, name in enumerate(names) if i not in kept], dtype=str),
                 run_hash=np.array(run_hash), descriptor_dim=np.array(features.shape[1]), flip=np.array(flip),
                 precision=np.array(precision))
    return path
