"""One bounding-box image: a person drawn into a camera's scene, with occluders, light and noise.

`render_image` is the only place where an identity, a camera and a per-image random
generator meet; `mmhpn.data.synthetic.planning.render_job` calls it for each image of a plan.
`camera_scene` and `camera_effects` are the camera's part of every image (the object sets of
`mmhpn.data.synthetic.objects` use them too).
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from mmhpn.data.synthetic.cameras import CHANNEL_OFFSETS, PAD, VIEWS, Camera
from mmhpn.data.synthetic.drawing import draw_person
from mmhpn.data.synthetic.identities import BAG_COLORS, UPPER_COLORS, Identity, jitter_color, pick, random_identity
from mmhpn.data.synthetic.presets import SyntheticConfig


def _draw_occluder(draw: ImageDraw.ImageDraw, rng: np.random.Generator, h: int, w: int, scene_rng,
                   solid: tuple | None = None) -> str:
    """Something between the camera and the person: a parked object, a pole or a passer-by (returned)."""
    kind = pick(rng, ("object", "pole", "person"), [3, 1, 2])
    color = jitter_color(rng, pick(rng, BAG_COLORS + UPPER_COLORS), 20)
    if solid is not None:
        color = solid
    if kind == "object":  # car, bench, bin: hides the legs and shoes, sometimes the bag
        y0 = h * rng.uniform(0.55, 0.8)
        x0 = w * rng.uniform(-0.5, 0.3)
        draw.rectangle([x0, y0, x0 + w * rng.uniform(0.7, 1.5), h], fill=color)
        draw.rectangle([x0, y0, x0 + w * rng.uniform(0.5, 1.2), y0 + h * 0.04],
                       fill=solid or jitter_color(rng, color, 40))
    elif kind == "pole":
        x = w * rng.uniform(0.15, 0.85)
        draw.rectangle([x - w * 0.08, 0, x + w * 0.08, h], fill=color)
    else:  # another pedestrian, off-centre, in front
        other = random_identity(scene_rng)
        cx = w * (0.5 + rng.choice([-1, 1]) * rng.uniform(0.55, 0.8))
        ph = h * rng.uniform(0.85, 1.0)
        draw_person(draw, other, pick(rng, VIEWS), cx, h - ph * 0.98, ph, rng, solid=solid)
    return kind


def _copy_rng(rng: np.random.Generator) -> np.random.Generator:
    """A generator in `rng`'s state: drawing the silhouette from it leaves `rng` where the image needs it."""
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
    img = camera_scene(camera, rng)
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
    return camera_effects(img, camera, rng, config)


def camera_scene(camera: Camera, rng: np.random.Generator) -> Image.Image:
    """One of `camera`'s backgrounds at its render size, cropped at a random offset: what an
    image is drawn onto (a person here, an object in `mmhpn.data.synthetic.objects`)."""
    rh, rw = camera.render_size
    bg = camera.backgrounds[int(rng.integers(len(camera.backgrounds)))]
    oy, ox = int(rng.integers(0, 2 * PAD + 1)), int(rng.integers(0, 2 * PAD + 1))
    return Image.fromarray(bg[oy:oy + rh, ox:ox + rw])


def camera_effects(img: Image.Image, camera: Camera, rng: np.random.Generator, config: SyntheticConfig) -> Image.Image:
    """What `camera` does to a drawn scene: its resolution (upscaled to the dataset's size),
    illumination and colour cast, and sensor noise."""
    if camera.resolution != 1.0:
        img = img.resize((config.width, config.height), Image.BILINEAR)
    # Illumination and colour cast: one table lookup per channel value (R at 0, G at 256, B at 512).
    lit = camera.lut[np.asarray(img) + CHANNEL_OFFSETS]
    ny, nx = int(rng.integers(0, 17)), int(rng.integers(0, 17))
    noise = camera.noise[ny:ny + config.height, nx:nx + config.width]
    arr = lit.astype(np.int16) + noise
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
