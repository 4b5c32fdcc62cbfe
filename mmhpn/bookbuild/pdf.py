"""The executed book as one PDF (`mmhpn book --pdf PATH`, `make book-pdf`), made offline.

Jupyter Book's single-page HTML of the pages already executed (`make book`), printed by
headless Chromium with the network cut off, after a virtual-time budget in which MathJax
(vendored, `offline`) typesets the math; every chapter starts a new page (the print rules
of ``book/_static/mmhpn.css``). The PDF replaces the previous one only once it is checked:
no math left as TeX source.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from mmhpn.atomic import atomic_path
from mmhpn.bookbuild import BookBuildError
from mmhpn.bookbuild.layout import EXECUTED, REPO_ROOT, STATIC, log_path, notebook_order, shown, toc_pages
from mmhpn.bookbuild.offline import vendor_mathjax
from mmhpn.bookbuild.pipeline import build_html

PDF = Path("_build") / "mmhpn-book.pdf"
SINGLE_PAGE = Path("_build") / "singlehtml" / "index.html"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
    "--disable-default-apps", "--hide-scrollbars",
    # no name resolves and every request goes to a closed local port: no network at all
    "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
]
# Virtual time the page's scripts get before printing. Virtual time jumps ahead whenever the
# page is idle, so a generous budget costs little, and MathJax typesets the whole book within it.
MATH_BUDGET_MS = 120_000
SAFETY_TIMEOUT_S = 30 * 60  # against a hung browser, not a speed target
# What MathJax replaces: inline \( ... \) and display \[ ... \] as Sphinx writes them.
TEX_LEFT = re.compile(r"\\\(|\\\[")


def find_chromium() -> str:
    """The headless browser that prints the PDF (Chromium or Google Chrome)."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise BookBuildError("headless Chromium is needed to print the book (Debian: apt-get install chromium; "
                         "`make book-pdf` installs it with .ci/install-system-deps chromium)")


def single_page(root: Path = REPO_ROOT) -> Path:
    """Build the executed book as one HTML page (Jupyter Book's ``singlehtml`` builder); return it.

    The builder writes the page under the toc root's name (``book/intro.html``) with links
    relative to its output folder, so it is moved to that folder's ``index.html``, where they work.
    """
    root = Path(root)
    missing = [name for name in notebook_order(root) if not (root / EXECUTED / f"{name}.ipynb").is_file()]
    if missing:
        raise BookBuildError(f"{len(missing)} page(s) not executed yet, e.g. {missing[0]} (no "
                             f"{shown(root / EXECUTED / (missing[0] + '.ipynb'))}); run make book first")
    vendor_mathjax(root / STATIC)
    out_dir = build_html(root, builder="singlehtml")
    built = out_dir / f"{toc_pages(root)[0]}.html"
    page = root / SINGLE_PAGE
    os.replace(built, page)
    return page


def print_pdf(page: Path, out: Path, root: Path = REPO_ROOT, budget_ms: int = MATH_BUDGET_MS) -> None:
    """Print HTML `page` to `out` with headless Chromium, offline; `out` is replaced only by a
    PDF whose math MathJax has typeset. Chromium's messages go to a log file."""
    from pypdf import PdfReader

    log_file = log_path("chromium-pdf", root)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile, atomic_path(out) as tmp:
        command = [find_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                   f"--virtual-time-budget={budget_ms}", "--run-all-compositor-stages-before-draw",
                   "--no-pdf-header-footer", f"--print-to-pdf={tmp}", Path(page).resolve().as_uri()]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=SAFETY_TIMEOUT_S,
                                    env={**os.environ, "HOME": profile})
        except subprocess.TimeoutExpired:
            raise BookBuildError(f"Chromium did not finish printing {shown(page)} within "
                                 f"{SAFETY_TIMEOUT_S // 60} min") from None
        log_file.write_text(f"$ {' '.join(command)}\n{result.stdout}\n--- stderr ---\n{result.stderr}",
                            encoding="utf-8")
        if result.returncode != 0 or not tmp.is_file():
            raise BookBuildError(f"Chromium could not print {shown(page)} (exit {result.returncode})  "
                                 f"(full log: {shown(log_file)})")
        text = "".join(sheet.extract_text() or "" for sheet in PdfReader(tmp).pages)
        left = len(TEX_LEFT.findall(text))
        if left:
            raise BookBuildError(f"the printed book still shows {left} formula(s) as TeX source: MathJax did "
                                 f"not typeset them within {budget_ms / 1000:.0f} s of virtual time; {out} not "
                                 f"written  (Chromium's log: {shown(log_file)})")


def write_pdf(out: Path = PDF, root: Path = REPO_ROOT) -> tuple[Path, int, int]:
    """The executed book as one PDF at `out`; return (its path, its pages, the book's chapters)."""
    from pypdf import PdfReader

    page = single_page(root)
    print_pdf(page, out, root)
    return Path(out), len(PdfReader(out).pages), len(toc_pages(root))
