"""The paper's Figures 3-5 and plots of what a trained model learned.

This module owns every figure the book draws from trained models:

* Figure 3, `attention_maps`: per person, the Grad-CAM map of a global (one-stripe) model
  and one map per stripe of a part model's 4-stripe scale (`stripe_attention` gives the
  raw maps).
* Figure 4, `ranking_figure`: queries, their heatmap, and their top-10 gallery images
  framed by identity, with the protocol's same-id-same-camera images removed
  (`ranking_table` gives the same ranking as data; `embedding_attention` the heatmaps).
* Figure 5, `body_scale_curves`: mAP and Rank-1 against the number of stripes
  (`body_scale_results` collects its input from trained runs).
* `aps_weight_plot`: the learned Adaptive Pooling Strategy weight of every scale.
* `save_figure`: a PNG plus a vector copy (PDF or SVG), each written atomically.

Attribution is the ``grad-cam`` package's `pytorch_grad_cam.GradCAM`. The package wants a
model whose output is (batch, classes) and a target callable on one sample's output, so
this module supplies only what it lacks: `StripeClassifierOutput` (one stripe classifier's
logits as the model output) and `EmbeddingSimilarityTarget` (cosine similarity of a
descriptor to a reference descriptor). Grad-CAM normalises every map to [0, 1] on its own
(min-max), so colours compare places within a map, not strengths between maps.

Images going into a model are ImageNet-normalised tensors, as `mmhpn.data.build_transforms`
(train=False) makes them; `denormalize` turns them back into displayable RGB arrays.
Figures are plain `matplotlib.figure.Figure` objects (no pyplot state): a notebook shows
the returned figure once, and nothing accumulates in memory across calls.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from torch import nn

from mmhpn.atomic import atomic_path
from mmhpn.data import IMAGENET_MEAN, IMAGENET_STD, ImageDataset, build_transforms
from mmhpn.data.pipeline import decode_image
from mmhpn.errors import ConfigError
from mmhpn.evaluation import evaluate, pairwise_distance
from mmhpn.evaluation.protocol import label_vector, valid_gallery_mask
from mmhpn.model import FEATURE_STRIDE, TAPS

# seaborn's "colorblind" palette (Okabe-Ito-like), fixed here so figures do not depend on
# global seaborn state. Lines use it in this order.
PALETTE = ("#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#949494", "#56b4e9")
# Ranking frames: bluish green / vermillion are told apart with every common colour-vision
# deficiency (unlike pure green / red); a tick or cross is drawn too, so colour is not needed.
MATCH_COLOR = "#029e73"
MISMATCH_COLOR = "#d55e00"
QUERY_COLOR = "#404040"
# Heatmaps: a perceptually uniform map readable in grey scale and by colour-blind readers.
HEATMAP_CMAP = "inferno"

_STYLE = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "figure.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    # Editable text in PDF (TrueType) instead of Type 3 outlines.
    "pdf.fonttype": 42,
    "svg.fonttype": "none",
}

VECTOR_FORMATS = ("pdf", "svg")


# ------------------------------------------------------------------------------------------
# Images


def denormalize(images: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """ImageNet-normalised (N, 3, H, W) or (3, H, W) tensors -> RGB float arrays in [0, 1], (N, H, W, 3)."""
    images = _check_images(images)
    mean = torch.as_tensor(mean, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.as_tensor(std, dtype=images.dtype).view(1, 3, 1, 1)
    rgb = images.detach().cpu() * std + mean
    return rgb.clamp_(0, 1).permute(0, 2, 3, 1).numpy().astype(np.float32)


def load_images(records: Sequence, height: int, width: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Model inputs for a few records: (images (N, 3, height, width), pids, camids).

    Uses the evaluation transform of `mmhpn.data` (resize + ImageNet normalisation), i.e.
    exactly what the model sees at test time.
    """
    records = _check_records(records, "records")
    dataset = ImageDataset(records, build_transforms(height, width, train=False))
    items = [dataset[i] for i in range(len(dataset))]
    images = torch.stack([item[0] for item in items])
    pids = np.array([int(item[1]) for item in items], dtype=np.int64)
    camids = np.array([int(item[2]) for item in items], dtype=np.int64)
    return images, pids, camids


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5, cmap: str = HEATMAP_CMAP) -> np.ndarray:
    """Alpha-blend a [0, 1] heatmap (H, W), coloured with `cmap`, onto an RGB image (H, W, 3) in [0, 1]."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1] (weight of the heatmap), got {alpha!r}")
    if heatmap.shape != image.shape[:2]:
        raise ConfigError(f"heatmap shape {heatmap.shape} does not match the image's {image.shape[:2]}")
    colours = matplotlib.colormaps[cmap](np.clip(heatmap, 0.0, 1.0))[..., :3]
    return ((1.0 - alpha) * image + alpha * colours).astype(np.float32)


def _load_display_image(path: str, height: int, width: int) -> np.ndarray:
    """An image file as an RGB float array in [0, 1], resized to (height, width) for display."""
    from PIL import Image

    image = decode_image(path).resize((width, height), Image.BILINEAR)
    return np.asarray(image, dtype=np.float32) / 255.0


# ------------------------------------------------------------------------------------------
# Grad-CAM: targets, wrappers, raw maps


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
    exact duplicate of the reference the similarity is at its maximum, its gradient is zero
    and the map is blank.
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


def _check_images(images) -> torch.Tensor:
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


def _model_device(model: nn.Module) -> torch.device:
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
    images = _check_images(images)
    if not 0 <= scale_index < len(model.scales):
        raise ConfigError(f"scale_index {scale_index} is out of range; the model has {len(model.scales)} scales "
                          f"{[scale.label for scale in model.scales]}")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    scale = model.scales[scale_index]
    classes = _check_class_targets(targets, len(images), model.num_classes)
    cam_targets = None if classes is None else [ClassifierOutputTarget(c) for c in classes]
    images = images.to(_model_device(model))
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
    images = _check_images(images)
    references = torch.as_tensor(reference_descriptors).detach().float()
    if references.ndim != 2 or len(references) != len(images):
        raise ConfigError(f"reference_descriptors must be (N, D) with one row per image ({len(images)}), "
                          f"got shape {tuple(references.shape)}")
    targets = [EmbeddingSimilarityTarget(reference) for reference in references]
    images = images.to(_model_device(model))
    with _attribution_mode(model):
        return _run_gradcam(DescriptorOutput(model), model.tap_module(_last_tap(model)), images, targets, batch_size)


# ------------------------------------------------------------------------------------------
# Figure 3


def _feature_rows(height: int) -> int:
    """Rows of the layer4 map for an input `height`: the trunk's stride, rounding up (each of its
    four halvings rounds up, and nested ceiling divisions are one ceiling division)."""
    return -(-height // FEATURE_STRIDE)


def stripe_bounds(height: int, stripes: int) -> list[tuple[float, float]]:
    """Pixel rows (top, bottom) of each stripe in an input `height` pixels tall.

    Adaptive pooling bin i of a map with h rows covers rows floor(i*h/P) .. ceil((i+1)*h/P);
    one map row is height / h input pixels.
    """
    rows = _feature_rows(height)
    pixels_per_row = height / rows
    return [((i * rows // stripes) * pixels_per_row, (-(-(i + 1) * rows // stripes)) * pixels_per_row)
            for i in range(stripes)]


def _image_axes(ax, frame_color=None, linewidth=3.0):
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(frame_color is not None)
        if frame_color is not None:
            spine.set_edgecolor(frame_color)
            spine.set_linewidth(linewidth)


def attention_maps(global_model: nn.Module, part_model: nn.Module, images: torch.Tensor, targets=None, *,
                   stripes: int = 4, labels: Sequence[str] | None = None, alpha: float = 0.5,
                   cmap: str = HEATMAP_CMAP, batch_size: int = 16, title: str | None = None,
                   path: str | os.PathLike | None = None, vector: bool = False) -> Figure:
    """Figure 3: per person (row), the global model's map, the input, and one map per stripe.

    Columns follow the paper: the global attention map (the one-stripe scale of
    `global_model`, e.g. the ``baseline`` preset), the person image, then one map per stripe
    of `part_model`'s scale with `stripes` stripes (4 in the paper), top stripe first, each
    with its stripe's rows outlined. `targets`: training labels of the images (the
    classifiers' true class), or None for each classifier's top class. `labels`: one row
    label per image (e.g. ``"id 12"``). Raw maps: `stripe_attention`.
    """
    images = _check_images(images)
    if labels is not None and len(labels) != len(images):
        raise ConfigError(f"got {len(labels)} labels for {len(images)} images; expected one per image")
    global_index = scale_index_for(global_model, 1)
    part_index = scale_index_for(part_model, stripes)
    global_maps = stripe_attention(global_model, images, targets, global_index, batch_size)[:, 0]
    part_maps = stripe_attention(part_model, images, targets, part_index, batch_size)
    pictures = denormalize(images)
    height, width = pictures.shape[1:3]
    bounds = stripe_bounds(height, stripes)
    part_scale = part_model.scales[part_index]
    global_scale = global_model.scales[global_index]

    rows, columns = len(images), 2 + stripes
    tile_width = 1.05
    tile_height = tile_width * height / width
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(columns * tile_width + 0.9, rows * tile_height * 0.9 + 0.8), layout="constrained")
        axes = np.atleast_2d(fig.subplots(rows, columns, squeeze=False))
        for row in range(rows):
            tiles = [(overlay(pictures[row], global_maps[row], alpha, cmap), None),
                     (pictures[row], None)]
            tiles += [(overlay(pictures[row], part_maps[row, j], alpha, cmap), bounds[j]) for j in range(stripes)]
            for column, (tile, band) in enumerate(tiles):
                ax = axes[row, column]
                ax.imshow(tile, interpolation="bilinear")
                _image_axes(ax)
                ax.set_label(f"attention row={row} column={column}")
                if band is not None:
                    top, bottom = band
                    ax.add_patch(Rectangle((-0.5, top - 0.5), width, bottom - top, fill=False,
                                           edgecolor="white", linewidth=1.2, linestyle="--"))
            if labels is not None:
                axes[row, 0].set_ylabel(str(labels[row]))
        axes[0, 0].set_title(f"global model\n{global_scale.label}")
        axes[0, 1].set_title("person\nimage")
        for j in range(stripes):
            axes[0, 2 + j].set_title(f"stripe {j + 1}/{stripes}\n{part_scale.tap}")
        mappable = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, 1), cmap=cmap)
        fig.colorbar(mappable, ax=axes, shrink=0.6, label="Grad-CAM (each map scaled to [0, 1])")
        fig.suptitle(title or "Grad-CAM attention: global model vs. the stripes of a part model")
    if path is not None:
        save_figure(fig, path, vector=vector)
    return fig


# ------------------------------------------------------------------------------------------
# Figure 4


def _pick_queries(queries, query_ap: np.ndarray) -> list[tuple[int, str]]:
    """[(query index, why shown)] for queries="auto" (best, median, worst AP) or indices."""
    num_queries = len(query_ap)
    if isinstance(queries, str):
        if queries != "auto":
            raise ConfigError(f"queries must be 'auto' or a sequence of query indices, got {queries!r}")
        scored = np.flatnonzero(~np.isnan(query_ap))
        # Stable sort by AP: among equal APs the lower query index comes first.
        ascending = scored[np.argsort(query_ap[scored], kind="stable")]
        descending = scored[np.lexsort((scored, -query_ap[scored]))]
        picks = [(int(descending[0]), "best AP"), (int(ascending[len(ascending) // 2]), "median AP"),
                 (int(ascending[0]), "worst AP")]
        chosen, seen = [], set()
        for index, why in picks:
            if index not in seen:
                chosen.append((index, why))
                seen.add(index)
        return chosen
    indices = [int(q) for q in np.asarray(queries).reshape(-1)]
    if not indices:
        raise ConfigError("queries is empty; pass query indices or 'auto'")
    bad = [q for q in indices if not 0 <= q < num_queries]
    if bad:
        raise ConfigError(f"query index(es) {bad[:5]} are outside 0..{num_queries - 1}")
    return [(q, "") for q in indices]


def _distance_matrix(distmat, query_features, gallery_features, metric: str) -> np.ndarray:
    if (distmat is None) == (query_features is None or gallery_features is None):
        raise ConfigError("pass either distmat (num_query, num_gallery) or both query_features and gallery_features")
    if distmat is None:
        return pairwise_distance(query_features, gallery_features, metric).cpu().numpy()
    return _check_distmat(distmat)


def _check_distmat(distmat) -> np.ndarray:
    if distmat is None:
        raise ConfigError("a distance matrix (num_query, num_gallery) is needed, got None")
    if isinstance(distmat, torch.Tensor):
        distmat = distmat.detach().cpu().numpy()
    distmat = np.asarray(distmat, dtype=np.float64)
    if distmat.ndim != 2:
        raise ConfigError(f"distmat must be 2-D (num_query, num_gallery), got shape {distmat.shape}")
    if not np.isfinite(distmat).all():
        raise ConfigError("distmat holds NaN or infinite distances; expected finite distances")
    return distmat


def ranking_table(distmat, query_pids, gallery_pids, query_camids, gallery_camids, queries="auto",
                  top_k: int = 10, protocol: str = "toolbox") -> pd.DataFrame:
    """The top-`top_k` ranking of some queries as a tidy table, one row per (query, rank).

    Columns: ``query`` (index), ``pick`` ("best AP", "median AP", "worst AP" for
    queries="auto", else ""), ``query_pid``, ``query_camid``, ``ap`` (the query's average
    precision under `protocol`, NaN if it has no true match), ``num_excluded`` (gallery
    images removed from this query's ranking by the protocol), ``rank`` (1-based),
    ``gallery`` (index), ``pid``, ``camid``, ``distance`` and ``match`` (same id as the query).
    Gallery images at equal distance are ordered by index, as in `mmhpn.evaluation`.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ConfigError(f"top_k must be a positive integer, got {top_k!r}")
    distmat = _check_distmat(distmat)
    q_pids, g_pids = label_vector("query_pids", query_pids).numpy(), label_vector("gallery_pids", gallery_pids).numpy()
    q_cams = label_vector("query_camids", query_camids).numpy()
    g_cams = label_vector("gallery_camids", gallery_camids).numpy()
    # evaluate() checks the shapes and labels and gives each query's AP (NaN when skipped).
    query_ap = evaluate(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=1, protocol=protocol).query_ap
    rows = []
    for query, pick in _pick_queries(queries, query_ap):
        valid = valid_gallery_mask(q_pids[query], q_cams[query], g_pids, g_cams, protocol)
        candidates = np.flatnonzero(valid)
        if len(candidates) == 0:
            raise ConfigError(f"query {query} has no gallery image left after the protocol's exclusions "
                              "(every gallery image has its id and camera)")
        order = candidates[np.argsort(distmat[query, candidates], kind="stable")][:top_k]
        for rank, gallery in enumerate(order, start=1):
            rows.append({
                "query": query, "pick": pick, "query_pid": int(q_pids[query]), "query_camid": int(q_cams[query]),
                "ap": float(query_ap[query]), "num_excluded": int((~valid).sum()), "rank": rank,
                "gallery": int(gallery), "pid": int(g_pids[gallery]), "camid": int(g_cams[gallery]),
                "distance": float(distmat[query, gallery]), "match": bool(g_pids[gallery] == q_pids[query]),
            })
    return pd.DataFrame(rows, columns=["query", "pick", "query_pid", "query_camid", "ap", "num_excluded", "rank",
                                       "gallery", "pid", "camid", "distance", "match"])


def _check_records(records, name: str) -> list:
    records = list(records)
    if not records:
        raise ConfigError(f"{name} is empty")
    for record in records[:1]:
        if not all(hasattr(record, field) for field in ("path", "pid", "camid")):
            raise ConfigError(f"{name} must hold ImageRecord(path, pid, camid) items, got {type(record).__name__}")
    return records


def ranking_figure(query_records: Sequence, gallery_records: Sequence, distmat=None, *, query_features=None,
                   gallery_features=None, metric: str = "cosine", model: nn.Module | None = None,
                   input_size: tuple[int, int] | None = None, queries="auto", top_k: int = 10,
                   protocol: str = "toolbox", display_size: tuple[int, int] = (128, 64), alpha: float = 0.5,
                   cmap: str = HEATMAP_CMAP, title: str | None = None, path: str | os.PathLike | None = None,
                   vector: bool = False) -> Figure:
    """Figure 4: queries, their heatmap, and their `top_k` nearest gallery images.

    Distances: `distmat` (num_query, num_gallery), or `query_features` and
    `gallery_features` compared with `metric` (as `mmhpn.evaluation.pairwise_distance`).
    Each gallery image is framed green-blue with a tick (same identity as the query) or
    vermillion with a cross (different identity), with its id and camera; gallery images
    with the query's id and camera are removed first, as the protocol removes them
    (`ranking_table` returns the same ranking as data). `queries`: indices, or "auto" for
    the queries with the best, median and worst AP, so failures are shown too.

    With a `model` (and the `input_size` (height, width) it was trained at), a column shows
    the query's Grad-CAM map at the model's last tap for the cosine similarity between the
    query's descriptor and its top match's descriptor (`EmbeddingSimilarityTarget`).
    """
    query_records = _check_records(query_records, "query_records")
    gallery_records = _check_records(gallery_records, "gallery_records")
    distmat = _distance_matrix(distmat, query_features, gallery_features, metric)
    if distmat.shape != (len(query_records), len(gallery_records)):
        raise ConfigError(f"distances have shape {distmat.shape} but there are {len(query_records)} query and "
                          f"{len(gallery_records)} gallery records")
    if model is not None and input_size is None:
        raise ConfigError("ranking_figure(model=...) needs input_size=(height, width), the size the model was "
                          "trained at (e.g. (run.config.height, run.config.width))")
    table = ranking_table(distmat, [r.pid for r in query_records], [r.pid for r in gallery_records],
                          [r.camid for r in query_records], [r.camid for r in gallery_records],
                          queries=queries, top_k=top_k, protocol=protocol)
    picked = list(dict.fromkeys(table["query"].tolist()))
    display_height, display_width = display_size

    heatmaps = {}
    if model is not None:
        top_matches = table.groupby("query", sort=False)["gallery"].first()
        heatmaps = _query_heatmaps(model, input_size, [query_records[q] for q in picked],
                                   [gallery_records[int(top_matches[q])] for q in picked])
        heatmaps = dict(zip(picked, heatmaps))

    lead = 2 if model is not None else 1  # query (and heatmap) columns
    shown = int(table.groupby("query").size().max())
    columns = lead + 1 + shown  # one narrow spacer column between query and gallery
    ratios = [1.0] * lead + [0.25] + [1.0] * shown
    tile_width = 0.8
    tile_height = tile_width * display_height / display_width
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(sum(ratios) * tile_width + 0.4, len(picked) * (tile_height + 0.5) + 0.7),
                     layout="constrained")
        axes = fig.subplots(len(picked), columns, squeeze=False, gridspec_kw={"width_ratios": ratios})
        for row, query in enumerate(picked):
            ranked = table[table["query"] == query]
            first = ranked.iloc[0]
            record = query_records[query]
            picture = _load_display_image(record.path, display_height, display_width)
            ap = "n/a" if np.isnan(first["ap"]) else f"{first['ap']:.2f}"
            why = f" ({first['pick']})" if first["pick"] else ""
            ax = axes[row, 0]
            ax.imshow(picture)
            _image_axes(ax, QUERY_COLOR, 1.5)
            ax.set_label(f"query q={query}")
            ax.set_title(f"query {query}\nid {record.pid} · cam {record.camid}\nAP {ap}{why}", fontsize=7)
            if model is not None:
                ax = axes[row, 1]
                heat = _resize_map(heatmaps[query], display_height, display_width)
                ax.imshow(overlay(picture, heat, alpha, cmap))
                _image_axes(ax, QUERY_COLOR, 1.5)
                ax.set_label(f"heatmap q={query}")
                ax.set_title("similarity to\ntop match\n(Grad-CAM)", fontsize=7)
            axes[row, lead].set_axis_off()
            for column in range(shown):
                ax = axes[row, lead + 1 + column]
                if column >= len(ranked):
                    ax.set_axis_off()
                    continue
                entry = ranked.iloc[column]
                gallery = gallery_records[int(entry["gallery"])]
                ax.imshow(_load_display_image(gallery.path, display_height, display_width))
                colour = MATCH_COLOR if entry["match"] else MISMATCH_COLOR
                _image_axes(ax, colour, 3.0)
                ax.set_label(f"gallery q={query} rank={int(entry['rank'])} g={int(entry['gallery'])}")
                mark = "\u2713" if entry["match"] else "\u2717"
                ax.set_title(f"{int(entry['rank'])} {mark}\nid {gallery.pid}\ncam {gallery.camid}",
                             fontsize=7, color=colour)
        handles = [Patch(facecolor="none", edgecolor=MATCH_COLOR, linewidth=3, label="\u2713 same identity"),
                   Patch(facecolor="none", edgecolor=MISMATCH_COLOR, linewidth=3, label="\u2717 different identity")]
        fig.legend(handles=handles, loc="outside lower center", ncol=2, frameon=False)
        fig.suptitle(title or f"Top-{top_k} ranking (query's same-id images from its own camera excluded, "
                              "as in the protocol)")
    if path is not None:
        save_figure(fig, path, vector=vector)
    return fig


def _resize_map(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    tensor = torch.from_numpy(np.ascontiguousarray(heatmap))[None, None]
    return F.interpolate(tensor, size=(height, width), mode="bilinear", align_corners=False)[0, 0].clamp(0, 1).numpy()


def _query_heatmaps(model: nn.Module, input_size, query_records, match_records) -> np.ndarray:
    """Grad-CAM of each query for the cosine similarity to its top match's descriptor."""
    height, width = input_size
    queries, _, _ = load_images(query_records, height, width)
    matches, _, _ = load_images(match_records, height, width)
    device = _model_device(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            references = model.descriptor(matches.to(device)).cpu()
    finally:
        model.train(was_training)
    return embedding_attention(model, queries, references)


# ------------------------------------------------------------------------------------------
# Figure 5 and the APS weights


def _check_frame(frame, required: Sequence[str], name: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise ConfigError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise ConfigError(f"{name} lacks column(s) {missing}; expected columns {list(required)}, "
                          f"got {list(frame.columns)}")
    if frame.empty:
        raise ConfigError(f"{name} has no rows")
    if frame[list(required)].isna().any().any():
        raise ConfigError(f"{name} has missing values in {list(required)}; every run needs all of them")
    return frame


def body_scale_results(runs: Sequence) -> pd.DataFrame:
    """Figure 5's input from trained runs (`mmhpn.runs.Run`): columns stripes, seed, rank1, mAP.

    Every run must pool a single scale at the final layer (``layout={"conv5_3": (P,)}`` or
    the ``baseline`` preset); anything else is an error rather than a mislabelled point.
    """
    from mmhpn.model import PRESETS, parse_layout

    rows = []
    for run in runs:
        config = run.config
        layout = config.layout if config.layout is not None else PRESETS.get(config.preset)
        if layout is None:
            raise ConfigError(f"run {getattr(run, 'path', run)} has unknown preset {config.preset!r} and no layout")
        scales = parse_layout(layout)
        if len(scales) != 1 or scales[0].tap != TAPS[-1]:
            raise ConfigError(f"run {getattr(run, 'path', run)} pools {[s.label for s in scales]}; a body-scale run "
                              f"pools one scale at the final layer, e.g. layout={{'{TAPS[-1]}': (4,)}}")
        missing = [key for key in ("rank1", "mAP") if key not in run.metrics]
        if missing:
            raise ConfigError(f"run {getattr(run, 'path', run)} has no {missing} in its metrics")
        rows.append({"stripes": scales[0].stripes, "seed": int(config.seed),
                     "rank1": float(run.metrics["rank1"]), "mAP": float(run.metrics["mAP"])})
    if not rows:
        raise ConfigError("runs is empty; expected the trained body-scale runs")
    return pd.DataFrame(rows, columns=["stripes", "seed", "rank1", "mAP"])


def body_scale_curves(results: pd.DataFrame, *, metrics: Sequence[str] = ("mAP", "rank1"),
                      title: str | None = None, path: str | os.PathLike | None = None,
                      vector: bool = False) -> Figure:
    """Figure 5: mAP and Rank-1 (in %) against the number of stripes, mean ± s.d. over seeds.

    `results` is tidy: one row per trained run, columns ``stripes`` and the `metrics` as
    fractions in [0, 1] (as `mmhpn.evaluation` reports them; plotted as percentages), plus
    ``seed`` (optional). Each stripe count gives one point per metric; the runs themselves
    are drawn as small dots. The error bar is the sample standard deviation over seeds (none
    with a single seed).
    """
    frame = _check_frame(results, ["stripes", *metrics], "results")
    values = frame[list(metrics)].to_numpy(dtype=float)
    if (values < 0).any() or (values > 1).any():
        raise ConfigError(f"metric values must be fractions in [0, 1] (as mmhpn.evaluation reports them); "
                          f"got values from {values.min():g} to {values.max():g} (divide percentages by 100)")
    stripe_counts = sorted(int(s) for s in frame["stripes"].unique())
    positions = {s: i for i, s in enumerate(stripe_counts)}
    names = {"mAP": "mAP", "rank1": "Rank-1", "rank5": "Rank-5", "rank10": "Rank-10"}
    markers = ("o", "s", "^", "D")
    runs_per_point = frame.groupby("stripes").size()
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(5.2, 3.4), layout="constrained")
        ax = fig.subplots()
        offsets = np.linspace(-0.06, 0.06, len(metrics)) if len(metrics) > 1 else [0.0]
        for k, metric in enumerate(metrics):
            colour = PALETTE[k % len(PALETTE)]
            grouped = frame.groupby("stripes")[metric]
            mean = grouped.mean().reindex(stripe_counts) * 100
            spread = grouped.std(ddof=1).reindex(stripe_counts).fillna(0.0) * 100
            x = np.arange(len(stripe_counts)) + offsets[k]
            container = ax.errorbar(x, mean.to_numpy(), yerr=spread.to_numpy(), color=colour,
                                    marker=markers[k % len(markers)], markersize=6, linewidth=1.8, capsize=4,
                                    label=names.get(metric, metric))
            container.lines[0].set_gid(f"mean-{metric}")
            run_x = frame["stripes"].map(positions).to_numpy(dtype=float) + offsets[k]
            ax.scatter(run_x, frame[metric].to_numpy(dtype=float) * 100, s=12, color=colour, alpha=0.35,
                       linewidths=0, zorder=1, gid=f"runs-{metric}")
        ax.set_xticks(range(len(stripe_counts)), [str(s) for s in stripe_counts])
        ax.set_xlabel("number of stripes (body scale) at the final layer")
        ax.set_ylabel("score (%)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(title=None, loc="best")
        if runs_per_point.nunique() == 1:
            count = int(runs_per_point.iloc[0])
            detail = f"mean ± s.d. over {count} runs" if count > 1 else "one run per point"
        else:
            detail = f"mean ± s.d. over {int(runs_per_point.min())}-{int(runs_per_point.max())} runs"
        ax.set_title(title or f"Body scales: accuracy vs. number of stripes ({detail})")
    if path is not None:
        save_figure(fig, path, vector=vector)
    return fig


def _aps_frame(weights) -> pd.DataFrame:
    """{run: {scale: a}} or a DataFrame (columns scale, weight[, run]) -> tidy (run, scale, weight)."""
    if isinstance(weights, pd.DataFrame):
        frame = _check_frame(weights, ["scale", "weight"], "weights").copy()
        if "run" not in frame.columns:
            frame["run"] = [f"run {i}" for i in range(len(frame))]
    elif isinstance(weights, Mapping):
        rows = []
        for run, per_scale in weights.items():
            if not isinstance(per_scale, Mapping) or not per_scale:
                raise ConfigError(f"weights[{run!r}] must be a non-empty mapping {{scale: a}} "
                                  "(model.aps_weights()), got {per_scale!r}")
            rows += [{"run": str(run), "scale": str(scale), "weight": float(a)} for scale, a in per_scale.items()]
        if not rows:
            raise ConfigError("weights is empty; expected {run name: model.aps_weights()}")
        frame = pd.DataFrame(rows)
    else:
        raise ConfigError(f"weights must be {{run: model.aps_weights()}} or a DataFrame with columns scale, weight; "
                          f"got {type(weights).__name__}")
    values = frame["weight"].to_numpy(dtype=float)
    if not np.isfinite(values).all() or (values < 0).any() or (values > 1).any():
        raise ConfigError("APS weights must be in [0, 1] (a = weight of average pooling); got "
                          f"{values.min():g} to {values.max():g}")
    return frame


def _scale_sort_key(label: str):
    tap, _, stripes = label.partition("/")
    return (TAPS.index(tap) if tap in TAPS else len(TAPS), -int(stripes) if stripes.isdigit() else 0, label)


def aps_weight_plot(weights, *, initial: float = 0.5, title: str | None = None,
                    path: str | os.PathLike | None = None, vector: bool = False) -> Figure:
    """The learned APS weight `a` of every scale (1 = pure GAP, 0 = pure GMP), one dot per run.

    `weights`: ``{run name: model.aps_weights()}`` (e.g. one entry per seed), or a DataFrame
    with columns ``scale``, ``weight`` (and optionally ``run``). A bar marks the mean over
    runs; a dashed line the initial value (0.5: sigmoid(0), an equal mix).
    """
    frame = _aps_frame(weights)
    scales = sorted(frame["scale"].unique(), key=_scale_sort_key)
    runs = list(dict.fromkeys(frame["run"]))
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(max(3.6, 1.0 * len(scales) + 1.8), 3.4), layout="constrained")
        ax = fig.subplots()
        ax.axhline(initial, color=PALETTE[6], linestyle="--", linewidth=1.2,
                   label=f"initial a = {initial:g}")
        # Spread the runs sideways so equal values stay visible (deterministic offsets).
        spread = np.linspace(-0.15, 0.15, len(runs)) if len(runs) > 1 else np.zeros(1)
        offset = dict(zip(runs, spread))
        x = frame["scale"].map({s: i for i, s in enumerate(scales)}).to_numpy(dtype=float)
        x = x + frame["run"].map(offset).to_numpy(dtype=float)
        ax.scatter(x, frame["weight"], s=28, color=PALETTE[0], alpha=0.8, zorder=3, gid="aps-runs",
                   label="learned a (one dot per run)")
        means = frame.groupby("scale")["weight"].mean().reindex(scales)
        ax.hlines(means.to_numpy(), np.arange(len(scales)) - 0.25, np.arange(len(scales)) + 0.25, linewidth=2.2,
                  color=PALETTE[1], zorder=4, gid="aps-means", label=f"mean over {len(runs)} run(s)")
        ax.set_xticks(range(len(scales)), scales)
        ax.set_xlim(-0.6, len(scales) - 0.4)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("scale (tap / stripes)")
        ax.set_ylabel("APS weight a\n(1 = average, 0 = max pooling)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="best")
        ax.set_title(title or "Adaptive Pooling Strategy: learned weight per scale")
    if path is not None:
        save_figure(fig, path, vector=vector)
    return fig


# ------------------------------------------------------------------------------------------
# Tables and claims


def table_bars(results: pd.DataFrame, row_order: Sequence[str], *, title: str, measured_on: str) -> Figure:
    """Mean mAP and Rank-1 per row (bars) with the seed-to-seed std (error bars).

    `results` is `mmhpn.experiments.run_rows`' frame (columns row, seed, mAP, rank1, percent).
    """
    _check_frame(results, ("row", "seed", "mAP", "rank1"), "results")
    grouped = results.groupby("row", sort=False)[["mAP", "rank1"]]
    means = grouped.mean().reindex(list(row_order))
    stds = grouped.std().reindex(means.index).fillna(0)
    seeds = results["seed"].nunique()
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(7, 0.5 * len(means) + 1.6), layout="constrained")
        ax = fig.subplots()
        y = np.arange(len(means))
        for offset, metric, label, color in ((-0.2, "mAP", "mAP", PALETTE[0]), (0.2, "rank1", "Rank-1", PALETTE[1])):
            ax.barh(y + offset, means[metric], height=0.38, xerr=stds[metric], color=color, label=label)
        ax.set_yticks(y, means.index)
        ax.invert_yaxis()
        ax.set_xlabel(f"percent, measured on {measured_on} (mean ± std over {seeds} seed{'s' if seeds != 1 else ''})")
        ax.set_title(title, fontsize=10)
        ax.legend(loc="lower right")
    return fig


def claims_forest(checked: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Each claim's mean paired difference (pp) with its 95% interval; 0 marked.

    `checked` is `mmhpn.claims.check_claims`' frame. A claim is supported where its whole
    interval lies right of 0, contradicted where it lies left of it; claims without an
    interval (one seed) are drawn as a bare dot.
    """
    _check_frame(checked, ("better", "worse", "metric", "mean", "ci_low", "ci_high", "verdict"), "checked claims")
    colors = {"supported": PALETTE[2], "contradicted": PALETTE[3], "inconclusive": PALETTE[6]}
    labels = [f"{b} > {w} ({'Rank-1' if m == 'rank1' else m})"
              for b, w, m in zip(checked["better"], checked["worse"], checked["metric"])]
    if "table" in checked and checked["table"].nunique() > 1:
        labels = [f"{t}: {label}" for t, label in zip(checked["table"], labels)]
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(7.5, 0.32 * len(checked) + 1.4), layout="constrained")
        ax = fig.subplots()
        y = np.arange(len(checked))
        for i, line in enumerate(checked.itertuples()):
            color = colors.get(line.verdict, PALETTE[6])
            if np.isfinite(line.ci_low):
                ax.hlines(i, line.ci_low, line.ci_high, color=color, linewidth=2.2)
            ax.plot(line.mean, i, "o", color=color)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
        ax.set_xlabel("better − worse, paired by seed (percentage points; mean and 95% interval)")
        handles = [Line2D([], [], color=c, marker="o", label=v) for v, c in colors.items()]
        ax.legend(handles=handles, loc="best", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        if title:
            ax.set_title(title, fontsize=10)
    return fig


# ------------------------------------------------------------------------------------------
# Saving


def save_figure(fig: Figure, path: str | os.PathLike, vector: bool = True, vector_format: str = "pdf",
                dpi: int = 200) -> list[Path]:
    """Write `fig` as ``<path>.png`` and, with `vector`, ``<path>.<vector_format>`` (pdf or svg).

    `path` may end in .png, .pdf or .svg or have no suffix; the stem names all files.
    Parent folders are created. Each file is written to a temporary file in its folder and
    renamed into place, so an interrupted save never leaves a half-written figure.
    Returns the paths written.
    """
    if vector_format not in VECTOR_FORMATS:
        raise ConfigError(f"vector_format must be one of {VECTOR_FORMATS}, got {vector_format!r}")
    path = Path(path)
    stem = path.with_suffix("") if path.suffix.lower() in (".png", ".pdf", ".svg") else path
    if not stem.name:
        raise ConfigError(f"path {str(path)!r} names no file")
    stem.parent.mkdir(parents=True, exist_ok=True)
    formats = ["png"] + ([vector_format] if vector else [])
    written = []
    with matplotlib.rc_context(_STYLE):
        for fmt in formats:
            target = stem.parent / f"{stem.name}.{fmt}"
            with atomic_path(target) as temporary:
                fig.savefig(temporary, format=fmt, dpi=dpi, bbox_inches="tight")
            written.append(target)
    return written
