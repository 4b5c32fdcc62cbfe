# The README's two commands: `make test` and `make book`. Both create .venv and install the
# project with its dev extras on first use (and again whenever pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test book clean-book

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

# pytest exits 5 when it collected no test: that is an error here, said out loud.
test: $(STAMP)
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests - failing on purpose" >&2; exit 1; fi; \
	exit $$rc

# `make book` executes every notebook with papermill (profile PROFILE: smoke, demo or paper)
# and builds the HTML offline into _build/html/. The synthetic dataset of the profile is
# generated first if missing. Real data: make book PROFILE=paper DATASET=market1501 DATA_ROOT=...
PROFILE ?= demo
DATASET ?=
DATA_ROOT ?=
DEVICE ?=
SEEDS ?=
book: $(STAMP)
	$(BIN)/python -m mmhpn.book --profile $(PROFILE) $(if $(DATASET),--dataset $(DATASET)) \
		$(if $(DATA_ROOT),--data-root $(DATA_ROOT)) $(if $(DEVICE),--device $(DEVICE)) $(if $(SEEDS),--seeds $(SEEDS))
