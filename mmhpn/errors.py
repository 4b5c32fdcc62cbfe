"""The exceptions mmhpn raises on bad input.

Every error a user can cause (a wrong argument, a missing dataset folder, a foreign
checkpoint) is one of these, with a message that says what is wrong and what was
expected. The command line prints such errors as one line and exits non-zero; anything
else is a bug and keeps its traceback.
"""


class MMHPNError(Exception):
    """Base class of the errors a user can cause."""


class ConfigError(MMHPNError, ValueError):
    """An invalid model, loss or training configuration."""


class DatasetError(MMHPNError, ValueError):
    """A dataset folder, file name or image that does not match the expected layout."""


class CheckpointError(MMHPNError, RuntimeError):
    """A checkpoint or run folder that is corrupt or belongs to another configuration."""


class StaleRunError(CheckpointError):
    """A run folder made by code that computes something else (older training semantics or data format)."""


class DamagedRunError(CheckpointError):
    """A finished run folder whose files no longer match what was recorded when it finished."""
