"""Market-1501-layout datasets: the one file-name parser and the registry of named datasets.

`load_dataset(name, root)` opens a dataset by registry name; `load_data(config)` opens the
one a training configuration names.

This module owns reading a re-ID dataset folder into lists of `ImageRecord`s, exactly as the
community's PyTorch toolboxes (open-reid, torchreid, fast-reid) do, and nothing else: no image
is decoded here (see `mmhpn.data.pipeline`); `load_data` hands the dataset it returns to the
checks of `mmhpn.data.checks` (identities, image headers) before anything trains on it.

Layout (Market-1501 and every dataset released in its format)::

    ROOT/
      bounding_box_train/   training images
      bounding_box_test/    gallery images (with distractors 0000 and junk -1)
      query/                query images
      gt_bbox/              optional: hand-drawn boxes, Market's multiple-query setting

File names start with ``PPPP_cC``: ``0002_c1s1_000451_03.jpg`` is person 2 seen by camera 1
(Market), ``0001_c2_f0046182.jpg`` (DukeMTMC-reID), ``0003_c1_22.png`` (CUHK03-NP).

Conventions (those of the toolboxes, so that numbers are comparable):

- training person ids are relabelled to 0..N-1 in increasing order of the original id;
  query / gallery / multi-query records keep the original id (the protocol compares them);
- junk images (id -1) are dropped from every split, and counted in `dataset.dropped`;
- distractors (id 0, "0000") are kept in the gallery as negatives (dropped, and counted,
  from train and query where they carry no identity);
- camera ids are 0-based: ``c1`` -> 0, ``c6`` -> 5;
- files that are not images (the ``Thumbs.db`` shipped in the Market-1501 archive) are ignored;
  an image whose name does not parse is an error, never silently skipped.
"""
from __future__ import annotations

import errno
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple

import numpy as np
import pandas as pd

from mmhpn.data.checks import check_image_files, check_training_data, first_few
from mmhpn.errors import ConfigError, DatasetError

if TYPE_CHECKING:  # the data layer reads a configuration's fields, it does not import the config layer
    from mmhpn.config import TrainConfig

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
SPLIT_FOLDERS = {
    "train": "bounding_box_train",
    "gallery": "bounding_box_test",
    "query": "query",
}
MULTI_QUERY_FOLDER = "gt_bbox"
JUNK_PID = -1
DISTRACTOR_PID = 0

# "0002_c1s1_000451_03.jpg", "-1_c3s2_...", "0001_c2_f0046182.jpg": id, then camera number.
_NAME_PATTERN = re.compile(r"^(-?\d+)_c(\d+)")

_LAYOUT_HELP = (
    "expected a Market-1501-style folder with subfolders bounding_box_train/, "
    "bounding_box_test/, query/ (and optionally gt_bbox/), holding images named like "
    "0002_c1s1_000451_03.jpg (person id, then camera number)"
)


class ImageRecord(NamedTuple):
    """One image of a re-ID dataset: file path, person id and 0-based camera id."""

    path: str
    pid: int
    camid: int


@dataclass
class ReIDDataset:
    """A re-ID dataset split into train / query / gallery (and optional multi-query) records.

    `train` pids are relabelled 0..num_train_pids-1 (`train_pid_map` maps original -> label);
    the test splits keep the original ids. `dropped` counts what the conventions removed.
    """

    name: str
    root: str
    train: list[ImageRecord]
    query: list[ImageRecord]
    gallery: list[ImageRecord]
    multi_query: list[ImageRecord] = field(default_factory=list)
    train_pid_map: dict[int, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def num_train_pids(self) -> int:
        return len(self.train_pid_map)

    @property
    def num_cameras(self) -> int:
        return len({r.camid for split in (self.train, self.query, self.gallery) for r in split})

    def statistics(self) -> pd.DataFrame:
        """Identities, images and cameras per split, as in the papers' dataset tables.

        `ids` does not count the distractor id 0; distractor images are counted in `images`
        and, separately, in the `distractors` column.
        """
        splits = {"train": self.train, "query": self.query, "gallery": self.gallery}
        if self.multi_query:
            splits["multi_query"] = self.multi_query
        rows = {}
        for split, records in splits.items():
            pids = {r.pid for r in records}
            rows[split] = {
                "ids": len(pids - {DISTRACTOR_PID}) if split != "train" else len(pids),
                "images": len(records),
                "cameras": len({r.camid for r in records}),
                "distractors": sum(r.pid == DISTRACTOR_PID for r in records) if split != "train" else 0,
            }
        table = pd.DataFrame.from_dict(rows, orient="index")
        table.index.name = self.name
        return table

    def summary(self) -> str:
        """The statistics table plus what the conventions dropped, as printable text."""
        lines = [f"{self.name} at {self.root}", self.statistics().to_string()]
        if any(self.dropped.values()):
            dropped = ", ".join(f"{k}: {v}" for k, v in sorted(self.dropped.items()) if v)
            lines.append(f"dropped by convention (junk -1, distractors outside the gallery): {dropped}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"ReIDDataset(name={self.name!r}, train={len(self.train)} images/{self.num_train_pids} ids, "
            f"query={len(self.query)}, gallery={len(self.gallery)}, multi_query={len(self.multi_query)})"
        )


def parse_image_name(name: str) -> tuple[int, int] | None:
    """(person id, 0-based camera id) from a Market-style file name, or None if it does not parse."""
    match = _NAME_PATTERN.match(name)
    if match is None:
        return None
    pid, cam = int(match.group(1)), int(match.group(2))
    if cam < 1 or pid < JUNK_PID:
        return None
    return pid, cam - 1


def _is_link_loop(path: str | os.PathLike) -> bool:
    """Whether `path` is a symbolic link that leads back to itself (Path.is_dir() just says False)."""
    try:
        os.stat(path)
    except OSError as err:
        return err.errno == errno.ELOOP
    return False


def _link_loop_error(paths: list[str]) -> DatasetError:
    return DatasetError(f"{len(paths)} symbolic link loop(s) in the dataset: {first_few(paths)} (each link leads "
                        "back to itself); replace each with the file or folder it should point to, or remove it")


def read_split_folder(folder: Path) -> list[ImageRecord]:
    """All images of one split folder as records with their original ids (junk included).

    Sorted by file name so the order never depends on the file system.
    """
    if not folder.is_dir():
        raise DatasetError(f"missing split folder {folder}; {_LAYOUT_HELP}")
    records, unparsable, loops, broken = [], [], [], []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        is_image = entry.name.lower().endswith(IMAGE_EXTENSIONS)
        try:
            is_file = entry.is_file()
        except OSError as err:  # is_file() follows links: a loop raises ELOOP
            if err.errno != errno.ELOOP:
                raise DatasetError(f"cannot read {entry.path}: {err.strerror}") from None
            loops.append(entry.path)
            continue
        if is_image and not is_file and entry.is_symlink() and not os.path.exists(entry.path):
            broken.append(entry.path)  # an image that is not there: never silently left out
            continue
        if not is_file or not is_image:
            continue  # Thumbs.db, .DS_Store, readme files: not images
        parsed = parse_image_name(entry.name)
        if parsed is None:
            unparsable.append(entry.name)
            continue
        records.append(ImageRecord(os.path.join(str(folder), entry.name), parsed[0], parsed[1]))
    if loops:
        raise _link_loop_error(loops)
    if broken:
        raise DatasetError(f"{len(broken)} broken symbolic link(s) in {folder}: {first_few(broken)} (the file each "
                           "points to does not exist); restore the images they point to, or remove the links")
    if unparsable:
        raise DatasetError(
            f"{len(unparsable)} image file name(s) in {folder} do not parse: {first_few(unparsable)}; "
            "expected names like 0002_c1s1_000451_03.jpg (person id, '_c', camera number >= 1)"
        )
    return records


def load_market_layout(
    root: str | os.PathLike,
    name: str = "market-layout",
    verify_images: bool = False,
    warn_unmatched: bool = True,
) -> ReIDDataset:
    """Read a Market-1501-layout folder (see the module docstring) into a `ReIDDataset`.

    `verify_images=True` decodes every image once and raises `DatasetError` naming the corrupt
    ones (slow on real datasets; by default `load_data` reads every image's header before
    training, and an image corrupt past its header is reported when it is decoded).
    A symbolic link loop (the root, a split folder or a file) is a `DatasetError` naming it.
    A query identity with no gallery image from another camera cannot be scored by the
    protocol; their count is reported with `warnings.warn` (`warn_unmatched=False` silences it).
    """
    root_path = Path(root)
    loops = [str(root_path)] if _is_link_loop(root_path) else \
        [str(root_path / f) for f in (*SPLIT_FOLDERS.values(), MULTI_QUERY_FOLDER) if _is_link_loop(root_path / f)]
    if loops:
        raise _link_loop_error(loops)
    if not root_path.is_dir():
        raise DatasetError(f"dataset root {root_path} does not exist or is not a folder; {_LAYOUT_HELP}")
    missing = [folder for folder in SPLIT_FOLDERS.values() if not (root_path / folder).is_dir()]
    if missing:
        raise DatasetError(f"dataset root {root_path} lacks the split folder(s) {', '.join(missing)}/; {_LAYOUT_HELP}")

    raw = {split: read_split_folder(root_path / folder) for split, folder in SPLIT_FOLDERS.items()}
    multi_folder = root_path / MULTI_QUERY_FOLDER
    raw_multi = read_split_folder(multi_folder) if multi_folder.is_dir() else []

    dropped: dict[str, int] = {}
    for split, records in raw.items():
        if not records:
            raise DatasetError(f"split folder {root_path / SPLIT_FOLDERS[split]} contains no images; {_LAYOUT_HELP}")
        dropped[f"{split}_junk"] = sum(r.pid == JUNK_PID for r in records)
        if split != "gallery":
            dropped[f"{split}_distractors"] = sum(r.pid == DISTRACTOR_PID for r in records)

    keep_gallery = [r for r in raw["gallery"] if r.pid != JUNK_PID]
    keep_query = [r for r in raw["query"] if r.pid not in (JUNK_PID, DISTRACTOR_PID)]
    keep_train = [r for r in raw["train"] if r.pid not in (JUNK_PID, DISTRACTOR_PID)]
    for split, kept in (("train", keep_train), ("query", keep_query), ("gallery", keep_gallery)):
        if not kept:
            raise DatasetError(
                f"split folder {root_path / SPLIT_FOLDERS[split]} holds only junk/distractor images "
                f"(ids -1 / 0000), no identity to use"
            )

    train_pid_map = {pid: label for label, pid in enumerate(sorted({r.pid for r in keep_train}))}
    train = [ImageRecord(r.path, train_pid_map[r.pid], r.camid) for r in keep_train]

    # Multiple query (Market's gt_bbox): the hand-drawn boxes of the query identities only;
    # gt_bbox also holds the training identities, which the protocol never uses.
    query_pids = {r.pid for r in keep_query}
    multi_query = [r for r in raw_multi if r.pid in query_pids]
    if raw_multi:
        dropped["multi_query_not_query_ids"] = len(raw_multi) - len(multi_query)

    dataset = ReIDDataset(
        name=name,
        root=str(root_path),
        train=train,
        query=keep_query,
        gallery=keep_gallery,
        multi_query=multi_query,
        train_pid_map=train_pid_map,
        dropped=dropped,
    )
    if warn_unmatched:
        unmatched = count_unmatched_queries(dataset.query, dataset.gallery)
        if unmatched:
            warnings.warn(
                f"{name}: {unmatched} of {len(dataset.query)} query images have no gallery image of the "
                "same identity from another camera; the evaluation protocol skips them",
                stacklevel=2,
            )
    if verify_images:
        check_image_files([r.path for split in (train, keep_query, keep_gallery, multi_query) for r in split],
                          decode=True)
    return dataset


def count_unmatched_queries(query: list[ImageRecord], gallery: list[ImageRecord]) -> int:
    """Query images whose identity has no gallery image from a different camera."""
    cameras_of: dict[int, set[int]] = {}
    for r in gallery:
        cameras_of.setdefault(r.pid, set()).add(r.camid)
    return sum(not (cameras_of.get(q.pid, set()) - {q.camid}) for q in query)


# --------------------------------------------------------------------------------------------
# Registry of named datasets.

def _find_root(root: str | os.PathLike, known_subfolders: tuple[str, ...]) -> Path:
    """`root` itself when it holds the splits, else the first known release folder inside it."""
    root_path = Path(root)
    if (root_path / SPLIT_FOLDERS["train"]).is_dir():
        return root_path
    for sub in known_subfolders:
        if (root_path / sub / SPLIT_FOLDERS["train"]).is_dir():
            return root_path / sub
    return root_path  # load_market_layout names what is missing


def _load_market1501(root, **opts) -> ReIDDataset:
    return load_market_layout(_find_root(root, ("Market-1501-v15.09.15", "Market-1501", "market1501")),
                              name="market1501", **opts)


def _load_duke(root, **opts) -> ReIDDataset:
    return load_market_layout(_find_root(root, ("DukeMTMC-reID", "dukemtmc-reid", "dukemtmcreid")),
                              name="dukemtmc-reid", **opts)


def _load_cuhk03_np(root, variant: str = "detected", **opts) -> ReIDDataset:
    """CUHK03-NP (Zhong et al.'s 767/700 split in Market format): ROOT/detected/ and ROOT/labeled/."""
    if variant not in ("detected", "labeled"):
        raise ConfigError(f"cuhk03-np variant must be 'detected' or 'labeled', got {variant!r}")
    root_path = Path(root)
    for base in (root_path, root_path / "cuhk03-np", root_path / "cuhk03_np"):
        if (base / variant).is_dir():
            return load_market_layout(base / variant, name=f"cuhk03-np-{variant}", **opts)
    raise DatasetError(
        f"cuhk03-np: no {variant}/ folder under {root_path}; expected ROOT/detected/ and ROOT/labeled/, "
        f"each a Market-style folder (bounding_box_train/, bounding_box_test/, query/)"
    )


def _load_synthetic(root, preset: str = "demo", seed: int = 0, generate: bool = True,
                    knobs: dict | None = None, **opts) -> ReIDDataset:
    """The synthetic benchmark; generated into `root` first when `generate` and it is missing."""
    from mmhpn.data.synthetic import ensure_synthetic, is_complete

    if generate:
        ensure_synthetic(root, preset=preset, seed=seed, **(knobs or {}))
    elif not is_complete(root):
        raise DatasetError(f"{root} holds no finished synthetic dataset; generate it with "
                           f"`mmhpn synth --preset {preset} --out {root} --seed {seed}`")
    return load_market_layout(root, name="synthetic", **opts)


DATASETS: dict[str, Callable[..., ReIDDataset]] = {
    "market1501": _load_market1501,
    "dukemtmc-reid": _load_duke,
    "cuhk03-np": _load_cuhk03_np,
    "synthetic": _load_synthetic,
}


def load_dataset(name: str, root: str | os.PathLike, **opts) -> ReIDDataset:
    """Load a dataset by registry name: market1501, dukemtmc-reid, cuhk03-np, synthetic.

    Options common to all: `verify_images`, `warn_unmatched` (see `load_market_layout`).
    cuhk03-np: `variant="detected"` (default, the paper's setting) or `"labeled"`.
    synthetic: `preset`, `seed`, `generate=True`, `knobs={...}` (see `mmhpn.data.synthetic`).
    """
    key = name.lower().replace("_", "-")
    aliases = {"market": "market1501", "market-1501": "market1501", "duke": "dukemtmc-reid",
               "dukemtmcreid": "dukemtmc-reid"}
    key = aliases.get(key, key)
    if key not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[key](root, **opts)


VALIDATION_SPLIT_SEED = 0


def split_validation(dataset: ReIDDataset, fraction: float, seed: int = VALIDATION_SPLIT_SEED) -> ReIDDataset:
    """Hold out `fraction` of the *training* identities as a validation query/gallery.

    The held-out identities (round(fraction * ids), drawn with `seed`) give, per identity
    and camera, one query image (the first by file name) and the rest to the gallery; the
    protocol excludes same-camera matches as usual, so an identity seen by one camera only
    has unscorable queries (counted by the protocol as skipped). The other identities are
    relabelled 0..N-1 and form the training split; query and gallery records keep the
    dataset's original ids (as a test split does). The dataset's test split (query, gallery,
    gt_bbox) is dropped from the result: settings chosen on this split never see it.

    The seed is fixed by default and independent of the training seed, so every run of a
    regime comparison (and every training seed) is scored on the same validation people.
    """
    pids = sorted({r.pid for r in dataset.train})
    held = int(round(fraction * len(pids)))
    if not 0.0 < fraction < 1.0 or held < 2 or len(pids) - held < 2:
        raise ConfigError(f"val_fraction {fraction} of {len(pids)} training identities holds out {held}; "
                          "expected at least 2 held-out and 2 remaining identities")
    rng = np.random.default_rng([seed, len(pids)])
    held_out = {pids[i] for i in rng.choice(len(pids), size=held, replace=False)}
    # Query and gallery keep the dataset's original ids, as a test split does.
    original_of = {label: original for original, label in dataset.train_pid_map.items()}
    query, gallery, seen = [], [], set()
    for record in sorted((r for r in dataset.train if r.pid in held_out), key=lambda r: r.path):
        key = (record.pid, record.camid)
        (gallery if key in seen else query).append(ImageRecord(record.path, original_of[record.pid], record.camid))
        seen.add(key)
    kept_pids = [pid for pid in pids if pid not in held_out]
    relabel = {pid: label for label, pid in enumerate(kept_pids)}
    train = [ImageRecord(r.path, relabel[r.pid], r.camid) for r in dataset.train if r.pid in relabel]
    return ReIDDataset(
        name=f"{dataset.name}-validation",
        root=dataset.root,
        train=train,
        query=query,
        gallery=gallery,
        train_pid_map={original_of[pid]: relabel[pid] for pid in kept_pids},
        dropped={**dataset.dropped, "validation_ids": held},
    )


def data_fields(config: TrainConfig) -> tuple:
    """The fields of `config` that `load_data` reads: two configurations that agree on them
    load the same dataset (the book's rows of one table read it once)."""
    return (config.dataset, config.data_root, config.synthetic_preset, config.synthetic_seed,
            getattr(config, "val_fraction", 0.0))


def load_data(config: TrainConfig) -> ReIDDataset:
    """The dataset of a training configuration (synthetic data is generated first if missing), checked.

    With ``config.val_fraction > 0`` the validation split of the training identities
    (`split_validation`) replaces the test split. The result has passed
    `mmhpn.data.checks.check_training_data` (two identities or more, every image it uses
    readable), so a dataset that cannot train fails here, before any run folder is written.
    """
    options: dict = {}
    if config.dataset == "synthetic":
        options.update(preset=config.synthetic_preset, seed=config.synthetic_seed)
    if getattr(config, "val_fraction", 0.0) > 0:
        options["warn_unmatched"] = False  # the test split's queries are not used
        dataset = split_validation(load_dataset(config.dataset, config.data_root, **options), config.val_fraction)
    else:
        dataset = load_dataset(config.dataset, config.data_root, **options)
    check_training_data(dataset)
    return dataset
