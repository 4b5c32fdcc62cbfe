"""The synthetic dataset's sizes and difficulty knobs (`SyntheticConfig`) and its named presets.

`synthetic_config(preset, **knobs)` is the one way to get a checked configuration: a
preset of `SYNTHETIC_PRESETS` with any knob overridden.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mmhpn.errors import ConfigError


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes and difficulty knobs of a synthetic dataset (all exposed to `generate(**knobs)`)."""

    num_train_ids: int
    num_test_ids: int
    train_images_per_id: float  # mean over identities
    gallery_images_per_id: float  # mean over test identities, queries not included
    num_distractors: int  # gallery images with id 0000 (other people, bad detections)
    num_junk: int  # gallery images with id -1 (the loader drops them)
    gt_bbox_per_query: int = 2  # well-aligned extra images per query (identity, camera)
    num_cameras: int = 6
    min_cameras_per_id: int = 2  # >= 2, so every query has a match in another camera
    lookalike_fraction: float = 0.6  # look-alike groups per draw: fraction / 2.5 (0.6: ~45% of identities in one)
    position_lookalike_share: float = 0.6  # share of look-alike variants that differ only in WHERE parts are
    identity_stream: int = 0  # identities are drawn from random stream (seed, stream): other streams share none
    occlusion: float = 1.0  # multiplies each camera's occlusion probability
    camera_variation: float = 1.0  # scales illumination / colour-cast differences, noise and box jitter
    height: int = 128
    width: int = 64
    jpeg_quality: int = 92
    # What the images show: "person" (the re-ID benchmark) or "object" (procedurally drawn
    # objects whose "identities" are object classes, `mmhpn.data.synthetic.objects`: a
    # pretraining task that is not re-ID). Left out of the completion marker at "person"
    # (`writer`), so datasets drawn before the field existed are still recognised.
    subject: str = "person"

    def validate(self) -> None:
        if self.num_train_ids < 1 or self.num_test_ids < 1:
            raise ConfigError("num_train_ids and num_test_ids must be >= 1")
        if not 2 <= self.min_cameras_per_id <= self.num_cameras <= 9:
            raise ConfigError("need 2 <= min_cameras_per_id <= num_cameras <= 9 (one-digit camera ids)")
        if self.num_train_ids + self.num_test_ids + 1 > 9999:
            raise ConfigError("at most 9998 identities (4-digit Market ids)")
        if self.train_images_per_id < 1 or self.gallery_images_per_id < 1:
            raise ConfigError("train_images_per_id and gallery_images_per_id must be >= 1")
        if min(self.num_distractors, self.num_junk, self.gt_bbox_per_query) < 0:
            raise ConfigError("num_distractors, num_junk and gt_bbox_per_query must be >= 0")
        if not 0.0 <= self.lookalike_fraction <= 1.0 or self.occlusion < 0 or self.camera_variation < 0:
            raise ConfigError("lookalike_fraction must be in [0, 1], occlusion and camera_variation >= 0")
        if not 0.0 <= self.position_lookalike_share <= 1.0:
            raise ConfigError("position_lookalike_share must be in [0, 1]")
        if self.identity_stream < 0:
            raise ConfigError("identity_stream must be >= 0")
        if self.height < 32 or self.width < 16:
            raise ConfigError("images must be at least 32x16")
        if self.subject not in SUBJECTS:
            raise ConfigError(f"subject must be one of {list(SUBJECTS)}, got {self.subject!r}")
        # what only an object set needs is checked by mmhpn.data.synthetic.objects.check_object_set


SUBJECTS = ("person", "object")


SYNTHETIC_PRESETS: dict[str, SyntheticConfig] = {
    # A few seconds: unit tests and smoke runs.
    "tiny": SyntheticConfig(num_train_ids=16, num_test_ids=16, train_images_per_id=6,
                            gallery_images_per_id=5, num_distractors=12, num_junk=8,
                            gt_bbox_per_query=1),
    # Sized for the CPU book; the book may override any knob. 300 training identities (the
    # paper has 751) so that each of 15 stripe classifiers sees hundreds of classes and many
    # look-alike groups, at ~10 images per identity (~3,000 images: 2.5x the former 1,180, so
    # an epoch costs 2.5x); 300 test identities (~1,350 queries) so that a comparison's
    # measurement noise shrinks, with a gallery of ~6 images per identity to keep evaluation cheap.
    "demo": SyntheticConfig(num_train_ids=300, num_test_ids=300, train_images_per_id=10,
                            gallery_images_per_id=6, num_distractors=300, num_junk=100,
                            gt_bbox_per_query=1),
    # A larger set for pretraining a trunk (a stand-in for ImageNet pretraining): its
    # identities come from another random stream, so none of them is a demo (or tiny, or
    # market-sized) identity of the same seed - `check_disjoint_identities` verifies it. Its
    # small test split only checks the pretrained trunk; fine-tuned rows are scored on demo.
    "pretrain": SyntheticConfig(num_train_ids=1000, num_test_ids=50, train_images_per_id=10,
                                gallery_images_per_id=5, num_distractors=50, num_junk=0,
                                gt_bbox_per_query=0, identity_stream=1),
    # The smoke profile's pretraining set: the tiny preset's size, drawn like "pretrain" from
    # another identity stream (no identity of the tiny test split).
    "tiny-pretrain": SyntheticConfig(num_train_ids=24, num_test_ids=8, train_images_per_id=6,
                                     gallery_images_per_id=3, num_distractors=4, num_junk=0,
                                     gt_bbox_per_query=0, identity_stream=1),
    # Market-1501's split sizes: 751 / 750 ids, ~12.9k train, ~3.4k query, ~15.9k gallery
    # (13.1k identity images + 2.8k distractors), plus 3.8k junk as in Market.
    "market-sized": SyntheticConfig(num_train_ids=751, num_test_ids=750, train_images_per_id=17.2,
                                    gallery_images_per_id=17.5, num_distractors=2798, num_junk=3819,
                                    gt_bbox_per_query=2),
    # The tiny preset with twice the training identities (the same test split's size): the smoke
    # version of the proxy study's "more training identities" (`mmhpn.paper.proxy`).
    "tiny-more-ids": SyntheticConfig(num_train_ids=32, num_test_ids=16, train_images_per_id=6,
                                     gallery_images_per_id=5, num_distractors=12, num_junk=8,
                                     gt_bbox_per_query=1),
    # Procedurally drawn objects, not people (`mmhpn.data.synthetic.objects`): a pretraining
    # task that is not re-ID, the proxy study's stand-in for ImageNet's being another task.
    # 80 of the 100 object classes to classify (~10,000 images, the size of the "pretrain"
    # set), 20 others only to check the trunk by retrieval; no person is drawn.
    "objects": SyntheticConfig(num_train_ids=80, num_test_ids=20, train_images_per_id=125,
                               gallery_images_per_id=10, num_distractors=0, num_junk=0, gt_bbox_per_query=0,
                               subject="object"),
    # Its smoke version: the tiny-pretrain preset's size.
    "tiny-objects": SyntheticConfig(num_train_ids=24, num_test_ids=8, train_images_per_id=6,
                                    gallery_images_per_id=3, num_distractors=0, num_junk=0, gt_bbox_per_query=0,
                                    subject="object"),
}


def synthetic_config(preset: str = "demo", **knobs) -> SyntheticConfig:
    """The preset's configuration with `knobs` overriding its fields."""
    if preset not in SYNTHETIC_PRESETS:
        raise ConfigError(f"unknown synthetic preset {preset!r}; known: {', '.join(SYNTHETIC_PRESETS)}")
    fields = {f.name for f in dataclasses.fields(SyntheticConfig)}
    unknown = sorted(set(knobs) - fields)
    if unknown:
        raise ConfigError(f"unknown synthetic knob(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    config = dataclasses.replace(SYNTHETIC_PRESETS[preset], **knobs)
    config.validate()
    return config
