"""`make book-archive` (mmhpn.bookbuild.archive.write_archive) on a tiny generated site: one folder in one
.tar.gz, and a site whose links would break from disk is refused with what is wrong."""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from mmhpn.bookbuild import BookBuildError
from mmhpn.bookbuild.archive import write_archive


def _site(root: Path, page: str = '<a href="book/intro.html#top">intro</a><img src="_static/a%20b.png">') -> Path:
    html = root / "_build" / "html"
    (html / "book").mkdir(parents=True)
    (html / "_static").mkdir()
    (html / "_static" / "a b.png").write_bytes(b"png")
    (html / "index.html").write_text(f'<meta http-equiv="refresh" content="0; url=book/intro.html">{page}')
    (html / "book" / "intro.html").write_text('<a href="../index.html">home</a><a href="https://example.org">x</a>')
    return html


def test_the_archive_is_one_folder_that_extracts_to_the_site(tmp_path):
    _site(tmp_path)
    out = write_archive(tmp_path / "dist" / "site.tar.gz", root=tmp_path)
    assert not (tmp_path / "dist" / "site.tar.gz.partial").exists()
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
    assert names == {"mmhpn-book", "mmhpn-book/index.html", "mmhpn-book/book", "mmhpn-book/book/intro.html",
                     "mmhpn-book/_static", "mmhpn-book/_static/a b.png"}


@pytest.mark.parametrize("page, problem", [
    ('<a href="/book/intro.html">intro</a>', "from the server's root"),
    ('<img src="_static/missing.png">', "missing"),
    ('<a href="book/">the folder</a>', "a folder"),
    ('<script src="https://cdn.example.org/x.js"></script>', "loads"),
])
def test_links_that_break_from_disk_are_refused(tmp_path, page, problem):
    _site(tmp_path, page)
    with pytest.raises(BookBuildError, match="would not work from disk") as failure:
        write_archive(tmp_path / "site.tar.gz", root=tmp_path)
    assert problem in str(failure.value)
    assert not list(tmp_path.glob("site.tar.gz*"))


def test_no_built_book_is_one_clear_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mmhpn", "book", "--archive", str(tmp_path / "a.tar.gz"),
                             "--root", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2  # the command line's exit status for an error the user can fix
    assert result.stderr.strip().count("\n") == 0
    assert "no built book in" in result.stderr and "run `make book` first" in result.stderr


@pytest.mark.parametrize("make, what", [
    (lambda path: path.symlink_to("/etc/passwd"), "a symbolic link (to '/etc/passwd')"),
    (lambda path: path.symlink_to("/"), "a symbolic link (to '/')"),
    (lambda path: os.mkfifo(path), "a FIFO"),
], ids=["link-to-a-file", "link-to-the-root", "fifo"])
def test_a_link_or_a_fifo_in_the_site_is_refused_in_one_line(tmp_path, make, what):
    html = _site(tmp_path)
    make(html / "_static" / "odd")
    with pytest.raises(BookBuildError) as failure:
        write_archive(tmp_path / "site.tar.gz", root=tmp_path)
    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith(f"refusing to pack {html / '_static' / 'odd'}: it is {what}")
    assert not list(tmp_path.glob("site.tar.gz*"))
