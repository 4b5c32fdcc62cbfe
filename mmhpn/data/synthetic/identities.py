"""Who the synthetic people are: attribute palettes, `Identity`, and look-alike groups.

An identity is a combination of attributes placed at different body heights: hair or hat
(top), upper garment colour and pattern (torso), lower garment type and colour (legs),
shoes (bottom), bag / backpack and the side it is carried on, body build and height.
Look-alike groups copy a base identity and change ONE thing: WHAT one local part is
(`LOOKALIKE_PARTS`) or only WHERE parts are, with the same colours (`POSITION_PARTS`).

`pick` and `jitter_color` are the random draws every part of the generator shares.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

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


def pick(rng: np.random.Generator, options, weights=None):
    """One of `options`, uniformly or with the relative `weights`."""
    if weights is None:
        return options[int(rng.integers(len(options)))]
    p = np.asarray(weights, dtype=float)
    return options[int(rng.choice(len(options), p=p / p.sum()))]


def jitter_color(rng: np.random.Generator, color, amount: int = 14) -> tuple:
    """`color` with each channel moved by up to +-`amount` (clipped to 0..255)."""
    offsets = rng.integers(-amount, amount + 1, size=3)
    return tuple(min(255, max(0, int(c + d))) for c, d in zip(color, offsets))


def random_identity(rng: np.random.Generator) -> Identity:
    """A person with every attribute drawn independently (no look-alike group)."""
    upper = pick(rng, UPPER_COLORS, UPPER_WEIGHTS)
    second = upper
    while second == upper:
        second = pick(rng, UPPER_COLORS, UPPER_WEIGHTS)
    return Identity(
        build=float(rng.uniform(0.85, 1.15)),
        stature=float(rng.uniform(0.88, 1.0)),
        skin=jitter_color(rng, pick(rng, SKIN_COLORS), 8),
        hair_style=pick(rng, HAIR_STYLES, [4, 3, 1, 1, 1]),
        hair_color=jitter_color(rng, pick(rng, HAIR_COLORS, HAIR_WEIGHTS), 8),
        hat_color=jitter_color(rng, pick(rng, BAG_COLORS)),
        upper_color=jitter_color(rng, upper),
        upper_second=jitter_color(rng, second),
        upper_pattern=pick(rng, UPPER_PATTERNS, [4, 1.5, 1, 1.5, 1.5, 1, 1.5]),
        long_sleeves=bool(rng.random() < 0.6),
        lower_type=pick(rng, LOWER_TYPES, [6, 2, 1.5]),
        lower_color=jitter_color(rng, pick(rng, LOWER_COLORS, LOWER_WEIGHTS)),
        shoe_color=jitter_color(rng, pick(rng, SHOE_COLORS), 10),
        bag_type=pick(rng, BAG_TYPES, [3, 2, 1.5, 1]),
        bag_color=jitter_color(rng, pick(rng, BAG_COLORS)),
        bag_side=int(rng.choice([-1, 1])),
        detail_height=pick(rng, ("none",) + tuple(DETAIL_HEIGHTS), [4, 1, 1, 1, 1]),
        detail_color=jitter_color(rng, pick(rng, DETAIL_COLORS), 10),
    )


def _far(a, b, threshold: int = 90) -> bool:
    return int(np.abs(np.subtract(a, b)).sum()) > threshold


def prepare_base(rng: np.random.Generator, base: Identity, part: str) -> None:
    """Make `base` able to carry the position variant `part` (in place, before any variant is made)."""
    if part == "swap-upper-lower" and not _far(base.upper_color, base.lower_color):
        base.lower_color = jitter_color(rng, pick(rng, [c for c in LOWER_COLORS if _far(c, base.upper_color)]))
    elif part == "swap-block":
        base.upper_pattern = "block"
    elif part == "detail-height" and base.detail_height == "none":
        base.detail_height = pick(rng, tuple(DETAIL_HEIGHTS))


def lookalike_variant(rng: np.random.Generator, base: Identity, part: str) -> Identity:
    """A copy of `base` that differs in exactly one local part."""
    other = random_identity(rng)
    variant = dataclasses.replace(base, changed_part=part)
    if part == "hair":
        styles = [s for s in HAIR_STYLES if s != base.hair_style]
        variant.hair_style = pick(rng, styles)
        if variant.hair_style in ("hat", "cap"):
            variant.hat_color = other.hat_color
    elif part == "shoes":
        colors = [c for c in SHOE_COLORS if np.abs(np.subtract(c, base.shoe_color)).sum() > 90]
        variant.shoe_color = jitter_color(rng, pick(rng, colors), 10)
    elif part == "lower":
        colors = [c for c in LOWER_COLORS if np.abs(np.subtract(c, base.lower_color)).sum() > 90]
        variant.lower_color = jitter_color(rng, pick(rng, colors))
        if rng.random() < 0.4:
            variant.lower_type = pick(rng, [t for t in LOWER_TYPES if t != base.lower_type])
    elif part == "bag":
        variant.bag_type = pick(rng, [t for t in BAG_TYPES if t != base.bag_type])
        variant.bag_color = other.bag_color
    elif part == "upper-pattern":
        variant.upper_pattern = pick(rng, [p for p in UPPER_PATTERNS if p != base.upper_pattern])
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


def appearance(ident: Identity) -> tuple:
    """What a person looks like: every attribute but the look-alike bookkeeping (group, changed part)."""
    return tuple((f.name, getattr(ident, f.name)) for f in dataclasses.fields(Identity)
                 if f.name not in ("group", "changed_part"))
