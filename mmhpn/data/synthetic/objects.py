"""Procedurally drawn objects, not people: a pretraining task that is not re-identification.

The paper's trunk is pretrained on ImageNet, a task (object classification) other than the
one it is then fine-tuned for. The proxy study (`mmhpn.paper.proxy`) stands in for that with
this set: each image shows one object of one of 100 classes, a shape (`SHAPES`) filled with a
pattern (`PATTERNS`), in a random pose, size and pair of colours, on a camera's street scene
with the camera's light, resolution and noise (`mmhpn.data.synthetic.render.camera_scene`,
`camera_effects`). No person is drawn, not even as an occluder.

The set is written in the Market layout like the pedestrian benchmark, with object classes as
its "identities" (`mmhpn.data.synthetic.planning.make_plan` takes them from `object_classes`): a pretraining run classifies the training split's
classes exactly as it classifies people, with no change to the training code; the test
split's classes (others) are retrieved by the trunk's descriptor, which only checks it. A
preset draws objects when its `SyntheticConfig.subject` is ``"object"`` (``objects``,
``tiny-objects``).
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from mmhpn.data.synthetic.cameras import Camera
from mmhpn.data.synthetic.presets import SyntheticConfig
from mmhpn.data.synthetic.render import camera_effects, camera_scene
from mmhpn.errors import ConfigError

SHAPES = ("disc", "square", "triangle", "diamond", "star", "cross", "ring", "hexagon", "crescent", "arrow")
PATTERNS = ("solid", "hstripes", "vstripes", "dots", "checker", "two-tone", "outline", "diagonal", "concentric",
            "spots")
# Every (shape, pattern) is a class: 100 of them.
OBJECT_CLASSES: tuple[tuple[str, str], ...] = tuple((shape, pattern) for shape in SHAPES for pattern in PATTERNS)

# Polygon outlines in unit coordinates (x right, y down), rotated and scaled when drawn.
_CROSS = ((-0.35, -1), (0.35, -1), (0.35, -0.35), (1, -0.35), (1, 0.35), (0.35, 0.35), (0.35, 1), (-0.35, 1),
          (-0.35, 0.35), (-1, 0.35), (-1, -0.35), (-0.35, -0.35))
_ARROW = ((-1, -0.3), (0.2, -0.3), (0.2, -0.75), (1, 0), (0.2, 0.75), (0.2, 0.3), (-1, 0.3))
# Regular outlines: (corners, radii repeated around them, phase).
_RINGS = {"square": (4, (1.0,), math.pi / 4), "triangle": (3, (1.0,), -math.pi / 2), "diamond": (4, (1.0, 0.6), 0.0),
          "star": (10, (1.0, 0.45), -math.pi / 2), "hexagon": (6, (1.0,), 0.0)}


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]] | None:
    """The outline of a polygonal `shape` centred at (cx, cy), radius `r`, rotated by `angle`; None for
    the round shapes (disc, ring, crescent)."""
    if shape in _RINGS:
        corners, radii, phase = _RINGS[shape]
        return [(cx + radii[i % len(radii)] * r * math.cos(angle + phase + 2 * math.pi * i / corners),
                 cy + radii[i % len(radii)] * r * math.sin(angle + phase + 2 * math.pi * i / corners))
                for i in range(corners)]
    points = {"cross": _CROSS, "arrow": _ARROW}.get(shape)
    if points is None:
        return None
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in points]


def shape_mask(shape: str, size: tuple[int, int], cx: float, cy: float, r: float, angle: float) -> Image.Image:
    """The silhouette of `shape` as an 'L' image of `size` (width, height): 255 inside, 0 outside."""
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    points = _polygon(shape, cx, cy, r, angle)
    if points is not None:
        draw.polygon(points, fill=255)
        return mask
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)  # disc, and the outline of ring and crescent
    if shape == "ring":
        draw.ellipse([cx - 0.55 * r, cy - 0.55 * r, cx + 0.55 * r, cy + 0.55 * r], fill=0)
    elif shape == "crescent":
        dx, dy = 0.45 * r * math.cos(angle), 0.45 * r * math.sin(angle)
        draw.ellipse([cx - r + dx, cy - r + dy, cx + r + dx, cy + r + dy], fill=0)
    return mask


def pattern_fill(pattern: str, size: tuple[int, int], first: tuple, second: tuple, rng: np.random.Generator,
                 cx: float, cy: float, r: float) -> Image.Image:
    """The texture of `pattern` in colours `first` and `second`: an RGB image of `size` (width, height).

    ``outline`` is drawn by `paste_object` (it needs the shape); here it is plain `first`.
    """
    w, h = size
    img = Image.new("RGB", size, first)
    draw = ImageDraw.Draw(img)
    step = max(3, int(r * rng.uniform(0.25, 0.4)))
    if pattern == "hstripes":
        for y in range(0, h, 2 * step):
            draw.rectangle([0, y, w, y + step - 1], fill=second)
    elif pattern == "vstripes":
        for x in range(0, w, 2 * step):
            draw.rectangle([x, 0, x + step - 1, h], fill=second)
    elif pattern == "diagonal":
        for d in range(-h, w + h, 2 * step):
            draw.polygon([(d, 0), (d + step, 0), (d + step - h, h), (d - h, h)], fill=second)
    elif pattern == "checker":
        for y in range(0, h, step):
            for x in range(0, w, step):
                if ((x // step) + (y // step)) % 2:
                    draw.rectangle([x, y, x + step - 1, y + step - 1], fill=second)
    elif pattern == "dots":
        for y in range(step // 2, h, step + 1):
            for x in range(step // 2, w, step + 1):
                draw.ellipse([x - step / 4, y - step / 4, x + step / 4, y + step / 4], fill=second)
    elif pattern == "spots":
        for _ in range(int(rng.integers(4, 9))):
            x, y = cx + rng.uniform(-r, r), cy + rng.uniform(-r, r)
            spot = rng.uniform(0.12, 0.25) * r
            draw.ellipse([x - spot, y - spot, x + spot, y + spot], fill=second)
    elif pattern == "two-tone":
        draw.rectangle([0, int(cy), w, h], fill=second)
    elif pattern == "concentric":
        for k, radius in enumerate(np.arange(r, 0, -step)):
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=second if k % 2 else first)
    return img


def _color(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, size=3))


def _contrasting(rng: np.random.Generator, color: tuple) -> tuple[int, int, int]:
    """A random colour at least 200 levels (summed over R, G, B) from `color`, so a pattern shows."""
    while True:
        other = _color(rng)
        if sum(abs(a - b) for a, b in zip(color, other)) > 200:
            return other


def paste_object(canvas: Image.Image, shape: str, pattern: str, rng: np.random.Generator,
                 scale: tuple[float, float] = (0.28, 0.45)) -> None:
    """Draw one object of class (`shape`, `pattern`) onto `canvas`: colours, pose, size and place at random.

    The radius is `scale` times the canvas width (the narrow side of a re-ID box), the centre
    anywhere in the middle of the box, so objects are cut by its edges now and then.
    """
    w, h = canvas.size
    r = rng.uniform(*scale) * w
    cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.25, 0.75) * h
    angle = rng.uniform(0, 2 * math.pi)
    first = _color(rng)
    second = _contrasting(rng, first)
    mask = shape_mask(shape, (w, h), cx, cy, r, angle)
    if pattern == "outline":  # a rim of `first` around a body of `second`
        inner = mask.filter(ImageFilter.MinFilter(2 * max(1, int(r * 0.12)) + 1))
        canvas.paste(Image.new("RGB", (w, h), first), (0, 0), mask)
        canvas.paste(Image.new("RGB", (w, h), second), (0, 0), inner)
        return
    canvas.paste(pattern_fill(pattern, (w, h), first, second, rng, cx, cy, r), (0, 0), mask)


def check_object_set(config: SyntheticConfig) -> None:
    """What an object set's sizes must satisfy (one ConfigError line): at most `OBJECT_CLASSES`
    classes in all, and no distractor, junk or gt_bbox images (they are people's kinds of box)."""
    if config.num_train_ids + config.num_test_ids > len(OBJECT_CLASSES):
        raise ConfigError(f"an object set has at most {len(OBJECT_CLASSES)} classes (train + test), "
                          f"got {config.num_train_ids} + {config.num_test_ids}")
    if config.num_distractors or config.num_junk or config.gt_bbox_per_query:
        raise ConfigError("an object set has no distractors, junk or gt_bbox images: set num_distractors, "
                          "num_junk and gt_bbox_per_query to 0")


def object_classes(rng: np.random.Generator, config: SyntheticConfig) -> tuple[list, list]:
    """(train classes, test classes) of the object set `config` (`check_object_set`): distinct
    classes of `OBJECT_CLASSES` drawn at random, in the roles the Market layout gives identities."""
    check_object_set(config)
    order = rng.permutation(len(OBJECT_CLASSES))
    chosen = [OBJECT_CLASSES[int(i)] for i in order[:config.num_train_ids + config.num_test_ids]]
    return chosen[:config.num_train_ids], chosen[config.num_train_ids:]


def render_object(object_class: tuple[str, str], camera: Camera, rng: np.random.Generator,
                  config: SyntheticConfig) -> Image.Image:
    """One image of an object of `object_class` seen by `camera` (its scene, light, resolution, noise)."""
    img = camera_scene(camera, rng)
    paste_object(img, *object_class, rng)
    return camera_effects(img, camera, rng, config)
