#!/usr/bin/env bash
# Detection benchmark on real mail: rspamd alone and exogate, on the same bytes, offline.
#
#   benches/corpus/run.sh [rspamd|exogate|all]       (default: all)
#
# Corpora come from benches/corpus/fetch.sh (cache: ${CORPUS_CACHE:-$HOME/.cache/exogate-corpus}).
# Results go to $CACHE/results/<UTC timestamp>/ (one JSON line per message per engine/variant),
# and the summary (markdown, ready for benches/README.md) to stdout and results/.../summary.md.
#
# Environment:
#   CORPUS_GROUPS="easy_ham spam ..."  groups to run (default: every group present in the cache)
#   RSPAMD_IP=192.0.2.1          the connecting IP rspamd is told (SMTP facts unknown; see README)
#   RSPAMD_CONCURRENCY=4         requests in flight
#   EXOGATE=path/to/exogate      default: target/release/exogate (built with cargo if missing)
#   EXOGATE_BATCH=200            files per `exogate scan` process
#   RESULTS_DIR=DIR              write into DIR (e.g. to add groups to an earlier run)
#   RSPAMD_VARIANTS="default nohost nohost-nodate"  which rspamd-alone variants to run
#                                (nohost is the baseline benches/README.md compares with)
# Variants:
#   rspamd-default   rspamd's stock configuration, offline (DNS dead, rbl/asn off)
#   rspamd-nohost    the same, with the host-name filters off (Settings: hfilter group and
#                    RDNS_NONE/RDNS_DNSFAIL disabled): offline, every sender looks unresolvable
#   rspamd-nohost-nodate  nohost, and DATE_IN_PAST off: the corpus is from 2002 (and the
#                    synthetic set is dated at its --date), so every message looks old
#   exogate-detect        benches/corpus/gateway-detect.toml (default policy, detect mode)
#   exogate-detect-rspamd the same plus the rspamd check pointed at the local rspamd
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${CORPUS_CACHE:-$HOME/.cache/exogate-corpus}
WHAT=${1:-all}
RSPAMD_IP=${RSPAMD_IP:-192.0.2.1}
RSPAMD_CONCURRENCY=${RSPAMD_CONCURRENCY:-4}
EXOGATE_BATCH=${EXOGATE_BATCH:-200}
RSPAMD_VARIANTS=${RSPAMD_VARIANTS:-"default nohost nohost-nodate"}
NOHOST_SETTINGS='{"groups_disabled":["hfilter"],"symbols_disabled":["RDNS_NONE","RDNS_DNSFAIL","HFILTER_HOSTNAME_UNKNOWN"]}'
NODATE_SETTINGS='{"groups_disabled":["hfilter"],"symbols_disabled":["RDNS_NONE","RDNS_DNSFAIL","HFILTER_HOSTNAME_UNKNOWN","DATE_IN_PAST"]}'

say() { printf '%s\n' "$*" >&2; }
die() { say "run.sh: $*"; exit 1; }

# group name -> folder holding its .eml files
declare -A DIRS=(
    [easy_ham]="$CACHE/sa/easy_ham" [easy_ham_2]="$CACHE/sa/easy_ham_2" [hard_ham]="$CACHE/sa/hard_ham"
    [spam]="$CACHE/sa/spam" [spam_2]="$CACHE/sa/spam_2"
    [phish_real]="$CACHE/phish/real" [fraud_real]="$CACHE/phish/fraud"
    [phish_synth]="$CACHE/phish/synthetic"
)
ORDER="easy_ham easy_ham_2 hard_ham spam spam_2 phish_real fraud_real phish_synth"
GROUPS_RUN=${CORPUS_GROUPS:-}   # (bash reserves the name GROUPS)
if [ -z "$GROUPS_RUN" ]; then
    for g in $ORDER; do [ -d "${DIRS[$g]}" ] && GROUPS_RUN="$GROUPS_RUN $g"; done
fi
[ -n "${GROUPS_RUN// /}" ] || die "no corpus in $CACHE: run benches/corpus/fetch.sh first"
for g in $GROUPS_RUN; do [ -d "${DIRS[$g]:-/nonexistent}" ] || die "group $g: ${DIRS[$g]:-unknown group} missing (fetch.sh)"; done

OUT=${RESULTS_DIR:-"$CACHE/results/$(date -u +%Y%m%dT%H%M%SZ)"}   # RESULTS_DIR: add to an earlier run
mkdir -p "$OUT"
list_group() { find "${DIRS[$1]}" -name '*.eml' -type f | sort; }

free_port_pair() {   # two consecutive free loopback ports below the ephemeral range
    local p
    for _ in $(seq 1 50); do
        p=$(( 20000 + RANDOM % 12000 ))
        ss -ltnH "( sport = :$p or sport = :$((p + 1)) )" | grep -q . || { echo "$p"; return; }
    done
    die "no free port pair"
}

RIG=""
cleanup() { if [ -n "$RIG" ]; then "$HERE/lib/rspamd-rig.sh" stop "$RIG" || true; rm -rf "$RIG"; fi; }
trap cleanup EXIT

start_rspamd() {
    [ -n "$RIG" ] && return
    command -v rspamd >/dev/null || die "rspamd is not installed (apt-get install rspamd)"
    RIG=$(mktemp -d /tmp/exogate-corpus-rspamd.XXXXXX)
    RSPAMD_PORT=$(free_port_pair)
    say "starting rspamd on 127.0.0.1:$RSPAMD_PORT (first start compiles its hyperscan cache: ~15 s)"
    CORPUS_CACHE="$CACHE" "$HERE/lib/rspamd-rig.sh" start "$RIG" "$RSPAMD_PORT"
    rspamd --version 2>/dev/null | head -1 > "$OUT/rspamd.version"
}

run_rspamd() {
    start_rspamd
    local variant settings g
    for variant in $RSPAMD_VARIANTS; do
        case "$variant" in
            default) settings="" ;;
            nohost) settings=$NOHOST_SETTINGS ;;
            nohost-nodate) settings=$NODATE_SETTINGS ;;
            *) die "RSPAMD_VARIANTS: unknown variant $variant (default, nohost, nohost-nodate)" ;;
        esac
        mkdir -p "$OUT/rspamd-$variant"
        echo "ip=$RSPAMD_IP settings=$settings" > "$OUT/rspamd-$variant/params"
        for g in $GROUPS_RUN; do
            say "rspamd-$variant: $g"
            list_group "$g" | python3 "$HERE/lib/rspamd_scan.py" --url "http://127.0.0.1:$RSPAMD_PORT" \
                --ip "$RSPAMD_IP" --settings "$settings" --concurrency "$RSPAMD_CONCURRENCY" \
                --out "$OUT/rspamd-$variant/$g.jsonl"
        done
    done
}

exogate_bin() {
    local bin=${EXOGATE:-$ROOT/target/release/exogate}
    if [ ! -x "$bin" ]; then
        say "building $bin (cargo build --release)"
        (cd "$ROOT" && nice cargo build --release --quiet) || die "cargo build failed"
    fi
    if ! "$bin" scan --help >/dev/null 2>&1; then
        say "$bin has no 'scan' subcommand yet (issue 17): exogate not run"
        return 1
    fi
    echo "$bin"
}

run_exogate() {
    local bin; bin=$(exogate_bin) || return 0
    "$bin" --version > "$OUT/exogate.version" 2>/dev/null || true
    git -C "$ROOT" rev-parse --short HEAD >> "$OUT/exogate.version" 2>/dev/null || true
    local variant cfg g
    for variant in detect detect-rspamd; do
        cfg="$OUT/gateway-$variant.toml"
        if [ "$variant" = detect ]; then
            cp "$HERE/gateway-detect.toml" "$cfg"
        else
            start_rspamd
            sed "s|@RSPAMD_URL@|http://127.0.0.1:$RSPAMD_PORT|" "$HERE/gateway-detect-rspamd.toml" > "$cfg"
        fi
        mkdir -p "$OUT/exogate-$variant"
        for g in $GROUPS_RUN; do
            say "exogate-$variant: $g"
            local out="$OUT/exogate-$variant/$g.jsonl" t0 t1 n
            : > "$out"
            n=$(list_group "$g" | wc -l)
            t0=$(date +%s.%N)
            # exogate scan prints one JSON object per line per message; a non-zero exit with
            # lines printed still counts those lines (a message it could not scan carries "error")
            list_group "$g" | xargs -d '\n' -n "$EXOGATE_BATCH" \
                "$bin" scan --config "$cfg" --tenant contoso --direction inbound --json \
                >> "$out" 2>> "$OUT/exogate-$variant/$g.stderr" || true
            t1=$(date +%s.%N)
            echo "$(echo "$t1 - $t0" | bc) $n 1" > "$out.wall"
        done
    done
}

case "$WHAT" in
    rspamd) run_rspamd ;;
    exogate) run_exogate ;;
    all) run_rspamd; run_exogate ;;
    *) die "usage: run.sh [rspamd|exogate|all]" ;;
esac

python3 "$HERE/lib/summarize.py" "$OUT" | tee "$OUT/summary.md"
say "results: $OUT"
