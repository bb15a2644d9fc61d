# Set-up and checks. `make demo` and `make test` create .venv on a fresh machine by themselves.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest tests

demo: install
	PATH="$(abspath $(BIN)):$$PATH" bash recipes/mini/demo.sh

bench: install
	$(BIN)/python benchmarks/encoder_throughput.py
	$(BIN)/python benchmarks/detect_speed.py
	$(BIN)/python benchmarks/evaluate_speed.py
	$(BIN)/python benchmarks/decode_memory.py

clean:
	rm -rf $(VENV) build *.egg-info
