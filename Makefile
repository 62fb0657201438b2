# Two commands do everything on a fresh machine: `make demo` (the main job on bundled photos) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= demo-output

.PHONY: demo test test-gpu lint typecheck unit clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Reinstall when the package metadata changes.
$(VENV)/.installed: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	scripts/install-tensorrt-stubs $(BIN)/python
	touch $@

demo: $(VENV)/.installed
	PATH="$(abspath $(BIN)):$$PATH" OUT=$(OUT) scripts/demo.sh

lint: $(VENV)/.installed
	$(BIN)/ruff check sgjnd tests benchmarks

typecheck: $(VENV)/.installed
	$(BIN)/mypy

unit: $(VENV)/.installed
	$(BIN)/python -m pytest -q

test: lint typecheck unit

# GPU tests (TensorRT engines, CUDA): run on a machine with an NVIDIA GPU and `pip install 'sgjnd[trt]'`.
test-gpu: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[trt]'
	SGJND_REQUIRE_GPU=1 $(BIN)/python -m pytest -q -rs -m gpu tests/gpu

clean:
	rm -rf $(OUT) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
