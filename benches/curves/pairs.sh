#!/usr/bin/env bash
# Paced pairs (issue 16): two exogate builds, A and B, each paced open loop at the same RATE for
# PACED_SECONDS with PEAK_SESSIONS STARTTLS sessions, alternated A B B A ... (ROUNDS rounds, each
# build first in half of them), a fresh gateway for every run, and the same pacing straight into
# the sink once per round, so each figure can be read as added latency. On this kind of machine
# the tail moves from one run to the next by more than most changes move it, and whichever build
# runs second tends to do better; so a change is judged by the runs of both orders, and by the
# figures that repeat to within a few percent: CPU per message, context switches, journal
# commits and bytes written.
#
# Per run it prints MAIL -> 250 p50/p99/p99.9 (loadgen), the gateway's CPU per message by
# thread (schedstat of each thread in /proc/PID/task, proc_cost.py), its voluntary and involuntary context
# switches per message, the spool image's journal commits per message (/proc/fs/jbd2), and the
# bytes it wrote per message (/proc/PID/io); then the means per build.
#
# Owns: the run folder and processes of benches/load/lib.sh; a table on stdout and in OUT.
# Invariants: lib.sh's (every acknowledged message counted once at the sink, else FAILURE and
# exit 1); loopback only.
#
# Usage: sudo env A_BIN=/tmp/exogate-before benches/curves/pairs.sh   (B: this tree's build)
# Env:   A_BIN (required), B_BIN=lib.sh's exogate, RATE=600, ROUNDS=4, PACED_SECONDS=15,
#        PEAK_SESSIONS=20, SIZE=10240, OUT=benches/curves/results/pairs.txt,
#        A_SERVER_TOML / B_SERVER_TOML: lines for each build's [server] table (the same binary
#        can then be compared with two settings, e.g. B_SERVER_TOML='commit_log_size = 0')
#        SERVER_CPUS=1 HARNESS_CPUS=0: each side on a core of its own (lib.sh)
#        and lib.sh's: SKIP_BUILD, EXOGATE_BIN, LOADGEN_BIN, BENCH_TMP, KEEP
set -euo pipefail

RATE=${RATE:-600}
ROUNDS=${ROUNDS:-4}
PACED_SECONDS=${PACED_SECONDS:-15}
PEAK_SESSIONS=${PEAK_SESSIONS:-20}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$HERE/results/pairs.txt}
SCENARIOS=""
# shellcheck source=benches/load/lib.sh
source "$HERE/../load/lib.sh"
A_BIN=${A_BIN:-}
B_BIN=${B_BIN:-$EXOGATE}
[ -n "$A_BIN" ] && [ -x "$A_BIN" ] || die "A_BIN must name an exogate build (the one to compare against)"
[ -x "$B_BIN" ] || die "B_BIN $B_BIN is not an executable"
mkdir -p "$(dirname "$OUT")"
MESSAGES=$((RATE * PACED_SECONDS))
SESSIONS=$PEAK_SESSIONS
ROWS=$RUN/pairs.rows
: >"$ROWS"

journal_commits() { # the spool image's journal: commits so far
    local dev
    dev=$(basename "$(findmnt -n -o SOURCE "$RUN")")
    awk 'NR == 1 { print $1 }' "/proc/fs/jbd2/$dev-8/info" 2>/dev/null || echo 0
}

# paced_run LABEL BIN ROUND: one fresh gateway paced at RATE; appends a row to ROWS.
paced_run() {
    local label=$1 bin=$2 round=$3 pid tx0 tx1 w0 w1 name=$1$3 server
    server=$([ "$label" = A ] && echo "${A_SERVER_TOML:-}" || echo "${B_SERVER_TOML:-}")
    EXOGATE=$bin GW_SERVER_TOML=$server start_exogate "$name" queue
    pid=$(pgrep -s "$GW_SID" | head -n 1)
    python3 "$HERE/proc_cost.py" snapshot "$pid" >"$RUN/$name.cost0"
    tx0=$(journal_commits)
    w0=$(awk '/^write_bytes/ { print $2 }' "/proc/$pid/io")
    run_loadgen "$name" "paced $RATE msg/s, build $label" "$GW_PORT" "$GW_SID" --starttls --ca "$CA" --rate "$RATE" >/dev/null
    tx1=$(journal_commits)
    w1=$(awk '/^write_bytes/ { print $2 }' "/proc/$pid/io")
    local cost
    cost=$(python3 "$HERE/proc_cost.py" since "$pid" "$RUN/$name.cost0" "$MESSAGES")
    stop_session "$GW_SID"
    printf '%s %s %s %s %s %s %s %s\n' "$label" "$round" \
        "$(json "$RUN/$name.json" p50_ms)" "$(json "$RUN/$name.json" p99_ms)" "$(json "$RUN/$name.json" p999_ms)" \
        "$cost" "$(calc "($tx1 - $tx0) / $MESSAGES" 3)" "$(calc "($w1 - $w0) / $MESSAGES / 1024" 2)" >>"$ROWS"
}

{
    say "== exogate paced pairs =="
    say "date:      $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    say "machine:   $(nproc) cores, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
    say "cores:     $(pinning)"
    say "builds:    A = $A_BIN${A_SERVER_TOML:+ with [server] $A_SERVER_TOML}, B = $B_BIN${B_SERVER_TOML:+ with [server] $B_SERVER_TOML} (this tree: $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo '?'))"
    say "load:      $MESSAGES messages of $SIZE bytes per run at $RATE msg/s, $SESSIONS STARTTLS sessions, $ROUNDS rounds"
} | tee "$OUT"
start_dns
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then
        paced_run A "$A_BIN" "$round"
        paced_run B "$B_BIN" "$round"
    else
        paced_run B "$B_BIN" "$round"
        paced_run A "$A_BIN" "$round"
    fi
    run_loadgen "sink$round" "paced $RATE msg/s, straight into the sink" "$SINK_PORT" "" --starttls --ca "$CA" --rate "$RATE" >/dev/null
    printf 'sink %s %s %s %s - - - - - -\n' "$round" "$(json "$RUN/sink$round.json" p50_ms)" \
        "$(json "$RUN/sink$round.json" p99_ms)" "$(json "$RUN/sink$round.json" p999_ms)" >>"$ROWS"
done

{
    say ""
    say "run: build, round (A first in odd rounds), MAIL -> 250 in ms; CPU ms/msg (all threads, of it the log writer's and the store's);"
    say "context switches per message (voluntary, involuntary); journal commits and KB written per message"
    awk '{ printf "%-5s %5s %8s %8s %8s %8s %8s %8s %6s %6s %8s %8s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 }' \
        <(printf 'build round p50 p99 p99.9 cpu log store vcs ivcs commits KB\n'; cat "$ROWS")
    say ""
    say "means per build (the sink's p99 is the client's own share of each)"
    printf '%-5s %8s %8s %8s %8s %6s %6s %8s %8s\n' build p99 p99.9 cpu log vcs ivcs commits KB
    awk '$1 != "sink" { n[$1]++; for (i = 3; i <= 12; i++) s[$1, i] += $i }
         $1 == "sink" { ns++; sp99 += $4 }
         END {
             for (b in n) printf "%-5s %8.2f %8.2f %8.3f %8.3f %6.2f %6.2f %8.3f %8.2f\n", b, s[b,4]/n[b], s[b,5]/n[b], s[b,6]/n[b], s[b,7]/n[b], s[b,9]/n[b], s[b,10]/n[b], s[b,11]/n[b], s[b,12]/n[b]
             if (ns) printf "sink  %8.2f\n", sp99 / ns
         }' "$ROWS" | LC_ALL=C sort
    say "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee -a "$OUT"
