#!/usr/bin/env bash
# Concurrency curve (issue 16): how the rate grows with parallel sessions, and the latency at
# 25, 50 and 75% of the peak rate, for Postfix and for exogate (optionally two builds of it, an
# earlier one as "before"), all in one run, into the same counting sink, with the same messages.
# It also measures the floor the disk sets: one create + write + fdatasync + rename + directory
# fsync of a message-sized file, alone, on the same file system as the spools; and, after each
# paced exogate point, the spool commit's p50/p99 from exogate_spool_commit_duration_seconds; and
# at the end, the disk alone at each of exogate's paced rates (disk_at_rate.py: PEAK_SESSIONS writers doing
# the spool's commit sequence, open loop), the floor at that rate rather than for one message.
#
# Owns: the run folder and processes of benches/load/lib.sh, plus its own table, data file and
# plots (written to OUT, default benches/curves/results). Invariants: the same as lib.sh's (every
# message acknowledged is counted once at the sink, else FAILURE and exit 1); loopback only.
#
# Usage: sudo benches/curves/concurrency.sh
# Env:   MESSAGES=5000 SIZE=10240 SESSION_POINTS="1 20 100 500" LOAD_POINTS="25 50 75"
#        PACED_SECONDS=15 PEAK_SESSIONS=20 (the session count whose rate is "peak")
#        BEFORE_BIN=path   an earlier exogate build, measured as "before" next to the current one
#        OUT=benches/curves/results   where concurrency.{txt,dat,png} go
#        SERVER_CPUS=1 HARNESS_CPUS=0   each side on a core of its own (lib.sh)
#        and lib.sh's: SKIP_BUILD, EXOGATE_BIN, LOADGEN_BIN, BENCH_TMP, KEEP, DRAIN_TIMEOUT
set -euo pipefail

MESSAGES=${MESSAGES:-5000}
SESSION_POINTS=${SESSION_POINTS:-"1 20 100 500"}
LOAD_POINTS=${LOAD_POINTS:-"25 50 75"}
PACED_SECONDS=${PACED_SECONDS:-15}
PEAK_SESSIONS=${PEAK_SESSIONS:-20}
BEFORE_BIN=${BEFORE_BIN:-}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$HERE/results}
SCENARIOS=""
# shellcheck source=benches/load/lib.sh
source "$HERE/../load/lib.sh"
mkdir -p "$OUT"
[ -z "$BEFORE_BIN" ] || [ -x "$BEFORE_BIN" ] || die "BEFORE_BIN $BEFORE_BIN is not an executable"

say "== exogate concurrency curve =="
say "date:      $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
say "machine:   $(nproc) cores, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "cores:     $(pinning)"
say "versions:  exogate $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo '?')${BEFORE_BIN:+ and before = $BEFORE_BIN}, Postfix $(postconf -d -h mail_version 2>/dev/null || echo '?')"
say "load:      $MESSAGES messages of $SIZE bytes per point (1 session: a fifth), STARTTLS, pipelining; state on $(df -T "$RUN" | awk 'NR == 2 { print $2 }')"
say ""
start_dns
# shellcheck disable=SC2059
printf "$ROW" scenario path "e2e msg/s" "x(b)" "acc msg/s" "x(b)" "p50 ms" "p99 ms" "added p50/p99" "peak RSS" "count"

# ---------------------------------------------------------------- the disk's floor
# One message's durable write, alone: what no server on this disk can go below per message.
floor_of_disk() {
    python3 - "$RUN/floor" "$SIZE" <<'PY'
import os, sys, time
d, size = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
data = os.urandom(size)
sync_only, whole = [], []
for i in range(400):
    t0 = time.perf_counter()
    tmp, q = f"{d}/{i}.tmp", f"{d}/{i}.q"
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600)
    os.write(fd, data)
    os.rename(tmp, q)
    t1 = time.perf_counter()
    os.fdatasync(fd)
    t2 = time.perf_counter()
    os.close(fd)
    dfd = os.open(d, os.O_RDONLY)
    os.fsync(dfd)
    os.close(dfd)
    t3 = time.perf_counter()
    sync_only.append((t2 - t1) * 1000)
    whole.append((t3 - t0) * 1000)
    os.unlink(q)
def q(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, round((len(v) - 1) * p))]
print(f"{q(sync_only, .5):.2f} {q(sync_only, .99):.2f} {q(whole, .5):.2f} {q(whole, .99):.2f}")
PY
}
read -r FLOOR_SYNC_P50 FLOOR_SYNC_P99 FLOOR_P50 FLOOR_P99 < <(floor_of_disk)
note "disk floor, one 10 KB message alone: fdatasync p50 $FLOOR_SYNC_P50 ms p99 $FLOOR_SYNC_P99 ms; write+rename+fdatasync+dir fsync p50 $FLOOR_P50 ms p99 $FLOOR_P99 ms"

# ---------------------------------------------------------------- one point
DAT=$OUT/concurrency.dat
LAT=$OUT/concurrency-latency.dat
declare -A RATE_OF
# point NAME SERVER SESSIONS [loadgen args...]: runs one load at SESSIONS sessions against SERVER
# (postfix, before, after or sink) and records its e2e rate as RATE_OF[NAME].
point() {
    local name=$1 server=$2 sessions=$3 port sid="" msgs=$MESSAGES
    shift 3
    [ "$sessions" = 1 ] && msgs=$((MESSAGES / 5))
    case $server in
        postfix) start_postfix "$name"; port=$PF_PORT; sid=$PF_SID ;;
        before) EXOGATE=$BEFORE_BIN start_exogate "$name" queue; port=$GW_PORT; sid=$GW_SID ;;
        after) start_exogate "$name" queue; port=$GW_PORT; sid=$GW_SID ;;
        sink) port=$SINK_PORT ;;
    esac
    MESSAGES=$msgs SESSIONS=$sessions run_loadgen "$name" "loadgen STARTTLS -> $server, $sessions sessions $*" "$port" "$sid" \
        --starttls --ca "$CA" "$@"
    RATE_OF[$name]=$LAST_RATE
    case $server in before | after) commit_quantiles "$name" ;; esac
    [ -z "$sid" ] || stop_session "$sid"
}
# commit_quantiles NAME: the spool commit's p50 and p99 for the gateway just measured, as the
# upper bounds of exogate_spool_commit_duration_seconds' buckets (the share of each reply the
# durable write took); COMMIT_OF[NAME]="p50 p99" in ms, nothing for a build without the metric.
declare -A COMMIT_OF
commit_quantiles() {
    local q
    q=$(curl -s "http://$IP:$GW_ADMIN/metrics" | awk '
        /^exogate_spool_commit_duration_seconds_bucket/ {
            match($0, /le="[^"]+"/); le = substr($0, RSTART + 4, RLENGTH - 5)
            n++; les[n] = le; cum[n] = $NF
        }
        END {
            if (n == 0 || cum[n] == 0) exit
            for (i = 1; i <= n; i++) if (p50 == "" && cum[i] >= 0.5 * cum[n]) p50 = les[i]
            for (i = 1; i <= n; i++) if (p99 == "" && cum[i] >= 0.99 * cum[n]) p99 = les[i]
            printf "%g %g", p50 * 1000, p99 * 1000
        }')
    [ -n "$q" ] || return 0
    COMMIT_OF[$1]=$q
    note "$1: spool commit p50 <= ${q% *} ms, p99 <= ${q#* } ms (exogate_spool_commit_duration_seconds buckets)"
}
p999() { json "$RUN/$1.json" p999_ms; }
lat() { json "$RUN/$1.json" "$2"; }

servers=(postfix)
[ -n "$BEFORE_BIN" ] && servers+=(before)
servers+=(after)

# Rate against sessions.
for s in $SESSION_POINTS; do
    for server in "${servers[@]}"; do
        point "$server-s$s" "$server" "$s"
    done
done

# Latency at fractions of each server's peak (its rate at PEAK_SESSIONS), paced open loop; the
# same pacing straight into the sink gives the client's own latency, subtracted as "added".
declare -A TARGET_OF
for server in "${servers[@]}"; do
    peak=${RATE_OF[$server-s$PEAK_SESSIONS]:-0}
    [ "$peak" -gt 0 ] || continue
    for pct in $LOAD_POINTS; do
        rate=$(calc "$peak * $pct / 100" 0)
        [ "$rate" -ge 1 ] || continue
        n=$((rate * PACED_SECONDS))
        [ "$n" -lt 100 ] && n=100
        TARGET_OF[$server-r$pct]=$rate
        MESSAGES=$n point "$server-r$pct" "$server" "$PEAK_SESSIONS" --rate "$rate"
        MESSAGES=$n point "sink-$server-r$pct" sink "$PEAK_SESSIONS" --rate "$rate"
    done
done
stop_session "$SINK_SID"

# The disk alone at each of exogate's paced rates: its commit sequence (and the earlier one, the
# file's fdatasync first) from PEAK_SESSIONS writers, open loop, nothing else running: the floor
# there. A failed measure is a note, not the end of the run.
declare -A DISK_OF
for pct in $LOAD_POINTS; do
    rate=${TARGET_OF[after-r$pct]:-}
    [ -n "$rate" ] || continue
    if out=$(python3 "$HERE/disk_at_rate.py" "$RUN/disk-at-rate" "$rate" "$PACED_SECONDS" "$SIZE" "$PEAK_SESSIONS" 2>"$RUN/disk-at-rate.err"); then
        DISK_OF[$pct]=$(printf '%s' "$out" | tr '\n' ' ')
        note "disk alone at $rate msg/s (order p50 p99 p99.9 ms): ${DISK_OF[$pct]}"
    else
        note "disk alone at $rate msg/s: not measured ($(head -n 2 "$RUN/disk-at-rate.err" | tr '\n' ' '))"
    fi
done

# ---------------------------------------------------------------- tables, data, plots
{
    say ""
    say "rate (msg/s, e2e) against parallel sessions; x = exogate / Postfix in this run"
    printf '%-9s %9s' sessions postfix
    [ -n "$BEFORE_BIN" ] && printf ' %9s %7s' before x
    printf ' %9s %7s\n' after x
    for s in $SESSION_POINTS; do
        pf=${RATE_OF[postfix-s$s]}
        printf '%-9s %9s' "$s" "$pf"
        [ -n "$BEFORE_BIN" ] && printf ' %9s %7s' "${RATE_OF[before-s$s]}" "$(calc "${RATE_OF[before-s$s]} / $pf" 2)"
        printf ' %9s %7s\n' "${RATE_OF[after-s$s]}" "$(calc "${RATE_OF[after-s$s]} / $pf" 2)"
    done
    say ""
    say "latency MAIL -> final 250 (ms) at a fraction of each server's own peak ($PEAK_SESSIONS sessions), paced; added = minus the same pacing straight into the sink"
    printf '%-8s %5s %7s %8s %8s %8s %10s %10s %10s\n' server load "msg/s" p50 p99 p99.9 "added p50" "added p99" "added p99.9"
    for server in "${servers[@]}"; do
        for pct in $LOAD_POINTS; do
            n=$server-r$pct
            [ -s "$RUN/$n.json" ] || continue
            b=sink-$server-r$pct
            printf '%-8s %4s%% %7s %8s %8s %8s %10s %10s %10s\n' "$server" "$pct" "${RATE_OF[$n]}" \
                "$(lat "$n" p50_ms)" "$(lat "$n" p99_ms)" "$(p999 "$n")" \
                "$(calc "$(lat "$n" p50_ms) - $(lat "$b" p50_ms)" 2)" "$(calc "$(lat "$n" p99_ms) - $(lat "$b" p99_ms)" 2)" \
                "$(calc "$(p999 "$n") - $(p999 "$b")" 2)"
        done
    done
    say ""
    say "median MAIL -> 250 at full speed ($PEAK_SESSIONS sessions): postfix $(lat "postfix-s$PEAK_SESSIONS" p50_ms) ms${BEFORE_BIN:+, before $(lat "before-s$PEAK_SESSIONS" p50_ms) ms}, after $(lat "after-s$PEAK_SESSIONS" p50_ms) ms"
    say "disk floor (one message alone): fdatasync p50 $FLOOR_SYNC_P50 / p99 $FLOOR_SYNC_P99 ms; write+rename+fdatasync+dir fsync p50 $FLOOR_P50 / p99 $FLOOR_P99 ms"
    for pct in $LOAD_POINTS; do
        # shellcheck disable=SC2086
        set -- ${DISK_OF[$pct]:-}
        [ "$#" = 12 ] || continue
        say "disk alone at exogate's $pct% rate (${TARGET_OF[after-r$pct]} msg/s, disk_at_rate.py, $PEAK_SESSIONS writers): p50/p99/p99.9 $2 / $3 / $4 ms in exogate's commit order; $6 / $7 / $8 ms with the file's fdatasync first; ${10} / ${11} / ${12} ms overwriting a pre-allocated file (the commit log's pattern)"
    done
    for server in before after; do
        for pct in $LOAD_POINTS; do
            c=${COMMIT_OF[$server-r$pct]:-}
            [ -z "$c" ] || say "spool commit at $pct% ($server): p50 <= ${c% *} ms, p99 <= ${c#* } ms (histogram bucket bounds)"
        done
    done
} | tee "$OUT/concurrency.txt"

{
    echo "# sessions postfix before after (e2e msg/s)"
    for s in $SESSION_POINTS; do
        echo "$s ${RATE_OF[postfix-s$s]} ${RATE_OF[before-s$s]:-NaN} ${RATE_OF[after-s$s]}"
    done
} >"$DAT"
{
    echo "# load% postfix_p99 before_p99 after_p99 postfix_p999 before_p999 after_p999 (ms)"
    for pct in $LOAD_POINTS; do
        row="$pct"
        for k in p99_ms p999_ms; do
            for server in postfix before after; do
                v=NaN
                [ -s "$RUN/$server-r$pct.json" ] && v=$(lat "$server-r$pct" "$k")
                row="$row $v"
            done
        done
        echo "$row"
    done
} >"$LAT"
cols=("2:Postfix")
[ -n "$BEFORE_BIN" ] && cols+=("3:exogate before")
cols+=("4:exogate")
# The plots say when each side had a core of its own: such a curve is not comparable with one
# whose server shared its cores with the client and the sink.
PINNED=""
[ -z "$SERVER_CPUS$HARNESS_CPUS" ] || PINNED=$(pinning)
"$HERE/plot.sh" "$OUT/concurrency-rate.png" "Rate against parallel sessions (10 KB, STARTTLS, fsync'd queues${PINNED:+; $PINNED})" \
    "parallel sessions" "messages/s delivered" "$DAT" --logx "${cols[@]}"
cols=("2:Postfix p99" "5:Postfix p99.9")
[ -n "$BEFORE_BIN" ] && cols+=("3:exogate before p99" "6:exogate before p99.9")
cols+=("4:exogate p99" "7:exogate p99.9")
"$HERE/plot.sh" "$OUT/concurrency-latency.png" "Latency at a fraction of each server's peak${PINNED:+ ($PINNED)}" \
    "% of peak rate" "ms (MAIL to final 250)" "$LAT" "${cols[@]}"

say ""
say "total run time $(($(date +%s) - BENCH_START)) s; load average now $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$FAILED" != 0 ]; then
    say "RESULT: FAILURE (messages lost or refused; see the lines marked FAILURE; logs in $RUN)"
    exit 1
fi
say "RESULT: ok (every message sent was counted once at the sink)"
