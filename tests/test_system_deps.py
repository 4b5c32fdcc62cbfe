""".ci/install-system-deps (run by .ci/run, `make system-deps`, and for the tools they need by
`make install`, `make test` and `make book`): each missing tool is installed on its own, a
present one is never asked for, only the tools asked for are looked for, and a failure is one
line naming the tool and why it is needed. apt-get is a fake here that records its calls."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "install-system-deps"
# what the script itself runs, besides the tools it looks for
UTILITIES = ("bash", "cut", "paste", "grep", "tail", "cat", "env", "sed")


def _bin(tmp_path: Path, present: tuple[str, ...], apt_fails_for: str = "") -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in UTILITIES:
        (folder / name).symlink_to(subprocess.run(["bash", "-c", f"command -v {name}"], capture_output=True,
                                                   text=True, check=True).stdout.strip())
    for name in present:
        (folder / name).write_text("#!/bin/sh\nexit 0\n")
    (folder / "id").write_text("#!/bin/sh\necho 0\n")  # root, as in CI
    calls = tmp_path / "apt-calls"
    (folder / "apt-get").write_text(
        "#!/bin/bash\n"
        f"echo \"$*\" >> {calls}\n"
        f"if [[ \"$*\" == *' {apt_fails_for}' && -n '{apt_fails_for}' ]]; then\n"
        "  echo 'E: Unable to correct problems, you have held broken packages.'; exit 100\n"
        "fi\n"
        "exit 0\n")
    for path in folder.iterdir():
        if not path.is_symlink():
            path.chmod(0o755)
    return folder


def _run(tmp_path: Path, folder: Path, *tools: str) -> subprocess.CompletedProcess:
    env = {"PATH": str(folder), "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    return subprocess.run([str(folder / "bash"), str(SCRIPT), *tools], capture_output=True, text=True, env=env,
                          timeout=60)


def _apt_calls(tmp_path: Path) -> list[str]:
    calls = tmp_path / "apt-calls"
    return calls.read_text().splitlines() if calls.exists() else []


def test_nothing_is_installed_when_every_tool_is_present(tmp_path):
    result = _run(tmp_path, _bin(tmp_path, present=("make", "chromium", "npm")))
    assert result.returncode == 0, result.stderr
    assert _apt_calls(tmp_path) == []


def test_only_the_missing_browser_is_installed_next_to_an_existing_npm(tmp_path):
    # the machine: Node.js and npm from another source, no Chromium
    result = _run(tmp_path, _bin(tmp_path, present=("make", "npm")))
    assert result.returncode == 0, result.stderr
    calls = _apt_calls(tmp_path)
    assert calls[0] == "update -qq" and calls.count("update -qq") == 1
    installs = [c for c in calls if c.startswith("install")]
    assert installs == ["install -y -qq chromium"], calls


def test_a_tool_that_cannot_be_installed_is_named_in_one_line(tmp_path):
    result = _run(tmp_path, _bin(tmp_path, present=("make",), apt_fails_for="npm"))
    assert result.returncode == 1
    installs = [c for c in _apt_calls(tmp_path) if c.startswith("install")]
    assert installs == ["install -y -qq chromium", "install -y -qq npm"]  # one at a time
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("install-system-deps: could not install npm, needed because it vendors MathJax")
    assert "held broken packages" in errors[0]


def test_only_the_tools_asked_for_are_looked_for(tmp_path):
    # `make book` asks for npm only: a missing browser is not its business
    result = _run(tmp_path, _bin(tmp_path, present=("make",)), "npm")
    assert result.returncode == 0, result.stderr
    assert [c for c in _apt_calls(tmp_path) if c.startswith("install")] == ["install -y -qq npm"]


def test_tools_already_present_need_neither_apt_nor_root(tmp_path):
    folder = _bin(tmp_path, present=("chromium", "npm"))
    (folder / "apt-get").unlink()
    (folder / "id").write_text("#!/bin/sh\necho 1000\n")  # a user without sudo
    result = _run(tmp_path, folder, "chromium", "npm")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "install-system-deps: chromium, npm present"


def test_no_root_and_no_sudo_is_one_line_naming_the_tool(tmp_path):
    folder = _bin(tmp_path, present=("make", "npm"))
    (folder / "id").write_text("#!/bin/sh\necho 1000\n")
    result = _run(tmp_path, folder, "chromium", "npm")
    assert result.returncode == 1 and _apt_calls(tmp_path) == []
    assert result.stderr.strip() == ("install-system-deps: missing chromium; installing them needs root (or sudo) "
                                     "for apt-get")


def test_an_unknown_tool_is_refused_in_one_line(tmp_path):
    result = _run(tmp_path, _bin(tmp_path, present=()), "chrome")
    assert result.returncode == 1 and _apt_calls(tmp_path) == []
    assert result.stderr.strip() == ("install-system-deps: unknown tool 'chrome'; expected make, venv, chromium or "
                                     "npm (or none: all four)")
