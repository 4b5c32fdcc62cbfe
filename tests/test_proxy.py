"""The proxy study (mmhpn.paper.proxy): its variants as data, the computed conclusion on hand-made
frames, the object sets its "objects pretraining" variant pretrains on, and (slow) a smoke study
end to end."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

from mmhpn import claims
from mmhpn.bookbuild.profiles import get_profile
from mmhpn.config import make_config
from mmhpn.data import load_market_layout, synthetic
from mmhpn.errors import ConfigError
from mmhpn.paper import proxy, registry
from mmhpn.paper.numbers import paper_numbers
from mmhpn.paper.planner import row_config

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------
# the variants


def _field_changes(base: dict, other: dict) -> set[str]:
    return {name for name in set(base) | set(other) if base.get(name) != other.get(name)}


@pytest.mark.parametrize("profile", ["smoke", "demo"])
def test_every_variant_differs_from_the_default_in_exactly_its_departures_fields(profile):
    assert proxy.VARIANTS[0].name == proxy.DEFAULT and not proxy.VARIANTS[0].finetune \
        and not proxy.VARIANTS[0].pretrain
    others = proxy.VARIANTS[1:]
    assert len({v.name for v in proxy.VARIANTS}) == len(proxy.VARIANTS)
    # one variant per departure, each departure undone by one variant
    assert sorted(v.departure for v in others) == sorted(proxy.DEPARTURES)
    default = proxy.get_variant(proxy.DEFAULT)
    for variant in others:
        finetune, pretrain = proxy.variant_overrides(variant, profile)
        assert finetune or pretrain, variant.name
        for key, row in proxy.study_rows():
            ours = proxy.study_config(variant, row, profile, 0).to_dict()
            theirs = proxy.study_config(default, row, profile, 0).to_dict()
            # the fields the variant names that change something under this profile (in the smoke
            # profile a doubled empty lr schedule is still empty); in the real study, every one
            took_effect = {name for name in finetune if ours[name] != theirs[name]}
            took_effect_init = {name for name in pretrain if ours["init_from"][name] != theirs["init_from"].get(name)}
            if profile == "demo":
                assert took_effect == set(finetune) and took_effect_init == set(pretrain), variant.name
            assert took_effect or took_effect_init, variant.name
            # and nothing else changes
            assert _field_changes(theirs, ours) == took_effect | ({"init_from"} if took_effect_init else set()), \
                (variant.name, row.label)
            if took_effect_init:
                assert _field_changes(theirs["init_from"], ours["init_from"]) == took_effect_init, variant.name
                assert ours["init_from"]["seed"] == 0  # a replicate pretrains with its own seed too


def test_the_default_variants_runs_are_the_books_table_runs():
    params = get_profile("demo").notebook_parameters()
    common = registry.notebook_common(params)
    default = proxy.get_variant(proxy.DEFAULT)
    for seed in params["seeds"]:
        for key, row in proxy.study_rows():
            book = row_config(row, "demo", seed, **common)
            assert proxy.study_config(default, row, "demo", seed, device="cpu", eval_every=1).hash == book.hash
    # a variant with its own pretraining writes the seed into it, as make_config does for the profile's
    objects = proxy.get_variant("objects pretraining")
    config = proxy.study_config(objects, proxy.study_rows()[0][1], "demo", 2)
    assert config.init_from["seed"] == 2 and config.init_from["synthetic_preset"] == "objects"


def test_the_longer_schedule_doubles_the_profiles_and_variants_resolve_per_profile():
    demo = make_config("demo")
    finetune, _ = proxy.variant_overrides(proxy.get_variant("longer schedule"), "demo")
    assert finetune["epochs"] == 2 * demo.epochs
    assert list(finetune["lr_decay_epochs"]) == [2 * e for e in demo.lr_decay_epochs]
    with pytest.raises(ConfigError, match="defined for the profiles \\['demo', 'smoke'\\], not 'paper'"):
        proxy.variant_overrides(proxy.get_variant("more identities"), "paper")
    with pytest.raises(ConfigError, match="unknown proxy-study variant 'bigger'"):
        proxy.get_variant("bigger")
    assert [key for key, _ in proxy.study_rows()] == ["table4", "table4", "table5", "table5"]


def test_the_paper_effects_are_computed_from_the_paper_numbers():
    numbers = paper_numbers().set_index(["table", "row", "dataset", "setting"])
    effects = proxy.paper_effects()
    for (key, better, worse), by_metric in effects.items():
        for metric in claims.METRICS:
            expected = (numbers.loc[(key, better, "market1501", "single_query"), metric]
                        - numbers.loc[(key, worse, "market1501", "single_query"), metric])
            assert by_metric[metric] == pytest.approx(expected)
    assert effects[("table4", "Baseline+MMHPN", "Baseline")]["mAP"] == pytest.approx(12.4)
    assert effects[("table5", "1+2", "1")]["mAP"] == pytest.approx(8.5)


# ---------------------------------------------------------------------------------------
# the conclusion, on hand-made frames

SEEDS = (0, 1, 2)


def _study(effect_by_variant: dict[str, tuple[float, float, float]], baseline: float = 60.0) -> pd.DataFrame:
    """A study whose every effect (both tables, both metrics) of a variant is the given per-seed values."""
    lines = []
    for variant, per_seed in effect_by_variant.items():
        for seed, effect in zip(SEEDS, per_seed):
            for key, label in proxy.STUDY_ROWS:
                value = baseline + (effect if label in ("Baseline+MMHPN", "1+2") else 0.0)
                lines.append({"table": key, "row": label, "seed": seed, "rank1": value + 10, "mAP": value,
                              "train_seconds": 60.0 * (2 if variant == "slower" else 1),
                              "run_hash": f"{variant}-{seed}-{'base' if label in ('Baseline', '1') else label}",
                              "pretraining_run": f"pretrain-{variant}-{seed}", "variant": variant,
                              "trained_now": True, "wall_minutes": 1.5, "pretraining_seconds": 120.0,
                              "profile": "demo", "machine": "2 logical CPU(s), test CPU, Linux 6",
                              "recorded_utc": "2026-12-01T10:00:00Z"})
    return pd.DataFrame(lines, columns=list(proxy.STUDY_COLUMNS))


def test_effects_and_their_changes_paired_by_seed():
    study = _study({"default": (1.0, 2.0, 1.5), "whole network": (4.0, 5.5, 4.5),
                    "256x128 inputs": (1.2, 1.4, 2.0), "longer schedule": (0.0, 0.5, -0.5)})
    found = proxy.effects(study)
    assert len(found) == 4 * 2 * 2  # variants x effects x metrics
    line = found[(found["variant"] == "default") & (found["metric"] == "mAP")].iloc[0]
    assert (line["mean"], line["ci_low"], line["ci_high"]) == pytest.approx(claims.t_interval([1.0, 2.0, 1.5]))
    assert line["paper"] == pytest.approx(12.4) and line["per_seed"] == "+1.00 +2.00 +1.50"

    changes = proxy.effect_changes(study).set_index(["variant", "effect", "metric"])
    table4 = "Baseline+MMHPN − Baseline (Table 4)"
    whole = changes.loc[("whole network", table4, "mAP")]
    mean, low, high = claims.t_interval([3.0, 3.5, 3.0])  # the difference of the paired differences
    assert (whole["change"], whole["ci_low"], whole["ci_high"]) == pytest.approx((mean, low, high))
    assert whole["reading"] == proxy.TOWARD
    assert whole["gap_closed"] == pytest.approx(mean / (12.4 - 1.5))
    assert whole["departure undone"] == proxy.get_variant("whole network").departure
    assert changes.loc[("256x128 inputs", table4, "mAP"), "reading"] == proxy.NO_CHANGE
    assert changes.loc[("longer schedule", table4, "mAP"), "reading"] == proxy.AWAY
    assert changes.loc[("longer schedule", "1+2 − 1 (Table 5)", "rank1"), "paper"] == pytest.approx(5.7)

    lines = proxy.conclusion_lines(proxy.effect_changes(study))
    assert len(lines) == 3 * 2 * 2
    assert lines[0].startswith(f"whole network: {table4}, mAP: changes by +3.17 [")
    assert lines[0].endswith(f"from the default's +1.50 (the paper's +12.4): {proxy.TOWARD}; its rows moved +3.17 "
                             "(Baseline+MMHPN) and +0.00 (Baseline)")
    # which row an effect's change comes from: here the better row only
    assert whole["better_row_change"] == pytest.approx(mean) and whole["worse_row_change"] == pytest.approx(0.0)

    reading = proxy.verdict_reading(proxy.effect_changes(study))
    assert reading.startswith("Of the 3 departures undone one at a time, 1 (whole network) moves at least one "
                              "effect toward the paper's size; 1 (256x128 inputs) changes no effect measurably; "
                              "1 (longer schedule) moves an effect away from it.")
    # the largest share: Table 5's Rank-1, the paper's smallest of the four differences
    assert f"(whole network, 1+2 − 1 (Table 5), Rank-1) closes {mean / (5.7 - 1.5):.0%} of the gap" in reading


def test_the_reading_says_when_an_effect_grows_because_its_worse_row_fell():
    study = pd.concat([_study({"default": (1.0, 2.0, 1.5)}, baseline=60.0),
                       _study({"256x128 inputs": (9.0, 10.0, 11.0)}, baseline=52.0)], ignore_index=True)
    changes = proxy.effect_changes(study)
    line = changes.iloc[0]
    assert line["worse_row_change"] == pytest.approx(-8.0) and line["better_row_change"] == pytest.approx(0.5)
    assert "so the effect grew more because the worse row fell than because the better one rose" in \
        proxy.verdict_reading(changes)


def test_the_reading_without_any_move_toward_and_with_one_seed():
    study = _study({"default": (1.0, 2.0, 1.5), "256x128 inputs": (1.2, 1.4, 2.0)})
    reading = proxy.verdict_reading(proxy.effect_changes(study))
    assert "none moves an effect toward the paper's size" in reading and "no single one" in reading
    assert proxy.verdict_reading(proxy.effect_changes(_study({"default": (1.0, 2.0, 1.5)}))).startswith(
        "No variant has been measured")
    one_seed = _study({"default": (1.0, 2.0, 1.5), "whole network": (4.0, 5.5, 4.5)})
    one_seed = one_seed[one_seed["seed"] == 0]
    assert set(proxy.effect_changes(one_seed)["reading"]) == {proxy.NO_INTERVAL}
    with pytest.raises(ConfigError, match="no 'default' variant"):
        proxy.effect_changes(study[study["variant"] != "default"])
    # a default effect already above the paper's: a rise moves away from it
    assert proxy.change_reading(1.0, 2.0, default_mean=15.0, paper=12.4) == proxy.AWAY
    assert proxy.change_reading(-2.0, -1.0, default_mean=15.0, paper=12.4) == proxy.TOWARD


def test_the_adoption_rule_weighs_the_readings_against_the_cost():
    study = _study({"default": (1.0, 2.0, 1.5), "whole network": (4.0, 5.5, 4.5), "slower": (4.0, 5.5, 4.5),
                    "256x128 inputs": (1.2, 1.4, 2.0)})
    table = proxy.adoption_table(study, proxy.effect_changes(study)).set_index("variant")
    assert table.loc["whole network", "qualifies"] == "yes"  # moves toward, same cost
    assert table.loc["slower", "fine-tuning cost / default's"] == pytest.approx(2.0)
    assert (table.loc["slower", "fits the budget"], table.loc["slower", "qualifies"]) == ("no", "no")
    assert table.loc["256x128 inputs", "moves an effect toward the paper's, none away"] == "no"
    assert proxy.adoption_reading(table.reset_index()).startswith("1 variant(s) qualify (whole network)")
    costly = table.drop(index="whole network").reset_index()
    assert proxy.adoption_reading(costly) == ("No variant qualifies: 1 of 2 move an effect toward the paper's size "
                                              "and none away (slower), but each costs more than the default's "
                                              "budget allows. The demo regime stays as it is.")
    assert proxy.adoption_reading(costly[costly["variant"] != "slower"]).startswith(
        "No variant qualifies: none of the 1 moves")


def test_the_page_tables_costs_and_status():
    study = _study({"default": (1.0, 2.0, 1.5), "objects pretraining": (4.0, 5.5, 4.5), "slower": (1, 2, 3)})
    table = proxy.effects_table(study)
    assert len(table) == 3 * 2 and table.iloc[0]["mAP Δ [95% CI] (pp)"].startswith("+1.50 [")
    assert table.iloc[0]["paper's mAP Δ"] == "+12.4"
    costs = proxy.study_costs(study).set_index("variant")
    assert costs.loc["default", "runs"] == 3 * 3  # the "1" row is the Baseline's run
    assert costs.loc["slower", "fine-tuning min/run (median)"] == 2.0
    assert costs.loc["objects pretraining", "own pretraining min/seed"] == 2.0  # its own pretraining runs
    assert costs.loc["default", "own pretraining min/seed"] == "-"
    assert costs.loc["default", "wall min (this study)"] == pytest.approx(1.5 * 12)
    variants = proxy.variant_table(None).set_index("variant")  # before any study: the reference profile's
    assert list(variants.index) == [v.name for v in proxy.VARIANTS]
    assert variants.loc["longer schedule", "fields (demo profile)"] == (
        f"epochs={2 * make_config('demo').epochs}, lr_decay_epochs={[2 * e for e in make_config('demo').lr_decay_epochs]}")
    assert "pretraining synthetic_preset=tiny-objects" in \
        proxy.variant_table(study.assign(profile="smoke")).set_index("variant").loc["objects pretraining"].iloc[-1]
    status = proxy.study_status(study, "x.csv")
    assert status.startswith("measured 2026-12-01T10:00:00Z (UTC) on 2 logical CPU(s), test CPU, Linux 6; "
                             "profile demo; seeds [0, 1, 2]; 3 variants, 36 runs (36 trained")
    measured = set(study["variant"])
    assert "; not measured: " + ", ".join(v.name for v in proxy.VARIANTS if v.name not in measured) + "; " in status
    # the made-up run hashes are not the runs this code trains, and "slower" is no variant
    assert status.endswith("; STALE: 36 of 36 lines come from runs this code would not train now (another "
                           "configuration, pretraining run or code version); re-run `make proxy-study` before "
                           "reading them")
    assert proxy.study_status(None, "x.csv") == ("not yet measured: x.csv does not exist; `make proxy-study` "
                                                 "writes it (every run through the run cache)")


def test_writing_and_reading_the_study(tmp_path, monkeypatch):
    study = _study({"default": (1.0, 2.0, 1.5)})
    path = proxy.write_study(study, tmp_path / "study.csv")
    assert proxy.read_study(path).equals(pd.read_csv(path))
    assert proxy.read_study(tmp_path / "missing.csv") is None
    pd.read_csv(path).drop(columns=["machine"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ConfigError, match="lacks the column\\(s\\) \\['machine'\\]"):
        proxy.read_study(tmp_path / "bad.csv")
    # a smoke study never lands in the reference CSV
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="holds the demo profile's proxy-study, not \\['smoke'\\]"):
        proxy.write_study(study.assign(profile="smoke"), proxy.REFERENCE_CSV)
    assert not proxy.REFERENCE_CSV.exists()
    assert proxy.study_path("smoke") == Path("benchmarks/results/proxy-study-smoke.csv")
    assert proxy.study_path("demo") == proxy.REFERENCE_CSV


# ---------------------------------------------------------------------------------------
# the object sets


def test_tiny_objects_are_a_market_layout_set_of_object_classes(tmp_path, monkeypatch):
    def no_person(*args, **kwargs):
        raise AssertionError("an object set drew a person")

    monkeypatch.setattr(synthetic.planning, "render_image", no_person)  # no person is drawn, not even an occluder
    root = synthetic.ensure_synthetic(tmp_path / "objects", "tiny-objects", seed=0)
    dataset = load_market_layout(root)
    config = synthetic.synthetic_config("tiny-objects")
    assert dataset.num_train_pids == config.num_train_ids
    assert len({record.pid for record in dataset.query}) == config.num_test_ids
    for folder in ("bounding_box_train", "bounding_box_test", "query"):
        images = sorted((root / folder).glob("*.jpg"))
        assert images, folder
    plan = synthetic.make_plan(config, seed=0)
    classes = [plan.identities[pid] for pid in plan.train_pids + plan.test_pids]
    assert len(set(classes)) == len(classes) and set(classes) <= set(synthetic.OBJECT_CLASSES)
    assert len(synthetic.OBJECT_CLASSES) == 100
    from PIL import Image

    with Image.open(next((root / "query").glob("*.jpg"))) as image:
        assert image.size == (config.width, config.height) == (64, 128)
    assert json.loads((root / synthetic.MARKER_NAME).read_text())["config"]["subject"] == "object"
    assert synthetic.ensure_synthetic(root, "tiny-objects", seed=0) == root  # recognised, reused


# The pixels the tiny-objects preset (seed 0) draws at FORMAT_VERSION 3 (before JPEG encoding; pinned with
# Pillow 13.0.0, NumPy 2.4.6): object sets are covered by the format version in every run hash too.
TINY_OBJECTS_PIXELS_DIGEST = "47bf8e88ef6ec472867439a8d11632e1516b72ac08009ec9b31a2a3bc28e5f81"


def test_tiny_objects_draw_the_pinned_pixels():
    import hashlib

    plan = synthetic.make_plan(synthetic.synthetic_config("tiny-objects"), seed=0)
    pixels = hashlib.sha256()
    for index in range(len(plan.jobs)):
        pixels.update(synthetic.render_job(plan, index).tobytes())
    assert pixels.hexdigest() == TINY_OBJECTS_PIXELS_DIGEST, (
        "the object generator now draws other pixels for tiny-objects: if it changed, bump FORMAT_VERSION in "
        "mmhpn/data/synthetic/writer.py and pin the new digest here")


def test_object_set_settings_are_checked_and_people_markers_unchanged():
    with pytest.raises(ConfigError, match="at most 100 classes"):
        synthetic.make_plan(synthetic.synthetic_config("tiny-objects", num_train_ids=95), seed=0)
    with pytest.raises(ConfigError, match="no distractors, junk or gt_bbox"):
        synthetic.make_plan(synthetic.synthetic_config("tiny-objects", num_distractors=2), seed=0)
    with pytest.raises(ConfigError, match="subject must be one of"):
        synthetic.synthetic_config("tiny", subject="car")
    # a pedestrian set's marker says nothing of the subject: markers written before the field match
    payload = synthetic.writer._marker_payload(synthetic.synthetic_config("tiny"), 0, "tiny")
    assert "subject" not in payload["config"]
    with pytest.raises(ConfigError, match="describes a person"):
        synthetic.render_job(synthetic.make_plan(synthetic.synthetic_config("tiny-objects"), 0), 0, info={})


def test_the_objects_preset_is_sized_like_the_pretrain_preset():
    objects = synthetic.make_plan(synthetic.synthetic_config("objects"), seed=0)
    pretrain = synthetic.synthetic_config("pretrain")
    train_images = sum(1 for job in objects.jobs if job[0].startswith("bounding_box_train/"))
    expected = pretrain.num_train_ids * pretrain.train_images_per_id
    assert 0.9 * expected < train_images < 1.1 * expected


# ---------------------------------------------------------------------------------------
# end to end, on the smoke profile


@pytest.mark.slow
def test_a_smoke_study_runs_end_to_end_and_the_page_reads_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the smoke profile's data folders and the runs land here
    said = []
    study = proxy.run_study("smoke", [0, 1], ["objects pretraining"], runs_dir="runs", device="cpu", say=said.append)
    assert list(study.columns) == list(proxy.STUDY_COLUMNS)
    assert len(study) == 2 * 2 * len(proxy.STUDY_ROWS) == len(said)
    assert list(dict.fromkeys(study["variant"])) == ["default", "objects pretraining"]
    by_row = study.set_index(["variant", "seed", "table", "row"])
    for variant in ("default", "objects pretraining"):
        for seed in (0, 1):
            assert by_row.loc[(variant, seed, "table5", "1"), "run_hash"] == \
                by_row.loc[(variant, seed, "table4", "Baseline"), "run_hash"]  # one run, two tables
    own = study[study["variant"] == "objects pretraining"]["pretraining_run"]
    assert set(own).isdisjoint(study[study["variant"] == "default"]["pretraining_run"])
    assert (study["pretraining_seconds"] > 0).all() and (study["train_seconds"] > 0).all()
    assert study["machine"].nunique() == 1 and set(study["profile"]) == {"smoke"}

    path = proxy.write_study(study, tmp_path / "proxy-study-smoke.csv")
    again = proxy.read_study(path)
    assert proxy.study_status(again, path).startswith("measured ")
    assert len(proxy.effects_table(again)) == 2 * len(proxy.EFFECTS)
    changes = proxy.effect_changes(again)
    assert len(proxy.conclusion_lines(changes)) == len(proxy.EFFECTS) * len(claims.METRICS)
    assert set(changes["reading"]) <= {proxy.TOWARD, proxy.NO_CHANGE, proxy.AWAY}
    assert proxy.verdict_reading(changes).startswith("Of the 1 departures")

    # the script behind `make proxy-study`: every run is in the cache now
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import proxy_study

    out = tmp_path / "again.csv"
    assert proxy_study.main(["--profile", "smoke", "--seeds", "0,1", "--variants", "objects pretraining",
                             "--out", str(out)]) == 0
    rerun = proxy.read_study(out)
    assert not rerun["trained_now"].any()
    assert rerun["mAP"].tolist() == pytest.approx(study["mAP"].tolist())
    assert proxy_study.main(["--profile", "smoke", "--seeds", "0,x"]) == 1
    assert "--seeds must be comma-separated integers" in capsys.readouterr().err


def test_the_committed_demo_study_covers_five_departures_with_three_seeds_and_renders():
    study = proxy.read_study(ROOT / proxy.REFERENCE_CSV)
    assert study is not None, f"{proxy.REFERENCE_CSV} is committed (written by `make proxy-study`)"
    assert set(study["profile"]) == {"demo"}
    departures = [v for v in study["variant"].unique() if v != proxy.DEFAULT]
    assert len(departures) >= 5, departures
    for variant, lines in study.groupby("variant"):
        assert lines.groupby(["table", "row"])["seed"].nunique().min() >= 3, variant
    changes = proxy.effect_changes(study)
    assert len(changes) == len(departures) * len(proxy.EFFECTS) * len(claims.METRICS)
    assert not changes[["change", "ci_low", "ci_high"]].isna().any().any()
    assert proxy.verdict_reading(changes).startswith(f"Of the {len(departures)} departures")
    assert proxy.adoption_reading(proxy.adoption_table(study, changes))
    stale = proxy.stale_lines(study)
    assert not stale.any(), (f"{int(stale.sum())} lines of {proxy.REFERENCE_CSV} come from runs this code would not "
                             "train now: re-run `make proxy-study`")


def test_a_study_line_is_stale_once_its_run_is_not_what_the_code_trains(monkeypatch):
    from mmhpn import versions

    row = proxy.get_table("table4").row("Baseline")
    config = proxy.study_config(proxy.get_variant("objects pretraining"), row, "smoke", 1)
    line = {**{c: "" for c in proxy.STUDY_COLUMNS}, "table": "table4", "row": "Baseline", "seed": 1,
            "variant": "objects pretraining", "profile": "smoke", "run_hash": config.hash}
    study = pd.DataFrame([line, {**line, "variant": "no such variant"}, {**line, "row": "no such row"},
                          {**line, "seed": 2}])
    assert proxy.stale_lines(study).tolist() == [False, True, True, True]
    assert proxy.STUDY.currency(proxy.stale_lines(study.iloc[:1])).startswith("every line comes from the runs")
    empty = pd.DataFrame()
    assert proxy.book_reading(study.iloc[:1], empty, "p.csv") == proxy.verdict_reading(empty)
    monkeypatch.setattr(versions, "TRAINING_SEMANTICS_VERSION", versions.TRAINING_SEMANTICS_VERSION + 1)
    assert proxy.stale_lines(study.iloc[:1]).tolist() == [True]  # the code changed what a training computes
    # the reading the introduction quotes carries the warning away from the page
    assert proxy.book_reading(study.iloc[:1], empty, "p.csv") == (
        "STALE: 1 of 1 lines come from runs this code would not train now (another configuration, pretraining "
        "run or code version); re-run `make proxy-study` before reading them. " + proxy.verdict_reading(empty))
    assert proxy.book_reading(None, empty, "p.csv").startswith("not yet measured: p.csv does not exist")


def test_the_variant_rule_and_its_recorded_reading(tmp_path):
    from mmhpn.paper import selection, views

    default = [{"preset": "baseline", "val_mAP_mean": 89.0}, {"preset": "mmhpn", "val_mAP_mean": 90.0}]
    assert selection.keeps_up(default, [{"preset": "baseline", "val_mAP_mean": 88.6},
                                         {"preset": "mmhpn", "val_mAP_mean": 91.0}], 0.5)
    assert not selection.keeps_up(default, [{"preset": "baseline", "val_mAP_mean": 88.4},
                                            {"preset": "mmhpn", "val_mAP_mean": 95.0}], 0.5)
    assert not selection.keeps_up(default, [{"preset": "baseline", "val_mAP_mean": 95.0}], 0.5)  # a preset missing
    from mmhpn.versions import TRAINING_SEMANTICS_VERSION

    record = {"tolerance_pp": 0.5, "rule": "the rule",
              "recorded": {"utc": "t", "machine": "m", "training_semantics_version": TRAINING_SEMANTICS_VERSION},
              "default": [dict(line, variant="default", val_mAP=[line["val_mAP_mean"]] * 3) for line in default],
              "variant": [{"variant": "objects pretraining", "preset": p, "val_mAP": [40.0, 41.0, 42.0],
                           "val_mAP_mean": 41.0} for p in ("baseline", "mmhpn")]}
    path = tmp_path / "variant-selection.json"
    path.write_text(json.dumps(record))
    table, reading = views.variant_selection(path)
    assert list(table["regime"]) == ["default", "default", "objects pretraining", "objects pretraining"]
    assert reading == ("The rule: the rule. Measured on t (m): objects pretraining falls behind the default on "
                       "validation identities, so the demo regime stays as it is.")
