"""`make book`'s console: one line per notebook, the full papermill log in a file that
errors name, and a failing notebook reported in one line (tiny generated notebooks)."""
from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest

from mmhpn.bookbuild import NotebookExecutionError
from mmhpn.bookbuild.layout import notebook_order, notebook_path
from mmhpn.bookbuild.pipeline import run_pipeline
from mmhpn.bookbuild.profiles import Profile, get_profile
from mmhpn.bookbuild.progress import notebook_line, notebook_runs_key, planned_runs, time_left
from mmhpn.checkpoints import HISTORY_FILE
from mmhpn.errors import ConfigError
from mmhpn.paper import compute_cost, registry
from mmhpn.runs import FINISHED_FILE


def _notebook(root: Path, name: str, *sources: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("x: int = 1  # a number")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *(nbformat.v4.new_code_cell(source) for source in sources)]
    (root / "notebooks").mkdir(exist_ok=True)
    nbformat.write(nb, root / "notebooks" / f"{name}.ipynb")


def _toc(root: Path, *names: str) -> None:
    """A table of contents listing `names` as executed pages: the build's notebooks and order."""
    pages = "".join(f"      - file: book/executed/{name}\n" for name in names)
    (root / "_toc.yml").write_text(f"format: jb-book\nroot: book/intro\nparts:\n  - chapters:\n{pages}")


def _profile(root: Path) -> Profile:
    (root / "data").mkdir(exist_ok=True)
    return Profile(name="smoke", dataset="synthetic", data_root="data", synthetic_preset=None)


def _finished_run(path: Path, seconds: list[float]) -> Path:
    path.mkdir(parents=True)
    (path / HISTORY_FILE).write_text("epoch,seconds\n" + "".join(f"{i},{s}\n" for i, s in enumerate(seconds)))
    (path / FINISHED_FILE).write_text("hash\n")
    return path


def test_notebook_line_says_name_work_elapsed_and_time_left(tmp_path):
    needed = [tmp_path / "a", tmp_path / "b", tmp_path / "c", tmp_path / "a"]
    line = notebook_line(4, 11, "03-table-4-branches", needed, trained=1, seconds=62.04,
                              left="~1.5 min of training left (3 run(s) x 30 s mean)")
    assert "\n" not in line
    assert re.fullmatch(r"\[ 4/11\] 03-table-4-branches +3 run\(s\): 1 trained, 2 from runs/ +62\.0 s +"
                        r"~1\.5 min of training left \(3 run\(s\) x 30 s mean\)", line), line
    assert "no training" in notebook_line(1, 11, "01-data", [], 0, 3.0, "no training left")


def test_time_left_is_runs_to_train_times_the_mean_measured_training(tmp_path):
    done = [_finished_run(tmp_path / "r1", [10, 20]), _finished_run(tmp_path / "r2", [50, 10])]  # 30 s, 60 s
    todo = [tmp_path / "r3", tmp_path / "r4", tmp_path / "r3"]  # two distinct runs, not finished
    assert time_left(todo + done, done) == "~1.5 min of training left (2 run(s) x 45 s mean)"
    assert time_left(done, done) == "no training left"
    assert "unknown" in time_left(todo, [])



def test_time_left_takes_each_folders_own_mean(tmp_path):
    # the pretraining runs (per-user folder) take minutes, the fine-tunings (runs folder) seconds
    pretrained = [_finished_run(tmp_path / "pretraining" / "p0", [600, 600])]
    tuned = [_finished_run(tmp_path / "runs" / "f0", [20]), _finished_run(tmp_path / "runs" / "f1", [40])]
    fine_tunings = [tmp_path / "runs" / f"f{i}" for i in range(2, 6)]
    assert time_left(fine_tunings, pretrained + tuned) == "~2.0 min of training left (4 run(s) x 30 s mean)"
    both = fine_tunings + [tmp_path / "pretraining" / "p1"]
    assert time_left(both, pretrained + tuned) == \
        "~22.0 min of training left (1 run(s) x 1200 s mean + 4 run(s) x 30 s mean)"
    assert time_left(fine_tunings, pretrained) == "4 run(s) to train; time left unknown until one has finished"
    assert time_left(both, pretrained) == \
        "~20.0 min of training left (1 run(s) x 1200 s mean; 4 more run(s) of unknown time)"


@pytest.mark.slow
def test_one_line_per_notebook_and_the_papermill_log_in_a_file(tmp_path, capfd):
    _notebook(tmp_path, "first", "print('hello from a cell', x)")
    _notebook(tmp_path, "second", "import warnings; warnings.warn('noisy kernel')", "print('second cell')")
    _toc(tmp_path, "first", "second")
    record = run_pipeline(_profile(tmp_path), notebooks=("first", "second"), build=False, root=tmp_path)
    out, err = capfd.readouterr()
    lines = out.splitlines()
    assert len(lines) == 3, out  # a header, then one line per notebook
    assert lines[0].startswith("mmhpn.book: profile smoke, 2 notebook(s), 0 distinct training run(s)")
    assert re.match(r"\[ 1/2\] first +no training +\d+\.\d s +no training left$", lines[1]), lines[1]
    assert re.match(r"\[ 2/2\] second +no training", lines[2]), lines[2]
    # papermill's per-cell INFO lines, the cells' output and the kernel's warnings stay off the console
    assert "hello from a cell" not in out + err and "INFO" not in out + err and "noisy kernel" not in out + err
    assert err == ""
    log = (tmp_path / "book" / "executed" / "logs" / "first.log").read_text()
    assert "hello from a cell 1" in log and "Executing" in log
    assert set(record["notebooks_s"]) == {"first", "second"}
    assert record["cached_at_start"] == 0 and record["cached_training_s"] == 0.0  # nothing planned, nothing cached


@pytest.mark.slow
def test_a_failing_notebook_is_one_line_naming_cell_error_and_log(tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _notebook(tmp_path, "broken", "y = 2", "raise ValueError(f'bad value {x}\\nsecond line of the message')")
    _toc(tmp_path, "broken")
    with pytest.raises(NotebookExecutionError) as failure:
        run_pipeline(_profile(tmp_path), notebooks=("broken",), build=False, root=tmp_path)
    message = str(failure.value)
    assert "\n" not in message
    assert re.search(r"notebook broken failed in cell \[\d+\] \(cell 2\): ValueError: bad value 1 \.\.\.", message)
    assert "full log: book/executed/logs/broken.log" in message
    log = tmp_path / "book" / "executed" / "logs" / "broken.log"
    assert "second line of the message" in log.read_text()
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err and "INFO" not in out + err


def _reader(root: Path, name: str, *sources: str) -> None:
    """A notebook that reads the table notebooks' records (declares records_dir, trains nothing)."""
    _notebook(root, name, *sources)
    path = root / "notebooks" / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source = 'records_dir: str = "records"  # per-seed records of the pages before'
    nbformat.write(nb, path)


WAIT_FOR = """import pathlib, time
for _ in range(300):
    if pathlib.Path({name!r}).exists():
        break
    time.sleep(0.1)
else:
    raise RuntimeError({name!r} + ' never appeared: the notebooks did not run side by side')"""


@pytest.mark.slow
def test_a_cached_build_runs_two_notebooks_at_a_time_and_a_reader_waits(tmp_path, capfd):
    # "slow" finishes only once "quick" has run beside it; "reader" (it reads earlier pages'
    # records) would fail if it started when "quick" finished, before "slow" had.
    _notebook(tmp_path, "slow", WAIT_FOR.format(name="quick-done"), "import time; time.sleep(2)",
              "import pathlib; pathlib.Path('slow-done').write_text('x')")
    _notebook(tmp_path, "quick", "import pathlib; pathlib.Path('quick-done').write_text('x')")
    _reader(tmp_path, "reader", "import pathlib; assert pathlib.Path('slow-done').exists(), 'started too early'")
    _notebook(tmp_path, "after", "print('after the reader')")
    _toc(tmp_path, "slow", "quick", "reader", "after")
    record = run_pipeline(_profile(tmp_path), build=False, root=tmp_path)
    assert record["lanes"] == 2
    out, err = capfd.readouterr()
    lines = out.splitlines()
    assert "2 notebooks at a time (nothing to train)" in lines[0]
    # one line per notebook, in the toc's order whatever the order they finished in
    assert [line.split()[2] for line in lines[1:]] == ["slow", "quick", "reader", "after"], out
    assert err == ""
    assert set(record["notebooks_s"]) == {"slow", "quick", "reader", "after"}
    assert "after the reader" in (tmp_path / "book" / "executed" / "logs" / "after.log").read_text()


@pytest.mark.slow
def test_a_failure_in_lanes_stops_the_build_with_its_one_line(tmp_path):
    _notebook(tmp_path, "broken", "raise ValueError('bad value')")
    _notebook(tmp_path, "beside", "import time; time.sleep(2)")
    _notebook(tmp_path, "later", "import pathlib; pathlib.Path('later-ran').write_text('x')")
    _toc(tmp_path, "broken", "beside", "later")
    with pytest.raises(NotebookExecutionError, match=r"notebook broken failed in cell .*ValueError: bad value"):
        run_pipeline(_profile(tmp_path), build=False, root=tmp_path)
    assert not (tmp_path / "later-ran").exists()  # nothing new starts after a failure
    assert (tmp_path / "book" / "executed" / "beside.ipynb").is_file()  # the one running finished


def test_a_build_that_trains_runs_one_notebook_at_a_time(tmp_path, monkeypatch):
    from mmhpn.bookbuild import pipeline

    done = _finished_run(tmp_path / "done", [1.0])
    assert pipeline.lanes_for([done]) == min(pipeline.CACHED_LANES, os.cpu_count() or 1)
    assert pipeline.lanes_for([done, tmp_path / "to-train"]) == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert pipeline.lanes_for([done]) == 1
    _reader(tmp_path, "verdicts", "pass")
    _reader(tmp_path, "table", 'registry.run_notebook("table4", globals())')  # writes records
    _notebook(tmp_path, "plain", "pass")
    assert [pipeline.reads_earlier_pages(name, tmp_path) for name in ("verdicts", "table", "plain")] == [
        True, False, False]


def test_the_plan_follows_the_notebooks_run_calls(tmp_path):
    # A notebook names its rows once, in its training cell (registry.run_notebook("KEY", globals()));
    # the build reads that key from the notebook's code and walks the rows with the same planner.
    # An empty runs folder: what this checkout has trained (Table 7's PSL runs) changes the plan.
    profile = get_profile("demo")
    parameters = {**profile.notebook_parameters(), "runs_dir": str(tmp_path / "runs")}
    keys = {}
    for name in notebook_order():
        nb = nbformat.read(notebook_path(name), as_version=4)
        code = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
        key = notebook_runs_key(notebook_path(name))
        runs = planned_runs(name, parameters)
        assert name not in code  # a notebook's file name is written in _toc.yml only
        if key is not None:
            assert f'registry.run_notebook("{key}", globals())' in code, name
            assert runs, name
            keys[name] = key
        else:
            assert "run_rows" not in code and "run_table" not in code and "run_notebook" not in code, name
            assert not runs, name
    assert sorted(keys.values()) == sorted(registry.NOTEBOOK_RUNS)  # each key trained by one notebook
    every = {run for name in notebook_order() for run in planned_runs(name, parameters)}
    # the demo book: Table 4 (4 configurations), Table 5 (+2), Table 6 (+2), Table 7 (+4, the
    # control planned as one placeholder per seed until its PSL run exists), the layouts (+3),
    # Figure 5 (+3: its 1-stripe point is the baseline), all over 3 seeds; Figure 3's 4-stripe
    # model is Figure 5's; and each replicate's own pretraining run (one per seed)
    assert len(every) == 18 * 3 + 3
    assert len([run for run in every if run.name.startswith("pretrain-demo-")]) == 3
    control = [run for run in every if ".then-" in run.name]
    assert len(control) == 3  # no hash before the PSL run: one placeholder per seed


def test_the_runs_key_is_read_from_the_notebooks_code(tmp_path):
    _notebook(tmp_path, "none", "%matplotlib inline\nprint(x)")
    _notebook(tmp_path, "one", "%matplotlib inline\nfrom mmhpn.paper import registry",
              'results = registry.run_notebook("table6", globals())')
    _notebook(tmp_path, "computed", 'key = "table6"', "run_notebook(key, globals())")
    _notebook(tmp_path, "two", 'registry.run_notebook("table4", globals())', 'registry.run_notebook("table5", {})')
    folder = tmp_path / "notebooks"
    assert notebook_runs_key(folder / "none.ipynb") is None
    assert notebook_runs_key(folder / "one.ipynb") == "table6"
    with pytest.raises(ConfigError, match="without a literal key"):
        notebook_runs_key(folder / "computed.ipynb")
    with pytest.raises(ConfigError, match=r"\['table4', 'table5'\]; expected one key per notebook"):
        notebook_runs_key(folder / "two.ipynb")


def test_the_control_is_planned_by_its_hash_once_its_psl_run_exists(tmp_path, monkeypatch):
    from mmhpn import checkpoints

    params = {**get_profile("demo").notebook_parameters(), "runs_dir": str(tmp_path), "seeds": [0]}
    before = planned_runs("06-table-7-psl", params)
    placeholder = [run for run in before if ".then-" in run.name]
    assert len(placeholder) == 1
    psl_run = placeholder[0].with_name(placeholder[0].name.split(".then-")[0])
    psl_run.mkdir(parents=True)
    (psl_run / checkpoints.HISTORY_FILE).write_text("epoch,images,psl_factor_0,psl_factor_1\n1,10,0.5,0.25\n")
    monkeypatch.setattr(checkpoints, "is_finished", lambda run: run == psl_run)
    after = planned_runs("06-table-7-psl", params)
    assert not [run for run in after if ".then-" in run.name]
    assert len(after) == len(before)


def test_target_checks_read_the_build_the_log_and_the_records(tmp_path):
    import json

    import pandas as pd

    from mmhpn.claims import CLAIM_COLUMNS, write_records

    records = tmp_path / "records"
    results = pd.DataFrame({"row": ["Baseline"] * 3 + ["Baseline+MSM"] * 3, "seed": [0, 1, 2] * 2,
                            "rank1": [60.0] * 6, "mAP": [40.0, 41.0, 42.0, 43.0, 44.0, 45.0],
                            "train_s": [1.0] * 6, "run_hash": ["h"] * 6})
    claim = {column: None for column in CLAIM_COLUMNS}
    claims = pd.DataFrame([{**claim, "table": "table4", "better": "Baseline+MSM", "worse": "Baseline", "metric": "mAP",
                            "n_seeds": 3, "mean": 3.0, "ci_low": 2.5, "ci_high": 3.5, "verdict": "supported"},
                           {**claim, "table": "table4", "better": "Baseline+MSM", "worse": "Baseline",
                            "metric": "rank1", "n_seeds": 3, "mean": 0.0, "ci_low": -9.0, "ci_high": 9.0,
                            "verdict": "inconclusive"}])  # Rank-1's width is not a target
    write_records("table4", results, claims, records)
    log = tmp_path / "build-log.json"
    entry = {"profile": "demo", "dataset": "synthetic", "machine": "m", "notebooks_s": {"a": 60}, "complete": True}
    log.write_text(json.dumps([{**entry, "started_utc": "t1", "trainings": 62, "cached_at_start": 0, "total_s": 65 * 60},
                               {**entry, "started_utc": "t2", "trainings": 0, "cached_at_start": 62, "total_s": 100},
                               # trained some, found others cached: neither a first build nor a cached one
                               {**entry, "started_utc": "t3", "trainings": 5, "cached_at_start": 57, "total_s": 600}]))
    table = compute_cost.target_checks({"profile": "demo"}, compute_cost.build_history(log), records).set_index("target")
    met = table["met"].tolist()
    assert met == ["NO", "yes", "yes", "yes", "yes", "yes"], table
    assert "65.0 min" in table["measured"].iloc[0] and "1.7 min" in table["measured"].iloc[1]
    assert "41.0%" in table["measured"].iloc[4]
    # the baseline's spread over the replicates (40, 41, 42): sd 1.00 pp, at the target
    assert table["measured"].iloc[5] == "sd 1.00 pp over 3 replicates (40.00, 41.00, 42.00)"
    # This build's own record wins over the log; a wide interval misses the target.
    claims.loc[0, ["ci_low", "ci_high"]] = [-1.0, 7.0]
    write_records("table4", results, claims, records)
    table = compute_cost.target_checks({"profile": "demo", "trainings": 62, "cached_at_start": 0, "total_s": 35 * 60,
                                        "notebooks_s": {"a": 1}},
                               compute_cost.build_history(log), records)
    assert table["met"].tolist() == ["yes", "yes", "yes", "NO", "yes", "yes"]
    assert "4.00 pp" in table["measured"].iloc[3]


def test_a_build_in_lanes_says_its_notebook_times_overlap(tmp_path):
    import json

    record = {"profile": "demo", "dataset": "synthetic", "started_utc": "t", "machine": "m", "trainings": 0,
              "notebooks_s": {"a": 90.0, "b": 90.0}, "total_s": 120.0, "lanes": 2, "complete": True}
    text = compute_cost.build_summary(record)["text"]
    assert "total: 2.0 min" in text and "ran 2 at a time" in text and "add up to 3.0 min" in text
    assert "at a time" not in compute_cost.build_summary({**record, "lanes": 1})["text"]
    log = tmp_path / "build-log.json"
    log.write_text(json.dumps([record, {**record, "lanes": 1}, {k: v for k, v in record.items()
                                                                               if k != "lanes"}]))
    assert compute_cost.build_history(log)["notebooks at a time"].tolist() == [2, 1, 1]


def test_the_pretraining_seed_spread_is_read_from_its_record(tmp_path):
    import json

    import pandas as pd

    record = {"schedules": [{"pretraining_epochs": 2, "pretraining_lr_decay_epochs": [], "baseline_test_mAP": [54.0, 58.0, 62.0],
                             "mean_baseline_mAP": 58.0, "sd_of_baseline_mAP": 4.0},
                            {"pretraining_epochs": 8, "pretraining_lr_decay_epochs": [6], "baseline_test_mAP": [70.0] * 3,
                             "mean_baseline_mAP": 70.0, "sd_of_baseline_mAP": 0.0,
                             "pretraining_train_seconds": [600.0, 660.0, 720.0]}],
              "recorded": {"utc": "now", "machine": "here"}}
    path = tmp_path / "pretraining-seeds.json"
    path.write_text(json.dumps(record))
    table, recorded = compute_cost.pretraining_seed_spread(path)
    assert table.iloc[0].tolist()[:4] == ["2 epochs (decay after none)", "54.00, 58.00, 62.00", 58.0, 4.0]
    assert pd.isna(table.iloc[0, 4])  # minutes not recorded then
    assert table.iloc[1].tolist() == ["8 epochs (decay after 6)", "70.00, 70.00, 70.00", 70.0, 0.0, 11.0, "unchecked"]
    assert recorded.startswith("recorded now on here; 2 of 2 lines were recorded before the record named its runs")
    # a line names its runs by a digest of their folder names: the runs this code trains now, or stale
    record["schedules"][0]["runs_digest"] = compute_cost.pretraining_seed_digest(2, [], [0, 1, 2])
    record["schedules"][1]["runs_digest"] = compute_cost.pretraining_seed_digest(8, [6], [0, 1, 2])
    path.write_text(json.dumps(record))
    table, recorded = compute_cost.pretraining_seed_spread(path)
    assert table["runs"].tolist() == ["current", "current"]
    assert recorded.endswith("every line comes from the runs this code trains now (checked by their configuration hashes)")
    record["schedules"][1]["runs_digest"] = compute_cost.pretraining_seed_digest(8, [5], [0, 1, 2])
    path.write_text(json.dumps(record))
    table, recorded = compute_cost.pretraining_seed_spread(path)
    assert table["runs"].tolist() == ["current", "STALE"]
    assert "STALE: 1 of 2 lines come from runs this code would not train now" in recorded
    assert "python benchmarks/bench_pretraining_seeds.py" in recorded


def test_every_machine_s_pretraining_seed_record_is_one_table(tmp_path):
    import json

    def record(utc, machine, mAP):
        return {"schedules": [{"pretraining_epochs": 12, "pretraining_lr_decay_epochs": [9], "baseline_test_mAP": mAP,
                               "mean_baseline_mAP": sum(mAP) / 3, "sd_of_baseline_mAP": 1.0}],
                "recorded": {"utc": utc, "machine": machine}}

    table, missing = compute_cost.pretraining_seed_records(tmp_path)
    assert table.empty and missing.startswith("not measured yet")
    # named in the other order than they were recorded: the table is oldest first
    (tmp_path / "pretraining-seeds-a.json").write_text(json.dumps(record("2026-12-03T20:00:00Z", "2 logical CPU(s), Intel(R) Xeon(R) Processor, Linux 6", [72.0] * 3)))
    (tmp_path / "pretraining-seeds-b.json").write_text(json.dumps(record("2026-12-02T17:42:02Z", "2 logical CPU(s), AMD EPYC, Linux 6", [75.0] * 3)))
    (tmp_path / "other.json").write_text("{}")  # another benchmark's result is not read
    table, recorded = compute_cost.pretraining_seed_records(tmp_path)
    assert table["measured"].tolist() == ["2026-12-02, AMD EPYC", "2026-12-03, Intel(R) Xeon(R) Processor"]
    assert table["mean"].tolist() == [75.0, 72.0] and table.columns[0] == "measured"
    lines = recorded.splitlines()
    assert len(lines) == 2 and lines[0].startswith("pretraining-seeds-b.json: recorded 2026-12-02T17:42:02Z on 2 logical")


def test_the_committed_pretraining_seed_records_are_not_stale():
    directory = Path(__file__).resolve().parents[1] / "benchmarks" / "reference"
    table, recorded = compute_cost.pretraining_seed_records(directory)
    assert not table.empty, f"{directory} holds them (written by python benchmarks/bench_pretraining_seeds.py)"
    assert "STALE" not in table["runs"].tolist(), recorded  # re-run the benchmark after a change of semantics


def test_the_budget_line_holds_a_build_to_the_budget_of_its_kind():
    record = {"profile": "demo", "total_s": 22.4 * 60, "planned_runs": 57}
    first = compute_cost.budget_line({**record, "trainings": 57, "cached_at_start": 0})
    assert first.endswith("budget 60 min; measured 22.4 min: within budget")
    assert compute_cost.budget_line({**record, "trainings": 0, "cached_at_start": 57}).endswith(": OVER budget")
    # the pretraining runs cached, the fine-tunings trained: neither budget is this build's
    between = compute_cost.budget_line({**record, "trainings": 54, "cached_at_start": 3})
    assert "3 of its 57 runs were cached at its start" in between and "neither budget applies" in between
    assert "within" not in between and compute_cost.budget_line({**record, "profile": "smoke"}) == ""
    known = compute_cost.budget_line({**record, "trainings": 54, "cached_at_start": 3, "cached_training_s": 3438.0})
    assert known.endswith("the cached runs took 57.3 min of training when they trained, so a first build would "
                          "take about 80 min")
