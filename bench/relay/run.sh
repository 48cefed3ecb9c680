#!/usr/bin/env bash
# Side-by-side relay benchmark, all in one run on this machine:
#   Voxline relay (voxline-relaygen serve-relay, 1 worker), io = "sockets"
#   Voxline relay, io = "raw" (needs CAP_NET_RAW; skipped without it)
#   rtpengine in userspace mode (Debian rtpengine-daemon, --table=-1)
#   the trivial recvmmsg->sendmmsg forwarder (the ceiling), and its raw-socket
#   twin (the ceiling for io = "raw")
# Each system under test is pinned to CPU 0, the generator to CPU 1.
# For each target and each session count: N sessions (over ng, except for
# the forwarder), 172-byte RTP at 50 packets/s per direction per stream,
# warm-up then a measured window; then ng offer+answer pairs/s; then memory
# per session on fresh processes (MEM_SESSIONS sessions, default 4000).
# Output: JSON lines in $OUT (default bench/relay/results/<date>.jsonl).
#
# Usage: bench/relay/run.sh [SESSIONS...]     (default: 500 1000 2000 3000 4000)
# Env:   DURATION (s, default 10), WARMUP (s, default 3), NG_PAIRS (default 4000),
#        NG_RUNS (default 5), NG_PAUSE (s between ng runs, default 11),
#        MEM_SESSIONS (default 4000), SKIP_TRAFFIC=1 (only ng and memory), OUT
set -euo pipefail
cd "$(dirname "$0")/../.."

SESSIONS=("${@:-500 1000 2000 3000 4000}")
read -r -a SESSIONS <<< "${SESSIONS[*]}"
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
NG_PAIRS=${NG_PAIRS:-4000}
NG_RUNS=${NG_RUNS:-5}
NG_PAUSE=${NG_PAUSE:-11}
OUT=${OUT:-bench/relay/results/$(date -u +%Y%m%dT%H%M%SZ).jsonl}
mkdir -p "$(dirname "$OUT")"

for bin in taskset rtpengine; do
  command -v "$bin" >/dev/null || { echo "missing $bin (Debian: util-linux, rtpengine-daemon)"; exit 1; }
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/relay}
cargo build --release -p voxline-relaygen
GEN="$CARGO_TARGET_DIR/release/voxline-relaygen"

NG_VOX=127.0.0.1:42222
NG_RTPE=127.0.0.1:42223
NG_RAW=127.0.0.1:42224
# The raw-socket targets read every datagram to their port range on the host:
# their ranges stay below the ephemeral ports the generator's sockets use.
RAW_MIN=2000
RAW_MAX=19999
RAW_OK=$(python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)' 2>/dev/null && echo 1 || true)
[ -n "$RAW_OK" ] || echo "no CAP_NET_RAW: the raw-socket targets are skipped" >&2
FWD_PORTS=$(mktemp)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_ng() { # address
  for _ in $(seq 50); do
    if python3 - "$1" <<'PY' 2>/dev/null; then return 0; fi
import socket, sys
h, p = sys.argv[1].split(':')
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.2)
s.sendto(b'w d7:command4:pinge', (h, int(p)))
assert b'pong' in s.recv(100)
PY
    sleep 0.2
  done
  echo "no ng answer on $1"; exit 1
}

gen() { taskset -c 1 "$GEN" "$@" | tee -a "$OUT"; }

echo "# $(date -u) $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# --- Voxline relay
taskset -c 0 "$GEN" serve-relay --ng "$NG_VOX" --port-min 20000 --port-max 59999 --workers 1 >/dev/null 2>&1 &
PIDS+=($!); VOX=$!
wait_ng "$NG_VOX"
# --- rtpengine, userspace only, foreground
taskset -c 0 rtpengine --foreground --table=-1 --interface=127.0.0.1 --listen-ng="$NG_RTPE" \
  --port-min=20000 --port-max=59999 --log-level=3 --log-stderr --delete-delay=0 --timeout=3600 \
  >/dev/null 2>&1 &
PIDS+=($!); RTPE=$!
wait_ng "$NG_RTPE"
# --- Voxline relay with io = "raw"
if [ -n "$RAW_OK" ]; then
  taskset -c 0 "$GEN" serve-relay --ng "$NG_RAW" --port-min "$RAW_MIN" --port-max "$RAW_MAX" --workers 1 \
    --io raw >/dev/null 2>&1 &
  PIDS+=($!); VRAW=$!
  wait_ng "$NG_RAW"
fi

[ -n "${SKIP_TRAFFIC:-}" ] && SESSIONS=()
for n in "${SESSIONS[@]}"; do
  gen run --target voxline --ng "$NG_VOX" --pid "$VOX" --sessions "$n" \
    --warmup-secs "$WARMUP" --duration-secs "$DURATION" --run-id "vox-$n"
  gen run --target rtpengine --ng "$NG_RTPE" --pid "$RTPE" --sessions "$n" \
    --warmup-secs "$WARMUP" --duration-secs "$DURATION" --run-id "rtpe-$n"
  if [ -n "$RAW_OK" ]; then
    gen run --target voxline-raw --ng "$NG_RAW" --pid "$VRAW" --sessions "$n" \
      --warmup-secs "$WARMUP" --duration-secs "$DURATION" --run-id "raw-$n"
  fi
  rm -f "$FWD_PORTS"
  taskset -c 0 "$GEN" forwarder --sessions "$n" --ports-file "$FWD_PORTS" >/dev/null &
  FWD=$!; PIDS+=($FWD)
  for _ in $(seq 100); do [ -s "$FWD_PORTS" ] && break; sleep 0.1; done
  gen run --target forwarder --forwarder-ports "$FWD_PORTS" --pid "$FWD" --sessions "$n" \
    --warmup-secs "$WARMUP" --duration-secs "$DURATION"
  kill "$FWD" 2>/dev/null || true; wait "$FWD" 2>/dev/null || true
  if [ -n "$RAW_OK" ]; then
    rm -f "$FWD_PORTS"
    taskset -c 0 "$GEN" forwarder --sessions "$n" --ports-file "$FWD_PORTS" --raw-base "$RAW_MIN" >/dev/null &
    FWD=$!; PIDS+=($FWD)
    for _ in $(seq 100); do [ -s "$FWD_PORTS" ] && break; sleep 0.1; done
    gen run --target forwarder-raw --forwarder-ports "$FWD_PORTS" --pid "$FWD" --sessions "$n" \
      --warmup-secs "$WARMUP" --duration-secs "$DURATION"
    kill "$FWD" 2>/dev/null || true; wait "$FWD" 2>/dev/null || true
  fi
done

# ng setup rate on the long-running targets: NG_RUNS runs of NG_PAIRS pairs
# each, all deleted after each run, NG_PAUSE seconds apart (longer than the
# relay's 10 s port quarantine, so every run finds the whole port range; the
# open-files limit caps a run at ~4,500 live pairs). Median over the runs.
gen ngbench --target voxline --ng "$NG_VOX" --pid "$VOX" --pairs "$NG_PAIRS" \
  --runs "$NG_RUNS" --pause-secs "$NG_PAUSE" --run-id ngv
gen ngbench --target rtpengine --ng "$NG_RTPE" --pid "$RTPE" --pairs "$NG_PAIRS" \
  --runs "$NG_RUNS" --pause-secs "$NG_PAUSE" --run-id ngr
if [ -n "$RAW_OK" ]; then
  gen ngbench --target voxline-raw --ng "$NG_RAW" --pid "$VRAW" --pairs "$NG_PAIRS" \
    --runs "$NG_RUNS" --pause-secs "$NG_PAUSE" --run-id ngx
fi

# Memory per session: fresh processes, MEM_SESSIONS sessions, 1 pps, RSS
# read after the window (ng reply caches, 10 s, have expired by then).
cleanup; PIDS=(); sleep 1
taskset -c 0 "$GEN" serve-relay --ng "$NG_VOX" --port-min 20000 --port-max 59999 --workers 1 >/dev/null 2>&1 &
PIDS+=($!); VOX=$!
taskset -c 0 rtpengine --foreground --table=-1 --interface=127.0.0.1 --listen-ng="$NG_RTPE" \
  --port-min=20000 --port-max=59999 --log-level=3 --log-stderr --delete-delay=0 --timeout=3600 \
  >/dev/null 2>&1 &
PIDS+=($!); RTPE=$!
wait_ng "$NG_VOX"; wait_ng "$NG_RTPE"
MEM_TARGETS=(voxline rtpengine)
if [ -n "$RAW_OK" ]; then
  taskset -c 0 "$GEN" serve-relay --ng "$NG_RAW" --port-min "$RAW_MIN" --port-max "$RAW_MAX" --workers 1 \
    --io raw >/dev/null 2>&1 &
  PIDS+=($!); VRAW=$!
  wait_ng "$NG_RAW"
  MEM_TARGETS+=(voxline-raw)
fi
for t in "${MEM_TARGETS[@]}"; do
  case $t in
    voxline) ng=$NG_VOX; pid=$VOX ;;
    rtpengine) ng=$NG_RTPE; pid=$RTPE ;;
    voxline-raw) ng=$NG_RAW; pid=$VRAW ;;
  esac
  gen run --target "$t" --ng "$ng" --pid "$pid" --sessions "${MEM_SESSIONS:-4000}" --pps 1 \
    --warmup-secs 1 --duration-secs 12 --run-id "mem-$t" --memory-run
done

echo "results in $OUT" >&2
