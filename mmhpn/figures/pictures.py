"""Figures 3 and 4: person images with Grad-CAM maps and ranking frames.

* `attention_maps` (Figure 3): per person, a global model's map, the image, and one map per
  stripe of a part model's scale (the maps: `mmhpn.attribution.compare_attention`).
* `ranking_figure` (Figure 4, and `mmhpn rank`): queries, their heatmap, and their nearest
  gallery images (the ranking: `mmhpn.evaluation.ranking`; the heatmaps:
  `mmhpn.attribution.similarity_heatmaps`).
* `denormalize`, `overlay`, `stripe_bounds`: model inputs back to RGB, heatmaps on images,
  and where each stripe lies in an image.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from mmhpn.attribution import check_images
from mmhpn.data import IMAGENET_MEAN, IMAGENET_STD
from mmhpn.data.pipeline import decode_image
from mmhpn.errors import ConfigError
from mmhpn.figures.style import HEATMAP_CMAP, MATCH_COLOR, MISMATCH_COLOR, QUERY_COLOR, STYLE, check_frame, save_figure
from mmhpn.model import FEATURE_STRIDE


def denormalize(images: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """ImageNet-normalised (N, 3, H, W) or (3, H, W) tensors -> RGB float arrays in [0, 1], (N, H, W, 3)."""
    images = check_images(images)
    mean = torch.as_tensor(mean, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.as_tensor(std, dtype=images.dtype).view(1, 3, 1, 1)
    rgb = images.detach().cpu() * std + mean
    return rgb.clamp_(0, 1).permute(0, 2, 3, 1).numpy().astype(np.float32)


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


def _check_attention_arrays(pictures, global_maps, part_maps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pictures, global_maps, part_maps = (np.asarray(a, dtype=np.float32) for a in (pictures, global_maps, part_maps))
    if pictures.ndim != 4 or pictures.shape[-1] != 3 or len(pictures) == 0:
        raise ConfigError(f"pictures must be RGB arrays (N, H, W, 3), got shape {pictures.shape}")
    size = pictures.shape[:3]
    if global_maps.shape != size:
        raise ConfigError(f"global_maps must be (N, H, W) = {size}, one map per picture; got {global_maps.shape}")
    if part_maps.ndim != 4 or (part_maps.shape[0], *part_maps.shape[2:]) != size:
        raise ConfigError(f"part_maps must be (N, stripes, H, W) with (N, H, W) = {size}; got {part_maps.shape}")
    return pictures, global_maps, part_maps


def attention_maps(pictures: np.ndarray, global_maps: np.ndarray, part_maps: np.ndarray, *,
                   global_scale: str = "", part_scale: str = "", labels: Sequence[str] | None = None,
                   alpha: float = 0.5, cmap: str = HEATMAP_CMAP, title: str | None = None,
                   path: str | os.PathLike | None = None, vector: bool = False) -> Figure:
    """Figure 3: per person (row), the global model's map, the input, and one map per stripe.

    `pictures`: the inputs as RGB arrays (N, H, W, 3) in [0, 1] (`denormalize` of the model
    inputs). `global_maps` (N, H, W): the global model's map (its one-stripe scale, e.g. the
    ``baseline`` preset); `part_maps` (N, stripes, H, W): one map per stripe of a part
    model's scale, top stripe first, each drawn with its stripe's rows outlined; all in
    [0, 1], as `mmhpn.attribution.compare_attention` returns them with the two scales'
    labels (`global_scale`, `part_scale`, e.g. ``"conv5_3/1"``, for the column titles).
    `labels`: one row label per person (e.g. ``"id 12"``).
    """
    pictures, global_maps, part_maps = _check_attention_arrays(pictures, global_maps, part_maps)
    if labels is not None and len(labels) != len(pictures):
        raise ConfigError(f"got {len(labels)} labels for {len(pictures)} pictures; expected one per picture")
    stripes = part_maps.shape[1]
    height, width = pictures.shape[1:3]
    bounds = stripe_bounds(height, stripes)
    part_tap = part_scale.partition("/")[0]

    rows, columns = len(pictures), 2 + stripes
    tile_width = 1.05
    tile_height = tile_width * height / width
    with matplotlib.rc_context(STYLE):
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
        axes[0, 0].set_title(f"global model\n{global_scale}")
        axes[0, 1].set_title("person\nimage")
        for j in range(stripes):
            axes[0, 2 + j].set_title(f"stripe {j + 1}/{stripes}\n{part_tap}")
        mappable = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, 1), cmap=cmap)
        fig.colorbar(mappable, ax=axes, shrink=0.6, label="Grad-CAM (each map scaled to [0, 1])")
        fig.suptitle(title or "Grad-CAM attention: global model vs. the stripes of a part model")
    if path is not None:
        save_figure(fig, path, vector=vector)
    return fig


RANKING_COLUMNS = ("query", "rank", "gallery", "distance")  # every ranking table's
LABELLED_COLUMNS = ("pick", "query_pid", "query_camid", "ap", "pid", "camid", "match")  # ranking_table's too


def _short_name(path: str, length: int = 12) -> str:
    name = Path(path).name
    return name if len(name) <= length else name[: length - 1] + "\u2026"


def _check_ranking(table, query_paths: Sequence[str], gallery_paths: Sequence[str]) -> bool:
    """Check a ranking table against the paths it indexes; True if it carries identities."""
    check_frame(table, RANKING_COLUMNS, "ranking table")
    labelled = "match" in table.columns
    missing = [column for column in LABELLED_COLUMNS if column not in table.columns]
    if labelled and missing:
        raise ConfigError(f"ranking table has a match column but lacks {missing}; expected ranking_table's frame")
    for column, paths, name in (("query", query_paths, "query_paths"), ("gallery", gallery_paths, "gallery_paths")):
        if int(table[column].max()) >= len(paths) or int(table[column].min()) < 0:
            raise ConfigError(f"the ranking table's {column} indices reach {int(table[column].max())} but "
                              f"{name} holds {len(paths)} paths; expected the paths the table was ranked from")
    return labelled


def ranking_figure(table: pd.DataFrame, query_paths: Sequence[str], gallery_paths: Sequence[str], *,
                   heatmaps: Mapping[int, np.ndarray] | None = None, display_size: tuple[int, int] = (128, 64),
                   alpha: float = 0.5, cmap: str = HEATMAP_CMAP, title: str | None = None,
                   path: str | os.PathLike | None = None, vector: bool = False) -> Figure:
    """Figure 4: queries, their heatmap, and their nearest gallery images, one row per query.

    `table`: one row per (query, rank) whose ``query`` and ``gallery`` columns index
    `query_paths` and `gallery_paths`. With identities (`mmhpn.evaluation.ranking.ranking_table`:
    the protocol's excluded images already removed), each gallery image is framed
    bluish green with a tick (same identity as the query) or vermillion with a cross
    (another identity) and captioned with its id and camera, and each query with its id,
    camera and AP. Without (`nearest_gallery`, `mmhpn rank`), frames are neutral and the
    captions give the distance and the file name.

    `heatmaps`: {query index: map in [0, 1]} (`mmhpn.attribution.similarity_heatmaps`) adds a
    column with each query's map overlaid.
    """
    labelled = _check_ranking(table, query_paths, gallery_paths)
    picked = list(dict.fromkeys(int(q) for q in table["query"]))
    heatmaps = dict(heatmaps or {})
    lacking = [q for q in picked if q not in heatmaps]
    if heatmaps and lacking:
        raise ConfigError(f"heatmaps lack queries {lacking[:5]}; expected one map per query of the table")
    display_height, display_width = display_size
    top_k = int(table["rank"].max())

    lead = 2 if heatmaps else 1  # query (and heatmap) columns
    shown = int(table.groupby("query").size().max())
    columns = lead + 1 + shown  # one narrow spacer column between query and gallery
    ratios = [1.0] * lead + [0.25] + [1.0] * shown
    tile_width = 0.8
    tile_height = tile_width * display_height / display_width
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(sum(ratios) * tile_width + 0.4, len(picked) * (tile_height + 0.5) + 0.7),
                     layout="constrained")
        axes = fig.subplots(len(picked), columns, squeeze=False, gridspec_kw={"width_ratios": ratios})
        for row, query in enumerate(picked):
            ranked = table[table["query"] == query].sort_values("rank", kind="stable")
            first = ranked.iloc[0]
            picture = _load_display_image(query_paths[query], display_height, display_width)
            ax = axes[row, 0]
            ax.imshow(picture)
            _image_axes(ax, QUERY_COLOR, 1.5)
            ax.set_label(f"query q={query}")
            if labelled:
                ap = "n/a" if np.isnan(first["ap"]) else f"{first['ap']:.2f}"
                why = f" ({first['pick']})" if first["pick"] else ""
                caption = f"query {query}\nid {int(first['query_pid'])} · cam {int(first['query_camid'])}\nAP {ap}{why}"
            else:
                caption = f"query\n{_short_name(query_paths[query])}"
            ax.set_title(caption, fontsize=7)
            if heatmaps:
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
                gallery = int(entry["gallery"])
                ax.imshow(_load_display_image(gallery_paths[gallery], display_height, display_width))
                ax.set_label(f"gallery q={query} rank={int(entry['rank'])} g={gallery}")
                if labelled:
                    colour = MATCH_COLOR if entry["match"] else MISMATCH_COLOR
                    mark = "\u2713" if entry["match"] else "\u2717"
                    caption = f"{int(entry['rank'])} {mark}\nid {int(entry['pid'])}\ncam {int(entry['camid'])}"
                else:
                    colour = QUERY_COLOR
                    caption = f"{int(entry['rank'])}\nd {entry['distance']:.3f}\n{_short_name(gallery_paths[gallery])}"
                _image_axes(ax, colour, 3.0 if labelled else 1.5)
                ax.set_title(caption, fontsize=7, color=colour)
        if labelled:
            handles = [Patch(facecolor="none", edgecolor=MATCH_COLOR, linewidth=3, label="\u2713 same identity"),
                       Patch(facecolor="none", edgecolor=MISMATCH_COLOR, linewidth=3,
                             label="\u2717 different identity")]
            fig.legend(handles=handles, loc="outside lower center", ncol=2, frameon=False)
            default_title = (f"Top-{top_k} ranking (query's same-id images from its own camera excluded, "
                             "as in the protocol)")
        else:
            default_title = f"Top-{top_k} nearest gallery images (d: cosine distance)"
        fig.suptitle(title or default_title)
    if path is not None:
        save_figure(fig, path, vector=vector)
    return fig


def _resize_map(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    tensor = torch.from_numpy(np.ascontiguousarray(heatmap, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=(height, width), mode="bilinear", align_corners=False)[0, 0].clamp(0, 1).numpy()
