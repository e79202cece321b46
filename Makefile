# Transfer Lab: the two commands of the README's Quickstart, on top of a local .venv.
#
#   make app    set up what is needed, then open the app (works offline on the built-in sample)
#   make test   set up what is needed, then lint, check the layers and run the tests (what CI runs)
#
# Both are idempotent: .venv is created once, and packages are installed again only when
# requirements.txt changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: app test check test-fast browser clean

app: $(STAMP)
	$(BIN)/streamlit run streamlit_app.py

test: $(STAMP) browser check
	$(BIN)/python -m pytest -q

# the quick loop while working: lint + layers + the tests not marked slow or browser (about two minutes)
test-fast: $(STAMP) check
	$(BIN)/python -m pytest -q -m "not slow and not browser"

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check --quiet -r requirements.txt
	@touch $(STAMP)

# The browser tests drive Debian's Chromium, with an emoji font for the app's icons (headless Chromium draws
# them as empty boxes without one). Install whichever of the two is missing where we can (root with apt-get);
# with both there, nothing is done. Elsewhere those tests skip and say why.
browser:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="chromium"; \
	dpkg -s fonts-noto-color-emoji >/dev/null 2>&1 || missing="$${missing:+$$missing }fonts-noto-color-emoji"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing $$missing for the browser tests"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

clean:
	rm -rf $(VENV) .ruff_cache .import_linter_cache
