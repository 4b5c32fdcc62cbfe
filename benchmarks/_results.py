"""Where and how the benchmark scripts write their results.

Every result file says when, on what and by which command it was measured, so a number
read back later (the book's compute-cost page, `benchmarks/reference/`) carries its
provenance with it.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from mmhpn.atomic import atomic_write_json
from mmhpn.provenance import machine_description

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
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / filename
    atomic_write_json(path, record)
    return path
