"""Synthetic 5K photos in the official Zalo layout: the offline default dataset.

Every image is drawn from a `Scene`: a pinhole camera looking at people standing on a
ground plane in front of a textured background. Two profiles frame them differently:

- `closeup` (the demo's default): head-and-shoulders shots of 1-3 adults side by side at
  1.5-2.6 m, so faces take a real share of the frame (a face is about a quarter of the longer
  side, 14-48%) and distancing is read from the gaps between the shoulders. From scratch on a
  CPU, the EfficientNets learn its distancing and 5K labels in minutes.
- `realistic`: 1-6 people seen whole, head to feet, at 2.5-12 m, as in street and CCTV
  photos; a head is 4-10% of the image height. Made for experiments with pretrained weights
  and larger images (about 6 px high after a 96 px letterbox, 25 px at 384 px).

Labels are a function of the scene alone:

- `mask` = 1 when every person wears a mask over the nose (below-nose and chin masks count as none);
- `distancing` = 1 when every pair stands at least `SAFE_WIDTHS` mean shoulder widths apart on
  the ground (centre to centre), i.e. leaves a gap of about 1.5 bodies; one person keeps distance.

Target labels are drawn first, with the balance of the real training file, and a scene is built
to satisfy them; the labels are then recomputed from the scene as a check. Each image has its
own seed derived from (seed, split, index), so the output does not depend on the worker count.

The package by role, lowest first (each imports only those before it):

- `scene`: `Scene` and its parts, to and from scenes.jsonl, and the camera's geometry;
- `labels`: the label rules, the official balance and blank rates, `blank_labels`;
- `sampling`: people, backgrounds, photo settings and colours, alike in both profiles;
- `profiles`: the two framings and `sample_scene`;
- `render`: a scene drawn as a photo;
- `writer`: `generate_dataset` and `ensure_dataset`, the official layout on disk.

Every name below is importable from `fivek_utils.data.synth` as before the split.
"""

from .labels import (
    AMBIGUOUS_BAND,
    DISTANCING_BLANK_RATE,
    LABELS,
    MASK_BLANK_RATE,
    MASK_STATES,
    MIN_SEP_WIDTHS,
    PAIR_COUNTS,
    SAFE_WIDTHS,
    blank_labels,
    ground_distance,
    safe_distance,
    scene_labels,
    wears_mask,
)
from .profiles import (
    CLOSEUP_COUNTS,
    CLOSEUP_DEPTH,
    CLOSEUP_RATIOS,
    CLOSEUP_SPAN,
    DEFAULT_PROFILE,
    MAX_ASPECT,
    PROFILES,
    check_profile,
    sample_scene,
)
from .render import (
    EYE_Y,
    MASK_SPAN,
    MOUTH_Y,
    NOSE_TIP,
    NOSE_TOP,
    SS,
    draw_person,
    draw_prop,
    finish_photo,
    paint_background,
    render_scene,
)
from .sampling import (
    HAIR_COLOURS,
    HAIR_STYLES,
    MASK_COLOURS,
    MASK_STYLES,
    OFFENDER_RATES,
    OFFENDERS,
    SKIN_TONES,
    sample_background,
    sample_person,
    sample_photo,
)
from .scene import (
    HEAD_H,
    HEAD_W,
    RGB,
    SHOULDER,
    Background,
    Box,
    Person,
    Prop,
    Scene,
    body_box,
    face_heights,
    head_box,
    project,
    reach,
    scene_from_dict,
)
from .writer import GENERATOR, MANIFEST, META_FILES, SPLITS, VERSION, ensure_dataset, generate_dataset, summarize_split

__all__ = [
    "AMBIGUOUS_BAND", "CLOSEUP_COUNTS", "CLOSEUP_DEPTH", "CLOSEUP_RATIOS", "CLOSEUP_SPAN", "DEFAULT_PROFILE",
    "DISTANCING_BLANK_RATE", "EYE_Y", "GENERATOR", "HAIR_COLOURS", "HAIR_STYLES", "HEAD_H", "HEAD_W", "LABELS",
    "MANIFEST", "MASK_BLANK_RATE", "MASK_COLOURS", "MASK_SPAN", "MASK_STATES", "MASK_STYLES", "MAX_ASPECT",
    "META_FILES", "MIN_SEP_WIDTHS", "MOUTH_Y", "NOSE_TIP", "NOSE_TOP", "OFFENDERS", "OFFENDER_RATES", "PAIR_COUNTS",
    "PROFILES", "RGB", "SAFE_WIDTHS", "SHOULDER", "SKIN_TONES", "SPLITS", "SS", "VERSION", "Background", "Box",
    "Person", "Prop", "Scene", "blank_labels", "body_box", "check_profile", "draw_person", "draw_prop",
    "ensure_dataset", "face_heights", "finish_photo", "generate_dataset", "ground_distance", "head_box",
    "paint_background", "project", "reach", "render_scene", "safe_distance", "sample_background", "sample_person",
    "sample_photo", "sample_scene", "scene_from_dict", "scene_labels", "summarize_split", "wears_mask",
]
