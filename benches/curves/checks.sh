#!/usr/bin/env bash
# Curve "checks" (issue 16): what the default policy costs with and without `auth`, and with
# `dnsbl` and `rspamd` added, against Postfix as a relay and Postfix with rspamd as its milter,
# in one run, for the same messages (loadgen send: the same MESSAGES/SESSIONS/SIZE per line)
# into the same counting sink. One rspamd serves both sides: Postfix reaches it through the
# proxy worker in milter mode (smtpd_milters, milter_default_action = tempfail), which hands
# each message to the normal worker, as the Debian package sets it up; exogate's rspamd check
# asks that normal worker's /checkv2 directly. rspamd's and exogate's DNS is the private Knot
# (benches/load/lib.sh: start_dns, start_rspamd), so nothing leaves the machine.
#
# Lines: pf (loadgen STARTTLS -> Postfix -> sink), pf+rspamd (the same with the milter), and
# exogate in queue mode with [policy.default] = the built-in list without auth, the built-in
# default as shipped (no [policy.default]: auth included), + dnsbl, + rspamd, + dnsbl + rspamd.
# For each: e2e msg/s, its ratio to pf and to pf+rspamd, p50/p99 latency (MAIL to final 2xx),
# CPU ms per message of the server under test (Postfix's processes, exited ones included, or
# exogate) and separately of rspamd (all its processes' CPU delta over the line), how many
# messages rspamd scanned (its controller's /stat), and the count check.
#
# Owns: its run folder (lib.sh), benches/curves/results/checks.{txt,dat}, checks-rate.png,
# checks-latency.png. Invariants: loopback only; every message acknowledged is counted once at
# the sink, or the line says FAILURE and the script exits 1; figures are measured, never
# written in. Never touches /etc (private Postfix, Knot and rspamd in the run folder).
#
# Usage: flock /work/wt/bench.lock benches/curves/checks.sh      (as root)
# Env:   MESSAGES=5000 SESSIONS=20 SIZE=10240   the load of every line
#        LINES="pf pf-rspamd gw-noauth gw-default gw-dnsbl gw-rspamd gw-dnsbl-rspamd"
#        RSPAMD_WORKERS=(the package's)   rspamd normal and proxy worker processes
#        RSPAMD_CACHE=$CARGO_TARGET_DIR/bench-cache/rspamd   compiled hyperscan kept across runs
#        OUT=benches/curves/results       where the table, .dat and PNGs go
#        and lib.sh's: SKIP_BUILD, EXOGATE_BIN, LOADGEN_BIN, BENCH_TMP, KEEP, DRAIN_TIMEOUT
set -euo pipefail

MESSAGES=${MESSAGES:-5000}
LINES=${LINES:-"pf pf-rspamd gw-noauth gw-default gw-dnsbl gw-rspamd gw-dnsbl-rspamd"}
# shellcheck source=benches/load/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../load/lib.sh"

OUT=${OUT:-$ROOT/benches/curves/results}
mkdir -p "$OUT"
TXT=$OUT/checks.txt
DAT=$OUT/checks.dat
COMMIT=$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo '?')
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

say "== exogate curve: checks (default policy, auth, dnsbl, rspamd) against Postfix and Postfix + rspamd milter =="
say "run:   $(date -u '+%Y-%m-%d %H:%M:%S UTC'), exogate $COMMIT, Postfix $(postconf -d -h mail_version 2>/dev/null || echo '?'), $(nproc) cores, load average $LOAD_START"
say "load:  $MESSAGES messages of $(wc -c <"$RUN/message.txt" | tr -d ' ') bytes, $SESSIONS sessions, loadgen STARTTLS, one counting sink ($RUN)"
start_dns
start_rspamd
say ""

# rspamd's first requests load its maps and warm Lua: a few before the timed lines, so no line
# pays for that alone.
for _ in $(seq 1 20); do
    curl -s -H "IP: $IP" -H "From: <$FROM>" -H "Rcpt: <$TO>" --data-binary @"$RUN/message.txt" \
        "$RSPAMD_URL/checkv2" >"$RUN/rspamd-warmup.json" || die "rspamd /checkv2 failed during the warm-up"
done
note "rspamd's verdict on the benchmark message: $(grep -o '"action":"[^"]*"' "$RUN/rspamd-warmup.json"), $(grep -o '"score":[-0-9.]*' "$RUN/rspamd-warmup.json" | head -n 1)"

rspamd_scanned() { curl -s "$RSPAMD_CONTROLLER/stat" | grep -o '"scanned":[0-9]*' | head -n 1 | cut -d: -f2; }

# shellcheck disable=SC2059
printf "$ROW" line path "e2e msg/s" "x(pf)" "acc msg/s" "x(pf)" "p50 ms" "p99 ms" "added p50/p99" "peak RSS" "count"

: >"$DAT.tmp"
PF_E2E="" PFR_E2E="" I=0
# measure NAME LABEL PATH PORT SID RSPAMD : one line under loadgen STARTTLS, with rspamd's CPU
# and scan count around it; appends its figures to the .dat. RSPAMD=1: rspamd must have scanned
# every message of the line (a check that failed open would pass messages unscanned and make the
# line look cheap), 0: none.
measure() {
    local name=$1 label=$2 path=$3 port=$4 sid=$5 want=$6 r0 s0 r1 s1 e2e p50 p99 delivered sent acked ok
    r0=$(cpu_of_session "$RSPAMD_SID")
    s0=$(rspamd_scanned)
    run_loadgen "$name" "$path" "$port" "$sid" --starttls --ca "$CA"
    r1=$(cpu_of_session "$RSPAMD_SID")
    s1=$(rspamd_scanned)
    read -r _ e2e _ p50 p99 _ delivered sent < <(tail -n 1 "$RESULTS")
    acked=$(json "$RUN/$name.json" acked)
    ok=1
    [ "$delivered" = "$sent" ] && [ "${acked:-0}" = "$sent" ] || ok=0
    if [ "$((s1 - s0))" != "$((want * sent))" ]; then
        note "$name: FAILURE: rspamd scanned $((s1 - s0)) messages, expected $((want * sent))"
        ok=0
        FAILED=1
    fi
    I=$((I + 1))
    printf '%s %s %s %s %s %s %s %s %s\n' "$I" "$label" "$e2e" "$p50" "$p99" "$CPU_MS" \
        "$(calc "($r1 - $r0) * 1000 / $CLK_TCK / $sent" 2)" "$((s1 - s0))" "$ok" >>"$DAT.tmp"
    note "$name: rspamd scanned $((s1 - s0)) messages and used $(calc "($r1 - $r0) / $CLK_TCK" 1) s of CPU during the line"
}

# The per-check time and errors exogate measured itself (its /metrics, saved by exogate_notes).
check_notes() {
    local m=$GW_DIR/metrics.txt
    note "exogate checks (mean ms per message, errors): $(awk -F'[{}" ]+' '
        /^exogate_check_duration_seconds_sum/ { sum[$3] = $NF }
        /^exogate_check_duration_seconds_count/ { n[$3] = $NF }
        /^exogate_check_errors_total/ { err[$3] = $NF }
        END { for (c in sum) if (n[c] > 0) printf "%s %.2f (%d)  ", c, sum[c] * 1000 / n[c], err[c] }' "$m")"
}

for line in $LINES; do
    case $line in
        pf | pf-rspamd)
            if [ "$line" = pf ]; then
                start_postfix pf
                measure pf Postfix "loadgen STARTTLS -> Postfix -> sink" "$PF_PORT" "$PF_SID" 0
                PF_E2E=$LAST_RATE
                # Every later line's x(pf) column is against this one.
                read -r _ B_RATE B_ACC _ < <(tail -n 1 "$RESULTS")
            else
                start_postfix pf-rspamd "smtpd_milters = inet:$IP:$RSPAMD_MILTER
milter_default_action = tempfail"
                measure pf-rspamd Postfix+rspamd "loadgen STARTTLS -> Postfix+rspamd milter -> sink" "$PF_PORT" "$PF_SID" 1
                PFR_E2E=$LAST_RATE
            fi
            postfix_tls_note "$PF_DIR"
            stop_session "$PF_SID"
            ;;
        gw-*)
            case $line in
                gw-noauth) POLICY_CHECKS="default -auth" label=exogate-noauth ;;
                gw-default) POLICY_CHECKS="" label=exogate-default ;;
                gw-dnsbl) POLICY_CHECKS="default dnsbl" label=exogate+dnsbl ;;
                gw-rspamd) POLICY_CHECKS="default rspamd" label=exogate+rspamd ;;
                gw-dnsbl-rspamd) POLICY_CHECKS="default dnsbl rspamd" label=exogate+dnsbl+rspamd ;;
                *) die "unknown line $line" ;;
            esac
            DNSBL=0 start_exogate "$line" queue
            measure "$line" "$label" "loadgen STARTTLS -> exogate (${POLICY_CHECKS:-default as shipped}) -> sink" "$GW_PORT" "$GW_SID" \
                "$([[ $POLICY_CHECKS == *rspamd* ]] && echo 1 || echo 0)"
            exogate_notes "$GW_DIR"
            check_notes
            stop_session "$GW_SID"
            ;;
        *) die "unknown line $line (LINES: pf pf-rspamd gw-noauth gw-default gw-dnsbl gw-rspamd gw-dnsbl-rspamd)" ;;
    esac
done
POLICY_CHECKS=""

# ---------------------------------------------------------------- the table, .dat and plots
ratio() { [ -n "$2" ] && [ "$2" -gt 0 ] && calc "$1 / $2" 2 || echo -; }
TROW='%-22s %9s %7s %9s %7s %7s %11s %11s %10s %8s %s\n'
{
    say "== checks: run $(date -u '+%Y-%m-%d %H:%M:%S UTC'), exogate $COMMIT, $MESSAGES messages x $SIZE bytes, $SESSIONS sessions, load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end =="
    # shellcheck disable=SC2059
    printf "$TROW" configuration "e2e msg/s" "x(pf)" "x(pf+rsp)" "p50 ms" "p99 ms" "server ms/m" "rspamd ms/m" "total ms/m" "scanned" count
    while read -r _ label e2e p50 p99 cpu rcpu scanned ok; do
        # shellcheck disable=SC2059
        printf "$TROW" "$label" "$e2e" "$(ratio "$e2e" "$PF_E2E")" "$(ratio "$e2e" "$PFR_E2E")" "$p50" "$p99" \
            "$cpu" "$rcpu" "$(calc "$cpu + $rcpu" 2)" "$scanned" "$([ "$ok" = 1 ] && echo ok || echo FAILURE)"
    done <"$DAT.tmp"
} >"$TXT"
say ""
cat "$TXT"
{
    echo "# checks curve, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), exogate $COMMIT, $MESSAGES messages x $SIZE bytes, $SESSIONS sessions, load average $LOAD_START at the start"
    echo "# index configuration e2e_msg_s p50_ms p99_ms server_cpu_ms_per_msg rspamd_cpu_ms_per_msg rspamd_scanned count_ok"
    cat "$DAT.tmp"
} >"$DAT"
rm -f "$DAT.tmp"
"$ROOT/benches/curves/plot.sh" "$OUT/checks-rate.png" \
    "Checks: throughput and CPU per message ($MESSAGES msgs, $SESSIONS sessions, one run)" \
    configuration "e2e msg/s" "$DAT" --xtic 2 --zero \
    "3:e2e msg/s" "6:server CPU ms/msg (right)" "7:rspamd CPU ms/msg (right)"
"$ROOT/benches/curves/plot.sh" "$OUT/checks-latency.png" \
    "Checks: latency MAIL to final 2xx ($MESSAGES msgs, $SESSIONS sessions, one run)" \
    configuration "ms" "$DAT" --xtic 2 --zero "4:p50" "5:p99"
say "written: $TXT $DAT $OUT/checks-rate.png $OUT/checks-latency.png"

stop_session "$SINK_SID"
say "total run time $(($(date +%s) - BENCH_START)) s; load average now $(cut -d" " -f1-3 /proc/loadavg)"
if [ "$FAILED" != 0 ]; then
    say "RESULT: FAILURE (messages lost or refused; see the lines marked FAILURE; logs in $RUN)"
    exit 1
fi
say "RESULT: ok (every message sent was counted once at the sink)"
