"""The schedule sensitivity (mmhpn.paper.sensitivity): its schedules are the recorded selection's
candidates, the verdicts page's comparison on hand-made frames, and (slow) a smoke run end to end."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from mmhpn import claims
from mmhpn.errors import ConfigError
from mmhpn.paper import sensitivity, studies
from mmhpn.paper.selection import parse_schedule

ROOT = Path(__file__).resolve().parents[1]


def test_the_schedules_are_other_candidates_of_the_recorded_regime_selection():
    record = json.loads((ROOT / "mmhpn/resources/regime-selection.json").read_text())
    measured = {(line["epochs"], tuple(line["lr_decay_epochs"])) for line in record["results"]}
    default = sensitivity.profile_schedule("demo")
    assert default == "5:3"
    for text in sensitivity.SCHEDULES:
        assert parse_schedule(text) in measured, text
        assert text != default
    assert sorted(parse_schedule(s)[0] for s in sensitivity.SCHEDULES) == [6, 10]  # the two


def _checked(means: dict[tuple[str, str], tuple[float, float, float, str]]) -> pd.DataFrame:
    lines = []
    for (better, metric), (mean, low, high, verdict) in means.items():
        lines.append({"table": "table4", "better": better, "worse": "Baseline", "metric": metric, "source": "paper",
                      "family": True, "per_seed": "", "n_seeds": 3, "mean": mean, "ci_low": low, "ci_high": high,
                      "verdict": verdict})
    return pd.DataFrame(lines)


def test_the_comparison_puts_each_schedules_verdict_beside_the_defaults(tmp_path):
    checked = _checked({("Baseline+MSM", "mAP"): (1.6, 1.4, 1.8, "supported"),
                        ("Baseline+MHPM", "mAP"): (0.1, -0.5, 0.7, "inconclusive")})
    other = pd.concat([
        _checked({("Baseline+MSM", "mAP"): (1.2, 0.9, 1.5, "supported"),
                  ("Baseline+MHPM", "mAP"): (-0.9, -1.2, -0.6, "contradicted")}).assign(schedule="6:4"),
        _checked({("Baseline+MSM", "mAP"): (0.2, -0.1, 0.5, "inconclusive")}).assign(schedule="10:7"),
    ], ignore_index=True).assign(profile="demo", machine="m", recorded_utc="t", seeds="", runs_digest="")
    table = sensitivity.comparison(checked, other, "5:3")
    assert list(table.columns) == ["table", "claim", "metric", "5:3 (default)", "6:4 (unchecked)",
                                   "10:7 (unchecked)", "same verdict"]  # no runs named: nothing to check
    table = sensitivity.comparison(checked, other.assign(runs_digest="0" * 16, seeds="0 1 2"), "5:3")
    assert list(table.columns) == ["table", "claim", "metric", "5:3 (default)", "6:4 (stale)", "10:7 (stale)",
                                   "same verdict"]  # runs named, and not the ones this code trains
    other = other.assign(runs_digest=[sensitivity.key_digest("demo", "table4", [0, 1, 2], schedule)
                                      for schedule in other["schedule"]], seeds="0 1 2")
    table = sensitivity.comparison(checked, other, "5:3")
    assert list(table.columns) == ["table", "claim", "metric", "5:3 (default)", "6:4", "10:7", "same verdict"]
    first = table.iloc[0]
    assert first["5:3 (default)"] == "+1.60 [+1.40, +1.80] supported"
    assert first["6:4"] == "+1.20 [+0.90, +1.50] supported" and first["10:7"].endswith("inconclusive")
    assert first["same verdict"] == "1 of 2"
    second = table.iloc[1]
    assert second["10:7"] == "not measured" and second["same verdict"] == "0 of 1"
    sentence = sensitivity.changed_sentence(checked, other, "x.csv")
    assert sentence == ("measured t (UTC) on m; profile demo: under 6:4 1 of 2 verdicts are the default's and 0 "
                        "are reversed (supported against contradicted); the others move between a decided verdict "
                        "and inconclusive; under 10:7 0 of 1 verdicts are the default's and 0 are reversed "
                        "(supported against contradicted); the others move between a decided verdict and "
                        "inconclusive. Every line comes from the runs this code trains now (checked by their "
                        "configuration hashes).")
    assert sensitivity.changed_sentence(checked, other, "x.csv", processor="m") == sentence  # measured here
    assert sensitivity.changed_sentence(checked, other, "x.csv", processor="AMD EPYC").endswith(
        "6:4, 10:7 were measured on another CPU than this build's (AMD EPYC): the same configuration can train "
        "to other numbers on another CPU, so that column differs from the default's by the machine as well as "
        "the schedule.")
    # read back from CSV, Figure 5's rows ("2", "1") stay text and still match the build's labels
    fig5 = _checked({("2", "mAP"): (1.0, 0.5, 1.5, "supported")}).assign(table="figure5", worse="1")
    written = fig5.assign(schedule="6:4", trained_now=0, wall_minutes=1.0, profile="smoke", machine="m",
                          recorded_utc="t", seeds="0", runs_digest="")
    written = written.reindex(columns=list(sensitivity.COLUMNS))  # the claim columns this test leaves blank
    read_back = sensitivity.STUDY.read(sensitivity.STUDY.write(written, tmp_path / "s.csv"))
    assert read_back["better"].tolist() == ["2"] and read_back["worse"].tolist() == ["1"]
    assert sensitivity.comparison(fig5, read_back, "5:3").iloc[0]["same verdict"] == "1 of 1"
    assert sensitivity.changed_sentence(checked, None, "x.csv").startswith("not yet measured: x.csv does not exist; "
                                                                          "`make sensitivity` writes it")


def test_a_recorded_schedule_is_stale_once_its_runs_are_not_what_the_code_trains(monkeypatch):
    from mmhpn import versions
    from mmhpn.paper.planner import planned_names

    digest = sensitivity.key_digest("smoke", "table7", [0, 1], "2:1")
    rows, seeds = sensitivity.key_rows("table7", [0, 1])
    names = planned_names(rows, "smoke", seeds, epochs=2, lr_decay_epochs=[1])
    assert any(".then-" in name for name in names)  # the PSL control, named after the run it waits for
    assert digest == studies.runs_digest(names) and len(digest) == 16
    assert digest != sensitivity.key_digest("smoke", "table7", [0, 1], "3:2")
    assert digest != sensitivity.key_digest("smoke", "table7", [0], "2:1")
    line = {"profile": "smoke", "table": "table7", "seeds": "0 1", "schedule": "2:1", "runs_digest": digest}
    frame = pd.DataFrame([line, {**line, "runs_digest": ""}, {**line, "table": "table9"},
                          {**line, "profile": "no such profile"}, {**line, "seeds": "0"}])
    stale, unchecked = sensitivity.stale_lines(frame)
    assert stale.tolist() == [False, False, True, True, True] and unchecked.tolist() == [False, True, False, False, False]
    assert sensitivity.STUDY.currency(stale, unchecked).startswith("STALE: 3 of 5 lines come from runs")
    assert sensitivity.STUDY.currency(stale[:2], unchecked[:2]).startswith("1 of 2 lines were recorded before")
    monkeypatch.setattr(versions, "TRAINING_SEMANTICS_VERSION", versions.TRAINING_SEMANTICS_VERSION + 1)
    assert sensitivity.stale_lines(frame.iloc[:1])[0].tolist() == [True]  # the code changed what a training computes


def test_a_schedule_run_now_replaces_its_recorded_lines_and_keeps_the_others():
    def lines(schedule, mean, profile="demo"):
        return _checked({("Baseline+MSM", "mAP"): (mean, mean - 1, mean + 1, "supported")}).assign(
            schedule=schedule, profile=profile, machine="m", recorded_utc="t")

    recorded = pd.concat([lines("10:7", 1.0), lines("6:4", 2.0)], ignore_index=True)
    merged = sensitivity.merge_recorded(recorded, lines("10:7", 3.0))
    assert merged["schedule"].tolist() == ["6:4", "10:7"]  # SCHEDULES' order
    assert merged["mean"].tolist() == [2.0, 3.0]  # 10:7 replaced whole, 6:4 kept
    assert sensitivity.merge_recorded(None, lines("6:4", 2.0))["mean"].tolist() == [2.0]
    with pytest.raises(ConfigError, match=r"come from the profiles \['demo', 'smoke'\]; one study holds one profile"):
        sensitivity.merge_recorded(recorded, lines("10:7", 3.0, profile="smoke"))


def test_bad_schedules_and_keys_are_refused_before_anything_trains(tmp_path):
    with pytest.raises(ConfigError, match="sensitivity keys must be some of"):
        sensitivity.run_sensitivity("smoke", [0], ["2:1"], keys=["table9"], runs_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="schedules must name at least one"):
        sensitivity.run_sensitivity("smoke", [0], [], runs_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="schedules must be epochs:decay, e.g. 6:4"):
        sensitivity.run_sensitivity("smoke", [0], ["six"], runs_dir=str(tmp_path))


@pytest.mark.slow
def test_a_smoke_sensitivity_runs_end_to_end_and_is_read_back(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the smoke profile's data folders and the runs land here
    said = []
    frame = sensitivity.run_sensitivity("smoke", [0, 1], ["2:1"], ["table4"], runs_dir="runs", device="cpu",
                                        say=said.append)
    assert list(frame.columns) == list(sensitivity.COLUMNS)
    assert set(frame["schedule"]) == {"2:1"} and len(said) == 1
    assert (frame["table"] == "table4").all() and len(frame) == len(frame.drop_duplicates(sensitivity.CLAIM_KEY))
    assert (frame["seeds"] == "0 1").all() and not sensitivity.stale_lines(frame)[0].any()
    assert not sensitivity.stale_lines(frame)[1].any()
    assert set(frame["verdict"]) <= set(claims.VERDICTS) and (frame["n_seeds"] == 2).all()
    assert frame["verdict_holm"][frame["family"].astype(bool)].ne("").all()
    with pytest.raises(ConfigError, match="holds the demo profile's schedule-sensitivity, not \\['smoke'\\]"):
        sensitivity.STUDY.write(frame, sensitivity.STUDY.reference)
    path = sensitivity.STUDY.write(frame, sensitivity.STUDY.path("smoke"))
    assert path == Path("benchmarks/results/schedule-sensitivity-smoke.csv")

    # the script behind `make sensitivity`: every run is in the cache now
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import schedule_sensitivity

    out = tmp_path / "again.csv"
    sensitivity.STUDY.write(frame.assign(schedule="3:2"), out)  # a schedule recorded before, not run now
    assert schedule_sensitivity.main(["--profile", "smoke", "--schedules", "2:1", "--keys", "table4",
                                      "--out", str(out)]) == 0
    assert "kept the recorded lines of 3:2" in capsys.readouterr().out
    both = sensitivity.STUDY.read(out)
    assert both["schedule"].astype(str).tolist() == ["3:2"] * len(frame) + ["2:1"] * len(frame)
    again = both[both["schedule"].astype(str) == "2:1"]
    assert (again["trained_now"] == 0).all()
    assert again["mean"].tolist() == pytest.approx(frame["mean"].tolist())
    assert schedule_sensitivity.main(["--profile", "smoke", "--keys", "nothing"]) == 1
    assert "sensitivity keys must be some of" in capsys.readouterr().err


def test_the_committed_demo_sensitivity_checks_every_claim_of_the_book_under_each_schedule():
    frame = sensitivity.STUDY.read(ROOT / sensitivity.STUDY.reference)
    assert frame is not None, f"{sensitivity.STUDY.reference} is committed (written by `make sensitivity`)"
    assert set(frame["profile"]) == {"demo"} and (frame["n_seeds"] == 3).all()
    schedules = set(frame["schedule"].astype(str))
    assert schedules <= set(sensitivity.SCHEDULES) and schedules
    stale, _ = sensitivity.stale_lines(frame)  # lines recorded before the runs were named cannot be checked
    assert not stale.any(), (f"{int(stale.sum())} lines of {sensitivity.STUDY.reference} come from runs this code "
                             "would not train now: re-run `make sensitivity`")
    for _, lines in frame.groupby("schedule"):
        assert set(lines["table"]) == set(sensitivity.CLAIM_KEYS)
        assert set(lines["verdict"]) <= set(claims.VERDICTS)
