#!/usr/bin/env bash
# Queue backlog curve (issue 16): exogate and Postfix each hold a backlog of N queued messages
# while the downstream refuses with a real 451 (the counting sink's defer file), then the
# downstream comes back and the backlog is flushed. For each N: memory with the backlog queued
# and idle, restart (ready to accept, backlog indexed), listing the queue, a qshape-like
# summary, CPU while idle, and the drain rate. Prints a table, writes backlog.dat and PNGs under
# benches/curves/results/ (benches/README.md explains the figures).
#
# Owns: its run folder (lib.sh: a fresh ext4 image, certificates, the sink, every process in its
# own session), the .dat/.png/.txt files it writes under $OUT. Invariants: every message a server
# acknowledged is counted exactly once at the sink once the backlog has drained, else the line
# says FAILURE and the run exits 1; figures are measured, nothing is hard-coded; exogate and its
# Postfix peer run one after the other in the same run, on the same sink and the same messages.
#
# Usage: flock /work/wt/bench.lock benches/curves/backlog.sh     (as root)
# Env:   POINTS="1 10000 50000 100000 200000"  backlog sizes, ascending: the backlog is topped up
#                                              from one to the next, then drained once from the last
#        SIDES="exogate postfix"               which servers run (same run preferred)
#        SIZE=2048 SESSIONS=20                 message size and parallel sessions of the fill
#        IDLE_SECONDS=20                       window over which idle CPU is measured
#        DRAIN_WINDOW=120 DRAIN_GRACE=3        longest drain measured; wait before stopping after it
#        FS_IMAGE_SIZE=12G                     the run's ext4 image (inodes for the queue files)
#        OUT=benches/curves/results            where backlog.dat, backlog.txt and PNGs go
#        EXOGATE_BIN / LOADGEN_BIN / SKIP_BUILD / KEEP / BENCH_TMP / DRAIN_TIMEOUT   as in lib.sh
set -euo pipefail

POINTS=${POINTS:-"1 10000 50000 100000 200000"}
SIDES=${SIDES:-"exogate postfix"}
IDLE_SECONDS=${IDLE_SECONDS:-20}
DRAIN_WINDOW=${DRAIN_WINDOW:-120}
DRAIN_GRACE=${DRAIN_GRACE:-3}
export SIZE=${SIZE:-2048}
export SESSIONS=${SESSIONS:-20}
export FS_IMAGE_SIZE=${FS_IMAGE_SIZE:-12G}
export DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-900}
export SINK_DEFER=1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$HERE/results}

# shellcheck source=benches/load/lib.sh
source "$HERE/../load/lib.sh"
mkdir -p "$OUT"

say "== exogate queue backlog curve =="
say "date:      $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
say "machine:   $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "versions:  exogate $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo '?') ($EXOGATE), Postfix $(postconf -d -h mail_version 2>/dev/null || echo '?')"
say "load:      backlogs of $POINTS messages of $(wc -c <"$RUN/message.txt" | tr -d ' ') bytes, $SESSIONS sessions (STARTTLS), downstream answering MAIL with 451 until the drain; state on $(df -T "$RUN" | awk 'NR == 2 { print $2 }')"
say ""

# Both servers keep a deferred message for an hour: nothing is retried during a measurement, so
# what the figures show is the cost of holding the backlog, not of retrying it.
PF_BACKOFF="minimal_backoff_time = 1h
maximal_backoff_time = 2h"
export GW_RETRY='["1h", "2h"]'

HDR='%-8s %7s %8s %8s %8s %8s %8s %8s %8s %8s  %s\n'
# shellcheck disable=SC2059
printf "$HDR" server N "RSS MB" "anon MB" "stop s" "ready s" "index s" "list s" "shape s" "idle %" "queue"
DAT=$OUT/backlog-$$.dat.tmp
: >"$DAT"

# Ticks of CPU used by session $1 over $2 seconds, as % of one core.
idle_cpu() {
    local c0 c1
    c0=$(cpu_of_session "$1")
    sleep "$2"
    c1=$(cpu_of_session "$1")
    calc "($c1 - $c0) * 100 / $CLK_TCK / $2" 2
}

# Waits until session $1 uses under 3% of a core for 2 s in a row (the fill's deferrals are
# done), at most 600 s. Prints how long it waited.
settle() {
    local t0 c
    t0=$(now)
    for _ in $(seq 1 300); do
        c=$(idle_cpu "$1" 2)
        [ "$(calc "($c < 3)" 0)" = 1 ] && break
    done
    calc "$(now) - $t0" 1
}

# Wall seconds of "$@" (output to $RUN/timed.out).
timed() {
    local t0
    t0=$(now)
    "$@" >"$RUN/timed.out" 2>&1 || say "  # $1 ${2:-} failed: $(tail -n 2 "$RUN/timed.out" | tr '\n' ' ')"
    calc "$(now) - $t0" 2
}

# Fills the server on port $1 with $2 messages; sets ACKED.
fill() {
    local port=$1 n=$2 name=$3
    ACKED=0
    [ "$n" -gt 0 ] || return 0
    "$LOADGEN" send --addr "$IP:$port" --messages "$n" --sessions "$SESSIONS" --size "$SIZE" \
        --from "$FROM" --to "$TO" --header "$INFO_HEADER" --header "$TENANT_HEADER" --pipelining \
        --starttls --ca "$CA" >"$RUN/$name.json" 2>"$RUN/$name.err" || true
    ACKED=$(json "$RUN/$name.json" acked)
    ACKED=${ACKED:-0}
    [ "$ACKED" = "$n" ] || say "  # $name: only $ACKED of $n acknowledged: $(head -n 2 "$RUN/$name.err" | tr '\n' ' ')"
}

# The drain, once, from the largest backlog: the downstream accepts again and "$@" asks the
# server to retry now. The sink's count is sampled every 0.5 s until everything is delivered or
# DRAIN_WINDOW seconds have passed; then the downstream refuses again and, after DRAIN_GRACE s
# (deliveries already past MAIL finish), the server is stopped by the caller. Sets DRAIN_RATE
# (delivered / seconds from the request to the sink's last delivery) and SEG (per point N of
# POINTS: the rate while the queue went from N down to the next smaller point).
drain() {
    local name=$1 queued=$2 before=$3 samples=$RUN/$1.drain t0 c got last
    shift 3
    rm -f "$DEFER_FILE"
    t0=$(now)
    "$@" >"$RUN/$name.flush" 2>&1 || say "  # flush failed: $(tail -n 2 "$RUN/$name.flush" | tr '\n' ' ')"
    echo "$t0 0" >"$samples"
    while :; do
        sleep 0.5
        c=$(($(sink_count) - before))
        echo "$(now) $c" >>"$samples"
        [ "$c" -ge "$queued" ] && break
        [ "$(calc "($(now) - $t0 > $DRAIN_WINDOW)" 0)" = 1 ] && break
    done
    touch "$DEFER_FILE"
    sleep "$DRAIN_GRACE"
    got=$(($(sink_count) - before))
    last=$(sink_last)
    DRAIN_GOT=$got
    DRAIN_RATE="-"
    [ "$got" -gt 0 ] && DRAIN_RATE=$(calc "$got / ($last - $t0)" 0)
    local points
    points=$(printf '%s\n' $POINTS | sort -n | tr '\n' ' ')
    # remaining = queued - delivered; a segment [N, next lower point) is timed from the first
    # sample at or under N (the request itself for the largest) to the first at or under the next.
    SEG=$(awk -v q="$queued" -v pts="$points" '
        { t[NR] = $1; r[NR] = q - $2 } END {
            n = split(pts, p, " ")
            for (i = n; i >= 1; i--) {
                if (p[i] > q) continue
                lo = (i > 1) ? p[i - 1] : 0
                a = 0; b = 0
                for (k = 1; k <= NR; k++) { if (!a && r[k] <= p[i]) a = k; if (!b && r[k] <= lo) b = k }
                if (!a) { printf "%s:- ", p[i]; continue }
                e = b ? b : NR
                d = r[a] - r[e]; dt = t[e] - t[a]
                printf "%s:%s ", p[i], (d > 0 && dt > 0) ? sprintf("%.0f", d / dt) : "-"
            }
        }' "$samples")
}

# The rate of segment N from SEG ("-" when the queue never held N during the drain).
seg_rate() { printf '%s\n' $SEG | awk -F: -v n="$1" '$1 == n { print $2; f = 1 } END { if (!f) print "-" }'; }

# Acknowledged = delivered + still queued after the stop, else FAILURE (lost or counted twice).
count_check() {
    local acked=$1 got=$2 left=$3
    if [ "$((got + left))" = "$acked" ]; then
        COUNT_OK="ok ($got delivered + $left still queued = $acked acknowledged)"
    else
        COUNT_OK="FAILURE: acknowledged $acked, sink counted $got, $left left in the queue"
        FAILED=1
    fi
}

metric() { curl -s "http://$IP:$GW_ADMIN/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

row() { # row SERVER N RSS ANON STOP READY INDEX LIST SHAPE IDLE DRAIN COUNT
    # shellcheck disable=SC2059
    printf "$HDR" "$@"
}

# One point of a side: fill up to N (the backlog grows from one point to the next), wait until
# the server is idle, restart it, then measure. The side's functions do the server-specific parts.
side_exogate() {
    start_dns >/dev/null
    touch "$DEFER_FILE"
    start_exogate backlog queue
    local cfg=$GW_DIR/gateway.toml n rss anon stop ready index list shape idle t0 want q
    local acked=0 max_index=10000 before
    before=$(sink_count)
    for n in $POINTS; do
        fill "$GW_PORT" $((n - acked)) "exogate-fill-$n"
        acked=$((acked + ACKED))
        settle "$GW_SID" >/dev/null
        # The restart: SIGTERM, then the same config again; ready = listening, indexed = the
        # queue gauge shows the backlog (the index holds at most delivery.max_in_memory).
        t0=$(now)
        stop_session "$GW_SID"
        stop=$(calc "$(now) - $t0" 2)
        t0=$(now)
        start_session "$GW_DIR/gateway-restart-$n.log" "$EXOGATE" run --config "$cfg"
        GW_SID=$LAST_SID
        wait_port "$GW_PORT" "exogate (restart)" "$GW_SID" "$GW_DIR/gateway-restart-$n.log"
        ready=$(calc "$(now) - $t0" 2)
        want=$((acked < max_index ? acked : max_index))
        for _ in $(seq 1 6000); do
            q=$(metric exogate_queue_messages)
            [ "${q:-0}" -ge "$want" ] && break
            sleep 0.05
        done
        index=$(calc "$(now) - $t0" 2)
        settle "$GW_SID" >/dev/null
        rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$GW_SID/status")
        anon=$(awk '/^RssAnon:/ { print $2 }' "/proc/$GW_SID/status")
        idle=$(idle_cpu "$GW_SID" "$IDLE_SECONDS")
        list=$(timed "$EXOGATE" queue list --config "$cfg")
        tail -n 1 "$RUN/timed.out" | grep -q "^$acked message(s)" ||
            say "  # queue list: $(tail -n 1 "$RUN/timed.out") (expected $acked)"
        shape=$(timed "$EXOGATE" queue summary --config "$cfg")
        row exogate "$n" "$((rss / 1024))" "$((anon / 1024))" "$stop" "$ready" "$index" "$list" "$shape" "$idle" "queue gauge ${q:-?}"
        echo "exogate $n $rss $anon $stop $ready $index $list $shape $idle" >>"$DAT"
    done
    drain exogate-drain "$acked" "$before" "$EXOGATE" queue flush --config "$cfg"
    exogate_notes "$GW_DIR"
    stop_session "$GW_SID"
    count_check "$acked" "$DRAIN_GOT" "$(find "$GW_DIR/state/queue/active" "$GW_DIR/state/queue/hold" -name '*.q' | wc -l)"
    say "exogate drain of $acked: $DRAIN_GOT delivered at $DRAIN_RATE msg/s; by queue size (N:msg/s) $SEG; $COUNT_OK"
    for n in $POINTS; do sed -i "s/^exogate $n .*/& $(seg_rate "$n")/" "$DAT"; done
}

pf_queued() { find "$PF_DIR/spool/maildrop" "$PF_DIR/spool/incoming" "$PF_DIR/spool/active" "$PF_DIR/spool/deferred" "$PF_DIR/spool/hold" -type f 2>/dev/null | wc -l; }

side_postfix() {
    touch "$DEFER_FILE"
    start_postfix backlog "$PF_BACKOFF"
    local n rss stop ready list shape idle t0 etc=$PF_DIR/etc acked=0 before
    before=$(sink_count)
    for n in $POINTS; do
        fill "$PF_PORT" $((n - acked)) "postfix-fill-$n"
        acked=$((acked + ACKED))
        # Every message attempted once and deferred: nothing left in incoming or active.
        for _ in $(seq 1 6000); do
            [ -z "$(find "$PF_DIR/spool/incoming" "$PF_DIR/spool/active" -type f -print -quit)" ] && break
            sleep 0.1
        done
        settle "$PF_SID" >/dev/null
        t0=$(now)
        stop_session "$PF_SID"
        stop=$(calc "$(now) - $t0" 2)
        t0=$(now)
        start_session "$PF_DIR/master-restart-$n.out" env MAIL_CONFIG="$etc" "$MASTER" -c "$etc" -d
        PF_SID=$LAST_SID
        wait_port "$PF_PORT" "Postfix (restart)" "$PF_SID" "$PF_DIR/maillog"
        ready=$(calc "$(now) - $t0" 2)
        settle "$PF_SID" >/dev/null
        rss=$(pss_of_session "$PF_SID")
        idle=$(idle_cpu "$PF_SID" "$IDLE_SECONDS")
        list=$(timed env MAIL_CONFIG="$etc" postqueue -c "$etc" -p)
        tail -n 1 "$RUN/timed.out" | grep -q "in $acked Request" ||
            say "  # postqueue -p: $(tail -n 1 "$RUN/timed.out") (expected $acked)"
        shape=$(timed qshape -c "$etc" incoming active deferred)
        row postfix "$n" "$((rss / 1024))" "-" "$stop" "$ready" "-" "$list" "$shape" "$idle" "queue files $(pf_queued)"
        echo "postfix $n $rss - $stop $ready - $list $shape $idle" >>"$DAT"
    done
    drain postfix-drain "$acked" "$before" env MAIL_CONFIG="$etc" postqueue -c "$etc" -f
    postfix_tls_note "$PF_DIR"
    stop_session "$PF_SID"
    count_check "$acked" "$DRAIN_GOT" "$(pf_queued)"
    say "postfix drain of $acked: $DRAIN_GOT delivered at $DRAIN_RATE msg/s; by queue size (N:msg/s) $SEG; $COUNT_OK"
    for n in $POINTS; do sed -i "s/^postfix $n .*/& $(seg_rate "$n")/" "$DAT"; done
}

for side in $SIDES; do
    "side_$side"
done
stop_session "$SINK_SID"

# Each side's figures go to backlog-<side>.dat (a side may come from its own locked run: the
# header of backlog-<side>.txt says which); backlog.dat puts both side by side per N.
for side in $SIDES; do
    grep "^$side " "$DAT" >"$OUT/backlog-$side.dat"
done
rm -f "$DAT"
{
    echo "# N exo_rss_kb exo_anon_kb exo_stop_s exo_ready_s exo_index_s exo_list_s exo_shape_s exo_idle_pct exo_drain_msg_s pf_pss_kb pf_stop_s pf_ready_s pf_list_s pf_shape_s pf_idle_pct pf_drain_msg_s"
    for n in $POINTS; do
        e=$(awk -v n="$n" '$2 == n { print $3, $4, $5, $6, $7, $8, $9, $10, $11 }' "$OUT/backlog-exogate.dat" 2>/dev/null || true)
        p=$(awk -v n="$n" '$2 == n { print $3, $5, $6, $8, $9, $10, $11 }' "$OUT/backlog-postfix.dat" 2>/dev/null || true)
        echo "$n ${e:-NaN NaN NaN NaN NaN NaN NaN NaN NaN} ${p:-NaN NaN NaN NaN NaN NaN NaN}" |
            awk '{ for (i = 1; i <= NF; i++) if ($i == "-") $i = "NaN"; print }'
    done
} >"$OUT/backlog.dat"
say ""
say "exogate against Postfix, per backlog N (from $OUT/backlog.dat):"
awk 'NR > 1 {
    printf "N=%-7s memory %6.1f MB (anon %5.1f) vs Postfix Pss %6.1f MB | restart ready %5.2f s, indexed %5.2f s vs %5.2f s | list %6.2f s vs postqueue -p %6.2f s | summary %6.2f s vs qshape %6.2f s | idle cpu %5.2f%% vs %5.2f%% | drain %5s vs %5s msg/s\n",
        $1, $2 / 1024, $3 / 1024, $11 / 1024, $5, $6, $13, $7, $14, $8, $15, $9, $16, $10, $17 }' "$OUT/backlog.dat"
P=$HERE/plot.sh
X="queued messages (N)"
"$P" "$OUT/backlog-rss.png" "Memory with N messages queued (idle)" "$X" "MB" "$OUT/backlog.dat" --logx \
    '($2/1024):exogate VmRSS' '($3/1024):exogate RssAnon' '($11/1024):Postfix summed Pss'
"$P" "$OUT/backlog-restart.png" "Restart with N messages queued" "$X" "seconds" "$OUT/backlog.dat" --logx \
    '5:exogate ready (listening)' '6:exogate backlog indexed' '13:Postfix ready (listening)'
"$P" "$OUT/backlog-list.png" "Listing the queue" "$X" "seconds" "$OUT/backlog.dat" --logx \
    '7:exogate queue list' '8:exogate queue summary' '14:postqueue -p' '15:qshape'
"$P" "$OUT/backlog-idle.png" "CPU while idle with N queued" "$X" "% of one core" "$OUT/backlog.dat" --logx \
    '9:exogate' '16:Postfix'
"$P" "$OUT/backlog-drain.png" "Drain rate once the downstream is back" "$X" "messages/s" "$OUT/backlog.dat" --logx \
    '10:exogate (queue flush)' '17:Postfix (postqueue -f)'

say ""
say "total run time $(($(date +%s) - BENCH_START)) s; sink total $(sink_count) deliveries, $(sink_deferred) MAIL refused with 451; load average now $(cut -d" " -f1-3 /proc/loadavg)"
say "data: $OUT/backlog.dat; plots: $OUT/backlog-{rss,restart,list,idle,drain}.png"
if [ "$FAILED" != 0 ]; then
    say "RESULT: FAILURE (messages lost or counted twice; logs in $RUN)"
    exit 1
fi
say "RESULT: ok (every message acknowledged was counted once at the sink)"
