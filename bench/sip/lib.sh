# Shared helpers for the SIP benchmark scripts (sourced, not run).
# Server pinned to SERVER_CPU, generator to LOADGEN_CPU; every run is bounded in time.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac

SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
KAMAILIO_PORT=${KAMAILIO_PORT:-5070}
VOXLINE_PORT=${VOXLINE_PORT:-5090}
RESPONDER_PORT=${RESPONDER_PORT:-5095}
KAMAILIO_CHILDREN=${KAMAILIO_CHILDREN:-4}
KAMAILIO_SHM_MB=${KAMAILIO_SHM_MB:-1024}
KAMAILIO_PKG_MB=${KAMAILIO_PKG_MB:-16}
VOXLINE=${VOXLINE:-$TARGET_DIR/release/voxline}
case "$VOXLINE" in /*) ;; *) VOXLINE="$ROOT/$VOXLINE" ;; esac
LOADGEN=${LOADGEN:-$TARGET_DIR/release/voxline-loadgen}
LOG_DIR=${LOG_DIR:-$(mktemp -d /tmp/voxline-bench.XXXXXX)}
# On a shared machine, other work on the two cores disturbs the numbers: as root, the
# server and the generator run at a higher priority (BENCH_NICE=0 to turn it off).
if [ "$(id -u)" -eq 0 ]; then BENCH_NICE=${BENCH_NICE:--10}; else BENCH_NICE=${BENCH_NICE:-0}; fi
# pinned CPU ARGS... : runs a command pinned to one core at the benchmark priority.
pinned() {
  local cpu=$1
  shift
  nice -n "$BENCH_NICE" taskset -c "$cpu" "$@"
}

# Servers are started with `setsid ... &` so that $! is the server's own pid (setsid,
# nice and taskset exec) and leads a process group: stop_server signals the whole group,
# Kamailio's worker processes included.

SERVER_PID=""
SERVER_RUNDIR=""

log() { printf '%s\n' "$*" >&2; }

need() {
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || { log "missing command: $c"; exit 2; }
  done
}

build_loadgen() {
  need cargo jq taskset
  if [ -z "${SKIP_BUILD:-}" ]; then
    (cd "$ROOT" && cargo build --release -q -p voxline-loadgen -p voxline) >&2
  fi
  [ -x "$LOADGEN" ] || { log "loadgen binary not found at $LOADGEN"; exit 2; }
}

# loadgen ARGS... : runs the generator pinned to LOADGEN_CPU, prints its JSON line.
loadgen() {
  pinned "$LOADGEN_CPU" "$LOADGEN" "$@" --json 2>>"$LOG_DIR/loadgen.log"
}

# wait_sip PORT : waits (up to 15 s) until something answers an OPTIONS on the port.
wait_sip() {
  local port=$1 i json
  for i in $(seq 1 30); do
    json=$("$LOADGEN" options --target "127.0.0.1:$port" --count 1 --concurrency 1 \
      --t1-ms 100 --timeout-ms 400 --drain 1 --json 2>/dev/null || true)
    if [ -n "$json" ] && [ "$(jq '.replies | length' <<<"$json")" -gt 0 ]; then
      return 0
    fi
    sleep 0.5
  done
  return 1
}

# start_kamailio CFG PORT [-A DEFINE]... : starts Kamailio pinned to SERVER_CPU.
start_kamailio() {
  local cfg=$1 port=$2
  shift 2
  need kamailio
  SERVER_RUNDIR=$(mktemp -d "$LOG_DIR/kamailio.XXXXXX")
  setsid nice -n "$BENCH_NICE" taskset -c "$SERVER_CPU" kamailio -f "$HERE/$cfg" -l "udp:127.0.0.1:$port" \
    -n "$KAMAILIO_CHILDREN" -m "$KAMAILIO_SHM_MB" -M "$KAMAILIO_PKG_MB" \
    -DD -E -Y "$SERVER_RUNDIR" -w "$SERVER_RUNDIR" "$@" >"$SERVER_RUNDIR/log" 2>&1 &
  SERVER_PID=$!
  if ! wait_sip "$port"; then
    log "kamailio ($cfg) did not start; log: $SERVER_RUNDIR/log"
    tail -5 "$SERVER_RUNDIR/log" >&2
    stop_server
    return 1
  fi
}

# voxline_subscribers TOML N : a data directory (printed) holding N subscribers
# u00000000..@localhost with password "secret", imported once per benchmark run with
# `voxline subscriber import` and copied into each fresh server directory.
voxline_subscribers() {
  local toml=$1 n=$2 dir="$LOG_DIR/subscribers-$2"
  if [ ! -d "$dir/voxline-data" ]; then
    mkdir -p "$dir"
    awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++) printf "u%08d@localhost,secret\n", i }' >"$dir/users.csv"
    (cd "$dir" && "$VOXLINE" subscriber import --config "$HERE/$toml" users.csv) >&2 || return 1
  fi
  echo "$dir/voxline-data"
}

# start_voxline TOML PORT [DATA_TEMPLATE] : starts the Voxline node pinned to SERVER_CPU,
# if it is built and answers SIP on PORT (returns 1 otherwise). DATA_TEMPLATE is copied
# to ./voxline-data first (provisioned subscribers).
start_voxline() {
  local toml=$1 port=$2 template=${3:-}
  if [ ! -x "$VOXLINE" ]; then
    log "voxline binary not built ($VOXLINE): cargo build --release -p voxline"
    return 1
  fi
  SERVER_RUNDIR=$(mktemp -d "$LOG_DIR/voxline.XXXXXX")
  if [ -n "$template" ]; then
    cp -r "$template" "$SERVER_RUNDIR/voxline-data"
  fi
  (cd "$SERVER_RUNDIR" && exec setsid nice -n "$BENCH_NICE" taskset -c "$SERVER_CPU" "$VOXLINE" run --config "$HERE/$toml") \
    >"$SERVER_RUNDIR/log" 2>&1 &
  SERVER_PID=$!
  if ! wait_sip "$port"; then
    log "voxline ($toml) does not answer SIP on 127.0.0.1:$port; log: $SERVER_RUNDIR/log"
    tail -5 "$SERVER_RUNDIR/log" >&2
    stop_server
    return 1
  fi
}

# start_responder PORT [--challenge REALM] : starts the generator's own stateless responder
# pinned to SERVER_CPU, the "server" that does no work beyond framing and replying (with
# --challenge, a canned 401 for REGISTERs without credentials): the ceiling of the core.
start_responder() {
  local port=$1
  shift
  SERVER_RUNDIR=$(mktemp -d "$LOG_DIR/responder.XXXXXX")
  setsid nice -n "$BENCH_NICE" taskset -c "$SERVER_CPU" "$LOADGEN" responder --listen "127.0.0.1:$port" \
    --duration 3600 "$@" >"$SERVER_RUNDIR/log" 2>&1 &
  SERVER_PID=$!
  if ! wait_sip "$port"; then
    log "responder did not start; log: $SERVER_RUNDIR/log"
    stop_server
    return 1
  fi
}

# stop_group PID : SIGTERM to the process group PID leads (started with setsid), SIGKILL
# after 5 s, then reaps it.
stop_group() {
  local pid=$1 i
  [ -n "$pid" ] || return 0
  kill -TERM -- "-$pid" 2>/dev/null || true
  for i in $(seq 1 50); do
    kill -0 -- "-$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

stop_server() {
  stop_group "$SERVER_PID"
  SERVER_PID=""
}

# server_pids : the server's main process and its children.
server_pids() {
  [ -n "$SERVER_PID" ] || return 0
  echo "$SERVER_PID"
  pgrep -P "$SERVER_PID" || true
}

# server_cpu_ticks : user + system CPU time (clock ticks) of the server's processes.
server_cpu_ticks() {
  local total=0 pid t
  for pid in $(server_pids); do
    t=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + ${t:-0}))
  done
  echo "$total"
}

# cpu_sampler_start WARMUP DURATION : in the background, after WARMUP seconds, measures
# the server's CPU ticks over DURATION seconds; cpu_sampler_wait waits for it and sets
# CPU_TICKS (not in a $(...) subshell: only this shell can wait for the sampler). One
# sampler at a time.
cpu_sampler_start() {
  CPU_SAMPLER_FILE=$(mktemp "$LOG_DIR/cpu.XXXXXX")
  (
    sleep "$1"
    a=$(server_cpu_ticks)
    sleep "$2"
    echo $(($(server_cpu_ticks) - a)) >"$CPU_SAMPLER_FILE"
  ) &
  CPU_SAMPLER_PID=$!
}

cpu_sampler_wait() {
  wait "$CPU_SAMPLER_PID" || true
  CPU_TICKS=$(cat "$CPU_SAMPLER_FILE")
}

# server_memory_kb pss|rss : summed over the server's processes.
server_memory_kb() {
  local field=Pss total=0 pid v
  [ "${1:-pss}" = rss ] && field=Rss
  for pid in $(server_pids); do
    v=$(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

# median of numbers on stdin
median() {
  sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) { print "n/a" } else if (NR % 2) { print a[(NR + 1) / 2] } else { print (a[NR / 2] + a[NR / 2 + 1]) / 2 } }'
}

trap 'stop_server' EXIT
