"""The synthetic pedestrian re-ID benchmark: procedural generator, presets and the on-disk cache.

This package owns drawing pedestrians and writing them as a Market-1501-layout dataset
(``bounding_box_train/``, ``bounding_box_test/``, ``query/``, ``gt_bbox/``, Market file names),
so that `mmhpn.data.market.load_market_layout` reads it like the real thing.

What makes it a re-ID problem rather than a colour-matching one:

- identities are combinations of attributes placed at different body heights: hair or hat
  (top), upper garment colour and pattern (torso), lower garment type and colour (legs),
  shoes (bottom), bag / backpack and the side it is carried on, body build and height;
- "look-alike" groups: identities that copy a base identity and differ in ONE thing. Either
  WHAT one local part is (hair/hat, shoes, lower garment, bag, or the pattern of the upper
  garment: a small change of colour mass, which a global descriptor barely sees), or only
  WHERE parts are, with exactly the same colours (upper and lower garment colours swapped,
  the two halves of a colour-block top swapped, a coloured band moved within its garment):
  a global (orderless) descriptor cannot separate those at all, a horizontally striped one
  can, the finer the stripes the smaller the displacement it resolves;
- small details (a narrow coloured band at one of four heights, a chest logo, shoes, a cap);
- cameras differ in background, illumination and colour cast, person scale and vertical
  misalignment of the box (detector jitter), viewpoint (front / back / side: a logo or an open
  jacket is seen only from the front, a backpack mostly from the back), resolution (blur),
  sensor noise, and partial occlusion (parked objects, poles, passers-by) that hides parts.

Determinism: every image is drawn from its own random generator seeded by (seed, image
number), and JPEGs are written with fixed settings, so the same seed gives byte-identical
files (with the same Pillow/libjpeg build), whatever the number of worker processes.

Modules, one job each:

- `presets`: `SyntheticConfig` (sizes, difficulty knobs), `SYNTHETIC_PRESETS` and
  `synthetic_config(preset, **knobs)`, the one way to get a checked configuration;
- `identities`: attribute palettes, `Identity`, look-alike groups (`make_identities`);
- `cameras`: `Camera` and `make_cameras` (scene, light, noise, scale, views, occlusion);
- `drawing`: `draw_person`, one pedestrian drawn part by part;
- `render`: `render_image`, one bounding-box image (person, occluders, camera effects);
- `planning`: `make_plan` (who appears in which image, from which camera, under which
  file name) and `render_job`;
- `writer`: `generate`, `ensure_synthetic`, the completion marker and `FORMAT_VERSION`;
- `disjoint`: `check_disjoint_identities`, pretraining people never in a test split (by
  attributes: `nearest_people`);
- `objects`: procedurally drawn objects whose classes take the identities' place (presets
  ``objects``, ``tiny-objects``: `SyntheticConfig.subject` ``"object"``), a pretraining task
  that is not re-ID; no person is drawn.

`ensure_synthetic(root, preset, seed)` generates only when ``root/SYNTHETIC_COMPLETE.json``
is absent; `generate` writes into a temporary sibling folder and renames it into place
after the marker file is written, so a half-written dataset is never taken for a finished one.
"""
from mmhpn.data.synthetic.cameras import VIEWS, Camera, make_cameras
from mmhpn.data.synthetic.disjoint import check_disjoint_identities, nearest_people
from mmhpn.data.synthetic.drawing import draw_person
from mmhpn.data.synthetic.identities import (LOOKALIKE_PARTS, POSITION_PARTS, Identity, appearance,
                                             make_identities, random_identity)
from mmhpn.data.synthetic.objects import OBJECT_CLASSES, render_object
from mmhpn.data.synthetic.planning import Plan, make_plan, render_job
from mmhpn.data.synthetic.presets import SYNTHETIC_PRESETS, SyntheticConfig, synthetic_config
from mmhpn.data.synthetic.render import render_image
from mmhpn.data.synthetic.writer import (FORMAT_VERSION, MARKER_NAME, SYNTHETIC_FORMAT_VERSION, ensure_synthetic,
                                         generate, is_complete, read_marker)

__all__ = [
    "Camera",
    "FORMAT_VERSION",
    "Identity",
    "LOOKALIKE_PARTS",
    "MARKER_NAME",
    "OBJECT_CLASSES",
    "POSITION_PARTS",
    "Plan",
    "SYNTHETIC_FORMAT_VERSION",
    "SYNTHETIC_PRESETS",
    "SyntheticConfig",
    "VIEWS",
    "appearance",
    "check_disjoint_identities",
    "nearest_people",
    "draw_person",
    "ensure_synthetic",
    "generate",
    "is_complete",
    "make_cameras",
    "make_identities",
    "make_plan",
    "random_identity",
    "read_marker",
    "render_image",
    "render_job",
    "render_object",
    "synthetic_config",
]
