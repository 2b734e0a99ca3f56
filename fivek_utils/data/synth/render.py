"""Drawing a scene as an RGB photo: the background, its props, the people back to front (each at
SS times the size, then reduced), and the camera's exposure, noise and blur. The picture is a
function of the scene alone."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .sampling import _shade
from .scene import HEAD_H, HEAD_W, SHOULDER, Person, Prop, Scene, project

SS = 2  # people are drawn at 2x and box-filtered down: anti-aliased edges at little cost
EYE_Y, NOSE_TOP, NOSE_TIP, MOUTH_Y = 0.46, 0.48, 0.64, 0.78  # face rows as fractions of head height
MASK_SPAN = {"proper": (0.52, 0.97), "below_nose": (0.69, 1.0), "chin": (0.85, 1.05)}  # mask top/bottom rows


def render_scene(scene: Scene) -> Image.Image:
    """Draw `scene` as an RGB image of its own size."""
    rng = np.random.default_rng(scene.seed)
    canvas = paint_background(scene, rng)
    draw = ImageDraw.Draw(canvas)
    for prop in scene.background.props:
        draw_prop(draw, prop)
    for person in sorted(scene.people, key=lambda p: -p.z):  # far people first: near ones overlap them
        draw_person(draw, scene, person)
    image = canvas.reduce(SS)
    return finish_photo(image, scene, rng)


def paint_background(scene: Scene, rng: np.random.Generator) -> Image.Image:
    """The background at SS times the scene size."""
    w, h, bg = scene.width, scene.height, scene.background
    c = np.asarray(bg.colours, np.float32)
    ys = np.arange(h, dtype=np.float32)[:, None, None]
    xs = np.arange(w, dtype=np.float32)[None, :, None]
    if bg.kind in ("gradient", "stripes"):
        along = xs * math.cos(bg.angle) + ys * math.sin(bg.angle)
        if bg.kind == "gradient":
            t = (along - along.min()) / max(float(np.ptp(along)), 1.0)
        else:
            t = np.clip(np.sin(along * math.pi / bg.period) * 3, -1, 1) * 0.5 + 0.5  # soft-edged stripes
        arr = c[0] + (c[1] - c[0]) * t
    elif bg.kind == "noise":
        t = _smooth_noise(rng, w, h, bg.period)
        arr = c[0] + (c[1] - c[0]) * t
        arr = arr + (c[2] - arr) * 0.5 * _smooth_noise(rng, w, h, bg.period / 4) ** 2
    else:  # room or outdoor: wall / sky above the split line, floor / ground below
        split = _split_row(scene)
        top = ys / max(split, 1.0)
        above = c[0] * (0.85 + 0.25 * top) if bg.kind == "room" else c[0] * (1.1 - 0.25 * top) + 15 * (1 - top)
        ground = c[1] * (0.8 + 0.3 * np.clip((ys - split) / max(h - split, 1.0), 0, 1))
        if bg.kind == "outdoor":
            ground = ground + (c[2] - ground) * 0.3 * _smooth_noise(rng, w, h, 12.0)
        arr = np.where(ys < split, above, ground)
    arr = arr + rng.standard_normal((h, w, 1), dtype=np.float32) * bg.grain
    # NEAREST, because render_scene's reduce(SS) then gives back exactly these pixels
    image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).resize((w * SS, h * SS), Image.NEAREST)
    if bg.kind == "room":
        _draw_floor(ImageDraw.Draw(image), scene)
    return image


def _split_row(scene: Scene) -> float:
    """Image row where the back wall meets the floor (room) or the horizon (outdoor)."""
    if scene.background.kind == "room":
        return scene.horizon + scene.focal * scene.camera_height / scene.background.depth
    return scene.horizon


def _smooth_noise(rng: np.random.Generator, w: int, h: int, cell: float) -> np.ndarray:
    """Smooth noise in [0, 1], shape (h, w, 1), varying over about `cell` pixels."""
    gw, gh = max(2, math.ceil(w / cell) + 1), max(2, math.ceil(h / cell) + 1)
    low = Image.fromarray((rng.random((gh, gw)) * 255).astype(np.uint8))
    return np.asarray(low.resize((w, h), Image.BICUBIC), np.float32)[:, :, None] / 255.0


def _draw_floor(draw: ImageDraw.ImageDraw, scene: Scene) -> None:
    """Floor tiles in perspective: lines toward the vanishing point and rows at fixed depths."""
    bg, f, cam, hz = scene.background, scene.focal, scene.camera_height, scene.horizon
    colour = _shade(bg.colours[2], 0.8)
    line = max(1, SS)
    z_front = cam * f / max(scene.height - hz, 1.0)  # depth seen at the bottom row
    z = bg.depth
    while z > z_front:
        y = (hz + cam * f / z) * SS
        draw.line([(0, y), (scene.width * SS, y)], fill=colour, width=line)
        z -= bg.period
    half = scene.width / 2 * bg.depth / f
    for k in range(-int(half / bg.period) - 40, int(half / bg.period) + 41):
        x = k * bg.period
        far = (scene.width / 2 + x * f / bg.depth, hz + cam * f / bg.depth)
        near = (scene.width / 2 + x * f / z_front, scene.height)
        if max(far[0], near[0]) >= 0 and min(far[0], near[0]) <= scene.width:
            draw.line([(far[0] * SS, far[1] * SS), (near[0] * SS, near[1] * SS)], fill=colour, width=line)


def draw_prop(draw: ImageDraw.ImageDraw, prop: Prop) -> None:
    """A poster or window (framed panel), a bush (blob) or a pole."""
    box = [v * SS for v in prop.box]
    if prop.shape == "blob":
        draw.ellipse(box, fill=prop.colour)
    elif prop.shape == "pole":
        draw.rectangle(box, fill=prop.colour)
    else:
        frame = max(2, int(0.06 * min(box[2] - box[0], box[3] - box[1])))
        draw.rectangle(box, fill=_shade(prop.colour, 0.6))
        draw.rectangle([box[0] + frame, box[1] + frame, box[2] - frame, box[3] - frame], fill=prop.colour)


@dataclass
class _Figure:
    """A person on the canvas; `at` takes body heights from the head top, `face` head widths/heights."""

    cx: float  # canvas x of the body axis
    top: float  # canvas y of the top of the head
    h: float  # body height, canvas pixels
    sw: float  # shoulder width, in body heights

    def at(self, u: float, v: float) -> tuple[float, float]:
        """Canvas point u body heights right of the axis, v below the head top."""
        return self.cx + u * self.h, self.top + v * self.h

    def box(self, u0: float, v0: float, u1: float, v1: float) -> list[float]:
        """Canvas box between two body points."""
        return [*self.at(u0, v0), *self.at(u1, v1)]

    def face(self, u: float, v: float) -> tuple[float, float]:
        """Canvas point u head widths right of the axis, v head heights below the head top."""
        return self.cx + u * HEAD_W * self.h, self.top + v * HEAD_H * self.h

    def face_box(self, u0: float, v0: float, u1: float, v1: float) -> list[float]:
        """Canvas box between two face points."""
        return [*self.face(u0, v0), *self.face(u1, v1)]

    def px(self, frac: float) -> int:
        """A line width of `frac` body heights, at least one pixel."""
        return max(1, int(frac * self.h))


def draw_person(draw: ImageDraw.ImageDraw, scene: Scene, p: Person) -> None:
    """Draw one person, back to front: hair behind, legs, body, arms, head, face, mask."""
    cx, foot, h, w = (v * SS for v in project(scene, p))
    fig = _Figure(cx, foot - h, h, w / h)
    if p.hair_style == "long":
        draw.ellipse(fig.face_box(-0.62, -0.12, 0.62, 1.32), fill=p.hair)
        draw.rectangle([*fig.face(-0.6, 0.6), *fig.at(0.6 * HEAD_W, SHOULDER + 0.07)], fill=p.hair)
    _draw_legs(draw, fig, p)
    _draw_torso(draw, fig, p)
    _draw_arms(draw, fig, p)
    _draw_head(draw, fig, p)
    if p.mask != "none":
        _draw_mask(draw, fig, p)


def _draw_legs(draw: ImageDraw.ImageDraw, fig: _Figure, p: Person) -> None:
    """Legs, trousers/shorts/skirt and shoes."""
    sw = fig.sw
    for side in (-1, 1):
        x = side * 0.2 * sw
        hip_l, hip_r = fig.at(x - 0.19 * sw, 0.54), fig.at(x + 0.19 * sw, 0.54)
        draw.polygon([hip_l, hip_r, fig.at(x + 0.15 * sw, 0.97), fig.at(x - 0.15 * sw, 0.97)],
                     fill=p.bottom if p.bottom_style == "trousers" else p.skin)
        if p.bottom_style == "shorts":
            draw.polygon([hip_l, hip_r, fig.at(x + 0.18 * sw, 0.68), fig.at(x - 0.18 * sw, 0.68)], fill=p.bottom)
        shoe = x + side * 0.04 * sw
        draw.ellipse(fig.box(shoe - 0.21 * sw, 0.956, shoe + 0.21 * sw, 1.008), fill=p.shoes)
    if p.bottom_style == "skirt":
        skirt = [(-0.4 * sw, 0.52), (0.4 * sw, 0.52), (0.62 * sw, 0.76), (-0.62 * sw, 0.76)]
        draw.polygon([fig.at(u, v) for u, v in skirt], fill=p.bottom)


def _draw_torso(draw: ImageDraw.ImageDraw, fig: _Figure, p: Person) -> None:
    """Neck, shirt with rounded shoulders, neckline and scarf."""
    half, sh, hip, r = fig.sw / 2, SHOULDER, 0.55, 0.05  # shoulder row, hip row, shoulder rounding
    neck = _shade(p.skin, 0.92)
    draw.rectangle(fig.box(-0.28 * HEAD_W, 0.85 * HEAD_H, 0.28 * HEAD_W, sh + r), fill=neck)
    body = [(-half, sh + r), (-half + r, sh), (half - r, sh), (half, sh + r), (0.84 * half, hip), (-0.84 * half, hip)]
    draw.polygon([fig.at(u, v) for u, v in body], fill=p.top)
    for side in (-1, 1):
        u = side * (half - r)
        draw.ellipse(fig.box(u - r, sh, u + r, sh + 2 * r), fill=p.top)
    draw.pieslice(fig.box(-0.036, sh - 0.025, 0.036, sh + 0.03), 0, 180, fill=neck)
    if p.scarf is not None:
        draw.rounded_rectangle(fig.box(-0.06, sh - 0.025, 0.06, sh + 0.02), radius=0.02 * fig.h, fill=p.scarf)
        draw.rectangle(fig.box(0.012, sh, 0.042, sh + 0.1), fill=_shade(p.scarf, 0.9))


def _draw_arms(draw: ImageDraw.ImageDraw, fig: _Figure, p: Person) -> None:
    """Arms hanging at the sides, sleeves long or short, and hands."""
    t = fig.px(0.065)
    for side in (-1, 1):
        shoulder = fig.at(side * (fig.sw / 2 - 0.03), SHOULDER + 0.03)
        hand = fig.at(side * (fig.sw / 2 + 0.01 + 0.06 * p.arms), 0.53)
        elbow = ((shoulder[0] + hand[0]) / 2, (shoulder[1] + hand[1]) / 2)
        draw.line([shoulder, elbow], fill=p.top, width=t)
        draw.line([elbow, hand], fill=p.top if p.sleeves == "long" else p.skin, width=t)
        draw.ellipse([shoulder[0] - t / 2, shoulder[1] - t / 2, shoulder[0] + t / 2, shoulder[1] + t / 2], fill=p.top)
        draw.ellipse([hand[0] - 0.55 * t, hand[1] - 0.6 * t, hand[0] + 0.55 * t, hand[1] + 0.6 * t], fill=p.skin)


def _draw_head(draw: ImageDraw.ImageDraw, fig: _Figure, p: Person) -> None:
    """Ears, face, hair or cap, eyes, brows, nose and mouth."""
    dx = 0.18 * p.yaw  # turning the head shifts the features sideways
    for side in (-1, 1):
        draw.ellipse(fig.face_box(side * 0.5 - 0.1, 0.41, side * 0.5 + 0.1, 0.63), fill=_shade(p.skin, 0.9))
    draw.ellipse(fig.face_box(-0.5, 0.0, 0.5, 1.0), fill=p.skin)
    if p.hair_style == "cap":
        draw.chord(fig.face_box(-0.53, 0.05, 0.53, 0.6), 180, 360, fill=p.hair)
        draw.chord(fig.face_box(-0.52, -0.08, 0.52, 0.62), 180, 360, fill=p.hat)
        draw.rectangle(fig.face_box(-0.55 + dx, 0.24, 0.55 + 1.5 * dx, 0.3), fill=_shade(p.hat, 0.8))  # brim
    else:
        draw.chord(fig.face_box(-0.54, -0.05, 0.54, 0.7), 180, 360, fill=p.hair)
        fringe = [(-0.5, 0.33), (0.5, 0.33), (0.3 + dx, 0.22), (-0.2 + dx, 0.26)]
        draw.polygon([fig.face(u, v) for u, v in fringe], fill=p.hair)
        if p.hair_style == "bun":
            draw.ellipse(fig.face_box(-0.22, -0.19, 0.22, 0.09), fill=p.hair)
        if p.hair_style == "long":
            draw.rectangle(fig.face_box(-0.56, 0.3, -0.38, 0.95), fill=p.hair)
            draw.rectangle(fig.face_box(0.38, 0.3, 0.56, 0.95), fill=p.hair)
    for side in (-1, 1):
        ex = dx + side * 0.21
        draw.ellipse(fig.face_box(ex - 0.066, EYE_Y - 0.041, ex + 0.066, EYE_Y + 0.041), fill=(28, 24, 24))
        draw.line([fig.face(ex - 0.1, 0.37), fig.face(ex + 0.1, 0.37)], fill=_shade(p.hair, 0.8), width=fig.px(0.005))
    nx = 1.3 * dx  # the nose sticks out, so it moves most
    nose = [fig.face(nx, NOSE_TOP), fig.face(nx - 0.08, NOSE_TIP), fig.face(nx + 0.08, NOSE_TIP)]
    draw.polygon(nose, fill=_shade(p.skin, 0.75))
    lips = (min(255, int(p.skin[0] * 0.8) + 40), int(p.skin[1] * 0.5), int(p.skin[2] * 0.5))
    draw.ellipse(fig.face_box(dx - 0.14, MOUTH_Y - 0.035, dx + 0.14, MOUTH_Y + 0.035), fill=lips)


def _draw_mask(draw: ImageDraw.ImageDraw, fig: _Figure, p: Person) -> None:
    """The mask between the rows its state gives: over the nose, below it, or on the chin."""
    top, bottom = MASK_SPAN[p.mask]
    d, x = bottom - top, 0.12 * p.yaw
    thin = fig.px(0.003)
    for side in (-1, 1):  # ear loops first, so the mask edge covers their ends
        ear = fig.face(side * 0.5, 0.5)
        draw.line([fig.face(x + side * 0.44, top + 0.15 * d), ear], fill=p.mask_trim, width=thin)
        draw.line([fig.face(x + side * 0.4, bottom - 0.2 * d), ear], fill=p.mask_trim, width=thin)
    if p.mask_style == "surgical":
        low = bottom - 0.25 * d
        shape = [(x - 0.48, top), (x + 0.48, top), (x + 0.45, low), (x + 0.3, bottom), (x - 0.3, bottom),
                 (x - 0.45, low)]
        draw.polygon([fig.face(u, v) for u, v in shape], fill=p.mask_colour)
        for k in (0.3, 0.52, 0.74):  # pleats
            draw.line([fig.face(x - 0.42, top + k * d), fig.face(x + 0.42, top + k * d)], fill=p.mask_trim, width=thin)
    elif p.mask_style == "kn95":
        side_top, side_low = top + 0.2 * d, top + 0.72 * d
        shape = [(x - 0.46, side_top), (x, top - 0.04 * d), (x + 0.46, side_top), (x + 0.4, side_low), (x, bottom),
                 (x - 0.4, side_low)]
        draw.polygon([fig.face(u, v) for u, v in shape], fill=p.mask_colour)
        draw.line([fig.face(x, top), fig.face(x, bottom)], fill=p.mask_trim, width=thin)  # the centre seam
    else:  # cloth: top edge arching over the nose, rounded bottom
        arc = np.linspace(0, math.pi, 11)
        shape = [(x - 0.47 * math.cos(a), top + 0.12 * d * (1 - math.sin(a))) for a in arc]
        shape += [(x + 0.45 * math.cos(a), top + 0.35 * d + 0.65 * d * math.sin(a)) for a in arc]
        draw.polygon([fig.face(u, v) for u, v in shape], fill=p.mask_colour)
        _draw_pattern(draw, fig, p, x, top, d)


def _draw_pattern(draw: ImageDraw.ImageDraw, fig: _Figure, p: Person, x: float, top: float, d: float) -> None:
    """Stripes or dots on a cloth mask."""
    if p.mask_pattern == "stripes":
        for k in (0.35, 0.55, 0.75):
            row = top + k * d
            draw.line([fig.face(x - 0.4, row), fig.face(x + 0.4, row)], fill=p.mask_trim, width=fig.px(0.016 * d))
    elif p.mask_pattern == "dots":
        rv = 0.05 * d  # dot radius in head heights; in head widths it is larger, so dots come out round
        ru = rv * HEAD_H / HEAD_W
        for j, k in enumerate((0.35, 0.6, 0.82)):
            for i in range(-2 if j < 2 else -1, 3 if j < 2 else 2):  # the bottom row is narrower
                u, v = x + (i + 0.5 * (j % 2)) * 0.17, top + k * d
                draw.ellipse(fig.face_box(u - ru, v - rv, u + ru, v + rv), fill=p.mask_trim)


def finish_photo(image: Image.Image, scene: Scene, rng: np.random.Generator) -> Image.Image:
    """Camera effects: exposure and white balance, sensor noise, blur."""
    arr = np.asarray(image, np.float32) * np.asarray(scene.tint, np.float32)
    if scene.noise > 0:
        arr += rng.standard_normal(arr.shape[:2] + (1,), dtype=np.float32) * scene.noise
    image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return image.filter(ImageFilter.GaussianBlur(scene.blur)) if scene.blur > 0 else image
