"""What keeps the book offline and its build safe: MathJax vendored from the npm package
(so the HTML loads no script from the network), tar extraction that refuses anything escaping
its folder, and the scan of built HTML for resources a browser would fetch from elsewhere.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

from mmhpn.bookbuild import BookBuildError
from mmhpn.bookbuild.layout import REPO_ROOT, STATIC

MATHJAX_SPEC = "mathjax@3"
MATHJAX_ENTRY = Path("mathjax") / "es5" / "tex-svg.js"


def _tar_has_data_filter() -> bool:
    """Whether `tarfile` has extraction filters (Python >= 3.11.4, 3.10.12; PEP 706)."""
    return hasattr(tarfile, "data_filter")


def _inside(path: Path, dest: Path) -> bool:
    return path == dest or dest in path.parents


def _check_member(member: tarfile.TarInfo, dest: Path) -> None:
    """What PEP 706's "data" filter refuses, for Pythons without it: absolute names, names or
    links leading outside `dest`, devices and FIFOs. Paths are resolved against what is on disk
    now, so a link extracted earlier is followed (`_extract_checked` calls this member by member)."""
    name = member.name
    if name.startswith(("/", "\\")) or Path(name).is_absolute():
        raise BookBuildError(f"refusing to extract {name!r}: absolute path")
    if not _inside((dest / name).resolve(), dest):
        raise BookBuildError(f"refusing to extract {name!r}: it would land outside {dest}")
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        raise BookBuildError(f"refusing to extract {name!r}: device or FIFO")
    if member.issym() or member.islnk():
        base = dest if member.islnk() else (dest / name).parent
        if Path(member.linkname).is_absolute() or not _inside((base / member.linkname).resolve(), dest):
            raise BookBuildError(f"refusing to extract {name!r}: link to {member.linkname!r} outside {dest}")


def _extract_checked(tar: tarfile.TarFile, dest: Path, members: list[tarfile.TarInfo]) -> None:
    """Extract `members` one by one, each checked right before against the files already on disk.

    Checking every member before extracting any is not enough: with ``q -> .`` and
    ``p -> q/..`` in the archive, ``p/file`` looks inside `dest` until the links exist. Once all
    are out, every link is checked again, since a later link can change where an earlier one
    leads (``a -> b/..`` then ``b -> .``).
    """
    # With a tarfile that has filters (only when a test forces this path), say that the
    # checks here stand in for them.
    trusted = {"filter": "fully_trusted"} if _tar_has_data_filter() else {}
    for member in members:
        _check_member(member, dest)
        # permission bits beyond rwx dropped, as the data filter does; folders stay writable
        # by their owner until their files are out
        member.mode = (member.mode & 0o777) | (0o700 if member.isdir() else 0)
        tar.extract(member, dest, **trusted)
    for member in members:
        if member.issym() and not _inside((dest / member.name).resolve(), dest):
            raise BookBuildError(f"refusing {member.name!r} (extracted under {dest}): its link to "
                                 f"{member.linkname!r} leads outside {dest} through another link")


def extract_safely(tar: tarfile.TarFile, dest: Path, members: list[tarfile.TarInfo] | None = None) -> None:
    """Extract `members` (default: all) under `dest`, refusing anything that escapes it.

    Uses tarfile's "data" filter where Python has it; on older 3.10/3.11 patch releases
    (Debian 12's 3.11.2) each member is checked the same way as it is extracted
    (`_extract_checked`).
    """
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    members = tar.getmembers() if members is None else members
    if _tar_has_data_filter():
        try:
            tar.extractall(dest, members=members, filter="data")
        except tarfile.FilterError as err:
            raise BookBuildError(f"refusing to extract {err.tarinfo.name!r}: {err}") from None
        return
    _extract_checked(tar, dest, members)


def vendor_mathjax(static_dir: Path = REPO_ROOT / STATIC, spec: str = MATHJAX_SPEC,
                   cache: Path | None = REPO_ROOT / STATIC) -> Path:
    """Copy MathJax 3's es5/ build from the npm package into the book's static files.

    Done once (the folder is the cache, gitignored); needs `npm` and the npm registry at
    build time, never at view time. A copy of the book (the tests) reuses the repository's
    vendored copy (`cache`) when there is one.
    """
    entry = static_dir / MATHJAX_ENTRY
    if entry.is_file():
        return entry
    if cache is not None and (cache / MATHJAX_ENTRY).is_file() and cache.resolve() != static_dir.resolve():
        shutil.copytree(cache / "mathjax", static_dir / "mathjax", dirs_exist_ok=True)
        return entry
    npm = shutil.which("npm")
    if npm is None:
        raise BookBuildError("npm is needed once to vendor MathJax 3 (npm pack mathjax@3); install npm")
    target = static_dir / "mathjax"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([npm, "pack", spec, "--pack-destination", tmp, "--silent"],
                       check=True, cwd=tmp, stdout=subprocess.DEVNULL)
        tarballs = list(Path(tmp).glob("mathjax-*.tgz"))
        if len(tarballs) != 1:
            raise BookBuildError(f"npm pack {spec} produced {tarballs}, expected one mathjax-*.tgz")
        extracted = Path(tmp) / "extracted"
        with tarfile.open(tarballs[0]) as tar:
            members = [m for m in tar.getmembers()
                       if m.name.startswith("package/es5/") and (m.isfile() or m.isdir())]
            extract_safely(tar, extracted, members)
        staged = Path(tmp) / "mathjax"
        staged.mkdir()
        shutil.move(str(extracted / "package" / "es5"), staged / "es5")
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staged), target)
    if not entry.is_file():
        raise BookBuildError(f"{spec} has no {MATHJAX_ENTRY.relative_to('mathjax')}")
    return entry


class _ResourceParser(HTMLParser):
    """Collect the URLs of the resources a browser fetches when it renders a page.

    Links a reader may click (<a href>) are not fetched and are allowed to point outside.
    """

    FETCHED = {
        ("script", "src"), ("img", "src"), ("iframe", "src"), ("source", "src"),
        ("video", "src"), ("audio", "src"), ("embed", "src"), ("track", "src"),
        ("input", "src"), ("object", "data"), ("link", "href"), ("video", "poster"),
        ("img", "srcset"), ("source", "srcset"),
    }

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and (tag, name) in self.FETCHED:
                candidates = [part.strip().split(" ")[0] for part in value.split(",")] if name == "srcset" else [value]
                for url in candidates:
                    self.urls.append((tag, name, url))
            if name == "style" and value and "url(" in value:
                self.urls.extend(("style", "url", url) for url in _css_urls(value))


def _css_urls(text: str) -> list[str]:
    urls = re.findall(r"url\(\s*['\"]?([^'\")]+)['\"]?\s*\)", text)
    urls += re.findall(r"@import\s+['\"]([^'\"]+)['\"]", text)
    return urls


def _is_external(url: str) -> bool:
    parsed = urlparse(url.strip())
    if url.strip().startswith("//"):
        return True
    return parsed.scheme not in ("", "file", "data", "blob", "about", "javascript", "mailto")


def external_resources(html_dir: Path) -> list[str]:
    """Every external URL that a browser would load from the built book (HTML and CSS)."""
    found: list[str] = []
    for page in sorted(html_dir.rglob("*.html")):
        parser = _ResourceParser()
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
        found += [f"{page.relative_to(html_dir)}: <{tag} {attr}={url}>"
                  for tag, attr, url in parser.urls if _is_external(url)]
    for sheet in sorted(html_dir.rglob("*.css")):
        found += [f"{sheet.relative_to(html_dir)}: url({url})"
                  for url in _css_urls(sheet.read_text(encoding="utf-8", errors="replace"))
                  if _is_external(url)]
    return found
