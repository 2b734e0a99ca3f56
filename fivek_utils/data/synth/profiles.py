"""The two framings, `closeup` and `realistic`: how many people, where they stand and where the
camera is. `sample_scene` draws a scene of either for target labels and checks them."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np

from .labels import (
    AMBIGUOUS_BAND,
    MIN_SEP_WIDTHS,
    PAIR_COUNTS,
    SAFE_WIDTHS,
    ground_distance,
    safe_distance,
    scene_labels,
)
from .sampling import _sample_mask_states, sample_background, sample_person, sample_photo
from .scene import SHOULDER, Box, Person, Scene, _rounded, body_box, head_box, project, reach, scene_from_dict

PROFILES = ("closeup", "realistic")
DEFAULT_PROFILE = "closeup"


def sample_scene(rng: np.random.Generator, mask: int | None = None, distancing: int | None = None,
                 profile: str = DEFAULT_PROFILE) -> Scene:
    """A random scene of `profile` with labels (`mask`, `distancing`); a label left None follows the real balance."""
    attempt = {"realistic": _try_scene, "closeup": _try_closeup_scene}[check_profile(profile)]
    pairs = [p for p in PAIR_COUNTS if mask in (None, p[0]) and distancing in (None, p[1])]
    weights = np.array([PAIR_COUNTS[p] for p in pairs], float)
    drawn = pairs[rng.choice(len(pairs), p=weights / weights.sum())]
    target = {"mask": drawn[0], "distancing": drawn[1]}
    for _ in range(200):
        scene = attempt(rng, target)
        # the round trip rounds floats to what scenes.jsonl stores, so labels are checked on that
        if scene is not None and scene_labels(scene) == target:
            return scene
    raise RuntimeError(f"could not build a scene with labels {target}")


def check_profile(profile: str) -> str:
    """Return `profile` if it is one of PROFILES, else say which exist."""
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r}: choose one of {list(PROFILES)}")
    return profile


# ----------------------------------------------------------------------------- the realistic profile


def _try_scene(rng: np.random.Generator, target: dict[str, int]) -> Scene | None:
    """One attempt at a scene for `target`; None when the people do not fit the frame."""
    n = _sample_people_count(rng, target["distancing"])
    people = [sample_person(rng, state) for state in _sample_mask_states(rng, n, target["mask"])]
    width, height = _sample_size(rng)
    focal, horizon, camera_height, z_near, z_far = _sample_camera(rng, height, n, people[0].height)
    background = sample_background(rng, width, height, z_far)
    scene = Scene(width, height, focal, horizon, camera_height, background, people, **sample_photo(rng))
    if not _place_people(rng, scene, z_near, z_far, target["distancing"]):
        return None
    scene.people.sort(key=lambda p: project(scene, p)[0])  # left to right reads naturally in scenes.jsonl
    return scene_from_dict(_rounded(scene.to_dict()))


def _sample_people_count(rng: np.random.Generator, distancing: int) -> int:
    """1-6 people, fewer more often; a crowding scene needs at least two."""
    if distancing:
        return 1 + int(rng.choice(6, p=[0.36, 0.24, 0.16, 0.11, 0.08, 0.05]))
    return 2 + int(rng.choice(5, p=[0.38, 0.25, 0.17, 0.12, 0.08]))


def _sample_size(rng: np.random.Generator) -> tuple[int, int]:
    """Width 320-800 px, aspect ratio from portrait 3:4 to wide 2:1, at least 200 px high."""
    aspect = math.exp(rng.uniform(math.log(0.75), math.log(2.0)))
    width = int(rng.integers(320, 801))
    width = max(width, math.ceil(200 * aspect))
    return width, int(round(width / aspect))


def _sample_camera(rng: np.random.Generator, height: int, n: int, anchor_height: float) -> tuple[float, ...]:
    """Focal length, horizon row, camera height, and the depth range people may stand in."""
    near_frac = rng.uniform(0.5, 0.85 - 0.05 * (n - 1))  # the nearest person's share of the image height
    z_near = rng.uniform(2.5, 5.0)
    camera_height = rng.uniform(1.2, 3.2)
    focal = near_frac * height * z_near / anchor_height
    foot = rng.uniform(0.86, 1.04) * height  # the nearest person's feet; below the frame crops them a little
    horizon = foot - focal * camera_height / z_near
    z_far = z_near * min(2.5, near_frac / 0.25)  # keeps the farthest adult at >= ~25% of the height
    return float(focal), float(horizon), float(camera_height), float(z_near), float(z_far)


def _place_people(rng: np.random.Generator, scene: Scene, z_near: float, z_far: float, distancing: int) -> bool:
    """Put everyone on the ground so that `distancing` holds and faces stay visible and in frame."""
    for i, person in enumerate(scene.people):
        for _ in range(60):
            if i == 0:
                z = z_near
                x = _random_x(rng, scene, person, z)
            elif i == 1 and not distancing:  # the offending pair: close, in any direction away from the camera
                ref = scene.people[0]
                d = rng.uniform(MIN_SEP_WIDTHS / SAFE_WIDTHS, 0.8) * safe_distance(ref, person)
                angle = rng.uniform(0, math.pi)
                x, z = ref.x + d * math.cos(angle), ref.z + d * math.sin(angle)
            else:
                z = rng.uniform(z_near, z_far)
                x = _random_x(rng, scene, person, z)
            person.x, person.z = float(x), float(z)
            if z_near <= z <= z_far and _fits(scene, i, distancing):
                break
        else:
            return False
    return True


def _random_x(rng: np.random.Generator, scene: Scene, person: Person, z: float) -> float:
    """A lateral position at depth z that keeps the person (hands included) inside the frame."""
    half = scene.width / 2 * z / scene.focal - reach(person)  # metres
    return rng.uniform(-half, half) if half > 0 else 0.0


def _fits(scene: Scene, i: int, distancing: int) -> bool:
    """Whether person i, just placed, is in frame, clear of the others' faces and keeps the rule."""
    person = scene.people[i]
    x0, y0, x1, _ = body_box(scene, person)
    hb = head_box(scene, person)
    w, h = scene.width, scene.height
    if x0 < -0.02 * w or x1 > 1.02 * w or y0 < 0.01 * h or hb[3] > 0.97 * h:
        return False
    lo, hi = AMBIGUOUS_BAND
    for other in scene.people[:i]:
        ratio = ground_distance(person, other) / safe_distance(person, other)
        if ratio < MIN_SEP_WIDTHS / SAFE_WIDTHS or lo < ratio < hi or (distancing and ratio < 1):
            return False
        far, near = (person, other) if person.z > other.z else (other, person)
        # a hidden face would make the mask label unknowable, a hidden body the people count
        cover = body_box(scene, near)
        if _covered(head_box(scene, far), cover) > 0.2 or _covered(body_box(scene, far), cover) > 0.5:
            return False
    return True


def _covered(box: Box, cover: Box) -> float:
    """Share of `box` lying under `cover`."""
    w = min(box[2], cover[2]) - max(box[0], cover[0])
    h = min(box[3], cover[3]) - max(box[1], cover[1])
    area = (box[2] - box[0]) * (box[3] - box[1])
    return max(w, 0) * max(h, 0) / area if area > 0 else 0.0


# ----------------------------------------------------------------------------- the close-up profile

CLOSEUP_DEPTH = (1.5, 2.6)  # metres from the camera to the group
CLOSEUP_SPAN = (0.28, 0.42)  # body heights shown below the highest head top: head and shoulders to chest
CLOSEUP_RATIOS = ((0.42, 0.8), (1.2, 1.6))  # centre distance / safe distance: too close, keeping distance
MAX_ASPECT = 16 / 9  # widest frame, width / height
# P(1, 2, 3 people) keeping their distance, P(2, 3) not: three people apart no longer fit a close-up
CLOSEUP_COUNTS = {1: (0.6, 0.4, 0.0), 0: (0.75, 0.25)}


def _try_closeup_scene(rng: np.random.Generator, target: dict[str, int]) -> Scene | None:
    """One attempt at a head-and-shoulders scene for `target`; None when it does not work out."""
    n = _sample_closeup_count(rng, target["distancing"])
    people = [sample_person(rng, state, child_rate=0.0) for state in _sample_mask_states(rng, n, target["mask"])]
    _place_side_by_side(rng, people, target["distancing"])
    if not _pairs_readable(people):
        return None
    width, height, focal, horizon, camera_height = _closeup_camera(rng, people)
    background = sample_background(rng, width, height, max(p.z for p in people))
    scene = Scene(width, height, focal, horizon, camera_height, background, people, **sample_photo(rng))
    if not _closeup_fits(scene):
        return None
    scene.people.sort(key=lambda p: project(scene, p)[0])
    return scene_from_dict(_rounded(scene.to_dict()))


def _sample_closeup_count(rng: np.random.Generator, distancing: int) -> int:
    """1-3 people; a crowding scene needs at least two."""
    if distancing:
        return 1 + int(rng.choice(3, p=CLOSEUP_COUNTS[1]))
    return 2 + int(rng.choice(2, p=CLOSEUP_COUNTS[0]))


def _place_side_by_side(rng: np.random.Generator, people: list[Person], distancing: int) -> None:
    """Line people up left to right at about the same depth, each gap a multiple of the safe distance.

    A crowding scene gets one pair (at random) too close; its other neighbours may stand
    close or apart. `_pairs_readable` then checks every pair, neighbours or not.
    """
    z0 = rng.uniform(*CLOSEUP_DEPTH)
    for p in people:
        p.z = float(z0 + rng.uniform(-0.2, 0.2))
    crowded = int(rng.integers(len(people) - 1)) if not distancing and len(people) > 1 else -1
    x = 0.0
    people[0].x = 0.0
    for i in range(1, len(people)):
        a, b = people[i - 1], people[i]
        apart = bool(distancing) or (i - 1 != crowded and rng.random() < 0.5)
        d = rng.uniform(*CLOSEUP_RATIOS[apart]) * safe_distance(a, b)
        x += math.sqrt(max(d * d - (b.z - a.z) ** 2, 0.0))
        b.x = float(x)


def _pairs_readable(people: list[Person]) -> bool:
    """No two bodies inside each other and no pair near the safe distance, where a label would be a coin toss."""
    lo, hi = AMBIGUOUS_BAND
    for a, b in combinations(people, 2):
        ratio = ground_distance(a, b) / safe_distance(a, b)
        if ratio < MIN_SEP_WIDTHS / SAFE_WIDTHS or lo < ratio < hi:
            return False
    return True


def _closeup_camera(rng: np.random.Generator, people: list[Person]) -> tuple[int, int, float, float, float]:
    """Frame size, focal length, horizon row and camera height that frame the group head to chest.

    The people are also shifted sideways so the group sits somewhere in the frame.
    """
    height = int(rng.integers(256, 481))
    top = rng.uniform(0.04, 0.14)  # headroom above the highest head, share of the height
    span = rng.uniform(*CLOSEUP_SPAN)
    camera_height = float(rng.uniform(1.3, 1.8))
    z_near = min(p.z for p in people)
    focal = height * (1 - top) * z_near / (span * max(p.height for p in people))
    # the group's extent in pixels per unit focal: shoulders, of which the frame may cut a little
    lo = min((p.x - 0.45 * p.width) / p.z for p in people)
    hi = max((p.x + 0.45 * p.width) / p.z for p in people)
    width = max((hi - lo) * focal * rng.uniform(1.02, 1.2), height * rng.uniform(0.75, 1.0))
    if width > MAX_ASPECT * height:  # a wide group: step back (zoom out) rather than crop it
        focal *= MAX_ASPECT * height / width
        width = MAX_ASPECT * height
    width = int(math.ceil(width))
    centre = rng.uniform(-1, 1) * max(width - (hi - lo) * focal, 0) / 2  # pixels right of the frame centre
    shift = (centre - (hi + lo) / 2 * focal) * z_near / focal  # metres, exact for the nearest person
    for p in people:
        p.x = float(p.x + shift)
    horizon = top * height - min((camera_height - p.height) * focal / p.z for p in people)
    return width, height, float(focal), float(horizon), camera_height


def _closeup_fits(scene: Scene) -> bool:
    """Every face whole in the frame, shoulders at most a little outside, the knees below it (no
    whole bodies), and no face hidden by a nearer person."""
    w, h = scene.width, scene.height
    for p in scene.people:
        hx0, hy0, hx1, hy1 = head_box(scene, p)
        cx, foot, ph, pw = project(scene, p)
        if hx0 < 0.01 * w or hx1 > 0.99 * w or hy0 < 0.01 * h or hy1 > 0.85 * h or foot - 0.3 * ph < h:
            return False
        if cx - 0.45 * pw < -0.02 * w or cx + 0.45 * pw > 1.02 * w:
            return False
    for a, b in combinations(scene.people, 2):
        far, near = (a, b) if a.z > b.z else (b, a)
        cx, foot, ph, _ = project(scene, near)
        half = reach(near) * ph / near.height
        torso = (cx - half, foot - ph + SHOULDER * ph, cx + half, foot)
        face = head_box(scene, far)
        if _covered(face, head_box(scene, near)) + _covered(face, torso) > 0.15:
            return False
    return True
