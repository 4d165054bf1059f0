#!/usr/bin/env bash
# Run the whole test suite: set up, bring the local two-node Slurm cluster up, run pytest against it.
# Extra arguments go to pytest (e.g. scripts/test.sh -k render).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ -x scripts/local-slurm.sh ]; then
  scripts/local-slurm.sh up
  # Enroot + Pyxis on the cluster and the CPU training image, for the tests that run jobs in the container
  # (tests/slurm/test_container_*.py); each is seconds when already built (cached by content under /var/tmp).
  scripts/local-container-runtime.sh up
  .venv/bin/hpcft image build --local
  export HPCFT_REQUIRE_SLURM=1
fi
exec .venv/bin/python -m pytest -ra "$@"
