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

book: $(STAMP)
	@echo "make book: the book is not built yet (issue 6 adds the notebooks and the build)." >&2; exit 2
