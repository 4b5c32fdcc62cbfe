"""The input pipeline: transforms, the image dataset, samplers and data loaders.

This module owns turning `ImageRecord`s into normalised image batches:

- `build_transforms`: the paper's pipeline - resize to (height, width) (384x128 by default),
  random horizontal flip (training only), ImageNet normalisation. Any other augmentation is
  opt-in by name (`EXTRA_AUGMENTATIONS`) and never on by default.
- `ImageDataset`: items `(image_tensor, pid, camid)`; an unreadable image raises
  `DatasetError` naming the file. `cache_images=True` decodes every image once into uint8
  arrays (about 24 KB per 128x64 image) so that a fast GPU is not starved by JPEG decoding.

Every per-image step runs single-threaded (PIL for resize/flip, NumPy for normalisation):
per-sample torch ops would use the intra-op thread pool, and on a busy few-core machine
that makes one 384x128 image cost tens of milliseconds instead of about one.
- `ShuffleBatchSampler` (plain shuffling, the paper's choice) and `IdentityBatchSampler`
  (P identities x K images per batch, an option). Both are deterministic given `seed` and the
  epoch, and have `set_epoch(epoch)` so a resumed training run sees the same batches.
- `build_train_loader` (the one training uses, also under several processes) with
  `set_loader_epoch`; `CachedFeatureLoader`, the same batches of precomputed feature maps
  (a trunk frozen below layer4, see `mmhpn.training`); `build_eval_loader`, and `sample_grid` to look at a dataset.
"""
from __future__ import annotations

import copy
from collections import defaultdict
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, default_collate, get_worker_info
from torchvision.transforms import v2

from mmhpn.data.market import ImageRecord
from mmhpn.errors import ConfigError, DatasetError

SAMPLERS = ("shuffle", "pk")  # `_batch_sampler`: plain shuffling (the paper's) or P x K identity batches
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ToNormalizedTensor(torch.nn.Module):
    """PIL image or uint8 (H, W, 3) array -> float32 (3, H, W) tensor, (x / 255 - mean) / std.

    Computed with NumPy (single-threaded, see the module docstring); equal to torchvision's
    ToDtype(scale=True) + Normalize up to float rounding.
    """

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        std_array = np.asarray(std, dtype=np.float32)
        self.scale = 1.0 / (255.0 * std_array)
        self.shift = -np.asarray(mean, dtype=np.float32) / std_array

    def forward(self, image) -> torch.Tensor:
        array = np.asarray(image)
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
            raise DatasetError(f"expected an RGB uint8 image, got an array of shape {array.shape} ({array.dtype})")
        out = array.astype(np.float32)
        out *= self.scale
        out += self.shift
        return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))


def _extra_augmentations(height: int, width: int) -> dict:
    """Named, opt-in augmentations (not used in the paper). On PIL images unless noted."""
    return {
        # Pad 10 px and crop back: small translations (common in re-ID toolboxes).
        "random-crop": [v2.Pad(10), v2.RandomCrop((height, width))],
        "color-jitter": [v2.ColorJitter(brightness=0.2, contrast=0.15, saturation=0.15, hue=0.0)],
        # Random erasing (Zhong et al. 2020), on the normalised tensor: placed last.
        "random-erasing": [v2.RandomErasing(p=0.5, value=0)],
    }


EXTRA_AUGMENTATIONS = ("random-crop", "color-jitter", "random-erasing")


def build_transforms(height: int = 384, width: int = 128, train: bool = True,
                     extra: Sequence[str] = ()) -> v2.Compose:
    """Resize, (train: random horizontal flip, named extras), to float, ImageNet normalisation.

    Expects a PIL RGB image (`ImageDataset` gives one, also from its cache). Resizing is
    PIL's bilinear resampling (which is antialiased).
    """
    if height < 1 or width < 1:
        raise ConfigError(f"image size must be positive, got {height}x{width}")
    unknown = [name for name in extra if name not in EXTRA_AUGMENTATIONS]
    if unknown:
        raise ConfigError(f"unknown augmentation(s) {unknown}; known: {', '.join(EXTRA_AUGMENTATIONS)}")
    if extra and not train:
        raise ConfigError("extra augmentations are for training only")
    named = _extra_augmentations(height, width)
    steps: list = [v2.Resize((height, width), interpolation=v2.InterpolationMode.BILINEAR)]
    if train:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
        for name in ("random-crop", "color-jitter"):
            if name in extra:
                steps.extend(named[name])
    steps.append(ToNormalizedTensor())
    if train and "random-erasing" in extra:
        steps.extend(named["random-erasing"])
    return v2.Compose(steps)


def decode_image(path: str) -> Image.Image:
    """The RGB image at `path`, fully decoded; `DatasetError` naming the file if it cannot be."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")  # convert() forces a full decode: truncated files fail here
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:  # missing/corrupt/truncated/huge
        raise DatasetError(f"cannot read image {path}: {type(err).__name__}: {err}") from None


class ImageDataset(Dataset):
    """Records as a torch dataset of `(image_tensor, pid, camid)`.

    cache_images: decode every image once, here, into uint8 (H, W, 3) arrays kept in memory
    (shared copy-on-write with forked loader workers); the transform then runs on a PIL view
    of the cached array, so cached and uncached items are identical.
    """

    def __init__(self, records: Sequence[ImageRecord], transform=None, cache_images: bool = False):
        if len(records) == 0:
            raise DatasetError("ImageDataset got no records (empty split?)")
        self.records = list(records)
        self.transform = transform
        self.cache: list[np.ndarray] | None = None
        if cache_images:
            self.cache = [np.asarray(decode_image(r.path)) for r in self.records]

    def with_transform(self, transform) -> "ImageDataset":
        """The same records under another transform, sharing this dataset's decoded images."""
        other = copy.copy(self)
        other.transform = transform
        return other

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int):
        record = self.records[index]
        if self.cache is not None:
            image = Image.fromarray(self.cache[index])
        else:
            image = decode_image(record.path)
        if self.transform is not None:
            image = self.transform(image)
        return image, record.pid, record.camid


def collate_batch(batch):
    """Stack `(image, pid, camid)` items into batch tensors.

    In the main process the images are stacked with NumPy (one thread): `torch.stack` would
    use the intra-op thread pool, which on a busy few-core machine made stacking a 384x128
    batch cost most of the loader's time. Worker processes use torch's `default_collate`,
    which writes the batch straight into shared memory.
    """
    if get_worker_info() is not None:
        return default_collate(batch)
    images, pids, camids = zip(*batch)
    return (torch.from_numpy(np.stack([image.numpy() for image in images])),
            torch.tensor(pids, dtype=torch.int64), torch.tensor(camids, dtype=torch.int64))


class ShuffleBatchSampler(Sampler[list[int]]):
    """Plain shuffling into batches (the paper's sampling); a fresh permutation per epoch.

    The permutation of epoch e depends only on (seed, e). The epoch advances by one after
    every full pass; `set_epoch` sets it explicitly (e.g. when resuming).
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int = 0, drop_last: bool = True):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if drop_last and num_samples < batch_size:
            raise ConfigError(f"{num_samples} training images cannot fill one batch of {batch_size}")
        self.num_samples, self.batch_size, self.seed, self.drop_last = num_samples, batch_size, seed, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)
        self.epoch += 1
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            if len(batch) < self.batch_size and self.drop_last:
                return
            yield batch.tolist()

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return -(-self.num_samples // self.batch_size)


class IdentityBatchSampler(Sampler[list[int]]):
    """P x K sampling: each batch holds K images of each of P identities (batch = P * K).

    Per epoch, every identity's images are shuffled and cut into groups of K (an identity
    with fewer than K images, or a last partial group, is completed by drawing its images
    again); batches then take P distinct identities at random, until fewer than P
    identities have groups left (as in torchreid's RandomIdentitySampler).
    """

    def __init__(self, pids: Sequence[int], batch_size: int, num_instances: int = 4, seed: int = 0):
        if num_instances < 1 or batch_size % num_instances:
            raise ConfigError(f"batch_size ({batch_size}) must be a multiple of num_instances ({num_instances})")
        self.num_instances = num_instances
        self.num_pids_per_batch = batch_size // num_instances
        self.index_of: dict[int, list[int]] = defaultdict(list)
        for index, pid in enumerate(pids):
            self.index_of[int(pid)].append(index)
        if len(self.index_of) < self.num_pids_per_batch:
            raise ConfigError(f"P x K sampling needs at least {self.num_pids_per_batch} identities, "
                              f"the data has {len(self.index_of)}")
        self.seed, self.epoch = seed, 0
        self._length = sum(-(-len(v) // num_instances) for v in self.index_of.values()) // self.num_pids_per_batch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        k = self.num_instances
        groups: dict[int, list[list[int]]] = {}
        for pid in sorted(self.index_of):
            indices = list(rng.permutation(self.index_of[pid]))
            short = -len(indices) % k
            if short:
                indices += list(rng.choice(self.index_of[pid], size=short, replace=True))
            groups[pid] = [[int(i) for i in indices[s:s + k]] for s in range(0, len(indices), k)]
        available = [pid for pid in groups]
        while len(available) >= self.num_pids_per_batch:
            chosen = rng.choice(len(available), size=self.num_pids_per_batch, replace=False)
            batch = []
            for c in sorted(chosen, reverse=True):
                pid = available[c]
                batch.extend(groups[pid].pop())
                if not groups[pid]:
                    available.pop(c)
            yield batch

    def __len__(self) -> int:
        # Upper bound that the loop reaches unless identities run out unevenly at the end.
        return self._length


def build_train_loader(records: Sequence[ImageRecord], height: int = 384, width: int = 128,
                       batch_size: int = 64, sampler: str = "shuffle", num_instances: int = 4, seed: int = 0,
                       num_workers: int = 0, cache_images: bool = False, pin_memory: bool = False,
                       extra_augment: Sequence[str] = (), world_size: int = 1, rank: int = 0,
                       images: ImageDataset | None = None) -> DataLoader:
    """The training loader: flip-only transform (plus any named `extra_augment`), seeded batches.

    `sampler="shuffle"` (the paper) or `"pk"` (P = batch_size / num_instances identities).
    The batches of epoch e depend only on (seed, e): call `set_loader_epoch` before each
    pass. It sets the batch sampler (or torch's `DistributedSampler`) to the epoch and
    re-seeds the loader's generator, which seeds the worker processes, hence their random
    flips; with ``num_workers=0`` the flips use torch's global RNG (which training saves in
    its checkpoints). Workers are not kept between epochs, so every epoch's workers start
    from that seed and a resumed run sees the same flips.

    `images`: an `ImageDataset` over the same records (another loader's ``dataset``) whose
    decoded images this loader shares instead of decoding them again (`cache_images`), under
    its own transform: e.g. the same images at another size.

    Several processes (`world_size` > 1, this one being `rank`): `batch_size` is the
    *global* batch; each process gets 1/world of every epoch through a `DistributedSampler`
    (plain shuffling only) and ``batch_size / world_size`` images per step.
    """
    if sampler not in ("shuffle", "pk"):
        raise ConfigError(f"unknown sampler {sampler!r}; expected 'shuffle' or 'pk'")
    transform = build_transforms(height, width, train=True, extra=extra_augment)
    if images is None:
        dataset = ImageDataset(records, transform, cache_images=cache_images)
    elif images.records == list(records):
        dataset = images.with_transform(transform)  # its decoded images shared, not decoded again
    else:
        raise ConfigError("build_train_loader's images must be an ImageDataset over the same records")
    if batch_size % world_size:
        raise ConfigError(f"batch_size {batch_size} is the global batch; it must divide evenly over "
                          f"{world_size} processes")
    if len(dataset) < batch_size:
        raise ConfigError(f"the training split has {len(dataset)} images, fewer than one batch ({batch_size})")
    common = dict(num_workers=num_workers, pin_memory=pin_memory, generator=torch.Generator().manual_seed(seed),
                  collate_fn=collate_batch)
    if world_size > 1:
        if sampler != "shuffle":
            raise ConfigError("with several processes only sampler='shuffle' is supported")
        distributed_sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True,
                                                 seed=seed, drop_last=True)
        # drop_last: a last batch of 1 would break BatchNorm
        return DataLoader(dataset, batch_size=batch_size // world_size, sampler=distributed_sampler,
                          drop_last=True, **common)
    return DataLoader(dataset, batch_sampler=_batch_sampler(records, batch_size, sampler, num_instances, seed),
                      **common)


def _batch_sampler(records: Sequence[ImageRecord], batch_size: int, sampler: str, num_instances: int,
                   seed: int) -> Sampler[list[int]]:
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler must be one of {list(SAMPLERS)}, got {sampler!r}")
    if sampler == "pk":
        return IdentityBatchSampler([r.pid for r in records], batch_size, num_instances, seed=seed)
    return ShuffleBatchSampler(len(records), batch_size, seed=seed, drop_last=True)


class CachedFeatureLoader:
    """Training batches of precomputed feature maps: ``(features, pids, camids)``.

    For a trunk frozen below layer4 (`mmhpn.training`, ``feature_cache``): `features` holds
    layer3's output for every training image, `mirrored` that of its horizontally flipped
    image. Each item of a batch is its mirrored map with probability 0.5, as the image
    pipeline's random flip would give. Batches come from the same samplers as
    `build_train_loader` (same seeds, so the same batches); the flips are drawn from
    `generator`, which `set_loader_epoch` re-seeds per epoch, so a resumed run sees the
    same flips. One process only.
    """

    def __init__(self, features: torch.Tensor, mirrored: torch.Tensor, records: Sequence[ImageRecord],
                 batch_size: int, sampler: str = "shuffle", num_instances: int = 4, seed: int = 0):
        if features.shape != mirrored.shape or len(features) != len(records):
            raise ConfigError(f"feature cache: {len(records)} records, features {tuple(features.shape)}, "
                              f"mirrored {tuple(mirrored.shape)}; expected one map of each per record")
        if len(records) < batch_size:
            raise ConfigError(f"the training split has {len(records)} images, fewer than one batch ({batch_size})")
        self.features, self.mirrored = features, mirrored
        self.pids = torch.tensor([r.pid for r in records], dtype=torch.int64)
        self.camids = torch.tensor([r.camid for r in records], dtype=torch.int64)
        self.batch_sampler = _batch_sampler(records, batch_size, sampler, num_instances, seed)
        self.sampler = None
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self):
        for batch in self.batch_sampler:
            index = torch.as_tensor(batch, dtype=torch.int64)
            flip = (torch.rand(len(index), generator=self.generator) < 0.5).view(-1, 1, 1, 1)
            yield (torch.where(flip, self.mirrored[index], self.features[index]), self.pids[index],
                   self.camids[index])


def set_loader_epoch(loader: DataLoader, seed: int, epoch: int) -> None:
    """Make the next pass over a `build_train_loader` loader the batches and flips of `epoch`."""
    loader.generator.manual_seed(seed * 100_003 + epoch)
    sampler = loader.batch_sampler if loader.batch_sampler is not None and hasattr(loader.batch_sampler, "set_epoch") \
        else loader.sampler
    sampler.set_epoch(epoch)


def build_eval_loader(records: Sequence[ImageRecord], height: int = 384, width: int = 128,
                      batch_size: int = 128, num_workers: int = 0, cache_images: bool = False,
                      pin_memory: bool = False) -> DataLoader:
    """Evaluation loader: records in their given order, no augmentation, last batch kept."""
    dataset = ImageDataset(records, build_transforms(height, width, train=False), cache_images=cache_images)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      pin_memory=pin_memory, collate_fn=collate_batch)


def sample_grid(source, n_ids: int = 8, per_id: int = 6, split: str = "train", seed: int = 0,
                cell: tuple[int, int] = (128, 64), labels: bool = True) -> Image.Image:
    """A grid image: one row per identity (n_ids drawn at random), up to per_id images each.

    `source` is a dataset (its `split` records are used) or a sequence of records. Each
    image is captioned with its camera (``c1``...) when `labels`.
    """
    records = list(getattr(source, split) if hasattr(source, split) else source)
    if not records:
        raise DatasetError("sample_grid got no records")
    by_pid: dict[int, list[ImageRecord]] = defaultdict(list)
    for record in records:
        by_pid[record.pid].append(record)
    rng = np.random.default_rng(seed)
    pids = sorted(by_pid)
    pids = [pids[i] for i in sorted(rng.choice(len(pids), size=min(n_ids, len(pids)), replace=False))]
    h, w = cell
    label_h = 12 if labels else 0
    grid = Image.new("RGB", (w * per_id, (h + label_h) * len(pids)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for row, pid in enumerate(pids):
        chosen = sorted(by_pid[pid], key=lambda r: (r.camid, r.path))
        if len(chosen) > per_id:
            chosen = [chosen[i] for i in sorted(rng.choice(len(chosen), size=per_id, replace=False))]
        for col, record in enumerate(chosen):
            x, y = col * w, row * (h + label_h)
            grid.paste(decode_image(record.path).resize((w, h), Image.BILINEAR), (x, y + label_h))
            if labels:
                draw.text((x + 2, y), f"id {pid} c{record.camid + 1}", fill=(0, 0, 0))
    return grid
