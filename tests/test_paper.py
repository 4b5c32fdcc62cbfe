"""mmhpn.paper: the tables' rows (resolved layouts, the PSL control's constants, what the run hash
covers), the one run planner, the notebook registry and the views."""
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from mmhpn.paper import compute_cost, numbers, planner, registry, tables, views
from mmhpn.resources import read_text
from mmhpn.errors import ConfigError
from mmhpn.model import PRESETS
from mmhpn.config import config_hash, make_config, slug

OLD_MMHPN_LAYOUT = {"conv5_1": (8,), "conv5_2": (4,), "conv5_3": (2, 1)}
NEW_MMHPN_LAYOUT = {"conv5_1": (8, 4), "conv5_2": (2,), "conv5_3": (1,)}


def _resolved(config):
    return config.layout if config.layout is not None else PRESETS[config.preset]


def test_table5_grows_the_mmhpn_layout_one_scale_at_a_time():
    rows = tables.get_table("table5").rows
    layouts = [_resolved(planner.row_config(row, "paper", 0)) for row in rows]
    assert layouts == [
        {"conv5_3": (1,)},
        {"conv5_2": (2,), "conv5_3": (1,)},
        {"conv5_1": (4,), "conv5_2": (2,), "conv5_3": (1,)},
        NEW_MMHPN_LAYOUT,
    ]
    # each row adds one scale at the tap the mmhpn preset gives it
    for smaller, larger in zip(layouts, layouts[1:]):
        for tap, counts in smaller.items():
            assert set(counts) <= set(larger[tap])
            assert set(counts) <= set(NEW_MMHPN_LAYOUT[tap])


def test_layouts_table_places_the_same_15_stripes_four_ways():
    spec = tables.get_table("layouts")
    assert not spec.in_paper and spec.claims == () and len(spec.questions) == 3
    layouts = [_resolved(planner.row_config(row, "demo", 0)) for row in spec.rows]
    assert layouts[0] == NEW_MMHPN_LAYOUT and layouts[2] == OLD_MMHPN_LAYOUT
    assert layouts[3] == {"conv5_3": (8, 4, 2, 1)}
    for layout in layouts:
        assert sorted(c for counts in layout.values() for c in counts) == [1, 2, 4, 8]
    assert len({str(layout) for layout in layouts}) == 4
    configs = [planner.row_config(row, "demo", 0) for row in spec.rows]
    assert {(c.pooling, c.loss) for c in configs} == {("aps", "softmax")}
    # the text's reading is Table 6's APS row: trained once through the run cache
    assert config_hash(configs[0]) == config_hash(planner.row_config(tables.get_table("table6").rows[2],
                                                                         "demo", 0))
    for better, worse in spec.questions:
        spec.row(better), spec.row(worse)


def test_hash_covers_the_resolved_layout_not_the_presets_name():
    by_name = make_config("paper", preset="mmhpn")
    assert by_name.layout is None
    assert config_hash(by_name) == config_hash(make_config("paper", preset="mmhpn", layout=NEW_MMHPN_LAYOUT))
    assert config_hash(by_name) != config_hash(make_config("paper", preset="mmhpn", layout=OLD_MMHPN_LAYOUT))
    assert by_name.hashed_fields()["layout"] == {tap: list(c) for tap, c in NEW_MMHPN_LAYOUT.items()}
    # an explicit layout is hashed as written
    explicit = make_config("paper", preset="baseline", layout={"conv5_3": (4,)})
    assert explicit.hashed_fields()["layout"] == {"conv5_3": [4]}


def test_scale_weights_are_hashed_for_the_weighted_softmax_only():
    control = make_config("unit", loss="weighted_softmax", scale_weights=(0.9, 0.8, 0.5, 1.0))
    other = make_config("unit", loss="weighted_softmax", scale_weights=(0.9, 0.8, 0.4, 1.0))
    assert config_hash(control) != config_hash(other)
    softmax = make_config("unit")
    assert "scale_weights" not in softmax.hashed_fields()
    assert config_hash(softmax) == config_hash(make_config("unit", scale_weights=(1.0, 2.0)))
    with pytest.raises(ConfigError, match="weighted_softmax' needs scale_weights"):
        make_config("unit", loss="weighted_softmax")


def test_psl_scale_weights_are_the_image_weighted_mean_over_training():
    # two epochs; the second saw three times as many images
    history = pd.DataFrame({"epoch": [1, 2], "loss": [5.0, 4.0], "images": [100, 300],
                            "psl_factor_0": [0.90, 0.98], "psl_factor_1": [0.70, 0.74],
                            "psl_factor_2": [0.50, 0.30], "psl_factor_3": [1.0, 1.0]})
    weights = planner.psl_scale_weights(history)
    assert weights == pytest.approx((0.96, 0.73, 0.35, 1.0))
    # columns are ordered by scale index, not as text (psl_factor_10 after psl_factor_2)
    wide = pd.DataFrame({"images": [1], **{f"psl_factor_{i}": [float(i)] for i in (10, 2, 0, 1)}})
    assert planner.psl_scale_weights(wide) == (0.0, 1.0, 2.0, 10.0)
    with pytest.raises(ConfigError, match="no psl_factor"):
        planner.psl_scale_weights(history[["epoch", "loss", "images"]])


def test_the_control_row_is_derived_from_the_psl_run_of_the_same_seed(monkeypatch):
    import mmhpn.runs

    trained, loaded, data = [], [], object()

    def fake_load_training_data(config):
        loaded.append(config)
        return data

    def fake_train_or_load(config, runs_dir, progress, dataset):
        assert dataset is data  # read once for every row of the same data
        trained.append(config)
        factor = 0.5 + 0.1 * config.seed  # a different PSL history per seed
        history = pd.DataFrame({"images": [64], "seconds": [1.0], **{f"psl_factor_{i}": [factor] for i in range(4)}})
        return SimpleNamespace(metrics={"rank1": 0.5, "mAP": 0.4}, trained_now=True, history=history,
                               path=f"runs/{config.loss}-{config.seed}")

    monkeypatch.setattr(mmhpn.runs, "train_or_load", fake_train_or_load)
    monkeypatch.setattr(planner, "load_training_data", fake_load_training_data)
    spec = tables.get_table("table7")
    psl, control = spec.row("MMHPN+PSL"), spec.row(tables.PSL_CONTROL_LABEL)
    assert control.scale_weights_from == "MMHPN+PSL"
    results = planner.run_rows([psl, control], "unit", [0, 1])
    controls = [c for c in trained if c.loss == "weighted_softmax"]
    assert [c.scale_weights for c in controls] == [(0.5,) * 4, (0.6,) * 4]
    assert [c.preset for c in controls] == ["mmhpn", "mmhpn"] and {c.pooling for c in controls} == {"aps"}
    assert list(results["scale_weights"].fillna("")) == ["", "", "0.500, 0.500, 0.500, 0.500",
                                                          "0.600, 0.600, 0.600, 0.600"]
    assert len(trained) == 4 and len(loaded) == 1
    # in the table, the PSL row comes first; alone, the control cannot run
    labels = [r.label for r in spec.rows]
    assert labels.index("MMHPN+PSL") < labels.index(tables.PSL_CONTROL_LABEL)
    with pytest.raises(ConfigError, match="needs the run of row 'MMHPN\\+PSL'"):
        planner.run_rows([control], "unit", [0])
    with pytest.raises(ConfigError, match="pass scale_weights"):
        planner.row_config(control, "unit", 0)



@pytest.mark.slow
def test_one_training_epoch_logs_the_psl_factors_the_control_then_uses(monkeypatch):
    import torch

    from mmhpn import training
    from mmhpn.losses import build_loss
    from mmhpn.model import build_model

    monkeypatch.setattr(training, "set_loader_epoch", lambda loader, config, epoch: None)
    config = make_config("unit", loss="psl", device="cpu")
    gen = torch.Generator().manual_seed(0)
    # two batches of different sizes: the epoch's factor is their image-weighted mean
    loader = [(torch.randn(n, 3, 64, 32, generator=gen), torch.arange(n) % 3, torch.zeros(n)) for n in (4, 2)]

    def one_epoch(loss):
        torch.manual_seed(0)
        model = build_model(3, backbone="resnet34", layout=config.layout)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: both batches see the same weights
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        return training._train_one_epoch(model, model, loader, loss, optimizer, scaler, config, 0, torch.device("cpu"),
                                         "fp32", False), model

    psl = build_loss("psl", num_scales=4)
    row, model = one_epoch(psl)
    columns = [f"psl_factor_{i}" for i in range(4)]
    assert set(columns) <= set(row)
    model.train()
    per_image = []
    for images, pids, _ in loader:
        psl(model(images), pids)
        per_image.append(psl.last_image_factors.double())
    per_image = torch.cat(per_image)  # (6 images, 4 scales)
    assert [row[c] for c in columns] == pytest.approx(per_image.mean(0).tolist(), rel=1e-4)
    # the spread over the epoch's images of each image's factor (population sd)
    assert [row[f"psl_factor_sd_{i}"] for i in range(4)] == pytest.approx(per_image.std(0, correction=0).tolist(),
                                                                         rel=1e-3, abs=1e-6)
    assert row["psl_factor_3"] == 1.0 and row["psl_factor_sd_3"] == 0.0  # the single stripe, "ce" rule: factor 1
    weights = planner.psl_scale_weights(pd.DataFrame([row]))
    control_row, _ = one_epoch(build_loss("weighted_softmax", scale_weights=weights, num_scales=4))
    assert not any(c.startswith("psl_factor_") for c in control_row)


def test_row_layout_resolves_presets_and_explicit_layouts():
    rows = tables.get_table("layouts").rows
    assert tables.row_layout(rows[0]) == NEW_MMHPN_LAYOUT
    assert tables.row_layout(rows[1]) == {"conv5_1": (8,), "conv5_2": (4, 2), "conv5_3": (1,)}
    assert tables.row_layout(rows[3]) == {"conv5_3": (8, 4, 2, 1)}


def test_table_rows_knobs_select_and_change_rows():
    for key in tables.TABLES:
        assert tables.table_rows(key) == tables.TABLES[key].rows  # defaults: the paper's rows
    six = tables.table_rows("table6", poolings=["aps", "avg"])
    assert [r.label for r in six] == ["MMHPN+APS", "MMHPN+GAP"]
    seven = tables.table_rows("table7", gammas=[0.1, 0.2, 0.3, 0.4], single_stripe_rules=["ce"])
    assert [r.label for r in seven] == ["MMHPN+softmax", "MMHPN+PSL", tables.PSL_CONTROL_LABEL]
    assert seven[1].overrides["gammas"] == (0.1, 0.2, 0.3, 0.4) and "gammas" not in seven[0].overrides
    # the control takes its weights from the ce row: without it, no control
    literal = tables.table_rows("table7", single_stripe_rules=["literal"])
    assert tables.PSL_CONTROL_LABEL not in [r.label for r in literal]
    four = tables.table_rows("table4", layouts={"Baseline+MMHPN": {"conv5_3": [2, 1]}})
    assert four[-1].overrides["layout"] == {"conv5_3": [2, 1]} and four[:-1] == tables.TABLES["table4"].rows[:-1]
    for bad in ({"key": "table4", "layouts": {"nope": {}}}, {"key": "table6", "poolings": ["mean"]},
                {"key": "table4", "poolings": ["avg"]}, {"key": "table7", "single_stripe_rules": ["x"]}):
        with pytest.raises(ConfigError):
            tables.table_rows(**bad)


def test_the_default_knobs_hash_as_the_tables_rows():
    # a notebook that passes its default gammas trains (and finds in the cache) the same runs
    default = tables.table_rows("table7", gammas=[0.3, 0.5, 1.5, 2.0])
    for row, plain in zip(default, tables.TABLES["table7"].rows):
        weights = (0.9, 0.8, 0.5, 1.0) if row.scale_weights_from else None
        assert (planner.row_config(row, "smoke", 0, scale_weights=weights).hash
                == planner.row_config(plain, "smoke", 0, scale_weights=weights).hash)


def test_notebook_parameters_to_rows_and_fields():
    params = {"profile": "smoke", "seeds": [0, 1], "dataset": "", "data_root": "", "device": "cpu", "epochs": 0,
              "overrides": {"height": 128, "lr": 0.02}, "height": 192, "width": 64, "stripe_counts": [1, 12]}
    rows, seeds = registry.notebook_rows("figure5", params)
    assert [r.label for r in rows] == ["1", "12"] and seeds == [0, 1]
    common = registry.notebook_common(params)
    assert common["height"] == 192 and common["width"] == 64 and common["lr"] == 0.02  # its own size wins
    assert "dataset" not in common and "data_root" not in common  # empty: the training profile's
    assert registry.notebook_rows("figure4", params)[1] == [0]  # first seed only
    with pytest.raises(ConfigError, match="unknown notebook runs key 'data'"):
        registry.notebook_rows("data", params)


def test_companion_summary_and_paper_notes():
    import pandas as pd

    single = pd.DataFrame({"seed": [0, 1], "rank1": [50.0, 52.0], "mAP": [30.0, 32.0]})
    only_single = views.companion_summary(single, pd.DataFrame(columns=["seed", "rank1", "mAP"]), "synthetic")
    assert list(only_single.columns) == ["single query Rank-1", "single query mAP"]
    assert only_single.iloc[0]["single query mAP"] == "31.0 ± 1.4"
    both = views.companion_summary(single, single, "synthetic")
    assert "multiple query mAP" in both.columns and both.index[0].endswith("(measured on synthetic)")
    notes = numbers.paper_notes(["table1", "table2", "table3"])
    assert set(notes["table"]) <= {"table1", "table2", "table3"} and notes["note"].notna().all() and len(notes)


def test_the_plan_names_the_run_folders_the_notebook_then_trains(monkeypatch, tmp_path):
    # One walker: the build's plan (nothing trained yet: the control waits for its PSL run),
    # then the notebook's training, then the plan again, on Table 7's ce rows with the control.
    # The run cache is stood in for by one that keeps each run where `run_dir_for` says
    # (tests/test_runs.py checks the real one does) with a PSL history; no model trains.
    import mmhpn.runs
    from mmhpn.checkpoints import FINISHED_FILE, HISTORY_FILE

    def train_or_load(config, runs_dir, progress, dataset):
        path = mmhpn.runs.run_dir_for(config, runs_dir)
        history = pd.DataFrame({"images": [64], "seconds": [1.0], **{f"psl_factor_{i}": [0.5 + 0.1 * i]
                                                                       for i in range(4)}})
        path.mkdir(parents=True)
        history.to_csv(path / HISTORY_FILE, index=False)
        (path / FINISHED_FILE).write_text(config.hash + "\n")
        return SimpleNamespace(metrics={"rank1": 0.5, "mAP": 0.4}, trained_now=True, history=history, path=path)

    monkeypatch.setattr(mmhpn.runs, "train_or_load", train_or_load)
    monkeypatch.setattr(planner, "load_training_data", lambda config: None)
    params = {"profile": "unit", "seeds": [0, 1], "dataset": "", "data_root": "", "device": "cpu", "epochs": 0,
              "overrides": {}, "runs_dir": "runs", "single_stripe_rules": ["ce"]}
    before = registry.notebook_run_dirs("table7", params, tmp_path)
    assert len(before) == 6 and len(set(before)) == 6
    waiting = [run for run in before if ".then-" in run.name]
    assert [run.name.split(".then-")[1] for run in waiting] == [slug(tables.PSL_CONTROL_LABEL)] * 2
    results = registry.run_notebook("table7", {**params, "runs_dir": str(tmp_path / "runs")})
    trained = [Path(run) for run in results["run"]]
    assert [run for run in before if run not in waiting] == trained[:4]
    assert registry.notebook_run_dirs("table7", params, tmp_path) == trained
    assert list(results["row"]) == ["MMHPN+softmax"] * 2 + ["MMHPN+PSL"] * 2 + [tables.PSL_CONTROL_LABEL] * 2


def test_one_slug_names_run_folders_and_placeholders():
    assert slug("MMHPN+softmax × mean (control)") == "MMHPN-softmax---mean--control-"
    assert make_config("unit", name="a b/c").run_name == "a-b-c"


def test_the_baseline_reading_uses_the_builds_target_range():
    low, high = compute_cost.TARGET_BASELINE_MAP
    assert "within" in views.baseline_reading((low + high) / 2, "synthetic (demo)")
    assert "saturation" in views.baseline_reading(high + 1, "synthetic (demo)")
    assert "hardly trained" in views.baseline_reading(low - 1, "synthetic (demo)")
    assert views.baseline_reading(61.6, "synthetic (demo)").startswith("The baseline reaches 61.6% mAP on synthetic")


def test_the_recorded_regime_selection_is_package_data():
    for read in (views.regime_selection, views.pretraining_selection):  # mmhpn/resources/, wherever installed
        summary, epochs, reading = read()
        assert len(summary) and len(epochs) and summary.attrs["recorded"]["utc"] and "chooses" in reading
    # the pretraining selection ran in two rounds: the page says what the rule chose after each
    assert "In round 1, with the first 4 candidates only, it chose 8 epochs (decay after 6), the longest" in reading
    with pytest.raises(ConfigError, match="no recorded file 'nothing.json'"):
        read_text("nothing.json")


def test_a_recorded_selection_says_when_the_code_has_moved_on(monkeypatch):
    from mmhpn import versions

    current = {"recorded": {"training_semantics_version": versions.TRAINING_SEMANTICS_VERSION}}
    assert views.record_currency(current, "select_regime.py") == ""
    assert "cannot be checked" in views.record_currency({"recorded": {}}, "select_regime.py")
    # every committed selection was recorded under this code's semantics: a bump asks for them again
    for read in (views.regime_selection, views.pretraining_selection, views.pretraining_input_selection,
                 views.variant_selection):
        reading = read()[-1]
        assert "STALE" not in reading and "cannot be checked" not in reading, reading
    monkeypatch.setattr(versions, "TRAINING_SEMANTICS_VERSION", versions.TRAINING_SEMANTICS_VERSION + 1)
    assert views.regime_selection()[-1].endswith(
        f" STALE: recorded under training-semantics version {versions.TRAINING_SEMANTICS_VERSION - 1}, and what a "
        f"training computes has changed since (version {versions.TRAINING_SEMANTICS_VERSION} now): re-run "
        "benchmarks/select_regime.py before relying on this choice.")


def test_figure5_points_reads_the_runs_behind_the_results(monkeypatch):
    from types import SimpleNamespace

    runs = {f"run-{n}-{seed}": SimpleNamespace(config=make_config("smoke", layout={"conv5_3": (n,)}, seed=seed),
                                               metrics={"rank1": 0.5 + n / 100, "mAP": 0.3 + n / 100})
            for n in (1, 2) for seed in (0, 1)}
    monkeypatch.setattr(views, "load_run", runs.__getitem__)
    points = views.figure5_points(pd.DataFrame({"run": list(runs)}))
    assert list(points.columns) == ["stripes", "seed", "rank1", "mAP"]
    assert points["stripes"].tolist() == [1, 1, 2, 2] and points["seed"].tolist() == [0, 1, 0, 1]
    assert points["mAP"].tolist() == pytest.approx([0.31, 0.31, 0.32, 0.32])
