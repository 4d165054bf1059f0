#!/usr/bin/env bash
# The CPU training image without a registry, for the local test cluster: a Debian root file system from
# debootstrap instead of the NGC image, then the same install steps as containers/Dockerfile
# (install-hpcft.sh deps, install-hpcft.sh hpcft SRC) with the same ENV, then mksquashfs.
# `hpcft image build --local` runs it and caches both stages by their content (launcher/runtimes/image_local.py).
#   build-local-image.sh deps DIR                  root file system + Python venv + torch + the pinned libraries
#   build-local-image.sh image DEPS_DIR SRC OUT    DEPS_DIR (unchanged, through an overlay) + hpcft from SRC -> OUT
# The versions come from the environment, as the Dockerfile's ARGs give them; TORCH_WHEEL names the local CPU
# torch wheel (this machine has no CUDA; PyPI's torch is the CUDA build). Needs root (debootstrap, chroot, mount).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=${DEBIAN_SUITE:-bookworm}
VENV=/opt/venv

log() { printf 'build-local-image: %s\n' "$*" >&2; }

in_chroot() {  # in_chroot ROOT CMD...: run CMD in ROOT with /proc, /dev and the wheel folder, in a private namespace
    local root=$1
    shift
    # shellcheck disable=SC2016  # expanded by the inner bash
    unshare --mount --propagation private bash -euc '
        root=$1 n=$2
        shift 2
        envs=("${@:1:n}")
        shift "$n"
        mount -t proc proc "$root/proc"
        mount --rbind /dev "$root/dev"
        mkdir -p "$root/opt/wheels"
        mount --bind -o ro "$(dirname "$TORCH_WHEEL")" "$root/opt/wheels"
        exec chroot "$root" env -i PATH='"$VENV"'/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
            "${envs[@]}" "$@"' bash "$root" "${#PASS_ENV[@]}" "${PASS_ENV[@]}" "$@"
}

make_rootfs() {  # make_rootfs DIR: minimal Debian with Python and the host's CA certificates (pip needs them)
    local dir=$1
    log "debootstrap $SUITE into $dir (about 1.5 min)"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-dev,g++,ca-certificates \
        "$SUITE" "$dir" "$MIRROR" >"$dir.debootstrap.log" 2>&1 \
        || { tail -n 20 "$dir.debootstrap.log" >&2; exit 1; }
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$dir/usr/local/share/ca-certificates/"
        chroot "$dir" update-ca-certificates >/dev/null
    fi
    cp /etc/resolv.conf "$dir/etc/resolv.conf"
    chroot "$dir" python3 -m venv "$VENV"
}

cmd_deps() {
    local dir=$1
    : "${TORCH_WHEEL:?TORCH_WHEEL must name the local torch wheel}"
    rm -rf "$dir"
    mkdir -p "$dir"
    make_rootfs "$dir"
    mkdir -p "$dir/opt/hpcft"
    cp "$HERE/install-hpcft.sh" "$dir/opt/hpcft/"
    log "torch from $(basename "$TORCH_WHEEL") (the base's torch, as NGC's is in containers/Dockerfile)"
    in_chroot "$dir" python -m pip install -q --no-cache-dir "/opt/wheels/$(basename "$TORCH_WHEEL")"
    log "install-hpcft.sh deps"
    in_chroot "$dir" bash /opt/hpcft/install-hpcft.sh deps
    rm -rf "$dir/opt/wheels"
}

cmd_image() {
    local deps=$1 src=$2 out=$3 work
    work=$(mktemp -d "${out}.work.XXXXXX")
    # shellcheck disable=SC2064  # expand now: the folder of this build
    trap "rm -rf '$work'" EXIT
    mkdir -p "$work"/{upper,ovl,root}
    # The dependency stage stays untouched (it is cached): hpcft goes into an overlay's upper layer.
    # shellcheck disable=SC2016  # expanded by the inner bash
    unshare --mount --propagation private bash -euc '
        deps=$1 work=$2 src=$3 out=$4 here=$5 n=$6
        shift 6
        envs=("$@")
        mount -t overlay overlay -o "lowerdir=$deps,upperdir=$work/upper,workdir=$work/ovl" "$work/root"
        root=$work/root
        mkdir -p "$root/opt/hpcft/src"
        cp "$here/install-hpcft.sh" "$here/cache-env.sh" "$root/opt/hpcft/"
        # What the Dockerfile COPYs, and only that.
        for p in pyproject.toml README.md core launcher trainer templates cluster_profiles edf configs; do
            cp -a "$src/$p" "$root/opt/hpcft/src/"
        done
        find "$root/opt/hpcft/src" -name __pycache__ -prune -exec rm -rf {} +
        mount -t proc proc "$root/proc"
        chroot "$root" env -i PATH='"$VENV"'/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
            "${envs[@]}" bash /opt/hpcft/install-hpcft.sh hpcft /opt/hpcft/src
        umount "$root/proc"
        # The Dockerfile ENV lines; enroot applies /etc/environment (enroot import writes ENV there too).
        printf "%s\n" "PATH='"$VENV"'/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
            BASH_ENV=/opt/hpcft/cache-env.sh PYTHONUNBUFFERED=1 >"$root/etc/environment"
        # enroot starts the command through a login shell (ENROOT_LOGIN_SHELL), and Debian'"'"'s /etc/profile
        # sets root'"'"'s PATH outright: the venv goes back in front from profile.d, which it reads after that.
        echo "export PATH='"$VENV"'/bin:\$PATH" >"$root/etc/profile.d/hpcft-venv.sh"
        rm -f "$root/etc/resolv.conf"
        touch "$root/etc/resolv.conf"
        mksquashfs "$root" "$out.tmp" -noappend -comp zstd -Xcompression-level 3 -no-progress -quiet \
            -e proc/* sys/* dev/* run/* tmp/* root/.cache
    ' bash "$deps" "$work" "$src" "$out" "$HERE" "${#PASS_ENV[@]}" "${PASS_ENV[@]}"
    mv "$out.tmp" "$out"
    log "wrote $out ($(du -h "$out" | cut -f1))"
}

# Build variables the install script reads (versions, DS_BUILD_*, HPCFT_EXTRAS): passed into the chroot.
PASS_ENV=()
while IFS='=' read -r name _; do
    case $name in
        *_VERSION | DS_BUILD_* | DS_ACCELERATOR | HPCFT_EXTRAS | HPCFT_IMAGE_ID | MAX_JOBS | CUDA_ARCHS | PIP_INDEX_URL | \
            PIP_EXTRA_INDEX_URL | HTTP_PROXY | HTTPS_PROXY | http_proxy | https_proxy | NO_PROXY | no_proxy)
            PASS_ENV+=("$name=${!name}") ;;
    esac
done < <(env)
[ "$(id -u)" -eq 0 ] || { log "run as root (debootstrap, chroot and mount need it)"; exit 1; }

case ${1:-} in
    deps) cmd_deps "${2:?usage: build-local-image.sh deps DIR}" ;;
    image) cmd_image "${2:?}" "${3:?}" "${4:?usage: build-local-image.sh image DEPS_DIR SRC OUT}" ;;
    *)
        echo "usage: build-local-image.sh deps DIR | image DEPS_DIR SRC OUT" >&2
        exit 2
        ;;
esac
