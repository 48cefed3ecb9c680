#!/usr/bin/env bash
# Resident memory per registered binding: start the registrar (pinned to SERVER_CPU),
# measure its idle memory, register N distinct users (default 1,000,000; users u%08d,
# Expires 7200, closed loop from the generator on LOADGEN_CPU), measure again and report
# (after - idle) / N, both as PSS (shared pages divided among the processes, the honest sum
# for Kamailio's forked workers sharing one shm pool) and as RSS summed over the processes.
#
# Usage: bench/sip/mem-per-binding.sh [--server kamailio|voxline|both] [--users N]
set -euo pipefail
# 1M contacts need well over 1 GB of Kamailio shared memory (1 GB runs out near 900,000);
# the pool is mmap'ed, so only the pages actually used count as resident.
KAMAILIO_SHM_MB=${KAMAILIO_SHM_MB:-4096}
source "$(dirname "$0")/lib.sh"

SERVERS=kamailio
USERS=1000000
while [ $# -gt 0 ]; do
  case $1 in
    --server) SERVERS=$2; shift 2 ;;
    --users) USERS=$2; shift 2 ;;
    *) log "unknown option $1"; exit 2 ;;
  esac
done
[ "$SERVERS" = both ] && SERVERS="kamailio voxline"
build_loadgen
log "logs: $LOG_DIR"

printf '%-9s %10s %12s %12s %12s %12s %14s %14s\n' server bindings "idle PSS kB" "full PSS kB" "idle RSS kB" "full RSS kB" "PSS B/binding" "RSS B/binding"
for server in $SERVERS; do
  case $server in
    kamailio) start_kamailio registrar.cfg "$KAMAILIO_PORT" || continue; port=$KAMAILIO_PORT ;;
    voxline) start_voxline voxline-registrar.toml "$VOXLINE_PORT" || { printf '%-9s %s\n' voxline "n/a (not runnable yet)"; continue; }; port=$VOXLINE_PORT ;;
  esac
  sleep 1
  idle_pss=$(server_memory_kb pss); idle_rss=$(server_memory_kb rss)
  json=$(loadgen register --target "127.0.0.1:$port" --users "$USERS" --count "$USERS" \
    --concurrency 1000 --expires 7200 --duration 900 --drain 10)
  echo "$json" >>"$LOG_DIR/results.jsonl"
  done_n=$(jq '.flows_completed + .completed_in_drain' <<<"$json")
  sleep 1
  full_pss=$(server_memory_kb pss); full_rss=$(server_memory_kb rss)
  stop_server
  if [ "$done_n" -ne "$USERS" ]; then
    log "$server: only $done_n of $USERS registrations got 200; result is per registered binding"
  fi
  printf '%-9s %10s %12s %12s %12s %12s %14s %14s\n' "$server" "$done_n" "$idle_pss" "$full_pss" "$idle_rss" "$full_rss" \
    "$(( (full_pss - idle_pss) * 1024 / done_n ))" "$(( (full_rss - idle_rss) * 1024 / done_n ))"
done
