# Default cache locations for the hpcft image, read by every non-interactive bash in the container through
# BASH_ENV (the job starts torchrun with `bash -c`). A value already set (by the profile, the EDF or the user)
# is kept; otherwise caches go to $SCRATCH, or to a private folder under $TMPDIR when there is no scratch.
# They are not image ENV entries on purpose: Apptainer, enroot/pyxis and the CSCS Container Engine all let
# an image's ENV win over the host's, so a path baked there would silently beat the profile's HF_HOME.
# shellcheck shell=bash
_hpcft_cache_root=${SCRATCH:-${TMPDIR:-/tmp}/hpcft-${USER:-$(id -u)}}
export HF_HOME="${HF_HOME:-$_hpcft_cache_root/hf}"
export TRITON_CACHE_DIR="${TRITON_CACHE_DIR:-$_hpcft_cache_root/.cache/triton}"
# DeepSpeed's JIT-compiled ops: node-local and keyed by the image (install-hpcft.sh writes /etc/hpcft-image), so
# nodes do not race for one shared folder and another image never loads ops built against other libraries.
_hpcft_image_id=$(sed -n 's/^HPCFT_IMAGE_ID=//p' /etc/hpcft-image 2>/dev/null || true)
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-/tmp/hpcft-${USER:-$(id -u)}/torch_extensions/${_hpcft_image_id:-unknown}}"
export XDG_CACHE_HOME="${XDG_CACHE_HOME:-$_hpcft_cache_root/.cache}"
unset _hpcft_cache_root _hpcft_image_id
