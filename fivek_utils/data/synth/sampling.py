"""What both profiles draw alike: a person's build, look and mask, the background and its props,
how the photo was taken, and the colours they share (masks, clothes and backgrounds borrow each
other's, so colour alone gives no label away)."""

from __future__ import annotations

import colorsys
import math
from typing import Any

import numpy as np

from .scene import RGB, Background, Person, Prop

MASK_STYLES = ("surgical", "cloth", "kn95")
HAIR_STYLES = ("short", "long", "bun", "cap")

SKIN_TONES = [(255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 134, 96), (160, 105, 70), (118, 80, 55),
              (88, 58, 40)]
HAIR_COLOURS = [(22, 18, 16), (45, 32, 24), (80, 56, 36), (120, 70, 40), (190, 160, 105), (150, 150, 150)]
# common mask colours; clothes and backgrounds borrow them so colour alone does not give the label away
MASK_COLOURS = [(150, 200, 230), (236, 238, 240), (35, 35, 38), (150, 150, 156), (238, 170, 190), (40, 52, 92),
                (120, 190, 170)]

OFFENDERS = ("none", "below_nose", "chin")
OFFENDER_RATES = (0.6, 0.28, 0.12)


def _sample_mask_states(rng: np.random.Generator, n: int, mask: int) -> list[str]:
    """Mask states for n people: all proper, or at least one offender (often exactly one)."""
    states = ["proper"] * n
    if mask:
        return states
    k = 1 if rng.random() < 0.6 else int(rng.integers(1, n + 1))
    for i in rng.choice(n, size=k, replace=False):
        states[i] = str(rng.choice(OFFENDERS, p=OFFENDER_RATES))
    return states


def sample_photo(rng: np.random.Generator) -> dict[str, Any]:
    """How the picture was taken: JPEG quality, noise, blur, exposure and white balance."""
    exposure = rng.uniform(0.85, 1.12)
    return {
        "jpeg_quality": int(rng.integers(60, 96)),
        "noise": float(rng.uniform(0, 6)),
        "blur": float(rng.uniform(0.3, 1.0)) if rng.random() < 0.35 else 0.0,
        "tint": tuple(float(exposure * (1 + rng.normal(0, 0.04))) for _ in range(3)),
        "seed": int(rng.integers(2**31)),
    }


def sample_person(rng: np.random.Generator, mask_state: str = "proper", child_rate: float = 0.08) -> Person:
    """A person of random build and look (position left at 0) wearing a mask as `mask_state` says."""
    child = rng.random() < child_rate
    height = rng.uniform(1.05, 1.4) if child else float(np.clip(rng.normal(1.68, 0.08), 1.5, 1.92))
    hair_style = str(rng.choice(HAIR_STYLES, p=[0.42, 0.3, 0.1, 0.18]))
    return Person(
        x=0.0,
        z=1.0,
        height=float(height),
        width=float(height * rng.uniform(0.24, 0.28)),
        skin=_pick(rng, SKIN_TONES, 10),
        hair=_pick(rng, HAIR_COLOURS, 10) if rng.random() < 0.93 else _random_colour(rng),
        hair_style=hair_style,
        hat=_clothing_colour(rng) if hair_style == "cap" else None,
        top=_clothing_colour(rng),
        sleeves=str(rng.choice(["long", "short"])),
        bottom=_clothing_colour(rng, dark=True),
        bottom_style=str(rng.choice(["trousers", "shorts", "skirt"], p=[0.65, 0.17, 0.18])),
        shoes=_jitter(rng, (40, 38, 36), 25) if rng.random() < 0.7 else _clothing_colour(rng),
        scarf=_clothing_colour(rng) if rng.random() < 0.15 else None,
        yaw=float(rng.uniform(-0.8, 0.8)),
        arms=float(rng.random()),
        **_sample_mask(rng, mask_state),
    )


def _sample_mask(rng: np.random.Generator, state: str) -> dict[str, Any]:
    """The mask fields of a Person: style, colours and pattern (all None without a mask)."""
    if state == "none":
        return {"mask": state, "mask_style": None, "mask_colour": None, "mask_trim": None, "mask_pattern": None}
    style = str(rng.choice(MASK_STYLES, p=[0.5, 0.35, 0.15]))
    colour = _pick(rng, MASK_COLOURS, 14) if rng.random() < 0.75 else _random_colour(rng)
    trim = _shade(colour, rng.uniform(0.7, 0.85)) if rng.random() < 0.7 else _random_colour(rng)
    pattern = str(rng.choice(["plain", "dots", "stripes"], p=[0.6, 0.15, 0.25])) if style == "cloth" else "plain"
    return {"mask": state, "mask_style": style, "mask_colour": colour, "mask_trim": trim, "mask_pattern": pattern}


def sample_background(rng: np.random.Generator, width: int, height: int, z_far: float) -> Background:
    """A random background for a width x height photo whose people stand no deeper than z_far."""
    kind = str(rng.choice(["room", "outdoor", "gradient", "noise", "stripes"], p=[0.3, 0.2, 0.15, 0.2, 0.15]))
    colours = [_background_colour(rng) for _ in range(3)]
    if kind == "outdoor":
        colours[0] = _pick(rng, [(150, 190, 230), (200, 210, 220), (235, 235, 240), (110, 140, 190)], 15)  # sky
        colours[1] = _pick(rng, [(110, 110, 112), (90, 130, 70), (150, 125, 95), (170, 165, 155)], 15)  # ground
    if kind == "room":
        period = rng.uniform(0.4, 1.0)  # floor tile, metres
    elif kind == "stripes":
        period = rng.uniform(6, 50)  # stripe width, pixels
    elif kind == "noise":
        period = rng.uniform(15, 120)  # blob size, pixels
    else:
        period = 0.0
    return Background(
        kind=kind,
        colours=colours,
        angle=float(rng.uniform(0, math.pi)),
        period=float(period),
        depth=float(z_far * rng.uniform(1.1, 2.0)),  # the back wall stands behind everyone
        grain=float(rng.uniform(0, 10)),
        props=[_sample_prop(rng, width, height) for _ in range(int(rng.integers(0, 6)))],
    )


def _sample_prop(rng: np.random.Generator, w: int, h: int) -> Prop:
    """A poster, window, bush or pole somewhere in the frame."""
    shape = str(rng.choice(["panel", "blob", "pole"], p=[0.55, 0.3, 0.15]))
    bw = rng.uniform(0.01, 0.03) * w if shape == "pole" else rng.uniform(0.05, 0.35) * w
    bh = rng.uniform(0.4, 1.0) * h if shape == "pole" else rng.uniform(0.05, 0.45) * h
    x0, y0 = rng.uniform(-0.1 * w, w - 0.5 * bw), rng.uniform(-0.1 * h, h - 0.5 * bh)
    colour = _pick(rng, MASK_COLOURS, 20) if rng.random() < 0.3 else _random_colour(rng)
    return Prop(shape, (float(x0), float(y0), float(x0 + bw), float(y0 + bh)), colour)


def _pick(rng: np.random.Generator, palette: list[RGB], amount: int) -> RGB:
    """A palette colour, jittered."""
    return _jitter(rng, palette[rng.integers(len(palette))], amount)


def _random_colour(rng: np.random.Generator, s: tuple[float, float] = (0.15, 0.9),
                   v: tuple[float, float] = (0.2, 0.95)) -> RGB:
    """A colour of random hue with saturation and value in the given ranges."""
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*s), rng.uniform(*v))
    return int(r * 255), int(g * 255), int(b * 255)


def _clothing_colour(rng: np.random.Generator, dark: bool = False) -> RGB:
    """Clothes: often mask-coloured or neutral, so a blue or white patch is no giveaway."""
    u = rng.random()
    if u < 0.3:
        return _pick(rng, MASK_COLOURS, 18)
    if u < 0.45:
        return _jitter(rng, (g := int(rng.uniform(25, 235)), g, g), 8)
    return _random_colour(rng, v=(0.15, 0.7) if dark else (0.2, 0.95))


def _background_colour(rng: np.random.Generator) -> RGB:
    """Walls and floors: mostly muted, sometimes mask-coloured."""
    if rng.random() < 0.25:
        return _pick(rng, MASK_COLOURS, 20)
    return _random_colour(rng, s=(0.0, 0.6), v=(0.25, 0.95))


def _jitter(rng: np.random.Generator, rgb: tuple[int, ...], amount: int) -> RGB:
    """`rgb` with each channel moved by up to `amount`."""
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)  # type: ignore[return-value]


def _shade(rgb: tuple[int, ...], k: float) -> RGB:
    """`rgb` scaled by k (darker below 1)."""
    return tuple(int(np.clip(c * k, 0, 255)) for c in rgb)  # type: ignore[return-value]
