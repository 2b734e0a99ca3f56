"""What a scene is: people on a ground plane, what is behind them and how the photo was taken
(`Scene` and its parts, to and from scenes.jsonl), and where the pinhole camera puts a person and
their head in the image."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

RGB = tuple[int, int, int]
Box = tuple[float, float, float, float]

HEAD_W, HEAD_H = 0.135, 0.18  # head size / body height: large (real: ~0.13 high) so faces survive downscaling
SHOULDER = HEAD_H + 0.03  # the shoulder row, in body heights from the head top


@dataclass
class Person:
    """One person on the ground plane (metres) with everything needed to draw them."""

    x: float  # lateral position, metres right of the optical axis
    z: float  # depth from the camera, metres
    height: float  # metres
    width: float  # shoulder width, metres
    skin: RGB
    hair: RGB
    hair_style: str  # one of HAIR_STYLES; "cap" wears a hat of colour `hat`
    hat: RGB | None
    top: RGB
    sleeves: str  # "long" | "short"
    bottom: RGB
    bottom_style: str  # "trousers" | "shorts" | "skirt"
    shoes: RGB
    scarf: RGB | None  # a scarf at the neck: a hard negative for mask detectors
    yaw: float  # -1..1, turns the face features sideways
    arms: float  # 0..1, how far the hands hang out from the body
    mask: str  # one of MASK_STATES
    mask_style: str | None  # one of MASK_STYLES, None without a mask
    mask_colour: RGB | None
    mask_trim: RGB | None  # pleats, seams, ear loops and pattern
    mask_pattern: str | None  # "plain" | "dots" | "stripes"


@dataclass
class Prop:
    """A background object (poster, window, bush, pole), in image pixels."""

    shape: str  # "panel" | "blob" | "pole"
    box: Box
    colour: RGB


@dataclass
class Background:
    """What is behind the people."""

    kind: str  # "room" | "outdoor" | "gradient" | "noise" | "stripes"
    colours: list[RGB]
    angle: float  # radians, for gradients and stripes
    period: float  # stripe width (px), noise cell (px) or floor tile (m)
    depth: float  # room: distance of the back wall, metres
    grain: float  # texture noise, grey levels
    props: list[Prop] = field(default_factory=list)


@dataclass
class Scene:
    """A whole photo: camera, background, people and how the picture was taken."""

    width: int
    height: int
    focal: float  # pixels per metre at 1 m depth
    horizon: float  # image row of the horizon (may lie above the frame)
    camera_height: float  # metres
    background: Background
    people: list[Person]
    jpeg_quality: int
    noise: float  # sensor noise, grey levels
    blur: float  # Gaussian blur radius, pixels
    tint: tuple[float, float, float]  # per-channel gain: exposure and white balance
    seed: int  # seeds the texture noise, so rendering is a function of the scene

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description; each person also gets its pixel `box` and `head_box`."""
        d = asdict(self)
        for pd, person in zip(d["people"], self.people):
            pd["box"] = [round(v, 1) for v in body_box(self, person)]
            pd["head_box"] = [round(v, 1) for v in head_box(self, person)]
        return d


def scene_from_dict(d: dict[str, Any]) -> Scene:
    """Rebuild a `Scene` from `Scene.to_dict()` output (or its JSON); derived boxes are ignored."""
    bg = dict(d["background"])
    bg["colours"] = [tuple(c) for c in bg["colours"]]
    bg["props"] = [Prop(p["shape"], tuple(p["box"]), tuple(p["colour"])) for p in bg["props"]]
    names = {f.name for f in fields(Person)}
    people = [Person(**{k: _tuples(v) for k, v in p.items() if k in names}) for p in d["people"]]
    rest = {k: _tuples(v) for k, v in d.items() if k not in ("background", "people")}
    return Scene(background=Background(**bg), people=people, **rest)


def _tuples(value: Any) -> Any:
    """Lists (JSON arrays) back to the tuples the dataclasses hold."""
    return tuple(value) if isinstance(value, list) else value


def _rounded(value: Any) -> Any:
    """Plain Python values with floats rounded to 4 decimals, as stored in scenes.jsonl."""
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    return round(value, 4) if isinstance(value, float) else value


# ----------------------------------------------------------------------------- geometry


def project(scene: Scene, person: Person) -> tuple[float, float, float, float]:
    """Pixel centre x, foot row, height and shoulder width of `person`."""
    scale = scene.focal / person.z  # farther people are smaller and their feet nearer the horizon
    return (
        scene.width / 2 + person.x * scale,
        scene.horizon + scene.camera_height * scale,
        person.height * scale,
        person.width * scale,
    )


def body_box(scene: Scene, person: Person) -> Box:
    """Pixel box (x0, y0, x1, y1) around the whole figure, hands included."""
    cx, foot, h, _ = project(scene, person)
    half = reach(person) * h / person.height
    return cx - half, foot - h, cx + half, foot


def reach(person: Person) -> float:
    """Half the figure's width, hands included, in metres."""
    return person.width / 2 + (0.05 + 0.06 * person.arms) * person.height


def head_box(scene: Scene, person: Person) -> Box:
    """Pixel box around the head."""
    cx, foot, h, _ = project(scene, person)
    return cx - HEAD_W * h / 2, foot - h, cx + HEAD_W * h / 2, foot - h + HEAD_H * h


def face_heights(scene: dict[str, Any], size: int | None = None) -> list[float]:
    """Head heights in pixels of a `scenes.jsonl` scene, in the image or after a letterbox to `size`."""
    scale = 1.0 if size is None else size / max(scene["width"], scene["height"])
    return [(p["head_box"][3] - p["head_box"][1]) * scale for p in scene["people"]]
