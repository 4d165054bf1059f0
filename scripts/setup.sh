#!/usr/bin/env bash
# Install everything hpcft's demo and tests need on a fresh Debian machine: system packages and a
# virtual environment in .venv with hpcft[train,dev] (CPU torch). Safe to run again; it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

# command:package (squashfs-tools: `hpcft image check` lists the files inside .sqsh/.sif images, and its tests
# build small ones with mksquashfs)
need=()
for item in shellcheck:shellcheck tmux:tmux unsquashfs:squashfs-tools; do
  command -v "${item%%:*}" >/dev/null 2>&1 || need+=("${item#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
# torch first and pinned: an unpinned torch would pull gigabytes of CUDA packages.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "setup: installing torch 2.13.0 (CPU)"
  .venv/bin/pip install -q torch==2.13.0
fi
echo "setup: installing hpcft[train,dev]"
.venv/bin/pip install -q -e ".[train,dev]"
echo "setup: done ($(.venv/bin/hpcft --version))"
