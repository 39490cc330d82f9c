#!/usr/bin/env bash
# Runs exogate's whole test suite on a Debian machine: first installs what the
# tests talk to when it is missing (Postfix as the downstream MTA, swaks,
# ClamAV's clamd, opendkim-tools, systemd-analyze, Python's dkimpy and
# prometheus_client), then builds and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
[ -x /usr/lib/postfix/sbin/master ] || missing+=(postfix)
command -v swaks >/dev/null || missing+=(swaks)
[ -x /usr/sbin/clamd ] || missing+=(clamav-daemon)
command -v opendkim-genkey >/dev/null || missing+=(opendkim-tools)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v python3 >/dev/null || missing+=(python3 python3-pip)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  as_root apt-get update -q
  # Postfix asks no questions with this; no daemon is started for the tests.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o DPkg::Lock::Timeout=300 "${missing[@]}"
fi

py_missing=()
python3 -c 'import dkim' 2>/dev/null || py_missing+=(dkimpy)
python3 -c 'import prometheus_client' 2>/dev/null || py_missing+=(prometheus_client)
if [ ${#py_missing[@]} -gt 0 ]; then
  echo "installing Python packages: ${py_missing[*]}"
  python3 -m pip install -q "${py_missing[@]}" 2>/dev/null \
    || python3 -m pip install -q --break-system-packages "${py_missing[@]}"
fi

cargo test --locked --all-targets
