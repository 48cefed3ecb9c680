#!/usr/bin/env bash
# Side-by-side SIP benchmark: the same workload from voxline-loadgen against Kamailio and/or
# Voxline, server pinned to one core (SERVER_CPU, default 0), generator to the other
# (LOADGEN_CPU, default 1), each measurement repeated REPS times (default 3) with a fresh
# server; prints a table of medians. Raw JSON lines are kept in $LOG_DIR/results.jsonl.
#
# Usage: bench/sip/run.sh <scenario> [--server kamailio|voxline|both] [--reps N]
#                         [--duration S] [--warmup S] [--rate R] [-- extra loadgen args]
# Scenarios:
#   options               OPTIONS -> 200, stateless (closed loop, 1000 outstanding)
#   register              REGISTER -> 200, 100,000 users, no auth
#   register-auth         REGISTER -> 401 -> REGISTER -> 200 (MD5), 100,000 users
#   register-auth-sha256  same with SHA-256
#   call                  zero-length calls through the stateful proxy (closed loop, 200
#                         outstanding, so no retransmission is needed when the proxy keeps up)
#   overload              calls offered open-loop at 2x the capacity measured just before
#                         (or at --rate R) for the window; shows completed calls/s and
#                         retransmissions
#   generator             the generator against its own batched responder (its ceiling)
# --server also takes `responder` (alone or in a quoted list, e.g. --server "kamailio
# voxline responder"): the generator's stateless responder on the server core, which frames
# and answers without doing the work (register-auth: a canned 401, credentials unchecked).
# It is the ceiling of one core for the workload, and the ratios to it are printed too.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SCENARIO=${1:-}
[ -n "$SCENARIO" ] || { sed -n '2,26p' "$0" >&2; exit 2; }
shift
SERVERS=kamailio
REPS=${REPS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
RATE=""
EXTRA=()
while [ $# -gt 0 ]; do
  case $1 in
    --server) SERVERS=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) log "unknown option $1"; exit 2 ;;
  esac
done
[ "$SERVERS" = both ] && SERVERS="kamailio voxline"

KDEF=()
case $SCENARIO in
  options)
    KCFG=options.cfg; VTOML=voxline-options.toml
    ARGS=(options --concurrency 1000) ;;
  register)
    KCFG=registrar.cfg; VTOML=voxline-registrar.toml
    ARGS=(register --users 100000 --expires 3600 --concurrency 1000) ;;
  register-auth)
    KCFG=registrar-auth.cfg; VTOML=voxline-registrar-auth.toml
    ARGS=(register-auth --users 100000 --expires 3600 --password secret --concurrency 1000) ;;
  register-auth-sha256)
    KCFG=registrar-auth.cfg; KDEF=(-A SHA256); VTOML=voxline-registrar-auth.toml
    ARGS=(register-auth --users 100000 --expires 3600 --password secret --algorithm sha256 --concurrency 1000) ;;
  call)
    KCFG=proxy.cfg; VTOML=voxline-proxy.toml
    ARGS=(call --users 10000 --callees 1000 --concurrency 200) ;;
  overload)
    # Voxline with its default overload control on (voxline-proxy-overload.toml).
    KCFG=proxy.cfg; VTOML=voxline-proxy-overload.toml
    ARGS=(call --users 10000 --callees 1000 --concurrency 200) ;;
  generator)
    ARGS=(options --concurrency 2000) ;;
  *) log "unknown scenario $SCENARIO"; exit 2 ;;
esac

build_loadgen
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
RESULTS="$LOG_DIR/results.jsonl"
log "logs and raw results: $LOG_DIR"

VDATA=""
if [[ "$SERVERS" == *voxline* && "$SCENARIO" == register-auth* ]]; then
  # Every generator user must exist with password "secret".
  VDATA=$(voxline_subscribers "$VTOML" 100000) || { log "subscriber import failed"; exit 1; }
fi

start() { # server
  case $1 in
    kamailio) start_kamailio "$KCFG" "$KAMAILIO_PORT" "${KDEF[@]}" ;;
    voxline) start_voxline "$VTOML" "$VOXLINE_PORT" "$VDATA" ;;
    responder)
      case $SCENARIO in
        register-auth) start_responder "$RESPONDER_PORT" --challenge localhost ;;
        options | register) start_responder "$RESPONDER_PORT" ;;
        *) log "responder: no stand-in for $SCENARIO"; return 1 ;;
      esac ;;
  esac
}
port_of() {
  case $1 in
    voxline) echo "$VOXLINE_PORT" ;;
    responder) echo "$RESPONDER_PORT" ;;
    *) echo "$KAMAILIO_PORT" ;;
  esac
}

# One measurement: prints the JSON line, tagged with server and rep, plus the CPU share
# the server got in the window (sampled from /proc while the generator runs): on a shared
# machine the server core is not always the server's alone, so throughput is also given
# per second of server CPU time ("per core").
measure() { # server rep args...
  local server=$1 rep=$2 json ticks
  shift 2
  cpu_sampler_start "$WARMUP" "$DURATION"
  json=$(loadgen "$@" --target "127.0.0.1:$(port_of "$server")" --duration "$DURATION" --warmup "$WARMUP" "${EXTRA[@]}")
  cpu_sampler_wait
  ticks=$CPU_TICKS
  json=$(jq -c --arg s "$server" --arg b "$SCENARIO" --argjson r "$rep" --argjson t "${ticks:-0}" \
    --argjson hz "$(getconf CLK_TCK)" --argjson d "$DURATION" \
    '. + {server: $s, rep: $r, bench: $b, server_cpu_pct: (100 * $t / $hz / $d)}
       | . + {per_server_cpu_s: (if .server_cpu_pct > 0 then .completed_per_s * 100 / .server_cpu_pct else 0 end)}' <<<"$json")
  echo "$json" >>"$RESULTS"
  echo "$json"
}

col() { # jq-expr server : median over reps of the expression
  jq -r --arg s "$2" "select(.server == \$s and .kind == \"$3\") | $1" "$RESULTS" | median
}

row() { # server kind
  local s=$1 k=$2
  printf '%-9s %12s %12s %12s %9s %9s %9s %9s %8s %8s %10s\n' "$s" \
    "$(col '.completed_per_s | floor' "$s" "$k")" \
    "$(jq -r --arg s "$s" --arg k "$k" 'select(.server == $s and .kind == $k) | .completed_per_s | floor' "$RESULTS" | sort -g | head -1)-$(jq -r --arg s "$s" --arg k "$k" 'select(.server == $s and .kind == $k) | .completed_per_s | floor' "$RESULTS" | sort -g | tail -1)" \
    "$(col '.retransmissions' "$s" "$k")" \
    "$(col '.flows_failed + .flows_timed_out' "$s" "$k")" \
    "$(col '.latency_us.p50 / 1000' "$s" "$k")" \
    "$(col '.latency_us.p99 / 1000' "$s" "$k")" \
    "$(col '.uas_retransmissions' "$s" "$k")" \
    "$(col '.generator_cpu_pct | floor' "$s" "$k")" \
    "$(col '.server_cpu_pct | floor' "$s" "$k")" \
    "$(col '.per_server_cpu_s | floor' "$s" "$k")"
}

header() {
  printf '%-9s %12s %12s %12s %9s %9s %9s %9s %8s %8s %10s\n' server "$1/s" "min-max" retrans "fail+t/o" "p50 ms" "p99 ms" "uas-retr" "gen-cpu%" "srv-cpu%" "per-core/s"
}

if [ "$SCENARIO" = generator ]; then
  SERVER_RUNDIR=$(mktemp -d "$LOG_DIR/responder.XXXXXX")
  for rep in $(seq 1 "$REPS"); do
    setsid nice -n "$BENCH_NICE" taskset -c "$SERVER_CPU" "$LOADGEN" responder --listen "127.0.0.1:$KAMAILIO_PORT" \
      --duration $((2 * (DURATION + WARMUP) + 30)) >"$SERVER_RUNDIR/log" 2>&1 &
    SERVER_PID=$!
    wait_sip "$KAMAILIO_PORT"
    measure responder "$rep" "${ARGS[@]}" | jq -c '. + {kind: "closed"}' >>"$RESULTS.k"
    measure responder "$rep" options --rate 50000 | jq -c '. + {kind: "rate50k"}' >>"$RESULTS.k"
    stop_server
  done
  mv "$RESULTS.k" "$RESULTS"
  echo "load average before/after: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "generator ceiling: voxline-loadgen vs its own responder (responder on cpu $SERVER_CPU, generator on cpu $LOADGEN_CPU), medians of $REPS"
  header flows
  echo "closed loop 2000 outstanding:"; row responder closed
  echo "open loop 50,000 OPTIONS/s offered:"; row responder rate50k
  exit 0
fi

: >"$RESULTS.k"
for server in $SERVERS; do
  for rep in $(seq 1 "$REPS"); do
    if ! start "$server"; then
      log "$server: skipped"
      continue 2
    fi
    if [ "$SCENARIO" = overload ]; then
      cap=$(measure "$server" "$rep" "${ARGS[@]}" | tee >(jq -c '. + {kind: "capacity"}' >>"$RESULTS.k") | jq '.completed_per_s | floor')
      offered=${RATE:-$((cap * 2))}
      log "$server rep $rep: capacity $cap calls/s, offering $offered calls/s"
      measure "$server" "$rep" call --users 10000 --callees 1000 --rate "$offered" --max-outstanding 400000 \
        | jq -c --argjson c "$cap" '. + {kind: "overload", capacity: $c}' >>"$RESULTS.k"
    else
      measure "$server" "$rep" "${ARGS[@]}" | jq -c '. + {kind: "main"}' >>"$RESULTS.k"
    fi
    stop_server
  done
done
mv "$RESULTS.k" "$RESULTS"

echo "scenario $SCENARIO: ${ARGS[*]} ${EXTRA[*]}; window ${DURATION} s after ${WARMUP} s warm-up; medians of $REPS runs"
echo "load average before/after: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg)"
echo "nice $BENCH_NICE; server on cpu $SERVER_CPU (kamailio: $KAMAILIO_CHILDREN workers, -m $KAMAILIO_SHM_MB), generator on cpu $LOADGEN_CPU"
if [ "$SCENARIO" = overload ]; then
  header calls
  for s in $SERVERS; do
    grep -q "\"server\":\"$s\"" "$RESULTS" || { printf '%-9s %s\n' "$s" "n/a (not run)"; continue; }
    echo "capacity (closed loop):"; row "$s" capacity
    echo "overload (open loop at $(col '.rate | floor' "$s" overload) calls/s offered):"; row "$s" overload
    # One decimal, cut not rounded: a repetition at 89.97 % reads 89.9 %, not 90 %.
    echo "  completed/capacity: $(jq -r --arg s "$s" 'select(.server == $s and .kind == "overload") | (1000 * .completed_per_s / .capacity | floor) / 10' "$RESULTS" | median) % (per repetition: $(jq -r --arg s "$s" 'select(.server == $s and .kind == "overload") | (1000 * .completed_per_s / .capacity | floor) / 10' "$RESULTS" | tr '\n' ' ' | sed 's/ $//'));" \
      "still open at the end (drain cut): $(col '.flows_unfinished' "$s" overload);" \
      "callee 2xx retransmissions: $(col '.uas_retransmissions' "$s" overload)"
  done
else
  header flows
  for s in $SERVERS; do
    if grep -q "\"server\":\"$s\"" "$RESULTS"; then row "$s" main; else printf '%-9s %s\n' "$s" "n/a (not run)"; fi
  done
  if [[ "$SERVERS" == *kamailio*voxline* ]] && grep -q '"server":"voxline"' "$RESULTS"; then
    k=$(col '.completed_per_s' kamailio main); v=$(col '.completed_per_s' voxline main)
    kc=$(col '.per_server_cpu_s' kamailio main); vc=$(col '.per_server_cpu_s' voxline main)
    echo "voxline/kamailio: $(awk -v v="$v" -v k="$k" 'BEGIN { printf "%.2f", v / k }')x (per second of server CPU: $(awk -v v="$vc" -v k="$kc" 'BEGIN { printf "%.2f", v / k }')x)"
  fi
  if grep -q '"server":"responder"' "$RESULTS"; then
    r=$(col '.completed_per_s' responder main)
    for s in kamailio voxline; do
      grep -q "\"server\":\"$s\"" "$RESULTS" || continue
      echo "responder/$s: $(awk -v r="$r" -v x="$(col '.completed_per_s' "$s" main)" 'BEGIN { printf "%.2f", r / x }')x (the ceiling of the core over the server)"
    done
  fi
fi
