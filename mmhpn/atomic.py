"""Atomic file writes: never a half-written file where a finished one is expected.

Every writer here writes to a temporary file in the target's folder (same file system, so
the final `os.replace` is an atomic rename) and renames it into place only once the write
has succeeded; on any error, the temporary file is removed and the previous file, if any,
is left untouched. Readers therefore see either the old content or the new, never a mix.

* `atomic_path` - the context manager the others use: yields the temporary path to write.
* `atomic_write_text`, `atomic_write_json`, `atomic_torch_save`.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_path(target) as tmp: write(tmp)`` - `tmp` replaces `target` if the block succeeds.

    The temporary name is hidden (leading dot) and unique per process and call, so two
    processes writing the same target never write into each other's file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, data: Any, *, indent: int | None = 2, sort_keys: bool = False) -> None:
    """Write `data` as JSON (ending with a newline) to `path` atomically."""
    atomic_write_text(path, json.dumps(data, indent=indent, sort_keys=sort_keys) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save` `obj` to `path` atomically (checkpoints, model files)."""
    import torch  # here, not at the top: the other writers serve modules that do not load torch

    try:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)
    except OSError as err:  # e.g. a full disk: say which file is still good
        from mmhpn.errors import CheckpointError

        path = Path(path)
        kept = f"the previous {path} is kept unchanged" if path.exists() else f"no previous {path.name} existed"
        raise CheckpointError(f"could not write {path} ({err.strerror or err}); {kept}") from err
