"""The figures' shared look and output: colours, matplotlib style, `save_figure`, input checks."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from mmhpn.atomic import atomic_path
from mmhpn.errors import ConfigError

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

STYLE = {
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


def check_frame(frame, required: Sequence[str], name: str) -> pd.DataFrame:
    """`frame` itself if it is a non-empty DataFrame with every `required` column filled; else one line."""
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
    with matplotlib.rc_context(STYLE):
        for fmt in formats:
            target = stem.parent / f"{stem.name}.{fmt}"
            with atomic_path(target) as temporary:
                fig.savefig(temporary, format=fmt, dpi=dpi, bbox_inches="tight")
            written.append(target)
    return written
