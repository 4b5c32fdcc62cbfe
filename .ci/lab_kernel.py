"""Write the Jupyter kernel that `make lab` gives JupyterLab: the project's .venv, started
in the repository root.

The notebooks use paths relative to the repository root (`data/...`, `runs/`), as
`make book` runs them there (papermill's cwd); JupyterLab would start a kernel in the
notebook's folder instead. The spec keeps the notebooks' kernel name, `python3`, so that
saving a notebook in JupyterLab does not rewrite its metadata; it lives in its own folder,
which only `make lab` puts on JUPYTER_PATH (papermill and `make book` never see it).

    python .ci/lab_kernel.py OUT_DIR     # writes OUT_DIR/kernels/python3/kernel.json
"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    spec_dir = Path(sys.argv[1]) / "kernels" / "python3"
    spec_dir.mkdir(parents=True, exist_ok=True)
    start = f"import os; os.chdir({str(ROOT)!r}); from ipykernel import kernelapp; kernelapp.launch_new_instance()"
    spec = {"argv": [sys.executable, "-c", start, "-f", "{connection_file}"],
            "display_name": "Python 3 (mmhpn)", "language": "python",
            "metadata": {"debugger": True}}
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n")
    print(f"kernel 'python3' (mmhpn's .venv, cwd {ROOT}) written to {spec_dir}")
