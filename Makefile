# trustai: `make test` and `make demo` build .venv from nothing (first Python >= 3.12 found) and run.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export WANDB_MODE := disabled
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: test demo lint reliability bench clean system-deps

$(PY):
	"$$(scripts/find-python)" -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml requirements.lock
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	touch $(STAMP)

# Debian packages the report tests and PDF reports need: headless Chromium (HTML -> PDF, screenshots)
# and poppler-utils (pdftotext, pdftoppm). Installed only when missing; the package lists are
# refreshed only if the first install attempt fails.
SYSTEM_PACKAGES := chromium poppler-utils
system-deps:
	@if ! command -v chromium >/dev/null || ! command -v pdftotext >/dev/null || ! command -v pdftoppm >/dev/null; then \
		apt-get install -y --no-install-recommends $(SYSTEM_PACKAGES) \
		|| { apt-get update && apt-get install -y --no-install-recommends $(SYSTEM_PACKAGES); }; \
	fi

# Two workers, one per core; tests/conftest.py groups tests so module fixtures are built once and only
# one worker runs Ray at a time.
test: $(STAMP) system-deps
	$(PY) -m pytest -q -n 2 --dist loadgroup tests

# Reliability and security trials at full scale (several minutes on 2 cores): tampering, kill -9 and
# resume, faulty audits, hostile input, fuzzing, keys; prints the figures. `make test` runs them small.
reliability: $(STAMP)
	TRUSTAI_RELIABILITY_TRIALS=full $(PY) -m pytest -q tests/reliability

demo: $(STAMP) system-deps
	$(VENV)/bin/trustai demo --out demo-output

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) -m benchmarks.governed_vs_plain_training

clean:
	rm -rf $(VENV) demo-output build *.egg-info
