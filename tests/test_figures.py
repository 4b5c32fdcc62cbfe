"""Figures 3-5 and the APS plot on a tiny random model and synthetic records (no training)."""
import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mmhpn import build_model
from mmhpn.data import ImageRecord
from mmhpn.errors import ConfigError
from mmhpn.attribution import (EmbeddingSimilarityTarget, compare_attention, embedding_attention, scale_index_for,
                               similarity_heatmaps, stripe_attention)
from mmhpn.evaluation.ranking import nearest_gallery, ranking_table
from mmhpn.paper.views import body_scale_results
from mmhpn.figures import (MATCH_COLOR, MISMATCH_COLOR, QUERY_COLOR, aps_weight_plot, attention_maps, body_scale_curves,
                           denormalize, ranking_figure, save_figure, stripe_bounds)

# 64x32 inputs give a 4x2 layer4 map: enough rows for 4 stripes, and 4x cheaper than 128x64.
HEIGHT, WIDTH = 64, 32
NUM_CLASSES = 5
# The 4-stripe scale at a mid-level tap, as in the mmhpn preset, plus the global scales.
PART_LAYOUT = {"conv5_2": (4,), "conv5_3": (2, 1)}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread: on a shared 2-core machine, two threads spin-waiting on each other cost ~10x CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def part_model():
    torch.manual_seed(0)
    return build_model(NUM_CLASSES, layout=PART_LAYOUT, backbone="resnet34")


@pytest.fixture(scope="module")
def global_model():
    torch.manual_seed(1)
    return build_model(NUM_CLASSES, preset="baseline", backbone="resnet34")


@pytest.fixture(scope="module")
def images():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, HEIGHT, WIDTH, generator=generator)


def _manual_gradcam(model, image, scale_index, stripe, target):
    """Grad-CAM written out with autograd: ReLU(sum_k mean(dS/dA_k) A_k), upsampled, min-max scaled."""
    scale = model.scales[scale_index]
    model.eval()
    activations = {}
    handle = model.tap_module(scale.tap).register_forward_hook(lambda m, i, o: activations.update(a=o))
    try:
        score = model.stripe_logits(image[None])[scale_index][0, stripe, target]
        (grad,) = torch.autograd.grad(score, activations["a"])
    finally:
        handle.remove()
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activations["a"]).sum(1, keepdim=True)).detach()
    cam = cam - cam.min()
    cam = cam / (cam.max() + 1e-7)
    return F.interpolate(cam, size=image.shape[1:], mode="bilinear", align_corners=False)[0, 0].numpy()


def test_stripe_attention_maps_are_image_sized_in_unit_range_and_differ(part_model, images):
    part_model.train()
    index = scale_index_for(part_model, 4)
    assert part_model.scales[index].stripes == 4
    maps = stripe_attention(part_model, images, targets=[1, 3], scale_index=index)
    assert maps.shape == (2, 4, HEIGHT, WIDTH)
    assert maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert maps.max() > 0.5  # min-max scaled: not all zero
    for image_maps in maps:
        for a in range(4):
            for b in range(a + 1, 4):
                assert not np.allclose(image_maps[a], image_maps[b], atol=1e-3), (a, b)
    # The model's mode is restored and no gradient is left behind.
    assert part_model.training
    assert all(p.grad is None for p in part_model.parameters())
    # Same target, stripe and layer as a hand-written Grad-CAM of that stripe classifier.
    expected = _manual_gradcam(part_model, images[1], index, 2, 3)
    np.testing.assert_allclose(maps[1, 2], expected, atol=0.02)


def test_stripe_attention_rejects_bad_targets(part_model, images):
    with pytest.raises(ConfigError, match="outside"):
        stripe_attention(part_model, images, targets=[0, NUM_CLASSES], scale_index=0)
    with pytest.raises(ConfigError, match="one class index per image"):
        stripe_attention(part_model, images, targets=[0], scale_index=0)
    with pytest.raises(ConfigError, match="no scale with 12"):
        scale_index_for(part_model, 12)


def test_stripe_bounds_cover_the_image_in_order():
    bounds = stripe_bounds(128, 4)  # 8 map rows, 2 per stripe, 16 pixels per row
    assert bounds == [(0, 32), (32, 64), (64, 96), (96, 128)]
    bounds = stripe_bounds(384, 8)
    assert bounds[0][0] == 0 and bounds[-1][1] == 384


def test_compare_attention_gives_the_global_scale_and_each_stripe(global_model, part_model, images):
    maps = compare_attention(global_model, part_model, images, targets=[2, 4], stripes=4)
    assert maps.global_maps.shape == (2, HEIGHT, WIDTH) and maps.part_maps.shape == (2, 4, HEIGHT, WIDTH)
    assert (maps.global_scale, maps.part_scale) == ("conv5_3/1", "conv5_2/4")
    index = scale_index_for(part_model, 4)
    np.testing.assert_allclose(maps.part_maps, stripe_attention(part_model, images, [2, 4], index), atol=1e-6)


def test_attention_figure_has_global_input_and_stripe_columns_and_saves(tmp_path):
    pictures = denormalize(torch.randn(1, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(3)))
    maps = np.random.default_rng(0).random((1, 4, HEIGHT, WIDTH), dtype=np.float32)
    fig = attention_maps(pictures, maps[:, 0], maps, global_scale="conv5_3/1", part_scale="conv5_2/4",
                         labels=["id 7"], path=tmp_path / "fig3-attention-maps.png", vector=True)
    tiles = [ax for ax in fig.axes if ax.get_label().startswith("attention")]
    assert len(tiles) == 1 * (2 + 4)
    # The person column shows the picture itself; the stripe columns name the part scale's tap.
    person = next(ax for ax in tiles if ax.get_label() == "attention row=0 column=1")
    np.testing.assert_allclose(person.get_images()[0].get_array(), pictures[0], atol=1e-6)
    assert next(ax for ax in tiles if ax.get_label() == "attention row=0 column=2").get_title() == "stripe 1/4\nconv5_2"
    assert (tmp_path / "fig3-attention-maps.png").stat().st_size > 0
    assert (tmp_path / "fig3-attention-maps.pdf").read_bytes().startswith(b"%PDF")
    with pytest.raises(ConfigError, match="part_maps"):
        attention_maps(pictures, maps[:, 0], maps[:, :, :10])


def test_embedding_similarity_target_is_cosine_similarity():
    reference = torch.tensor([1.0, 0.0, 0.0])
    target = EmbeddingSimilarityTarget(reference)
    assert float(target(torch.tensor([2.0, 0.0, 0.0]))) == pytest.approx(1.0)
    assert float(target(torch.tensor([0.0, 3.0, 0.0]))) == pytest.approx(0.0)
    assert target(torch.tensor([[1.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])).tolist() == pytest.approx([2 ** -0.5, -1.0])
    with pytest.raises(ConfigError, match="same model"):
        target(torch.zeros(4))


def test_embedding_attention_maps(part_model, images):
    part_model.eval()
    with torch.no_grad():
        references = part_model(images.flip(0))
    maps = embedding_attention(part_model, images, references)
    assert maps.shape == (2, HEIGHT, WIDTH)
    assert maps.min() >= 0.0 and maps.max() <= 1.0 and maps.max() > 0.5


# ------------------------------------------------------------------------------------------
# Ranking


def _records(tmp_path, name, labels):
    records = []
    for i, (pid, camid) in enumerate(labels):
        path = tmp_path / f"{name}_{i}.png"
        colour = (37 * (pid + 2) % 256, 91 * (camid + 1) % 256, 13 * i % 256)
        Image.new("RGB", (WIDTH // 2, HEIGHT // 2), colour).save(path)
        records.append(ImageRecord(str(path), pid, camid))
    return records


# Query 0 (id 1, cam 0): its nearest gallery image (0) has its id AND camera: the protocol
# removes it. Gallery 4 (id -1) is junk only under the official protocol.
QUERY_LABELS = [(1, 0), (2, 1), (3, 2)]
GALLERY_LABELS = [(1, 0), (2, 0), (1, 1), (0, 0), (-1, 3), (3, 0), (2, 2), (1, 2)]
DISTMAT = np.array([
    [0.00, 0.10, 0.20, 0.30, 0.05, 0.50, 0.60, 0.70],  # q0: matches ranked 3rd and 7th: AP (1/3 + 2/7) / 2
    [0.10, 0.90, 0.80, 0.20, 0.30, 0.40, 0.05, 0.60],  # q1: matches ranked 1st and 8th: AP (1 + 2/8) / 2
    [0.10, 0.20, 0.30, 0.40, 0.50, 0.90, 0.60, 0.70],  # q2: its only match (5) ranked 8th: AP 1/8
])


def _labels(labels):
    return np.array([p for p, _ in labels]), np.array([c for _, c in labels])


def test_ranking_table_skips_same_id_same_camera_images():
    (q_pids, q_cams), (g_pids, g_cams) = _labels(QUERY_LABELS), _labels(GALLERY_LABELS)
    table = ranking_table(DISTMAT, q_pids, g_pids, q_cams, g_cams, queries=[0], top_k=10)
    assert table["gallery"].tolist() == [4, 1, 2, 3, 5, 6, 7]  # 0 (id 1, cam 0) excluded
    assert 0 not in table["gallery"].tolist()
    assert table["rank"].tolist() == list(range(1, 8))
    assert table["match"].tolist() == [False, False, True, False, False, False, True]
    assert (table["match"] == (table["pid"] == table["query_pid"])).all()
    assert table["num_excluded"].iloc[0] == 1
    assert table["ap"].iloc[0] == pytest.approx((1 / 3 + 2 / 7) / 2)
    official = ranking_table(DISTMAT, q_pids, g_pids, q_cams, g_cams, queries=[0], top_k=3,
                             protocol="market1501-official")
    assert official["gallery"].tolist() == [1, 2, 3]  # id -1 is junk there too


def test_ranking_table_auto_picks_best_median_and_worst_ap():
    (q_pids, q_cams), (g_pids, g_cams) = _labels(QUERY_LABELS), _labels(GALLERY_LABELS)
    table = ranking_table(DISTMAT, q_pids, g_pids, q_cams, g_cams, queries="auto", top_k=2)
    picks = table.drop_duplicates("query")[["query", "pick"]].values.tolist()
    assert picks == [[1, "best AP"], [0, "median AP"], [2, "worst AP"]]
    assert len(table) == 3 * 2


def _paths(records):
    return [record.path for record in records]


def _table(query_records, gallery, distmat, **options):
    return ranking_table(distmat, [r.pid for r in query_records], [r.pid for r in gallery],
                         [r.camid for r in query_records], [r.camid for r in gallery], **options)


def test_ranking_figure_frames_match_identities_and_skip_excluded(tmp_path):
    queries = _records(tmp_path, "q", QUERY_LABELS)
    gallery = _records(tmp_path, "g", GALLERY_LABELS)
    table = _table(queries, gallery, DISTMAT, queries=[0, 2], top_k=5)
    fig = ranking_figure(table, _paths(queries), _paths(gallery), path=tmp_path / "fig4-top10-ranking", vector=True)
    tiles = [ax for ax in fig.axes if ax.get_label().startswith("gallery")]
    assert len(tiles) == 2 * 5
    shown = {}
    for ax in tiles:
        fields = dict(part.split("=") for part in ax.get_label().split()[1:])
        query, rank, index = int(fields["q"]), int(fields["rank"]), int(fields["g"])
        shown[(query, rank)] = index
        same_id = gallery[index].pid == queries[query].pid
        expected = MATCH_COLOR if same_id else MISMATCH_COLOR
        colours = {matplotlib.colors.to_hex(spine.get_edgecolor()) for spine in ax.spines.values()}
        assert colours == {expected}
        assert all(spine.get_visible() for spine in ax.spines.values())
        assert not (gallery[index].pid == queries[query].pid and gallery[index].camid == queries[query].camid)
    assert [shown[(0, r)] for r in range(1, 6)] == [4, 1, 2, 3, 5]
    assert [shown[(2, r)] for r in range(1, 6)] == [0, 1, 2, 3, 4]
    assert (tmp_path / "fig4-top10-ranking.png").exists() and (tmp_path / "fig4-top10-ranking.pdf").exists()


def test_ranking_figure_with_heatmaps_adds_their_column(tmp_path, part_model):
    queries = _records(tmp_path, "q", QUERY_LABELS)
    gallery = _records(tmp_path, "g", GALLERY_LABELS)
    table = _table(queries, gallery, DISTMAT, queries=[1], top_k=3)
    heatmaps = similarity_heatmaps(part_model, table, _paths(queries), _paths(gallery), HEIGHT, WIDTH)
    assert list(heatmaps) == [1] and heatmaps[1].shape == (HEIGHT, WIDTH)
    assert heatmaps[1].min() >= 0.0 and heatmaps[1].max() <= 1.0
    fig = ranking_figure(table, _paths(queries), _paths(gallery), heatmaps=heatmaps)
    assert len([ax for ax in fig.axes if ax.get_label().startswith("heatmap")]) == 1
    assert len([ax for ax in fig.axes if ax.get_label().startswith("gallery")]) == 3
    with pytest.raises(ConfigError, match="heatmaps lack queries"):
        ranking_figure(_table(queries, gallery, DISTMAT, queries=[0, 1], top_k=3), _paths(queries), _paths(gallery),
                       heatmaps=heatmaps)
    with pytest.raises(ConfigError, match="gallery_paths holds 2 paths"):
        ranking_figure(table, _paths(queries), _paths(gallery)[:2])


def test_nearest_gallery_ranks_everything_and_draws_neutral_frames(tmp_path):
    queries = _records(tmp_path, "q", QUERY_LABELS)
    gallery = _records(tmp_path, "g", GALLERY_LABELS)
    table = nearest_gallery(DISTMAT[:1], top_k=3)
    assert table.columns.tolist() == ["query", "rank", "gallery", "distance"]
    assert table["gallery"].tolist() == [0, 4, 1]  # nothing excluded: the same-id same-camera image 0 first
    assert table["distance"].tolist() == [0.0, 0.05, 0.10]
    fig = ranking_figure(table, _paths(queries), _paths(gallery))
    tiles = [ax for ax in fig.axes if ax.get_label().startswith("gallery")]
    assert len(tiles) == 3
    for ax in tiles:
        colours = {matplotlib.colors.to_hex(spine.get_edgecolor()) for spine in ax.spines.values()}
        assert colours == {QUERY_COLOR}
    assert tiles[0].get_title().startswith("1\nd 0.000\ng_0.png")
    assert fig.legends == []


# ------------------------------------------------------------------------------------------
# Figure 5, APS weights, saving


def test_body_scale_curves_one_point_per_stripe_count(tmp_path):
    rows = [{"stripes": s, "seed": seed, "mAP": 0.4 + 0.02 * s + 0.01 * seed, "rank1": 0.6 + 0.01 * s}
            for s in (12, 1, 2, 4, 8) for seed in (0, 1, 2)]
    fig = body_scale_curves(pd.DataFrame(rows), path=tmp_path / "fig5-body-scales.png", vector=True)
    ax = fig.axes[0]
    lines = {line.get_gid(): line for line in ax.get_lines() if line.get_gid()}
    for metric in ("mAP", "rank1"):
        line = lines[f"mean-{metric}"]
        assert len(line.get_xdata()) == 5
    expected = [100 * np.mean([0.4 + 0.02 * s + 0.01 * seed for seed in (0, 1, 2)]) for s in (1, 2, 4, 8, 12)]
    np.testing.assert_allclose(lines["mean-mAP"].get_ydata(), expected)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4", "8", "12"]
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"mAP", "Rank-1"}
    assert (tmp_path / "fig5-body-scales.png").exists() and (tmp_path / "fig5-body-scales.pdf").exists()


def test_body_scale_curves_rejects_bad_input():
    with pytest.raises(ConfigError, match="lacks column"):
        body_scale_curves(pd.DataFrame({"stripes": [1], "mAP": [0.5]}))
    with pytest.raises(ConfigError, match="fractions"):
        body_scale_curves(pd.DataFrame({"stripes": [1], "mAP": [55.0], "rank1": [70.0]}))
    with pytest.raises(ConfigError, match="missing values"):
        body_scale_curves(pd.DataFrame({"stripes": [1, 2], "mAP": [0.5, np.nan], "rank1": [0.7, 0.8]}))


def test_aps_weight_plot_one_dot_per_run_and_scale(part_model):
    weights = {"seed 0": part_model.aps_weights(), "seed 1": {k: 0.3 for k in part_model.aps_weights()}}
    fig = aps_weight_plot(weights)
    ax = fig.axes[0]
    dots = next(c for c in ax.collections if c.get_gid() == "aps-runs")
    assert len(dots.get_offsets()) == 2 * len(part_model.scales)
    assert [t.get_text() for t in ax.get_xticklabels()] == [s.label for s in part_model.scales]
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        aps_weight_plot({"bad": {"conv5_3/1": 1.5}})


def test_save_figure_writes_png_and_vector_atomically(tmp_path):
    fig = body_scale_curves(pd.DataFrame({"stripes": [1, 2], "mAP": [0.5, 0.6], "rank1": [0.7, 0.8]}))
    written = save_figure(fig, tmp_path / "sub" / "plot.svg", vector=True, vector_format="svg")
    assert written == [tmp_path / "sub" / "plot.png", tmp_path / "sub" / "plot.svg"]
    assert written[0].read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in written[1].read_bytes()[:2000]
    assert save_figure(fig, tmp_path / "only", vector=False) == [tmp_path / "only.png"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["only.png", "plot.png", "plot.svg", "sub"]
    with pytest.raises(ConfigError, match="vector_format"):
        save_figure(fig, tmp_path / "x", vector_format="eps")


def test_body_scale_results_from_runs():
    from types import SimpleNamespace

    def run(layout, seed, preset="mmhpn"):
        config = SimpleNamespace(layout=layout, preset=preset, seed=seed)
        return SimpleNamespace(config=config, metrics={"rank1": 0.5 + seed / 10, "mAP": 0.3}, path=f"run{seed}")

    frame = body_scale_results([run(None, 0, "baseline"), run({"conv5_3": (4,)}, 1), run({"conv5_3": [8]}, 2)])
    assert frame.to_dict("list") == {"stripes": [1, 4, 8], "seed": [0, 1, 2], "rank1": [0.5, 0.6, 0.7],
                                     "mAP": [0.3, 0.3, 0.3]}
    with pytest.raises(ConfigError, match="one scale at the final layer"):
        body_scale_results([run(None, 0, "mmhpn")])


def test_row_curves_one_line_per_row_and_seed_and_refuses_missing_columns():
    from mmhpn.figures import row_curves

    history = pd.DataFrame({"row": ["A"] * 4 + ["B"] * 4, "seed": [0, 0, 1, 1] * 2, "epoch": [1, 2] * 4,
                            "loss": [3.0, 1.0, 3.1, 1.1, 2.0, 0.5, 2.1, 0.6],
                            "mAP": [np.nan, 0.5, np.nan, 0.52, np.nan, 0.6, np.nan, 0.61]})
    fig = row_curves(history)
    loss_axes, map_axes = fig.axes[:2]
    assert len(loss_axes.lines) == 4 and len(map_axes.lines) == 4
    assert map_axes.lines[0].get_ydata().tolist() == [50.0]  # the final evaluation only, in %
    with pytest.raises(ConfigError, match="row"):
        row_curves(history.drop(columns=["row"]))


def test_regime_selection_reads_the_benchmark_result_and_draws_it(tmp_path):
    import json

    from mmhpn.paper.views import regime_selection
    from mmhpn.figures import validation_curves
    from mmhpn.versions import TRAINING_SEMANTICS_VERSION

    result = {"backbone": "resnet34-l4w128", "epochs": 2, "lr_decay_epochs": [1], "val_mAP": [70.0, 72.0],
              "val_mAP_mean": 71.0, "val_mAP_std": 1.41, "val_mAP_per_epoch": [60.0, 71.0], "loss_per_epoch": [3.0, 1.0],
              "seconds_per_run": [5.0, 6.0], "train_seconds": [4.0, 5.0]}
    path = tmp_path / "regime-selection.json"
    record = {"results": [{**result, "preset": "baseline"}, {**result, "preset": "mmhpn"}], "tolerance_pp": 0.5,
              "rule": "the rule", "chosen": {"epochs": 2, "lr_decay_epochs": [1]},
              "recorded": {"utc": "now", "machine": "here", "training_semantics_version": TRAINING_SEMANTICS_VERSION}}
    path.write_text(json.dumps(record))
    summary, epochs, reading = regime_selection(str(path))
    assert reading.endswith("it chooses 2 epochs (decay after 1).") and "the rule" in reading
    assert summary["val mAP per replicate"].tolist() == ["70.0, 72.0"] * 2
    assert summary["train s per run"].tolist() == [4.5] * 2
    assert summary.attrs["recorded"]["machine"] == "here" and len(epochs) == 4
    assert "decay after 1" in summary["regime"].iloc[0]
    assert summary["loss change in the last epoch (%)"].tolist() == [-66.7] * 2
    assert len(validation_curves(epochs).axes[0].lines) == 2
    with pytest.raises(ConfigError, match="select_regime.py"):
        regime_selection(str(tmp_path / "missing.json"))
    # a record whose choice is not what its rule picks from its own candidates is refused
    path.write_text(json.dumps({**record, "chosen": {"epochs": 3, "lr_decay_epochs": [2]}}))
    with pytest.raises(ConfigError, match="is not what its rule picks"):
        regime_selection(str(path))
