#!/usr/bin/env bash
# Runs exogate's whole test suite on a Debian machine: first installs what the
# tests talk to when it is missing (Postfix as the downstream MTA, swaks and
# the Perl TLS modules it needs for STARTTLS, ClamAV's clamd, opendkim-tools,
# systemd-analyze, Knot DNS, PostgreSQL 15, rspamd, HAProxy, promtool, headless
# Chromium with chromedriver (the web page's browser test), and
# Python's pyspf, dkimpy, authheaders, dnspython, PyNaCl and prometheus_client),
# then builds and runs every test, reporting every failing test (--no-fail-fast).
# The tests start their own servers on loopback, so apt must not start the
# packages' daemons (Postfix on port 25, Knot, PostgreSQL, rspamd, Prometheus,
# freshclam ...): where the machine has no /usr/sbin/policy-rc.d of its own, one
# that denies every start is in place while apt installs, and removed after.
# postgresql's postinst still makes an unused "main" cluster, which is harmless.
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
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
perl -MNet::SSLeay -e1 2>/dev/null || missing+=(libnet-ssleay-perl)
perl -MIO::Socket::SSL -e1 2>/dev/null || missing+=(libio-socket-ssl-perl)
[ -x /usr/sbin/knotd ] || missing+=(knot)
command -v zip >/dev/null || missing+=(zip)
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql)
[ -x /usr/bin/rspamd ] || missing+=(rspamd)
[ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v promtool >/dev/null || missing+=(prometheus)
# tests/view_browser.rs checks the links the checks see against headless Chromium's parser.
command -v chromium >/dev/null || missing+=(chromium)
command -v openssl >/dev/null || missing+=(openssl)  # the remediation tests make an RSA app certificate
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)  # tests/web_browser.rs drives Chromium over WebDriver
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  as_root apt-get update -q
  policy=/usr/sbin/policy-rc.d added_policy=""
  if [ ! -e "$policy" ]; then
    added_policy=1
    trap 'as_root rm -f "$policy"' EXIT
    printf '#!/bin/sh\n# scripts/test.sh: no daemon starts while it installs packages\nexit 101\n' \
      | as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
  fi
  # Postfix asks no questions with this.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o DPkg::Lock::Timeout=300 "${missing[@]}"
  if [ -n "$added_policy" ]; then
    as_root rm -f "$policy"
    trap - EXIT
  fi
fi

py_missing=()
python3 -c 'import spf' 2>/dev/null || py_missing+=(pyspf)
python3 -c 'import dkim' 2>/dev/null || py_missing+=(dkimpy)
python3 -c 'import authheaders' 2>/dev/null || py_missing+=(authheaders)
# tests/support/auth_oracle.py imports authres itself (authheaders depends on it).
python3 -c 'import authres' 2>/dev/null || py_missing+=(authres)
python3 -c 'import dns.resolver' 2>/dev/null || py_missing+=(dnspython)
# dkimpy verifies ed25519-sha256 signatures only with PyNaCl (tests/support/auth_oracle.py).
python3 -c 'import nacl.signing' 2>/dev/null || py_missing+=(PyNaCl)
python3 -c 'import prometheus_client' 2>/dev/null || py_missing+=(prometheus_client)
if [ ${#py_missing[@]} -gt 0 ]; then
  echo "installing Python packages: ${py_missing[*]}"
  python3 -m pip install -q "${py_missing[@]}" 2>/dev/null \
    || python3 -m pip install -q --break-system-packages "${py_missing[@]}"
fi

cargo test --locked --all-targets --no-fail-fast
