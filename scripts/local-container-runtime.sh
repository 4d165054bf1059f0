#!/usr/bin/env bash
# Enroot + Pyxis for the local two-node Slurm cluster (scripts/local-slurm.sh), so that its jobs can run in a
# real container image: `srun --container-image=IMG.sqsh ...` on node1 and node2, as on a pyxis cluster.
#
#   scripts/local-container-runtime.sh up       build Enroot and Pyxis from ../shared/vendor (once), install them
#                                               under /usr/local, write enroot.conf and the plugstack line, and
#                                               restart the two slurmd when that line is new; idempotent
#   scripts/local-container-runtime.sh status   what is installed
#
# The sources are the unmodified upstream archives in $HPCFT_VENDOR_DIR (default <repo>/../shared/vendor); the
# build tools come from Debian. A build is keyed by the archives' hashes and this script's, so a second `up`
# takes seconds. Needs root, like local-slurm.sh; run it after `scripts/local-slurm.sh up`.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
VENDOR=${HPCFT_VENDOR_DIR:-$REPO/../shared/vendor}
SLURM_DIR=${HPCFT_SLURM_DIR:-/var/tmp/hpcft-slurm}
WORK=${HPCFT_RUNTIME_BUILD_DIR:-/var/tmp/hpcft-container-runtime}
ENROOT_ROOT=/var/tmp/enroot
PREFIX=/usr/local
PYXIS_SO=$PREFIX/lib/slurm/spank_pyxis.so
PLUGSTACK_DROPIN=$SLURM_DIR/etc/plugstack.d/pyxis.conf
ENROOT_CONF=$PREFIX/etc/enroot/enroot.conf
# Build tools for enroot (its README's list) and pyxis, plus what enroot runs: squashfuse and fuse-overlayfs
# let pyxis start a .sqsh without unpacking it. debootstrap: for `hpcft image build --local`, run next.
PACKAGES=(gcc make libcap2-bin libtool automake libmd-dev curl gawk jq parallel pigz patch zstd
          squashfs-tools squashfuse fuse-overlayfs debootstrap)

log() { printf 'local-container-runtime: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

need_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return
    log "installing Debian packages: ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get failed; install by hand: apt-get install ${missing[*]}"
}

archive() {  # archive PATTERN: the one vendor archive matching it
    local f
    f=$(find "$VENDOR" -maxdepth 1 -name "$1" | head -n 1)
    [ -n "$f" ] || die "no $1 in $VENDOR (set HPCFT_VENDOR_DIR to the folder holding the enroot/pyxis archives)"
    echo "$f"
}

build_key() {  # the archives and the build steps (not the rest of this script): a new key rebuilds
    { sha256sum "$VENDOR"/enroot*.tar.gz "$VENDOR"/pyxis*.tar.gz; declare -f build_enroot build_pyxis; } \
        | sha256sum | cut -c1-16
}

build_enroot() {  # build_enroot SRC: the full build with enroot's own musl, headers and makeself (~1.5 min)
    local src=$1 f
    for f in "$(archive 'enroot-[0-9a-f]*.tar.gz')" "$VENDOR"/enroot-dep-*.tar.gz; do
        tar -xzf "$f" -C "$src"
    done
    log "building enroot (about 1.5 min)"
    make -C "$src/enroot" -j"$(nproc)" install prefix="$PREFIX" >"$src/enroot-build.log" 2>&1 \
        || { tail -n 30 "$src/enroot-build.log" >&2; die "enroot build failed; see $src/enroot-build.log"; }
}

build_pyxis() {  # build_pyxis SRC: against the headers of the Slurm that runs here (Debian's)
    local src=$1 hdr=$1/slurm-headers deb
    tar -xzf "$(archive 'pyxis-*.tar.gz')" -C "$src"
    mkdir -p "$hdr"
    (cd "$src" && apt-get download -q -o APT::Sandbox::User=root libslurm-dev slurm-wlm-basic-plugins-dev >/dev/null) \
        || die "apt-get download libslurm-dev slurm-wlm-basic-plugins-dev failed"
    for deb in "$src"/*.deb; do
        dpkg-deb -x "$deb" "$hdr"
    done
    log "building pyxis"
    # CPPFLAGS through the environment: on make's command line it would replace pyxis's -D_GNU_SOURCE.
    CPPFLAGS="-I$hdr/usr/include" make -C "$src/pyxis" install prefix="$PREFIX" >"$src/pyxis-build.log" 2>&1 \
        || { tail -n 30 "$src/pyxis-build.log" >&2; die "pyxis build failed; see $src/pyxis-build.log"; }
}

write_enroot_conf() {
    # Both slurmd run on this one host: per-node runtime and data folders keep node1's containers apart from
    # node2's (SLURMD_NODENAME is set in every job step).
    mkdir -p "$ENROOT_ROOT"/{run,data,cache,tmp} "$(dirname "$ENROOT_CONF")"
    cat >"$ENROOT_CONF.new" <<EOF
# Written by scripts/local-container-runtime.sh for the local two-node cluster.
ENROOT_RUNTIME_PATH $ENROOT_ROOT/run/\${SLURMD_NODENAME:-host}
ENROOT_DATA_PATH $ENROOT_ROOT/data/\${SLURMD_NODENAME:-host}
ENROOT_CACHE_PATH $ENROOT_ROOT/cache
ENROOT_TEMP_PATH $ENROOT_ROOT/tmp
ENROOT_SQUASH_OPTIONS -comp zstd -Xcompression-level 3
EOF
    mv "$ENROOT_CONF.new" "$ENROOT_CONF"
}

write_plugstack() {
    # With two slurmd on one host, use_squashfuse=1 (no per-node unpacked copy) and the per-node data path of
    # enroot.conf keep the nodes' containers apart.
    mkdir -p "$ENROOT_ROOT/pyxis" "$(dirname "$PLUGSTACK_DROPIN")"
    echo "required $PYXIS_SO runtime_path=$ENROOT_ROOT/pyxis use_squashfuse=1" >"$PLUGSTACK_DROPIN"
}

installed() {
    [ -s "$WORK/installed" ] && [ "$(cat "$WORK/installed")" = "$(build_key)" ] \
        && [ -x "$PREFIX/bin/enroot" ] && [ -s "$PYXIS_SO" ]
}

cmd_up() {
    [ "$(id -u)" -eq 0 ] || die "run as root (enroot and pyxis are installed under $PREFIX)"
    [ -d "$VENDOR" ] || die "no vendor folder $VENDOR (set HPCFT_VENDOR_DIR)"
    local t0=$SECONDS src
    need_packages
    if installed; then
        log "enroot and pyxis already built ($(cat "$WORK/installed"))"
    else
        src=$WORK/build
        rm -rf "$src"
        mkdir -p "$src"
        build_enroot "$src"
        build_pyxis "$src"
        build_key >"$WORK/installed"
        log "built enroot $("$PREFIX/bin/enroot" version) and pyxis in $((SECONDS - t0))s"
    fi
    write_enroot_conf
    write_plugstack
    # slurmd reads plugstack.conf when it starts: restart the nodes that run without the line (no-op after).
    "$REPO/scripts/local-slurm.sh" restart-nodes
    log "ready in $((SECONDS - t0))s: srun --container-image=IMG.sqsh works on node1 and node2"
}

cmd_status() {
    printf 'enroot: %s\n' "$(command -v enroot >/dev/null && enroot version || echo missing)"
    printf 'pyxis:  %s\n' "$( [ -s "$PYXIS_SO" ] && echo "$PYXIS_SO" || echo missing)"
    printf 'plugstack line: %s\n' "$(cat "$PLUGSTACK_DROPIN" 2>/dev/null || echo none)"
}

case "${1:-}" in
    up) cmd_up ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 up | status" >&2
        exit 2
        ;;
esac
