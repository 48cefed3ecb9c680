#!/usr/bin/env bash
# Media-anchored calls (issue 5): Kamailio + rtpengine (userspace) and the Voxline
# all-in-one node (registrar + proxy + relay in one process), side by side in one run.
# Server side pinned to SERVER_CPU (default 0: Kamailio's processes AND rtpengine there),
# generators pinned to LOADGEN_CPU (default 1). Every run is bounded in time; loopback only.
#
#   calls    calls/s of zero-length calls with SDP (ng offer on the INVITE, answer on the
#            200, delete on the BYE), closed loop (CONCURRENCY outstanding, default 200),
#            fresh servers per run, medians of REPS (3) runs of DURATION (10) s after
#            WARMUP (2) s; per-core figure = calls per second of server CPU (Kamailio's
#            processes + rtpengine), as bench/sip/run.sh.
#   hold     for each N in HOLDS (default "500 1000 2000"): N calls established with SDP
#            (INVITE/200/ACK, no BYE) through fresh servers, then RTP (172 bytes, 50 pps
#            per direction per call) through the relay ports both parties received in SDP
#            for RTP_WARMUP (3) + RTP_DURATION (10) s from voxline-relaygen: loss and
#            server CPU in the window.
#   dialogs  memory per confirmed dialog without the relay: DIALOGS (50,000) calls held
#            (no SDP, no BYE) in Kamailio with its dialog module (no rtpengine) and in
#            Voxline with media off; (PSS after - PSS before) / dialogs, summed over
#            Kamailio's processes, right after the calls (transactions still alive) and
#            SETTLE (40) s later (transactions gone: Voxline keeps an accepted INVITE
#            transaction 32 s, Kamailio 5 s); RSS likewise. "Before" is taken after a
#            warm-up of 2,000 complete calls (memory any traffic touches once) and SETTLE s
#            more, once the warm-up's transactions ended.
#
# Usage: bench/calls/run.sh [--server kamailio|voxline|both] [--parts calls,hold,dialogs]
#                           [--reps N] [--duration S] [--holds "500 1000"] [--dialogs N]
# Environment: SKIP_BUILD=1, CARGO_TARGET_DIR, SERVER_CPU, LOADGEN_CPU, BENCH_NICE,
# CONCURRENCY, RTPENGINE_THREADS (rtpengine --num-threads, default 1), LOG_DIR,
# KAMAILIO_JOB (calls part: `same`, the default, tracks dialogs and writes a CDR per call
# as Voxline does, to Kamailio's log; `media` anchors media only).
set -euo pipefail
CALLS_DIR=$(cd "$(dirname "$0")" && pwd)
# Ports of their own (not bench/sip's 5070/5090): other benchmarks may run on the same
# machine, and a foreign server answering on the port would be measured instead.
# VOXLINE_PORT must match [[sip.listen]] of the voxline-*.toml files here.
KAMAILIO_PORT=${KAMAILIO_PORT:-5170}
VOXLINE_PORT=${VOXLINE_PORT:-5190}
source "$CALLS_DIR/../sip/lib.sh"

SERVERS=both
PARTS=calls,hold,dialogs
REPS=${REPS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONCURRENCY=${CONCURRENCY:-200}
HOLDS=${HOLDS:-500 1000 2000}
DIALOGS=${DIALOGS:-50000}
SETTLE=${SETTLE:-40}
RTP_WARMUP=${RTP_WARMUP:-3}
RTP_DURATION=${RTP_DURATION:-10}
RTPENGINE_THREADS=${RTPENGINE_THREADS:-1}
KAMAILIO_JOB=${KAMAILIO_JOB:-same}
while [ $# -gt 0 ]; do
  case $1 in
    --server) SERVERS=$2; shift 2 ;;
    --parts) PARTS=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --holds) HOLDS=$2; shift 2 ;;
    --dialogs) DIALOGS=$2; shift 2 ;;
    -h | --help) sed -n '2,29p' "$0"; exit 0 ;;
    *) log "unknown option $1"; exit 2 ;;
  esac
done
[ "$SERVERS" = both ] && SERVERS="kamailio voxline"

# Paths of the configs relative to bench/sip (lib.sh's start_* prefix them with it).
KCFG=../calls/kamailio-rtpengine.cfg
VMEDIA=../calls/voxline-media.toml
VDIALOGS=../calls/voxline-dialogs.toml
RTPENGINE_NG=127.0.0.1:22223
VOXLINE_ADMIN=127.0.0.1:18094
RELAY_PORT_MIN=10000
RELAY_PORT_MAX=31999
RELAYGEN=${RELAYGEN:-$TARGET_DIR/release/voxline-relaygen}
RESULTS="$LOG_DIR/results.jsonl"
RTPE_PID=""
RTPE_RUNDIR=""

# The server side is Kamailio's processes plus rtpengine (lib.sh's server_cpu_ticks and
# server_memory_kb sum over these).
server_pids() {
  if [ -n "$SERVER_PID" ]; then
    echo "$SERVER_PID"
    pgrep -P "$SERVER_PID" || true
  fi
  if [ -n "$RTPE_PID" ]; then echo "$RTPE_PID"; fi
  return 0
}

stop_all() {
  stop_server
  stop_group "$RTPE_PID"
  RTPE_PID=""
}
trap 'stop_all' EXIT

# ng_ping ADDR : waits (up to 10 s) for an ng pong.
ng_ping() {
  python3 - "$1" <<'PY'
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
end = time.time() + 10
while time.time() < end:
    s.sendto(b"bench d7:command4:pinge", (host, int(port)))
    try:
        if b"pong" in s.recv(256):
            sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit(1)
PY
}

start_rtpengine() {
  need rtpengine python3
  RTPE_RUNDIR=$(mktemp -d "$LOG_DIR/rtpengine.XXXXXX")
  setsid nice -n "$BENCH_NICE" taskset -c "$SERVER_CPU" rtpengine --config-file=none --foreground \
    --table=-1 --log-stderr --log-level=4 --delete-delay=0 --interface=127.0.0.1 \
    --listen-ng="$RTPENGINE_NG" --port-min="$RELAY_PORT_MIN" --port-max="$RELAY_PORT_MAX" \
    --num-threads="$RTPENGINE_THREADS" >"$RTPE_RUNDIR/log" 2>&1 &
  RTPE_PID=$!
  if ! ng_ping "$RTPENGINE_NG"; then
    log "rtpengine did not answer ng ping; log: $RTPE_RUNDIR/log"
    stop_all
    return 1
  fi
}

# start_media SERVER : the media-anchoring server side. Kamailio does the job Voxline's
# node does (KAMAILIO_JOB=same, the default): media on rtpengine, every call a dialog, a
# CDR per call attempt (to its log); KAMAILIO_JOB=media anchors media only.
start_media() {
  case $1 in
    kamailio)
      start_rtpengine || return 1
      local job=(-A WITH_MEDIA -A "RTPENGINE_SOCK=\"udp:$RTPENGINE_NG\"")
      if [ "$KAMAILIO_JOB" = same ]; then
        job+=(-A WITH_DIALOG -A WITH_CDR)
      fi
      start_kamailio "$KCFG" "$KAMAILIO_PORT" "${job[@]}" ;;
    voxline) start_voxline "$VMEDIA" "$VOXLINE_PORT" ;;
  esac
}
port_of() { if [ "$1" = voxline ]; then echo "$VOXLINE_PORT"; else echo "$KAMAILIO_PORT"; fi; }
# relay_pid SERVER : the process that relays the media.
relay_pid() { if [ "$1" = voxline ]; then echo "$SERVER_PID"; else echo "$RTPE_PID"; fi; }

build() {
  build_loadgen
  if [ -z "${SKIP_BUILD:-}" ]; then
    (cd "$ROOT" && cargo build --release -q -p voxline-relaygen) >&2
  fi
  [ -x "$RELAYGEN" ] || { log "relaygen binary not found at $RELAYGEN"; exit 2; }
}

# ---------------------------------------------------------------------------------------
# calls: closed-loop calls/s with SDP.

measure_calls() { # server rep
  local server=$1 rep=$2 json ticks
  cpu_sampler_start "$WARMUP" "$DURATION"
  json=$(loadgen call --users 10000 --callees 1000 --concurrency "$CONCURRENCY" --sdp \
    --target "127.0.0.1:$(port_of "$server")" --duration "$DURATION" --warmup "$WARMUP")
  cpu_sampler_wait
  ticks=$CPU_TICKS
  if [ "$server" = kamailio ] && [ "$KAMAILIO_JOB" = same ]; then
    log "kamailio CDRs written: $(grep -c 'log_write_cdr' "$SERVER_RUNDIR/log" || true) (calls completed in the window: $(jq '.flows_completed' <<<"$json"), the warm-up's too are recorded)"
  fi
  jq -c --arg s "$server" --argjson r "$rep" --argjson t "${ticks:-0}" \
    --argjson hz "$(getconf CLK_TCK)" --argjson d "$DURATION" \
    '. + {part: "calls", server: $s, rep: $r, server_cpu_pct: (100 * $t / $hz / $d)}
     | . + {per_server_cpu_s: (if .server_cpu_pct > 0 then .completed_per_s * 100 / .server_cpu_pct else 0 end)}' \
    <<<"$json" | tee -a "$RESULTS"
}

col() { # jq-expr server part
  jq -r --arg s "$2" --arg p "$3" "select(.server == \$s and .part == \$p) | $1" "$RESULTS" | median
}

part_calls() {
  local server rep
  for server in $SERVERS; do
    for rep in $(seq 1 "$REPS"); do
      start_media "$server" || { log "$server: could not start, skipped"; continue 2; }
      measure_calls "$server" "$rep" >&2
      stop_all
    done
  done
  echo
  echo "## calls: zero-length calls with SDP (offer/answer/delete per call), closed loop $CONCURRENCY outstanding"
  echo "window ${DURATION} s after ${WARMUP} s warm-up, fresh servers per run, medians of $REPS runs"
  printf '%-9s %9s %13s %8s %9s %7s %7s %9s %8s %8s %10s\n' server "calls/s" "min-max" retrans "fail+t/o" "p50 ms" "p99 ms" "uas-retr" "gen-cpu%" "srv-cpu%" "per-core/s"
  for s in $SERVERS; do
    if [ -z "$(jq -r --arg s "$s" 'select(.part == "calls" and .server == $s) | .server' "$RESULTS")" ]; then
      printf '%-9s %s\n' "$s" "n/a (not run)"
      continue
    fi
    local vals
    vals=$(jq -r --arg s "$s" 'select(.part == "calls" and .server == $s) | .completed_per_s | floor' "$RESULTS" | sort -g)
    printf '%-9s %9s %13s %8s %9s %7s %7s %9s %8s %8s %10s\n' "$s" \
      "$(col '.completed_per_s | floor' "$s" calls)" \
      "$(head -1 <<<"$vals")-$(tail -1 <<<"$vals")" \
      "$(col '.retransmissions' "$s" calls)" \
      "$(col '.flows_failed + .flows_timed_out' "$s" calls)" \
      "$(col '.latency_us.p50 / 1000' "$s" calls)" \
      "$(col '.latency_us.p99 / 1000' "$s" calls)" \
      "$(col '.uas_retransmissions' "$s" calls)" \
      "$(col '.generator_cpu_pct | floor' "$s" calls)" \
      "$(col '.server_cpu_pct | floor' "$s" calls)" \
      "$(col '.per_server_cpu_s | floor' "$s" calls)"
  done
  if [[ "$SERVERS" == *kamailio*voxline* ]]; then
    local k v kc vc
    k=$(col '.completed_per_s' kamailio calls); v=$(col '.completed_per_s' voxline calls)
    kc=$(col '.per_server_cpu_s' kamailio calls); vc=$(col '.per_server_cpu_s' voxline calls)
    if [ "$k" != n/a ] && [ "$v" != n/a ]; then
      echo "Kamailio's job: $([ "$KAMAILIO_JOB" = same ] && echo "media, dialogs, a CDR per call (Voxline: the same, CDRs in SQLite)" || echo "media only (Voxline also tracks dialogs and writes CDRs)")"
      echo "voxline / kamailio+rtpengine: $(awk -v v="$v" -v k="$k" 'BEGIN { printf "%.2f", v / k }')x calls/s;" \
        "per second of server CPU: $(awk -v v="$vc" -v k="$kc" 'BEGIN { printf "%.2f", v / k }')x (target >= 3x)"
    fi
  fi
}

# ---------------------------------------------------------------------------------------
# hold: N established calls with RTP both ways through the relay.

part_hold() {
  local server n ports json est ticks rtp
  for n in $HOLDS; do
    for server in $SERVERS; do
      start_media "$server" || { log "$server: could not start, skipped"; continue; }
      ports="$LOG_DIR/ports-$server-$n.txt"
      json=$(loadgen call --users "$n" --callees 1000 --concurrency 100 --sdp --hold \
        --count "$n" --duration 300 --drain 5 --media-ports "$ports" \
        --target "127.0.0.1:$(port_of "$server")")
      est=$(jq '.flows_completed + .completed_in_drain' <<<"$json")
      local pairs
      pairs=$(($(wc -l <"$ports") / 2))
      if awk -v lo="$RELAY_PORT_MIN" -v hi="$RELAY_PORT_MAX" '$1 < lo || $1 > hi { bad = 1 } END { exit !bad }' "$ports"; then
        log "$server: some SDP ports are outside the relay's range: media not anchored?"
      fi
      if [ "$pairs" -lt "$n" ]; then
        log "$server: only $pairs of $n calls established with media ($est completed)"
      fi
      sleep 1
      cpu_sampler_start "$RTP_WARMUP" "$RTP_DURATION"
      rtp=$(pinned "$LOADGEN_CPU" "$RELAYGEN" run --target "$server" --forwarder-ports "$ports" \
        --pid "$(relay_pid "$server")" --sessions "$pairs" --pps 50 \
        --warmup-secs "$RTP_WARMUP" --duration-secs "$RTP_DURATION" 2>>"$LOG_DIR/relaygen.log" || echo '{}')
      cpu_sampler_wait
      ticks=$CPU_TICKS
      jq -c --arg s "$server" --argjson n "$n" --argjson est "$est" --argjson pairs "$pairs" \
        --argjson t "${ticks:-0}" --argjson hz "$(getconf CLK_TCK)" --argjson d "$RTP_DURATION" \
        --argjson sip "$json" \
        '. + {part: "hold", server: $s, calls: $n, established: $est, with_media: $pairs,
              sip_retransmissions: $sip.retransmissions, sip_failed: ($sip.flows_failed + $sip.flows_timed_out),
              server_cpu_pct: (100 * $t / $hz / $d)}' <<<"$rtp" | tee -a "$RESULTS" >&2
      stop_all
    done
  done
  echo
  echo "## hold: established calls with RTP through the relay, 172-byte packets at 50 pps per direction per call"
  echo "RTP window ${RTP_DURATION} s after ${RTP_WARMUP} s warm-up; srv-cpu% = all server processes (kamailio + rtpengine), relay-cpu% = the relaying process"
  printf '%-9s %6s %6s %6s %9s %9s %9s %8s %9s %10s %6s %6s\n' server calls estab media "offer pps" "sent" received "loss %" "srv-cpu%" "relay-cpu%" late "drops"
  jq -r 'select(.part == "hold") | [.server, .calls, .established, .with_media, .offered_pps, .sent, .received, .loss_pct, (.server_cpu_pct * 10 | round / 10), .cpu_pct, .late_slices, (.kernel_rcvbuf_drops // 0)] | @tsv' "$RESULTS" \
    | while IFS=$'\t' read -r s c e m o se r l sc rc late d; do
      printf '%-9s %6s %6s %6s %9s %9s %9s %8s %9s %10s %6s %6s\n' "$s" "$c" "$e" "$m" "$o" "$se" "$r" "$l" "$sc" "$rc" "$late" "$d"
    done
}

# ---------------------------------------------------------------------------------------
# dialogs: memory per confirmed dialog, no relay.

active_dialogs() { # server
  case $1 in
    kamailio) kamcmd -s "unix:$LOG_DIR/kamailio.ctl" dlg.stats_active 2>/dev/null | awk '$1 == "all:" { print $2 }' ;;
    voxline) curl -s "http://$VOXLINE_ADMIN/metrics" | awk '/^voxline_dialogs\{.*confirmed/ { print int($2) }' ;;
  esac
}

part_dialogs() {
  local server json done_n idle_pss idle_rss pss1 rss1 pss2 rss2 active
  for server in $SERVERS; do
    case $server in
      kamailio) start_kamailio "$KCFG" "$KAMAILIO_PORT" -A WITH_DIALOG -A "CTL_SOCK=\"unix:$LOG_DIR/kamailio.ctl\"" || continue ;;
      voxline) start_voxline "$VDIALOGS" "$VOXLINE_PORT" || continue ;;
    esac
    # Warm-up: 2,000 complete calls (with BYE) first, so that memory touched once by any
    # traffic (worker pools, first pages of shared memory, allocator arenas) is in the
    # baseline and not charged to the dialogs.
    # The baseline is taken once the warm-up's transactions have ended (they linger up to
    # 32 s after the last response on UDP), or their memory would be charged to nobody.
    loadgen call --users 2000 --callees 1000 --concurrency 200 --count 2000 --duration 60 \
      --target "127.0.0.1:$(port_of "$server")" >/dev/null
    sleep "$SETTLE"
    idle_pss=$(server_memory_kb pss); idle_rss=$(server_memory_kb rss)
    json=$(loadgen call --users "$DIALOGS" --callees 1000 --concurrency 200 --hold \
      --count "$DIALOGS" --duration 600 --drain 10 --target "127.0.0.1:$(port_of "$server")")
    done_n=$(jq '.flows_completed + .completed_in_drain' <<<"$json")
    sleep 1
    pss1=$(server_memory_kb pss); rss1=$(server_memory_kb rss)
    sleep "$SETTLE"
    pss2=$(server_memory_kb pss); rss2=$(server_memory_kb rss)
    active=$(active_dialogs "$server" || true)
    stop_all
    [ "$done_n" -gt 0 ] || { log "$server: no call established"; continue; }
    jq -nc --arg s "$server" --argjson n "$done_n" --arg a "${active:-}" \
      --argjson ip "$idle_pss" --argjson ir "$idle_rss" --argjson p1 "$pss1" --argjson r1 "$rss1" \
      --argjson p2 "$pss2" --argjson r2 "$rss2" --argjson sip "$json" \
      '{part: "dialogs", server: $s, established: $n, active_dialogs: $a,
        sip_retransmissions: $sip.retransmissions, idle_pss_kb: $ip, idle_rss_kb: $ir,
        pss_kb: $p1, rss_kb: $r1, settled_pss_kb: $p2, settled_rss_kb: $r2,
        pss_b_per_dialog: (($p1 - $ip) * 1024 / $n | floor), rss_b_per_dialog: (($r1 - $ir) * 1024 / $n | floor),
        settled_pss_b_per_dialog: (($p2 - $ip) * 1024 / $n | floor), settled_rss_b_per_dialog: (($r2 - $ir) * 1024 / $n | floor)}' \
      | tee -a "$RESULTS" >&2
  done
  echo
  echo "## dialogs: memory per confirmed dialog without the relay ($DIALOGS calls held: INVITE/200/ACK, no SDP, no BYE)"
  echo "'+1 s': 1 s after the last ACK (INVITE transactions still alive); 'settled': $SETTLE s later"
  printf '%-9s %8s %8s %11s %11s %13s %11s %13s %11s %13s\n' server held "active" "base PSS kB" "PSS +1s kB" "PSS settled kB" "B/dlg +1s" "B/dlg settled" "RSS B/dlg" "RSS B/dlg set."
  jq -r 'select(.part == "dialogs") | [.server, .established, .active_dialogs, .idle_pss_kb, .pss_kb, .settled_pss_kb, .pss_b_per_dialog, .settled_pss_b_per_dialog, .rss_b_per_dialog, .settled_rss_b_per_dialog] | @tsv' "$RESULTS" \
    | while IFS=$'\t' read -r s n a ip p1 p2 b1 b2 r1 r2; do
      printf '%-9s %8s %8s %11s %11s %13s %11s %13s %11s %13s\n' "$s" "$n" "${a:--}" "$ip" "$p1" "$p2" "$b1" "$b2" "$r1" "$r2"
    done
}

# ---------------------------------------------------------------------------------------

build
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "logs and raw results: $LOG_DIR"
OUT="$LOG_DIR/tables.txt"
: >"$OUT"
: >"$RESULTS"
for part in ${PARTS//,/ }; do
  case $part in
    calls) part_calls >>"$OUT" ;;
    hold) part_hold >>"$OUT" ;;
    dialogs) part_dialogs >>"$OUT" ;;
    *) log "unknown part $part"; exit 2 ;;
  esac
done
{
  echo
  echo "servers: $SERVERS; server side on cpu $SERVER_CPU (kamailio: $KAMAILIO_CHILDREN workers, -m $KAMAILIO_SHM_MB;" \
    "rtpengine $(rtpengine --version 2>&1 | awk '{ print $2 }') userspace, --num-threads=$RTPENGINE_THREADS), generators on cpu $LOADGEN_CPU, nice $BENCH_NICE"
  echo "load average before/after: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg)"
} >>"$OUT"
cat "$OUT"
