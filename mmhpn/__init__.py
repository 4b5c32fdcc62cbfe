"""mmhpn: a reproducible companion to the MMHPN person re-identification paper.

The package is split by concern: `mmhpn.model` (network and Adaptive Pooling Strategy),
`mmhpn.losses` (stripe softmax and Part Sensitive Loss), `mmhpn.data` (Market-layout
datasets, the synthetic benchmark, the input pipeline), `mmhpn.evaluation` (CMC/mAP
protocol), `mmhpn.config` (training configuration and profiles), `mmhpn.runtime` (device,
precision, seeds), `mmhpn.checkpoints` (the files of a run folder), `mmhpn.training` (the
loop) and `mmhpn.runs` (the run cache),
`mmhpn.attribution` (Grad-CAM maps), `mmhpn.figures` (drawing the paper's figures),
`mmhpn.paper` (the paper's tables, the runs behind them and what the notebooks show),
`mmhpn.export` (the test-time network as ONNX), `mmhpn.bookbuild` (`make book`) and
`mmhpn.cli` (the `mmhpn` command).
"""
from mmhpn.model import MMHPN, PRESETS, build_model

__version__ = "0.1.0"
__all__ = ["MMHPN", "PRESETS", "build_model", "__version__"]
