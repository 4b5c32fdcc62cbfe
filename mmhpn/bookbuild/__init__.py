"""The book build: execute every notebook with papermill, then build the HTML offline.

`mmhpn book --profile demo` (what `make book` runs; the command is declared in `mmhpn.cli`)
runs `mmhpn.bookbuild.pipeline.run_pipeline`, which, in order:

1. creates the synthetic dataset of the profile if it is missing (`mmhpn.data.synthetic`);
2. executes each notebook that ``_toc.yml`` lists under ``book/executed/``, in the toc's
   order (`layout.notebook_order`), with papermill into `book/executed/` with the profile's
   parameters (`profiles`; only the parameters a notebook declares are passed), hides the
   injected-parameters cell and writes a short note of the values it was executed with
   (`execute`); a failing notebook stops the build with the notebook's name and the cell's
   error; the console gets one line per notebook (runs needed, trained and cached, elapsed,
   training time left: `progress`), papermill's full log goes to `book/executed/logs/NAME.log`;
3. vendors MathJax 3 from the npm registry's `mathjax` package into `book/_static/mathjax/`
   (once; the book then loads no script, font or stylesheet from the network: `offline`);
4. builds the book with Jupyter Book 1.x (`-W -n --keep-going`) into `_build/html/` and
   fails if the HTML references any external resource that a browser would load.

`mmhpn book --only NOTEBOOK --param KEY=VALUE` executes one notebook with the reader's own
values, checked first, and marks its page (and puts a banner on every page) until it is
executed again without them (`non_default`). `mmhpn book --archive PATH` (`make book-archive`)
packs the built site into one .tar.gz that opens from disk (`archive`); `mmhpn book --pdf PATH`
(`make book-pdf`) prints the executed book into one PDF, offline (`pdf`).

The wall time of each notebook and of the whole build is appended to
`book/executed/build-log.json`; the compute-cost notebook reads it (`mmhpn.paper.compute_cost`),
so the book states measured build times, never typed ones.
"""
from mmhpn.errors import MMHPNError


class NotebookExecutionError(MMHPNError, RuntimeError):
    """A notebook raised while papermill executed it."""


class BookBuildError(MMHPNError, RuntimeError):
    """Jupyter Book failed, the built HTML would load something from the network, or a file
    to extract or to pack is unsafe."""
