"""`make lab`'s kernel: the notebooks' kernel name (python3), the project's interpreter,
started in the repository root (where `make book` runs the notebooks), importing mmhpn."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_lab_kernel_runs_in_the_repository_root_and_imports_mmhpn(tmp_path, monkeypatch):
    from jupyter_client.manager import start_new_kernel

    subprocess.run([sys.executable, str(ROOT / ".ci" / "lab_kernel.py"), str(tmp_path)], check=True,
                   capture_output=True)
    spec = json.loads((tmp_path / "kernels" / "python3" / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))  # what `make lab` does
    monkeypatch.chdir(tmp_path)  # JupyterLab starts a kernel elsewhere (the notebook's folder)
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        assert manager.kernel_spec.resource_dir == str(tmp_path / "kernels" / "python3")
        lines = []
        client.execute_interactive("import os, mmhpn; print(os.getcwd()); print(mmhpn.__name__)", timeout=60,
                                   output_hook=lambda msg: lines.append(msg["content"].get("text", "")))
        assert "".join(lines).split() == [str(ROOT), "mmhpn"]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_make_lab_opens_jupyterlab_on_the_notebooks_with_that_kernel():
    dry = subprocess.run(["make", "-n", "lab", "STAMP=/dev/null"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert ".ci/lab_kernel.py .venv/share/mmhpn-lab" in dry
    assert 'JUPYTER_PATH="' in dry and "jupyter lab --ServerApp.root_dir=notebooks" in dry
