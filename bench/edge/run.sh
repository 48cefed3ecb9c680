#!/usr/bin/env bash
# REGISTER/s with digest auth through one edge in front of three registrars
# sharing user location, on one machine: Kamailio (dispatcher edge + three
# registrars, usrloc in Redis through db_redis) beside Voxline (edge role +
# three registrar nodes, location in Redis), and Voxline with the memory
# backend (the cost of Redis). The same voxline-loadgen workload for all:
# REGISTER -> 401 -> REGISTER with credentials -> 200 (MD5), USERS users,
# closed loop. All servers and Redis are pinned to SERVER_CPU, the generator
# to LOADGEN_CPU (see bench/sip/lib.sh); every configuration starts fresh for
# every repetition. Prints a table of medians; raw JSON in $LOG_DIR/results.jsonl.
#
# Usage: bench/edge/run.sh [--server kamailio|voxline|voxline-memory|all]
#                          [--reps N] [--duration S] [--warmup S]
#                          [--users N] [--concurrency C]
# Needs: kamailio + kamailio-redis-modules, redis-server, python3, jq, taskset.
set -euo pipefail
source "$(dirname "$0")/../sip/lib.sh"
EDGE_DIR=$(cd "$(dirname "$0")" && pwd)

SERVERS=all
REPS=${REPS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
USERS=${USERS:-50000}
CONCURRENCY=${CONCURRENCY:-200}
KAMAILIO_CHILDREN=${EDGE_KAMAILIO_CHILDREN:-2}
PORT=${EDGE_PORT:-5080}
REDIS_PORT=${EDGE_REDIS_PORT:-6390}
EDGE_IP=127.0.0.1
REG_IPS=(127.0.0.2 127.0.0.3 127.0.0.4)
while [ $# -gt 0 ]; do
  case $1 in
    --server) SERVERS=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --users) USERS=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    *) log "unknown option $1"; exit 2 ;;
  esac
done
[ "$SERVERS" = all ] && SERVERS="kamailio voxline voxline-memory"
need kamailio redis-server redis-cli python3 jq taskset

PIDS=()
stop_all() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 -- "-$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  PIDS=()
}
trap stop_all EXIT

# bg NAME CMD... : starts a server pinned to SERVER_CPU in its own process group.
bg() {
  local name=$1
  shift
  setsid nice -n "$BENCH_NICE" taskset -c "$SERVER_CPU" "$@" >"$RUN/$name.log" 2>&1 &
  PIDS+=($!)
}

all_cpu_ticks() {
  local total=0 p c t
  for p in "${PIDS[@]}"; do
    for c in $(pgrep -g "$p" 2>/dev/null || true); do
      t=$(awk '{ print $14 + $15 }' "/proc/$c/stat" 2>/dev/null || echo 0)
      total=$((total + ${t:-0}))
    done
  done
  echo "$total"
}

start_redis() {
  bg redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" \
    --appendonly yes --appendfsync everysec --dir "$RUN"
  for _ in $(seq 1 50); do
    redis-cli -p "$REDIS_PORT" PING 2>/dev/null | grep -q PONG && return 0
    sleep 0.1
  done
  log "redis-server did not start"; return 1
}

wait_port() { # ip
  local i json
  for i in $(seq 1 30); do
    json=$("$LOADGEN" options --target "$1:$PORT" --count 1 --concurrency 1 \
      --t1-ms 100 --timeout-ms 400 --drain 1 --json 2>/dev/null || true)
    [ -n "$json" ] && [ "$(jq '.replies | length' <<<"$json")" -gt 0 ] && return 0
    sleep 0.5
  done
  log "nothing answers SIP on $1:$PORT"; return 1
}

start_kamailio_cluster() {
  redis-cli -p "$REDIS_PORT" HSET version:entry::location table_name location table_version 9 >/dev/null
  local i ds="$RUN/dispatcher.list"
  : >"$ds"
  for i in 0 1 2; do
    echo "1 sip:${REG_IPS[$i]}:$PORT 0 0" >>"$ds"
    bg "kamailio-reg$((i + 1))" kamailio -f "$EDGE_DIR/kamailio-registrar.cfg" -l "udp:${REG_IPS[$i]}:$PORT" \
      -n "$KAMAILIO_CHILDREN" -m "$KAMAILIO_SHM_MB" -M "$KAMAILIO_PKG_MB" -DD -E -Y "$RUN/k$i" -w "$RUN" -A "REDIS=\"redis://127.0.0.1:$REDIS_PORT/0\""
  done
  bg kamailio-edge kamailio -f "$EDGE_DIR/kamailio-edge.cfg" -l "udp:$EDGE_IP:$PORT" \
    -n "$KAMAILIO_CHILDREN" -m "$KAMAILIO_SHM_MB" -M "$KAMAILIO_PKG_MB" -DD -E -Y "$RUN/ke" -w "$RUN" -A "DSLIST=\"$ds\""
}

voxline_registrar_toml() { # name ip backend
  cat <<EOT
[node]
name = "$1"
roles = ["registrar"]
data_dir = "$RUN/$1"
threads = 1
[log]
level = "warn"
[sip]
domains = ["localhost"]
shards = 1
[[sip.listen]]
transport = "udp"
address = "$2:$PORT"
[sip.transport]
udp_workers = 1
[registrar]
authenticate = true
max_expires = 7200
[auth]
secret = "voxline-bench-cluster-secret"
algorithms = ["MD5", "SHA-256"]
db_url = "sqlite://$RUN/subscribers.db"
cache_ttl_secs = 300
cache_size = 200000
[location]
backend = "$3"
[admin]
enabled = false
EOT
}

voxline_edge_toml() {
  cat <<EOT
[node]
name = "edge"
roles = ["edge"]
data_dir = "$RUN/edge"
threads = 1
[log]
level = "warn"
[sip]
domains = []
shards = 1
[[sip.listen]]
transport = "udp"
address = "$EDGE_IP:$PORT"
[sip.transport]
udp_workers = 1
[edge]
set = "registrars"
failover_timeout_ms = 2000
keepalive_interval_secs = 0
[dispatcher]
probe_interval_ms = 2000
[[dispatcher.sets]]
name = "registrars"
algorithm = "hash-aor"
EOT
  local i
  for i in 0 1 2; do
    printf '[[dispatcher.sets.destinations]]\nuri = "sip:%s:%s"\nname = "reg%s"\n' "${REG_IPS[$i]}" "$PORT" "$((i + 1))"
  done
  printf '[admin]\nenabled = false\n'
}

start_voxline_cluster() { # backend
  local i
  for i in 0 1 2; do
    voxline_registrar_toml "reg$((i + 1))" "${REG_IPS[$i]}" "$1" >"$RUN/reg$((i + 1)).toml"
  done
  voxline_edge_toml >"$RUN/edge.toml"
  # Schema from the node's own migrations, then the users in one transaction.
  "$VOXLINE" subscriber add u00000000@localhost --password secret --config "$RUN/reg1.toml" >/dev/null
  python3 "$EDGE_DIR/provision.py" "$RUN/subscribers.db" "$USERS" >/dev/null
  for i in 1 2 3; do
    bg "voxline-reg$i" "$VOXLINE" run --config "$RUN/reg$i.toml"
  done
  bg voxline-edge "$VOXLINE" run --config "$RUN/edge.toml"
}

build_loadgen
[ -x "$VOXLINE" ] || { log "voxline binary not found at $VOXLINE"; exit 2; }
RESULTS="$LOG_DIR/results.jsonl"
: >"$RESULTS"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "logs and raw results: $LOG_DIR"

for server in $SERVERS; do
  for rep in $(seq 1 "$REPS"); do
    RUN=$(mktemp -d "$LOG_DIR/$server.XXXXXX")
    start_redis
    case $server in
      kamailio) start_kamailio_cluster ;;
      voxline) start_voxline_cluster "redis://127.0.0.1:$REDIS_PORT/0" ;;
      voxline-memory) start_voxline_cluster memory ;;
      *) log "unknown server $server"; exit 2 ;;
    esac
    ok=1
    for ip in "$EDGE_IP" "${REG_IPS[@]}"; do wait_port "$ip" || ok=0; done
    if [ $ok = 0 ]; then
      tail -5 "$RUN"/*.log >&2
      stop_all
      continue
    fi
    cpu_file="$RUN/cpu"
    (
      sleep "$WARMUP"
      a=$(all_cpu_ticks)
      sleep "$DURATION"
      echo $(($(all_cpu_ticks) - a)) >"$cpu_file"
    ) &
    sampler=$!
    json=$(loadgen register-auth --target "$EDGE_IP:$PORT" --users "$USERS" --expires 3600 \
      --password secret --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP")
    wait "$sampler" || true
    stored=""
    if [ "$server" != voxline-memory ]; then
      stored=$(redis-cli -p "$REDIS_PORT" DBSIZE | tr -d '[:space:]')
    fi
    jq -c --arg s "$server" --argjson r "$rep" --argjson t "$(cat "$cpu_file")" \
      --argjson hz "$(getconf CLK_TCK)" --argjson d "$DURATION" --arg k "$stored" \
      '. + {server: $s, rep: $r, servers_cpu_pct: (100 * $t / $hz / $d), redis_keys: $k}' <<<"$json" | tee -a "$RESULTS"
    stop_all
  done
done

col() { jq -r --arg s "$2" "select(.server == \$s) | $1" "$RESULTS" | median; }
echo
echo "REGISTER with MD5 digest auth through 1 edge + 3 registrars; $USERS users, closed loop $CONCURRENCY;"
echo "window ${DURATION} s after ${WARMUP} s warm-up; medians of $REPS runs; servers + Redis on cpu $SERVER_CPU, generator on cpu $LOADGEN_CPU"
echo "load average before/after: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-15s %10s %15s %10s %8s %8s %10s %12s\n' config "REG/s" "min-max" "fail+t/o" "p50 ms" "p99 ms" "srv-cpu%" "per-core/s"
for s in $SERVERS; do
  grep -q "\"server\":\"$s\"" "$RESULTS" || { printf '%-15s %s\n' "$s" "n/a"; continue; }
  v=$(jq -r --arg s "$s" 'select(.server == $s) | .completed_per_s | floor' "$RESULTS" | sort -g)
  printf '%-15s %10s %15s %10s %8s %8s %10s %12s\n' "$s" "$(col '.completed_per_s | floor' "$s")" \
    "$(head -1 <<<"$v")-$(tail -1 <<<"$v")" "$(col '.flows_failed + .flows_timed_out' "$s")" \
    "$(col '.latency_us.p50 / 1000' "$s")" "$(col '.latency_us.p99 / 1000' "$s")" \
    "$(col '.servers_cpu_pct | floor' "$s")" \
    "$(col 'if .servers_cpu_pct > 0 then (.completed_per_s * 100 / .servers_cpu_pct | floor) else 0 end' "$s")"
done
if grep -q '"server":"voxline"' "$RESULTS" && grep -q '"server":"voxline-memory"' "$RESULTS"; then
  r=$(col '.completed_per_s' voxline); m=$(col '.completed_per_s' voxline-memory)
  pc='if .servers_cpu_pct > 0 then .completed_per_s * 100 / .servers_cpu_pct else 0 end'
  rc=$(col "$pc" voxline); mc=$(col "$pc" voxline-memory)
  echo "Redis backend vs memory backend: $(awk -v r="$r" -v m="$m" 'BEGIN { printf "%.1f", 100 * (1 - r / m) }') % less throughput" \
    "($(awk -v r="$rc" -v m="$mc" 'BEGIN { printf "%.1f", 100 * (1 - r / m) }') % less per second of server CPU)"
fi
if grep -q '"server":"voxline"' "$RESULTS" && grep -q '"server":"kamailio"' "$RESULTS"; then
  v=$(col '.completed_per_s' voxline); k=$(col '.completed_per_s' kamailio)
  echo "voxline/kamailio (both with Redis): $(awk -v v="$v" -v k="$k" 'BEGIN { printf "%.2f", v / k }')x"
fi
