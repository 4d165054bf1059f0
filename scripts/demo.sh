#!/usr/bin/env bash
# The README's first command: from a fresh clone to a fine-tuning job across two (simulated) Slurm nodes.
# Installs what is missing, brings up the local two-node cluster, builds a tiny random model, then submits
# configs/examples/tiny-cpu.yaml with `hpcft submit --profile local --follow`: first `hpcft plan` (memory, batch,
# steps, time), then one readable line per step, and at the end the loss curve drawn in the terminal and loss.png
# in the run directory.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/local-slurm.sh up
# shellcheck disable=SC1091
source .venv/bin/activate
assets=configs/examples/tiny-assets
if [ ! -f "$assets/model/config.json" ]; then
  python -m hpcft.trainer make-tiny "$assets/model"
fi
hpcft plan --profile local configs/examples/tiny-cpu.yaml
echo
# Follows the job's logs, then draws the loss and learning-rate curve and names loss.png.
hpcft submit --profile local configs/examples/tiny-cpu.yaml --follow
