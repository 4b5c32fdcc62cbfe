"""Make docs/synthetic-pedestrians.png, the picture at the top of README.md.

It is the sample grid of the book's data page (notebooks/01-data.ipynb: `sample_grid`,
seed 0) drawn from the synthetic demo benchmark that `make book` generates, at a reduced
size (4 identities x 6 images, 64 colours) so that the committed file stays small. Re-make it with

    python docs/make_readme_figure.py            # generates data/synthetic-demo if missing
"""
from pathlib import Path

from mmhpn.data import sample_grid
from mmhpn.data.synthetic import ensure_synthetic
from mmhpn.training import load_data, make_config

ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = ROOT / "data" / "synthetic-demo"
OUT = ROOT / "docs" / "synthetic-pedestrians.png"

if __name__ == "__main__":
    ensure_synthetic(DATA_ROOT, preset="demo", seed=0)  # the same call as `make book`'s step 1
    data = load_data(make_config("demo", dataset="synthetic", data_root=str(DATA_ROOT)))
    grid = sample_grid(data, n_ids=4, per_id=6, split="train", seed=0)
    # 64-colour palette: a few tens of kB in git instead of ~350 kB
    grid.quantize(colors=64).save(OUT, optimize=True)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {grid.size[0]}x{grid.size[1]})")
