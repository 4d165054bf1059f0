#!/usr/bin/env bash
# Install hpcft's `train` and `gpu` extras, then hpcft itself, into an NGC PyTorch image.
# Shared by containers/Dockerfile and containers/hpcft.def so both images get the same steps; the versions
# come from the environment (Dockerfile ARGs / the .def's %arguments), which tests keep equal to pyproject.toml.
#   install-hpcft.sh deps          the pinned libraries (slow: compiles flash-attn and DeepSpeed's CPU Adam)
#   install-hpcft.sh hpcft SRC     hpcft from the source folder SRC, then a check of every installed version
# HPCFT_EXTRAS=train (default "train gpu") leaves out the gpu extra (flash-attn, Liger, onebitllms): the CPU image
# of the local test cluster (containers/build-local-image.sh), whose base torch is the CPU wheel.
set -euo pipefail

: "${TORCH_VERSION:?}" "${TRANSFORMERS_VERSION:?}" "${PEFT_VERSION:?}" "${ACCELERATE_VERSION:?}"
: "${DEEPSPEED_VERSION:?}" "${DATASETS_VERSION:?}" "${BITSANDBYTES_VERSION:?}" "${FLASH_ATTN_VERSION:?}" "${TRL_VERSION:?}"
: "${MATPLOTLIB_VERSION:?}" "${PROMETHEUS_CLIENT_VERSION:?}"
: "${LIGER_KERNEL_VERSION:?}" "${MISTRAL_COMMON_VERSION:?}" "${SENTENCEPIECE_VERSION:?}" "${ONEBITLLMS_VERSION:?}" "${TORCHAO_VERSION:?}"
: "${SACREBLEU_VERSION:?}" "${MLFLOW_SKINNY_VERSION:?}" "${LM_EVAL_VERSION:?}"
CUDA_ARCHS=${CUDA_ARCHS:-8.0;9.0}
MAX_JOBS=${MAX_JOBS:-16}
DS_BUILD_CPU_ADAM=${DS_BUILD_CPU_ADAM:-1}
CONSTRAINTS=/etc/pip/constraint.txt
HPCFT_EXTRAS=${HPCFT_EXTRAS:-train gpu}
gpu_extra() { [[ " $HPCFT_EXTRAS " == *" gpu "* ]]; }
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

install_deps() {
  # NGC's torch is built for the image's CUDA, NCCL and GPUs (GH200 included); it is what runs. Its version is
  # a pre-release of the pinned one (2.13.0a0+git... for 2.13.0), so the release numbers must agree.
  python - "${TORCH_VERSION}" <<'EOF'
import re, sys, torch
release = re.match(r"\d+\.\d+\.\d+", torch.__version__).group()
if release != sys.argv[1]:
    sys.exit(f"this NGC image ships torch {torch.__version__}, but pyproject.toml pins torch=={sys.argv[1]}; "
             "pick the NGC_TAG whose release notes say 'based on " + sys.argv[1] + "a0' "
             "(docs.nvidia.com/deeplearning/frameworks/pytorch-release-notes)")
print(f"hpcft: using NGC torch {torch.__version__} for torch=={sys.argv[1]}")
EOF
  # Pin NGC's torch so no requirement below replaces it with a PyPI wheel. NGC's own constraint file also pins
  # packages our versions need newer; NVIDIA documents replacing it for exactly that.
  torch_pin="torch==$(python -c 'import torch; print(torch.__version__)')"
  mkdir -p "$(dirname "$CONSTRAINTS")"
  printf '%s\n' "$torch_pin" > "$CONSTRAINTS"
  export PIP_CONSTRAINT=$CONSTRAINTS

  # Build tools for the two source builds below (they import the image's torch: no build isolation).
  python -m pip install ninja packaging psutil setuptools wheel
  python -m pip install \
    "transformers==${TRANSFORMERS_VERSION}" \
    "peft==${PEFT_VERSION}" \
    "accelerate==${ACCELERATE_VERSION}" \
    "datasets==${DATASETS_VERSION}" \
    "bitsandbytes==${BITSANDBYTES_VERSION}" \
    "matplotlib==${MATPLOTLIB_VERSION}" \
    "prometheus-client==${PROMETHEUS_CLIENT_VERSION}" \
    "torchao==${TORCHAO_VERSION}" \
    "trl==${TRL_VERSION}" \
    "mistral-common==${MISTRAL_COMMON_VERSION}" \
    "sentencepiece==${SENTENCEPIECE_VERSION}" \
    "sacrebleu==${SACREBLEU_VERSION}" \
    "mlflow-skinny==${MLFLOW_SKINNY_VERSION}" \
    "lm_eval==${LM_EVAL_VERSION}" \
    tokenizers safetensors
  # CPU Adam (ZeRO offload) is compiled now rather than at first use, when every node of a job would compile
  # it at once into a shared cache. Other DS_BUILD_* switches in the environment (DS_BUILD_SHM_COMM for the CPU
  # image, with DS_ACCELERATOR=cpu) build those ops too.
  TORCH_CUDA_ARCH_LIST=$CUDA_ARCHS DS_BUILD_CPU_ADAM=$DS_BUILD_CPU_ADAM \
    python -m pip install --no-build-isolation "deepspeed==${DEEPSPEED_VERSION}"
  if gpu_extra; then
    python -m pip install "liger-kernel==${LIGER_KERNEL_VERSION}" "onebitllms==${ONEBITLLMS_VERSION}"
    # FORCE_BUILD: compile against this torch instead of fetching a prebuilt wheel for another one.
    FLASH_ATTENTION_FORCE_BUILD=TRUE FLASH_ATTN_CUDA_ARCHS=${CUDA_ARCHS//./} MAX_JOBS=$MAX_JOBS \
      python -m pip install --no-build-isolation "flash-attn==${FLASH_ATTN_VERSION}"
  fi

  # Later `pip install`s in the container keep these versions too.
  printf '%s\n' "transformers==${TRANSFORMERS_VERSION}" "peft==${PEFT_VERSION}" \
    "accelerate==${ACCELERATE_VERSION}" "datasets==${DATASETS_VERSION}" \
    "bitsandbytes==${BITSANDBYTES_VERSION}" "deepspeed==${DEEPSPEED_VERSION}" \
    "flash-attn==${FLASH_ATTN_VERSION}" "matplotlib==${MATPLOTLIB_VERSION}" \
    "prometheus-client==${PROMETHEUS_CLIENT_VERSION}" \
    "liger-kernel==${LIGER_KERNEL_VERSION}" "torchao==${TORCHAO_VERSION}" "trl==${TRL_VERSION}" \
    "mistral-common==${MISTRAL_COMMON_VERSION}" "sentencepiece==${SENTENCEPIECE_VERSION}" \
    "onebitllms==${ONEBITLLMS_VERSION}" "sacrebleu==${SACREBLEU_VERSION}" \
    "mlflow-skinny==${MLFLOW_SKINNY_VERSION}" "lm_eval==${LM_EVAL_VERSION}" >> "$CONSTRAINTS"
}

install_hpcft() {
  local src=$1
  export PIP_CONSTRAINT=$CONSTRAINTS
  # hpcft's own light requirements (OmegaConf, submitit, ...) come with it; the extras are installed above, and
  # the constraint file keeps every version there (torch: the base's).
  python -m pip install "$src"
  export HPCFT_EXTRAS
  # Every requirement of hpcft[train,gpu] must now be met (torch by release number, see install_deps).
  python - <<'EOF'
import importlib.metadata as md, os, re, sys
from packaging.requirements import Requirement

problems = []
extras = ("", *os.environ["HPCFT_EXTRAS"].split())
for text in md.requires("hpcft") or []:
    req = Requirement(text)
    if req.marker and not any(req.marker.evaluate({"extra": e}) for e in extras):
        continue
    try:
        version = md.version(req.name)
    except md.PackageNotFoundError:
        problems.append(f"{req.name} is not installed")
        continue
    if req.name == "torch":
        version = re.match(r"\d+\.\d+\.\d+", version).group()
    if not req.specifier.contains(version, prereleases=True):
        problems.append(f"{req.name} {version} does not satisfy {req}")
if problems:
    sys.exit("hpcft: image check failed:\n  " + "\n  ".join(problems))
print(f"hpcft: every requirement of hpcft[{','.join(extras[1:])}] is installed")
EOF
  hpcft --version
  # The image says what it is: doctor and the trainer's log read this, and compiled-op caches are keyed by the
  # id (cache-env.sh), so two images never share a TORCH_EXTENSIONS_DIR. Default id: what is installed.
  local id=${HPCFT_IMAGE_ID:-$(python -m pip freeze --all | sha256sum | cut -c1-16)}
  printf '%s\n' "HPCFT_IMAGE_ID=$id" "HPCFT_VERSION=$(hpcft --version | cut -d' ' -f2)" \
    "HPCFT_IMAGE_BUILT=$(date -u +%Y-%m-%dT%H:%M:%SZ)" > /etc/hpcft-image
}

case ${1:-} in
  deps) install_deps ;;
  hpcft) install_hpcft "${2:?usage: install-hpcft.sh hpcft SRC}" ;;
  *) echo "usage: install-hpcft.sh deps | hpcft SRC" >&2; exit 2 ;;
esac
