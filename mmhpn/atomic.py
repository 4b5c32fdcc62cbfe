"""Atomic file writes: never a half-written file where a finished one is expected.

Every writer here writes to a temporary file in the target's folder (same file system, so
the final `os.replace` is an atomic rename) and renames it into place only once the write
has succeeded; on any error, the temporary file is removed and the previous file, if any,
is left untouched. Readers therefore see either the old content or the new, never a mix.

A write that fails for want of space or permission - an `OSError` (ENOSPC, EDQUOT, EROFS,
EACCES, EPERM) from any writer, or the `RuntimeError` torch's file writer raises when it
runs out of space - becomes one `mmhpn.errors.WriteError` line: "no space left writing X;
previous file kept". Other errors (a bug, Ctrl-C) pass through unchanged.

* `atomic_path` - the context manager the others use: yields the temporary path to write.
* `atomic_write_text`, `atomic_write_json`, `atomic_torch_save`.
* `orphaned_temporaries` - the temporary files a killed writer left in a folder.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

from mmhpn.errors import WriteError

NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
NOT_PERMITTED = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
# What torch's zip writer says when a write comes up short (a full disk; /dev/full gives the second).
TORCH_WRITE_FAILURES = ("PytorchStreamWriter failed writing", "unexpected pos")


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")


def orphaned_temporaries(folder: str | os.PathLike) -> list[Path]:
    """The temporary files `atomic_path` names (``.<name>.tmp-<pid>-<ns>``) in `folder`.

    Only a writer killed mid-write (kill -9, power loss) leaves one; a caller holding the
    folder's lock may remove them.
    """
    folder = Path(folder)
    return sorted(folder.glob(".*.tmp-*-*")) if folder.is_dir() else []


def write_error(path: Path, no_space: bool, reason: str = "") -> WriteError:
    """The one line of a failed write of `path` (which still holds its previous content, if any)."""
    kept = "previous file kept" if path.exists() else f"no previous {path.name} existed"
    what = f"no space left writing {path}" if no_space else f"could not write {path}"
    return WriteError(f"{what}{f' ({reason})' if reason else ''}; {kept}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_path(target) as tmp: write(tmp)`` - `tmp` replaces `target` if the block succeeds.

    The temporary name is hidden (leading dot) and unique per process and call, so two
    processes writing the same target never write into each other's file.
    """
    path = Path(path)
    tmp = _temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        if err.errno in NO_SPACE or err.errno in NOT_PERMITTED:
            no_space = err.errno in NO_SPACE
            raise write_error(path, no_space, "" if no_space else err.strerror or str(err)) from err
        raise
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
    except RuntimeError as err:  # torch's writer reports a short write (a full disk) as a RuntimeError
        message = str(err)
        if not any(sign in message for sign in TORCH_WRITE_FAILURES):
            raise
        first_line = (message.strip().splitlines() or [""])[0][:200]
        raise write_error(Path(path), True, f"torch: {first_line}") from err
