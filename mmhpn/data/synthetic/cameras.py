"""What each synthetic camera does to every image it takes: `Camera` and `make_cameras`.

Cameras differ in background (a street-like scene from a palette of their own), illumination
and colour cast (a lookup table), sensor noise, resolution (rendered smaller and upscaled),
person scale and vertical misalignment of the box, the views they see people from, and how
often something stands between them and the person.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from mmhpn.data.synthetic.identities import jitter_color
from mmhpn.data.synthetic.presets import SyntheticConfig

VIEWS = ("front", "back", "left", "right")


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


PAD = 8  # a background is drawn this much larger on every side, then cropped at a random offset
CHANNEL_OFFSETS = np.array([0, 256, 512], dtype=np.int16)  # where R, G and B start in `Camera.lut`


def _render_background(rng: np.random.Generator, h: int, w: int, palette) -> np.ndarray:
    """A street-like background: wall with pillars / windows, ground with paving lines."""
    # Scenes are greyish and vary within a camera (other spots of the same street), so that
    # the background alone does not give the camera away in every image.
    wall, ground, accent = (tuple(int(0.6 * c + 0.4 * 128) for c in jitter_color(rng, color, 35))
                            for color in palette)
    img = Image.new("RGB", (w, h), jitter_color(rng, wall, 10))
    draw = ImageDraw.Draw(img)
    horizon = int(h * rng.uniform(0.45, 0.75))
    draw.rectangle([0, horizon, w, h], fill=jitter_color(rng, ground, 10))
    for _ in range(int(rng.integers(2, 6))):  # pillars, windows, doors
        x0 = rng.uniform(-0.1, 1.0) * w
        x1 = x0 + rng.uniform(0.08, 0.4) * w
        y0 = rng.uniform(0.0, 0.5) * horizon
        draw.rectangle([x0, y0, x1, horizon], fill=jitter_color(rng, accent, 30))
    for _ in range(int(rng.integers(2, 5))):  # paving lines
        y = rng.uniform(horizon, h)
        draw.line([(0, y), (w, y + rng.uniform(-6, 6))], fill=jitter_color(rng, ground, 30), width=1)
    arr = np.asarray(img, dtype=np.float32)
    shade = np.linspace(rng.uniform(0.8, 1.1), rng.uniform(0.8, 1.1), h, dtype=np.float32)[:, None, None]
    return np.clip(arr * shade, 0, 255).astype(np.uint8)


def make_cameras(rng: np.random.Generator, config: SyntheticConfig) -> list[Camera]:
    """The dataset's `config.num_cameras` cameras, each with its own scene, light and habits."""
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
