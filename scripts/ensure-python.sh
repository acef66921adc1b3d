#!/usr/bin/env bash
# Checks that the Python given is 3.11+ and can create virtual environments; on Debian, as root,
# installs python3-venv when it is missing.
set -euo pipefail
python=${1:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "remediator needs Python 3.11 or newer; $python is $("$python" --version 2>&1)" >&2
  exit 1
fi
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq python3-venv </dev/null
  else
    echo "$python cannot create virtual environments: install python3-venv" >&2
    exit 1
  fi
fi
