#!/usr/bin/env bash
# Instructions per flow, counted by callgrind: a measure of the user-space work a change
# removes or adds that machine noise does not move (throughput on a shared two-core VM
# spreads ±10 % from run to run; this count repeats within ~1 %).
#
#   bench/sip/instructions.sh [--flows N] [--rate R] BINARY...
#
# For each `voxline` BINARY: starts it under `valgrind --tool=callgrind` with
# voxline-registrar-auth.toml (1,000 subscribers imported), runs N MD5 flows (REGISTER
# -> 401 -> REGISTER -> 200, default 3,000) open loop at R flows/s (default 400, slow
# enough for the node under valgrind), and prints the instructions counted inside the UDP
# worker's batch handling (everything from the receive to the sends: framing,
# validation, the registrar, digest verification, the location store, replies) per flow.
# Kernel work is not counted, nor are cache effects; and at this rate a receive batch
# holds one or two datagrams, so per-batch work (system call set-up, ~16 allocations per
# flow) weighs more than at saturation, where 32 datagrams share it. Under valgrind SHA-256 runs its
# portable code instead of the SHA extensions (~20,000 instructions per flow of nonce
# and fake-HA1 MACs), which adds the same to every binary.
# Needs valgrind (Debian package `valgrind`) besides what run.sh needs.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

FLOWS=3000
RATE=400
BINS=()
while [ $# -gt 0 ]; do
  case $1 in
    --flows) FLOWS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    -*) log "unknown option $1"; exit 2 ;;
    *) BINS+=("$1"); shift ;;
  esac
done
[ ${#BINS[@]} -gt 0 ] || BINS=("$VOXLINE")
need valgrind callgrind_annotate jq
build_loadgen
TOML=voxline-registrar-auth.toml
log "logs: $LOG_DIR"

DATA=$(voxline_subscribers "$TOML" 1000) || { log "subscriber import failed"; exit 1; }

printf '%-40s %14s %14s\n' binary instructions per-flow
for bin in "${BINS[@]}"; do
  case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
  dir=$(mktemp -d "$LOG_DIR/callgrind.XXXXXX")
  cp -r "$DATA" "$dir/voxline-data"
  (cd "$dir" && exec setsid valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
    --toggle-collect='*Worker*batch*' "$bin" run --config "$HERE/$TOML") >"$dir/log" 2>&1 &
  SERVER_PID=$!
  # Under valgrind the node takes a few seconds to answer (wait_sip waits 15 s a time).
  for _ in 1 2 3 4; do
    wait_sip "$VOXLINE_PORT" && break
  done
  json=$("$LOADGEN" register-auth --target "127.0.0.1:$VOXLINE_PORT" --users 1000 --expires 3600 \
    --password secret --rate "$RATE" --count "$FLOWS" --duration 3600 --drain 5 --json 2>>"$LOG_DIR/loadgen.log")
  done_flows=$(jq '.flows_completed' <<<"$json")
  stop_server
  total=$(callgrind_annotate "$dir/callgrind.out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
  if [ "$done_flows" != "$FLOWS" ]; then
    log "$bin: $done_flows of $FLOWS flows completed; $(jq -c '{failed: .flows_failed, timed_out: .flows_timed_out, rtx: .retransmissions}' <<<"$json")"
  fi
  printf '%-40s %14s %14s\n' "$(basename "$bin")" "$total" "$((total / FLOWS))"
done
