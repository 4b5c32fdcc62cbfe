"""Where a measurement was made: the one description of this machine that every record uses.

The book's build log, the compute-cost page and the benchmark result files all say on what
machine their numbers were measured, in the same words, so that numbers read back later
carry their provenance with them.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path


def processor_name() -> str:
    """This machine's CPU model, e.g. ``"AMD EPYC"`` (the second part of `machine_description`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description() -> str:
    """``"<n> logical CPU(s), <CPU model>, <OS> <release>"`` for this machine."""
    return f"{os.cpu_count()} logical CPU(s), {processor_name()}, {platform.system()} {platform.release()}"


def processor_in(description: str) -> str:
    """The CPU model a recorded `machine_description` names; the whole text when it is not one."""
    parts = description.split(", ")
    return parts[1] if len(parts) == 3 else description
