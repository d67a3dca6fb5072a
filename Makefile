# hf-unlearn: `make demo` and `make test` work from a fresh clone on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PIN := torch==2.13.0
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1

.PHONY: install test test-fast test-min constraints demo bench bench-quality bench-gpu clean

install: $(VENV)/.installed

# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
# constraints.txt: the versions CI last tested, so that `make demo` prints the same table on every machine.
$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(TORCH_PIN)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev]" -c constraints.txt
	touch $@

# Regenerate constraints.txt from the installed venv (after an upgrade that CI passed).
constraints: install
	{ sed -n '1,2p' constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -viE '^(torch|hf-unlearn)=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

# The declared floors, tested: a venv with every setup.cfg dependency at its `>=` version (torch pinned as
# above) runs the fast tests (everything but the multi-process and end-to-end script tests).
MIN_VENV ?= .venv-min
MIN_PY := $(MIN_VENV)/bin/python
test-min:
	test -x $(MIN_PY) || python3 -m venv $(MIN_VENV)
	$(MIN_PY) -m pip install -q --disable-pip-version-check $(TORCH_PIN)
	python3 .ci/floors.py setup.cfg > $(MIN_VENV)/floors.txt
	$(MIN_PY) -m pip install -q --disable-pip-version-check -r $(MIN_VENV)/floors.txt
	PYTHONPATH=$(CURDIR) $(MIN_PY) -m pytest -q -p no:cacheprovider tests --ignore=tests/test_distributed.py \
		--ignore=tests/test_launch.py --ignore=tests/test_examples.py --ignore=tests/test_bench_smoke.py

test: install
	$(PY) -m pytest -q -p no:cacheprovider tests

demo: install
	$(PY) examples/demo.py --output_dir demo_out $(if $(TOFU_DIR),--tofu_dir $(TOFU_DIR),)

bench: install
	$(PY) -m bench --output_dir bench/results

bench-quality: install
	$(PY) -m bench --quality --output_dir bench/results

# what only a GPU can measure (docs/benchmarks.md, bench/gpu.sh); --dry-run checks it on CPU
bench-gpu: install
	PYTHON=$(PY) bash bench/gpu.sh

clean:
	rm -rf demo_out .pytest_cache build *.egg-info
