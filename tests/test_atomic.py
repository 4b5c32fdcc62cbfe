"""Atomic writes: the new content replaces the old in one rename, or nothing changes."""
import json

import pytest

from mmhpn.atomic import atomic_path, atomic_write_json, atomic_write_text


def test_writes_replace_the_file_and_leave_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_text(target, "old\n")
    atomic_write_json(target, {"b": 1, "a": 2}, sort_keys=True)
    assert target.read_text() == '{\n  "a": 2,\n  "b": 1\n}\n' and json.loads(target.read_text()) == {"a": 2, "b": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "history.csv"
    atomic_write_text(target, "epoch\n1\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("epoch\n1\n2")  # half written, then interrupted
            raise KeyboardInterrupt
    assert target.read_text() == "epoch\n1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["history.csv"]
