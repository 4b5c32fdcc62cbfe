"""The plan of a synthetic dataset: who appears in which image, seen by which camera, under which name.

`make_plan(config, seed)` draws the cameras, the identities (from their own random stream,
`SyntheticConfig.identity_stream`; object classes for an object set, `mmhpn.data.synthetic.objects`), the train/test split of Market-style ids and every
image job; `render_job` draws one job's image from its own random generator (seed, image
number), so images can be drawn in any order and by any number of processes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from mmhpn.data.synthetic.cameras import make_cameras
from mmhpn.data.synthetic.identities import make_identities, random_identity
from mmhpn.data.synthetic.objects import object_classes, render_object
from mmhpn.data.synthetic.presets import SyntheticConfig
from mmhpn.data.synthetic.render import render_image
from mmhpn.errors import ConfigError


@dataclass
class Plan:
    """Everything needed to draw a dataset's images: its configuration, people, cameras and jobs."""

    config: SyntheticConfig
    seed: int
    identities: dict  # pid -> Identity (train, test, and one per distractor image)
    cameras: list
    jobs: list  # (relative path, pid, identity key, camera index, kind)
    train_pids: list = field(default_factory=list)
    test_pids: list = field(default_factory=list)


def _cameras_for(rng: np.random.Generator, config: SyntheticConfig) -> np.ndarray:
    """A random set of cameras for one identity, Market-like: mostly 4-6 of 6."""
    ks = np.arange(config.min_cameras_per_id, config.num_cameras + 1)
    weights = (ks - config.min_cameras_per_id + 1.0) ** 0.75  # 6 cameras: 4.5 on average, as Market
    k = int(rng.choice(ks, p=weights / weights.sum()))
    return np.sort(rng.choice(config.num_cameras, size=k, replace=False))


def _spread(rng: np.random.Generator, total: int, cams: np.ndarray) -> dict:
    """`total` images over the cameras `cams`, at least one per camera."""
    counts = {int(c): 1 for c in cams}
    for c in rng.choice(cams, size=max(0, total - len(cams))):
        counts[int(c)] += 1
    return counts


def make_plan(config: SyntheticConfig, seed: int) -> Plan:
    """The plan of the dataset `config` draws with `seed` (drawn from fixed random streams of `seed`)."""
    rng = np.random.default_rng([seed, 0])
    cameras = make_cameras(np.random.default_rng([seed, 1]), config)
    # Identities (and distractors) come from their own stream: another identity_stream draws
    # other people with the same cameras (the pretrain preset).
    id_rng = np.random.default_rng([seed, 2, config.identity_stream])
    if config.subject == "object":  # object classes in the identities' roles (no distractors or junk)
        train_ids, test_ids = object_classes(id_rng, config)
    else:
        train_ids = make_identities(id_rng, config.num_train_ids, config.lookalike_fraction,
                                    position_share=config.position_lookalike_share)
        test_ids = make_identities(id_rng, config.num_test_ids, config.lookalike_fraction, first_group=10_000,
                                   position_share=config.position_lookalike_share)

    # Market-style ids: train and test interleaved in 0001..N, never the same person in both.
    total = config.num_train_ids + config.num_test_ids
    pids = rng.permutation(np.arange(1, total + 1))
    train_pids = sorted(int(p) for p in pids[:config.num_train_ids])
    test_pids = sorted(int(p) for p in pids[config.num_train_ids:])
    order = rng.permutation(len(train_ids))  # look-alike groups get scattered ids
    identities = {pid: train_ids[order[i]] for i, pid in enumerate(train_pids)}
    order = rng.permutation(len(test_ids))
    identities.update({pid: test_ids[order[i]] for i, pid in enumerate(test_pids)})

    frames = [int(v) for v in rng.integers(100, 5000, size=config.num_cameras)]  # per-camera clock
    jobs = []

    def name(pid: int, cam: int, box: int) -> str:
        frame = frames[cam]
        frames[cam] += int(rng.integers(1, 40))
        seq = 1 + frame // 200_000
        return f"{pid:04d}_c{cam + 1}s{seq}_{frame:06d}_{box:02d}.jpg" if pid >= 0 else \
            f"{pid}_c{cam + 1}s{seq}_{frame:06d}_{box:02d}.jpg"

    for pid in train_pids:
        cams = _cameras_for(rng, config)
        n = max(len(cams), int(rng.poisson(config.train_images_per_id - 1)) + 1)
        for cam, count in _spread(rng, n, cams).items():
            for _ in range(count):
                jobs.append((f"bounding_box_train/{name(pid, cam, 1)}", pid, pid, cam, "person"))
    for pid in test_pids:
        cams = _cameras_for(rng, config)
        for cam in cams:  # one query per camera the person appears in, as in Market-1501
            cam = int(cam)
            jobs.append((f"query/{name(pid, cam, 0)}", pid, pid, cam, "person"))
            for _ in range(config.gt_bbox_per_query):
                jobs.append((f"gt_bbox/{name(pid, cam, 0)}", pid, pid, cam, "gt"))
        n = max(len(cams), int(rng.poisson(config.gallery_images_per_id - 1)) + 1)
        for cam, count in _spread(rng, n, cams).items():
            for _ in range(count):
                jobs.append((f"bounding_box_test/{name(pid, cam, 1)}", pid, pid, cam, "person"))
    # Distractors: people who are neither query nor training identities (id 0000).
    for k in range(config.num_distractors):
        key = f"distractor-{k}"
        identities[key] = random_identity(id_rng)
        cam = int(rng.integers(config.num_cameras))
        jobs.append((f"bounding_box_test/{name(0, cam, 2)}", 0, key, cam, "distractor"))
    # Junk: fragments of test identities (id -1), which the protocol ignores.
    for k in range(config.num_junk):
        pid = test_pids[int(rng.integers(len(test_pids)))]
        cam = int(rng.integers(config.num_cameras))
        jobs.append((f"bounding_box_test/{name(-1, cam, 3)}", -1, pid, cam, "junk"))
    return Plan(config=config, seed=seed, identities=identities, cameras=cameras, jobs=jobs,
                train_pids=train_pids, test_pids=test_pids)


def render_job(plan: Plan, index: int, info: dict | None = None) -> Image.Image:
    """The image of job `index` (`info`: see `render_image`; a person's, so not for an object set)."""
    path, pid, key, cam, kind = plan.jobs[index]
    rng = np.random.default_rng([plan.seed, 3, index])
    if plan.config.subject == "object":
        if info is not None:
            raise ConfigError("render info describes a person; this plan draws objects")
        return render_object(plan.identities[key], plan.cameras[cam], rng, plan.config)
    return render_image(plan.identities[key], plan.cameras[cam], rng, plan.config, kind, info=info)

