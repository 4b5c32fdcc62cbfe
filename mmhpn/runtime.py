"""The runtime a run executes in: device, precision, determinism, seeds and RNG state.

* `resolve_device`, `resolve_precision` (``auto`` -> bf16 where the hardware has it, fp16 with
  a gradient scaler on older GPUs, else fp32), `autocast`, `cpu_supports_bf16`;
* `determinism` (deterministic kernels while a block runs), `seed_everything`;
* `rng_state` / `set_rng_state`: every random number generator (Python, NumPy, torch CPU and
  CUDA) as a weights_only-loadable dict, saved in checkpoints so that a resumed run draws
  the same numbers as an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch

from mmhpn import distributed
from mmhpn.errors import ConfigError

PRECISIONS = ("auto", "bf16", "fp16", "fp32")  # what `resolve_precision` accepts


def resolve_device(device: str) -> torch.device:
    """``auto`` -> the local CUDA device if there is one (this process's under torchrun), else CPU."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", distributed.local_rank() if distributed.is_enabled() else torch.cuda.current_device())
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from err
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA device on this machine")
        if resolved.index is None:
            resolved = torch.device("cuda", distributed.local_rank() if distributed.is_enabled() else 0)
    return resolved


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def resolve_precision(precision: str, device: torch.device) -> str:
    """The concrete precision ('bf16', 'fp16' or 'fp32') that `precision` means on `device`."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        if precision == "fp16" and device.type == "cpu":
            raise ConfigError("precision 'fp16' is for CUDA devices; on CPU use 'bf16' or 'fp32'")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_supports_bf16() else "fp32"


def autocast(device: torch.device, precision: str):
    """The autocast context for a concrete precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def determinism(enabled: bool):
    """Deterministic kernels while the block runs (restored afterwards: the setting is process-wide)."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if enabled:
        # cuBLAS needs this to be deterministic; it only takes effect before cuBLAS starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[2], previous[3]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# RNG states, kept weights_only-loadable (tensors, ints, floats, lists; no numpy objects).

def rng_state() -> dict:
    """Every random number generator's state (Python, NumPy, torch CPU, CUDA if started)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the generators from a `rng_state` dict."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
