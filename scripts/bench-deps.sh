#!/usr/bin/env bash
# Installs wrk, the load generator of the ingest benchmark, when it is missing. Needs root and
# apt-get; otherwise says what is missing.
set -euo pipefail
command -v wrk >/dev/null && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing wrk (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null
  apt-get install -y -qq --no-install-recommends wrk </dev/null >/dev/null
else
  echo "make bench needs wrk: install the Debian package wrk" >&2
  exit 1
fi
