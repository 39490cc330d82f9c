#!/usr/bin/env bash
# Checks deploy/compose.yaml and the HAProxy configuration it mounts with the
# real tools, without an engine or a registry (as root, it installs Debian's
# docker-compose and haproxy when missing):
#  - docker-compose 1.29 (Debian 12) `config -q`: the Compose schema it bundles
#    plus its own checks (services, volumes, secrets and networks referenced
#    exist, depends_on conditions). Its schema predates the top-level `name`,
#    so that one line is left out of the copy it reads;
#  - `haproxy -c` (HAProxy 2.6) on compose/haproxy/haproxy.cfg; the nodes'
#    names do not resolve outside the compose network, which it only warns about.
# The gateways' configuration is checked by `exogate check-config` in
# tests/deploy.rs.
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v haproxy >/dev/null || need+=(haproxy)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || { echo "compose-check: needs ${need[*]} (apt-get install as root)" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o DPkg::Lock::Timeout=600 "${need[@]}" >/dev/null
fi

copy=$(mktemp ./.compose-check.XXXXXX.yaml)
trap 'rm -f "$copy"' EXIT
grep -v '^name: ' compose.yaml >"$copy"
docker-compose --project-name exogate -f "$copy" config -q
echo "compose-check: docker-compose $(docker-compose version --short): compose.yaml is valid"

haproxy -c -f compose/haproxy/haproxy.cfg 2>&1 | grep -v -e NOTICE -e 'could not resolve address' -e 'Warnings were found'
echo "compose-check: $(haproxy -v | head -n 1 | cut -d' ' -f1-3): haproxy.cfg is valid"
