#!/usr/bin/env bash
# Load benchmark: exogate against Postfix as a relay, same machine, same run,
# same load, same downstream (benches/load/README.md explains every line).
#
# Owns: a fresh temporary folder per run (kept on failure or with KEEP=1), and
# every process it starts (each in its own session, stopped by session id on
# exit). Invariants: loopback addresses only; every message sent is counted
# at the sink and a run whose count differs from what was acknowledged is a
# FAILURE (exit 1), whatever its speed. Never touches /etc/postfix or a
# system-wide MTA: the Postfix under test is a private instance in the run
# folder.
#
# Usage: benches/load/run.sh            (as root: Postfix's daemons drop privileges)
# Env:   MESSAGES=10000 SESSIONS=20 SIZE=10240 IDLE_SESSIONS=5000 BIG_SIZE=150000000
#        RATE_SECONDS=20 RATE=(half of (c)'s e2e rate) DRAIN_TIMEOUT=300 BENCH_TMP=/var/tmp KEEP=0 SKIP_BUILD=0
#        EXOGATE_BIN / LOADGEN_BIN   binaries to run instead of the release build under CARGO_TARGET_DIR
#        SCENARIOS="a b b2 c d rate idle big"
#        DNSBL=0|1              1: the default policy plus a dnsbl check on the private Knot's
#                               block list (nothing sent is listed)
#        STORE=1|0              0: exogate's event store unreachable (a PostgreSQL URL on a closed
#                               loopback port, write_queue 16): records are built and dropped
#                               unwritten; the extra scenario c-nostore does this for one line
# The default policy's auth check asks a private Knot DNS on loopback (started here) that serves
# the sender's SPF and DMARC: no query leaves the machine, and auth does its real work.

# shellcheck source=benches/load/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------- header
bench_header "exogate load benchmark"
say "load:      $MESSAGES messages of $(wc -c <"$RUN/message.txt" | tr -d ' ') bytes (SIZE=$SIZE), $SESSIONS parallel sessions, loopback, state on $(df -T "$RUN" | awk 'NR == 2 { print $2 }') ($RUN)"
say ""

# shellcheck disable=SC2059
printf "$ROW" scenario path "e2e msg/s" "x(b)" "acc msg/s" "x(b)" "p50 ms" "p99 ms" "added p50/p99" "peak RSS" "count"

# ---------------------------------------------------------------- scenarios
# Every scenario's exogate asks the private Knot (start_dns, defined above, so called here).
start_dns

has() { [[ " $SCENARIOS " == *" $1 "* ]]; }
RATE_C=""

if has a; then
    run_smtp_source "a" "smtp-source -> sink (plaintext)" "$SINK_PORT" ""
    run_loadgen "a-lg" "loadgen -> sink (plaintext)" "$SINK_PORT" ""
    run_loadgen "a-tls" "loadgen -> sink (STARTTLS)" "$SINK_PORT" "" --starttls --ca "$CA"
fi

if has b; then
    start_postfix b
    run_smtp_source "b" "smtp-source -> Postfix relay -> sink (TLS)" "$PF_PORT" "$PF_SID"
    postfix_tls_note "$PF_DIR"
    stop_session "$PF_SID"
    start_postfix b-lg
    run_loadgen "b-lg" "loadgen -> Postfix relay -> sink (TLS)" "$PF_PORT" "$PF_SID"
    stop_session "$PF_SID"
fi

if has b2; then
    start_postfix b2
    run_loadgen "b2" "loadgen STARTTLS -> Postfix relay -> sink (TLS)" "$PF_PORT" "$PF_SID" --starttls --ca "$CA"
    postfix_tls_note "$PF_DIR"
    stop_session "$PF_SID"
fi

# Optional: Postfix with its TLS connection reuse on (off by default in Postfix, so not in (b)).
if has b-reuse; then
    start_postfix b-reuse "smtp_tls_connection_reuse = yes"
    run_smtp_source "b-reuse" "smtp-source -> Postfix (TLS reuse on) -> sink (TLS)" "$PF_PORT" "$PF_SID"
    postfix_tls_note "$PF_DIR"
    stop_session "$PF_SID"
fi

# (c): exogate in queue mode under the loadgen. The extras run the same with one setting
# changed for their line only (a variable assigned before a function call holds only for the call).
run_c() {
    start_exogate "$1" queue
    run_loadgen "$1" "$2" "$GW_PORT" "$GW_SID" --starttls --ca "$CA"
    exogate_notes "$GW_DIR"
    stop_session "$GW_SID"
}

if has c; then
    run_c c "loadgen STARTTLS -> exogate queue -> sink (TLS)"
    RATE_C=$LAST_RATE
fi

# Optional: (c) with the store unreachable: what writing events costs.
if has c-nostore; then
    STORE=0 run_c c-nostore "loadgen STARTTLS -> exogate (store off) -> sink"
fi

# Optional: (c) with a dnsbl check added to the default policy.
if has c-dnsbl; then
    DNSBL=1 run_c c-dnsbl "loadgen STARTTLS -> exogate (+dnsbl) -> sink"
fi

if has d; then
    start_exogate d proxy
    run_loadgen "d" "loadgen STARTTLS -> exogate proxy -> sink (TLS)" "$GW_PORT" "$GW_SID" --starttls --ca "$CA"
    exogate_notes "$GW_DIR"
    stop_session "$GW_SID"
fi

if has rate && { [ -n "${RATE:-}" ] || { [ -n "$RATE_C" ] && [ "$RATE_C" -gt 1 ]; }; }; then
    half=${RATE:-$(calc "$RATE_C / 2" 0)}
    n=$((half * RATE_SECONDS))
    [ "$n" -gt "$MESSAGES" ] && n=$MESSAGES
    [ "$n" -lt 100 ] && n=100
    start_exogate rate queue
    saved=$MESSAGES
    MESSAGES=$n
    label="half of (c)"
    [ -n "${RATE:-}" ] && label="RATE"
    run_loadgen "c-half" "(c) paced at $half msg/s ($label), $n msgs" "$GW_PORT" "$GW_SID" --starttls --ca "$CA" --rate "$half"
    MESSAGES=$saved
    note "c-half: start lag p99 $(json "$RUN/c-half.json" lag_p99_ms) ms, max $(json "$RUN/c-half.json" lag_max_ms) ms (how late the pacing was); latency max $(json "$RUN/c-half.json" max_ms) ms"
    exogate_notes "$GW_DIR"
    stop_session "$GW_SID"
fi

say ""
if has idle; then
    start_exogate idle queue
    pid=$GW_SID
    # One session first, so TLS and the session machinery are initialised before the baseline.
    "$LOADGEN" idle --addr "$IP:$GW_PORT" --sessions 1 --ca "$CA" --hold-secs 0 >/dev/null 2>&1 </dev/null || true
    sleep 1
    before=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
    t0=$(now)
    hold_sessions idle "$GW_PORT" "$IDLE_SESSIONS"
    t1=$(now)
    opened=$HELD
    sleep 2
    with=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
    open_now=$(curl -s "http://$IP:$GW_ADMIN/metrics" | awk '/^exogate_sessions_open/ { print $2 }')
    release_sessions
    per=$( [ "$opened" -gt 0 ] && calc "($with - $before) / $opened" 1 || echo "-")
    say "idle:     $opened of $IDLE_SESSIONS idle TLS sessions open (exogate counts ${open_now:-?}) in $(calc "$t1 - $t0" 1) s; exogate RSS $((before / 1024)) MB before, $((with / 1024)) MB with them: $per KB per session"
    exogate_notes "$GW_DIR"
    if [ "$opened" != "$IDLE_SESSIONS" ]; then
        say "          FAILURE: only $opened sessions could be opened: $(head -n 3 "$RUN/idle.err" | tr '\n' ' ')"
        FAILED=1
    fi
    stop_session "$GW_SID"
fi

if has big; then
    start_exogate big queue
    base=$(awk '/^VmRSS:/ { print $2 }' "/proc/$GW_SID/status")
    run_big big "$GW_PORT" "$GW_SID" "$BIG_SIZE" 1
    say "big:      one $(calc "$BIG_BYTES / 1000000" 0) MB message (BDAT 1 MiB chunks): accepted in $(json "$RUN/big.json" elapsed_s) s ($(json "$RUN/big.json" reply)), at the sink after $BIG_E2E_S s; exogate RSS $((base / 1024)) MB at rest, peak (VmHWM) $((BIG_HWM / 1024)) MB = $(calc "$BIG_HWM * 1024 / $BIG_BYTES" 2)x the message size (anonymous memory peaked at $((BIG_ANON / 1024)) MB; the rest is mapped file pages)"
    if [ "$BIG_OK" != 1 ]; then
        say "          FAILURE: the sink counted $BIG_DELIVERED deliveries of it: $(head -n 3 "$RUN/big.err" | tr '\n' ' ')"
    fi
    exogate_notes "$GW_DIR"
    stop_session "$GW_SID"
fi

stop_session "$SINK_SID"
say ""
say "total run time $(($(date +%s) - BENCH_START)) s; sink total $(sink_count) deliveries; load average now $(cut -d" " -f1-3 /proc/loadavg)"
if [ "$FAILED" != 0 ]; then
    say "RESULT: FAILURE (messages lost or refused; see the lines marked FAILURE; logs in $RUN)"
    exit 1
fi
say "RESULT: ok (every message sent was counted once at the sink)"
