"""The exceptions mmhpn raises on bad input, and the one line a failed file operation becomes.

Every error a user can cause (a wrong argument, a missing dataset folder, a foreign
checkpoint, a full disk) is one of these, with a message that says what is wrong and what
was expected. The command line prints such errors as one line and exits non-zero; anything
else is a bug and keeps its traceback. `TrainingInterrupted` is not an error: it is the
KeyboardInterrupt of a training, carrying the epoch it can resume from.
"""
from __future__ import annotations

import re


class MMHPNError(Exception):
    """Base class of the errors a user can cause."""


class ConfigError(MMHPNError, ValueError):
    """An invalid model, loss or training configuration."""


class DatasetError(MMHPNError, ValueError):
    """A dataset folder, file name or image that does not match the expected layout."""


class CheckpointError(MMHPNError, RuntimeError):
    """A checkpoint or run folder that is corrupt or belongs to another configuration."""


class StaleRunError(CheckpointError):
    """A run folder made by code that computes something else (older training semantics or data format),
    or trained on other data than its data folder holds now."""


class DamagedRunError(CheckpointError):
    """A run folder whose files are unreadable or no longer match what was recorded when they were written."""


class WriteError(MMHPNError, OSError):
    """A file that could not be written (a full disk, a read-only folder); the previous file is kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during a training: `run_dir` keeps its checkpoint of `epochs_saved` of `epochs` epochs."""

    def __init__(self, run_dir, epochs_saved: int | None, epochs: int):
        super().__init__(f"training in {run_dir} interrupted with {epochs_saved} of {epochs} epochs saved")
        self.run_dir, self.epochs_saved, self.epochs = run_dir, epochs_saved, epochs

    def resume_line(self) -> str:
        """What the command line prints: where the same command will pick up."""
        if self.epochs_saved is None:  # before its checkpoint was read: it is still there
            return f"interrupted; run the same command again to resume {self.run_dir}"
        if self.epochs_saved >= self.epochs:
            return (f"interrupted; run the same command again to finish {self.run_dir} "
                    f"(all {self.epochs} epochs are saved, the final evaluation runs again)")
        return f"interrupted; run the same command again to resume {self.run_dir} from epoch {self.epochs_saved + 1}"


def torch_load_problem(err: BaseException) -> str:
    """One line for a failed ``torch.load(..., weights_only=True)``, without torch's advice.

    torch's weights-only refusal runs to a dozen lines and suggests ``weights_only=False``
    (which would run whatever the file holds); mmhpn never does that, so only the refused
    object is named. An empty file gives torch's EOFError with no text: say what it means.
    """
    text = str(err)
    refused = re.search(r"WeightsUnpickler error: ([^\n]*?)(?: was not an allowed global.*)?$", text, re.MULTILINE)
    if refused:
        return (f"it holds an object a weights-only load refuses ({refused.group(1).strip()}); mmhpn reads only "
                "tensors and plain data: save a state_dict, e.g. torch.save(model.state_dict(), path)")
    if isinstance(err, EOFError):
        return "the file ends before its data does (an interrupted write or download?)"
    first_line = (text.strip().splitlines() or [""])[0][:200]
    return f"{type(err).__name__}: {first_line}" if first_line else type(err).__name__
