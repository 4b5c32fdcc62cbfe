"""The GitHub Actions workflow that tests, builds and publishes the book.

Linted with check-jsonschema against the GitHub workflow schema it vendors (offline; a dev
extra), then checked for what the project needs from it: make test, make book, the
official Pages actions, and a run cache keyed on what decides the results.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


def _lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(path)], capture_output=True, text=True, timeout=120)


def test_every_workflow_passes_the_linter():
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
    assert WORKFLOW in workflows
    for path in workflows:
        result = _lint(path)
        assert result.returncode == 0, f"{path.name}:\n{result.stdout}{result.stderr}"


def test_the_linter_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on: ubuntu-latest", "runs_on: ubuntu-latest", 1))
    assert _lint(broken).returncode != 0


def _steps(job: dict) -> list[dict]:
    return job["steps"]


def test_the_workflow_tests_builds_caches_and_deploys_with_the_official_actions():
    flow = yaml.safe_load(WORKFLOW.read_text())
    build, deploy = flow["jobs"]["build"], flow["jobs"]["deploy"]
    runs = [step.get("run", "") for step in _steps(build)]
    uses = {step["uses"].split("@")[0]: step for step in _steps(build) if "uses" in step}
    commands = [r.split()[:2] for r in runs]
    assert ["make", "test"] in commands and ["make", "book"] in commands
    assert commands.index(["make", "test"]) < commands.index(["make", "book"])
    assert any(".ci/install-system-deps" in r for r in runs)
    assert uses["actions/upload-pages-artifact"]["with"]["path"] == "_build/html"
    cache = uses["actions/cache"]["with"]
    assert set(cache["path"].split()) == {"runs", "data/synthetic-*"}
    for decisive in ("mmhpn/**", "notebooks/**", "pyproject.toml"):
        assert decisive in cache["key"], f"the cache key ignores {decisive}"
    assert "restore-keys" not in cache, "a partial key match would reuse runs of other code"
    assert deploy["needs"] == "build"
    assert [s["uses"].split("@")[0] for s in _steps(deploy)] == ["actions/deploy-pages"]
    assert deploy["permissions"]["pages"] == "write" and deploy["permissions"]["id-token"] == "write"
    assert deploy["environment"]["name"] == "github-pages"
    assert "pull_request" in deploy["if"] and "refs/heads/main" in deploy["if"]
