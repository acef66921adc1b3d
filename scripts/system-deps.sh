#!/usr/bin/env bash
# Installs the Debian packages the tests drive for real (Prometheus, Alertmanager, PostgreSQL)
# when they are missing. Needs root and apt-get; otherwise says what is missing. In CI the tests
# that need them fail, never skip, when a binary is absent.
set -euo pipefail
missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
command -v promtool >/dev/null || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null \
  || missing+=(prometheus-alertmanager)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
else
  echo "missing Debian packages: ${missing[*]} (run make test as root, or install them);" \
       "tests that need them will skip outside CI and fail in CI" >&2
fi
