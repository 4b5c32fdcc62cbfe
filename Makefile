# The README's two commands: `make test` and `make book`. Both create .venv and install the
# project with its dev extras on first use (and again whenever pyproject.toml changes), and
# install the system tools they need when missing (.ci/install-system-deps, with apt-get):
# python3-venv before .venv is made, Chromium for `make test`'s browser test and for
# `make book-pdf`, npm where MathJax is not vendored yet. `make help` lists every target;
# `make system-deps` installs every missing tool at once.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# requires-python in pyproject.toml; checked before .venv is made, in one line
MIN_PYTHON := 3.10

.DEFAULT_GOAL := help
.PHONY: help system-deps install test test-fast book book-archive book-pdf proxy-study sensitivity lab clean-book

help: ## list the targets, one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  make %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

system-deps: ## install the system tools that are missing (make, python3-venv, chromium, npm) with apt-get
	.ci/install-system-deps

install: $(STAMP) ## create .venv, install the project with its dev extras and the notebook git filter

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; m = tuple(map(int, "$(MIN_PYTHON)".split("."))); sys.exit(0 if sys.version_info[:2] >= m else 1)' 2>/dev/null || \
	{ echo "make: Python >= $(MIN_PYTHON) is needed, but $(PYTHON) is $$($(PYTHON) -V 2>&1 || echo missing); run make PYTHON=python3.11 (or newer)" >&2; exit 1; }
	test -x $(BIN)/python || { PYTHON=$(PYTHON) .ci/install-system-deps venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	@# Notebooks are committed without outputs: .gitattributes routes them through the
	@# nbstripout filter, configured here for this clone (skipped outside a git checkout).
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
		git config filter.nbstripout.clean "'$(abspath $(BIN))/python' -m nbstripout --keep-id" && \
		git config filter.nbstripout.smudge cat && \
		git config diff.ipynb.textconv "'$(abspath $(BIN))/python' -m nbstripout -t --keep-id" && \
		echo "make: notebooks are stripped of outputs on commit (git filter nbstripout)"; \
	fi
	touch $(STAMP)

# npm is needed once, to vendor MathJax into book/_static/ (mmhpn.book.vendor_mathjax); the
# book build and the smoke book of `make test` copy it from there afterwards.
MATHJAX_JS ?= book/_static/mathjax/es5/tex-svg.js
NPM_IF_NEEDED = $(if $(wildcard $(MATHJAX_JS)),,npm)

# pytest exits 5 when it collected no test: that is an error here, said out loud.
PYTEST = @$(BIN)/python -m pytest $(1) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make $@: pytest collected no tests - failing on purpose" >&2; exit 1; fi; \
	exit $$rc

test: $(STAMP) ## run the whole test suite (unit tests + the smoke build of the book)
	.ci/install-system-deps chromium $(NPM_IF_NEEDED)
	$(call PYTEST,)

# The slow tests (marked `slow`: they train for more than seconds, run papermill, build the
# book or start several processes) are left out: an answer in about a minute or two.
test-fast: $(STAMP) ## run the tests not marked slow (no training runs, no book build, no browser)
	$(call PYTEST,-m "not slow")

# `make book` executes every notebook with papermill (profile PROFILE: smoke, demo or paper)
# and builds the HTML offline into _build/html/. The synthetic dataset of the profile is
# generated first if missing. Real data: make book PROFILE=paper DATASET=market1501 DATA_ROOT=...
PROFILE ?= demo
DATASET ?=
DATA_ROOT ?=
DEVICE ?=
SEEDS ?=
book: $(STAMP) ## execute every notebook (PROFILE=demo) and build the HTML into _build/html/
	$(if $(NPM_IF_NEEDED),.ci/install-system-deps npm)
	$(BIN)/mmhpn book --profile $(PROFILE) $(if $(DATASET),--dataset $(DATASET)) \
		$(if $(DATA_ROOT),--data-root $(DATA_ROOT)) $(if $(DEVICE),--device $(DEVICE)) $(if $(SEEDS),--seeds $(SEEDS))

# The proxy study (issue #20, mmhpn.paper.proxy): PROFILE=demo writes benchmarks/reference/proxy-study.csv,
# which the book's "Paper or proxy?" page reads; PROFILE=smoke (seconds a run) writes benchmarks/results/.
proxy-study: $(STAMP) ## train the proxy study's variants (PROFILE=demo) and write its CSV for the book
	$(BIN)/python benchmarks/proxy_study.py --profile $(PROFILE) $(if $(SEEDS),--seeds $(SEEDS))

# The schedule sensitivity (issue #19, mmhpn.paper.sensitivity): every claim's verdict under the regime
# selection's 6- and 10-epoch candidates; PROFILE=demo writes benchmarks/reference/schedule-sensitivity.csv,
# which the verdicts page reads. SCHEDULES=6:4,10:7 and KEYS=table4,... choose a part.
SCHEDULES ?=
KEYS ?=
sensitivity: $(STAMP) ## train every claim's rows under the 6- and 10-epoch schedules (PROFILE=demo)
	$(BIN)/python benchmarks/schedule_sensitivity.py --profile $(PROFILE) $(if $(SCHEDULES),--schedules $(SCHEDULES)) \
		$(if $(KEYS),--keys $(KEYS))

ARCHIVE ?= _build/mmhpn-book.tar.gz
book-archive: $(STAMP) ## pack the built _build/html/ into one .tar.gz that opens from disk (ARCHIVE=...)
	$(BIN)/mmhpn book --archive $(ARCHIVE)

# The executed book (`make book` first) as one PDF: Jupyter Book's single-page HTML printed by
# headless Chromium, offline, once MathJax has typeset the math (mmhpn/bookbuild/pdf.py).
PDF ?= _build/mmhpn-book.pdf
book-pdf: $(STAMP) ## print the executed book into one PDF, offline, with headless Chromium (PDF=...)
	.ci/install-system-deps chromium $(NPM_IF_NEEDED)
	$(BIN)/mmhpn book --pdf $(PDF)

LAB_KERNELS := $(VENV)/share/mmhpn-lab
lab: $(STAMP) ## open JupyterLab on notebooks/ with the project's kernel (run from the repository root)
	$(BIN)/python .ci/lab_kernel.py $(LAB_KERNELS)
	JUPYTER_PATH="$(abspath $(LAB_KERNELS))" $(BIN)/jupyter lab --ServerApp.root_dir=notebooks $(LAB_ARGS)

clean-book: ## delete the executed notebooks and the built HTML (keeps runs/ and data/)
	rm -rf book/executed _build
