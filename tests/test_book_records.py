"""What the compute-cost page reads: benchmark results with their provenance, and the count
of trainings a book build ran."""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

from mmhpn.bookbuild.progress import trainings_since
from mmhpn.paper.compute_cost import benchmark_tables
from mmhpn.provenance import machine_description

REPO = Path(__file__).resolve().parent.parent


def _load_results_module():
    spec = importlib.util.spec_from_file_location("bench_results", REPO / "benchmarks" / "_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_writer_records_when_where_and_how(tmp_path, monkeypatch):
    results = _load_results_module()
    monkeypatch.setattr(results, "RESULTS", tmp_path)
    monkeypatch.setattr(sys, "argv", ["/somewhere/benchmarks/bench_x.py", "--repeats", "2"])
    path = results.write_result("x-cpu.json", {"ratio": 1.5})
    data = json.loads(path.read_text())
    assert data["ratio"] == 1.5
    assert data["recorded"]["command"] == "python benchmarks/bench_x.py --repeats 2"
    assert data["recorded"]["machine"] == machine_description()
    assert time.strptime(data["recorded"]["utc"], "%Y-%m-%dT%H:%M:%SZ")
    assert [p.name for p in tmp_path.iterdir()] == ["x-cpu.json"]  # no temporary file left


def test_benchmark_tables_keep_headlines_and_provenance(tmp_path):
    (tmp_path / "train-step-cpu.json").write_text(json.dumps({
        "config": {"lr": 0.05, "epochs": 2},
        "results": {"bf16": {"mmhpn_full_images_per_s": 60.2, "full_vs_bare": 0.96,
                             "runs_images_per_s": {"mmhpn_full": [59.0, 61.0]}}},
        "cpu_bf16_native": True,
        "recorded": {"utc": "2026-11-29T18:00:00Z", "machine": "2 CPUs", "command": "python benchmarks/b.py"},
    }))
    (tmp_path / "old.json").write_text(json.dumps({"scores": {"global": {"mAP": 0.019, "rank1": 0.0}}}))
    headlines, provenance = benchmark_tables(tmp_path)
    values = {(row.benchmark, row.measurement): row.value for row in headlines.itertuples()}
    assert values == {
        ("train-step-cpu", "results.bf16.mmhpn_full_images_per_s"): 60.2,
        ("train-step-cpu", "results.bf16.full_vs_bare"): 0.96,
        ("old", "scores.global.mAP"): 0.019,
        ("old", "scores.global.rank1"): 0.0,
    }
    by_name = provenance.set_index("benchmark")
    assert by_name.loc["train-step-cpu", "command"] == "python benchmarks/b.py"
    assert by_name.loc["old", "machine"] == "not recorded"


def test_benchmark_tables_of_an_empty_or_missing_folder_are_empty(tmp_path):
    for folder in (tmp_path, tmp_path / "missing"):
        headlines, provenance = benchmark_tables(folder)
        assert headlines.empty and provenance.empty


def test_reference_benchmarks_are_committed_with_provenance():
    headlines, provenance = benchmark_tables(REPO / "benchmarks" / "reference")
    assert {"train-step-cpu", "evaluation-cpu", "synthetic-difficulty"} <= set(provenance["benchmark"])
    assert not (provenance == "not recorded").any().any()


def test_trainings_since_counts_runs_finished_after_the_build_started(tmp_path):
    for name, age_s in (("old", 3600), ("new", 0)):
        marker = tmp_path / name / "FINISHED"
        marker.parent.mkdir()
        marker.write_text("hash\n")
        stamp = time.time() - age_s
        os.utime(marker, (stamp, stamp))
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "another-process").mkdir()  # finished meanwhile, but not one of the build's runs
    (tmp_path / "another-process" / "FINISHED").write_text("hash\n")
    planned = [tmp_path / name for name in ("old", "new", "unfinished", "missing")]
    assert trainings_since(planned, time.time() - 60) == 1
    assert trainings_since([], 0.0) == 0
