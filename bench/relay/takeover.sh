#!/usr/bin/env bash
# Relay takeover measurement (issue 7): a real redis-server with keyspace
# notifications, relay A (127.0.0.2) carrying SESSIONS sessions and relay B
# (127.0.0.3) following A through Redis, both `voxline-relaygen serve-relay
# --config` (the `[relay]` section of a Voxline config, as the `voxline`
# binary runs it). `voxline-relaygen takeover` sets the sessions up on A,
# waits until B holds them all, sends 172-byte RTP at 50 packets/s each way
# on every session, kills A with SIGKILL after BEFORE seconds and goes on for
# AFTER seconds; then queries (and deletes) every session through A's ng
# address, which B has taken over. One JSON line per run in $OUT.
#
# RELAY=voxline runs the relays as `voxline run --config` (relay-only nodes)
# instead of `voxline-relaygen serve-relay`.
#
# Usage: bench/relay/takeover.sh
# Env:   SESSIONS (1000), RUNS (3), HB_INTERVAL_MS (50), HB_TIMEOUT_MS (500),
#        BEFORE (3), AFTER (5), RELAY (relaygen | voxline), OUT
set -euo pipefail
cd "$(dirname "$0")/../.."

SESSIONS=${SESSIONS:-1000}
RUNS=${RUNS:-3}
HB_INTERVAL_MS=${HB_INTERVAL_MS:-50}
HB_TIMEOUT_MS=${HB_TIMEOUT_MS:-500}
BEFORE=${BEFORE:-3}
AFTER=${AFTER:-5}
OUT=${OUT:-bench/relay/results/takeover-$(date -u +%Y%m%dT%H%M%SZ).jsonl}
mkdir -p "$(dirname "$OUT")"
command -v redis-server >/dev/null || { echo "missing redis-server (Debian: redis-server)"; exit 1; }
RELAY=${RELAY:-relaygen}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/relay}
cargo build --release -p voxline-relaygen
GEN="$CARGO_TARGET_DIR/release/voxline-relaygen"
if [ "$RELAY" = voxline ]; then
  cargo build --release -p voxline
  VOXLINE="$CARGO_TARGET_DIR/release/voxline"
fi

TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no \
  --notify-keyspace-events AKE --dir "$TMP" >/dev/null &
PIDS+=($!)
for _ in $(seq 100); do redis-cli -p "$RPORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.05; done

config() { # name host port_min
  cat > "$TMP/$1.toml" <<TOML
[node]
name = "$1"
roles = ["relay"]
data_dir = "$TMP/$1-data"

[log]
format = "text"

[admin]
enabled = false

[relay]
ng_udp = "127.0.0.$2:0"
port_min = $3
port_max = $(($3 + 9999))
timeout_secs = 3600

[[relay.interfaces]]
name = "default"
address = "127.0.0.$2"

[relay.redis]
url = "redis://127.0.0.1:$RPORT/0"
relay_id = "$1"
heartbeat_interval_ms = $HB_INTERVAL_MS
heartbeat_timeout_ms = $HB_TIMEOUT_MS
TOML
}

start() { # name -> sets PID and NG
  if [ "$RELAY" = voxline ]; then
    # The node logs its bound ng address: "ng listener ready address=…".
    VOXLINE_LOG=${VOXLINE_LOG:-info} "$VOXLINE" run --config "$TMP/$1.toml" > "$TMP/$1.out" 2> "$TMP/$1.log" &
    PID=$!
    PIDS+=("$PID")
    for _ in $(seq 200); do grep -q 'ng listener ready' "$TMP/$1.log" 2>/dev/null && break; sleep 0.05; done
    NG=$(sed -n 's/.*ng listener ready address=\([0-9.:]*\).*/\1/p' "$TMP/$1.log" | head -1)
  else
    VOXLINE_LOG=${VOXLINE_LOG:-warn} "$GEN" serve-relay --config "$TMP/$1.toml" > "$TMP/$1.out" 2> "$TMP/$1.log" &
    PID=$!
    PIDS+=("$PID")
    for _ in $(seq 200); do grep -q '^ready ' "$TMP/$1.out" 2>/dev/null && break; sleep 0.05; done
    NG=$(sed -n 's/^ready //p' "$TMP/$1.out")
  fi
  [ -n "$NG" ] || { echo "$1 did not start"; cat "$TMP/$1.log"; exit 1; }
}

echo "# $(date -u) $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
config relay-a 2 20000
config relay-b 3 30000
for run in $(seq "$RUNS"); do
  redis-cli -p "$RPORT" flushall >/dev/null
  start relay-a; A_PID=$PID; A_NG=$NG
  start relay-b; B_PID=$PID; B_NG=$NG
  "$GEN" takeover --ng "$A_NG" --standby-ng "$B_NG" --kill-pid "$A_PID" \
    --sessions "$SESSIONS" --before-secs "$BEFORE" --after-secs "$AFTER" --run-id "run$run" \
    | python3 -c "import json,sys; r=json.loads(sys.stdin.read()); r.update(run=$run, relay=\"$RELAY\", heartbeat_interval_ms=$HB_INTERVAL_MS, heartbeat_timeout_ms=$HB_TIMEOUT_MS); print(json.dumps(r, sort_keys=True))" \
    | tee -a "$OUT"
  if [ -n "${SHOW_LOG:-}" ]; then cat "$TMP/relay-b.log" >&2; else grep -h "takeover complete" "$TMP/relay-b.log" | tail -1 | cut -c1-300 >&2 || true; fi
  kill "$B_PID" 2>/dev/null || true
  wait "$B_PID" 2>/dev/null || true
  wait "$A_PID" 2>/dev/null || true
done
echo "results: $OUT" >&2
