"""Fine-tuning regimes: validation split, pretraining run (init_from), frozen trunk, feature cache."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from mmhpn.checkpoints import is_finished
from mmhpn.config import TrainConfig, config_hash, make_config, pretrain_overrides, pretraining_config
from mmhpn.data import (CachedFeatureLoader, ShuffleBatchSampler, build_eval_loader, build_train_loader, load_dataset,
                        set_loader_epoch, split_validation)
from mmhpn.errors import ConfigError
from mmhpn.model import build_model
from mmhpn.runs import run_dir_for, train_or_load
from mmhpn.trunk_cache import compute_layer3_maps


def _init_from(root, **overrides):
    return pretrain_overrides("unit", **{"synthetic_preset": "tiny", "data_root": str(root), "epochs": 1,
                                          **overrides})


# -- configuration and hash ---------------------------------------------------------------

def test_regime_fields_at_their_defaults_leave_the_hash_alone_and_change_it_when_set(tiny_root):
    base = make_config("unit")
    explicit = make_config("unit", val_fraction=0.0, init_from=None, freeze_below_layer4=False, feature_cache=False)
    assert config_hash(explicit) == config_hash(base)
    assert not {"val_fraction", "init_from", "freeze_below_layer4", "feature_cache"} & set(base.hashed_fields())
    changed = [make_config("unit", val_fraction=0.25), make_config("unit", freeze_below_layer4=True),
               make_config("unit", freeze_below_layer4=True, feature_cache=True),
               make_config("unit", init_from=_init_from(tiny_root))]
    hashes = {config_hash(c) for c in changed} | {config_hash(base)}
    assert len(hashes) == len(changed) + 1


def test_init_from_is_hashed_as_the_pretraining_configuration(tiny_root):
    def fine_tune(**pretraining):
        return make_config("unit", init_from=_init_from(tiny_root, **pretraining))

    assert fine_tune().hashed_fields()["init_from"] == config_hash(pretraining_config(_init_from(tiny_root)))
    assert config_hash(fine_tune(lr=0.02)) != config_hash(fine_tune())  # what it trains: hashed
    assert config_hash(fine_tune(data_root="/elsewhere")) == config_hash(fine_tune())  # where the data is: not
    again = TrainConfig.from_dict(json.loads(json.dumps(fine_tune().to_dict())))
    assert again == fine_tune() and config_hash(again) == config_hash(fine_tune())


@pytest.mark.parametrize("overrides, message", [
    ({"val_fraction": 1.0}, "val_fraction must be a number in"),
    ({"val_fraction": -0.1}, "val_fraction must be a number in"),
    ({"feature_cache": True}, "feature_cache needs freeze_below_layer4"),
    ({"freeze_below_layer4": 1}, "freeze_below_layer4 must be true or false"),
    ({"init_from": "runs/x"}, "init_from must be a dict"),
    ({"init_from": {"profile": "smoke"}, "pretrained": "imagenet"}, "set pretrained=None"),
    ({"init_from": {"profile": "smoke", "backbone": "resnet50"}}, "must be the same backbone"),
    ({"init_from": {"profile": "smoke", "init_from": {"profile": "smoke"}}}, "cannot itself have init_from"),
    ({"init_from": {"profile": "smoke", "epochs": 0}}, "epochs must be a positive integer"),
    ({"half_size_epochs": 2}, r"half_size_epochs \(2\) must be fewer than epochs \(2\)"),
    ({"half_size_epochs": -1}, "half_size_epochs must be a non-negative integer"),
    ({"half_size_epochs": 1, "height": 66, "width": 33}, "needs an even height and width"),
    ({"half_size_epochs": 1, "freeze_below_layer4": True, "feature_cache": True}, "cannot train epochs at half size"),
])
def test_bad_regime_settings_raise_one_clear_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_config("unit", **overrides)


# -- validation split ---------------------------------------------------------------------

def test_validation_split_holds_out_training_identities_and_drops_the_test_split(tiny_dataset):
    split = split_validation(tiny_dataset, 0.25)
    assert split.name == f"{tiny_dataset.name}-validation" and split.multi_query == []
    train_paths = {r.path for r in split.train}
    held_paths = {r.path for r in split.query + split.gallery}
    assert not train_paths & held_paths
    assert train_paths | held_paths == {r.path for r in tiny_dataset.train}  # nothing lost
    test_paths = {r.path for r in tiny_dataset.query + tiny_dataset.gallery + tiny_dataset.multi_query}
    assert not test_paths & (train_paths | held_paths)
    assert sorted({r.pid for r in split.train}) == list(range(split.num_train_pids)) == list(range(12))
    held_pids = {r.pid for r in split.query}  # the dataset's original ids, as test splits keep them
    assert len(held_pids) == 4 and held_pids == {r.pid for r in split.query + split.gallery}
    assert held_pids.isdisjoint(split.train_pid_map) and len(split.train_pid_map) == 12
    assert held_pids | set(split.train_pid_map) == set(tiny_dataset.train_pid_map)
    keys = [(r.pid, r.camid) for r in split.query]
    assert len(keys) == len(set(keys))  # one query per identity and camera
    gallery_keys = {(r.pid, r.camid) for r in split.gallery}
    assert gallery_keys <= set(keys)
    assert split_validation(tiny_dataset, 0.25).query == split.query  # seeded: the same people every time
    with pytest.raises(ConfigError, match="holds out 0"):
        split_validation(tiny_dataset, 0.01)


@pytest.mark.slow
def test_a_validation_run_is_scored_on_the_held_out_identities(tiny_root, tmp_path):
    config = make_config("unit", data_root=str(tiny_root), val_fraction=0.25, epochs=1, lr_decay_epochs=())
    run = train_or_load(config, tmp_path, progress=False)
    split = split_validation(load_dataset("synthetic", tiny_root, preset="tiny", warn_unmatched=False), 0.25)
    assert run.metrics["dataset"] == "synthetic-validation" and "multi_query" not in run.metrics
    assert run.metrics["num_queries"] + run.metrics["num_skipped"] == len(split.query)


# -- model split and feature cache --------------------------------------------------------

def test_forward_from_layer3_equals_the_full_forward():
    torch.manual_seed(0)
    model = build_model(5, preset="mmhpn", backbone="resnet34", layout={"conv5_1": (4, 3), "conv5_2": (2,),
                                                                          "conv5_3": (1,)})
    images = torch.randn(2, 3, 64, 32)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(images), model.forward_from_layer3(model.trunk_below_layer4(images)))
        model.train()
        for full, split in zip(model(images), model.forward_from_layer3(model.trunk_below_layer4(images))):
            assert torch.allclose(full, split, atol=1e-6)


def test_the_narrow_backbone_keeps_three_layer4_blocks_and_refuses_imagenet_weights():
    model = build_model(5, preset="mmhpn", backbone="resnet34-l4w256")
    assert len(model.layer4) == 3 and model.embedding_dim == 15 * 256
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, 128, 64))
    assert out.shape == (1, 15 * 256)
    with pytest.raises(ConfigError, match="has no ImageNet weights"):
        build_model(5, backbone="resnet34-l4w256", pretrained="imagenet")


def test_cached_feature_batches_follow_the_image_loaders_batches_and_flip_half(tiny_dataset):
    config = make_config("unit")
    model = build_model(16, preset="baseline", backbone="resnet34").eval()
    records = tiny_dataset.train
    features, mirrored = compute_layer3_maps(model, records, config, torch.device("cpu"), "fp32")
    images = next(iter(build_eval_loader(records[:3], 64, 32, batch_size=3)))[0]
    with torch.no_grad():
        assert torch.allclose(features[:3], model.trunk_below_layer4(images), atol=1e-5)
        assert torch.allclose(mirrored[:3], model.trunk_below_layer4(torch.flip(images, dims=[3])), atol=1e-5)
    for sampler in ("shuffle", "pk"):
        image_loader = build_train_loader(records, 64, 32, batch_size=16, sampler=sampler, seed=3)
        feature_loader = CachedFeatureLoader(features, mirrored, records, 16, sampler, 4, seed=3)
        set_loader_epoch(image_loader, 3, 1)
        set_loader_epoch(feature_loader, 3, 1)
        image_pids = [pids.tolist() for _, pids, _ in image_loader]
        batches = list(feature_loader)
        assert [pids.tolist() for _, pids, _ in batches] == image_pids and len(batches) == len(feature_loader)
    # One batch of every image: each item is its stored map or its mirror image's, about half flipped.
    x, _, _ = next(iter(CachedFeatureLoader(features, mirrored, records, len(records), "shuffle", seed=0)))
    order = torch.as_tensor(next(iter(ShuffleBatchSampler(len(records), len(records), seed=0))))
    is_plain = (x == features[order]).flatten(1).all(1)
    is_mirror = (x == mirrored[order]).flatten(1).all(1)
    assert bool((is_plain | is_mirror).all())
    assert 0 < int((is_mirror & ~is_plain).sum()) < len(records)


# -- the whole regime on the smoke settings -------------------------------------------------

@pytest.mark.slow
def test_fine_tuning_from_a_cached_pretraining_run_with_a_frozen_cached_trunk(tiny_root, tmp_path):
    init_from = _init_from(tiny_root)
    config = make_config("unit", data_root=str(tiny_root), val_fraction=0.25, init_from=init_from,
                         freeze_below_layer4=True, feature_cache=True, epochs=2, lr_decay_epochs=(), eval_every=1)
    run = train_or_load(config, tmp_path, progress=False)
    pretraining_dir = run_dir_for(pretraining_config(init_from), tmp_path)
    assert is_finished(pretraining_dir) and is_finished(run.path)  # cached like any run, beside the fine-tuning
    source = torch.load(pretraining_dir / "model.pt", weights_only=True)["model"]
    tuned = run.load_model().state_dict()
    frozen = [k for k in tuned if k.startswith(("stem.", "layer1.", "layer2.", "layer3."))]
    assert frozen and all(torch.equal(tuned[k], source[k]) for k in frozen)  # weights and BN statistics
    assert any(not torch.equal(tuned[k], source[k]) for k in tuned if k.startswith("layer4.") and "weight" in k)
    assert run.metrics["dataset"] == "synthetic-validation" and run.metrics["feature_cache_seconds"] > 0
    assert list(run.history["epoch"]) == [1, 2] and run.history["loss"].notna().all()
    # The frozen trunk's layer3 maps (training images, validation query and gallery) were
    # stored once, beside the runs.
    stored = sorted((tmp_path / "trunk-features").glob("*.pt"))
    assert len(stored) == 3
    # A second seed fine-tunes from the same, cached, pretraining run and reads the same maps.
    mtime = (pretraining_dir / "model.pt").stat().st_mtime
    map_times = [p.stat().st_mtime_ns for p in stored]
    other = train_or_load(dataclasses.replace(config, seed=1), tmp_path, progress=False)
    assert other.trained_now and (pretraining_dir / "model.pt").stat().st_mtime == mtime
    assert sorted((tmp_path / "trunk-features").glob("*.pt")) == stored
    assert [p.stat().st_mtime_ns for p in stored] == map_times
    # Its final scores from the cached maps are the full model's scores on the images.
    from mmhpn.data import load_data
    from mmhpn.evaluation.model import evaluate_model

    full = evaluate_model(other.load_model(), load_data(config), height=config.height, width=config.width,
                          precision="fp32", progress=False)
    assert full["mAP"] == pytest.approx(other.metrics["mAP"], abs=1e-6)
    assert full["rank1"] == pytest.approx(other.metrics["rank1"], abs=1e-6)
    # The descriptors a figure ranks (Run.descriptors) are the ones its metrics came from, read
    # from the stored maps: they score exactly the recorded numbers and store nothing new.
    from mmhpn.evaluation import evaluate_features
    from mmhpn.training import load_training_data

    def frozen_trunk_runs(images):
        raise AssertionError("the frozen trunk ran again instead of its stored maps being read")

    data, model = load_training_data(config), other.load_model()
    model.trunk_below_layer4 = frozen_trunk_runs
    query, gallery = (other.descriptors(model, records) for records in (data.query, data.gallery))
    scores = evaluate_features(query, gallery, [r.pid for r in data.query], [r.pid for r in data.gallery],
                               [r.camid for r in data.query], [r.camid for r in data.gallery],
                               protocol=config.eval_protocol).as_dict()
    assert (scores["mAP"], scores["rank1"]) == (other.metrics["mAP"], other.metrics["rank1"])
    assert sorted((tmp_path / "trunk-features").glob("*.pt")) == stored


@pytest.mark.slow
def test_frozen_without_cache_trains_layer4_and_heads_only(tiny_root, tmp_path):
    config = make_config("unit", data_root=str(tiny_root), freeze_below_layer4=True, epochs=1, lr_decay_epochs=())
    torch.manual_seed(config.seed)
    initial = build_model(16, preset="mmhpn", backbone="resnet34", layout=config.layout).state_dict()
    run = train_or_load(config, tmp_path, progress=False)
    tuned = run.load_model().state_dict()
    assert all(torch.equal(tuned[k], initial[k]) for k in tuned if k.startswith(("stem.", "layer3.")))
    assert any(not torch.equal(tuned[k], initial[k]) for k in tuned if k.startswith("heads."))


def test_half_size_epochs_train_the_first_epochs_at_half_size_and_evaluate_at_full_size(tiny_root, tmp_path,
                                                                                           monkeypatch):
    from mmhpn import training

    # 66 rows: the half-size input, 33 rows, is odd, which half_size_epochs itself would refuse
    config = make_config("unit", data_root=str(tiny_root), preset="baseline", half_size_epochs=1, epochs=2,
                         height=66)
    seen = []  # (epoch, input size) of every training batch
    one_epoch = training._train_one_epoch

    def recording(model, forward, loader, criterion, optimizer, scaler, config, epoch, *rest):
        def watched(images):
            seen.append((epoch, tuple(images.shape[-2:])))
            return forward(images)
        return one_epoch(model, watched, loader, criterion, optimizer, scaler, config, epoch, *rest)

    evaluate_model = training.evaluate_model
    evaluated = []  # the input size of every evaluation

    def watched_evaluation(*args, **options):
        evaluated.append((options["height"], options["width"]))
        return evaluate_model(*args, **options)

    loaders = []  # every training loader, to see that the half-size one shares the decoded images
    train_loader = training.train_loader

    def kept_loader(*args, **options):
        loaders.append(train_loader(*args, **options))
        return loaders[-1]

    monkeypatch.setattr(training, "train_loader", kept_loader)
    monkeypatch.setattr(training, "_train_one_epoch", recording)
    monkeypatch.setattr(training, "evaluate_model", watched_evaluation)
    run = train_or_load(config, tmp_path, progress=False)
    assert {size for epoch, size in seen if epoch == 0} == {(33, 16)}
    assert {size for epoch, size in seen if epoch == 1} == {(66, 32)}
    assert evaluated == [(66, 32)]
    assert len(loaders) == 2 and loaders[0].dataset.cache is not None
    assert loaders[1].dataset.cache is loaders[0].dataset.cache  # decoded once
    assert len(run.history) == 2 and 0.0 <= run.metrics["mAP"] <= 1.0
    assert config_hash(config) != config_hash(make_config("unit", data_root=str(tiny_root), preset="baseline",
                                                          epochs=2, height=66))
    assert "half_size_epochs" not in make_config("unit").hashed_fields()  # at 0: every earlier hash unchanged


@pytest.mark.slow
def test_pretrain_command_trains_once_and_prints_init_from(tiny_root, tmp_path, capsys):
    from mmhpn.cli import main

    argv = ["pretrain", "--profile", "smoke", "--synthetic-preset", "tiny", "--data-root", str(tiny_root),
            "--epochs", "1", "--runs-dir", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "(trained)" in out
    init_from = json.loads(out.split("init_from=")[1])
    assert is_finished(run_dir_for(pretraining_config(init_from), tmp_path))
    assert main(argv) == 0 and "loaded from the run folder" in capsys.readouterr().out


# -- the shared trunk cache ---------------------------------------------------------------

def test_trunk_cache_key_follows_the_trunk_the_input_and_every_image_file(tiny_root, tmp_path):
    import shutil

    from mmhpn.data.market import ImageRecord
    from mmhpn.trunk_cache import cache_key

    folder = tmp_path / "images"
    shutil.copytree(tiny_root / "bounding_box_train", folder)
    records = [ImageRecord(str(p), i, 0) for i, p in enumerate(sorted(folder.glob("*.jpg"))[:4])]
    cpu = torch.device("cpu")
    config = make_config("unit", data_root=str(tiny_root), init_from=_init_from(tiny_root),
                         freeze_below_layer4=True, feature_cache=True)
    key = cache_key(config, records, cpu, "fp32")
    assert cache_key(dataclasses.replace(config, seed=5, preset="baseline", loss="psl"), records, cpu, "fp32") == key
    others = [cache_key(dataclasses.replace(config, init_from=_init_from(tiny_root, epochs=2)), records, cpu, "fp32"),
              cache_key(dataclasses.replace(config, height=128, width=64), records, cpu, "fp32"),
              cache_key(config, records, cpu, "bf16"),
              cache_key(config, records[:3], cpu, "fp32"),
              cache_key(config, [records[0]._replace(pid=9), *records[1:]], cpu, "fp32")]
    Path(records[1].path).write_bytes(Path(records[1].path).read_bytes() + b"\0")  # an edited image file
    others.append(cache_key(config, records, cpu, "fp32"))
    assert len({key, *others}) == len(others) + 1
    with pytest.raises(ConfigError, match="init_from"):
        cache_key(make_config("unit", freeze_below_layer4=True, feature_cache=True), records, cpu, "fp32")


def test_trunk_cache_computes_once_and_sets_a_damaged_file_aside(tiny_root, tiny_dataset, tmp_path, capsys):
    from mmhpn.trunk_cache import layer3_maps

    config = make_config("unit", data_root=str(tiny_root), init_from=_init_from(tiny_root),
                         freeze_below_layer4=True, feature_cache=True)
    model = build_model(16, preset="baseline", backbone="resnet34").eval()
    records, cpu = tiny_dataset.query, torch.device("cpu")
    plain, none = layer3_maps(model, records, config, cpu, "fp32", cache_dir=tmp_path, mirrored=False)
    assert none is None and len(plain) == len(records)
    # Asked again with the mirror maps: computed again (the file had none), then served.
    maps, mirrored = layer3_maps(model, records, config, cpu, "fp32", cache_dir=tmp_path)
    assert torch.equal(maps, plain) and mirrored.shape == maps.shape
    (path,) = tmp_path.glob("*.pt")
    mtime = path.stat().st_mtime_ns
    again, again_mirrored = layer3_maps(model, records, config, cpu, "fp32", cache_dir=tmp_path)
    assert torch.equal(again_mirrored, mirrored) and path.stat().st_mtime_ns == mtime
    path.write_bytes(path.read_bytes()[:100])  # truncated: set aside (kept), computed again
    maps, _ = layer3_maps(model, records, config, cpu, "fp32", cache_dir=tmp_path, mirrored=False)
    assert torch.equal(maps, plain)
    assert "could not be read" in capsys.readouterr().out
    assert len(list(tmp_path.glob("*.pt.damaged-*"))) == 1 and path.exists()


# -- replicates and the per-user pretraining folder ------------------------------------------

def test_a_replicate_seed_is_the_seed_of_its_pretraining_run_too():
    for profile in ("demo", "smoke"):
        configs = [make_config(profile, seed=seed) for seed in (0, 1, 2)]
        assert [c.init_from["seed"] for c in configs] == [0, 1, 2]
        assert len({pretraining_config(c.init_from).seed for c in configs}) == 3
        assert len({config_hash(c) for c in configs}) == 3
    # Seed 0's pretraining run is the one it always was: writing its seed out changes no hash.
    implicit = {k: v for k, v in make_config("demo").init_from.items() if k != "seed"}
    assert config_hash(pretraining_config(implicit)) == config_hash(pretraining_config(make_config("demo").init_from))
    # An init_from given explicitly is kept as given, whatever the fine-tuning seed.
    explicit = pretrain_overrides("smoke", seed=5)
    assert make_config("smoke", seed=1, init_from=explicit).init_from["seed"] == 5
    assert make_config("unit", seed=3).init_from is None  # no pretraining run, nothing to seed


def test_pretraining_runs_live_in_one_per_user_folder(monkeypatch, tmp_path):
    from mmhpn.runs import PRETRAINING_CACHE_VARIABLE, pretraining_dir

    monkeypatch.delenv(PRETRAINING_CACHE_VARIABLE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert pretraining_dir("runs") == tmp_path / "xdg" / "mmhpn" / "pretraining"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert pretraining_dir("anything") == tmp_path / "home" / ".cache" / "mmhpn" / "pretraining"
    monkeypatch.setenv(PRETRAINING_CACHE_VARIABLE, str(tmp_path / "shared"))
    assert pretraining_dir("runs") == tmp_path / "shared"
    monkeypatch.setenv(PRETRAINING_CACHE_VARIABLE, "runs")  # the test suite's setting
    assert pretraining_dir(tmp_path / "book-runs") == tmp_path / "book-runs"


@pytest.mark.slow
def test_two_runs_folders_share_one_pretraining_run(monkeypatch, tiny_root, tmp_path):
    from mmhpn.runs import PRETRAINING_CACHE_VARIABLE

    monkeypatch.setenv(PRETRAINING_CACHE_VARIABLE, str(tmp_path / "cache"))
    init_from = _init_from(tiny_root)
    config = make_config("unit", data_root=str(tiny_root), init_from=init_from, freeze_below_layer4=True,
                         feature_cache=True, epochs=1, lr_decay_epochs=())
    first = train_or_load(config, tmp_path / "clone-a", progress=False)
    second = train_or_load(config, tmp_path / "clone-b", progress=False)
    pretraining = run_dir_for(pretraining_config(init_from), tmp_path / "cache")
    assert is_finished(pretraining) and first.trained_now and second.trained_now
    assert not list((tmp_path / "clone-a").glob("pretrain-*")) and not list((tmp_path / "clone-b").glob("pretrain-*"))
    assert torch.equal(first.load_model().state_dict()["layer3.0.conv1.weight"],
                       second.load_model().state_dict()["layer3.0.conv1.weight"])


def test_the_demo_schedules_are_the_selection_rules_output():
    """The demo profile's pretraining schedule and input and its fine-tuning schedule are what the rules of
    mmhpn.paper.selection choose from the recorded selections (mmhpn/resources/)."""
    from mmhpn.paper import selection
    from mmhpn.resources import read_text

    demo = make_config("demo")
    pretraining = json.loads(read_text("pretraining-selection.json"))
    chosen = selection.choose_pretraining(pretraining["candidates"], pretraining["tolerance_pp"])
    source = pretraining_config(demo.init_from)
    assert (source.epochs, list(source.lr_decay_epochs)) == (chosen["epochs"], chosen["lr_decay_epochs"])
    assert source.val_fraction == pretraining["val_fraction"] and pretraining["profile"] == "demo"
    regime = json.loads(read_text("regime-selection.json"))
    chosen = selection.choose_regime(regime["results"], regime["tolerance_pp"])
    assert (demo.epochs, list(demo.lr_decay_epochs)) == (chosen["epochs"], chosen["lr_decay_epochs"])
    # the fine-tuning candidates started from the demo's own pretraining runs, one per replicate
    first = regime["results"][0]
    assert [pretraining_config(i) for i in first["pretraining"]] == \
        [pretraining_config(make_config("demo", seed=r).init_from) for r in first["replicates"]]
    # the pretraining input: a smaller one is used only where its rule chose it
    inputs = json.loads(read_text("pretraining-input-selection.json"))
    chosen = selection.choose_pretraining_input(inputs["default"], inputs["candidates"], inputs["tolerance_pp"],
                                                inputs["pixel_epochs"])
    lines = inputs["candidates"][chosen] if chosen else inputs["default"]
    assert [pretraining_config(i) for i in lines[0]["pretraining"]] == \
        [pretraining_config(make_config("demo", seed=r).init_from) for r in lines[0]["replicates"]]
    assert inputs["pixel_epochs"]["default"] == selection.pretraining_pixel_epochs(
        pretraining_config(inputs["default"][0]["pretraining"][0]))


def test_the_selection_rules_on_made_up_candidates():
    from mmhpn.paper import selection

    pre = [{"epochs": 4, "lr_decay_epochs": [3], "val_mAP_mean": 70.0},
           {"epochs": 8, "lr_decay_epochs": [6], "val_mAP_mean": 79.5},
           {"epochs": 12, "lr_decay_epochs": [9], "val_mAP_mean": 80.0}]
    assert selection.choose_pretraining(pre, 1.0) == {"epochs": 8, "lr_decay_epochs": [6]}
    assert selection.choose_pretraining(pre, 0.1) == {"epochs": 12, "lr_decay_epochs": [9]}
    lines = [{"epochs": 5, "lr_decay_epochs": [3], "preset": "baseline", "val_mAP_mean": 80.0},
             {"epochs": 5, "lr_decay_epochs": [3], "preset": "mmhpn", "val_mAP_mean": 79.0},
             {"epochs": 7, "lr_decay_epochs": [4], "preset": "baseline", "val_mAP_mean": 80.2},
             {"epochs": 7, "lr_decay_epochs": [4], "preset": "mmhpn", "val_mAP_mean": 80.0}]
    # 5 epochs is within 0.5 pp for the baseline but not for mmhpn: every preset must qualify
    assert selection.choose_regime(lines, 0.5) == {"epochs": 7, "lr_decay_epochs": [4]}
    assert selection.choose_regime(lines, 1.0) == {"epochs": 5, "lr_decay_epochs": [3]}
    assert selection.parse_schedule("6:4") == (6, (4,)) and selection.parse_schedule("6") == (6, ())


def test_the_pretraining_input_rule_takes_the_fewest_pixel_epochs_that_keep_up():
    from mmhpn.paper import selection

    default = [{"preset": "baseline", "val_mAP_mean": 80.0}, {"preset": "mmhpn", "val_mAP_mean": 82.0}]
    def lines(baseline, mmhpn):
        return [{"preset": "baseline", "val_mAP_mean": baseline}, {"preset": "mmhpn", "val_mAP_mean": mmhpn}]
    candidates = {"96x48": lines(79.8, 81.9), "64x32": lines(79.6, 81.6), "32x16": lines(70.0, 83.0),
                  "half size for 9 epochs": lines(79.9, 81.8)}
    costs = {"96x48": 12 * 96 * 48, "64x32": 12 * 64 * 32, "32x16": 12 * 32 * 16,
             "half size for 9 epochs": 9 * 64 * 32 + 3 * 128 * 64}  # 43008: between 64x32's and 96x48's
    assert selection.choose_pretraining_input(default, candidates, 0.5, costs) == "64x32"
    assert selection.choose_pretraining_input(default, candidates, 0.3, costs) == "half size for 9 epochs"
    assert selection.choose_pretraining_input(default, candidates, 0.15, costs) is None  # the default stays
    assert selection.choose_pretraining_input(default, {}, 0.5, costs) is None
    assert selection.parse_input("64x32") == (64, 32)


def test_pixel_epochs_count_the_half_size_epochs_at_a_quarter():
    from mmhpn.paper import selection

    source = pretraining_config(make_config("demo").init_from)
    assert selection.pretraining_pixel_epochs(source) == source.epochs * source.height * source.width
    half = pretraining_config({**make_config("demo").init_from, "half_size_epochs": 9})
    assert selection.pretraining_pixel_epochs(half) == 9 * 64 * 32 + 3 * 128 * 64


def test_the_pretraining_input_selection_is_read_and_its_rule_re_applied(tmp_path):
    from mmhpn.paper import views

    def lines(name, baseline, mmhpn):
        return [{"variant": name, "preset": preset, "val_mAP": [value] * 3, "val_mAP_mean": value}
                for preset, value in (("baseline", baseline), ("mmhpn", mmhpn))]
    from mmhpn.versions import TRAINING_SEMANTICS_VERSION

    record = {"tolerance_pp": 0.5, "rule": "the rule",
              "recorded": {"utc": "t", "machine": "m", "training_semantics_version": TRAINING_SEMANTICS_VERSION},
              "default": lines("default", 90.0, 91.0),
              "candidates": {"64x32": lines("pretraining at 64x32", 89.0, 91.5)},
              "pretraining_minutes": {"default": [19.0, 19.5, 18.5], "64x32": [8.0, 8.0, 8.0]},
              "pixel_epochs": {"default": 12 * 128 * 64, "64x32": 12 * 64 * 32}, "chosen": None}
    path = tmp_path / "pretraining-input-selection.json"
    path.write_text(json.dumps(record))
    table, reading = views.pretraining_input_selection(path)
    assert list(table["regime"]) == ["default", "default", "pretraining at 64x32", "pretraining at 64x32"]
    assert list(table["pretraining min a run"]) == [19.0, 19.0, 8.0, 8.0]
    assert list(table["pretraining pixel-epochs"]) == [98304, 98304, 24576, 24576]
    assert reading.endswith("no cheaper input keeps up with the default on validation identities, so the trunk "
                            "stays pretrained at the fine-tuning input (19.0 min a pretraining run; 64x32: 8.0 min).")
    record["chosen"] = "64x32"  # not what the rule picks from these numbers
    path.write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="is not what its rule picks"):
        views.pretraining_input_selection(path)
    record["candidates"]["64x32"] = lines("pretraining at 64x32", 89.6, 91.5)
    path.write_text(json.dumps(record))
    assert "pretraining at 64x32 keeps up with the default" in views.pretraining_input_selection(path)[1]
