#!/usr/bin/env bash
# Registration storm goodput: REGISTER (no auth, a new user per flow) offered open-loop at
# 1x to 10x the server's measured capacity; prints offered (achieved), served (200 OK per
# second = goodput), goodput as a share of capacity, 503s, timeouts and retransmissions.
# Server pinned to SERVER_CPU, generator to LOADGEN_CPU (THREADS event loops, each from its
# own source address 127.0.0.1, 127.0.0.2, ...). Every point runs against a fresh server.
#
# Usage: bench/sip/storm.sh [--server "voxline kamailio kamailio-pike"] [--multipliers "1 2 4 6 8 10"]
#                           [--duration S] [--threads N] [--timeout-ms MS]
#   voxline        voxline-registrar-storm.toml: overload control on (the default [overload])
#   kamailio       registrar.cfg: Kamailio's default behaviour (serve everything it reads)
#   kamailio-pike  registrar-pike.cfg: the same behind pike (per-source limits)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SERVERS="voxline kamailio kamailio-pike"
MULTS="1 2 4 6 8 10"
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-2}
THREADS=${THREADS:-8}
TIMEOUT_MS=${TIMEOUT_MS:-8000}
while [ $# -gt 0 ]; do
  case $1 in
    --server) SERVERS=$2; shift 2 ;;
    --multipliers) MULTS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --timeout-ms) TIMEOUT_MS=$2; shift 2 ;;
    *) log "unknown option $1"; exit 2 ;;
  esac
done
[ "$SERVERS" = all ] && SERVERS="voxline kamailio kamailio-pike"
build_loadgen
RESULTS="$LOG_DIR/results.jsonl"
log "logs and raw results: $LOG_DIR"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

start_for() { # server
  case $1 in
    kamailio) start_kamailio registrar.cfg "$KAMAILIO_PORT" ;;
    kamailio-pike) start_kamailio registrar-pike.cfg "$KAMAILIO_PORT" ;;
    voxline) start_voxline voxline-registrar-storm.toml "$VOXLINE_PORT" ;;
  esac
}
port_of() { [ "$1" = voxline ] && echo "$VOXLINE_PORT" || echo "$KAMAILIO_PORT"; }

# point SERVER KIND ARGS... : one generator run against the running server, tagged; adds
# the server's CPU share and peak RSS in the window.
point() {
  local server=$1 kind=$2 json cpu_file sampler ticks
  shift 2
  cpu_file=$(mktemp "$LOG_DIR/cpu.XXXXXX")
  (
    sleep "$WARMUP"
    a=$(server_cpu_ticks)
    peak=0
    for _ in $(seq 1 "$DURATION"); do
      sleep 1
      r=$(server_memory_kb rss)
      [ "$r" -gt "$peak" ] && peak=$r
    done
    echo "$(($(server_cpu_ticks) - a)) $peak" >"$cpu_file"
  ) &
  sampler=$!
  json=$(loadgen register --target "127.0.0.1:$(port_of "$server")" --users 1000000 --expires 3600 \
    --duration "$DURATION" --warmup "$WARMUP" --drain 2 "$@")
  wait "$sampler" || true
  read -r ticks peak <"$cpu_file" || true
  json=$(jq -c --arg s "$server" --arg k "$kind" --argjson t "${ticks:-0}" --argjson p "${peak:-0}" \
    --argjson hz "$(getconf CLK_TCK)" --argjson d "$DURATION" \
    '. + {server: $s, kind: $k, bench: "storm", server_cpu_pct: (100 * $t / $hz / $d), server_rss_kb: $p,
          offered_per_s: (.flows_started / .window_s)}' <<<"$json")
  echo "$json" >>"$RESULTS"
  echo "$json"
}

printf '%-14s %5s %10s %10s %10s %8s %9s %9s %9s %9s %9s %8s %8s\n' server load "offered/s" "served/s" "503/s" "goodput" "timeouts" "retrans" "p99 ms" "503p99ms" "srv-cpu%" "rss MB" "gen-cpu%"
for server in $SERVERS; do
  if ! start_for "$server"; then
    log "$server: skipped"
    continue
  fi
  cap=$(point "$server" capacity --concurrency 1000 | jq '.completed_per_s | floor')
  stop_server
  log "$server: capacity $cap REGISTER/s"
  printf '%-14s %5s %10s %10s %10s %8s %9s %9s %9s %9s %9s %8s %8s\n' "$server" "cap" "-" "$cap" "-" "100 %" "-" "-" "-" "-" "-" "-" "-"
  for m in $MULTS; do
    rate=$((cap * m))
    start_for "$server" || continue
    json=$(point "$server" "x$m" --rate "$rate" --threads "$THREADS" --source-per-thread \
      --timeout-ms "$TIMEOUT_MS" --max-outstanding $((rate * TIMEOUT_MS / 1000 + 10000)))
    stop_server
    jq -r --arg s "$server" --arg m "${m}x" --argjson c "$cap" \
      '[$s, $m, (.offered_per_s | floor), (.completed_per_s | floor),
        (((.replies["503"] // 0) / .window_s) | floor), ((100 * .completed_per_s / $c | floor | tostring) + " %"),
        .flows_timed_out, .retransmissions, (.latency_us.p99 / 1000), (.failed_latency_us.p99 / 1000),
        (.server_cpu_pct | floor), (.server_rss_kb / 1024 | floor), (.generator_cpu_pct | floor)]
       | @tsv' <<<"$json" | awk -F'\t' '{ printf "%-14s %5s %10s %10s %10s %8s %9s %9s %9.1f %9.1f %9s %8s %8s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 }'
  done
done
echo "window ${DURATION} s after ${WARMUP} s warm-up per point; generator: $THREADS threads (one source address each), transaction timeout ${TIMEOUT_MS} ms, T1 500 ms"
echo "load average before/after: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg)"
