#!/usr/bin/env bash
# Start or stop a private, offline rspamd on loopback for the corpus benchmark.
#
#   lib/rspamd-rig.sh start DIR PORT      # normal worker on 127.0.0.1:PORT, controller PORT+1
#   lib/rspamd-rig.sh stop DIR
#
# Offline as /work/shared/reference/components.md sets it up: DNS points at a closed loopback
# port (every lookup fails at once), the rbl and asn modules are off, no redis (so no Bayes,
# fuzzy storage, greylisting or neural). Nothing under /etc is edited: LOCAL_CONFDIR points
# rspamd's local.d/override.d includes at DIR/conf. The hyperscan cache lives in
# ${CORPUS_CACHE}/rspamd-db (or $RSPAMD_DBDIR) so that a second start takes about a second instead of ~15 s.
# The host-name filters are switched per request (the "nohost" variant sends a Settings header),
# so one daemon serves both variants.
set -euo pipefail

cmd=${1:?start|stop}; R=${2:?DIR}
CACHE=${CORPUS_CACHE:-$HOME/.cache/exogate-corpus}
DB=${RSPAMD_DBDIR:-$CACHE/rspamd-db}

case "$cmd" in
start)
    PORT=${3:?PORT}
    DNSPORT=${RSPAMD_DEAD_DNS_PORT:-9}   # discard port on loopback: nothing listens, lookups fail fast
    mkdir -p "$R/conf/local.d" "$R/run" "$R/log" "$DB"
    cat > "$R/conf/local.d/options.inc" <<OPT
dns { nameserver = ["127.0.0.1:$DNSPORT"]; timeout = 0.05s; retransmits = 1; }
OPT
    echo 'type = "file"; level = "warning";'            > "$R/conf/local.d/logging.inc"
    echo "bind_socket = \"127.0.0.1:$PORT\"; count = ${RSPAMD_WORKERS:-2};" > "$R/conf/local.d/worker-normal.inc"
    echo "bind_socket = \"127.0.0.1:$((PORT + 1))\";"   > "$R/conf/local.d/worker-controller.inc"
    echo 'enabled = false;'                              > "$R/conf/local.d/worker-proxy.inc"
    echo 'enabled = false;'                              > "$R/conf/local.d/worker-fuzzy.inc"
    echo 'enabled = false;'                              > "$R/conf/local.d/rbl.conf"
    echo 'enabled = false;'                              > "$R/conf/local.d/asn.conf"
    chown -R _rspamd:_rspamd "$R/run" "$R/log" "$DB"
    rspamd -f -u _rspamd -g _rspamd -c /etc/rspamd/rspamd.conf \
        --var LOCAL_CONFDIR="$R/conf" --var DBDIR="$DB" \
        --var RUNDIR="$R/run" --var LOGDIR="$R/log" > "$R/stdout.log" 2>&1 &
    echo $! > "$R/pid"
    for _ in $(seq 1 240); do
        curl -sf "http://127.0.0.1:$PORT/ping" >/dev/null 2>&1 && exit 0
        kill -0 "$(cat "$R/pid")" 2>/dev/null || { cat "$R/stdout.log" >&2; exit 1; }
        sleep 0.5
    done
    echo "rspamd did not answer on 127.0.0.1:$PORT within 120 s" >&2; exit 1 ;;
stop)
    [ -f "$R/pid" ] || exit 0
    pid=$(cat "$R/pid"); kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    rm -f "$R/pid" ;;
*) echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
