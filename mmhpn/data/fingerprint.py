"""Which images a dataset is: the image list that the run cache and the trunk cache key on.

`image_entries` lists, per record, the image's file name and size, its identity and camera
(and, where asked, its modification time); `dataset_fingerprint` hashes every split's
entries. Two folders holding the same files for the same people and cameras give the same
fingerprint wherever they are (a copy, another ``data_root``); a folder with another image
list, another labelling or an image of another size gives another one.

* `mmhpn.runs` records a run's fingerprint in its ``FINISHED`` marker and never serves a
  finished run for data whose fingerprint differs (``data_root`` is not in the run hash).
* `mmhpn.trunk_cache` keys the stored layer3 maps on `image_entries` with the modification
  time too: the maps depend on the pixels, which an edit of the same size would change.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Sequence

SPLITS = ("train", "query", "gallery", "multi_query")


def image_entries(records: Sequence, with_mtime: bool = False) -> list[list]:
    """``[file name, size, (mtime_ns,) identity, camera]`` of every record, in the records' order."""
    entries = []
    for record in records:
        stat = os.stat(record.path)
        times = [stat.st_mtime_ns] if with_mtime else []
        entries.append([os.path.basename(record.path), stat.st_size, *times, record.pid, record.camid])
    return entries


def dataset_fingerprint(dataset) -> dict:
    """``{"sha256": ..., "images": {split: count}}`` of a `mmhpn.data.ReIDDataset`'s splits."""
    splits = {split: image_entries(getattr(dataset, split)) for split in SPLITS}
    digest = hashlib.sha256(json.dumps(splits, separators=(",", ":")).encode("utf-8")).hexdigest()
    return {"sha256": digest, "images": {split: len(entries) for split, entries in splits.items()}}
