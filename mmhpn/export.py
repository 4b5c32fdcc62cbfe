"""The test-time network as an ONNX file, checked with onnxruntime before it is kept (`mmhpn export`).

`export_onnx` exports a model in eval mode - input ``images`` (N, 3, H, W), N dynamic,
ImageNet-normalised as `mmhpn.data.build_transforms` (train=False) makes them; output
``descriptor`` (N, D), the descriptor `evaluate_model` scores without flip averaging - in
fp32, whatever precision the run trained with. The file is written to a temporary name,
run with onnxruntime on random input of two batch sizes other than the exported one, and
renamed into place only if its output equals torch's within the tolerance; otherwise
nothing is written.

ONNX has no adaptive max pooling, which every stripe head uses (max and APS pooling): the
exported copy pools each stripe with a slice of the same rows instead (the slices are fixed
by the input size). The check against the unchanged model's output is what vouches for it.

Needs the ``export`` extra (``pip install 'mmhpn[export]'``: onnx, onnxscript - torch's
exporter - and onnxruntime); without it `export_onnx` says so in one line.
"""
from __future__ import annotations

import copy
import importlib.util
import os
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mmhpn.atomic import atomic_path
from mmhpn.errors import ConfigError, MMHPNError

EXPORT_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
CHECK_BATCH_SIZES = (1, 3)  # the export traces batch 2: other sizes show the batch axis is dynamic


@dataclass
class ExportReport:
    """What `export_onnx` wrote and how closely onnxruntime reproduced torch."""

    path: Path
    height: int
    width: int
    descriptor_dim: int
    opset: int
    max_abs_difference: float  # max |onnxruntime - torch| over the checked batches
    largest_value: float  # max |torch descriptor| over the same batches
    bound: float  # the max_abs_difference allowed: tolerance * max(1, largest_value)

    def summary(self) -> str:
        return (f"{self.path}: input images N x 3 x {self.height} x {self.width}, output descriptor "
                f"N x {self.descriptor_dim}, fp32, ONNX opset {self.opset}; onnxruntime vs torch on random input "
                f"(batches of {' and '.join(map(str, CHECK_BATCH_SIZES))}): max |difference| "
                f"{self.max_abs_difference:.2e} (bound {self.bound:.2e}; largest |value| {self.largest_value:.3g})")


def missing_export_packages() -> list[str]:
    return [name for name in EXPORT_PACKAGES if importlib.util.find_spec(name) is None]


def _pool_by_slices(self, fmap: torch.Tensor) -> torch.Tensor:
    """`StripeHeads.pool` with each adaptive bin as a slice: bin i of h rows is rows
    floor(i*h/P) .. ceil((i+1)*h/P), every column, as adaptive pooling defines it."""
    rows = fmap.shape[2]
    bins = [(i * rows // self.stripes, -(-(i + 1) * rows // self.stripes)) for i in range(self.stripes)]
    average = torch.stack([fmap[:, :, top:bottom].mean(dim=(2, 3)) for top, bottom in bins], dim=2)
    maximum = torch.stack([fmap[:, :, top:bottom].amax(dim=(2, 3)) for top, bottom in bins], dim=2)
    a = self.aps_weight().to(fmap.dtype)  # 1 for "avg" and 0 for "max": exactly one of the two
    return a * average + (1 - a) * maximum


def _exportable(model: nn.Module) -> nn.Module:
    """An fp32 CPU copy of `model` in eval mode whose stripe heads pool by slices."""
    copied = copy.deepcopy(model).float().cpu().eval()
    for head in copied.heads:
        head.pool = types.MethodType(_pool_by_slices, head)
    return copied


def export_onnx(model: nn.Module, path: str | os.PathLike, *, height: int, width: int,
                tolerance: float = 1e-4, seed: int = 0) -> ExportReport:
    """Export `model`'s test-time network to `path` for (N, 3, `height`, `width`) inputs and check it.

    The check runs the file with onnxruntime on standard-normal input (generator `seed`) and
    keeps it only if max |onnxruntime - torch| <= `tolerance` * max(1, max |torch|): the
    tolerance is absolute for descriptors up to 1 in magnitude, relative beyond.
    `model` itself is not changed.
    """
    missing = missing_export_packages()
    if missing:
        raise MMHPNError(f"ONNX export needs {', '.join(missing)}: pip install 'mmhpn[export]' "
                         f"(installs {', '.join(EXPORT_PACKAGES)})")
    if not tolerance > 0:
        raise ConfigError(f"tolerance must be positive, got {tolerance!r}")
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ConfigError(f"the ONNX file's name must end in .onnx, got {str(path)!r}")
    import onnx
    import onnxruntime

    reference = copy.deepcopy(model).float().cpu().eval()
    generator = torch.Generator().manual_seed(seed)
    example = torch.randn(2, 3, height, width, generator=generator)
    checks = [torch.randn(n, 3, height, width, generator=generator) for n in CHECK_BATCH_SIZES]
    with torch.no_grad():
        expected = [reference(images).numpy() for images in checks]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        torch.onnx.export(_exportable(model), (example,), str(temporary), dynamo=True, external_data=False,
                          input_names=["images"], output_names=["descriptor"],
                          dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
        session = onnxruntime.InferenceSession(str(temporary), providers=["CPUExecutionProvider"])
        outputs = [session.run(["descriptor"], {"images": images.numpy()})[0] for images in checks]
        if any(out.shape != ref.shape for out, ref in zip(outputs, expected)):
            raise MMHPNError(f"the exported network returns shapes {[o.shape for o in outputs]} where torch returns "
                             f"{[e.shape for e in expected]}; nothing was written to {path}")
        difference = max(float(np.abs(out - ref).max()) for out, ref in zip(outputs, expected))
        largest = max(float(np.abs(ref).max()) for ref in expected)
        bound = tolerance * max(1.0, largest)
        if not difference <= bound:  # also refuses NaN
            raise MMHPNError(f"onnxruntime's output differs from torch's by up to {difference:.3g} "
                             f"(bound {bound:.3g}); nothing was written to {path}")
        opset = next((o.version for o in onnx.load(str(temporary)).opset_import if o.domain in ("", "ai.onnx")), 0)
    return ExportReport(path=path, height=height, width=width, descriptor_dim=int(expected[0].shape[1]),
                        opset=int(opset), max_abs_difference=difference, largest_value=largest, bound=bound)
