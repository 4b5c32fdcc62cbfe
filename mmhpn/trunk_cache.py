"""layer3 maps of a frozen, pretrained trunk: computed once, shared by every run fine-tuned from it.

With ``freeze_below_layer4`` the stem..layer3 of a run are its ``init_from`` run's weights
and never change (no gradients, BatchNorm in eval mode), so layer3's output for an image
depends only on that pretraining run, the image and the input pipeline - not on the row
(layout, pooling, loss) nor on the fine-tuning seed. Every Table 4-7 mechanism lives in
layer4 and the heads. So `layer3_maps` computes the maps of a list of images (and of their
mirror images, for the training flip or the flip evaluation) once and stores them in
``<runs>/trunk-features/<key>.pt``, where every later run of the build finds them: the
training epochs and the evaluations then run layer4 + heads only.

The key is the sha256 of everything the maps depend on: the pretraining configuration's
hash (its fields and code versions), the input size, precision, memory format and device
type, `mmhpn.versions.TRAINING_SEMANTICS_VERSION`, and each image's file name, size,
modification time, identity and camera (`mmhpn.data.fingerprint.image_entries`) - so
regenerated or edited data, another trunk or changed code never meet an old file. The file is written atomically under a lock (two
processes compute it once); a file that cannot be read back is moved aside (never
deleted) and computed again, with one line saying so. Loaded with ``weights_only=True``.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Sequence

import torch
from filelock import FileLock

from mmhpn import versions
from mmhpn.atomic import atomic_torch_save
from mmhpn.config import TrainConfig, config_hash, pretraining_config
from mmhpn.data import build_eval_loader
from mmhpn.data.fingerprint import image_entries
from mmhpn.errors import ConfigError
from mmhpn.runtime import autocast

FOLDER = "trunk-features"


def cache_key(config: TrainConfig, records: Sequence, device: torch.device, precision: str) -> str:
    """sha256 of what the layer3 maps of `records` depend on (see the module docstring)."""
    if config.init_from is None:
        raise ConfigError("a shared trunk cache needs init_from: a randomly initialised trunk differs per seed")
    images = image_entries(records, with_mtime=True)  # name, size, mtime, identity, camera
    fields = {"trunk": config_hash(pretraining_config(config.init_from)), "height": config.height,
              "width": config.width, "precision": precision, "channels_last": config.channels_last,
              "device": device.type, "semantics": versions.TRAINING_SEMANTICS_VERSION, "images": images}
    return hashlib.sha256(json.dumps(fields, separators=(",", ":")).encode("utf-8")).hexdigest()


def layer3_maps(model, records: Sequence, config: TrainConfig, device: torch.device, precision: str,
                cache_dir: str | os.PathLike | None, mirrored: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """layer3's output for every record's image, and for its mirror image if `mirrored`.

    With `cache_dir` (and ``config.init_from``), read from / written to the shared cache
    there; otherwise computed in memory. The maps keep the dtype the precision gives
    (bf16 halves the memory).
    """
    if cache_dir is None or config.init_from is None:
        return compute_layer3_maps(model, records, config, device, precision, mirrored)
    path = Path(cache_dir) / f"{cache_key(config, records, device, precision)}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_name(path.name + ".lock"))):
        stored = _read(path, mirrored)
        if stored is not None:
            return stored
        features, flipped = compute_layer3_maps(model, records, config, device, precision, mirrored)
        atomic_torch_save({"features": features, "mirrored": flipped}, path)
        return features, flipped


def maps_source(model, config: TrainConfig, device: torch.device, precision: str, cache_dir: str | os.PathLike | None):
    """`layer3_maps` for `model`, remembered per record list: a callable ``(records, mirrored)``.

    What an evaluation from cached maps takes (`mmhpn.evaluation.model.evaluate_model`'s
    ``layer3_maps``): a training run that evaluates every few epochs asks for the same split
    more than once, and reads its maps once.
    """
    maps_of: dict[tuple[int, bool], tuple] = {}  # (id of a split's record list, mirrored) -> maps

    def maps(records: Sequence, mirrored: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        key = (id(records), mirrored)
        if key not in maps_of:
            maps_of[key] = layer3_maps(model, records, config, device, precision, cache_dir=cache_dir,
                                       mirrored=mirrored)
        return maps_of[key]

    return maps


def _read(path: Path, mirrored: bool) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """The stored maps, or None when absent, unreadable (moved aside) or without the mirror maps."""
    if not path.exists():
        return None
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
        features, flipped = stored["features"], stored["mirrored"]
    except Exception as err:  # a damaged file of ours: keep it for inspection, compute again
        aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        print(f"mmhpn.trunk_cache: {path} could not be read ({type(err).__name__}: {err}); "
              f"moved to {aside.name}, computing it again", flush=True)
        return None
    if mirrored and flipped is None:
        return None  # stored for evaluation without flip; recompute with the mirror maps
    return features, flipped if mirrored else None


def compute_layer3_maps(model, records: Sequence, config: TrainConfig, device: torch.device, precision: str,
                        mirrored: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """layer3's output for every record's image (and its mirror image), eval mode, no grad.

    The images go through the evaluation transform (resize + normalisation, no random
    flip); the mirror image is the flipped input tensor, as the training pipeline's flip
    gives.
    """
    loader = build_eval_loader(records, config.height, config.width, batch_size=max(config.batch_size, 64),
                               num_workers=config.num_workers, cache_images=False)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    was_training = model.training
    model.eval()
    features, flipped = [], []
    with torch.inference_mode(), autocast(device, precision):
        for images, _pids, _camids in loader:
            images = images.to(device).contiguous(memory_format=memory_format)
            features.append(model.trunk_below_layer4(images).cpu())
            if mirrored:
                flipped.append(model.trunk_below_layer4(torch.flip(images, dims=[3])).cpu())
    model.train(was_training)
    return torch.cat(features).clone(), torch.cat(flipped).clone() if mirrored else None
