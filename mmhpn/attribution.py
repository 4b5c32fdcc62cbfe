"""Attribution: where a trained model looks, with Grad-CAM (Figures 3 and 4).

Attribution is the ``grad-cam`` package's `pytorch_grad_cam.GradCAM`. The package wants a
model whose output is (batch, classes) and a target callable on one sample's output, so
this module supplies only what it lacks: `StripeClassifierOutput` (one stripe classifier's
logits as the model output) and `EmbeddingSimilarityTarget` (cosine similarity of a
descriptor to a reference descriptor). Grad-CAM normalises every map to [0, 1] on its own
(min-max), so colours compare places within a map, not strengths between maps.

* `stripe_attention` - one raw map per stripe of a scale;
* `compare_attention` - Figure 3's maps: a global model's and each stripe of a part model's;
* `embedding_attention` - the map of what makes a descriptor similar to a reference;
* `similarity_heatmaps` - Figure 4's maps: each ranked query's similarity to its top match.

`mmhpn.figures` draws these maps; nothing here draws.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from mmhpn.errors import ConfigError
from mmhpn.evaluation.images import load_inputs
from mmhpn.model import TAPS


class StripeClassifierOutput(nn.Module):
    """A view of `model` whose output is one stripe classifier's logits, (batch, num_classes).

    Grad-CAM needs a model output of shape (batch, classes); an MMHPN has one classifier per
    stripe, so this wrapper exposes stripe `stripe` of scale `scale_index`.
    """

    def __init__(self, model: nn.Module, scale_index: int, stripe: int):
        super().__init__()
        self.model = model
        self.scale_index = scale_index
        self.stripe = stripe

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.stripe_logits(images)[self.scale_index][:, self.stripe]


class DescriptorOutput(nn.Module):
    """A view of `model` whose output is its test descriptor (batch, D), whatever its mode."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.descriptor(images)


class EmbeddingSimilarityTarget:
    """Grad-CAM target on an embedding: cosine similarity to a fixed reference descriptor.

    `pytorch_grad_cam` calls a target on one sample's model output; with a
    `DescriptorOutput` model that is the sample's descriptor (D,). The score is the
    cosine similarity the ranking uses (mmhpn.evaluation's distance is 1 - cos), so the map
    shows which places make the query look like its reference (e.g. its top match). At an
    exact duplicate of the reference the similarity is at its maximum and its gradient zero up
    to rounding: the map then shows rounding noise, not a place.
    """

    def __init__(self, reference_descriptor):
        reference = torch.as_tensor(reference_descriptor).detach().float().flatten()
        if reference.numel() == 0 or not bool(torch.isfinite(reference).all()):
            raise ConfigError("reference_descriptor must be a non-empty vector of finite values")
        self.reference = reference

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        if model_output.shape[-1] != self.reference.numel():
            raise ConfigError(f"model output is {model_output.shape[-1]}-d but the reference descriptor is "
                              f"{self.reference.numel()}-d; both must come from the same model")
        reference = self.reference.to(model_output.device, model_output.dtype)
        return F.cosine_similarity(model_output, reference.expand_as(model_output), dim=-1)


@contextlib.contextmanager
def _attribution_mode(model: nn.Module):
    """Eval mode (BatchNorm uses running statistics) and gradients on; the mode is restored after.

    Grad-CAM's backward passes leave gradients in the parameters; they are cleared (set to
    None) on exit so a later optimiser step cannot pick them up.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            yield
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)


def _run_gradcam(wrapper: nn.Module, layer: nn.Module, images: torch.Tensor, targets, batch_size: int) -> np.ndarray:
    """GradCAM maps (N, H, W) in [0, 1] for `images` through `wrapper`, batch by batch."""
    from pytorch_grad_cam import GradCAM

    cam = GradCAM(model=wrapper, target_layers=[layer])
    maps = []
    try:
        for start in range(0, len(images), batch_size):
            # An input that requires grad keeps the graph even if the weights are frozen.
            batch = images[start:start + batch_size].detach().clone().requires_grad_(True)
            batch_targets = None if targets is None else targets[start:start + batch_size]
            maps.append(cam(input_tensor=batch, targets=batch_targets))
    finally:
        # Not `with GradCAM(...)`: its __exit__ swallows IndexError, which would hide bugs.
        cam.activations_and_grads.release()
    return np.clip(np.concatenate(maps).astype(np.float32), 0.0, 1.0)


def scale_index_for(model: nn.Module, stripes: int) -> int:
    """Index in `model.scales` of the scale with `stripes` stripes (the deepest tap if several)."""
    matches = [i for i, scale in enumerate(model.scales) if scale.stripes == stripes]
    if not matches:
        raise ConfigError(f"the model has no scale with {stripes} stripe(s); its scales are "
                          f"{[scale.label for scale in model.scales]}")
    return max(matches, key=lambda i: (TAPS.index(model.scales[i].tap), i))


def check_images(images) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise ConfigError(f"images must be a torch.Tensor (N, 3, H, W), got {type(images).__name__}")
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] == 0:
        raise ConfigError("images must be a non-empty (N, 3, H, W) tensor of RGB images, "
                          f"got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ConfigError(f"images must be float (ImageNet-normalised), got dtype {images.dtype}")
    return images


def _check_class_targets(targets, count: int, num_classes: int):
    """Class indices as a list of ints (one per image) or None."""
    if targets is None:
        return None
    if isinstance(targets, torch.Tensor):
        targets = targets.detach().cpu().tolist()
    targets = [int(t) for t in np.asarray(targets).reshape(-1)]
    if len(targets) != count:
        raise ConfigError(f"got {len(targets)} targets for {count} images; expected one class index per image")
    bad = [t for t in targets if not 0 <= t < num_classes]
    if bad:
        raise ConfigError(f"target class(es) {bad[:5]} are outside 0..{num_classes - 1}: targets are training "
                          "labels (relabelled train ids); for unseen identities pass targets=None")
    return targets


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def stripe_attention(model: nn.Module, images: torch.Tensor, targets=None, scale_index: int = 0,
                     batch_size: int = 16) -> np.ndarray:
    """Grad-CAM map of every stripe classifier of one scale: an array (N, stripes, H, W) in [0, 1].

    For stripe j of scale `scale_index`, the target is that stripe classifier's score for
    the image's class, and the target layer is the block the scale is pooled from
    (``model.tap_module(scale.tap)``). `targets` are training labels (one per image); with
    None, each stripe's own top-scoring class is used (the only choice for identities the
    model was not trained on). Maps are image-sized (H, W of `images`); the model is run in
    eval mode and its mode is restored afterwards.
    """
    images = check_images(images)
    if not 0 <= scale_index < len(model.scales):
        raise ConfigError(f"scale_index {scale_index} is out of range; the model has {len(model.scales)} scales "
                          f"{[scale.label for scale in model.scales]}")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    scale = model.scales[scale_index]
    classes = _check_class_targets(targets, len(images), model.num_classes)
    cam_targets = None if classes is None else [ClassifierOutputTarget(c) for c in classes]
    images = images.to(model_device(model))
    layer = model.tap_module(scale.tap)
    with _attribution_mode(model):
        maps = [_run_gradcam(StripeClassifierOutput(model, scale_index, stripe), layer, images, cam_targets, batch_size)
                for stripe in range(scale.stripes)]
    return np.stack(maps, axis=1)


def _last_tap(model: nn.Module) -> str:
    return max((scale.tap for scale in model.scales), key=TAPS.index)


def embedding_attention(model: nn.Module, images: torch.Tensor, reference_descriptors,
                        batch_size: int = 16) -> np.ndarray:
    """Grad-CAM maps (N, H, W) in [0, 1] for the cosine similarity of each image's descriptor
    to its reference descriptor (`EmbeddingSimilarityTarget`), at the model's last tap."""
    images = check_images(images)
    references = torch.as_tensor(reference_descriptors).detach().float()
    if references.ndim != 2 or len(references) != len(images):
        raise ConfigError(f"reference_descriptors must be (N, D) with one row per image ({len(images)}), "
                          f"got shape {tuple(references.shape)}")
    targets = [EmbeddingSimilarityTarget(reference) for reference in references]
    images = images.to(model_device(model))
    with _attribution_mode(model):
        return _run_gradcam(DescriptorOutput(model), model.tap_module(_last_tap(model)), images, targets, batch_size)


@dataclass
class AttentionComparison:
    """Figure 3's maps of N images, each in [0, 1] and image-sized (`compare_attention`)."""

    global_maps: np.ndarray  # (N, H, W): the global model's one-stripe scale
    part_maps: np.ndarray  # (N, stripes, H, W): each stripe of the part model's scale, top first
    global_scale: str  # the two scales' labels, e.g. "conv5_3/1" and "conv5_1/4"
    part_scale: str


def compare_attention(global_model: nn.Module, part_model: nn.Module, images: torch.Tensor, targets=None, *,
                      stripes: int = 4, batch_size: int = 16) -> AttentionComparison:
    """`stripe_attention` of `global_model`'s one-stripe scale and of `part_model`'s scale with
    `stripes` stripes (the deepest such scale), on the same images and `targets`."""
    images = check_images(images)
    global_index = scale_index_for(global_model, 1)
    part_index = scale_index_for(part_model, stripes)
    return AttentionComparison(
        global_maps=stripe_attention(global_model, images, targets, global_index, batch_size)[:, 0],
        part_maps=stripe_attention(part_model, images, targets, part_index, batch_size),
        global_scale=global_model.scales[global_index].label, part_scale=part_model.scales[part_index].label)


def similarity_heatmaps(model: nn.Module, table: pd.DataFrame, query_paths: Sequence[str],
                        gallery_paths: Sequence[str], height: int, width: int,
                        batch_size: int = 16) -> dict[int, np.ndarray]:
    """{query index: map (height, width)} for each query of a ranking table: `embedding_attention`
    for the similarity of the query's descriptor to its top match's (the table's rank 1).

    `table`: `mmhpn.evaluation.ranking.ranking_table`'s or `nearest_gallery`'s frame, whose
    ``query`` and ``gallery`` columns index `query_paths` and `gallery_paths`; `height`,
    `width`: the size the model was trained at. A top match that is a copy of its query gives
    a map of rounding noise (see `EmbeddingSimilarityTarget`).
    """
    top = table[table["rank"] == 1]
    queries = [int(q) for q in top["query"]]
    if not queries:
        raise ConfigError("the ranking table has no rank-1 rows; expected ranking_table's or nearest_gallery's frame")
    matches = load_inputs([gallery_paths[int(g)] for g in top["gallery"]], height, width)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            references = model.descriptor(matches.to(model_device(model))).float().cpu()
    finally:
        model.train(was_training)
    maps = embedding_attention(model, load_inputs([query_paths[q] for q in queries], height, width), references,
                               batch_size)
    return dict(zip(queries, maps))
