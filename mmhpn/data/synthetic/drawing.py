"""Drawing one pedestrian: `draw_person` and the part-drawing functions it calls, in drawing order.

A person is drawn back to front with PIL's ImageDraw: a backpack seen from the side, legs
and lower garment, the arms behind the torso, the torso and its pattern, a coloured band,
bags over the torso, the arm in front (side views) and a handbag, then neck, head, hair
and headwear. Where each part goes is computed once (`PersonGeometry`); the only random
draws are the stride and the arm swing, taken in `person_geometry`. The same inputs draw
the same pixels: the order of the draws and of the shapes is part of the synthetic format
(`mmhpn.data.synthetic.writer.FORMAT_VERSION`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import ImageDraw

from mmhpn.data.synthetic.identities import DETAIL_HEIGHTS, Identity


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


@dataclass(frozen=True)
class PersonGeometry:
    """Where the parts of one drawn person are (pixels) and how its colours are painted."""

    ident: Identity
    view: str
    side: bool  # a side view (left or right)
    facing: int  # side views: the direction the person walks (-1 left, +1 right)
    cx: float  # the body's centre line
    top: float  # the top of the head
    u: float  # the person's height
    half_shoulder: float
    half_hip: float
    y_shoulder: float
    y_waist: float
    y_foot: float
    torso: tuple  # the torso trapezoid (x0, x1, y0, y1, bx0, bx1), see `_torso_point`
    leg_w: float
    arm_w: float
    swing: float  # the swinging arm's horizontal offset (side views)
    leg_centers: list  # per leg: (x at the hip, x at the foot)
    hem: float  # the lower garment's lower edge
    bag_dx: int  # front/back views: the side of the image the bag is on (0 in side views)
    near_side: bool  # side views: the bag is on the side facing the camera
    tint: tuple  # a small per-image colour offset (clothes under slightly different light)
    solid: tuple | None  # every part in this one colour (a silhouette), or None

    def paint(self, color) -> tuple:
        """The colour a part of colour `color` is drawn in (tinted, or the silhouette's colour)."""
        if self.solid is not None:
            return self.solid
        return tuple(int(min(255, max(0, v + d))) for v, d in zip(color, self.tint))


def person_geometry(ident: Identity, view: str, cx: float, top: float, height: float, rng: np.random.Generator,
                    tint: tuple = (0, 0, 0), solid: tuple | None = None) -> PersonGeometry:
    """The geometry of `ident` seen from `view`, feet at top + height; draws the stride and arm swing."""
    u = height * ident.stature
    top = top + (height - u)  # shorter people: feet stay on the ground line
    b = ident.build
    side = view in ("left", "right")
    facing = -1 if view == "left" else 1
    half_shoulder = (0.095 if side else 0.16) * u * b
    half_hip = (0.085 if side else 0.12) * u * b
    y_shoulder, y_waist, y_foot = top + 0.15 * u, top + 0.50 * u, top + 0.945 * u
    stride = rng.uniform(0.0, 0.09) * u if side else rng.uniform(0.0, 0.02) * u
    swing = rng.uniform(-0.06, 0.06) * u
    if side:
        leg_centers = [(cx - stride, cx + stride), (cx + stride, cx - stride)]  # hip x -> foot x
    else:
        off = half_hip * 0.5
        leg_centers = [(cx - off, cx - off - stride), (cx + off, cx + off + stride)]
    return PersonGeometry(
        ident=ident, view=view, side=side, facing=facing, cx=cx, top=top, u=u,
        half_shoulder=half_shoulder, half_hip=half_hip, y_shoulder=y_shoulder, y_waist=y_waist, y_foot=y_foot,
        torso=(cx - half_shoulder, cx + half_shoulder, y_shoulder, y_waist, cx - half_hip, cx + half_hip),
        leg_w=0.085 * u * b, arm_w=0.065 * u * b, swing=swing, leg_centers=leg_centers,
        hem={"trousers": y_foot, "shorts": top + 0.68 * u, "skirt": top + 0.72 * u}[ident.lower_type],
        # The bag's position in the image: the front view mirrors the person's left/right.
        bag_dx={"front": ident.bag_side, "back": -ident.bag_side}.get(view, 0),
        near_side=side and (ident.bag_side == facing),
        tint=tint, solid=solid,
    )


def draw_person(draw: ImageDraw.ImageDraw, ident: Identity, view: str, cx: float, top: float,
                height: float, rng: np.random.Generator, tint: tuple = (0, 0, 0), solid: tuple | None = None) -> None:
    """Draw one pedestrian, feet at top + height, seen from `view` (front, back, left, right).

    `tint` is a small per-image colour offset (clothes under slightly different light).
    `solid`: draw every part in this one colour (a silhouette, for the person's pixel mask).
    """
    body = person_geometry(ident, view, cx, top, height, rng, tint, solid)
    if ident.bag_type == "backpack" and body.side:
        _draw_backpack_behind(draw, body)
    _draw_legs(draw, body)
    hands = []
    if not body.side:  # both arms behind the torso
        hands.append(_draw_arm(draw, body, cx - body.half_shoulder - body.arm_w * 0.35, -0.01 * body.u))
        hands.append(_draw_arm(draw, body, cx + body.half_shoulder + body.arm_w * 0.35, 0.01 * body.u))
    _draw_torso(draw, body)
    if ident.detail_height != "none":
        _draw_band(draw, body)  # before the bags, which may hide it
    _draw_bags_over_torso(draw, body)
    if body.side:  # one arm in front of the torso, swinging
        hands.append(_draw_arm(draw, body, cx + 0.2 * body.swing, body.swing))
    if ident.bag_type == "handbag" and hands:
        _draw_handbag(draw, body, hands)
    head = _head(body)
    _draw_head_and_hair(draw, body, head)
    if ident.hair_style in ("hat", "cap"):
        _draw_headwear(draw, body, head)


def _draw_backpack_behind(draw: ImageDraw.ImageDraw, body: PersonGeometry) -> None:
    """A backpack seen from the side sticks out behind (from the back it covers the torso: drawn later)."""
    u = body.u
    bx = body.cx - body.facing * (body.half_shoulder + 0.06 * u)
    draw.rectangle([bx - 0.06 * u, body.y_shoulder + 0.02 * u, bx + 0.06 * u, body.top + 0.42 * u],
                   fill=body.paint(body.ident.bag_color))


def _draw_legs(draw: ImageDraw.ImageDraw, body: PersonGeometry) -> None:
    """Legs (skin), the lower garment over them down to its hem, shoes, and the skirt or waistband."""
    ident, u, cx, leg_w, half_hip = body.ident, body.u, body.cx, body.leg_w, body.half_hip
    y_waist, y_foot, hem = body.y_waist, body.y_foot, body.hem
    skin, lower, shoes = body.paint(ident.skin), body.paint(ident.lower_color), body.paint(ident.shoe_color)
    for hip_x, foot_x in body.leg_centers:
        draw.polygon(_quad(hip_x - leg_w / 2, hip_x + leg_w / 2, y_waist, y_foot,
                           foot_x - leg_w * 0.4, foot_x + leg_w * 0.4), fill=skin)
        if ident.lower_type != "skirt":
            frac = (hem - y_waist) / (y_foot - y_waist)
            hx = hip_x + (foot_x - hip_x) * frac
            w_hem = leg_w / 2 + (leg_w * 0.4 - leg_w / 2) * frac
            draw.polygon(_quad(hip_x - leg_w / 2, hip_x + leg_w / 2, y_waist, hem, hx - w_hem, hx + w_hem),
                         fill=lower)
        toe = body.facing * 0.05 * u if body.side else 0.0
        sx0, sx1 = sorted((foot_x - leg_w * 0.55 + min(toe, 0), foot_x + leg_w * 0.55 + max(toe, 0)))
        draw.rectangle([sx0, y_foot - 0.01 * u, sx1, body.top + u], fill=shoes)
    if ident.lower_type == "skirt":
        draw.polygon(_quad(cx - half_hip, cx + half_hip, y_waist - 0.02 * u, hem,
                           cx - half_hip * 1.5, cx + half_hip * 1.5), fill=lower)
    else:
        draw.rectangle([cx - half_hip, y_waist - 0.02 * u, cx + half_hip, body.top + 0.56 * u], fill=lower)


def _draw_arm(draw: ImageDraw.ImageDraw, body: PersonGeometry, x_shoulder: float, dx: float) -> tuple:
    """One arm from the shoulder at `x_shoulder` to a hand `dx` to the side; returns the hand's (x, y)."""
    ident, u, arm_w, y_shoulder = body.ident, body.u, body.arm_w, body.y_shoulder
    skin = body.paint(ident.skin)
    y_elbow_sleeve = body.top + (0.45 if ident.long_sleeves else 0.27) * u
    y_hand = body.top + 0.50 * u
    x_hand = x_shoulder + dx
    draw.polygon(_quad(x_shoulder - arm_w / 2, x_shoulder + arm_w / 2, y_shoulder + 0.01 * u, y_hand,
                       x_hand - arm_w / 2, x_hand + arm_w / 2), fill=skin)
    if ident.upper_pattern == "block":  # a sleeveless colour-block top: its two colours cover equal areas
        return x_hand, y_hand
    frac = (y_elbow_sleeve - y_shoulder) / (y_hand - y_shoulder)
    xs = x_shoulder + dx * frac
    draw.polygon(_quad(x_shoulder - arm_w / 2, x_shoulder + arm_w / 2, y_shoulder + 0.01 * u,
                       y_elbow_sleeve, xs - arm_w / 2, xs + arm_w / 2), fill=body.paint(ident.upper_color))
    draw.ellipse([x_hand - arm_w * 0.55, y_hand - 0.01 * u, x_hand + arm_w * 0.55, y_hand + 0.045 * u],
                 fill=skin)
    return x_hand, y_hand


def _draw_torso(draw: ImageDraw.ImageDraw, body: PersonGeometry) -> None:
    """The upper garment with its pattern (patterns live in torso coordinates, so they follow its shape)."""
    torso, view, pattern = body.torso, body.view, body.ident.upper_pattern
    second = body.paint(body.ident.upper_second)
    draw.polygon(_torso_patch(torso, 0, 1, 0, 1), fill=body.paint(body.ident.upper_color))
    if pattern == "hstripes":
        for k in range(0, 6, 2):
            draw.polygon(_torso_patch(torso, 0, 1, k / 6, (k + 1) / 6), fill=second)
    elif pattern == "vstripes":
        n = 3 if body.side else 5
        for k in range(0, n, 2):
            draw.polygon(_torso_patch(torso, (k + 0.5) / n, (k + 1) / n, 0, 1), fill=second)
    elif pattern == "checker":
        for i in range(4):
            for j in range(4):
                if (i + j) % 2 == 0:
                    draw.polygon(_torso_patch(torso, j / 4, (j + 1) / 4, i / 4, (i + 1) / 4), fill=second)
    elif pattern == "open-jacket" and view == "front":
        draw.polygon(_torso_patch(torso, 0.32, 0.68, 0, 1), fill=second)
    elif pattern == "open-jacket" and body.side:
        f0, f1 = (0.0, 0.2) if body.facing < 0 else (0.8, 1.0)
        draw.polygon(_torso_patch(torso, f0, f1, 0, 1), fill=second)
    elif pattern == "logo" and view == "front":
        draw.polygon(_torso_patch(torso, 0.3, 0.7, 0.2, 0.5), fill=second)
    elif pattern == "block":  # colour-block top: the lower part in the second colour, split at equal areas
        # torso width w(t) = b + 2 a t over its height t in [0, 1]; solve int_0^split w = area / 2
        a, b = body.half_hip - body.half_shoulder, 2 * body.half_shoulder
        split = 0.5 if abs(a) < 1e-9 else (-b + np.sqrt(b * b + 2 * a * (a + b))) / (2 * a)
        draw.polygon(_torso_patch(torso, 0, 1, split, 1), fill=second)


def _draw_band(draw: ImageDraw.ImageDraw, body: PersonGeometry) -> None:
    """The narrow coloured band: across the torso, or across each leg (the skirt above its hem)."""
    ident, u, cx = body.ident, body.u, body.cx
    band = body.paint(ident.detail_color)
    y_band = body.top + DETAIL_HEIGHTS[ident.detail_height] * u
    half_band = 0.03 * u
    if y_band < body.y_waist:
        fy = (y_band - body.y_shoulder) / (body.y_waist - body.y_shoulder)
        draw.polygon(_torso_patch(body.torso, 0, 1, fy - half_band / (body.y_waist - body.y_shoulder),
                                  fy + half_band / (body.y_waist - body.y_shoulder)), fill=band)
    elif ident.lower_type == "skirt" and y_band < body.hem:
        frac = (y_band - (body.y_waist - 0.02 * u)) / (body.hem - body.y_waist + 0.02 * u)
        half = body.half_hip * (1 + 0.5 * frac)
        draw.rectangle([cx - half, y_band - half_band, cx + half, y_band + half_band], fill=band)
    else:
        frac = (y_band - body.y_waist) / (body.y_foot - body.y_waist)
        for hip_x, foot_x in body.leg_centers:
            x = hip_x + (foot_x - hip_x) * frac
            half = (body.leg_w / 2 + (body.leg_w * 0.4 - body.leg_w / 2) * frac) * 1.05
            draw.rectangle([x - half, y_band - half_band, x + half, y_band + half_band], fill=band)


def _draw_bags_over_torso(draw: ImageDraw.ImageDraw, body: PersonGeometry) -> None:
    """A backpack seen from the back (or its straps from the front), or a shoulder bag."""
    ident, u, cx, top = body.ident, body.u, body.cx, body.top
    bag = body.paint(ident.bag_color)
    if ident.bag_type == "backpack" and body.view == "back":
        draw.rectangle([cx - body.half_shoulder * 0.8, body.y_shoulder + 0.03 * u, cx + body.half_shoulder * 0.8,
                        top + 0.44 * u], fill=bag)
    elif ident.bag_type == "backpack" and body.view == "front":
        for s in (-1, 1):
            x = cx + s * body.half_shoulder * 0.55
            draw.line([(x, body.y_shoulder), (x, top + 0.36 * u)], fill=bag, width=max(1, round(0.02 * u)))
    elif ident.bag_type == "shoulder-bag":
        if not body.side:
            x_hip = cx + body.bag_dx * body.half_hip * 1.4
            draw.line([(cx - body.bag_dx * body.half_shoulder * 0.8, body.y_shoulder), (x_hip, top + 0.47 * u)],
                      fill=bag, width=max(1, round(0.018 * u)))
            draw.rectangle([x_hip - 0.06 * u, top + 0.44 * u, x_hip + 0.06 * u, top + 0.56 * u], fill=bag)
        elif body.near_side:
            draw.rectangle([cx - 0.07 * u, top + 0.44 * u, cx + 0.07 * u, top + 0.57 * u], fill=bag)


def _draw_handbag(draw: ImageDraw.ImageDraw, body: PersonGeometry, hands: list) -> None:
    """A handbag below the hand that carries it, when that hand is in view."""
    if body.side:
        hx, hy = hands[0] if body.near_side else (None, None)
    else:
        hx, hy = hands[0] if body.bag_dx < 0 else hands[-1]
    if hx is not None:
        u, bag = body.u, body.paint(body.ident.bag_color)
        draw.rectangle([hx - 0.05 * u, hy + 0.01 * u, hx + 0.05 * u, hy + 0.11 * u], fill=bag)


class Head(NamedTuple):
    """The head's width, height, top and bounding box."""

    w: float
    h: float
    y: float
    box: list


def _head(body: PersonGeometry) -> Head:
    head_w, head_h = 0.085 * body.u, 0.12 * body.u
    y_head = body.top + 0.01 * body.u
    return Head(head_w, head_h, y_head, [body.cx - head_w / 2, y_head, body.cx + head_w / 2, y_head + head_h])


def _draw_head_and_hair(draw: ImageDraw.ImageDraw, body: PersonGeometry, head: Head) -> None:
    """Neck, head, and short or long hair (on the back of the head in side views, all of it from the back)."""
    ident, u, cx = body.ident, body.u, body.cx
    skin, hair = body.paint(ident.skin), body.paint(ident.hair_color)
    head_w, head_h, y_head, head_box = head
    draw.rectangle([cx - head_w * 0.3, body.top + 0.11 * u, cx + head_w * 0.3, body.y_shoulder + 0.01 * u], fill=skin)
    style = ident.hair_style
    if style == "long":  # hair falls behind the shoulders
        draw.rectangle([cx - head_w * 0.6, y_head + head_h * 0.3, cx + head_w * 0.6, body.top + 0.24 * u], fill=hair)
    if body.view == "back" and style in ("short", "long"):
        draw.ellipse(head_box, fill=hair)
        return
    draw.ellipse(head_box, fill=skin)
    if style in ("short", "long"):
        if body.side:  # hair on the back half of the head
            x_split = cx - body.facing * head_w * 0.1
            box = [head_box[0], y_head, x_split, y_head + head_h * 0.8] if body.facing > 0 else \
                [x_split, y_head, head_box[2], y_head + head_h * 0.8]
            draw.rectangle(box, fill=hair)
        draw.pieslice([head_box[0] - 0.5, y_head - 0.5, head_box[2] + 0.5, y_head + head_h * 0.9], 180, 360,
                      fill=hair)


def _draw_headwear(draw: ImageDraw.ImageDraw, body: PersonGeometry, head: Head) -> None:
    """A hat (brim and crown) or a cap (crown, and its peak where the view shows it)."""
    cx, facing = body.cx, body.facing
    head_w, head_h, y_head, head_box = head
    hat = body.paint(body.ident.hat_color)
    if body.ident.hair_style == "hat":
        draw.rectangle([cx - head_w * 0.85, y_head + head_h * 0.18, cx + head_w * 0.85, y_head + head_h * 0.3],
                       fill=hat)
        draw.rectangle([cx - head_w * 0.5, y_head - head_h * 0.2, cx + head_w * 0.5, y_head + head_h * 0.25],
                       fill=hat)
        return
    draw.pieslice([head_box[0] - 0.5, y_head - 0.5, head_box[2] + 0.5, y_head + head_h * 0.8], 180, 360,
                  fill=hat)
    if body.side:
        x0 = cx + facing * head_w * 0.3
        x1 = x0 + facing * head_w * 0.55
        draw.rectangle([min(x0, x1), y_head + head_h * 0.3, max(x0, x1), y_head + head_h * 0.4], fill=hat)
    elif body.view == "front":
        draw.rectangle([cx - head_w * 0.5, y_head + head_h * 0.3, cx + head_w * 0.5, y_head + head_h * 0.42],
                       fill=hat)
