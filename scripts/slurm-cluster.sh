#!/usr/bin/env bash
# A one-node Slurm cluster on 127.0.0.1 with everything under one directory: the config, a
# munge key and socket of its own, state, spool, logs and pid files. For the Slurm test
# (__test__/slurm.spec.ts) and for trying examples/slurm/ by hand.
#
#   scripts/slurm-cluster.sh start DIR   # starts munged, slurmctld and slurmd, waits until the
#                                        # node is idle, prints `export SLURM_CONF=DIR/slurm.conf`
#                                        # (also written to DIR/env)
#   scripts/slurm-cluster.sh stop DIR    # cancels every job, stops the daemons, removes DIR
#
# Needs root (the daemons run as root; jobs run as whoever submits them) and Debian's
# slurmctld, slurmd, slurm-client and munge packages. No cgroups (proctrack/linuxproc,
# task/none), no accounting database: `scontrol -o show job ID` while the job is remembered
# (MinJobAge), DIR/jobcomp.txt for every job that ended. Both daemons listen on 127.0.0.1
# only, on two free ports picked at start.
#
# Environment: SLURM_CLUSTER_TIMEOUT, seconds for each wait (default 30).
set -euo pipefail

TIMEOUT=${SLURM_CLUSTER_TIMEOUT:-30}
DAEMONS=(munged slurmctld slurmd)

die() {
  echo "slurm-cluster: $*" >&2
  exit 1
}

usage() {
  echo "usage: $0 start DIR | stop DIR" >&2
  exit 2
}

need() {
  local missing=()
  for bin in "$@"; do command -v "$bin" >/dev/null 2>&1 || missing+=("$bin"); done
  if ((${#missing[@]})); then
    die "missing ${missing[*]}: install Debian's slurmctld slurmd slurm-client munge packages" \
      "(apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge)"
  fi
}

# Whether pid $1 runs and is named $2: a zombie nobody reaps does not count, nor a pid that
# was reused by another program.
alive() {
  local pid=$1 name=${2:-} stat state
  [[ -n $pid && -r /proc/$pid/stat ]] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  state=${stat##*) }
  state=${state%% *}
  [[ $state != Z && $state != X ]] || return 1
  [[ -z $name ]] || [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name"* ]]
}

gone() {
  local pid
  for pid in "$@"; do
    if alive "$pid"; then return 1; fi
  done
}

munge_answers() {
  munge -n -S "$1" | unmunge -S "$1"
}

node_idle() {
  [[ $(sinfo -h -n "$1" -o %T 2>/dev/null) == idle ]]
}

no_running_jobs() {
  [[ -z $(squeue -h -t running,completing,configuring,pending -o %A) ]]
}

# Poll `$@` every 0.1 s until it succeeds or TIMEOUT seconds pass.
wait_for() {
  local what=$1
  shift
  local deadline=$((SECONDS + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "slurm-cluster: timed out after ${TIMEOUT}s waiting for $what" >&2
      return 1
    fi
    sleep 0.1
  done
}

# The TCP ports something listens on (IPv4 and IPv6), in decimal.
listening_ports() {
  local file
  for file in /proc/net/tcp /proc/net/tcp6; do
    [[ -r $file ]] || continue
    awk 'NR > 1 && $4 == "0A" { split($2, a, ":"); print a[2] }' "$file" | while read -r hex; do echo $((16#$hex)); done
  done
}

# A port in 20000-32767 (below Linux's ephemeral range, so no outgoing connection takes it
# meanwhile) that nothing listens on and that is not in "$@".
free_port() {
  local used port
  used=" $(listening_ports | tr '\n' ' ') $* "
  for _ in $(seq 200); do
    port=$((20000 + RANDOM % 12768))
    [[ $used == *" $port "* ]] && continue
    # Nothing answers on it either (covers a /proc/net/tcp we could not read).
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  die "found no free port on 127.0.0.1"
}

show_logs() {
  local dir=$1 log
  echo "slurm-cluster: start failed; the logs in $dir/log:" >&2
  for log in "$dir"/log/*; do
    [[ -f $log ]] || continue
    echo "----- $log (last 40 lines)" >&2
    tail -n 40 "$log" >&2 || true
  done
}

pid_of() {
  cat "$1/run/$2.pid" 2>/dev/null || true
}

# Stop daemon $2 of cluster $1 by its pid: SIGTERM, then SIGKILL once TIMEOUT passes.
stop_daemon() {
  local dir=$1 name=$2 pid
  pid=$(pid_of "$dir" "$name")
  alive "$pid" "$name" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_for "$name ($pid) to exit" gone "$pid"; then
    echo "slurm-cluster: killing $name ($pid)" >&2
    kill -KILL "$pid" 2>/dev/null || true
    wait_for "$name ($pid) to exit after SIGKILL" gone "$pid" || true
  fi
}

# Processes that still hold something under DIR open (slurmstepd keeps its socket in the
# spool directory) or run in it, other than this script.
processes_in() {
  local dir=$1 proc pid
  for proc in /proc/[0-9]*; do
    pid=${proc#/proc/}
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    if [[ $(readlink "$proc/cwd" 2>/dev/null) == "$dir"* ]] ||
      find "$proc/fd" -maxdepth 1 -lname "$dir/*" 2>/dev/null | grep -q .; then
      alive "$pid" && echo "$pid"
    fi
  done
  return 0
}

start() {
  local dir=$1
  ((EUID == 0)) || die "start needs root: the daemons run as root (SlurmUser=root)"
  need munged munge slurmctld slurmd sinfo scontrol squeue scancel sbatch
  if [[ -e $dir/slurm.conf ]]; then
    die "$dir already holds a cluster; stop it first ($0 stop $dir)"
  fi
  # DIR is made private to the cluster and removed by stop: it must be new or empty.
  if [[ -e $dir ]] && [[ ! -d $dir || -n $(ls -A "$dir") ]]; then
    die "$dir exists and is not an empty directory"
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd -P)
  # munged refuses directories that others may write to, and a key anyone may read.
  chmod 0755 "$dir"
  mkdir -p "$dir"/{munge,state,spool,log,run}
  chmod 0755 "$dir/munge"
  chmod 0700 "$dir/state" "$dir/spool"

  local host ports ctld_port slurmd_port hw
  host=$(hostname -s)
  ctld_port=$(free_port)
  slurmd_port=$(free_port "$ctld_port")
  # What slurmd finds on this machine (CPUs, sockets, cores, threads), so the node is not
  # drained for claiming more than it has; memory is left out (it is not scheduled here).
  hw=$(slurmd -C | head -n 1 | tr ' ' '\n' | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' | tr '\n' ' ')
  [[ $hw == *CPUs=* ]] || hw="CPUs=$(nproc)"

  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1 count=1024 status=none
  chmod 0400 "$dir/munge/munge.key"

  cat >"$dir/slurm.conf" <<EOF
# A one-node cluster on 127.0.0.1, made by scripts/slurm-cluster.sh.
ClusterName=helios
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups: they do not work in containers, and there a failed step looks COMPLETED.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
# One CPU per task, so the array's tasks run side by side.
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# Ended jobs stay visible to scontrol for 10 minutes; a cancelled task gets SIGKILL 5 s after SIGTERM.
MinJobAge=600
KillWait=5
InactiveLimit=0
Waittime=0
NodeName=$host NodeAddr=127.0.0.1 NodeHostname=$host ${hw}State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  echo "export SLURM_CONF=$dir/slurm.conf" >"$dir/env"
  export SLURM_CONF=$dir/slurm.conf

  local socket=$dir/munge/munge.socket
  munged --foreground --force --key-file="$dir/munge/munge.key" --socket="$socket" \
    --pid-file="$dir/run/munged.pid.own" --seed-file="$dir/munge/munged.seed" \
    --log-file="$dir/log/munged.log" </dev/null >>"$dir/log/munged.out" 2>&1 &
  echo $! >"$dir/run/munged.pid"
  if ! wait_for "munged to answer on $socket" munge_answers "$socket"; then
    show_logs "$dir"
    stop_daemons "$dir"
    exit 1
  fi

  slurmctld -D -i </dev/null >>"$dir/log/slurmctld.out" 2>&1 &
  echo $! >"$dir/run/slurmctld.pid"
  slurmd -D -N "$host" </dev/null >>"$dir/log/slurmd.out" 2>&1 &
  echo $! >"$dir/run/slurmd.pid"
  # slurmd writes the pid files itself too; ours are written first, by the same pid.

  if ! wait_for "node $host to be idle (sinfo)" node_idle "$host"; then
    sinfo -N -l >&2 2>&1 || true
    show_logs "$dir"
    stop_daemons "$dir"
    exit 1
  fi
  echo "export SLURM_CONF=$dir/slurm.conf"
}

stop_daemons() {
  local dir=$1
  stop_daemon "$dir" slurmd
  stop_daemon "$dir" slurmctld
  stop_daemon "$dir" munged
}

stop() {
  local dir=$1
  if [[ ! -d $dir ]]; then
    echo "slurm-cluster: $dir does not exist: nothing to stop" >&2
    return 0
  fi
  dir=$(cd "$dir" && pwd -P)
  grep -qs '^# A one-node cluster on 127.0.0.1, made by scripts/slurm-cluster.sh' "$dir/slurm.conf" ||
    die "$dir holds no cluster made by this script (no slurm.conf of ours): not touching it"
  export SLURM_CONF=$dir/slurm.conf

  if alive "$(pid_of "$dir" slurmctld)" slurmctld && command -v squeue >/dev/null; then
    local jobs
    jobs=$(squeue -h -o %F 2>/dev/null | sort -u | tr '\n' ' ' || true)
    if [[ -n ${jobs// /} ]]; then
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      wait_for "the cancelled jobs to end (squeue)" no_running_jobs ||
        squeue >&2 || true
    fi
  fi
  stop_daemons "$dir"

  # Whatever is left of this cluster (a slurmstepd, a task) holds a file under DIR open.
  local pids
  pids=$(processes_in "$dir" | tr '\n' ' ')
  if [[ -n ${pids// /} ]]; then
    echo "slurm-cluster: killing what is left in $dir: $pids" >&2
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    # shellcheck disable=SC2086
    wait_for "$pids to exit" gone $pids || true
  fi
  for name in "${DAEMONS[@]}"; do
    if alive "$(pid_of "$dir" "$name")" "$name"; then die "$name of $dir is still running"; fi
  done
  rm -rf "$dir"
}

[[ $# -eq 2 ]] || usage
case $1 in
start) start "$2" ;;
stop) stop "$2" ;;
*) usage ;;
esac
