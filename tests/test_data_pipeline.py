"""Input pipeline: transforms, ImageDataset (cache, corrupt files), samplers, loaders, sample grid."""
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from mmhpn.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    IdentityBatchSampler,
    ImageDataset,
    ImageRecord,
    ShuffleBatchSampler,
    build_eval_loader,
    build_train_loader,
    build_transforms,
    sample_grid,
)
from mmhpn.errors import ConfigError, DatasetError


def test_transforms_resize_normalise_and_flip_only_in_training(tiny_dataset):
    image = Image.open(tiny_dataset.query[0].path).convert("RGB")
    eval_tf = build_transforms(96, 32, train=False)
    out = eval_tf(image)
    assert out.shape == (3, 96, 32) and out.dtype == torch.float32
    assert torch.equal(out, eval_tf(image))  # no randomness at test time
    # A uniform image at ImageNet's mean colour becomes (close to) zero.
    mean_image = Image.new("RGB", (64, 128), tuple(round(255 * m) for m in IMAGENET_MEAN))
    assert eval_tf(mean_image).abs().max() < 0.02
    reference = v2.Compose([v2.PILToTensor(), v2.Resize((96, 32)), v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    assert torch.allclose(eval_tf(mean_image), reference(mean_image), atol=1e-5)
    flat = Image.new("RGB", (32, 96), (10, 200, 30))  # no resize involved: compare normalisation exactly
    assert torch.allclose(eval_tf(flat), reference(flat), atol=1e-5)
    train_tf = build_transforms(96, 32, train=True)
    torch.manual_seed(0)
    outs = [train_tf(image) for _ in range(16)]
    flipped = torch.flip(out, dims=[2])
    assert all(torch.equal(o, out) or torch.equal(o, flipped) for o in outs)  # flip is the only change
    assert any(torch.equal(o, flipped) for o in outs) and any(torch.equal(o, out) for o in outs)


def test_extra_augmentations_are_opt_in_and_named():
    tf = build_transforms(64, 32, train=True, extra=("random-crop", "color-jitter", "random-erasing"))
    assert tf(Image.new("RGB", (64, 128), (10, 200, 30))).shape == (3, 64, 32)
    with pytest.raises(ConfigError, match="unknown augmentation"):
        build_transforms(64, 32, extra=("mixup",))
    with pytest.raises(ConfigError, match="training only"):
        build_transforms(64, 32, train=False, extra=("random-crop",))


def test_image_dataset_items_and_uint8_cache(tiny_dataset):
    tf = build_transforms(64, 32, train=False)
    plain = ImageDataset(tiny_dataset.gallery[:5], tf)
    cached = ImageDataset(tiny_dataset.gallery[:5], tf, cache_images=True)
    assert cached.cache[0].dtype == np.uint8 and cached.cache[0].shape == (128, 64, 3)
    for k in range(5):
        image, pid, camid = plain[k]
        assert (pid, camid) == (tiny_dataset.gallery[k].pid, tiny_dataset.gallery[k].camid)
        assert torch.equal(image, cached[k][0])  # caching changes nothing but speed
    with pytest.raises(DatasetError, match="no records"):
        ImageDataset([], tf)


def test_corrupt_or_missing_image_names_the_file(tmp_path):
    bad = tmp_path / "0001_c1s1_000001_01.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    good = tmp_path / "0001_c2s1_000001_01.jpg"
    Image.new("RGB", (64, 128)).save(good)
    truncated = tmp_path / "0001_c3s1_000001_01.jpg"
    truncated.write_bytes(good.read_bytes()[:200])
    dataset = ImageDataset([ImageRecord(str(p), 0, 0) for p in (good, bad, truncated)], build_transforms(64, 32))
    dataset[0]
    with pytest.raises(DatasetError, match="0001_c1s1_000001_01.jpg"):
        dataset[1]
    with pytest.raises(DatasetError, match="0001_c3s1_000001_01.jpg"):
        dataset[2]
    with pytest.raises(DatasetError, match="0001_c1s1_000001_01.jpg"):
        ImageDataset(dataset.records, cache_images=True)


def test_shuffle_sampler_is_a_seeded_permutation_per_epoch():
    sampler = ShuffleBatchSampler(10, batch_size=4, seed=3)
    first = list(sampler)
    assert len(first) == len(sampler) == 2 and all(len(b) == 4 for b in first)
    flat = [i for b in first for i in b]
    assert len(set(flat)) == 8  # without replacement; the incomplete last batch is dropped
    second = list(sampler)  # next epoch: another order
    assert second != first
    sampler.set_epoch(0)
    assert list(sampler) == first  # resuming reproduces the epoch
    assert sum(map(len, ShuffleBatchSampler(10, 4, drop_last=False))) == 10
    with pytest.raises(ConfigError, match="cannot fill one batch"):
        ShuffleBatchSampler(3, batch_size=4)


def test_identity_sampler_p_by_k():
    pids = [0] * 7 + [1] * 2 + [2] * 5 + [3] * 4 + [4] * 1 + [5] * 9
    sampler = IdentityBatchSampler(pids, batch_size=8, num_instances=4, seed=1)
    batches = list(sampler)
    assert 0 < len(batches) <= len(sampler)
    for batch in batches:
        counts = Counter(pids[i] for i in batch)
        assert len(batch) == 8 and len(counts) == 2 and set(counts.values()) == {4}
    seen = {i for b in batches for i in b}
    assert len(seen) >= 0.6 * len(pids)
    sampler.set_epoch(0)
    assert list(sampler) == batches
    with pytest.raises(ConfigError, match="multiple of num_instances"):
        IdentityBatchSampler(pids, batch_size=10, num_instances=4)
    with pytest.raises(ConfigError, match="at least 4 identities"):
        IdentityBatchSampler([0, 1, 2], batch_size=8, num_instances=2)


def test_train_and_eval_loaders(tiny_dataset):
    torch.manual_seed(0)
    loader = build_train_loader(tiny_dataset.train, height=64, width=32, batch_size=8, seed=0)
    images, pids, camids = next(iter(loader))
    assert images.shape == (8, 3, 64, 32) and pids.dtype == torch.int64
    assert int(pids.max()) < tiny_dataset.num_train_pids and len(loader) == len(tiny_dataset.train) // 8
    pk = build_train_loader(tiny_dataset.train, height=64, width=32, batch_size=8, sampler="pk", num_instances=4)
    _, pids, _ = next(iter(pk))
    assert sorted(Counter(pids.tolist()).values()) == [4, 4]
    with pytest.raises(ConfigError, match="unknown sampler"):
        build_train_loader(tiny_dataset.train, sampler="triplet")
    workers = build_train_loader(tiny_dataset.train, height=64, width=32, batch_size=8, num_workers=1, seed=0)
    images_w, pids_w, _ = next(iter(workers))  # same batches from a worker process
    assert images_w.shape == (8, 3, 64, 32)
    first_batch = next(iter(ShuffleBatchSampler(len(tiny_dataset.train), 8)))
    assert pids_w.tolist() == [tiny_dataset.train[i].pid for i in first_batch]
    eval_loader = build_eval_loader(tiny_dataset.query, height=64, width=32, batch_size=16)
    pids = torch.cat([batch[1] for batch in eval_loader])
    assert pids.tolist() == [r.pid for r in tiny_dataset.query]  # order kept, last partial batch kept


def test_sample_grid_renders(tiny_dataset):
    grid = sample_grid(tiny_dataset, n_ids=3, per_id=4, seed=0)
    assert isinstance(grid, Image.Image) and grid.size == (4 * 64, 3 * (128 + 12))
    pixels = np.asarray(grid)
    assert pixels.std() > 10  # pedestrians, not a blank canvas
    from_records = sample_grid(tiny_dataset.query, n_ids=2, per_id=2, labels=False)
    assert from_records.size == (2 * 64, 2 * 128)
