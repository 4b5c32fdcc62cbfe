"""The synthetic pedestrian re-ID benchmark: procedural generator, presets and the on-disk cache.

This module owns drawing pedestrians and writing them as a Market-1501-layout dataset
(``bounding_box_train/``, ``bounding_box_test/``, ``query/``, ``gt_bbox/``, Market file names),
so that `mmhpn.data.market.load_market_layout` reads it like the real thing.

What makes it a re-ID problem rather than a colour-matching one:

- identities are combinations of attributes placed at different body heights: hair or hat
  (top), upper garment colour and pattern (torso), lower garment type and colour (legs),
  shoes (bottom), bag / backpack and the side it is carried on, body build and height;
- "look-alike" groups: identities that copy a base identity and differ in ONE thing. Either
  WHAT one local part is (hair/hat, shoes, lower garment, bag, or the pattern of the upper
  garment: a small change of colour mass, which a global descriptor barely sees), or only
  WHERE parts are, with exactly the same colours (upper and lower garment colours swapped,
  the two halves of a colour-block top swapped, a coloured band moved within its garment):
  a global (orderless) descriptor cannot separate those at all, a horizontally striped one
  can, the finer the stripes the smaller the displacement it resolves;
- small details (a narrow coloured band at one of four heights, a chest logo, shoes, a cap);
- cameras differ in background, illumination and colour cast, person scale and vertical
  misalignment of the box (detector jitter), viewpoint (front / back / side: a logo or an open
  jacket is seen only from the front, a backpack mostly from the back), resolution (blur),
  sensor noise, and partial occlusion (parked objects, poles, passers-by) that hides parts.

Determinism: every image is drawn from its own random generator seeded by (seed, image
number), and JPEGs are written with fixed settings, so the same seed gives byte-identical
files (with the same Pillow/libjpeg build), whatever the number of worker processes.

`ensure_synthetic(root, preset, seed)` generates only when ``root/SYNTHETIC_COMPLETE.json``
is absent; `generate` writes into a temporary sibling folder and renames it into place
after the marker file is written, so a half-written dataset is never taken for a finished one.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mmhpn.errors import ConfigError, DatasetError

# Bump whenever the generator's output changes (drawing, identity sampling, a preset's sizes):
# it is written into every dataset's marker file, and `ensure_synthetic` never reuses a
# dataset of another version. 3: position look-alikes, bands, colour-block tops, new demo
# sizes, the pretrain preset and identity streams.
FORMAT_VERSION = 3
SYNTHETIC_FORMAT_VERSION = FORMAT_VERSION  # the same constant under the name other modules import
MARKER_NAME = "SYNTHETIC_COMPLETE.json"


# --------------------------------------------------------------------------------------------
# Configuration and presets.

@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes and difficulty knobs of a synthetic dataset (all exposed to `generate(**knobs)`)."""

    num_train_ids: int
    num_test_ids: int
    train_images_per_id: float  # mean over identities
    gallery_images_per_id: float  # mean over test identities, queries not included
    num_distractors: int  # gallery images with id 0000 (other people, bad detections)
    num_junk: int  # gallery images with id -1 (the loader drops them)
    gt_bbox_per_query: int = 2  # well-aligned extra images per query (identity, camera)
    num_cameras: int = 6
    min_cameras_per_id: int = 2  # >= 2, so every query has a match in another camera
    lookalike_fraction: float = 0.6  # look-alike groups per draw: fraction / 2.5 (0.6: ~45% of identities in one)
    position_lookalike_share: float = 0.6  # share of look-alike variants that differ only in WHERE parts are
    identity_stream: int = 0  # identities are drawn from random stream (seed, stream): other streams share none
    occlusion: float = 1.0  # multiplies each camera's occlusion probability
    camera_variation: float = 1.0  # scales illumination / colour-cast differences, noise and box jitter
    height: int = 128
    width: int = 64
    jpeg_quality: int = 92

    def validate(self) -> None:
        if self.num_train_ids < 1 or self.num_test_ids < 1:
            raise ConfigError("num_train_ids and num_test_ids must be >= 1")
        if not 2 <= self.min_cameras_per_id <= self.num_cameras <= 9:
            raise ConfigError("need 2 <= min_cameras_per_id <= num_cameras <= 9 (one-digit camera ids)")
        if self.num_train_ids + self.num_test_ids + 1 > 9999:
            raise ConfigError("at most 9998 identities (4-digit Market ids)")
        if self.train_images_per_id < 1 or self.gallery_images_per_id < 1:
            raise ConfigError("train_images_per_id and gallery_images_per_id must be >= 1")
        if min(self.num_distractors, self.num_junk, self.gt_bbox_per_query) < 0:
            raise ConfigError("num_distractors, num_junk and gt_bbox_per_query must be >= 0")
        if not 0.0 <= self.lookalike_fraction <= 1.0 or self.occlusion < 0 or self.camera_variation < 0:
            raise ConfigError("lookalike_fraction must be in [0, 1], occlusion and camera_variation >= 0")
        if not 0.0 <= self.position_lookalike_share <= 1.0:
            raise ConfigError("position_lookalike_share must be in [0, 1]")
        if self.identity_stream < 0:
            raise ConfigError("identity_stream must be >= 0")
        if self.height < 32 or self.width < 16:
            raise ConfigError("images must be at least 32x16")


PRESETS: dict[str, SyntheticConfig] = {
    # A few seconds: unit tests and smoke runs.
    "tiny": SyntheticConfig(num_train_ids=16, num_test_ids=16, train_images_per_id=6,
                            gallery_images_per_id=5, num_distractors=12, num_junk=8,
                            gt_bbox_per_query=1),
    # Sized for the CPU book; the book may override any knob. 300 training identities (the
    # paper has 751) so that each of 15 stripe classifiers sees hundreds of classes and many
    # look-alike groups, at ~10 images per identity (~3,000 images: 2.5x the former 1,180, so
    # an epoch costs 2.5x); 300 test identities (~1,350 queries) so that a comparison's
    # measurement noise shrinks, with a gallery of ~6 images per identity to keep evaluation cheap.
    "demo": SyntheticConfig(num_train_ids=300, num_test_ids=300, train_images_per_id=10,
                            gallery_images_per_id=6, num_distractors=300, num_junk=100,
                            gt_bbox_per_query=1),
    # A larger set for pretraining a trunk (a stand-in for ImageNet pretraining): its
    # identities come from another random stream, so none of them is a demo (or tiny, or
    # market-sized) identity of the same seed - `check_disjoint_identities` verifies it. Its
    # small test split only checks the pretrained trunk; fine-tuned rows are scored on demo.
    "pretrain": SyntheticConfig(num_train_ids=1000, num_test_ids=50, train_images_per_id=10,
                                gallery_images_per_id=5, num_distractors=50, num_junk=0,
                                gt_bbox_per_query=0, identity_stream=1),
    # The smoke profile's pretraining set: the tiny preset's size, drawn like "pretrain" from
    # another identity stream (no identity of the tiny test split).
    "tiny-pretrain": SyntheticConfig(num_train_ids=24, num_test_ids=8, train_images_per_id=6,
                                     gallery_images_per_id=3, num_distractors=4, num_junk=0,
                                     gt_bbox_per_query=0, identity_stream=1),
    # Market-1501's split sizes: 751 / 750 ids, ~12.9k train, ~3.4k query, ~15.9k gallery
    # (13.1k identity images + 2.8k distractors), plus 3.8k junk as in Market.
    "market-sized": SyntheticConfig(num_train_ids=751, num_test_ids=750, train_images_per_id=17.2,
                                    gallery_images_per_id=17.5, num_distractors=2798, num_junk=3819,
                                    gt_bbox_per_query=2),
}


def make_config(preset: str = "demo", **knobs) -> SyntheticConfig:
    """The preset's configuration with `knobs` overriding its fields."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown synthetic preset {preset!r}; known: {', '.join(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(SyntheticConfig)}
    unknown = sorted(set(knobs) - fields)
    if unknown:
        raise ConfigError(f"unknown synthetic knob(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    config = dataclasses.replace(PRESETS[preset], **knobs)
    config.validate()
    return config


# --------------------------------------------------------------------------------------------
# Identities.

UPPER_COLORS = [(30, 30, 35), (225, 225, 220), (128, 128, 132), (30, 40, 90), (180, 30, 35),
                (40, 90, 180), (40, 120, 60), (220, 190, 50), (220, 130, 160), (110, 50, 140),
                (120, 80, 50), (230, 120, 30), (140, 180, 220), (200, 180, 140), (30, 70, 40)]
UPPER_WEIGHTS = [4, 3, 3, 3, 1.5, 1.5, 1, 1, 1, 1, 1, 1, 1, 1.5, 1]
LOWER_COLORS = [(25, 25, 30), (45, 60, 105), (110, 140, 180), (120, 120, 125), (185, 165, 125),
                (230, 230, 225), (95, 65, 40), (150, 30, 35), (40, 80, 50)]
LOWER_WEIGHTS = [5, 4, 2, 2, 2, 1, 1, 0.5, 0.5]
SHOE_COLORS = [(235, 235, 235), (20, 20, 20), (100, 65, 35), (120, 120, 120), (190, 30, 30), (40, 70, 160)]
HAIR_COLORS = [(20, 18, 18), (60, 40, 25), (115, 75, 40), (205, 175, 105), (160, 160, 160)]
HAIR_WEIGHTS = [5, 3, 2, 1, 1]
SKIN_COLORS = [(240, 205, 175), (225, 180, 140), (190, 140, 100), (140, 95, 65), (95, 65, 45)]
BAG_COLORS = [(25, 25, 25), (110, 70, 40), (170, 30, 40), (40, 70, 150), (120, 120, 120), (50, 100, 60),
              (200, 180, 140)]
HAIR_STYLES = ("short", "long", "bald", "hat", "cap")
UPPER_PATTERNS = ("solid", "hstripes", "vstripes", "open-jacket", "logo", "checker", "block")
LOWER_TYPES = ("trousers", "shorts", "skirt")
BAG_TYPES = ("none", "backpack", "shoulder-bag", "handbag")
DETAIL_COLORS = [(230, 40, 40), (250, 200, 20), (40, 200, 220), (245, 245, 245), (30, 170, 60), (200, 60, 200),
                 (255, 130, 0)]
# A band (scarf, belt, trim, knee patch) at one of four heights, as fractions of body height.
DETAIL_HEIGHTS = {"chest": 0.24, "belly": 0.40, "thigh": 0.62, "shin": 0.82}
# Look-alikes that change WHAT one part is (its colour mass changes a little) ...
LOOKALIKE_PARTS = ("hair", "shoes", "lower", "bag", "upper-pattern")
# ... and look-alikes that change only WHERE parts are: the same colours, at other heights.
POSITION_PARTS = ("swap-upper-lower", "swap-block", "detail-height")
VIEWS = ("front", "back", "left", "right")


@dataclass
class Identity:
    """The appearance of one person: attributes at different body heights."""

    build: float  # body width factor
    stature: float  # body height factor
    skin: tuple
    hair_style: str
    hair_color: tuple
    hat_color: tuple
    upper_color: tuple
    upper_second: tuple  # pattern / inner-shirt colour
    upper_pattern: str
    long_sleeves: bool
    lower_type: str
    lower_color: tuple
    shoe_color: tuple
    bag_type: str
    bag_color: tuple
    bag_side: int  # -1: carried on the person's right, +1: left
    detail_height: str  # "none" or a key of DETAIL_HEIGHTS: where a narrow coloured band is
    detail_color: tuple
    group: int = -1  # look-alike group number, -1 for none
    changed_part: str = ""  # the one part that differs from the group's base identity


def _pick(rng: np.random.Generator, options, weights=None):
    if weights is None:
        return options[int(rng.integers(len(options)))]
    p = np.asarray(weights, dtype=float)
    return options[int(rng.choice(len(options), p=p / p.sum()))]


def _jitter_color(rng: np.random.Generator, color, amount: int = 14) -> tuple:
    offsets = rng.integers(-amount, amount + 1, size=3)
    return tuple(min(255, max(0, int(c + d))) for c, d in zip(color, offsets))


def random_identity(rng: np.random.Generator) -> Identity:
    upper = _pick(rng, UPPER_COLORS, UPPER_WEIGHTS)
    second = upper
    while second == upper:
        second = _pick(rng, UPPER_COLORS, UPPER_WEIGHTS)
    return Identity(
        build=float(rng.uniform(0.85, 1.15)),
        stature=float(rng.uniform(0.88, 1.0)),
        skin=_jitter_color(rng, _pick(rng, SKIN_COLORS), 8),
        hair_style=_pick(rng, HAIR_STYLES, [4, 3, 1, 1, 1]),
        hair_color=_jitter_color(rng, _pick(rng, HAIR_COLORS, HAIR_WEIGHTS), 8),
        hat_color=_jitter_color(rng, _pick(rng, BAG_COLORS)),
        upper_color=_jitter_color(rng, upper),
        upper_second=_jitter_color(rng, second),
        upper_pattern=_pick(rng, UPPER_PATTERNS, [4, 1.5, 1, 1.5, 1.5, 1, 1.5]),
        long_sleeves=bool(rng.random() < 0.6),
        lower_type=_pick(rng, LOWER_TYPES, [6, 2, 1.5]),
        lower_color=_jitter_color(rng, _pick(rng, LOWER_COLORS, LOWER_WEIGHTS)),
        shoe_color=_jitter_color(rng, _pick(rng, SHOE_COLORS), 10),
        bag_type=_pick(rng, BAG_TYPES, [3, 2, 1.5, 1]),
        bag_color=_jitter_color(rng, _pick(rng, BAG_COLORS)),
        bag_side=int(rng.choice([-1, 1])),
        detail_height=_pick(rng, ("none",) + tuple(DETAIL_HEIGHTS), [4, 1, 1, 1, 1]),
        detail_color=_jitter_color(rng, _pick(rng, DETAIL_COLORS), 10),
    )


def _far(a, b, threshold: int = 90) -> bool:
    return int(np.abs(np.subtract(a, b)).sum()) > threshold


def prepare_base(rng: np.random.Generator, base: Identity, part: str) -> None:
    """Make `base` able to carry the position variant `part` (in place, before any variant is made)."""
    if part == "swap-upper-lower" and not _far(base.upper_color, base.lower_color):
        base.lower_color = _jitter_color(rng, _pick(rng, [c for c in LOWER_COLORS if _far(c, base.upper_color)]))
    elif part == "swap-block":
        base.upper_pattern = "block"
    elif part == "detail-height" and base.detail_height == "none":
        base.detail_height = _pick(rng, tuple(DETAIL_HEIGHTS))


def lookalike_variant(rng: np.random.Generator, base: Identity, part: str) -> Identity:
    """A copy of `base` that differs in exactly one local part."""
    other = random_identity(rng)
    variant = dataclasses.replace(base, changed_part=part)
    if part == "hair":
        styles = [s for s in HAIR_STYLES if s != base.hair_style]
        variant.hair_style = _pick(rng, styles)
        if variant.hair_style in ("hat", "cap"):
            variant.hat_color = other.hat_color
    elif part == "shoes":
        colors = [c for c in SHOE_COLORS if np.abs(np.subtract(c, base.shoe_color)).sum() > 90]
        variant.shoe_color = _jitter_color(rng, _pick(rng, colors), 10)
    elif part == "lower":
        colors = [c for c in LOWER_COLORS if np.abs(np.subtract(c, base.lower_color)).sum() > 90]
        variant.lower_color = _jitter_color(rng, _pick(rng, colors))
        if rng.random() < 0.4:
            variant.lower_type = _pick(rng, [t for t in LOWER_TYPES if t != base.lower_type])
    elif part == "bag":
        variant.bag_type = _pick(rng, [t for t in BAG_TYPES if t != base.bag_type])
        variant.bag_color = other.bag_color
    elif part == "upper-pattern":
        variant.upper_pattern = _pick(rng, [p for p in UPPER_PATTERNS if p != base.upper_pattern])
    # Position variants: the same colours, at other heights (`prepare_base` made them possible).
    elif part == "swap-upper-lower":
        variant.upper_color, variant.lower_color = base.lower_color, base.upper_color
    elif part == "swap-block":
        variant.upper_color, variant.upper_second = base.upper_second, base.upper_color
    elif part == "detail-height":  # moved within its garment, so it covers the same colour
        variant.detail_height = {"chest": "belly", "belly": "chest", "thigh": "shin", "shin": "thigh"}[
            base.detail_height]
    else:
        raise ValueError(part)
    return variant


def make_identities(rng: np.random.Generator, count: int, lookalike_fraction: float,
                    first_group: int = 0, position_share: float = 0.5) -> list[Identity]:
    """`count` identities, about `lookalike_fraction` of them in look-alike groups of 2-3.

    Each variant of a group's base differs from it in one part: with probability
    `position_share` only in where parts are (POSITION_PARTS), otherwise in what one
    part is (LOOKALIKE_PARTS); the variants of one group differ in different parts.
    """
    identities: list[Identity] = []
    group = first_group
    while len(identities) < count:
        base = random_identity(rng)
        if rng.random() < lookalike_fraction / 2.5 and count - len(identities) >= 2:
            size = min(int(rng.integers(2, 4)), count - len(identities))
            base.group = group
            members = [base]
            what = [LOOKALIKE_PARTS[k] for k in rng.permutation(len(LOOKALIKE_PARTS))]
            where = [POSITION_PARTS[k] for k in rng.permutation(len(POSITION_PARTS))]
            parts = [(where if rng.random() < position_share else what).pop() for _ in range(size - 1)]
            for part in parts:
                if part in POSITION_PARTS:
                    prepare_base(rng, base, part)
            for part in parts:
                members.append(lookalike_variant(rng, base, part))
            identities.extend(members)
            group += 1
        else:
            identities.append(base)
    return identities


# --------------------------------------------------------------------------------------------
# Cameras.

@dataclass
class Camera:
    """What one camera does to every image it takes."""

    index: int
    backgrounds: list  # uint8 arrays (render_h + 2*PAD, render_w + 2*PAD, 3)
    lut: np.ndarray  # (768,) uint8 per-channel lookup table: brightness, colour cast, contrast
    noise: np.ndarray  # int16 noise tile, cropped at a random offset per image
    resolution: float  # < 1: rendered smaller and upscaled (blur / low resolution)
    scale: float  # person height as a fraction of the box height
    vertical_jitter: float  # std of the box's vertical misalignment, in fractions of height
    view_probs: np.ndarray  # probabilities of VIEWS
    occlusion_prob: float
    render_size: tuple = field(default=(128, 64))


PAD = 8
_CHANNEL_OFFSETS = np.array([0, 256, 512], dtype=np.int16)


def _render_background(rng: np.random.Generator, h: int, w: int, palette) -> np.ndarray:
    """A street-like background: wall with pillars / windows, ground with paving lines."""
    # Scenes are greyish and vary within a camera (other spots of the same street), so that
    # the background alone does not give the camera away in every image.
    wall, ground, accent = (tuple(int(0.6 * c + 0.4 * 128) for c in _jitter_color(rng, color, 35))
                            for color in palette)
    img = Image.new("RGB", (w, h), _jitter_color(rng, wall, 10))
    draw = ImageDraw.Draw(img)
    horizon = int(h * rng.uniform(0.45, 0.75))
    draw.rectangle([0, horizon, w, h], fill=_jitter_color(rng, ground, 10))
    for _ in range(int(rng.integers(2, 6))):  # pillars, windows, doors
        x0 = rng.uniform(-0.1, 1.0) * w
        x1 = x0 + rng.uniform(0.08, 0.4) * w
        y0 = rng.uniform(0.0, 0.5) * horizon
        draw.rectangle([x0, y0, x1, horizon], fill=_jitter_color(rng, accent, 30))
    for _ in range(int(rng.integers(2, 5))):  # paving lines
        y = rng.uniform(horizon, h)
        draw.line([(0, y), (w, y + rng.uniform(-6, 6))], fill=_jitter_color(rng, ground, 30), width=1)
    arr = np.asarray(img, dtype=np.float32)
    shade = np.linspace(rng.uniform(0.8, 1.1), rng.uniform(0.8, 1.1), h, dtype=np.float32)[:, None, None]
    return np.clip(arr * shade, 0, 255).astype(np.uint8)


def make_cameras(rng: np.random.Generator, config: SyntheticConfig) -> list[Camera]:
    cameras = []
    palettes = [
        ((170, 170, 160), (110, 110, 105), (90, 80, 70)),  # concrete plaza
        ((150, 110, 90), (90, 90, 95), (200, 190, 170)),  # brick building
        ((200, 205, 210), (140, 135, 120), (60, 70, 80)),  # glass hall
        ((90, 120, 80), (120, 110, 95), (60, 90, 50)),  # trees / park
        ((120, 120, 140), (70, 70, 75), (180, 160, 120)),  # shaded street
        ((210, 200, 170), (160, 150, 130), (120, 90, 60)),  # sunny sidewalk
        ((70, 70, 80), (50, 50, 55), (150, 150, 160)),  # night / indoor
        ((180, 150, 140), (100, 95, 100), (200, 200, 200)),
        ((140, 160, 170), (90, 100, 100), (40, 40, 40)),
    ]
    order = rng.permutation(len(palettes))
    for index in range(config.num_cameras):
        resolution = float(rng.choice([1.0, 1.0, 0.75, 0.6]))
        rh, rw = round(config.height * resolution), round(config.width * resolution)
        palette = palettes[order[index % len(palettes)]]
        backgrounds = [_render_background(rng, rh + 2 * PAD, rw + 2 * PAD, palette) for _ in range(6)]
        strength = config.camera_variation
        brightness = 1 + strength * rng.uniform(-0.25, 0.2)
        cast = 1 + strength * rng.uniform(-0.1, 0.1, size=3)
        contrast = 1 + strength * rng.uniform(-0.15, 0.1)
        levels = np.arange(256, dtype=np.float32)
        lut = np.concatenate([np.clip(((levels - 128) * contrast + 128) * brightness * cast[channel], 0, 255)
                              for channel in range(3)]).astype(np.uint8)
        noise_std = strength * rng.uniform(2, 9)
        noise = np.round(rng.normal(0, noise_std, size=(config.height + 16, config.width + 16, 3))).astype(np.int16)
        facing = rng.dirichlet([1.0, 1.0, 0.6, 0.6]) * 0.7 + 0.3 / 4  # every view is possible
        cameras.append(Camera(
            index=index,
            backgrounds=backgrounds,
            lut=lut,
            noise=noise,
            resolution=resolution,
            scale=float(rng.uniform(0.8, 0.94)),
            vertical_jitter=float(strength * rng.uniform(0.01, 0.06)),
            view_probs=facing / facing.sum(),
            occlusion_prob=float(min(1.0, rng.uniform(0.05, 0.35) * config.occlusion)),
            render_size=(rh, rw),
        ))
    return cameras


# --------------------------------------------------------------------------------------------
# Drawing.

def _quad(x0, x1, y0, y1, bx0, bx1):
    """A trapezoid with top edge x0..x1 at y0 and bottom edge bx0..bx1 at y1."""
    return [(x0, y0), (x1, y0), (bx1, y1), (bx0, y1)]


def _torso_point(t, fx, fy):
    """Point at fractions (fx, fy) inside the torso trapezoid t = (x0, x1, y0, y1, bx0, bx1)."""
    x0, x1, y0, y1, bx0, bx1 = t
    left = x0 + (bx0 - x0) * fy
    right = x1 + (bx1 - x1) * fy
    return (left + (right - left) * fx, y0 + (y1 - y0) * fy)


def _torso_patch(t, fx0, fx1, fy0, fy1):
    p = _torso_point
    return [p(t, fx0, fy0), p(t, fx1, fy0), p(t, fx1, fy1), p(t, fx0, fy1)]


def draw_person(draw: ImageDraw.ImageDraw, ident: Identity, view: str, cx: float, top: float,
                height: float, rng: np.random.Generator, tint: tuple = (0, 0, 0), solid: tuple | None = None) -> None:
    """Draw one pedestrian, feet at top + height, seen from `view` (front, back, left, right).

    `tint` is a small per-image colour offset (clothes under slightly different light).
    `solid`: draw every part in this one colour (a silhouette, for the person's pixel mask).
    """
    u = height * ident.stature
    top = top + (height - u)  # shorter people: feet stay on the ground line
    b = ident.build
    side = view in ("left", "right")
    facing = -1 if view == "left" else 1  # side views: the direction the person walks

    def c(color):
        if solid is not None:
            return solid
        return tuple(int(min(255, max(0, v + d))) for v, d in zip(color, tint))

    skin, upper, second = c(ident.skin), c(ident.upper_color), c(ident.upper_second)
    lower, shoes, hair, bag = c(ident.lower_color), c(ident.shoe_color), c(ident.hair_color), c(ident.bag_color)

    half_shoulder = (0.095 if side else 0.16) * u * b
    half_hip = (0.085 if side else 0.12) * u * b
    y_shoulder, y_waist, y_foot = top + 0.15 * u, top + 0.50 * u, top + 0.945 * u
    torso = (cx - half_shoulder, cx + half_shoulder, y_shoulder, y_waist, cx - half_hip, cx + half_hip)
    leg_w = 0.085 * u * b
    arm_w = 0.065 * u * b
    stride = rng.uniform(0.0, 0.09) * u if side else rng.uniform(0.0, 0.02) * u
    swing = rng.uniform(-0.06, 0.06) * u

    # The bag's position in the image: front view mirrors the person's left/right.
    bag_dx = {"front": ident.bag_side, "back": -ident.bag_side}.get(view, 0)
    near_side = side and (ident.bag_side == facing)  # side views: is the bag on our side?

    # Backpack seen from the side sticks out behind; from the back it covers the torso (drawn later).
    if ident.bag_type == "backpack" and side:
        bx = cx - facing * (half_shoulder + 0.06 * u)
        draw.rectangle([bx - 0.06 * u, y_shoulder + 0.02 * u, bx + 0.06 * u, top + 0.42 * u], fill=bag)

    # Legs and lower garment.
    if side:
        leg_centers = [(cx - stride, cx + stride), (cx + stride, cx - stride)]  # hip x -> foot x
    else:
        off = half_hip * 0.5
        leg_centers = [(cx - off, cx - off - stride), (cx + off, cx + off + stride)]
    hem = {"trousers": y_foot, "shorts": top + 0.68 * u, "skirt": top + 0.72 * u}[ident.lower_type]
    for hip_x, foot_x in leg_centers:
        draw.polygon(_quad(hip_x - leg_w / 2, hip_x + leg_w / 2, y_waist, y_foot,
                           foot_x - leg_w * 0.4, foot_x + leg_w * 0.4), fill=skin)
        if ident.lower_type != "skirt":
            f = (hem - y_waist) / (y_foot - y_waist)
            hx = hip_x + (foot_x - hip_x) * f
            w_hem = leg_w / 2 + (leg_w * 0.4 - leg_w / 2) * f
            draw.polygon(_quad(hip_x - leg_w / 2, hip_x + leg_w / 2, y_waist, hem, hx - w_hem, hx + w_hem),
                         fill=lower)
        toe = facing * 0.05 * u if side else 0.0
        sx0, sx1 = sorted((foot_x - leg_w * 0.55 + min(toe, 0), foot_x + leg_w * 0.55 + max(toe, 0)))
        draw.rectangle([sx0, y_foot - 0.01 * u, sx1, top + u], fill=shoes)
    if ident.lower_type == "skirt":
        draw.polygon(_quad(cx - half_hip, cx + half_hip, y_waist - 0.02 * u, hem,
                           cx - half_hip * 1.5, cx + half_hip * 1.5), fill=lower)
    else:
        draw.rectangle([cx - half_hip, y_waist - 0.02 * u, cx + half_hip, top + 0.56 * u], fill=lower)

    # Arms behind the torso in front/back views.
    def arm(x_shoulder, dx):
        y_elbow_sleeve = top + (0.45 if ident.long_sleeves else 0.27) * u
        y_hand = top + 0.50 * u
        x_hand = x_shoulder + dx
        draw.polygon(_quad(x_shoulder - arm_w / 2, x_shoulder + arm_w / 2, y_shoulder + 0.01 * u, y_hand,
                           x_hand - arm_w / 2, x_hand + arm_w / 2), fill=skin)
        if ident.upper_pattern == "block":  # a sleeveless colour-block top: its two colours cover equal areas
            return x_hand, y_hand
        f = (y_elbow_sleeve - y_shoulder) / (y_hand - y_shoulder)
        xs = x_shoulder + dx * f
        draw.polygon(_quad(x_shoulder - arm_w / 2, x_shoulder + arm_w / 2, y_shoulder + 0.01 * u,
                           y_elbow_sleeve, xs - arm_w / 2, xs + arm_w / 2), fill=upper)
        draw.ellipse([x_hand - arm_w * 0.55, y_hand - 0.01 * u, x_hand + arm_w * 0.55, y_hand + 0.045 * u],
                     fill=skin)
        return x_hand, y_hand

    hands = []
    if not side:
        hands.append(arm(cx - half_shoulder - arm_w * 0.35, -0.01 * u))
        hands.append(arm(cx + half_shoulder + arm_w * 0.35, 0.01 * u))

    # Torso with the garment's pattern (patterns live in torso coordinates, so they follow its shape).
    draw.polygon(_torso_patch(torso, 0, 1, 0, 1), fill=upper)
    pattern = ident.upper_pattern
    if pattern == "hstripes":
        for k in range(0, 6, 2):
            draw.polygon(_torso_patch(torso, 0, 1, k / 6, (k + 1) / 6), fill=second)
    elif pattern == "vstripes":
        n = 3 if side else 5
        for k in range(0, n, 2):
            draw.polygon(_torso_patch(torso, (k + 0.5) / n, (k + 1) / n, 0, 1), fill=second)
    elif pattern == "checker":
        for i in range(4):
            for j in range(4):
                if (i + j) % 2 == 0:
                    draw.polygon(_torso_patch(torso, j / 4, (j + 1) / 4, i / 4, (i + 1) / 4), fill=second)
    elif pattern == "open-jacket" and view == "front":
        draw.polygon(_torso_patch(torso, 0.32, 0.68, 0, 1), fill=second)
    elif pattern == "open-jacket" and side:
        f0, f1 = (0.0, 0.2) if facing < 0 else (0.8, 1.0)
        draw.polygon(_torso_patch(torso, f0, f1, 0, 1), fill=second)
    elif pattern == "logo" and view == "front":
        draw.polygon(_torso_patch(torso, 0.3, 0.7, 0.2, 0.5), fill=second)
    elif pattern == "block":  # colour-block top: the lower part in the second colour, split at equal areas
        a, b = half_hip - half_shoulder, 2 * half_shoulder  # torso width w(f) = b + 2 a f; solve int_0^f w = area/2
        split = 0.5 if abs(a) < 1e-9 else (-b + np.sqrt(b * b + 2 * a * (a + b))) / (2 * a)
        draw.polygon(_torso_patch(torso, 0, 1, split, 1), fill=second)

    # The band: across the torso, or across each leg (the skirt above its hem); drawn before
    # the bags, which may hide it.
    if ident.detail_height != "none":
        band = c(ident.detail_color)
        y_band = top + DETAIL_HEIGHTS[ident.detail_height] * u
        half_band = 0.03 * u
        if y_band < y_waist:
            fy = (y_band - y_shoulder) / (y_waist - y_shoulder)
            draw.polygon(_torso_patch(torso, 0, 1, fy - half_band / (y_waist - y_shoulder),
                                      fy + half_band / (y_waist - y_shoulder)), fill=band)
        elif ident.lower_type == "skirt" and y_band < hem:
            f = (y_band - (y_waist - 0.02 * u)) / (hem - y_waist + 0.02 * u)
            half = half_hip * (1 + 0.5 * f)
            draw.rectangle([cx - half, y_band - half_band, cx + half, y_band + half_band], fill=band)
        else:
            f = (y_band - y_waist) / (y_foot - y_waist)
            for hip_x, foot_x in leg_centers:
                x = hip_x + (foot_x - hip_x) * f
                half = (leg_w / 2 + (leg_w * 0.4 - leg_w / 2) * f) * 1.05
                draw.rectangle([x - half, y_band - half_band, x + half, y_band + half_band], fill=band)

    # Bags that lie over the torso.
    if ident.bag_type == "backpack" and view == "back":
        draw.rectangle([cx - half_shoulder * 0.8, y_shoulder + 0.03 * u, cx + half_shoulder * 0.8, top + 0.44 * u],
                       fill=bag)
    elif ident.bag_type == "backpack" and view == "front":
        for s in (-1, 1):
            x = cx + s * half_shoulder * 0.55
            draw.line([(x, y_shoulder), (x, top + 0.36 * u)], fill=bag, width=max(1, round(0.02 * u)))
    elif ident.bag_type == "shoulder-bag":
        if not side:
            x_hip = cx + bag_dx * half_hip * 1.4
            draw.line([(cx - bag_dx * half_shoulder * 0.8, y_shoulder), (x_hip, top + 0.47 * u)], fill=bag,
                      width=max(1, round(0.018 * u)))
            draw.rectangle([x_hip - 0.06 * u, top + 0.44 * u, x_hip + 0.06 * u, top + 0.56 * u], fill=bag)
        elif near_side:
            draw.rectangle([cx - 0.07 * u, top + 0.44 * u, cx + 0.07 * u, top + 0.57 * u], fill=bag)

    # Side views: one arm in front of the torso, swinging.
    if side:
        hands.append(arm(cx + 0.2 * swing, swing))
    if ident.bag_type == "handbag" and hands:
        if side:
            hx, hy = hands[0] if near_side else (None, None)
        else:
            hx, hy = hands[0] if bag_dx < 0 else hands[-1]
        if hx is not None:
            draw.rectangle([hx - 0.05 * u, hy + 0.01 * u, hx + 0.05 * u, hy + 0.11 * u], fill=bag)

    # Neck and head, hair or hat.
    head_w, head_h = 0.085 * u, 0.12 * u
    y_head = top + 0.01 * u
    draw.rectangle([cx - head_w * 0.3, top + 0.11 * u, cx + head_w * 0.3, y_shoulder + 0.01 * u], fill=skin)
    head_box = [cx - head_w / 2, y_head, cx + head_w / 2, y_head + head_h]
    style = ident.hair_style
    if style == "long":  # hair falls behind the shoulders
        draw.rectangle([cx - head_w * 0.6, y_head + head_h * 0.3, cx + head_w * 0.6, top + 0.24 * u], fill=hair)
    if view == "back" and style in ("short", "long"):
        draw.ellipse(head_box, fill=hair)
    else:
        draw.ellipse(head_box, fill=skin)
        if style in ("short", "long"):
            if side:  # hair on the back half of the head
                x_split = cx - facing * head_w * 0.1
                box = [head_box[0], y_head, x_split, y_head + head_h * 0.8] if facing > 0 else \
                    [x_split, y_head, head_box[2], y_head + head_h * 0.8]
                draw.rectangle(box, fill=hair)
            draw.pieslice([head_box[0] - 0.5, y_head - 0.5, head_box[2] + 0.5, y_head + head_h * 0.9], 180, 360,
                          fill=hair)
    if style == "hat":
        hat = c(ident.hat_color)
        draw.rectangle([cx - head_w * 0.85, y_head + head_h * 0.18, cx + head_w * 0.85, y_head + head_h * 0.3],
                       fill=hat)
        draw.rectangle([cx - head_w * 0.5, y_head - head_h * 0.2, cx + head_w * 0.5, y_head + head_h * 0.25],
                       fill=hat)
    elif style == "cap":
        hat = c(ident.hat_color)
        draw.pieslice([head_box[0] - 0.5, y_head - 0.5, head_box[2] + 0.5, y_head + head_h * 0.8], 180, 360,
                      fill=hat)
        if side:
            x0 = cx + facing * head_w * 0.3
            x1 = x0 + facing * head_w * 0.55
            draw.rectangle([min(x0, x1), y_head + head_h * 0.3, max(x0, x1), y_head + head_h * 0.4], fill=hat)
        elif view == "front":
            draw.rectangle([cx - head_w * 0.5, y_head + head_h * 0.3, cx + head_w * 0.5, y_head + head_h * 0.42],
                           fill=hat)


def _draw_occluder(draw: ImageDraw.ImageDraw, rng: np.random.Generator, h: int, w: int, scene_rng,
                   solid: tuple | None = None) -> str:
    """Something between the camera and the person: a parked object, a pole or a passer-by (returned)."""
    kind = _pick(rng, ("object", "pole", "person"), [3, 1, 2])
    color = _jitter_color(rng, _pick(rng, BAG_COLORS + UPPER_COLORS), 20)
    if solid is not None:
        color = solid
    if kind == "object":  # car, bench, bin: hides the legs and shoes, sometimes the bag
        y0 = h * rng.uniform(0.55, 0.8)
        x0 = w * rng.uniform(-0.5, 0.3)
        draw.rectangle([x0, y0, x0 + w * rng.uniform(0.7, 1.5), h], fill=color)
        draw.rectangle([x0, y0, x0 + w * rng.uniform(0.5, 1.2), y0 + h * 0.04],
                       fill=solid or _jitter_color(rng, color, 40))
    elif kind == "pole":
        x = w * rng.uniform(0.15, 0.85)
        draw.rectangle([x - w * 0.08, 0, x + w * 0.08, h], fill=color)
    else:  # another pedestrian, off-centre, in front
        other = random_identity(scene_rng)
        cx = w * (0.5 + rng.choice([-1, 1]) * rng.uniform(0.55, 0.8))
        ph = h * rng.uniform(0.85, 1.0)
        draw_person(draw, other, _pick(rng, VIEWS), cx, h - ph * 0.98, ph, rng, solid=solid)
    return kind


def _copy_rng(rng: np.random.Generator) -> np.random.Generator:
    copy = np.random.Generator(type(rng.bit_generator)())
    copy.bit_generator.state = rng.bit_generator.state
    return copy


def render_image(ident: Identity | None, camera: Camera, rng: np.random.Generator, config: SyntheticConfig,
                 kind: str = "person", info: dict | None = None) -> Image.Image:
    """One bounding-box image of `ident` seen by `camera`.

    kind: "person" (detector box: scale and vertical jitter), "gt" (hand-drawn, well aligned
    box), "distractor" (someone else, or a bad detection) or "junk" (a box that barely
    contains its person).
    info: if a dict, it receives how the image was taken (for benchmarks; the image is the
    same): "view", "shift" (the person's vertical offset from the box centre, a fraction of
    the box height), "person_top" / "person_bottom" (rows, fractions of the box height),
    "occluder" (None, "object", "pole" or "person") and "mask" (bool array, height x width:
    the pixels where the person is visible).
    """
    rh, rw = camera.render_size
    bg = camera.backgrounds[int(rng.integers(len(camera.backgrounds)))]
    oy, ox = int(rng.integers(0, 2 * PAD + 1)), int(rng.integers(0, 2 * PAD + 1))
    img = Image.fromarray(bg[oy:oy + rh, ox:ox + rw])
    draw = ImageDraw.Draw(img)

    scale = camera.scale * rng.uniform(0.94, 1.06)
    if kind == "gt":
        scale, jitter = 0.9, 0.0
    else:
        jitter = rng.normal(0, camera.vertical_jitter)
    ph = rh * scale
    top = (rh - ph) / 2 + jitter * rh
    cx = rw / 2 + rng.normal(0, 0.03) * rw
    if kind == "junk":  # the box catches only a fragment: mostly background
        cx += rng.choice([-1, 1]) * rw * rng.uniform(0.45, 0.6)
        top += rng.choice([-1, 1]) * rh * rng.uniform(0.3, 0.5)
    if kind == "distractor" and rng.random() < 0.5:  # a bad detection: half a person
        top += rng.choice([-1, 1]) * rh * rng.uniform(0.2, 0.4)
    view = VIEWS[int(rng.choice(4, p=camera.view_probs))]
    tint = tuple(int(v) for v in rng.integers(-8, 9, size=3))
    if info is not None:  # the same drawing again, as a silhouette, from the same random state
        mask_img = Image.new("RGB", (rw, rh), (0, 0, 0))
        mask_draw = ImageDraw.Draw(mask_img)
        draw_person(mask_draw, ident, view, cx, top, ph, _copy_rng(rng), tint, solid=(255, 255, 255))
    draw_person(draw, ident, view, cx, top, ph, rng, tint)
    occluder = None
    if kind in ("person", "distractor") and rng.random() < camera.occlusion_prob:
        if info is not None:
            occluder_rng = _copy_rng(rng)
            _draw_occluder(mask_draw, occluder_rng, rh, rw, occluder_rng, solid=(0, 0, 0))
        occluder = _draw_occluder(draw, rng, rh, rw, rng)

    if info is not None:
        stature = ident.stature if ident is not None else 1.0
        if camera.resolution != 1.0:
            mask_img = mask_img.resize((config.width, config.height), Image.NEAREST)
        info.update(view=view, occluder=occluder, shift=float((top + ph / 2) / rh - 0.5),
                    person_top=float((top + ph * (1 - stature)) / rh), person_bottom=float((top + ph) / rh),
                    mask=np.asarray(mask_img)[..., 0] > 127)
    if camera.resolution != 1.0:
        img = img.resize((config.width, config.height), Image.BILINEAR)
    # Illumination and colour cast: one table lookup per channel value (R at 0, G at 256, B at 512).
    lit = camera.lut[np.asarray(img) + _CHANNEL_OFFSETS]
    ny, nx = int(rng.integers(0, 17)), int(rng.integers(0, 17))
    noise = camera.noise[ny:ny + config.height, nx:nx + config.width]
    arr = lit.astype(np.int16) + noise
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


# --------------------------------------------------------------------------------------------
# Dataset plan: which image of whom, from which camera, under which file name.

@dataclass
class Plan:
    config: SyntheticConfig
    seed: int
    identities: dict  # pid -> Identity (train, test, and one per distractor image)
    cameras: list
    jobs: list  # (relative path, pid, identity key, camera index, kind)
    train_pids: list = field(default_factory=list)
    test_pids: list = field(default_factory=list)


def _cameras_for(rng: np.random.Generator, config: SyntheticConfig) -> np.ndarray:
    """A random set of cameras for one identity, Market-like: mostly 4-6 of 6."""
    ks = np.arange(config.min_cameras_per_id, config.num_cameras + 1)
    weights = (ks - config.min_cameras_per_id + 1.0) ** 0.75  # 6 cameras: 4.5 on average, as Market
    k = int(rng.choice(ks, p=weights / weights.sum()))
    return np.sort(rng.choice(config.num_cameras, size=k, replace=False))


def _spread(rng: np.random.Generator, total: int, cams: np.ndarray) -> dict:
    """`total` images over the cameras `cams`, at least one per camera."""
    counts = {int(c): 1 for c in cams}
    for c in rng.choice(cams, size=max(0, total - len(cams))):
        counts[int(c)] += 1
    return counts


def make_plan(config: SyntheticConfig, seed: int) -> Plan:
    rng = np.random.default_rng([seed, 0])
    cameras = make_cameras(np.random.default_rng([seed, 1]), config)
    # Identities (and distractors) come from their own stream: another identity_stream draws
    # other people with the same cameras (the pretrain preset).
    id_rng = np.random.default_rng([seed, 2, config.identity_stream])
    train_ids = make_identities(id_rng, config.num_train_ids, config.lookalike_fraction,
                                position_share=config.position_lookalike_share)
    test_ids = make_identities(id_rng, config.num_test_ids, config.lookalike_fraction, first_group=10_000,
                               position_share=config.position_lookalike_share)

    # Market-style ids: train and test interleaved in 0001..N, never the same person in both.
    total = config.num_train_ids + config.num_test_ids
    pids = rng.permutation(np.arange(1, total + 1))
    train_pids = sorted(int(p) for p in pids[:config.num_train_ids])
    test_pids = sorted(int(p) for p in pids[config.num_train_ids:])
    order = rng.permutation(len(train_ids))  # look-alike groups get scattered ids
    identities = {pid: train_ids[order[i]] for i, pid in enumerate(train_pids)}
    order = rng.permutation(len(test_ids))
    identities.update({pid: test_ids[order[i]] for i, pid in enumerate(test_pids)})

    frames = [int(v) for v in rng.integers(100, 5000, size=config.num_cameras)]  # per-camera clock
    jobs = []

    def name(pid: int, cam: int, box: int) -> str:
        frame = frames[cam]
        frames[cam] += int(rng.integers(1, 40))
        seq = 1 + frame // 200_000
        return f"{pid:04d}_c{cam + 1}s{seq}_{frame:06d}_{box:02d}.jpg" if pid >= 0 else \
            f"{pid}_c{cam + 1}s{seq}_{frame:06d}_{box:02d}.jpg"

    for pid in train_pids:
        cams = _cameras_for(rng, config)
        n = max(len(cams), int(rng.poisson(config.train_images_per_id - 1)) + 1)
        for cam, count in _spread(rng, n, cams).items():
            for _ in range(count):
                jobs.append((f"bounding_box_train/{name(pid, cam, 1)}", pid, pid, cam, "person"))
    for pid in test_pids:
        cams = _cameras_for(rng, config)
        for cam in cams:  # one query per camera the person appears in, as in Market-1501
            cam = int(cam)
            jobs.append((f"query/{name(pid, cam, 0)}", pid, pid, cam, "person"))
            for _ in range(config.gt_bbox_per_query):
                jobs.append((f"gt_bbox/{name(pid, cam, 0)}", pid, pid, cam, "gt"))
        n = max(len(cams), int(rng.poisson(config.gallery_images_per_id - 1)) + 1)
        for cam, count in _spread(rng, n, cams).items():
            for _ in range(count):
                jobs.append((f"bounding_box_test/{name(pid, cam, 1)}", pid, pid, cam, "person"))
    # Distractors: people who are neither query nor training identities (id 0000).
    for k in range(config.num_distractors):
        key = f"distractor-{k}"
        identities[key] = random_identity(id_rng)
        cam = int(rng.integers(config.num_cameras))
        jobs.append((f"bounding_box_test/{name(0, cam, 2)}", 0, key, cam, "distractor"))
    # Junk: fragments of test identities (id -1), which the protocol ignores.
    for k in range(config.num_junk):
        pid = test_pids[int(rng.integers(len(test_pids)))]
        cam = int(rng.integers(config.num_cameras))
        jobs.append((f"bounding_box_test/{name(-1, cam, 3)}", -1, pid, cam, "junk"))
    return Plan(config=config, seed=seed, identities=identities, cameras=cameras, jobs=jobs,
                train_pids=train_pids, test_pids=test_pids)


def render_job(plan: Plan, index: int, info: dict | None = None) -> Image.Image:
    """The image of job `index` (`info`: see `render_image`)."""
    path, pid, key, cam, kind = plan.jobs[index]
    rng = np.random.default_rng([plan.seed, 3, index])
    return render_image(plan.identities[key], plan.cameras[cam], rng, plan.config, kind, info=info)


def appearance(ident: Identity) -> tuple:
    """What a person looks like: every attribute but the look-alike bookkeeping (group, changed part)."""
    return tuple((f.name, getattr(ident, f.name)) for f in dataclasses.fields(Identity)
                 if f.name not in ("group", "changed_part"))


def check_disjoint_identities(pretrain: Plan, evaluation: Plan) -> int:
    """Check that no person of `pretrain` (any split, distractors included) is a test identity of `evaluation`.

    Identities are compared by their whole appearance (`appearance`), not by their ids (the
    ids of two datasets are unrelated). Returns the number of pretraining people checked;
    raises DatasetError naming the shared ones, e.g. when both were drawn from the same
    identity stream and seed.
    """
    test_people = {appearance(evaluation.identities[pid]): pid for pid in evaluation.test_pids}
    shared = sorted({(key, test_people[appearance(ident)]) for key, ident in pretrain.identities.items()
                     if appearance(ident) in test_people}, key=str)
    if shared:
        listed = ", ".join(f"{a} = test id {b:04d}" for a, b in shared[:5])
        raise DatasetError(
            f"the pretraining set shares {len(shared)} people with the evaluation test split ({listed}); "
            f"draw it from another identity_stream (pretrain uses {pretrain.config.identity_stream}, "
            f"evaluation {evaluation.config.identity_stream})"
        )
    return len(pretrain.identities)


def _write_jobs(plan: Plan, out: Path, indices) -> None:
    for index in indices:
        image = render_job(plan, index)
        image.save(out / plan.jobs[index][0], format="JPEG", quality=plan.config.jpeg_quality)


_WORKER_PLAN: Plan | None = None


def _init_worker(config: SyntheticConfig, seed: int) -> None:
    global _WORKER_PLAN
    _WORKER_PLAN = make_plan(config, seed)


def _worker_write(args) -> int:
    out, indices = args
    _write_jobs(_WORKER_PLAN, Path(out), indices)
    return len(indices)


# --------------------------------------------------------------------------------------------
# Writing datasets.

def _marker_payload(config: SyntheticConfig, seed: int, preset: str) -> dict:
    return {"format_version": FORMAT_VERSION, "preset": preset, "seed": int(seed),
            "config": dataclasses.asdict(config)}


def read_marker(root: str | os.PathLike) -> dict | None:
    """The completion marker of a finished synthetic dataset, or None."""
    marker = Path(root) / MARKER_NAME
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_complete(root: str | os.PathLike) -> bool:
    return read_marker(root) is not None


def generate(out: str | os.PathLike, preset: str = "demo", seed: int = 0, workers: int = 1,
             progress: bool = False, **knobs) -> Path:
    """Write a synthetic dataset into the new folder `out` (must not exist or be empty).

    Drawn into a temporary sibling folder, then the completion marker is written and the
    folder renamed to `out`: an interrupted run leaves no `out` that looks finished.
    `workers > 1` renders with that many processes (same bytes as one process).
    """
    config = make_config(preset, **knobs)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"{out} already exists and is not an empty folder; choose a new folder "
                           "(or use ensure_synthetic, which reuses a finished dataset)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{time.time_ns()}"
    tmp.mkdir()
    try:
        start = time.perf_counter()
        plan = make_plan(config, seed)
        for folder in ("bounding_box_train", "bounding_box_test", "query", "gt_bbox"):
            (tmp / folder).mkdir()
        indices = list(range(len(plan.jobs)))
        if workers <= 1:
            chunks = [indices[i:i + 500] for i in range(0, len(indices), 500)]
            iterator = (_write_jobs(plan, tmp, chunk) or len(chunk) for chunk in chunks)
            _consume(iterator, len(indices), progress)
        else:
            import multiprocessing as mp

            # fork (where there is one) starts fast; the workers only use numpy and PIL.
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            chunks = [(str(tmp), indices[i:i + 200]) for i in range(0, len(indices), 200)]
            with mp.get_context(method).Pool(workers, initializer=_init_worker, initargs=(config, seed)) as pool:
                _consume(pool.imap_unordered(_worker_write, chunks), len(indices), progress)
        payload = _marker_payload(config, seed, preset)
        payload["num_images"] = len(plan.jobs)
        payload["seconds"] = round(time.perf_counter() - start, 2)
        (tmp / MARKER_NAME).write_text(json.dumps(payload, indent=2, sort_keys=True))
        if out.exists():
            out.rmdir()  # empty (checked above); os.replace cannot replace a folder
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _consume(iterator, total: int, progress: bool) -> None:
    if progress:
        from tqdm.auto import tqdm

        with tqdm(total=total, unit="img", desc="synthetic") as bar:
            for n in iterator:
                bar.update(n)
    else:
        for _ in iterator:
            pass


def ensure_synthetic(root: str | os.PathLike, preset: str = "demo", seed: int = 0, workers: int = 1,
                     progress: bool = False, **knobs) -> Path:
    """`root` holding the synthetic dataset (preset, seed, knobs); generated only if absent.

    A finished dataset is recognised by its marker file. One that the generator wrote itself
    in an older format (marker with a smaller `format_version`) is moved aside to a sibling
    folder ``<root>.format-<old>`` (never deleted: it may hold files of yours) and a new one
    is drawn in its place, said in one line on stderr. One of a newer format, or made with
    other settings, is an error (never silently reused or deleted), as is a non-empty folder
    without a marker.
    """
    root = Path(root)
    config = make_config(preset, **knobs)
    marker = read_marker(root)
    if marker is None:
        try:
            return generate(root, preset, seed, workers=workers, progress=progress, **knobs)
        except OSError:
            # Another process may have finished the same dataset while we were drawing.
            marker = read_marker(root)
            if marker is None:
                raise
    version = marker.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DatasetError(f"{root} holds a synthetic dataset of format {version!r}, newer than or unknown to this "
                           f"generator (format {FORMAT_VERSION}); use another folder or update mmhpn")
    if version < FORMAT_VERSION:
        return _redraw(root, preset, seed, workers, progress, knobs, version)
    wanted = _marker_payload(config, seed, preset)
    if (marker.get("seed"), marker.get("config")) != (wanted["seed"], wanted["config"]):
        raise DatasetError(
            f"{root} holds a synthetic dataset made with other settings (preset {marker.get('preset')!r}, "
            f"seed {marker.get('seed')}); use another folder for preset {preset!r} seed {seed}, or delete it"
        )
    return root


def _redraw(root: Path, preset: str, seed: int, workers: int, progress: bool, knobs: dict,
            old_version: int) -> Path:
    """Move the finished dataset `root` of an older format aside and draw a new one in its place.

    The new one is drawn first beside it, so an interruption leaves the old one in place.
    """
    stamp = f"{os.getpid()}-{time.time_ns()}"
    fresh = generate(root.parent / f".{root.name}.new-{stamp}", preset, seed, workers=workers, progress=progress,
                     **knobs)
    old = root.parent / f"{root.name}.format-{old_version}"
    if old.exists():
        old = root.parent / f"{root.name}.format-{old_version}-{stamp}"
    os.replace(root, old)
    os.replace(fresh, root)
    print(f"mmhpn: {root} was drawn by synthetic format {old_version}, this generator draws format "
          f"{FORMAT_VERSION}: moved it to {old} (delete it when no longer needed) and drew a new one in its place",
          file=sys.stderr)
    return root
