"""Drawing: the paper's Figures 3-5 and plots of what was measured and learned.

Every function here draws arrays and frames computed elsewhere; nothing here runs a model:

* Figure 3, `attention_maps`: per person, the Grad-CAM map of a global (one-stripe) model
  and one map per stripe of a part model's 4-stripe scale (the maps:
  `mmhpn.attribution.compare_attention`).
* Figure 4, `ranking_figure`: queries, their heatmap, and their top-10 gallery images
  framed by identity, with the protocol's same-id-same-camera images removed (the ranking:
  `mmhpn.evaluation.ranking.ranking_table`, or `nearest_gallery` for images without
  identities, as `mmhpn rank` draws them; the heatmaps: `mmhpn.attribution.similarity_heatmaps`).
* Figure 5, `body_scale_curves`: mAP and Rank-1 against the number of stripes (its input
  from trained runs: `mmhpn.experiments.body_scale_results`).
* `aps_weight_plot`: the learned Adaptive Pooling Strategy weight of every scale.
* `table_bars` and `claims_forest`: a table's rows, and every claim's interval.
* `save_figure`: a PNG plus a vector copy (PDF or SVG), each written atomically.

Images going into a model are ImageNet-normalised tensors, as `mmhpn.data.build_transforms`
(train=False) makes them; `denormalize` turns them back into displayable RGB arrays.
Figures are plain `matplotlib.figure.Figure` objects (no pyplot state): a notebook shows
the returned figure once, and nothing accumulates in memory across calls.
"""
from __future__ import annotations

import itertools
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

from mmhpn.atomic import atomic_path
from mmhpn.attribution import check_images
from mmhpn.data import IMAGENET_MEAN, IMAGENET_STD
from mmhpn.data.pipeline import decode_image
from mmhpn.errors import ConfigError
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


# ------------------------------------------------------------------------------------------
# Figure 4

RANKING_COLUMNS = ("query", "rank", "gallery", "distance")  # every ranking table's
LABELLED_COLUMNS = ("pick", "query_pid", "query_camid", "ap", "pid", "camid", "match")  # ranking_table's too


def _short_name(path: str, length: int = 12) -> str:
    name = Path(path).name
    return name if len(name) <= length else name[: length - 1] + "\u2026"


def _check_ranking(table, query_paths: Sequence[str], gallery_paths: Sequence[str]) -> bool:
    """Check a ranking table against the paths it indexes; True if it carries identities."""
    _check_frame(table, RANKING_COLUMNS, "ranking table")
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
    with matplotlib.rc_context(_STYLE):
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
    interval (one seed) are drawn as a bare dot, claims not run (no mean) are listed without one.
    """
    _check_frame(checked, ("better", "worse", "metric", "verdict"), "checked claims")
    missing = [column for column in ("mean", "ci_low", "ci_high") if column not in checked.columns]
    if missing:  # NaN is allowed there: one seed gives no interval, a claim not run no mean
        raise ConfigError(f"checked claims lack column(s) {missing}; expected mmhpn.claims.check_claims' frame")
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
            if np.isfinite(line.mean):
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


def training_curves(history: pd.DataFrame, *, loss_label: str = "training loss") -> Figure:
    """Per-epoch curves, one line per seed: the training loss, the training stripe accuracy
    and, where the history has them, the test mAP and Rank-1 (in %).

    `history` is `mmhpn.experiments.training_histories`' frame (columns epoch, seed, loss,
    stripe_acc, and optionally mAP, rank1 as fractions).
    """
    _check_frame(history, ("epoch", "seed", "loss", "stripe_acc"), "history")
    panels = [("loss", loss_label), ("stripe_acc", "stripe accuracy (train)")]
    panels += [(c, f"{c} (test, %)") for c in ("mAP", "rank1") if c in history.columns and history[c].notna().any()]
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(3.2 * len(panels), 3), layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (column, title) in zip(axes, panels):
            for (seed, group), color in zip(history.groupby("seed"), PALETTE):
                values = group[column] * (100 if column in ("mAP", "rank1") else 1)
                ax.plot(group["epoch"], values, marker="o", color=color, label=f"seed {seed}")
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("epoch")
        axes[0].legend(fontsize=8)
    return fig


def row_curves(history: pd.DataFrame, *, metrics: Sequence[str] = ("loss", "mAP")) -> Figure:
    """Per-epoch curves of every row of a table, to show where training levelled off.

    One panel per metric (``loss``: the training loss; ``mAP``: the evaluations during
    training and the final one, in %), one colour per row, one thin line per seed.
    `history` is `mmhpn.experiments.training_histories`' frame with its ``row`` column.
    """
    _check_frame(history, ("row", "epoch", "seed", "loss"), "history")  # mAP: NaN between evaluations
    missing = [column for column in metrics if column not in history.columns]
    if missing:
        raise ConfigError(f"history lacks column(s) {missing}; expected training_histories' frame")
    titles = {"loss": "training loss", "mAP": "test mAP (%)", "rank1": "test Rank-1 (%)"}
    rows = list(dict.fromkeys(history["row"]))
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(4.2 * len(metrics), 3.2), layout="constrained")
        axes = fig.subplots(1, len(metrics), squeeze=False)[0]
        for ax, column in zip(axes, metrics):
            scale = 100 if column in ("mAP", "rank1") else 1
            for row, color in zip(rows, itertools.cycle(PALETTE)):
                for i, (_, group) in enumerate(history[history["row"] == row].groupby("seed")):
                    points = group[["epoch", column]].dropna()
                    ax.plot(points["epoch"], points[column] * scale, marker=".", color=color, linewidth=1,
                            alpha=0.8, label=row if i == 0 else None)
            ax.set_title(titles.get(column, column), fontsize=10)
            ax.set_xlabel("epoch")
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", fontsize=8)
    return fig


def validation_curves(selection: pd.DataFrame) -> Figure:
    """Validation mAP after each epoch (mean over seeds) of every regime the schedule was chosen from.

    `selection` is `mmhpn.experiments.regime_selection`'s per-epoch frame (columns regime,
    preset, epoch, val_mAP in %, loss).
    """
    _check_frame(selection, ("regime", "preset", "epoch", "val_mAP", "loss"), "regime selection")
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(8.4, 3.2), layout="constrained")
        axes = fig.subplots(1, 2)
        keys = list(dict.fromkeys(zip(selection["regime"], selection["preset"])))
        for (regime, preset), color in zip(keys, itertools.cycle(PALETTE)):
            group = selection[(selection["regime"] == regime) & (selection["preset"] == preset)]
            for ax, column in zip(axes, ("val_mAP", "loss")):
                ax.plot(group["epoch"], group[column], marker="o", color=color, label=f"{regime}, {preset}")
        axes[0].set_title("validation mAP (%), training identities held out", fontsize=10)
        axes[1].set_title("training loss", fontsize=10)
        for ax in axes:
            ax.set_xlabel("epoch")
        axes[0].legend(fontsize=7)
    return fig
