"""The synthetic benchmark: determinism, split rules, presets, look-alikes and the on-disk cache."""
import dataclasses
import hashlib
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mmhpn.cli import main as cli_main
from mmhpn.data import count_unmatched_queries, load_market_layout
from mmhpn.data import synthetic
from mmhpn.errors import ConfigError, DatasetError

from conftest import TINY_SEED

REPO = Path(__file__).resolve().parents[1]


def tree_digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != synthetic.MARKER_NAME}


def test_same_seed_byte_identical_other_seed_different(tiny_root, tmp_path):
    again = synthetic.generate(tmp_path / "again", "tiny", seed=TINY_SEED, workers=2)  # processes change nothing
    assert tree_digest(again) == tree_digest(tiny_root)
    other = synthetic.generate(tmp_path / "other", "tiny", seed=TINY_SEED + 1)
    assert tree_digest(other) != tree_digest(tiny_root)


# What the tiny preset (seed 0) draws at FORMAT_VERSION 3: sha256 over every file's relative
# path and bytes (the marker excepted: it records the drawing time), and over the pixels of
# every image before JPEG encoding. Recorded with Pillow 13.0.0, libjpeg-turbo 3.2.0, NumPy 2.4.6.
TINY_FILES_DIGEST = "ace19a80eb980d853ad57ed91b3e53577408036138aea738825df85467425456"
TINY_PIXELS_DIGEST = "f3fe47666d7dfb579941387ced280b57dbdbacd24ca2be0725592b231f361fcb"
PINNED_WITH = "Pillow 13.0.0, libjpeg-turbo 3.2.0, NumPy 2.4.6"


def test_tiny_preset_draws_the_pinned_bytes(tiny_root):
    """A change to what the generator draws must come with a FORMAT_VERSION bump (it is in every run hash)."""
    from PIL import __version__ as pillow_version
    from PIL import features

    files = hashlib.sha256()
    for path in sorted(p for p in tiny_root.rglob("*") if p.is_file() and p.name != synthetic.MARKER_NAME):
        name = path.relative_to(tiny_root).as_posix().encode()
        files.update(name + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    plan = synthetic.make_plan(synthetic.synthetic_config("tiny"), seed=TINY_SEED)
    pixels = hashlib.sha256()
    for index in range(len(plan.jobs)):
        pixels.update(synthetic.render_job(plan, index).tobytes())
    here = f"Pillow {pillow_version}, libjpeg-turbo {features.version_feature('libjpeg_turbo')}, NumPy {np.__version__}"
    advice = (f"the synthetic generator now draws other {{}} for the tiny preset than FORMAT_VERSION "
              f"{synthetic.FORMAT_VERSION} recorded (pinned with {PINNED_WITH}; here {here}). If the generator "
              "changed, bump FORMAT_VERSION in mmhpn/data/synthetic/writer.py and pin the new digests here")
    assert pixels.hexdigest() == TINY_PIXELS_DIGEST, advice.format("pixels")
    assert files.hexdigest() == TINY_FILES_DIGEST, advice.format("file names or JPEG bytes (same pixels)")


def test_layout_images_distractors_junk(tiny_root):
    for folder in ("bounding_box_train", "bounding_box_test", "query", "gt_bbox"):
        assert any((tiny_root / folder).iterdir()), folder
    config = synthetic.SYNTHETIC_PRESETS["tiny"]
    test_files = [p.name for p in (tiny_root / "bounding_box_test").iterdir()]
    assert sum(n.startswith("-1_") for n in test_files) == config.num_junk
    assert sum(n.startswith("0000_") for n in test_files) == config.num_distractors
    with Image.open(next((tiny_root / "query").iterdir())) as image:
        assert image.format == "JPEG" and image.size == (64, 128) and image.mode == "RGB"
    marker = json.loads((tiny_root / synthetic.MARKER_NAME).read_text())
    assert marker["seed"] == TINY_SEED and marker["preset"] == "tiny"
    assert marker["format_version"] == synthetic.FORMAT_VERSION == synthetic.SYNTHETIC_FORMAT_VERSION
    assert marker["num_images"] == sum(1 for p in tiny_root.rglob("*.jpg"))


def test_splits_disjoint_and_every_query_matchable(tiny_root):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the loader would warn about unmatched queries
        ds = load_market_layout(tiny_root)
    train_ids = set(ds.train_pid_map)
    test_ids = {r.pid for r in ds.query + ds.gallery} - {0}
    assert train_ids and test_ids and not train_ids & test_ids
    assert {r.pid for r in ds.query} == test_ids
    assert count_unmatched_queries(ds.query, ds.gallery) == 0
    assert ds.num_train_pids == 16 and len(test_ids) == 16
    assert {(r.pid, r.camid) for r in ds.multi_query} == {(r.pid, r.camid) for r in ds.query}


def test_market_sized_plan_matches_market_split_sizes():
    plan = synthetic.make_plan(synthetic.synthetic_config("market-sized"), seed=0)
    folders = [job[0].split("/")[0] for job in plan.jobs]
    train, query = folders.count("bounding_box_train"), folders.count("query")
    gallery = sum(f == "bounding_box_test" and job[1] != -1 for f, job in zip(folders, plan.jobs))
    assert abs(train - 12936) / 12936 < 0.05
    assert abs(query - 3368) / 3368 < 0.1
    assert abs(gallery - 15913) / 15913 < 0.05
    assert len({job[1] for job in plan.jobs if job[0].startswith("bounding_box_train")}) == 751


PART_FIELDS = {
    "hair": {"hair_style", "hat_color"}, "shoes": {"shoe_color"}, "lower": {"lower_color", "lower_type"},
    "bag": {"bag_type", "bag_color"}, "upper-pattern": {"upper_pattern"},
    "swap-upper-lower": {"upper_color", "lower_color"}, "swap-block": {"upper_color", "upper_second"},
    "detail-height": {"detail_height"},
}


def test_tiny_stays_tiny():
    plan = synthetic.make_plan(synthetic.synthetic_config("tiny"), seed=0)
    assert len(plan.jobs) < 400


def test_lookalike_groups_differ_in_exactly_one_part():
    config = synthetic.synthetic_config("demo")
    plan = synthetic.make_plan(config, seed=0)
    part_fields = PART_FIELDS
    groups: dict[int, list] = {}
    for key, ident in plan.identities.items():
        if isinstance(key, int) and ident.group >= 0:
            groups.setdefault(ident.group, []).append(ident)
    in_groups = sum(len(g) for g in groups.values())
    assert in_groups >= 0.3 * (config.num_train_ids + config.num_test_ids)
    for members in groups.values():
        base = next(m for m in members if not m.changed_part)
        for variant in members:
            if variant is base:
                continue
            diff = {f.name for f in dataclasses.fields(base)
                    if getattr(base, f.name) != getattr(variant, f.name)} - {"changed_part"}
            assert diff and diff <= part_fields[variant.changed_part], (variant.changed_part, diff)
    kinds = {ident.changed_part for ident in plan.identities.values()}
    assert set(synthetic.POSITION_PARTS) | set(synthetic.LOOKALIKE_PARTS) <= kinds


def _front_drawing(ident) -> np.ndarray:
    """The person drawn cleanly from the front on black, as one integer colour code per pixel."""
    image = Image.new("RGB", (64, 128), (0, 0, 0))
    synthetic.draw_person(ImageDraw.Draw(image), ident, "front", 32, 6, 116, np.random.default_rng(0))
    a = np.asarray(image).astype(np.int64)
    return (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2]


def test_position_lookalikes_have_the_same_colours_at_other_heights():
    """Pairs that differ only in where parts are: same colours, so a global colour histogram barely
    changes, while per-stripe histograms change several times more."""
    plan = synthetic.make_plan(synthetic.synthetic_config("tiny"), seed=0)
    people = {pid: ident for pid, ident in plan.identities.items() if isinstance(pid, int)}
    pairs = [(next(b for b in people.values() if b.group == v.group and not b.changed_part), v)
             for v in people.values() if v.changed_part in synthetic.POSITION_PARTS]
    assert len(pairs) >= 3
    for base, variant in pairs:
        diff = {f.name for f in dataclasses.fields(base) if getattr(base, f.name) != getattr(variant, f.name)}
        assert diff - {"changed_part"} <= PART_FIELDS[variant.changed_part]
        colours = ("upper_color", "upper_second", "lower_color", "detail_color")
        assert sorted(getattr(base, c) for c in colours) == sorted(getattr(variant, c) for c in colours)
        a, b = _front_drawing(base), _front_drawing(variant)
        codes = np.union1d(np.unique(a), np.unique(b))
        codes = codes[codes != 0]

        def histogram(x, rows=slice(None)):
            return np.array([(x[rows] == code).sum() for code in codes], dtype=float)

        pixels = histogram(a).sum()
        global_change = np.abs(histogram(a) - histogram(b)).sum() / pixels
        striped_change = sum(np.abs(histogram(a, slice(r, r + 16)) - histogram(b, slice(r, r + 16))).sum()
                             for r in range(0, 128, 16)) / pixels
        assert striped_change > 1.8 * global_change and striped_change > 0.15, \
            (variant.changed_part, global_change, striped_change)


def test_render_info_describes_the_image_without_changing_it():
    plan = synthetic.make_plan(synthetic.synthetic_config("tiny"), seed=3)
    for index in range(0, len(plan.jobs), 17):
        info: dict = {}
        with_info = synthetic.render_job(plan, index, info)
        assert with_info.tobytes() == synthetic.render_job(plan, index).tobytes()
        assert info["mask"].shape == (128, 64) and info["view"] in synthetic.VIEWS
        if plan.jobs[index][4] in ("person", "gt") and info["occluder"] is None:
            assert info["mask"].mean() > 0.1  # the person is there
        if plan.jobs[index][4] == "gt":
            assert info["shift"] == pytest.approx(0.0, abs=1e-9)


def test_pretrain_set_shares_no_identity_with_the_test_split():
    from mmhpn.config import make_config, pretraining_config

    # The sets the book profiles pretrain on, against the sets they are scored on.
    for profile, expected_ids in (("demo", 1000), ("smoke", 24)):
        config = make_config(profile)
        source = pretraining_config(config.init_from)
        evaluation = synthetic.make_plan(synthetic.synthetic_config(config.synthetic_preset),
                                         seed=config.synthetic_seed)
        pretrain = synthetic.make_plan(synthetic.synthetic_config(source.synthetic_preset), seed=source.synthetic_seed)
        assert pretrain.config.identity_stream != evaluation.config.identity_stream
        assert synthetic.check_disjoint_identities(pretrain, evaluation) == len(pretrain.identities) > expected_ids
    # Drawn from the same identity stream (same seed), the check catches the shared people,
    # even with other sizes of the non-identity parts.
    same_stream = synthetic.make_plan(synthetic.synthetic_config("tiny", num_junk=0, num_distractors=3), seed=0)
    tiny = synthetic.make_plan(synthetic.synthetic_config("tiny"), seed=0)
    with pytest.raises(DatasetError, match="has people who look like 16 test identities of the evaluation split"):
        synthetic.check_disjoint_identities(same_stream, tiny)
    # A twin with every colour moved by a few levels (the generator's jitter) still looks alike: the
    # check compares attributes, not exact values, so it can fail on near-copies too.
    import dataclasses

    pid = tiny.test_pids[0]
    twin = dataclasses.replace(tiny.identities[pid], build=tiny.identities[pid].build + 0.01,
                               upper_color=tuple(min(255, c + 5) for c in tiny.identities[pid].upper_color))
    other = synthetic.make_plan(synthetic.synthetic_config("tiny-pretrain"), seed=0)
    assert synthetic.check_disjoint_identities(other, tiny) == len(other.identities)
    other.identities["twin"] = twin
    with pytest.raises(DatasetError, match=f"look like 1 test identities .*twin ~ test id {pid:04d}"):
        synthetic.check_disjoint_identities(other, tiny)
    nearest = synthetic.nearest_people(other, tiny).set_index("test id")
    assert nearest.loc[pid, "nearest pretraining person"] == "twin" and nearest.loc[pid, "not alike"] == ""


def test_config_errors():
    with pytest.raises(ConfigError, match="unknown synthetic preset"):
        synthetic.synthetic_config("huge")
    with pytest.raises(ConfigError, match="unknown synthetic knob.*num_ids"):
        synthetic.synthetic_config("tiny", num_ids=3)
    with pytest.raises(ConfigError, match="min_cameras_per_id"):
        synthetic.synthetic_config("tiny", min_cameras_per_id=1)
    assert synthetic.synthetic_config("demo", num_train_ids=50).num_train_ids == 50


def test_ensure_synthetic_reuses_finished_and_refuses_others(tmp_path, monkeypatch):
    root = tmp_path / "data" / "synthetic-tiny"
    assert synthetic.ensure_synthetic(root, "tiny", seed=1) == root
    digest = tree_digest(root)
    calls = []
    monkeypatch.setattr(synthetic.writer, "generate", lambda *a, **k: calls.append(a))
    assert synthetic.ensure_synthetic(root, "tiny", seed=1) == root and not calls  # reused, not redrawn
    assert tree_digest(root) == digest
    with pytest.raises(DatasetError, match="other settings.*seed 1"):
        synthetic.ensure_synthetic(root, "tiny", seed=2)
    with pytest.raises(DatasetError, match="other settings"):
        synthetic.ensure_synthetic(root, "tiny", seed=1, num_junk=0)


def test_dataset_of_an_older_generator_is_moved_aside_and_redrawn(tmp_path, capsys):
    root = synthetic.ensure_synthetic(tmp_path / "syn", "tiny", seed=1)
    digest = tree_digest(root)
    marker = json.loads((root / synthetic.MARKER_NAME).read_text())
    old = synthetic.FORMAT_VERSION - 1
    marker["format_version"] = old
    (root / synthetic.MARKER_NAME).write_text(json.dumps(marker))
    (root / "query" / "0001_c1s1_000001_00.jpg").write_bytes(b"stale")
    (root / "my-notes.txt").write_text("mine")  # user data is never deleted
    capsys.readouterr()
    assert synthetic.ensure_synthetic(root, "tiny", seed=1) == root
    assert tree_digest(root) == digest and synthetic.read_marker(root)["format_version"] == synthetic.FORMAT_VERSION
    aside = tmp_path / f"syn.format-{old}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn", aside.name]
    assert (aside / "my-notes.txt").read_text() == "mine" and synthetic.read_marker(aside)["format_version"] == old
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and f"format {old}" in said[0] and str(aside) in said[0]


def test_dataset_of_a_newer_generator_is_refused(tmp_path):
    root = synthetic.ensure_synthetic(tmp_path / "syn", "tiny", seed=1)
    marker = json.loads((root / synthetic.MARKER_NAME).read_text())
    marker["format_version"] = synthetic.FORMAT_VERSION + 1
    (root / synthetic.MARKER_NAME).write_text(json.dumps(marker))
    with pytest.raises(DatasetError, match="newer than or unknown"):
        synthetic.ensure_synthetic(root, "tiny", seed=1)
    assert synthetic.read_marker(root)["format_version"] == synthetic.FORMAT_VERSION + 1  # untouched


def test_interrupted_generation_leaves_nothing_that_looks_finished(tmp_path, monkeypatch):
    def fail(plan, out, indices):
        (out / plan.jobs[indices[0]][0]).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic.writer, "_write_jobs", fail)
    with pytest.raises(KeyboardInterrupt):
        synthetic.ensure_synthetic(tmp_path / "syn", "tiny", seed=0)
    assert not (tmp_path / "syn").exists()
    assert list(tmp_path.iterdir()) == []  # temporary folder removed too
    (tmp_path / "syn").mkdir()
    (tmp_path / "syn" / "query").mkdir()  # e.g. a half copy made by hand: no marker
    with pytest.raises(DatasetError, match="not an empty folder"):
        synthetic.ensure_synthetic(tmp_path / "syn", "tiny", seed=0)


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli_main(["synth", "--preset", "tiny", "--out", str(out), "--seed", "3", "--quiet"]) == 0
    assert "wrote" in capsys.readouterr().out and synthetic.is_complete(out)
    assert cli_main(["synth", "--preset", "tiny", "--out", str(out), "--seed", "3", "--quiet"]) == 0
    assert "found finished" in capsys.readouterr().out
    assert cli_main(["synth", "--preset", "tiny", "--out", str(out), "--seed", "4", "--quiet"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_phenomenon_numbers_quoted_in_the_book_are_the_recorded_ones():
    """book/datasets.md quotes benchmarks/reference/synthetic-phenomenon.json (a benchmark the
    build does not run); every number it quotes must be the record's, so a re-recorded
    benchmark cannot leave the page saying something else."""
    record = json.loads((REPO / "benchmarks/reference/synthetic-phenomenon.json").read_text())
    scores = {(s["source"], s["subset"], s["stripes"]): s for s in record["scores"]}
    page = (REPO / "book/datasets.md").read_text()

    def pair(source, subset, stripes):
        s = scores[(source, subset, stripes)]
        return f"{s['rank1']:.3f} / {s['mAP']:.3f}"

    rows = {"whole test split": "whole test split", "pairs differing only in *where*": "pairs where",
            "upper and lower colours swapped": "pairs swap-upper-lower",
            "halves of a colour-block top swapped": "pairs swap-block",
            "a band moved within its garment": "pairs detail-height", "pairs differing in *what*": "pairs what"}
    for label, subset in rows.items():
        line = next(line for line in page.splitlines() if line.startswith("|") and label in line)
        assert f"| {pair('pixels', subset, 1)} | {pair('pixels', subset, 8)} |" in line, line
    # the clean-attribute reading of the *where* pairs, and the pixel global rank-1 it is set against
    where = [f"{scores[('attributes', 'pairs where', k)]['rank1']:.3f}" for k in (1, 2, 4, 8)]
    text = re.sub(r"\s+", " ", page)
    assert f"rank-1 {where[0]} within the same *where* pairs" in text
    assert f"{where[1]} / {where[2]} / {where[3]}" in text
    assert f"({scores[('attributes', 'pairs what', 1)]['rank1']:.3f})" in text
    assert f"rank-1 {scores[('pixels', 'pairs where', 1)]['rank1']:.3f})" in text
