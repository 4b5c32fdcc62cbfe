"""Checks of a dataset's files and splits that must fail before training starts, in one line each.

`check_training_data(dataset)` is what `mmhpn.data.load_data` runs on the dataset a
training configuration names, before any run folder is written:

- every image of every split it uses (train, query, gallery, multi-query; junk is never
  read) is a non-empty file whose image header Pillow can read, and not larger than
  Pillow's decompression-bomb limit (`check_image_files`): a zero-byte query image is
  found here instead of at the first evaluation, after a full epoch;
- the training split holds at least two identities: with one, every classifier's loss is
  0 and the scores it reports mean nothing.

Only headers are read (about 0.1 ms an image); an image whose data is truncated past its
header is still named when it is decoded (`mmhpn.data.pipeline.decode_image`), and
`check_image_files(paths, decode=True)` (``load_dataset(..., verify_images=True)``) decodes
every image fully instead. Images found sound are remembered by (path, size, modification
time), so the rows a notebook trains one after another pay the reading only once.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Sequence

from PIL import Image

from mmhpn.errors import DatasetError

if TYPE_CHECKING:  # only for annotations: mmhpn.data.market imports this module
    from mmhpn.data.market import ReIDDataset

MIN_TRAIN_IDENTITIES = 2

# path -> (size, modification time in ns) of image files whose header was read without fault.
_SOUND_HEADERS: dict[str, tuple[int, int]] = {}


def first_few(items: Sequence[str], limit: int = 5, separator: str = ", ") -> str:
    """The first `limit` of `items` and how many more there are, for a one-line message."""
    more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
    return f"{separator.join(items[:limit])}{more}"


def image_file_problem(path: str, decode: bool = False) -> str | None:
    """What is wrong with the image file at `path` (a short phrase), or None when it is usable.

    Reads its header only, or decodes it fully with `decode=True`.
    """
    try:
        stat = os.stat(path)
    except OSError as err:  # missing, a symbolic link loop, no permission
        return err.strerror or type(err).__name__
    if stat.st_size == 0:
        return "empty file: 0 bytes"
    stamp = (stat.st_size, stat.st_mtime_ns)
    if not decode and _SOUND_HEADERS.get(path) == stamp:
        return None
    try:
        with Image.open(path) as image:
            if decode:
                image.load()
    except Image.DecompressionBombError as err:
        return f"too many pixels for Pillow's decompression-bomb limit ({err})"
    except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for unreadable/corrupt/truncated files
        return f"{type(err).__name__}: {err}"
    if not decode:
        _SOUND_HEADERS[path] = stamp
    return None


def check_image_files(paths: Sequence[str], decode: bool = False) -> None:
    """Raise one `DatasetError` naming the first unusable images of `paths` (see `image_file_problem`)."""
    bad = []
    for path in paths:
        problem = image_file_problem(path, decode=decode)
        if problem is not None:
            bad.append(f"{path} ({problem})")
    if bad:
        raise DatasetError(f"{len(bad)} unreadable or corrupt image(s): {first_few(bad, separator='; ')}; "
                           "expected non-empty JPEG, PNG or BMP person crops: replace or remove them")


def check_training_data(dataset: ReIDDataset) -> None:
    """Refuse, in one `DatasetError`, a dataset that cannot train: too few identities, unusable images."""
    if dataset.num_train_pids < MIN_TRAIN_IDENTITIES:
        ids = ", ".join(str(pid) for pid in sorted(dataset.train_pid_map))
        raise DatasetError(
            f"the training split of {dataset.name} at {dataset.root} holds {dataset.num_train_pids} identity "
            f"(id {ids}); training needs at least {MIN_TRAIN_IDENTITIES} identities (with one, every "
            "classifier's loss is 0 and the scores it reports mean nothing)"
        )
    check_image_files([r.path for split in (dataset.train, dataset.query, dataset.gallery, dataset.multi_query)
                       for r in split])
