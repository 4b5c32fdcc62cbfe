"""The student tools on a unit-profile run: `mmhpn extract`, `mmhpn rank`, `mmhpn export`."""
from __future__ import annotations

import csv
import importlib.util
import json
import shutil

import numpy as np
import pytest
import torch

from mmhpn import build_model
from mmhpn.cli import main
from mmhpn.config import make_config
from mmhpn.data import build_eval_loader, load_market_layout
from mmhpn.errors import MMHPNError
from mmhpn.evaluation import evaluate_features, extract_features, extract_images
from mmhpn.evaluation.images import load_inputs
from mmhpn.runs import train_or_load

EXPORT_READY = all(importlib.util.find_spec(name) for name in ("onnx", "onnxscript", "onnxruntime"))
needs_export_extra = pytest.mark.skipif(not EXPORT_READY, reason="the export extra (onnx, onnxscript, onnxruntime) "
                                                                 "is not installed: pip install -e '.[export]'")


@pytest.fixture(scope="module")
def unit_run(tiny_root, tmp_path_factory):
    """A one-epoch unit-profile run whose evaluation flip-averages (eval_flip), via the run cache."""
    config = make_config("unit", data_root=str(tiny_root), epochs=1, eval_flip=True)
    return train_or_load(config, tmp_path_factory.mktemp("runs"), progress=False)


def _one_line_error(capsys, argv, command):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mmhpn {command}: error: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize("argv, line", [
    (["extract", "--images", "x", "--out", "query.npy"], "--out must name a .npz file"),
    (["rank", "--query", "q.jpg", "--gallery", "g", "--out", "rank.jpg"], "--out must name a .png file"),
    (["rank", "--query", "q.jpg", "--gallery", "g", "--out", "rank.png", "--csv", "rank.txt"],
     "--csv must name a .csv file"),
])
def test_a_wrong_output_suffix_is_one_line_before_anything_loads(argv, line, capsys, tmp_path):
    # checked first: the run folder does not exist, and the error is still about the file name
    err = _one_line_error(capsys, [*argv, "--run-dir", str(tmp_path / "no-run")], argv[0])
    assert line in err


def test_the_descriptor_options_are_the_runs_evaluation_options():
    from mmhpn.evaluation.images import run_descriptor_options
    from mmhpn.training import evaluation_options

    config = make_config("smoke", eval_flip=True)
    options = run_descriptor_options(config, "bf16")
    assert options == {"height": 128, "width": 64, "flip": True, "precision": "bf16", "channels_last": True}
    assert all(evaluation_options(config, "bf16")[key] == value for key, value in options.items())


def _protocol_features(model, records, config):
    """The descriptors `evaluate_model` scores (its loader path), for comparison."""
    loader = build_eval_loader(records, config.height, config.width, batch_size=16)
    return extract_features(model, loader, flip=config.eval_flip, progress=False)[0]


@pytest.mark.slow
def test_extract_saves_the_protocols_descriptors_with_names(unit_run, tiny_root, tmp_path, capsys):
    out = tmp_path / "query.npz"
    assert main(["extract", "--run-dir", str(unit_run.path), "--images", str(tiny_root / "query"), "--out", str(out),
                 "--batch-size", "7", "--device", "cpu", "--no-progress"]) == 0
    assert "0 image(s) skipped" in capsys.readouterr().out
    saved = np.load(out)  # no pickled objects: allow_pickle stays False
    dataset = load_market_layout(tiny_root)
    query = sorted(dataset.query, key=lambda record: record.path)
    assert saved["names"].tolist() == [record.path.rsplit("/", 1)[1] for record in query]
    model = unit_run.load_model()
    assert saved["features"].shape == (len(query), model.embedding_dim) == (len(query), int(saved["descriptor_dim"]))
    assert str(saved["run_hash"]) == json.loads((unit_run.path / "config.json").read_text())["hash"]
    assert bool(saved["flip"]) and saved["skipped"].tolist() == []
    assert str(saved["precision"]) == "fp32"  # --precision run: the unit run's own
    np.testing.assert_allclose(saved["features"], _protocol_features(model, query, unit_run.config).numpy(),
                               rtol=0, atol=1e-5)
    # With the gallery's descriptors, the run's own metrics come back: same descriptors, same protocol.
    gallery = extract_images(model, [r.path for r in dataset.gallery], height=unit_run.config.height,
                             width=unit_run.config.width, flip=True, progress=False).features
    result = evaluate_features(saved["features"], gallery, [r.pid for r in query], [r.pid for r in dataset.gallery],
                               [r.camid for r in query], [r.camid for r in dataset.gallery])
    assert result.mAP == pytest.approx(unit_run.metrics["mAP"], abs=1e-6)


@pytest.mark.slow
def test_extract_stops_at_or_skips_an_unreadable_image(unit_run, tiny_root, tmp_path, capsys):
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    first, second = sorted((tiny_root / "query").iterdir())[:2]
    shutil.copy(first, folder / "a.jpg")
    shutil.copy(second, folder / "sub" / "c.JPG")
    (folder / "b.jpg").write_bytes(b"not a jpeg")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "mine.npz"
    argv = ["extract", "--run-dir", str(unit_run.path), "--images", str(folder), "--out", str(out), "--no-progress"]

    err = _one_line_error(capsys, argv, "extract")
    assert "b.jpg" in err and "--on-error skip" in err
    assert not out.exists() and not list(tmp_path.glob(".mine.npz*"))  # nothing half-written

    assert main(argv + ["--on-error", "skip"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "skipped: cannot read image" in captured.err and "b.jpg" in captured.err
    saved = np.load(out)
    assert saved["names"].tolist() == ["a.jpg", "sub/c.JPG"] and saved["skipped"].tolist() == ["b.jpg"]
    by_folder = saved["features"]

    # A list file: one path per line, each line its own name, in the list's order.
    listing = tmp_path / "list.txt"
    listing.write_text(f"{folder / 'sub' / 'c.JPG'}\n\n{folder / 'a.jpg'}\n")
    assert main(["extract", "--run-dir", str(unit_run.path), "--images", str(listing), "--out", str(out),
                 "--no-progress"]) == 0
    saved = np.load(out)
    assert saved["names"].tolist() == [str(folder / "sub" / "c.JPG"), str(folder / "a.jpg")]
    np.testing.assert_allclose(saved["features"], by_folder[::-1], rtol=0, atol=1e-6)

    err = _one_line_error(capsys, argv[:-1] + ["--out", str(tmp_path / "x.npy")], "extract")
    assert "--out must name a .npz file" in err
    err = _one_line_error(capsys, ["extract", "--run-dir", str(tmp_path), "--images", str(folder), "--out",
                                   str(out)], "extract")
    assert "not a finished run" in err


@pytest.mark.slow
def test_rank_finds_the_querys_copy_first_and_writes_png_and_csv(unit_run, tiny_root, tmp_path, capsys):
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    for path in sorted((tiny_root / "bounding_box_test").iterdir())[:6]:
        shutil.copy(path, gallery / path.name)
    query = sorted((tiny_root / "query").iterdir())[0]
    shutil.copy(query, gallery / "copy-of-query.jpg")
    out, table = tmp_path / "rank.png", tmp_path / "rank.csv"
    assert main(["rank", "--run-dir", str(unit_run.path), "--query", str(query), "--gallery", str(gallery),
                 "--top", "4", "--out", str(out), "--csv", str(table), "--no-progress"]) == 0
    assert "nearest copy-of-query.jpg" in capsys.readouterr().out
    assert out.read_bytes().startswith(b"\x89PNG")
    rows = list(csv.DictReader(table.open()))
    assert [row["rank"] for row in rows] == ["1", "2", "3", "4"]
    assert rows[0]["name"] == "copy-of-query.jpg" and float(rows[0]["distance"]) < 1e-5
    distances = [float(row["distance"]) for row in rows]
    assert distances == sorted(distances) and distances[1] > 1e-3
    err = _one_line_error(capsys, ["rank", "--run-dir", str(unit_run.path), "--query", str(query), "--gallery",
                                   str(gallery), "--top", "0", "--out", str(out), "--no-heatmap", "--no-progress"],
                          "rank")
    assert "top_k must be a positive integer" in err


@pytest.mark.parametrize("pooling", ["avg", "max", "aps"])
def test_exportable_copy_pools_as_the_model(pooling):
    from mmhpn.export import _exportable

    torch.manual_seed(0)
    model = build_model(3, layout={"conv5_1": (4, 3), "conv5_3": (1,)}, backbone="resnet34-l4w128",
                        pooling=pooling).eval()
    images = torch.randn(2, 3, 80, 32)  # a 5-row map: 3 and 4 stripes overlap rows, as adaptive pooling does
    with torch.no_grad():
        torch.testing.assert_close(_exportable(model)(images), model(images), rtol=1e-5, atol=1e-5)
    assert all("pool" not in vars(head) for head in model.heads)  # the model itself is left as it was


@needs_export_extra
@pytest.mark.slow
def test_export_writes_an_onnx_network_that_onnxruntime_runs_like_torch(unit_run, tiny_root, tmp_path, capsys):
    import onnxruntime

    out = tmp_path / "unit.onnx"
    assert main(["export", "--run-dir", str(unit_run.path), "--onnx", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "max |difference|" in printed and f"N x 3 x {unit_run.config.height} x {unit_run.config.width}" in printed
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == "images" and session.get_outputs()[0].name == "descriptor"
    images = load_inputs([str(p) for p in sorted((tiny_root / "query").iterdir())[:5]], unit_run.config.height,
                         unit_run.config.width)
    model = unit_run.load_model()
    with torch.no_grad():
        expected = model(images).numpy()
    for batch in (images[:1], images):  # the batch axis is dynamic
        output = session.run(None, {"images": batch.numpy()})[0]
        np.testing.assert_allclose(output, expected[: len(batch)], rtol=0, atol=1e-4)


@needs_export_extra
@pytest.mark.slow
def test_export_keeps_nothing_when_onnxruntime_disagrees(tmp_path):
    from mmhpn.export import export_onnx

    torch.manual_seed(0)
    model = build_model(3, preset="baseline", backbone="resnet34-l4w128").eval()
    with pytest.raises(MMHPNError, match="nothing was written"):
        export_onnx(model, tmp_path / "model.onnx", height=64, width=32, tolerance=1e-30)
    assert list(tmp_path.iterdir()) == []


def test_export_without_the_extra_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    import mmhpn.export

    monkeypatch.setattr(mmhpn.export, "missing_export_packages", lambda: ["onnxruntime"])
    with pytest.raises(MMHPNError, match=r"pip install 'mmhpn\[export\]'"):
        mmhpn.export.export_onnx(build_model(3, preset="baseline", backbone="resnet34-l4w128"), tmp_path / "m.onnx",
                                 height=64, width=32)
    assert list(tmp_path.iterdir()) == []
