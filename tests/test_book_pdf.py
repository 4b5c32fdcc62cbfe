"""The book as one PDF (`make book-pdf`) and the pages' downloads, on a tiny generated book: an
introduction with equations and one executed notebook page with a figure (no kernel runs).

The PDF: at least one page per chapter, the figure in it, the math typeset by MathJax (no TeX
source left), printed offline. The HTML: every page offers its source (.ipynb for a notebook
page, .md for a text page) from the site's own files, and loads nothing from the network.
"""
from __future__ import annotations

import base64
import io
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from mmhpn.bookbuild import BookBuildError
from mmhpn.bookbuild.layout import EXECUTED, REPO_ROOT, toc_pages
from mmhpn.bookbuild.offline import external_resources, vendor_mathjax
from mmhpn.bookbuild.pdf import find_chromium, single_page
from mmhpn.cli import main

INTRO = r"""# A tiny book

The loss of one stripe is $\mathcal{L}_i = -\log p_i$, and the whole loss is

$$
\mathcal{L} = \sum_{i=1}^{8} w_i \, \mathcal{L}_i .
$$
"""


def _figure_png() -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(3, 2))
    axes.plot([0, 1, 2], [2, 0, 1])
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _tiny_book(root: Path) -> None:
    """Two chapters, the second an executed notebook page, with the repository's configuration."""
    shutil.copy2(REPO_ROOT / "_config.yml", root / "_config.yml")
    (root / "book" / "_static").mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "book" / "_static" / "mmhpn.css", root / "book" / "_static" / "mmhpn.css")
    (root / "book" / "intro.md").write_text(INTRO)
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/executed/01-figure\n")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    code = nbformat.v4.new_code_cell("draw()")
    code.outputs = [nbformat.v4.new_output("display_data", data={"image/png": _figure_png(), "text/plain": "<Figure>"})]
    nb.cells = [nbformat.v4.new_markdown_cell("# A drawn curve\n\nThe curve of $y = f(x)$ follows."), code]
    (root / EXECUTED).mkdir(parents=True)
    nbformat.write(nb, root / EXECUTED / "01-figure.ipynb")


def test_the_pdf_needs_the_executed_pages_first(tmp_path):
    _tiny_book(tmp_path)
    (tmp_path / EXECUTED / "01-figure.ipynb").unlink()
    with pytest.raises(BookBuildError, match=r"^1 page\(s\) not executed yet, e\.g\. 01-figure .*; run make book first$"):
        single_page(tmp_path)


def test_without_chromium_the_pdf_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(BookBuildError, match=r"^headless Chromium is needed to print the book .*install-system-deps"):
        find_chromium()


@pytest.mark.slow
def test_the_pdf_has_a_page_per_chapter_the_figure_and_typeset_math(tmp_path, capsys):
    from pypdf import PdfReader

    find_chromium()  # installed by `make test` (.ci/install-system-deps chromium)
    _tiny_book(tmp_path)
    out = tmp_path / "_build" / "mmhpn-book.pdf"
    assert main(["book", "--pdf", str(out), "--root", str(tmp_path)]) == 0
    assert re.fullmatch(rf"mmhpn book: wrote {re.escape(str(out))} \(\d+ pages, 2 chapters, [\d.]+ MiB\)",
                        capsys.readouterr().out.strip())
    pages = PdfReader(out).pages
    assert len(pages) >= len(toc_pages(tmp_path)) == 2
    text = [page.extract_text() for page in pages]
    # each chapter starts its own page; the math is MathJax's drawing, not TeX source
    assert "A tiny book" in text[0] and "A drawn curve" not in text[0] and "A drawn curve" in "".join(text[1:])
    assert not re.search(r"\\\(|\\\[|mathcal", "".join(text))
    assert sum(len(page.images) for page in pages) >= 1  # the notebook's figure
    # the single page it was printed from loads nothing from the network
    assert external_resources(tmp_path / "_build" / "singlehtml") == []
    assert not list(out.parent.glob(".*.pdf*"))  # no half-written file left beside it


@pytest.mark.slow
def test_every_page_offers_its_source_for_download_offline(tmp_path):
    from mmhpn.bookbuild.pipeline import build_html

    _tiny_book(tmp_path)
    vendor_mathjax(tmp_path / "book" / "_static")
    html = build_html(tmp_path)  # fails if a page would load anything from the network
    for page, source in (("book/executed/01-figure.html", "_sources/book/executed/01-figure.ipynb"),
                         ("book/intro.html", "_sources/book/intro.md")):
        text = (html / page).read_text()
        assert re.search(rf'<a href="(\.\./)+{re.escape(source)}"[^>]*btn-download-source-button', text), page
        assert (html / source).is_file()
    downloaded = nbformat.read(html / "_sources/book/executed/01-figure.ipynb", as_version=4)
    assert downloaded.cells[1].outputs  # the executed notebook, with its outputs
