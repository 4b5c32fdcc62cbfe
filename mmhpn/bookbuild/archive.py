"""The built site in one .tar.gz that opens from disk (`make book-archive`): one folder of
regular files and folders, refused when a link would break from file:// or when the site holds
anything else (a symbolic link, a FIFO, a device).
"""
from __future__ import annotations

import os
import stat
import tarfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

from mmhpn.bookbuild import BookBuildError
from mmhpn.bookbuild.layout import HTML, REPO_ROOT
from mmhpn.bookbuild.offline import external_resources

ARCHIVE_FOLDER = "mmhpn-book"  # the archive's single top-level folder


class _LinkParser(HTMLParser):
    """Every URL a page links to or loads (href, src, srcset, poster, data)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if not value:
                continue
            if name in ("href", "src", "poster", "data"):
                self.urls.append(value.strip())
            elif name == "srcset":
                self.urls += [part.strip().split(" ")[0] for part in value.split(",") if part.strip()]


def links_broken_from_disk(html_dir: Path) -> list[str]:
    """Links that would not work when the site is opened from disk (file://): URLs from the
    server's root (`/...`, which from disk means the file system's root) and relative links
    to files that are not in the site."""
    found = []
    for page in sorted(html_dir.rglob("*.html")):
        if page.relative_to(html_dir).parts[0] == "_static":
            continue  # the themes' template fragments (Jinja macros), never opened as pages
        parser = _LinkParser()
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
        for url in parser.urls:
            parsed = urlparse(url)
            if parsed.scheme or url.startswith(("//", "#")) or not parsed.path:
                continue  # another site, a data: URL or an anchor of this page
            if url.startswith("/"):
                found.append(f"{page.relative_to(html_dir)}: {url} (from the server's root)")
            else:
                target = page.parent / unquote(parsed.path)
                if not target.exists():
                    found.append(f"{page.relative_to(html_dir)}: {url} (missing)")
                elif target.is_dir():
                    found.append(f"{page.relative_to(html_dir)}: {url} (a folder: from disk a browser lists it)")
    return found


def _not_packable(path: Path) -> str | None:
    """What `path` is when it is neither a regular file nor a folder (None when it is one).

    Packed as it is, a symbolic link would hand a reader's extraction a link into their own
    file system (``/etc/passwd``, ``/``), and a FIFO or a device is no part of a web site.
    """
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        return f"a symbolic link (to {os.readlink(path)!r})"
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device file"


def write_archive(out: Path, root: Path = REPO_ROOT) -> Path:
    """Pack `_build/html/` into one .tar.gz (folder `mmhpn-book/`) that opens from disk.

    Refuses a site that is not built, that holds anything but regular files and folders, that
    loads anything from the network or that has links which break from file://. Written to a
    temporary name and renamed, so a half-written archive never carries the final name.
    """
    html_dir = root / HTML
    if not (html_dir / "index.html").is_file():
        raise BookBuildError(f"no built book in {html_dir} (no index.html); run `make book` first")
    entries = [html_dir, *sorted(html_dir.rglob("*"))]  # rglob lists a linked folder, never enters it
    unsafe = [(path, what) for path in entries if (what := _not_packable(path)) is not None]
    if unsafe:
        (path, what), more = unsafe[0], len(unsafe) - 1
        others = f" (and {more} more such entr{'y' if more == 1 else 'ies'})" if more else ""
        raise BookBuildError(f"refusing to pack {path}: it is {what}{others}; the archive holds only regular "
                             "files and folders")
    problems = [f"loads {item}" for item in external_resources(html_dir)] + links_broken_from_disk(html_dir)
    if problems:
        listing = "; ".join(problems[:5])
        raise BookBuildError(f"the built book would not work from disk ({len(problems)} problem(s)): {listing}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with tarfile.open(partial, "w:gz") as tar:
        for path in entries:
            name = "/".join([ARCHIVE_FOLDER, *path.relative_to(html_dir).parts])
            tar.add(path, arcname=name, recursive=False)
    os.replace(partial, out)
    return out
