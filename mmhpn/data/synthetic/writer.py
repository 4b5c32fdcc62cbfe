"""Writing a synthetic dataset to disk: `generate`, `ensure_synthetic` and the completion marker.

A dataset is drawn into a temporary sibling folder; the marker file ``MARKER_NAME`` (the
format version, preset, seed, full configuration, and a summary: the number of images and
the seconds drawing took) is written last and the folder is renamed into place, so a
half-written dataset is never taken for a finished one. `ensure_synthetic` reuses a
finished dataset of the same settings and format and never deletes one: a dataset of an
older format is moved aside and redrawn, anything else is refused in one line.

JPEGs are written with fixed settings, so the same seed gives byte-identical files (with
the same Pillow/libjpeg build), whatever the number of worker processes.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

from mmhpn.data.synthetic.planning import Plan, make_plan, render_job
from mmhpn.data.synthetic.presets import SyntheticConfig, synthetic_config
from mmhpn.errors import DatasetError

# Bump whenever the generator's output changes (drawing, identity sampling, a preset's sizes):
# it is written into every dataset's marker file, and `ensure_synthetic` never reuses a
# dataset of another version. 3: position look-alikes, bands, colour-block tops, new demo
# sizes, the pretrain preset and identity streams.
FORMAT_VERSION = 3
SYNTHETIC_FORMAT_VERSION = FORMAT_VERSION  # the same constant under the name other modules import
MARKER_NAME = "SYNTHETIC_COMPLETE.json"


def _write_jobs(plan: Plan, out: Path, indices) -> None:
    """Draw the jobs `indices` of `plan` and save them as JPEGs under `out`."""
    for index in indices:
        image = render_job(plan, index)
        image.save(out / plan.jobs[index][0], format="JPEG", quality=plan.config.jpeg_quality)


_WORKER_PLAN: Plan | None = None  # a worker process's own copy of the plan (`_init_worker`)


def _init_worker(config: SyntheticConfig, seed: int) -> None:
    global _WORKER_PLAN
    _WORKER_PLAN = make_plan(config, seed)


def _worker_write(args) -> int:
    out, indices = args
    _write_jobs(_WORKER_PLAN, Path(out), indices)
    return len(indices)


def _marker_payload(config: SyntheticConfig, seed: int, preset: str) -> dict:
    """What the marker says the dataset is (compared by `ensure_synthetic`); `generate` adds the summary."""
    fields = dataclasses.asdict(config)
    if fields["subject"] == "person":  # left out at its default: markers written before the field still match
        del fields["subject"]
    return {"format_version": FORMAT_VERSION, "preset": preset, "seed": int(seed), "config": fields}


def read_marker(root: str | os.PathLike) -> dict | None:
    """The completion marker of a finished synthetic dataset, or None."""
    marker = Path(root) / MARKER_NAME
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_complete(root: str | os.PathLike) -> bool:
    """Whether `root` holds a finished synthetic dataset (of any settings or format)."""
    return read_marker(root) is not None


def generate(out: str | os.PathLike, preset: str = "demo", seed: int = 0, workers: int = 1,
             progress: bool = False, **knobs) -> Path:
    """Write a synthetic dataset into the new folder `out` (must not exist or be empty).

    Drawn into a temporary sibling folder, then the completion marker is written and the
    folder renamed to `out`: an interrupted run leaves no `out` that looks finished.
    `workers > 1` renders with that many processes (same bytes as one process).
    """
    config = synthetic_config(preset, **knobs)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"{out} already exists and is not an empty folder; choose a new folder "
                           "(or use ensure_synthetic, which reuses a finished dataset)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{time.time_ns()}"
    tmp.mkdir()
    try:
        start = time.perf_counter()
        plan = make_plan(config, seed)
        for folder in ("bounding_box_train", "bounding_box_test", "query", "gt_bbox"):
            (tmp / folder).mkdir()
        indices = list(range(len(plan.jobs)))
        if workers <= 1:
            chunks = [indices[i:i + 500] for i in range(0, len(indices), 500)]
            iterator = (_write_jobs(plan, tmp, chunk) or len(chunk) for chunk in chunks)
            _consume(iterator, len(indices), progress)
        else:
            import multiprocessing as mp

            # fork (where there is one) starts fast; the workers only use numpy and PIL.
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            chunks = [(str(tmp), indices[i:i + 200]) for i in range(0, len(indices), 200)]
            with mp.get_context(method).Pool(workers, initializer=_init_worker, initargs=(config, seed)) as pool:
                _consume(pool.imap_unordered(_worker_write, chunks), len(indices), progress)
        payload = _marker_payload(config, seed, preset)
        payload["num_images"] = len(plan.jobs)
        payload["seconds"] = round(time.perf_counter() - start, 2)
        (tmp / MARKER_NAME).write_text(json.dumps(payload, indent=2, sort_keys=True))
        if out.exists():
            out.rmdir()  # empty (checked above); os.replace cannot replace a folder
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _consume(iterator, total: int, progress: bool) -> None:
    """Run `iterator` (it draws chunks, yielding their image counts) to its end; a progress bar if asked."""
    if progress:
        from tqdm.auto import tqdm

        with tqdm(total=total, unit="img", desc="synthetic") as bar:
            for n in iterator:
                bar.update(n)
    else:
        for _ in iterator:
            pass


def ensure_synthetic(root: str | os.PathLike, preset: str = "demo", seed: int = 0, workers: int = 1,
                     progress: bool = False, **knobs) -> Path:
    """`root` holding the synthetic dataset (preset, seed, knobs); generated only if absent.

    A finished dataset is recognised by its marker file. One that the generator wrote itself
    in an older format (marker with a smaller `format_version`) is moved aside to a sibling
    folder ``<root>.format-<old>`` (never deleted: it may hold files of yours) and a new one
    is drawn in its place, said in one line on stderr. One of a newer format, or made with
    other settings, is an error (never silently reused or deleted), as is a non-empty folder
    without a marker.
    """
    root = Path(root)
    config = synthetic_config(preset, **knobs)
    marker = read_marker(root)
    if marker is None:
        try:
            return generate(root, preset, seed, workers=workers, progress=progress, **knobs)
        except OSError:
            # Another process may have finished the same dataset while we were drawing.
            marker = read_marker(root)
            if marker is None:
                raise
    version = marker.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DatasetError(f"{root} holds a synthetic dataset of format {version!r}, newer than or unknown to this "
                           f"generator (format {FORMAT_VERSION}); use another folder or update mmhpn")
    if version < FORMAT_VERSION:
        return _redraw(root, preset, seed, workers, progress, knobs, version)
    wanted = _marker_payload(config, seed, preset)
    if (marker.get("seed"), marker.get("config")) != (wanted["seed"], wanted["config"]):
        raise DatasetError(
            f"{root} holds a synthetic dataset made with other settings (preset {marker.get('preset')!r}, "
            f"seed {marker.get('seed')}); use another folder for preset {preset!r} seed {seed}, or delete it"
        )
    return root


def _redraw(root: Path, preset: str, seed: int, workers: int, progress: bool, knobs: dict,
            old_version: int) -> Path:
    """Move the finished dataset `root` of an older format aside and draw a new one in its place.

    The new one is drawn first beside it, so an interruption leaves the old one in place.
    """
    stamp = f"{os.getpid()}-{time.time_ns()}"
    fresh = generate(root.parent / f".{root.name}.new-{stamp}", preset, seed, workers=workers, progress=progress,
                     **knobs)
    old = root.parent / f"{root.name}.format-{old_version}"
    if old.exists():
        old = root.parent / f"{root.name}.format-{old_version}-{stamp}"
    os.replace(root, old)
    os.replace(fresh, root)
    print(f"mmhpn: {root} was drawn by synthetic format {old_version}, this generator draws format "
          f"{FORMAT_VERSION}: moved it to {old} (delete it when no longer needed) and drew a new one in its place",
          file=sys.stderr)
    return root
