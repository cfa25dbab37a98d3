#!/usr/bin/env bash
# A throwaway single-node SLURM cluster on this machine, so the SLURM executor can be tested for real.
#
#   tests/cluster/slurm.sh start DIR   install if missing, write /etc/slurm/slurm.conf (state, spool, logs and
#                                      PID files under DIR), start munged, slurmctld, slurmd; wait until idle
#   tests/cluster/slurm.sh stop DIR    kill the daemons this script started, by the PIDs recorded in DIR,
#                                      and remove the slurm.conf it wrote
#
# The config lives at the default path, not behind SLURM_CONF: the executor's job step strips every SLURM_*
# variable before its nested `srun`, which then only finds /etc/slurm/slurm.conf. A slurm.conf this script
# did not write is never touched. Needs root (daemons, /etc/hosts, apt-get); no systemd is assumed.
# Ports default to 6817/6818; override with SLURMCTLD_PORT / SLURMD_PORT.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by metasae tests/cluster/slurm.sh"

log() { echo "slurm.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }
ours() { [[ -f $CONF ]] && head -n1 "$CONF" | grep -qxF "$MARK"; }
alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_if_missing() {
    local cmd
    for cmd in slurmctld slurmd sbatch squeue sinfo srun munged munge; do
        command -v "$cmd" >/dev/null 2>&1 || break
    done
    command -v "$cmd" >/dev/null 2>&1 && return 0
    [[ $(id -u) == 0 ]] || die "SLURM/munge are not installed and installing them needs root"
    log "installing slurmctld slurmd slurm-client munge"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
}

ensure_hostname_resolves() {
    local host
    host=$(hostname -s)
    getent hosts "$host" >/dev/null || echo "127.0.0.1 $host" >>/etc/hosts
}

start_munge() {
    local dir=$1
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        log "munged already running; reusing it"
        return 0
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    [[ -s /etc/munge/munge.key ]] || runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    rm -f /run/munge/munged.pid
    runuser -u munge -- munged
    cp /run/munge/munged.pid "$dir/munged.pid"
}

write_conf() {
    local dir=$1 node
    [[ ! -e $CONF ]] || ours || die "$CONF exists and was not written by this script; refusing to replace it"
    if [[ -e $CONF ]]; then
        local running
        running=$(sed -n 's/^SlurmctldPidFile=//p' "$CONF")
        [[ $running == "$dir/slurmctld.pid" ]] || ! alive "$running" ||
            die "a cluster started from $(dirname "$running") is running; stop it first"
    fi
    node=$(slurmd -C | head -n1)   # "NodeName=<hostname -s> CPUs=... RealMemory=..." of this machine
    mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$(dirname "$CONF")"
    cat >"$CONF.tmp" <<CONF
$MARK
ClusterName=localtest
SlurmctldHost=$(hostname -s)
SlurmUser=root
SlurmctldPort=${SLURMCTLD_PORT:-6817}
SlurmdPort=${SLURMD_PORT:-6818}
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
# Finished jobs stay visible to squeue this long; the executor's squeue status checks rely on it.
MinJobAge=600
$node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    mv "$CONF.tmp" "$CONF"
}

wait_idle() {
    local i state=""
    for i in $(seq 1 150); do
        state=$(sinfo -h -N -o '%T' 2>/dev/null | head -n1 || true)
        [[ $state == idle ]] && { log "node idle after $((i / 5)).$((i % 5 * 2)) s"; return 0; }
        sleep 0.2
    done
    die "node not idle after 30 s (state '${state:-none}'); see $1/log/"
}

start() {
    local dir
    dir=$(realpath -m "$1")
    mkdir -p "$dir"
    install_if_missing
    ensure_hostname_resolves
    start_munge "$dir"
    write_conf "$dir"
    alive "$dir/slurmctld.pid" || slurmctld -c
    alive "$dir/slurmd.pid" || slurmd
    wait_idle "$dir"
}

stop() {
    local dir name pidfile pid
    dir=$(realpath -m "$1")
    for name in slurmd slurmctld munged; do
        pidfile=$dir/$name.pid
        alive "$pidfile" || continue
        pid=$(cat "$pidfile")
        kill "$pid"
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
        log "stopped $name (pid $pid)"
    done
    rm -f "$dir/munged.pid"
    if ours; then rm -f "$CONF"; fi
}

case "${1:-}" in
    start) [[ $# == 2 ]] || die "usage: $0 start DIR"; start "$2" ;;
    stop) [[ $# == 2 ]] || die "usage: $0 stop DIR"; stop "$2" ;;
    *) die "usage: $0 {start|stop} DIR" ;;
esac
