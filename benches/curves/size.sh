#!/usr/bin/env bash
# Curve: message size, exogate against Postfix (issue 16). For each size (10 KB to 150 MB) a
# fixed number of messages, each a multipart message with a base64 PDF attachment (loadgen big:
# STARTTLS, BDAT in 1 MiB chunks, one session, one message after the other), goes through a fresh
# exogate (queue mode, the default policy) and a fresh private Postfix relay into the counting
# sink. Per point it measures msg/s and MB/s (start to the sink's last delivery), exogate's peak
# RSS (VmHWM) and peak anonymous memory (RssAnon, sampled every 200 ms), the share of the accept
# time spent between the last byte and the verdict (the `scan_ms` of exogate's "message scanned"
# log line: reading the body back, admission, every check; summed over the point's messages,
# divided by the client's run time), and Postfix's msg/s, MB/s and peak summed Pss.
# It prints a table, writes benches/curves/results/size.dat and three PNGs (plot.sh, log x).
# With MODE=proxy exogate relays during the session instead of queueing (the files are then
# named size-proxy*): its memory is that of a message sent on from its spill file.
#
# Owns: its run folder and every process it starts (benches/load/lib.sh); the files it writes
# under OUT. Invariants: a fresh server per point (VmHWM never carries over); every message sent
# is counted once at the sink, else the point is printed as FAILURE and the run exits 1.
# Loopback only; never touches /etc/postfix.
#
# Usage: flock /work/wt/bench.lock benches/curves/size.sh            (as root)
# Env:   SIZES="10240 1048576 10485760 26214400 157286400"   bytes per message at each point
#        POINT_BYTES=200000000  bytes sent per point: count = POINT_BYTES / size, clamped to
#        MIN_COUNT=2 .. MAX_COUNT=100 (so every point takes a few seconds)
#        SYSTEMS="exogate postfix"
#        MODE=queue              exogate's [delivery] mode: queue or proxy
#        EXOGATE_BEFORE=PATH     also run this exogate binary (e.g. an older commit's build) at every
#                               point, in the same run: a note line under each row, columns 12-15
#        OUT=benches/curves/results            where the .dat and PNGs go
#        and lib.sh's: SKIP_BUILD, KEEP, BENCH_TMP, EXOGATE_BIN, LOADGEN_BIN, DRAIN_TIMEOUT

# shellcheck source=benches/load/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../load/lib.sh"

SIZES=${SIZES:-"10240 1048576 10485760 26214400 157286400"}
POINT_BYTES=${POINT_BYTES:-200000000}
MIN_COUNT=${MIN_COUNT:-2}
MAX_COUNT=${MAX_COUNT:-100}
SYSTEMS=${SYSTEMS:-"exogate postfix"}
MODE=${MODE:-queue}
OUT=${OUT:-$ROOT/benches/curves/results}
mkdir -p "$OUT"
TAG=""
[ "$MODE" = queue ] || TAG="-$MODE"
DAT=$OUT/size$TAG.dat

count_for() {
    local c=$((POINT_BYTES / $1))
    [ "$c" -lt "$MIN_COUNT" ] && c=$MIN_COUNT
    [ "$c" -gt "$MAX_COUNT" ] && c=$MAX_COUNT
    echo "$c"
}

bench_header "size curve: messages with a base64 attachment, 10 KB to 150 MB, exogate ($MODE mode) and Postfix"
say "load:      sizes $SIZES bytes; $POINT_BYTES bytes per point ($MIN_COUNT to $MAX_COUNT messages), one STARTTLS session, BDAT 1 MiB chunks; state on $(df -T "$RUN" | awk 'NR == 2 { print $2 }')"
say ""
start_dns

has_sys() { [[ " $SYSTEMS " == *" $1 "* ]]; }
mb() { calc "$1 / 1000000" "${2:-1}"; }

ROWFMT='%9s %5s | %7s %7s %8s %6s %8s %7s %6s | %7s %7s %8s | %6s %s\n'
# shellcheck disable=SC2059
printf "$ROWFMT" "size" "msgs" "msg/s" "MB/s" "HWM MB" "xsize" "anon MB" "rest MB" "scan%" "pf msg/s" "pf MB/s" "pf Pss" "MB/s x" "count"
echo "# size_bytes exo_msgs exo_MBs pf_msgs pf_MBs exo_hwm_MB exo_anon_MB pf_pss_MB msg_MB scan_share_pct exo_rest_MB [before: msgs MBs hwm_MB anon_MB]" >"$DAT"
i=0
for size in $SIZES; do
    i=$((i + 1))
    count=$(count_for "$size")
    e=("-" "-" "-" "-" "-" "-" "-") p=("-" "-" "-") b=()
    ok="ok"
    bytes=$size
    if has_sys exogate; then
        start_exogate "z$i" "$MODE"
        rest=$(mem_of_session "$GW_SID" VmRSS)
        run_big "exo-$i" "$GW_PORT" "$GW_SID" "$size" "$count"
        bytes=$BIG_BYTES
        rate=$(calc "$BIG_DELIVERED / $BIG_E2E_S" 2)
        # The time from the last byte to the verdict, as exogate logs it per message.
        scan_ms=$(grep 'message scanned' "$GW_DIR/gateway.log" | grep -o 'scan_ms=[0-9]*' | cut -d= -f2 | awk '{ s += $1 } END { print s + 0 }')
        e=("$rate" "$(calc "$rate * $bytes / 1000000" 1)" "$((BIG_HWM / 1024))" "$(calc "$BIG_HWM * 1024 / $bytes" 2)"
            "$((BIG_ANON / 1024))" "$((rest / 1024))" "$(calc "$scan_ms / ($BIG_CLIENT_S * 10)" 1)")
        [ "$BIG_OK" = 1 ] || ok="FAILURE: exogate acked $BIG_ACKED, sink counted $BIG_DELIVERED of $count: $(grep -o '"reply":"[^"]*"' "$RUN/exo-$i.json" || head -n 2 "$RUN/exo-$i.err" | tr '\n' ' ')"
        exogate_notes "$GW_DIR" | sed "s/^  # /  # $(mb "$size" 2) MB: /" >>"$RUN/notes.txt"
        stop_session "$GW_SID"
    fi
    if [ -n "${EXOGATE_BEFORE:-}" ]; then
        EXOGATE=$EXOGATE_BEFORE start_exogate "zb$i" "$MODE"
        run_big "exo-before-$i" "$GW_PORT" "$GW_SID" "$size" "$count"
        rate=$(calc "$BIG_DELIVERED / $BIG_E2E_S" 2)
        scan_ms=$(grep 'message scanned' "$GW_DIR/gateway.log" | grep -o 'scan_ms=[0-9]*' | cut -d= -f2 | awk '{ s += $1 } END { print s + 0 }')
        b=("$rate" "$(calc "$rate * $BIG_BYTES / 1000000" 1)" "$((BIG_HWM / 1024))" "$((BIG_ANON / 1024))")
        before_note="before ($EXOGATE_BEFORE): ${b[0]} msg/s, ${b[1]} MB/s, peak RSS ${b[2]} MB = $(calc "$BIG_HWM * 1024 / $BIG_BYTES" 2)x the size, RssAnon ${b[3]} MB, scan $(calc "$scan_ms / ($BIG_CLIENT_S * 10)" 1)%"
        [ "$BIG_OK" = 1 ] || ok="FAILURE: exogate (before) acked $BIG_ACKED, sink counted $BIG_DELIVERED of $count"
        stop_session "$GW_SID"
    fi
    if has_sys postfix; then
        start_postfix "z$i" "message_size_limit = 209715200"
        run_big "pf-$i" "$PF_PORT" "$PF_SID" "$size" "$count"
        rate=$(calc "$BIG_DELIVERED / $BIG_E2E_S" 2)
        p=("$rate" "$(calc "$rate * $BIG_BYTES / 1000000" 1)" "$((BIG_PSS / 1024))")
        [ "$BIG_OK" = 1 ] || ok="FAILURE: Postfix acked $BIG_ACKED, sink counted $BIG_DELIVERED of $count: $(grep -o '"reply":"[^"]*"' "$RUN/pf-$i.json" || head -n 2 "$RUN/pf-$i.err" | tr '\n' ' ')"
        stop_session "$PF_SID"
    fi
    ratio="-"
    [ "${e[1]}" != "-" ] && [ "${p[1]}" != "-" ] && ratio=$(calc "${e[1]} / (${p[1]} > 0 ? ${p[1]} : 1)" 2)
    # shellcheck disable=SC2059
    printf "$ROWFMT" "$(mb "$bytes" 2)MB" "$count" "${e[0]}" "${e[1]}" "${e[2]}" "${e[3]}" "${e[4]}" "${e[5]}" "${e[6]}" \
        "${p[0]}" "${p[1]}" "${p[2]}" "$ratio" "$ok"
    [ -n "${EXOGATE_BEFORE:-}" ] && note "$before_note"
    echo "$bytes ${e[0]} ${e[1]} ${p[0]} ${p[1]} ${e[2]} ${e[4]} ${p[2]} $(mb "$bytes" 3) ${e[6]} ${e[5]} ${b[*]}" | awk '{ for (i = 1; i <= NF; i++) if ($i == "-" || $i == "") $i = "?"; print }' >>"$DAT"
done
stop_session "$SINK_SID"

say ""
say "columns: msg/s, MB/s = messages (and their bytes) / (start to the sink's last delivery); HWM MB = exogate's"
say "         peak RSS (VmHWM), xsize = that peak / the message size; anon MB = peak RssAnon (heap: copies of"
say "         bodies), rest MB = RSS of the fresh gateway before the point; scan% = sum of the 'message scanned'"
say "         lines' scan_ms / the client's run time; pf Pss = Postfix's peak summed Pss (MB); MB/s x = exogate / Postfix."
grep -v '^  #   ' "$RUN/notes.txt" 2>/dev/null | head -n 20 || true

plot=$ROOT/benches/curves/plot.sh
# Column 1 is bytes: plot against MB with a derived data file (plot.sh plots column 1 as x).
awk '/^#/ { print; next } { $1 = $1 / 1000000; print }' "$DAT" >"$OUT/size$TAG-mb.dat"
"$plot" "$OUT/size$TAG-msgs.png" "Messages per second against message size (one session, BDAT; exogate in $MODE mode)" "message size (MB)" "messages/s" \
    "$OUT/size$TAG-mb.dat" --logx --logy 2:exogate 4:Postfix
"$plot" "$OUT/size$TAG-mbs.png" "Throughput (MB/s) against message size (one session, BDAT; exogate in $MODE mode)" "message size (MB)" "MB/s" \
    "$OUT/size$TAG-mb.dat" --logx 3:exogate 5:Postfix
before_series=()
[ -n "${EXOGATE_BEFORE:-}" ] && before_series=(14:"exogate before: peak RSS" 15:"exogate before: peak RssAnon")
"$plot" "$OUT/size$TAG-rss.png" "Peak memory against message size (exogate in $MODE mode)" "message size (MB)" "MB" \
    "$OUT/size$TAG-mb.dat" --logx --logy 6:"exogate peak RSS (VmHWM)" 7:"exogate peak RssAnon" 8:"Postfix peak summed Pss" 9:"the message itself" "${before_series[@]}"
say "data: $DAT ($OUT/size$TAG-mb.dat in MB); plots: $OUT/size$TAG-msgs.png $OUT/size$TAG-mbs.png $OUT/size$TAG-rss.png"
say "total run time $(($(date +%s) - BENCH_START)) s; load average now $(cut -d" " -f1-3 /proc/loadavg)"
if [ "$FAILED" != 0 ]; then
    say "RESULT: FAILURE (messages lost or refused; see the lines marked FAILURE; logs in $RUN)"
    exit 1
fi
say "RESULT: ok (every message sent was counted once at the sink)"
