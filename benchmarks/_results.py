"""Where and how the benchmark scripts write their results.

Every result file says when, on what, by which command and under which training-semantics
version it was measured, so a number read back later (the book's compute-cost page,
`benchmarks/reference/`, the recorded selections in `mmhpn/resources/`) carries its
provenance with it.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from mmhpn.atomic import atomic_write_json
from mmhpn.provenance import machine_description
from mmhpn.versions import TRAINING_SEMANTICS_VERSION

RESULTS = Path(__file__).resolve().parent / "results"


def write_result(filename: str, data: dict[str, Any]) -> Path:
    """Write `data` plus a `recorded` block to `benchmarks/results/<filename>`, atomically."""
    import torch

    record = {
        **data,
        "recorded": {
            "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine_description(),
            "torch": torch.__version__,
            "command": "python " + " ".join([f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]]),
            # what a training computed then: a selection page says when the code has moved on
            # (mmhpn.paper.views.record_currency)
            "training_semantics_version": TRAINING_SEMANTICS_VERSION,
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / filename
    atomic_write_json(path, record)
    return path
