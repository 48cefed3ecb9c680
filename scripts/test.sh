#!/usr/bin/env bash
# The project's test command (README): installs what the tests need on a
# fresh Debian machine, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real peers and servers the tests start on loopback ports.
need=()
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v kamailio >/dev/null 2>&1 || need+=(kamailio)
command -v rtpengine >/dev/null 2>&1 || need+=(rtpengine-daemon)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
command -v mariadbd >/dev/null 2>&1 || command -v mysqld >/dev/null 2>&1 || need+=(mariadb-server)
# `ip`: the relay's raw I/O test runs in a network namespace of its own.
command -v ip >/dev/null 2>&1 || need+=(iproute2)
if ((${#need[@]})); then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "installing: ${need[*]}"
  $sudo apt-get update -qq
  # Packaged services must not start on their own: tests start their own.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Distribution packages may have started services that hold the default
# ports; the tests use their own free ports, so this is only a courtesy.
export CARGO_TERM_COLOR=never
# Small CI disks: no incremental artefacts (the dev profile already leaves
# dependency debug info out, see Cargo.toml). Say how much room there is, so
# a full disk is recognised as such.
export CARGO_INCREMENTAL=0
df -h "${CARGO_TARGET_DIR:-target}" 2>/dev/null || df -h .
# As root the relay's raw I/O tests must run (they skip without CAP_NET_RAW).
if [ "$(id -u)" -eq 0 ]; then export VOXLINE_REQUIRE_RAW=1; fi
cargo test --workspace --no-fail-fast
