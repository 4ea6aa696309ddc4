# The two README commands: `make demo` (generation with the shipped demo model) and `make test`.
# Both build a virtualenv in $(VENV); torch is installed first from its exact CPU wheel so that no
# dependency resolves an unpinned torch to a multi-GB CUDA build.

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
EXTRAS ?= dev,demo,training,eval,app
PYTEST_ARGS ?=
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: install test test-fast demo lint

$(STAMP): setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(STAMP)

# pytest exits 5 when it collected nothing: say so and fail, so an empty selection is never read as
# a pass (nor confused with a test failure, which exits 1).
test: $(STAMP)
	@HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests for PYTEST_ARGS='$(PYTEST_ARGS)'" >&2; fi; \
	exit $$rc

test-fast:
	$(MAKE) test PYTEST_ARGS="-m 'not slow and not browser' $(PYTEST_ARGS)"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests training benchmarks examples app

# English and Chinese speech, a dialogue and music from checkpoints/instructaudio-demo, into outputs/.
demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) examples/demo.py --output_dir outputs

# The web demo on http://127.0.0.1:7860 with the shipped demo model; flags go in APP_ARGS, e.g.
# make app APP_ARGS="--model runs/instructaudio --max_seconds 20" (or --model tiny-random to try the UI).
APP_ARGS ?=
.PHONY: app
app: $(STAMP)
	$(PY) app/app.py $(APP_ARGS)
