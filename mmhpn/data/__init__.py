"""Datasets and input pipeline: Market-layout loaders, the synthetic benchmark, loaders.

- `mmhpn.data.market`: records, the Market-1501 file-layout parser, the dataset registry
  (`load_dataset("market1501" | "dukemtmc-reid" | "cuhk03-np" | "synthetic", root)`), and
  `load_data(config)`: the dataset a training configuration names (`split_validation`:
  held-out training identities as query/gallery), checked for training, and `data_fields`,
  the fields it reads.
- `mmhpn.data.checks`: what a dataset must pass before training (`check_training_data`:
  two identities or more, every image it uses readable), one `DatasetError` line each.
- `mmhpn.data.synthetic`: the procedural pedestrian generator, a package (`generate`,
  `ensure_synthetic`, `SYNTHETIC_PRESETS`, `synthetic_config`).
- `mmhpn.data.pipeline`: transforms, `ImageDataset`, samplers, the training loader (with
  `set_loader_epoch`) and the evaluation loader, `sample_grid` for looking at a dataset.
"""
from mmhpn.data.market import (
    DATASETS,
    ImageRecord,
    ReIDDataset,
    count_unmatched_queries,
    data_fields,
    load_data,
    load_dataset,
    load_market_layout,
    parse_image_name,
    split_validation,
)
from mmhpn.data.pipeline import (
    CachedFeatureLoader,
    EXTRA_AUGMENTATIONS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    IdentityBatchSampler,
    ImageDataset,
    ShuffleBatchSampler,
    build_eval_loader,
    build_train_loader,
    build_transforms,
    collate_batch,
    decode_image,
    sample_grid,
    set_loader_epoch,
)
from mmhpn.data.synthetic import SYNTHETIC_PRESETS, ensure_synthetic, generate

__all__ = [
    "CachedFeatureLoader",
    "DATASETS",
    "EXTRA_AUGMENTATIONS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IdentityBatchSampler",
    "ImageDataset",
    "ImageRecord",
    "ReIDDataset",
    "SYNTHETIC_PRESETS",
    "ShuffleBatchSampler",
    "build_eval_loader",
    "build_train_loader",
    "build_transforms",
    "collate_batch",
    "count_unmatched_queries",
    "data_fields",
    "decode_image",
    "ensure_synthetic",
    "generate",
    "load_data",
    "load_dataset",
    "load_market_layout",
    "parse_image_name",
    "sample_grid",
    "set_loader_epoch",
    "split_validation",
]
