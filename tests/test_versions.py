"""Training-semantics version: the source record is current, and the run hash follows the versions."""
from __future__ import annotations

import shutil

import pytest

import mmhpn.data.synthetic
from mmhpn import versions
from mmhpn.config import config_hash, make_config


def test_training_semantics_record_matches_the_sources():
    # On failure: one line saying to bump TRAINING_SEMANTICS_VERSION and refresh the record.
    problem = versions.record_problem()
    assert problem is None, problem


@pytest.fixture
def source_copy(tmp_path):
    """The semantics sources copied into tmp_path, with a record of their own."""
    for name in versions.SEMANTICS_SOURCES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(versions.SOURCE_ROOT / name, tmp_path / name)
    record = tmp_path / "record.json"
    versions.update_record(root=tmp_path, record_path=record)
    return tmp_path, record


def test_a_changed_source_fails_the_check_until_bumped_and_refreshed(source_copy, monkeypatch):
    root, record = source_copy
    assert versions.record_problem(root, record) is None
    losses = root / "mmhpn" / "losses.py"
    losses.write_text(losses.read_text() + "\n# even a comment counts\n")
    problem = versions.record_problem(root, record)
    assert problem is not None and "\n" not in problem
    assert "mmhpn/losses.py" in problem and "bump TRAINING_SEMANTICS_VERSION" in problem
    assert "python -m mmhpn.versions --update" in problem
    # Refreshing without a bump is refused unless the change is declared result-neutral ...
    with pytest.raises(ValueError, match="mmhpn/losses.py changed but TRAINING_SEMANTICS_VERSION is still"):
        versions.update_record(root=root, record_path=record)
    # ... and a bump without a refresh still fails the check.
    monkeypatch.setattr(versions, "TRAINING_SEMANTICS_VERSION", versions.TRAINING_SEMANTICS_VERSION + 1)
    assert "losses.py" in versions.record_problem(root, record)
    versions.update_record(root=root, record_path=record)
    assert versions.record_problem(root, record) is None
    monkeypatch.undo()
    assert "was taken at version" in versions.record_problem(root, record)


def test_same_semantics_refresh_keeps_the_version(source_copy):
    root, record = source_copy
    model = root / "mmhpn" / "model.py"
    model.write_text(model.read_text() + "\n# a comment\n")
    versions.update_record(same_semantics=True, root=root, record_path=record)
    assert versions.record_problem(root, record) is None
    assert versions.read_record(record)["version"] == versions.TRAINING_SEMANTICS_VERSION


def test_digest_ignores_line_endings_only(tmp_path):
    unix, windows, edited = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "c.py"
    unix.write_bytes(b"x = 1\ny = 2\n")
    windows.write_bytes(b"x = 1\r\ny = 2\r\n")
    edited.write_bytes(b"x = 1\ny = 3\n")
    assert versions.file_digest(unix) == versions.file_digest(windows) != versions.file_digest(edited)


def test_a_listed_source_that_is_gone_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"lists missing file\(s\) \['mmhpn/model.py'"):
        versions.current_sources(tmp_path)


def test_run_hash_covers_the_training_semantics_version(monkeypatch):
    synthetic, real = make_config("unit"), make_config("paper")
    before = config_hash(synthetic), config_hash(real)
    assert synthetic.hashed_fields()["training_semantics_version"] == versions.TRAINING_SEMANTICS_VERSION
    monkeypatch.setattr(versions, "TRAINING_SEMANTICS_VERSION", versions.TRAINING_SEMANTICS_VERSION + 1)
    assert config_hash(synthetic) != before[0] and config_hash(real) != before[1]


def test_run_hash_covers_the_synthetic_format_version_of_synthetic_data_only(monkeypatch):
    synthetic, real = make_config("unit"), make_config("paper")
    assert synthetic.hashed_fields()["synthetic_format_version"] == versions.synthetic_format_version()
    assert real.hashed_fields()["synthetic_format_version"] is None
    before = config_hash(synthetic), config_hash(real)
    bumped = versions.synthetic_format_version() + 1
    monkeypatch.setattr(mmhpn.data.synthetic, "SYNTHETIC_FORMAT_VERSION", bumped, raising=False)
    assert versions.synthetic_format_version() == bumped
    assert config_hash(synthetic) != before[0] and config_hash(real) == before[1]
