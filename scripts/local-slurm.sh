#!/usr/bin/env bash
# A real two-node Slurm cluster on this one machine, for hpcft's integration tests and for trying hpcft out.
#
#   scripts/local-slurm.sh up       install Debian's Slurm if missing, start munge, MariaDB, slurmdbd,
#                                   slurmctld and two slurmd (node1, node2, 4 fake GPUs each); idempotent
#   scripts/local-slurm.sh down     cancel our jobs and stop exactly the daemons `up` started (by PID)
#   scripts/local-slurm.sh status   which daemons run, and sinfo
#   scripts/local-slurm.sh restart-nodes   restart the slurmd whose plugstack.conf changed (plugstack.d/*.conf)
#
# Everything (configs, spool, logs, pids, the MariaDB data dir) lives under $HPCFT_SLURM_DIR
# (default /var/tmp/hpcft-slurm). Outside it, `up` only adds node1/node2 to /etc/hosts and, when
# /etc/slurm/slurm.conf does not exist, links it to our config so plain `sbatch` finds the cluster.
# Needs root (Slurm runs as root here: SlurmUser=root), no systemd and no cgroups.
set -euo pipefail

DIR=${HPCFT_SLURM_DIR:-/var/tmp/hpcft-slurm}
CLUSTER=hpcft
ACCOUNT=hpcft
PARTITION=debug            # the partition cluster_profiles/local.yaml uses
NODES=(node1 node2)
NODE_PORT_BASE=17000       # node1 -> 17001, node2 -> 17002
CTLD_PORT=16817
DBD_PORT=16819
DB_PORT=16306
DB_PASS=hpcft-local        # a throwaway password for a database bound to 127.0.0.1 only
HOSTS_MARK="# hpcft local-slurm"
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)

ETC=$DIR/etc
RUN=$DIR/run
LOG=$DIR/log
SPOOL=$DIR/spool
export SLURM_CONF=$ETC/slurm.conf

log() { printf 'local-slurm: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    # CI shows only our output: print the end of each daemon log so a failure explains itself.
    local f
    for f in "$LOG"/*.log "$LOG"/*.out; do
        [ -s "$f" ] || continue
        log "---- last lines of $f"
        tail -n 15 "$f" >&2
    done
    exit 1
}

# ---------------------------------------------------------------- packages
install_packages() {
    local missing=()
    for cmd in slurmctld slurmd sbatch slurmdbd munged mariadbd mariadb-install-db; do
        command -v "$cmd" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$cmd" >/dev/null 2>&1 \
            || missing+=("$cmd")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        return
    fi
    log "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    [ "$(id -u)" -eq 0 ] || die "installing packages needs root; run: sudo apt-get install -y ${PACKAGES[*]}"
    # The packages' own service start-up would run a second munged/mariadb/slurmctld with the system's config
    # (and fail without one): forbid it during the install, as Debian's container images do.
    local policy=/usr/sbin/policy-rc.d ours=0 rc=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        ours=1
    fi
    apt-get update -q || rc=$?
    if [ $rc -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" || rc=$?
    fi
    if [ $ours -eq 1 ]; then
        rm -f "$policy"
    fi
    [ $rc -eq 0 ] || die "apt-get failed (exit $rc); install by hand: apt-get install ${PACKAGES[*]}"
}

# ---------------------------------------------------------------- pid helpers
running() {  # running PID: the process exists and is not a zombie waiting to be reaped
    kill -0 "$1" 2>/dev/null && ! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status"
}

pid_alive() {  # pid_alive NAME: the daemon we started under that name still runs
    local f=$RUN/$1.pid
    [ -s "$f" ] && running "$(cat "$f")"
}

start_daemon() {  # start_daemon NAME CMD...: run a foreground (-D) daemon in its own session, remember its PID
    local name=$1
    shift
    if pid_alive "$name"; then
        log "$name already running (pid $(cat "$RUN/$name.pid"))"
        return
    fi
    # setsid puts it in its own session, so it outlives this shell and a Ctrl-C here; exec keeps the PID.
    setsid "$@" </dev/null >>"$LOG/$name.out" 2>&1 &
    echo $! >"$RUN/$name.pid"
    log "started $name (pid $!)"
}

wait_for() {  # wait_for SECONDS WHAT CMD...: poll until CMD succeeds
    local secs=$1 what=$2
    shift 2
    local i
    for ((i = 0; i < secs * 5; i++)); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    die "$what did not come up within ${secs}s; see $LOG/"
}

stop_pid() {  # stop_pid NAME: TERM then KILL the process recorded in NAME.pid
    local f=$RUN/$1.pid pid i
    [ -s "$f" ] || return 0
    pid=$(cat "$f")
    if running "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            running "$pid" || break
            sleep 0.1
        done
        if running "$pid"; then
            log "$1 (pid $pid) ignored TERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        log "stopped $1 (pid $pid)"
    fi
    rm -f "$f"
}

# ---------------------------------------------------------------- munge
start_munge() {
    mkdir -p "$DIR/munge"
    chmod 711 "$DIR/munge"  # the socket must be reachable by every user submitting jobs
    if [ ! -s "$DIR/munge/munge.key" ]; then
        dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
        chmod 400 "$DIR/munge/munge.key"
    fi
    if pid_alive munged; then
        log "munged already running (pid $(cat "$RUN/munged.pid"))"
        return
    fi
    # Our own key and socket: a system munged (if any) is left alone. --force: the folders are root's.
    start_daemon munged munged --foreground --force \
        --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
        --seed-file="$DIR/munge/munged.seed" --log-file="$LOG/munged.log" --pid-file="$DIR/munge/munged.pid"
    wait_for 10 munged test -S "$DIR/munge/munge.socket"
}

# ---------------------------------------------------------------- MariaDB (for slurmdbd, so that sacct works)
mariadb_cli() {
    mariadb --no-defaults --socket="$RUN/mariadb.sock" -uroot "$@"
}

start_mariadb() {
    local datadir=$DIR/mysql
    if [ ! -d "$datadir/mysql" ]; then
        log "initialising MariaDB in $datadir"
        mariadb-install-db --no-defaults --datadir="$datadir" --user=root \
            --auth-root-authentication-method=normal --skip-test-db >"$LOG/mariadb-install.log" 2>&1 \
            || die "mariadb-install-db failed; see $LOG/mariadb-install.log"
    fi
    start_daemon mariadb mariadbd --no-defaults --datadir="$datadir" --user=root \
        --socket="$RUN/mariadb.sock" --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
        --pid-file="$RUN/mariadbd.pid" --log-error="$LOG/mariadb.log"
    wait_for 60 MariaDB mariadb_cli -e 'SELECT 1'
    mariadb_cli -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
}

# ---------------------------------------------------------------- configuration
write_configs() {
    mkdir -p "$ETC" "$SPOOL/ctld" "$DIR/dev"
    local n
    # Fake GPUs: gres.conf only accepts character devices; these are /dev/null's numbers (1,3).
    for n in 0 1 2 3; do
        [ -c "$DIR/dev/gpu$n" ] || mknod "$DIR/dev/gpu$n" c 1 3
    done
    {
        echo "# Written by scripts/local-slurm.sh: a two-node test cluster on one machine."
        echo "ClusterName=$CLUSTER"
        echo "SlurmctldHost=localhost"
        echo "SlurmctldPort=$CTLD_PORT"
        echo "SlurmdPort=$NODE_PORT_BASE"
        echo "AuthType=auth/munge"
        # cred_expire: Slurm holds a requeued job this long (default 120 s); 10 s keeps requeue tests short.
        echo "AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=10"
        echo "CredType=cred/munge"
        echo "SlurmUser=root"
        echo "SlurmdUser=root"
        echo "StateSaveLocation=$SPOOL/ctld"
        echo "SlurmdSpoolDir=$SPOOL/slurmd-%n"
        echo "SlurmctldPidFile=$RUN/slurmctld.daemon.pid"
        echo "SlurmdPidFile=$RUN/slurmd-%n.daemon.pid"
        echo "SlurmctldLogFile=$LOG/slurmctld.log"
        echo "SlurmdLogFile=$LOG/slurmd-%n.log"
        # No systemd and no cgroups in containers: track processes by parent PID, bind nothing.
        echo "ProctrackType=proctrack/linuxproc"
        echo "TaskPlugin=task/none"
        echo "MpiDefault=none"
        echo "SelectType=select/cons_tres"
        echo "SelectTypeParameters=CR_Core"
        echo "SchedulerType=sched/backfill"
        # Start jobs as soon as they are submitted (the default batches them for a few seconds).
        echo "SchedulerParameters=batch_sched_delay=0"
        # Lets a 2-core machine declare 4 CPUs per node.
        echo "SlurmdParameters=config_overrides"
        echo "ReturnToService=2"
        echo "KillWait=5"
        echo "InactiveLimit=0"
        echo "MinJobAge=300"
        echo "JobAcctGatherType=jobacct_gather/none"
        echo "AccountingStorageType=accounting_storage/slurmdbd"
        echo "AccountingStorageHost=localhost"
        echo "AccountingStoragePort=$DBD_PORT"
        # For slurmdbd connections Slurm reads the munge socket from here, not from AuthInfo.
        echo "AccountingStoragePass=$DIR/munge/munge.socket"
        echo "AccountingStorageTRES=gres/gpu"
        # Like real sites: a job must name an account the user belongs to (or get the default one).
        echo "AccountingStorageEnforce=associations"
        echo "GresTypes=gpu"
        for n in "${!NODES[@]}"; do
            echo "NodeName=${NODES[$n]} NodeAddr=127.0.0.1 NodeHostname=${NODES[$n]}" \
                "Port=$((NODE_PORT_BASE + n + 1)) CPUs=4 Boards=1 SocketsPerBoard=1 CoresPerSocket=4" \
                "ThreadsPerCore=1 RealMemory=4000 Gres=gpu:4 State=UNKNOWN"
        done
        echo "PartitionName=$PARTITION Nodes=$(IFS=,; echo "${NODES[*]}") Default=YES MaxTime=INFINITE State=UP"
    } >"$ETC/slurm.conf.new"
    mv "$ETC/slurm.conf.new" "$ETC/slurm.conf"
    {
        echo "AutoDetect=off"
        echo "NodeName=$(IFS=,; echo "${NODES[*]}") Name=gpu File=$DIR/dev/gpu[0-3]"
    } >"$ETC/gres.conf"
    write_plugstack
    echo "PlugStackConfig=$ETC/plugstack.conf" >>"$ETC/slurm.conf"
    {
        echo "AuthType=auth/munge"
        echo "AuthInfo=socket=$DIR/munge/munge.socket"
        echo "DbdHost=localhost"
        echo "DbdAddr=127.0.0.1"
        echo "DbdPort=$DBD_PORT"
        echo "SlurmUser=root"
        echo "PidFile=$RUN/slurmdbd.daemon.pid"
        echo "LogFile=$LOG/slurmdbd.log"
        echo "StorageType=accounting_storage/mysql"
        echo "StorageHost=127.0.0.1"
        echo "StoragePort=$DB_PORT"
        echo "StorageUser=slurm"
        echo "StoragePass=$DB_PASS"
        echo "StorageLoc=slurm_acct_db"
    } >"$ETC/slurmdbd.conf"
    chmod 600 "$ETC/slurmdbd.conf"  # slurmdbd refuses a config others can read
}

write_plugstack() {
    # Our own plugin stack, so that SPANK plugins installed on the host are not loaded: only the lines other
    # set-up scripts put in plugstack.d/ (scripts/local-container-runtime.sh: pyxis).
    mkdir -p "$ETC/plugstack.d"
    local f
    for f in "$ETC"/plugstack.d/*.conf; do
        [ -e "$f" ] && cat "$f"
    done >"$ETC/plugstack.conf"
}

link_system_config() {
    mkdir -p /etc/slurm
    if [ ! -e /etc/slurm/slurm.conf ] && [ ! -L /etc/slurm/slurm.conf ]; then
        ln -s "$ETC/slurm.conf" /etc/slurm/slurm.conf
        log "linked /etc/slurm/slurm.conf -> $ETC/slurm.conf"
    elif [ "$(readlink /etc/slurm/slurm.conf || true)" != "$ETC/slurm.conf" ]; then
        log "/etc/slurm/slurm.conf belongs to another cluster; use: export SLURM_CONF=$ETC/slurm.conf"
    fi
}

add_hosts() {
    # Each slurmd runs in its own UTS namespace with its node's hostname; the names must resolve.
    if ! grep -q "$HOSTS_MARK" /etc/hosts; then
        echo "127.0.0.1 ${NODES[*]} $HOSTS_MARK" >>/etc/hosts
    fi
}

# ---------------------------------------------------------------- Slurm daemons
sacctmgr_q() { sacctmgr --immediate --noheader --parsable2 "$@"; }

register_cluster() {
    if ! sacctmgr_q list cluster format=cluster | grep -qx "$CLUSTER"; then
        sacctmgr_q add cluster "$CLUSTER" >/dev/null
    fi
    if ! sacctmgr_q list account format=account | grep -qx "$ACCOUNT"; then
        sacctmgr_q add account "$ACCOUNT" cluster="$CLUSTER" description=hpcft organization=hpcft >/dev/null
    fi
    local user u
    user=${SUDO_USER:-root}
    for u in root "$user"; do
        # `add cluster` already made root a user of the `root` account: check the association, not the user.
        if [ -z "$(sacctmgr_q list assoc user="$u" account="$ACCOUNT" format=user)" ]; then
            sacctmgr_q add user "$u" account="$ACCOUNT" cluster="$CLUSTER" >/dev/null
        fi
        sacctmgr_q modify user "$u" set defaultaccount="$ACCOUNT" >/dev/null || true
    done
}

dbd_up() { sacctmgr_q list cluster format=cluster; }
nodes_idle() {  # every node answers (idle, or busy with jobs that survived a restart)
    [ "$(sinfo --noheader --partition="$PARTITION" --states=idle,mixed,allocated -o '%D' | awk '{s += $1} END {print s + 0}')" \
        -ge "${#NODES[@]}" ]
}

start_slurm() {
    mkdir -p "$SPOOL"
    start_daemon slurmdbd slurmdbd -D
    wait_for 60 slurmdbd dbd_up
    register_cluster
    start_daemon slurmctld slurmctld -D -i
    wait_for 30 slurmctld scontrol ping
    local n
    local own_hostname=1
    if ! unshare --uts true 2>/dev/null; then
        # Unprivileged containers may forbid new namespaces: the nodes then share this machine's hostname.
        log "warning: unshare --uts is not permitted here; node1 and node2 will report hostname $(hostname)"
        own_hostname=0
    fi
    for n in "${NODES[@]}"; do
        start_slurmd "$n" $own_hostname
    done
    wait_for 30 "slurmd on ${NODES[*]}" nodes_idle
}

start_slurmd() {  # start_slurmd NODE OWN_HOSTNAME
    local n=$1
    mkdir -p "$SPOOL/slurmd-$n"
    pid_alive "slurmd-$n" || cp "$ETC/plugstack.conf" "$RUN/slurmd-$n.plugstack"  # what it loads, for restart-nodes
    if [ "$2" -eq 1 ]; then
        # Its own hostname (UTS namespace), so `srun hostname` prints node1 / node2.
        # shellcheck disable=SC2016  # $1 is expanded by the inner sh
        start_daemon "slurmd-$n" unshare --uts sh -c 'hostname "$1" && exec slurmd -D -N "$1"' sh "$n"
    else
        start_daemon "slurmd-$n" slurmd -D -N "$n"
    fi
}

cmd_restart_nodes() {
    # slurmd reads plugstack.conf only when it starts: restart each one started with other lines. Jobs keep
    # running (slurmstepd outlives slurmd); the same SLURM_CONF as `up` (without it they come back "inval").
    [ "$(id -u)" -eq 0 ] || die "run as root"
    pid_alive slurmctld || die "the cluster is not up; run: $0 up"
    write_plugstack
    local n own_hostname=1 restarted=0
    unshare --uts true 2>/dev/null || own_hostname=0
    for n in "${NODES[@]}"; do
        if pid_alive "slurmd-$n" && cmp -s "$ETC/plugstack.conf" "$RUN/slurmd-$n.plugstack"; then
            continue
        fi
        stop_pid "slurmd-$n"
        start_slurmd "$n" $own_hostname
        restarted=1
    done
    if [ $restarted -eq 1 ]; then
        wait_for 30 "slurmd on ${NODES[*]}" nodes_idle
    fi
}

cmd_up() {
    [ "$(id -u)" -eq 0 ] || die "run as root (Slurm here runs as SlurmUser=root)"
    local t0=$SECONDS
    install_packages
    mkdir -p "$ETC" "$RUN" "$LOG" "$SPOOL"
    add_hosts
    write_configs
    link_system_config
    start_munge
    start_mariadb
    start_slurm
    log "cluster '$CLUSTER' up in $((SECONDS - t0))s: partition $PARTITION, nodes ${NODES[*]}"
    echo "export SLURM_CONF=$ETC/slurm.conf"
}

cmd_down() {
    if pid_alive slurmctld; then
        # Jobs run under slurmstepd, which outlives slurmd: cancel them so no job process is left behind.
        scancel --partition="$PARTITION" 2>/dev/null || true
        local i
        for ((i = 0; i < 50; i++)); do
            [ -z "$(squeue --noheader -o %i 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
    local n
    for n in "${NODES[@]}"; do
        stop_pid "slurmd-$n"
    done
    stop_pid slurmctld
    stop_pid slurmdbd
    stop_pid mariadb
    stop_pid munged
    if [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null || true)" = "$ETC/slurm.conf" ]; then
        rm -f /etc/slurm/slurm.conf
    fi
    if grep -q "$HOSTS_MARK" /etc/hosts 2>/dev/null; then
        # /etc/hosts may be a bind mount (containers): rewrite it in place rather than replacing the file.
        local kept
        kept=$(grep -v "$HOSTS_MARK" /etc/hosts)
        printf '%s\n' "$kept" >/etc/hosts
    fi
    if [ "${1:-}" = "--purge" ]; then
        rm -rf "$DIR"
        log "removed $DIR"
    fi
}

cmd_status() {
    local name rc=0
    for name in munged mariadb slurmdbd slurmctld "${NODES[@]/#/slurmd-}"; do
        if pid_alive "$name"; then
            printf '%-14s running (pid %s)\n' "$name" "$(cat "$RUN/$name.pid")"
        else
            printf '%-14s stopped\n' "$name"
            rc=1
        fi
    done
    if pid_alive slurmctld; then
        sinfo
    fi
    return $rc
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down "${2:-}" ;;
    status) cmd_status ;;
    restart-nodes) cmd_restart_nodes ;;
    *)
        echo "usage: $0 up | down [--purge] | status | restart-nodes   (state in \$HPCFT_SLURM_DIR, default /var/tmp/hpcft-slurm)" >&2
        exit 2
        ;;
esac
