# Why: moetrain runs on many nodes, where ranks talk over a network, each node has its own /dev/shm and
# local disk, and a node can die or drop off the network. This builds such a cluster on ONE Linux machine,
# for real, so that tests can run Slurm, srun --mpi=pmix and mpirun across "hosts" and then pull a
# host's plug or cable. Every host (ctl, node1..nodeN) is a sleeping holder process that owns a network
# namespace (eth0, a veth into a bridge that lives in the namespace of a switch holder), a UTS namespace
# (its hostname) and a mount namespace (its own /etc/hosts, /dev/shm and local disk at $CL_DIR/local).
# Each host runs its own munged (one shared key); ctl runs slurmctld, the nodes slurmd.
#
# Nothing has a global name: the namespaces are held by processes (no `ip netns add`, nothing in
# /run/netns), the addresses (10.99.0.0/24) and ports exist only inside them, and the root namespace's
# network is never touched. A host's processes are exactly those in its network namespace, so stopping
# a host (or the cluster) kills by namespace; the holders' PIDs and start times are kept in
# $CL_DIR/hosts/H/ so that a cluster left behind by a killed test is found and stopped by the next one.
#
# In a test (root, CAP_SYS_ADMIN + CAP_NET_ADMIN):
#   . tests/cluster/cluster.sh
#   cluster_can_run || exit 77          # prints why not (not root, no namespaces)
#   cluster_start DIR 3                 # ctl + node1..node3, all nodes idle; stops with the shell (trap)
#   on ctl HOST_CMD...                  # run a command on a host (the login node is ctl)
#   cluster_cut node2 / cluster_heal node2      # the host's cable out / in (switch-side link down/up)
#   cluster_block node2 / cluster_unblock node2 # the switch drops its frames (link stays up): a partition
#   cluster_crash node2 / cluster_boot node2    # power loss (cable out, every process SIGKILLed) / power on
#   cluster_stop; cluster_check_clean   # stop everything by namespace; fail if anything is left
# By hand: bash tests/cluster/cluster.sh DIR start|stop|status|exec HOST CMD...|cut|heal|crash|boot HOST
# mpirun across hosts: OMPI_MCA_plm_rsh_agent=tests/cluster/onhost (with CL_DIR exported), run on ctl.

CL_PORT=46000     # slurmctld on CL_PORT+1, slurmd on CL_PORT+2: inside the namespaces only
CL_NET=10.99.0    # ctl .1, nodeK .(10+K)
CL_SLURMD_TIMEOUT=${CL_SLURMD_TIMEOUT:-20}

cluster_can_run() {
  local why=
  if [ "$(id -u)" -ne 0 ]; then
    why="not root: the emulated cluster needs CAP_SYS_ADMIN and CAP_NET_ADMIN for its namespaces"
  elif ! command -v unshare nsenter ip bridge slurmctld slurmd munged > /dev/null; then
    why="missing one of unshare nsenter ip bridge slurmctld slurmd munged (scripts/setup.sh installs them)"
  elif ! unshare --net --uts --mount true 2> /dev/null; then
    why="cannot create network/UTS/mount namespaces here (unshare failed: a container without CAP_SYS_ADMIN?)"
  elif ! runuser -u munge -- true 2> /dev/null; then
    why="cannot run munged as the munge user (runuser failed: root only inside a user namespace?)"
  fi
  [ -z "$why" ] && return 0
  echo "SKIP: $why"
  return 1
}

cl_ip() { case $1 in ctl) echo "$CL_NET.1" ;; node*) echo "$CL_NET.$((10 + ${1#node}))" ;; esac; }
cl_hosts() { echo ctl; seq -f 'node%g' 1 "$(cat "$CL_DIR/nnodes")"; }
cl_holder() { cat "$CL_DIR/hosts/$1/pid"; }
# The start time (clock ticks since boot) of process PID, or nothing when it is gone (or a zombie).
cl_starttime() { awk '{ sub(/.*\) /, ""); if ($1 != "Z") print $20 }' "/proc/$1/stat" 2> /dev/null; }

# True while the holder recorded in folder HD is the process that was started (not a reused PID).
cl_holder_alive() {
  local hd=$1 pid
  pid=$(cat "$hd/pid" 2> /dev/null) || return 1
  [ -n "$pid" ] && [ "$(cl_starttime "$pid")" = "$(cat "$hd/start" 2> /dev/null)" ]
}

# The PIDs in the network namespace NS (as readlink /proc/PID/ns/net prints it).
cl_pids_in() {
  # find fails on the processes it may not look into (and those that end meanwhile): not ours.
  { find /proc/[0-9]*/ns/net -maxdepth 0 -printf '%l %p\n' 2> /dev/null || true; } |
    awk -v ns="$1" '$1 == ns { split($2, a, "/"); print a[3] }'
}

# Runs CMD in HOST's network, UTS and mount namespaces, in the current folder, with this environment.
on() {
  local h=$1
  shift
  nsenter -t "$(cl_holder "$h")" -n -u -m --wd="$PWD" -- "$@"
}

# Starts a holder for host H (or the switch, H = sw) and records its PID, start time and namespace.
cl_holder_up() {
  local h=$1 hd=$CL_DIR/hosts/$1 setup=
  mkdir -p "$hd"
  rm -f "$hd/pid"
  if [ "$h" != sw ]; then
    mkdir -p "$hd/local/munge" "$hd/local/tmp" "$hd/local/spool"
    chown munge: "$hd/local/munge"
    chmod 755 "$hd" "$hd/local" "$hd/local/munge"
    chmod 1777 "$hd/local/tmp"
    setup="hostname $h; mount --bind $CL_DIR/hosts.txt /etc/hosts; mount --bind $hd/local $CL_DIR/local;
           mount -t tmpfs -o size=1g,mode=1777 tmpfs /dev/shm;"
  fi
  setsid -f unshare --net --uts --mount --propagation private sh -c "
    set -e; ip link set lo up; $setup
    echo \$\$ > $hd/pid.tmp; mv $hd/pid.tmp $hd/pid
    exec sleep infinity" < /dev/null > "$hd/holder.log" 2>&1
  local pid=
  for _ in $(seq 1 100); do
    pid=$(cat "$hd/pid" 2> /dev/null || true)
    [ -n "$pid" ] && break
    sleep 0.05
  done
  [ -n "$pid" ] || { echo "cluster: host $h did not start: $(cat "$hd/holder.log")" >&2; return 1; }
  cl_starttime "$pid" > "$hd/start"
  readlink "/proc/$pid/ns/net" > "$hd/netns"
}

# Plugs host H into the switch: a veth pair made in the switch's namespace, eth0 moved into H's.
cl_plug() {
  local h=$1 sw
  sw=$(cl_holder sw)
  nsenter -t "$sw" -n ip link add "$h" type veth peer name eth0 netns "$(cl_holder "$h")"
  nsenter -t "$sw" -n ip link set "$h" master br0 up
  on "$h" ip addr add "$(cl_ip "$h")/24" dev eth0
  on "$h" ip link set eth0 up
}

cl_munge_up() {
  on "$1" runuser -u munge -- munged --force --socket="$CL_DIR/local/munge/munge.socket" \
    --key-file="$CL_DIR/munge.key" --pid-file="$CL_DIR/local/munge/munged.pid" \
    --log-file="$CL_DIR/local/munge/munged.log" --seed-file="$CL_DIR/local/munge/seed"
}

cl_write_conf() {
  local n=$1 i
  {
    echo "$(cl_ip ctl) ctl"
    for i in $(seq 1 "$n"); do echo "$(cl_ip "node$i") node$i"; done
    echo "127.0.0.1 localhost"
  } > "$CL_DIR/hosts.txt"
  # A small SlurmdTimeout: a silent node is marked down (and its jobs requeued) within seconds, not
  # the default 300 s. The same paths on every host point at each host's own local disk.
  cat > "$CL_DIR/slurm.conf" << EOF
ClusterName=mtcluster
SlurmctldHost=ctl($(cl_ip ctl))
SlurmctldPort=$((CL_PORT + 1))
SlurmdPort=$((CL_PORT + 2))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$CL_DIR/local/munge/munge.socket,cred_expire=5
StateSaveLocation=$CL_DIR/state
SlurmdSpoolDir=$CL_DIR/local/spool
TmpFS=$CL_DIR/local/tmp
SlurmctldPidFile=$CL_DIR/slurmctld.pid
SlurmdPidFile=$CL_DIR/local/slurmd.pid
SlurmctldLogFile=$CL_DIR/log/slurmctld.log
SlurmdLogFile=$CL_DIR/log/slurmd-%n.log
JobCompType=jobcomp/filetxt
JobCompLoc=$CL_DIR/log/jobcomp.txt
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
MpiDefault=pmix
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
ReturnToService=2
SlurmdTimeout=$CL_SLURMD_TIMEOUT
MinJobAge=600
KillWait=3
InactiveLimit=0
SlurmdParameters=config_overrides
EOF
  for i in $(seq 1 "$n"); do
    echo "NodeName=node$i NodeAddr=$(cl_ip "node$i") NodeHostname=node$i CPUs=2 State=UNKNOWN"
  done >> "$CL_DIR/slurm.conf"
  echo "PartitionName=main Nodes=node[1-$n] Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO" \
    >> "$CL_DIR/slurm.conf"
}

# Kills (SIGKILL) every process in the network namespace recorded for each host folder HD... whose holder
# is still the one recorded, and waits until they are gone. Nothing of a host needs an orderly end: its
# state lives in the cluster's folder, which the next cluster does not reuse.
cl_kill_hosts() {
  local hd ns p nss=()
  for hd in "$@"; do
    cl_holder_alive "$hd" && nss+=("$(cat "$hd/netns")")
  done
  [ ${#nss[@]} -gt 0 ] || return 0
  for _ in $(seq 1 50); do
    local left=
    for ns in "${nss[@]}"; do left+=$(cl_pids_in "$ns" | tr '\n' ' '); done
    [ -z "$left" ] && return 0
    for p in $left; do kill -KILL "$p" 2> /dev/null || true; done
    sleep 0.1
  done
  echo "cluster: processes left after SIGKILL: $left" >&2
  return 1
}

# Stops the cluster in folder DIR (default CL_DIR): every process of every host and of the switch.
cluster_stop() {
  local dir=${1:-${CL_DIR:-}}
  [ -n "$dir" ] && [ -d "$dir/hosts" ] || return 0
  cl_kill_hosts "$dir"/hosts/*
}

# Root-namespace network and mounts, to compare before and after.
cl_root_snapshot() {
  { ip -o link | sed 's/^[0-9]*: //; s/ state .*//'; ip -o addr; ip route; ip -6 route
    grep -F "$CL_DIR" /proc/self/mountinfo || true; ls /run/netns 2> /dev/null || true; } 2>&1
}

# Fails (returns 1, with the reason) if anything of the cluster is left: a process in one of its
# namespaces, a holder, a mount of its folder, or a change to the root namespace's network.
cluster_check_clean() {
  local hd bad=0 ns left
  for hd in "$CL_DIR"/hosts/*; do
    ns=$(cat "$hd/netns" 2> /dev/null) || continue
    if cl_holder_alive "$hd"; then
      echo "cluster: holder of $(basename "$hd") still alive" >&2
      bad=1
      left=$(cl_pids_in "$ns" | tr '\n' ' ')
      [ -z "$left" ] || echo "cluster: processes left in $ns ($(basename "$hd")): $left" >&2
    fi
  done
  if [ "$(cl_root_snapshot)" != "$(cat "$CL_DIR/root.before")" ]; then
    echo "cluster: the root namespace changed:" >&2
    diff <(cat "$CL_DIR/root.before") <(cl_root_snapshot) >&2 || true
    bad=1
  fi
  return $bad
}

# Stops clusters left behind by killed runs in folders named PREFIX* (their holders still alive).
cl_clean_leftovers() {
  local prefix=$1 d hd
  for d in "$prefix"*; do
    [ -d "$d/hosts" ] || continue
    for hd in "$d"/hosts/*; do
      cl_holder_alive "$hd" && echo "cluster: stopping a cluster left behind in $d" && break
    done
    cluster_stop "$d"
    rm -rf "$d"
  done
}

# Starts ctl + node1..nodeN in folder DIR, which must not exist yet, and waits until every node is idle.
# Prints the time it took. Leftovers of killed runs in folders named like DIR without its last
# "-suffix" are stopped first. The cluster stops when the calling shell exits (EXIT trap; a test's own
# EXIT trap must call cluster_stop itself).
cluster_start() {
  local dir=$1 n=${2:-3} t0 h st=
  t0=$(date +%s.%N)
  cl_clean_leftovers "${dir%-*}-"
  mkdir -p "$dir" && CL_DIR=$(realpath "$dir")
  export CL_DIR SLURM_CONF=$CL_DIR/slurm.conf
  trap cluster_stop EXIT
  mkdir -p "$CL_DIR/log" "$CL_DIR/state" "$CL_DIR/local" "$CL_DIR/hosts"
  chmod 755 "$CL_DIR"
  echo "$n" > "$CL_DIR/nnodes"
  cl_root_snapshot > "$CL_DIR/root.before"
  cl_write_conf "$n"
  dd if=/dev/urandom of="$CL_DIR/munge.key" bs=1024 count=1 status=none
  chown munge: "$CL_DIR/munge.key" && chmod 400 "$CL_DIR/munge.key"
  cl_holder_up sw || return 1
  nsenter -t "$(cl_holder sw)" -n ip link add br0 type bridge
  nsenter -t "$(cl_holder sw)" -n ip link set br0 up
  for h in $(cl_hosts); do
    cl_holder_up "$h" && cl_plug "$h" && cl_munge_up "$h" || return 1
  done
  on ctl slurmctld -f "$SLURM_CONF" || return 1
  for h in $(cl_hosts); do
    [ "$h" = ctl ] || on "$h" slurmd -f "$SLURM_CONF" || return 1
  done
  for _ in $(seq 1 300); do
    st=$(on ctl sinfo -h -N -o %T 2> /dev/null | sort -u | tr '\n' ' ')
    [ "$st" = "idle " ] && break
    sleep 0.1
  done
  echo "cluster: ctl + $n node(s) up in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s ($CL_DIR)"
  [ "$st" = "idle " ] || { echo "cluster: node states '$st' after 30 s" >&2; return 1; }
}

# The switch-side end of host H's cable down / up: H's eth0 loses its carrier.
cluster_cut() { nsenter -t "$(cl_holder sw)" -n ip link set "$1" down; }
cluster_heal() { nsenter -t "$(cl_holder sw)" -n ip link set "$1" up; }
# The switch port of H stops forwarding (STP state disabled): frames dropped, carrier up on both ends.
cluster_block() { nsenter -t "$(cl_holder sw)" -n bridge link set dev "$1" state 0; }
cluster_unblock() { nsenter -t "$(cl_holder sw)" -n bridge link set dev "$1" state 3; }
# Power loss: the cable goes first (a host without power sends no FIN or RST), then every process of
# H dies at once, its holder too (and with it its namespaces and its veth).
cluster_crash() {
  cluster_cut "$1"
  cl_kill_hosts "$CL_DIR/hosts/$1"
}
# Power on after a crash: a new holder, plugged in, munged and slurmd (which registers with slurmctld).
cluster_boot() { cl_holder_up "$1" && cl_plug "$1" && cl_munge_up "$1" && on "$1" slurmd -f "$SLURM_CONF"; }

# The start of the cluster tests (after tests/script_common.sh, in the source tree): CMP (compare_runs,
# $1), tests/slurm/common.sh's helpers, a skip (exit 77) where the cluster cannot run, SRC and T_ALL,
# ctl + 3 nodes in $TMP.cluster-PID (SlurmdTimeout $2, default 20 s), and Slurm's commands by name
# running on ctl (the login node).
cluster_test_begin() {
  CMP=$(realpath "$1")
  . tests/slurm/common.sh
  cluster_can_run || exit 77
  SRC=$PWD
  T_ALL=$(date +%s)
  CL_SLURMD_TIMEOUT=${2:-$CL_SLURMD_TIMEOUT} cluster_start "$TMP.cluster-$$" 3 || fail "the cluster did not start"
  local c
  for c in sbatch squeue scontrol sinfo; do eval "$c() { on ctl $c \"\$@\"; }"; done
}

# By hand: bash tests/cluster/cluster.sh DIR COMMAND [ARGS]
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  dir=$1 cmd=$2
  shift 2
  if [ "$cmd" = start ]; then
    cluster_can_run || exit 77
    cluster_start "$dir" "${1:-3}"
    trap - EXIT
    exit 0
  fi
  CL_DIR=$(realpath "$dir")
  export CL_DIR SLURM_CONF=$CL_DIR/slurm.conf
  case $cmd in
    stop) cluster_stop && cluster_check_clean && echo "cluster: stopped, nothing left" ;;
    status) for h in $(cl_hosts); do
              hd=$CL_DIR/hosts/$h
              if cl_holder_alive "$hd"; then
                echo "$h: $(cl_pids_in "$(cat "$hd/netns")" | xargs -r ps -o comm= -p | sort | uniq -c | tr -s ' \n' ' ')"
              else
                echo "$h: down"
              fi
            done
            on ctl sinfo -N -l || true ;;
    exec) h=$1; shift; on "$h" "$@" ;;
    cut | heal | block | unblock | crash | boot) "cluster_$cmd" "$1" ;;
    *) echo "unknown command $cmd" >&2; exit 2 ;;
  esac
fi
