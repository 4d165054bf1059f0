#!/usr/bin/env bash
# Run the whole test suite: set up, bring the local two-node Slurm cluster up, run pytest against it.
# Extra arguments go to pytest (e.g. scripts/test.sh -k render).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ -x scripts/local-slurm.sh ]; then
  scripts/local-slurm.sh up
  export HPCFT_REQUIRE_SLURM=1
fi
exec .venv/bin/python -m pytest -ra "$@"
