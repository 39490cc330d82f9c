#!/usr/bin/env bash
# Curve: concurrent STARTTLS sessions, exogate against Postfix (issue 16). For each point N, N
# sessions are opened the way Exchange Online opens them (connect, 220, EHLO, STARTTLS, EHLO) and
# held open, first to a fresh exogate, then to a fresh private Postfix; with them held it measures:
#   - memory per session: (summed Pss with the N sessions - before) / N, for exogate (one process)
#     and for Postfix (master, qmgr, ... and one smtpd per session), plus exogate's RssAnon delta;
#   - accept latency: PROBES new sessions opened one after another while the N are held:
#     connect -> 220 greeting and connect -> EHLO reply after STARTTLS (p50/p99);
#   - throughput: a fixed load (MESSAGES messages over SESSIONS STARTTLS sessions, loadgen send)
#     through the server while the N sessions stay open, counted at the sink.
# It prints a table, writes benches/curves/results/sessions.dat and three PNGs (plot.sh, log x).
#
# Owns: its run folder and every process it starts (benches/load/lib.sh); the files it writes
# under OUT. Invariants: a fresh server per point (VmHWM, allocator state and Postfix's process
# pool never carry over from the point before); every message of the fixed load is counted once
# at the sink, and a point where fewer sessions opened than asked, or a message was lost, is
# printed as FAILURE and the run exits 1. Loopback only; never touches /etc/postfix.
#
# Usage: flock /work/wt/bench.lock benches/curves/sessions.sh        (as root)
# Env:   POINTS="10 100 500 1000 2500 5000"   sessions held at each point
#        PF_POINTS=$POINTS                     points where Postfix runs too (it forks one smtpd
#                                              per session: leave out the large ones on a small box)
#        PROBES=50                             sessions opened one by one for the accept latency
#        MESSAGES=2000 SESSIONS=20 SIZE=10240  the fixed sending load at each point
#        OUT=benches/curves/results            where the .dat and PNGs go
#        and lib.sh's: SKIP_BUILD, KEEP, BENCH_TMP, EXOGATE_BIN, LOADGEN_BIN, DRAIN_TIMEOUT

MESSAGES=${MESSAGES:-2000}
SESSIONS=${SESSIONS:-20}
# shellcheck source=benches/load/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../load/lib.sh"

POINTS=${POINTS:-"10 100 500 1000 2500 5000"}
PF_POINTS=${PF_POINTS:-$POINTS}
PROBES=${PROBES:-50}
OUT=${OUT:-$ROOT/benches/curves/results}
mkdir -p "$OUT"
DAT=$OUT/sessions.dat

bench_header "sessions curve: concurrent STARTTLS sessions, exogate and Postfix"
say "load:      points N = $POINTS (Postfix: $PF_POINTS); $PROBES probe sessions one by one; fixed load $MESSAGES messages of $SIZE bytes over $SESSIONS STARTTLS sessions; state on $(df -T "$RUN" | awk 'NR == 2 { print $2 }')"
say ""
start_dns

# One session first, so TLS and the session machinery are initialised before the baseline.
warm_up() {
    "$LOADGEN" idle --addr "$IP:$1" --sessions 1 --ca "$CA" --hold-secs 0 >/dev/null 2>&1 </dev/null || true
    sleep 1
}

# probe NAME PORT : PROBES sessions opened one after another (then closed); sets PROBE_JSON.
probe() {
    PROBE_JSON=$RUN/$1.probe.json
    "$LOADGEN" idle --addr "$IP:$2" --sessions "$PROBES" --parallel 1 --ca "$CA" --hold-secs 0 \
        </dev/null 2>"$RUN/$1.probe.err" | grep '^{' >"$PROBE_JSON" || true
}

# point SYSTEM N PORT SID : the measures of one point against a started server; appends to $ROWS.
# Sets P_KB (Pss KB per session), P_ANON (RssAnon KB per session, exogate only), P_G50 P_G99
# P_R50 P_R99 (probe latencies, ms), P_OPEN_S (time to open the N), P_RATE (e2e msg/s of the
# fixed load), P_P99 (its p99 ms), P_OK.
point() {
    local sys=$1 n=$2 port=$3 sid=$4 pss0 pss1 anon0 anon1 line
    warm_up "$port"
    pss0=$(pss_of_session "$sid")
    anon0=$(mem_of_session "$sid" RssAnon)
    hold_sessions "$sys-hold-$n" "$port" "$n"
    sleep 2
    pss1=$(pss_of_session "$sid")
    anon1=$(mem_of_session "$sid" RssAnon)
    P_OK=1
    if [ "$HELD" != "$n" ]; then
        P_OK=0
        FAILED=1
        note "$sys N=$n: FAILURE: only $HELD of $n sessions opened: $(head -n 3 "$RUN/$sys-hold-$n.err" | tr '\n' ' ')"
    fi
    local held=$((HELD > 0 ? HELD : 1))
    P_KB=$(calc "($pss1 - $pss0) / $held" 1)
    P_ANON=$(calc "($anon1 - $anon0) / $held" 1)
    P_OPEN_S=$(json "$HELD_JSON" open_s)
    P_PROCS=$(pgrep -s "$sid" | wc -l)
    probe "$sys-$n" "$port"
    P_G50=$(json "$PROBE_JSON" greeting_p50_ms)
    P_G99=$(json "$PROBE_JSON" greeting_p99_ms)
    P_R50=$(json "$PROBE_JSON" ready_p50_ms)
    P_R99=$(json "$PROBE_JSON" ready_p99_ms)
    P_OPEN_S=${P_OPEN_S:-?} P_G50=${P_G50:-?} P_G99=${P_G99:-?} P_R50=${P_R50:-?} P_R99=${P_R99:-?}
    run_loadgen "$sys-$n" "loadgen STARTTLS -> $sys with $n sessions open" "$port" "$sid" \
        --starttls --ca "$CA" >>"$RUN/rows.txt"
    line=$(tail -n 1 "$RESULTS")
    read -r _ P_RATE _ _ P_P99 _ delivered sent <<<"$line"
    if [ "$delivered" != "$sent" ] || grep -q "^$sys-$n .*FAILURE" "$RUN/rows.txt"; then
        P_OK=0
        note "$sys N=$n: FAILURE: $(grep "^$sys-$n " "$RUN/rows.txt" | tail -n 1)"
    fi
    release_sessions
    P_TOTAL_MB=$((pss1 / 1024))
}

ROWFMT='%6s | %8s %8s %7s %15s %15s %8s %7s | %8s %8s %15s %15s %8s %7s %6s\n'
# shellcheck disable=SC2059
printf "$ROWFMT" "N" "exo KB/s" "anon KB" "open s" "220 p50/p99" "ready p50/p99" "msg/s" "p99 ms" \
    "pf KB/s" "open s" "220 p50/p99" "ready p50/p99" "msg/s" "p99 ms" "ok"
echo "# N exo_kb_per_session pf_kb_per_session exo_greet_p50 exo_greet_p99 exo_ready_p50 exo_ready_p99 pf_greet_p50 pf_greet_p99 pf_ready_p50 pf_ready_p99 exo_msgs pf_msgs exo_p99_ms pf_p99_ms exo_anon_kb_per_session exo_open_s pf_open_s" >"$DAT"
: >"$RUN/rows.txt"
for n in $POINTS; do
    start_exogate "s$n" queue
    point exogate "$n" "$GW_PORT" "$GW_SID"
    e=("$P_KB" "$P_ANON" "$P_OPEN_S" "$P_G50" "$P_G99" "$P_R50" "$P_R99" "$P_RATE" "$P_P99" "$P_OK")
    exogate_notes "$GW_DIR" >>"$RUN/notes.txt"
    stop_session "$GW_SID"
    p=("-" "-" "-" "-" "-" "-" "-" "-" 1)
    if [[ " $PF_POINTS " == *" $n "* ]]; then
        # One smtpd per session: the process limit must cover the held sessions, the probes and the load.
        start_postfix "s$n" "default_process_limit = $((n + PROBES + SESSIONS + 100))"
        point postfix "$n" "$PF_PORT" "$PF_SID"
        p=("$P_KB" "$P_OPEN_S" "$P_G50" "$P_G99" "$P_R50" "$P_R99" "$P_RATE" "$P_P99" "$P_OK")
        note "postfix N=$n: $P_PROCS processes with the sessions held, $P_TOTAL_MB MB summed Pss" >>"$RUN/notes.txt"
        stop_session "$PF_SID"
    fi
    ok=ok
    [ "${e[9]}" = 1 ] && [ "${p[8]}" = 1 ] || ok=FAILURE
    # shellcheck disable=SC2059
    printf "$ROWFMT" "$n" "${e[0]}" "${e[1]}" "${e[2]}" "${e[3]}/${e[4]}" "${e[5]}/${e[6]}" "${e[7]}" "${e[8]}" \
        "${p[0]}" "${p[1]}" "${p[2]}/${p[3]}" "${p[4]}/${p[5]}" "${p[6]}" "${p[7]}" "$ok"
    echo "$n ${e[0]} ${p[0]} ${e[3]} ${e[4]} ${e[5]} ${e[6]} ${p[2]} ${p[3]} ${p[4]} ${p[5]} ${e[7]} ${p[6]} ${e[8]} ${p[7]} ${e[1]} ${e[2]} ${p[1]}" |
        awk '{ for (i = 1; i <= NF; i++) if ($i == "-" || $i == "") $i = "?"; print }' >>"$DAT"
done
stop_session "$SINK_SID"

say ""
say "columns: KB/s = summed Pss (KB) added per held session; anon KB = exogate's RssAnon added per session;"
say "         open s = time to open the N sessions (64 at a time); 220 / ready = accept latency (ms) of $PROBES"
say "         sessions opened one by one with the N held: connect -> 220, connect -> EHLO reply after STARTTLS;"
say "         msg/s, p99 ms = the fixed load (e2e at the sink, loadgen's MAIL -> 250 p99) with the N held."
grep -v '^  #   ' "$RUN/notes.txt" 2>/dev/null | head -n 40 || true
# The figure that must not grow with N: memory per session at the largest point against the
# smallest point of 100 or more (below that the fixed costs dominate the division).
awk '!/^#/ && $1 >= 100 && $2 != "?" { if (!first) { first = $2; fn = $1 } last = $2; ln = $1 }
     END { if (first) printf "exogate memory per session: %.1f KB at N=%d, %.1f KB at N=%d (x%.2f)\n", first, fn, last, ln, last / first }' "$DAT"

plot=$ROOT/benches/curves/plot.sh
"$plot" "$OUT/sessions-rss.png" "Memory per held STARTTLS session" "sessions held (N)" "KB per session (summed Pss)" \
    "$DAT" --logx 2:exogate 3:Postfix 16:"exogate RssAnon"
"$plot" "$OUT/sessions-latency.png" "Accept latency with N sessions held (connect to EHLO after STARTTLS)" \
    "sessions held (N)" "ms" "$DAT" --logx 6:"exogate p50" 7:"exogate p99" 10:"Postfix p50" 11:"Postfix p99"
"$plot" "$OUT/sessions-throughput.png" "Throughput of a fixed load ($MESSAGES msgs, $SESSIONS sessions) with N sessions held" \
    "sessions held (N)" "messages/s (e2e)" "$DAT" --logx 12:exogate 13:Postfix
say "data: $DAT; plots: $OUT/sessions-rss.png $OUT/sessions-latency.png $OUT/sessions-throughput.png"
say "total run time $(($(date +%s) - BENCH_START)) s; load average now $(cut -d" " -f1-3 /proc/loadavg)"
if [ "$FAILED" != 0 ]; then
    say "RESULT: FAILURE (sessions refused or messages lost; see the lines marked FAILURE; logs in $RUN)"
    exit 1
fi
say "RESULT: ok (every session opened, every message sent was counted once at the sink)"
