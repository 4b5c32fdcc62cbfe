"""mmhpn.bookbuild.offline.extract_safely: tarfile's "data" filter where Python has it, the same checks by
hand where it does not (Debian 12's Python 3.11.2); both branches on tiny generated tarballs."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from mmhpn.bookbuild import BookBuildError, offline


def _tarball(path: Path, *members: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        good = tarfile.TarInfo("package/es5/tex-svg.js")
        body = b"// mathjax"
        good.size = len(body)
        tar.addfile(good, io.BytesIO(body))
        for member in members:
            data = b"x" * member.size if member.isfile() else None
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 1
    return info


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _device(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    return info


@pytest.fixture(params=["data filter", "hand-made checks"])
def branch(request, monkeypatch):
    if request.param == "data filter":
        if not hasattr(tarfile, "data_filter"):
            pytest.skip("this Python's tarfile has no extraction filters")
        monkeypatch.setattr(offline, "_tar_has_data_filter", lambda: True)
    else:
        monkeypatch.setattr(offline, "_tar_has_data_filter", lambda: False)
    return request.param


def test_a_clean_tarball_is_extracted(tmp_path, branch):
    archive = _tarball(tmp_path / "ok.tgz")
    with tarfile.open(archive) as tar:
        offline.extract_safely(tar, tmp_path / "out")
    assert (tmp_path / "out" / "package" / "es5" / "tex-svg.js").read_bytes() == b"// mathjax"


@pytest.mark.parametrize("member", [
    _file("../escaped.txt"),
    _file("package/../../escaped.txt"),
    _link("package/evil-link", "/etc/passwd"),
    _link("package/up-link", "../../escaped.txt"),
    _link("package/hard-link", "../escaped.txt", tarfile.LNKTYPE),
    _device("package/null"),
], ids=["dotdot", "nested-dotdot", "absolute-symlink", "symlink-outside", "hardlink-outside", "device"])
def test_a_malicious_member_is_refused_and_nothing_escapes(tmp_path, branch, member):
    archive = _tarball(tmp_path / "bad.tgz", member)
    out = tmp_path / "deep" / "out"
    with tarfile.open(archive) as tar, pytest.raises(BookBuildError, match=r"refusing to extract"):
        offline.extract_safely(tar, out)
    assert not (tmp_path / "deep" / "escaped.txt").exists()
    assert not (tmp_path / "escaped.txt").exists()


def test_an_absolute_name_never_lands_outside(tmp_path, branch):
    # the data filter strips the leading slash; the hand-made checks refuse the member
    target = tmp_path / "abs-target.txt"
    archive = _tarball(tmp_path / "abs.tgz", _file(str(target)))
    with tarfile.open(archive) as tar:
        try:
            offline.extract_safely(tar, tmp_path / "out")
        except BookBuildError as err:
            assert "absolute path" in str(err)
    assert not target.exists()


@pytest.mark.parametrize("links", [
    [_link("q", "."), _link("p", "q/.."), _file("p/escaped.txt")],  # a link through an earlier link
    [_link("a", "b/.."), _link("b", "."), _file("a/escaped.txt")],  # a later link re-points an earlier one
], ids=["chain", "re-pointed"])
def test_a_symlink_chain_never_leads_outside(tmp_path, branch, links):
    # Each link alone stays inside `out`; together they lead to its parent. Checking every
    # member before extracting any missed this: the hand-made checks follow the links on disk.
    archive = _tarball(tmp_path / "chain.tgz", *links)
    out = tmp_path / "deep" / "out"
    with tarfile.open(archive) as tar, pytest.raises(BookBuildError, match=r"refusing"):
        offline.extract_safely(tar, out)
    assert not (tmp_path / "deep" / "escaped.txt").exists()
