#!/usr/bin/env bash
# The load benchmarks' shared machinery, sourced by benches/load/run.sh and the curves in
# benches/curves/: tools, the release build, a fresh run folder on its own ext4 image, process
# sessions, memory and CPU sampling, a throwaway CA, the counting sink, the report line, and
# starting a private Postfix, a private Knot and exogate (benches/load/README.md explains them).
#
# Owns: a fresh temporary folder per run (kept on failure or with KEEP=1), and every process it
# starts (each in its own session, stopped by session id on exit). Invariants: loopback
# addresses only; every message sent is counted at the sink and a run whose count differs from
# what was acknowledged is a FAILURE, whatever its speed. Never touches /etc/postfix or a
# system-wide MTA: a Postfix under test is a private instance in the run folder.
#
# Sourcing it does the setup (run folder, certificates, sink) and defines the functions; the
# sourcing script prints its own header and runs its scenarios.

set -euo pipefail

MESSAGES=${MESSAGES:-10000}
SESSIONS=${SESSIONS:-20}
SIZE=${SIZE:-10240}
IDLE_SESSIONS=${IDLE_SESSIONS:-5000}
BIG_SIZE=${BIG_SIZE:-150000000}
RATE_SECONDS=${RATE_SECONDS:-20}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-300}
BENCH_TMP=${BENCH_TMP:-/var/tmp}
KEEP=${KEEP:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
SCENARIOS=${SCENARIOS:-"a b b2 c d rate idle big"}
DNSBL=${DNSBL:-0}
STORE=${STORE:-1}
IP=127.0.0.1
INFO_HEADER="X-CLOUD-SEC-AV-Info: contoso,office365_emails,inline"
# EXO stamps every message with the tenant's id; the benchmark tenant checks it, as in production.
TENANT_ID=72f988bf-86f1-41af-91ab-2d7cd011db47
TENANT_HEADER="X-MS-Exchange-CrossTenant-Id: $TENANT_ID"
FROM=alice@example.org
TO=bob@contoso.com

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
EXOGATE=${EXOGATE_BIN:-$TARGET/release/exogate}
LOADGEN=${LOADGEN_BIN:-$TARGET/release/examples/loadgen}
MASTER=/usr/lib/postfix/sbin/master
# SERVER_CPUS / HARNESS_CPUS: CPU lists (as `taskset -c` takes them) for the servers under test
# (exogate, Postfix and its children) and for the harness (loadgen as client and as sink,
# smtp-source, Knot). Unset: nothing is pinned, and the server shares every core with the
# harness, which is not how either is deployed: on 2 cores the client and the sink then take
# CPU the server would have, and its tail at a given load includes waiting behind them. With
# SERVER_CPUS=1 HARNESS_CPUS=0 each side has a core of its own, as a gateway on its own VM has.
# Honoured by what this file starts (the sink, Knot, start_postfix, start_exogate, run_loadgen,
# run_smtp_source, hold_sessions, run_big), so by concurrency.sh and pairs.sh, which start
# nothing else; backlog.sh, sessions.sh and tenants.sh also start processes of their own that
# are not pinned.
SERVER_CPUS=${SERVER_CPUS:-}
HARNESS_CPUS=${HARNESS_CPUS:-}
ON_SERVER=()
ON_HARNESS=()
[ -z "$SERVER_CPUS" ] || ON_SERVER=(taskset -c "$SERVER_CPUS")
[ -z "$HARNESS_CPUS" ] || ON_HARNESS=(taskset -c "$HARNESS_CPUS")
pinning() { # one line for a run's header: who runs on which cores
    if [ -n "$SERVER_CPUS$HARNESS_CPUS" ]; then
        printf 'servers on CPU %s, client, sink and DNS on CPU %s' "${SERVER_CPUS:-any}" "${HARNESS_CPUS:-any}"
    else
        printf 'not pinned: servers, client, sink and DNS share all %s cores' "$(nproc)"
    fi
}
BENCH_START=$(date +%s)

say() { printf '%s\n' "$*"; }
note() { printf '  # %s\n' "$*"; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
# Floating-point arithmetic (awk is everywhere; bc is not).
calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }

[ "$(id -u)" = 0 ] || die "run as root (the private Postfix's daemons drop privileges to the postfix user)"

# bench_header TITLE : the lines every benchmark prints first (date, machine, load average,
# versions), so a table always says when, where and on what it was measured.
bench_header() {
    say "== $1 =="
    say "date:      $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    say "machine:   $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
    say "versions:  exogate $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo '?'), $(rustc --version 2>/dev/null || echo 'rustc ?'), Postfix $(postconf -d -h mail_version 2>/dev/null || echo '?'), $(openssl version | cut -d' ' -f1-2)"
}

# ---------------------------------------------------------------- tools
need_apt=()
[ -x /usr/sbin/smtp-source ] && [ -x "$MASTER" ] || need_apt+=(postfix)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v ss >/dev/null || need_apt+=(iproute2)
command -v pgrep >/dev/null || need_apt+=(procps)
command -v curl >/dev/null || need_apt+=(curl)
[ -x /usr/sbin/knotd ] || need_apt+=(knot)
if [ ${#need_apt[@]} -gt 0 ]; then
    say "installing: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Debian's postfix asks nothing with this answer; we never use its system instance.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
getent passwd postfix >/dev/null || die "no postfix user (is the postfix package installed?)"
getent group postdrop >/dev/null || die "no postdrop group (is the postfix package installed?)"

if [ "$SKIP_BUILD" != 1 ]; then
    say "building exogate and loadgen (release)..."
    (cd "$ROOT" && cargo build --release --locked --bin exogate --example loadgen 2>&1 | tail -n 1)
fi
[ -x "$EXOGATE" ] && [ -x "$LOADGEN" ] || die "binaries missing under $TARGET/release"

# Idle sessions need thousands of descriptors in exogate and in loadgen.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------- run folder, cleanup
RUN=$(mktemp -d "$BENCH_TMP/exogate-load.XXXXXX")
# Every spool of the run (Postfix's queue, exogate's state) goes on a fresh,
# journaled ext4 made for the run: the result then does not depend on what the
# host's file system went through before (an ext4 without journal, as on some
# VMs, slows file creation for a while after many deletions, which would
# penalise whichever server runs after the other). FS_IMAGE=0 keeps the
# folder on the host's file system instead.
FS_IMAGE=${FS_IMAGE:-1}
IMG=""
if [ "$FS_IMAGE" = 1 ] && command -v mkfs.ext4 >/dev/null; then
    IMG="$RUN.img"
    # FS_IMAGE_SIZE: a curve with hundreds of thousands of queue files needs more inodes.
    truncate -s "${FS_IMAGE_SIZE:-4G}" "$IMG"
    if mkfs.ext4 -q -F -O has_journal "$IMG" && mount -o loop "$IMG" "$RUN"; then
        :
    else
        echo "note: could not mount a fresh ext4 image; using $BENCH_TMP as is" >&2
        rm -f "$IMG"
        IMG=""
    fi
fi
chmod 755 "$RUN"
SIDS=()
FAILED=0
cleanup() {
    local rc=$?
    for sid in "${SIDS[@]}"; do
        kill -TERM -- "-$sid" 2>/dev/null || true
    done
    sleep 0.5
    for sid in "${SIDS[@]}"; do
        kill -KILL -- "-$sid" 2>/dev/null || true
    done
    if [ "$rc" = 0 ] && [ "$FAILED" = 0 ] && [ "$KEEP" != 1 ]; then
        if [ -n "$IMG" ]; then umount "$RUN" 2>/dev/null || umount -l "$RUN"; rm -f "$IMG"; fi
        rm -rf "$RUN"
    else
        printf 'run folder kept: %s%s\n' "$RUN" "${IMG:+ (an ext4 image mounted there; umount $RUN && rm $IMG when done)}" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts "$@" in a new session (so it and its children can be found and stopped
# together); sets LAST_SID. Without job control the background job is not a group
# leader, so setsid does not fork and $! is the command itself.
start_session() {
    local log=$1
    shift
    setsid "$@" >"$log" 2>&1 </dev/null &
    LAST_SID=$!
    SIDS+=("$LAST_SID")
}

stop_session() {
    local sid=$1 i
    kill -TERM -- "-$sid" 2>/dev/null || true
    for i in $(seq 1 100); do
        pgrep -s "$sid" >/dev/null || return 0
        sleep 0.1
    done
    kill -KILL -- "-$sid" 2>/dev/null || true
}

# A port below the kernel's ephemeral range (so no outgoing connection of the
# run can be holding it when a server binds it later) with no socket on it.
free_port() {
    local p low=10000 high
    high=$(($(cut -f1 /proc/sys/net/ipv4/ip_local_port_range) - 1))
    [ "$high" -gt $((low + 1000)) ] || { low=20000; high=50000; }
    for _ in $(seq 1 200); do
        p=$((low + RANDOM % (high - low)))
        if [ -z "$(ss -Htan "sport = :$p")" ]; then
            echo "$p"
            return
        fi
    done
    die "no free port"
}

# Waits until process $3 (a session leader we started) listens on $IP:$1 itself:
# a port taken meanwhile by someone else must not pass for ours.
wait_port() {
    local port=$1 what=$2 pid=$3 log=$4
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || die "$what exited: $(tail -n 5 "$log" 2>/dev/null)"
        if ss -Hltnp "sport = :$port" 2>/dev/null | grep -q "pid=$pid,"; then return 0; fi
        sleep 0.1
    done
    die "$what did not listen on $IP:$port: $(tail -n 5 "$log" 2>/dev/null)"
}

# VmHWM / VmRSS (KB) summed over every live process of session $1.
mem_of_session() {
    local sid=$1 field=$2 pids
    pids=$(pgrep -s "$sid" | tr '\n' ' ' || true)
    [ -n "$pids" ] || { echo 0; return 0; }
    # Processes may exit meanwhile: grep -s skips them.
    # shellcheck disable=SC2086
    { grep -hs "^$field:" $(printf '/proc/%s/status ' $pids) || true; } | awk '{ s += $2 } END { print s + 0 }'
}

# CPU time (clock ticks, user + system) of session $1's live processes and of the
# children they have reaped (cutime/cstime), so Postfix's recycled processes count.
cpu_of_session() {
    local sid=$1 pids
    pids=$(pgrep -s "$sid" | tr '\n' ' ' || true)
    [ -n "$pids" ] || { echo 0; return 0; }
    # shellcheck disable=SC2086
    { cat $(printf '/proc/%s/stat ' $pids) 2>/dev/null || true; } |
        sed 's/^.*) //' | awk '{ s += $12 + $13 + $14 + $15 } END { print s + 0 }'
}
# CPU time (ns) session $1's live processes spent on a CPU, every thread (schedstat): finer than
# clock ticks, for a cost per request of a short run; exited processes are not counted.
cpu_ns_of_session() {
    local pids p
    pids=$(pgrep -s "$1" || true)
    for p in $pids; do cat /proc/"$p"/task/*/schedstat 2>/dev/null || true; done | awk '{ s += $1 } END { printf "%.0f\n", s }'
}
CLK_TCK=$(getconf CLK_TCK)
CPU_NOTE=""

# Sets CPU_NOTE from the ticks session $1 used since $2, for $3 messages (and CPU_MS, the
# milliseconds per message alone, for a script's own table).
cpu_note() {
    local used
    used=$(($(cpu_of_session "$1") - $2))
    CPU_MS=$(calc "$used * 1000 / $CLK_TCK / $3" 2)
    CPU_NOTE="cpu $(calc "$used * 1000 / $CLK_TCK / $3" 2) ms per message (user+sys of the server under test, $(calc "$used / $CLK_TCK" 1) s in all)"
}

# Proportional set size (KB) summed over session $1: shared pages counted once in all.
pss_of_session() {
    local sid=$1 pids
    pids=$(pgrep -s "$sid" | tr '\n' ' ' || true)
    [ -n "$pids" ] || { echo 0; return 0; }
    # shellcheck disable=SC2086
    { grep -hs '^Pss:' $(printf '/proc/%s/smaps_rollup ' $pids) || true; } | awk '{ s += $2 } END { print s + 0 }'
}

# Samples session $1 every 200 ms; file $2 gets the maxima of: the summed VmHWM
# (so processes that exit during the run, as Postfix recycles them, still
# count), the summed Pss, the number of processes and the summed RssAnon
# (anonymous memory: heap and copies, as opposed to mapped files).
start_sampler() {
    local sid=$1 out=$2
    echo "0 0 0 0" >"$out"
    (
        hwm=0 pss=0 procs=0 anon=0
        while kill -0 "$sid" 2>/dev/null; do
            v=$(mem_of_session "$sid" VmHWM)
            p=$(pss_of_session "$sid")
            a=$(mem_of_session "$sid" RssAnon)
            n=$(pgrep -s "$sid" | wc -l || true)
            [ "$v" -gt "$hwm" ] && hwm=$v
            [ "$p" -gt "$pss" ] && pss=$p
            [ "$a" -gt "$anon" ] && anon=$a
            [ "$n" -gt "$procs" ] && procs=$n
            echo "$hwm $pss $procs $anon" >"$out.tmp" && mv "$out.tmp" "$out"
            sleep 0.2
        done
    ) &
    SAMPLER=$!
}

stop_sampler() {
    kill "$SAMPLER" 2>/dev/null || true
    wait "$SAMPLER" 2>/dev/null || true
}

# ---------------------------------------------------------------- certificates
mkdir -p "$RUN/pki"
(
    cd "$RUN/pki"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
        -days 2 -subj "/CN=exogate load bench CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:bench.test,DNS:*.bench.test\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n' >ext.cnf
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr \
        -subj "/CN=bench.test" 2>/dev/null
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 \
        -extfile ext.cnf 2>/dev/null
    chmod 644 ./*.pem server.key
)
CA=$RUN/pki/ca.pem
CERT=$RUN/pki/server.pem
KEY=$RUN/pki/server.key

# The message smtp-source sends (LF line ends; it adds the CRs), the same as loadgen's message 0.
"$LOADGEN" message --size "$SIZE" --from "$FROM" --to "$TO" --header "$INFO_HEADER" --header "$TENANT_HEADER" --lf >"$RUN/message.txt"

# ---------------------------------------------------------------- the sink
SINK_PORT=$(free_port)
COUNT_FILE=$RUN/sink.count
SINK_FLAGS=()
[ "${SINK_QUICKACK:-0}" = 1 ] && SINK_FLAGS+=(--quickack)
# SINK_DEFER=1: while the file $DEFER_FILE exists the sink answers every MAIL with 451 4.3.0.
DEFER_FILE=$RUN/sink.defer
[ "${SINK_DEFER:-0}" = 1 ] && SINK_FLAGS+=(--defer-file "$DEFER_FILE")
start_session "$RUN/sink.log" "${ON_HARNESS[@]}" "$LOADGEN" sink --listen "$IP:$SINK_PORT" --cert "$CERT" --key "$KEY" \
    --count-file "$COUNT_FILE" "${SINK_FLAGS[@]}"
SINK_SID=$LAST_SID
wait_port "$SINK_PORT" sink "$SINK_SID" "$RUN/sink.log"

sink_count() { awk '{ print $1 }' "$COUNT_FILE" 2>/dev/null || echo 0; }
sink_last() { awk '{ print $2 }' "$COUNT_FILE" 2>/dev/null || echo 0; }
sink_sessions() { awk '{ print $3 }' "$COUNT_FILE" 2>/dev/null || echo 0; }
sink_deferred() { awk '{ print $4 + 0 }' "$COUNT_FILE" 2>/dev/null || echo 0; }

# Waits until the sink has counted $1 recipients (or DRAIN_TIMEOUT passes); then
# waits a little more so a late duplicate would be seen. Prints the final count.
wait_sink() {
    local want=$1 deadline=$(($(date +%s) + DRAIN_TIMEOUT)) c
    while :; do
        c=$(sink_count)
        [ "$c" -ge "$want" ] && break
        [ "$(date +%s)" -ge "$deadline" ] && break
        sleep 0.05
    done
    sleep 0.5
    sink_count
}

json() { # json FILE KEY
    sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1" | tr -d '"' | head -n 1
}

ROW='%-9s %-50s %9s %6s %9s %6s %7s %7s %13s %9s %s\n'
RESULTS=$RUN/results
: >"$RESULTS"
B_RATE=""
B_ACC=""
# Latency of the same client straight into the sink: what a relay adds is measured against it
# (a-tls for the STARTTLS clients, a-lg for the plaintext one).
BASE_TLS_P50=""
BASE_TLS_P99=""
BASE_LG_P50=""
BASE_LG_P99=""

# report NAME PATH SENT ACKED BEFORE T0 T_CLIENT_END LATFILE RSS_KB
report() {
    local name=$1 path=$2 sent=$3 acked=$4 before=$5 t0=$6 t1=$7 lat=$8 rss=$9
    local after e2e_rate acc_rate ratio="-" acc_ratio="-" p50="-" p99="-" last ok conns
    after=$(wait_sink $((before + acked)))
    conns=$(($(sink_sessions) - SESSIONS_BEFORE))
    last=$(sink_last)
    local delivered=$((after - before))
    e2e_rate=$(calc "$delivered / (($last > $t0 ? $last : $t1) - $t0)" 0)
    acc_rate=$(calc "$acked / ($t1 - $t0)" 0)
    if [ -n "$lat" ] && [ -s "$lat" ]; then
        p50=$(calc "$(json "$lat" p50_ms)" 2)
        p99=$(calc "$(json "$lat" p99_ms)" 2)
    fi
    if [ "$name" = b ]; then B_RATE=$e2e_rate; B_ACC=$acc_rate; fi
    local added="-" base50="" base99=""
    case $name in
        a-tls) BASE_TLS_P50=$p50; BASE_TLS_P99=$p99 ;;
        a-lg) BASE_LG_P50=$p50; BASE_LG_P99=$p99 ;;
        b-lg) base50=$BASE_LG_P50; base99=$BASE_LG_P99 ;;
        b2 | c | c-nostore | c-dnsbl | d | c-half) base50=$BASE_TLS_P50; base99=$BASE_TLS_P99 ;;
    esac
    if [ -n "$base50" ] && [ "$p50" != "-" ]; then
        added="$(calc "$p50 - $base50" 2)/$(calc "$p99 - $base99" 2)"
    fi
    if [ -n "$B_RATE" ] && [ "$name" != c-half ] && [ "$B_RATE" -gt 0 ] && [ "$B_ACC" -gt 0 ]; then
        ratio="$(calc "$e2e_rate / $B_RATE" 2)"
        acc_ratio="$(calc "$acc_rate / $B_ACC" 2)"
    fi
    if [ "$delivered" = "$sent" ] && [ "$acked" = "$sent" ]; then
        ok="ok ($delivered/$sent)"
    else
        ok="FAILURE: sent $sent, acked $acked, sink counted $delivered"
        FAILED=1
    fi
    local rss_text="-"
    [ "$rss" -gt 0 ] && rss_text="$((rss / 1024)) MB"
    # shellcheck disable=SC2059
    printf "$ROW" "$name" "$path" "$e2e_rate" "$ratio" "$acc_rate" "$acc_ratio" "$p50" "$p99" "$added" "$rss_text" "$ok"
    echo "$name $e2e_rate $acc_rate $p50 $p99 $rss $delivered $sent" >>"$RESULTS"
    if [ -s "$RUN/$name.rss" ]; then
        read -r _ pss procs anon <"$RUN/$name.rss"
        if [ "$procs" -gt 1 ]; then
            note "$name: $CPU_NOTE; peak RSS is VmHWM summed over up to $procs processes, whose summed Pss peaked at $((pss / 1024)) MB; $conns connections to the sink"
        else
            note "$name: $CPU_NOTE; anonymous memory (RssAnon) peaked at $((anon / 1024)) MB; $conns connections to the sink"
        fi
    fi
    LAST_RATE=$e2e_rate
}

# end_sampling NAME SID CPU0 WANT SENT : after a load on server session SID (none: the sink
# alone), waits until the sink counted WANT, sets CPU_NOTE for SENT messages, stops the sampler
# and sets PEAK_RSS to the server's peak RSS (KB; 0 without a server). Not in a subshell: it sets
# globals.
end_sampling() {
    local name=$1 sid=$2 cpu0=$3 want=$4 sent=$5
    PEAK_RSS=0
    [ -n "$sid" ] || return 0
    wait_sink "$want" >/dev/null
    cpu_note "$sid" "$cpu0" "$sent"
    stop_sampler
    PEAK_RSS=$(awk '{ print $1 }' "$RUN/$name.rss")
}

# smtp_source NAME PATH PORT SID : the Postfix tool, many messages per session (-d).
run_smtp_source() {
    local name=$1 path=$2 port=$3 sid=$4 before t0 t1 rc=0
    before=$(sink_count)
    SESSIONS_BEFORE=$(sink_sessions)
    CPU_NOTE=""
    # Start every scenario from clean page cache writeback.
    sync
    if [ -n "$sid" ]; then
        start_sampler "$sid" "$RUN/$name.rss"
        cpu0=$(cpu_of_session "$sid")
    fi
    t0=$(now)
    "${ON_HARNESS[@]}" /usr/sbin/smtp-source -d -s "$SESSIONS" -m "$MESSAGES" -F "$RUN/message.txt" -f "$FROM" -t "$TO" \
        -M loadgen.bench.test "$IP:$port" >"$RUN/$name.out" 2>&1 || rc=$?
    t1=$(now)
    [ "$rc" = 0 ] || note "$name: smtp-source exited $rc: $(tail -n 3 "$RUN/$name.out" | tr '\n' ' ')"
    local acked=$MESSAGES
    [ "$rc" = 0 ] || acked=0
    end_sampling "$name" "$sid" "${cpu0:-0}" $((before + MESSAGES)) "$MESSAGES"
    report "$name" "$path" "$MESSAGES" "$acked" "$before" "$t0" "$t1" "" "$PEAK_RSS"
}

# run_loadgen NAME PATH PORT SID [extra send args...]
run_loadgen() {
    local name=$1 path=$2 port=$3 sid=$4 before t0 t1 rc=0
    shift 4
    before=$(sink_count)
    SESSIONS_BEFORE=$(sink_sessions)
    CPU_NOTE=""
    if [ -n "$sid" ]; then
        start_sampler "$sid" "$RUN/$name.rss"
        cpu0=$(cpu_of_session "$sid")
    fi
    t0=$(now)
    "${ON_HARNESS[@]}" "$LOADGEN" send --addr "$IP:$port" --messages "$MESSAGES" --sessions "$SESSIONS" --size "$SIZE" \
        --from "$FROM" --to "$TO" --header "$INFO_HEADER" --header "$TENANT_HEADER" --pipelining "$@" >"$RUN/$name.json" 2>"$RUN/$name.err" || rc=$?
    t1=$(now)
    [ "$rc" = 0 ] || note "$name: loadgen exited $rc: $(head -n 3 "$RUN/$name.err" | tr '\n' ' ')"
    local sent acked
    sent=$(json "$RUN/$name.json" sent)
    acked=$(json "$RUN/$name.json" acked)
    [ -n "$sent" ] || { sent=$MESSAGES; acked=0; }
    end_sampling "$name" "$sid" "${cpu0:-0}" $((before + acked)) "$sent"
    report "$name" "$path" "$sent" "$acked" "$before" "$t0" "$t1" "$RUN/$name.json" "$PEAK_RSS"
}

# hold_sessions NAME PORT N [loadgen idle args...] : opens N STARTTLS sessions to $IP:PORT with
# `loadgen idle` and holds them open until release_sessions. Sets HELD (sessions opened) and
# HELD_JSON (a file with loadgen's JSON line: the sessions' accept latencies, connect -> 220 and
# connect -> EHLO reply after STARTTLS, p50/p99). Waits up to 180 s for them to open.
hold_sessions() {
    local name=$1 port=$2 n=$3
    shift 3
    mkfifo "$RUN/$name.ctl"
    "${ON_HARNESS[@]}" "$LOADGEN" idle --addr "$IP:$port" --sessions "$n" --ca "$CA" --hold-secs 600 "$@" \
        <"$RUN/$name.ctl" >"$RUN/$name.out" 2>"$RUN/$name.err" &
    HOLD_PID=$!
    # Holding the fifo open keeps the sessions; closing it (release_sessions) ends them.
    exec 7>"$RUN/$name.ctl"
    for _ in $(seq 1 1800); do
        grep -q '^{' "$RUN/$name.out" 2>/dev/null && break
        kill -0 "$HOLD_PID" 2>/dev/null || break
        sleep 0.1
    done
    HELD=$(awk '/^ready/ { print $2 }' "$RUN/$name.out")
    HELD=${HELD:-0}
    HELD_JSON=$RUN/$name.json
    grep '^{' "$RUN/$name.out" >"$HELD_JSON" || true
}

release_sessions() {
    exec 7>&-
    wait "$HOLD_PID" || true
}

# run_big NAME PORT SID SIZE COUNT : COUNT messages of SIZE bytes (a multipart message with a
# base64 PDF attachment, `loadgen big`: BDAT 1 MiB chunks over STARTTLS, one session) into the
# server of session SID, sampled like run_loadgen. Sets BIG_BYTES (bytes per message), BIG_ACKED,
# BIG_DELIVERED, BIG_CLIENT_S (client run time), BIG_E2E_S (start to the sink's last delivery),
# BIG_HWM / BIG_PSS / BIG_PROCS / BIG_ANON (the sampler's maxima, KB) and BIG_OK (1 when every
# message sent was acknowledged and counted once at the sink; else FAILED=1).
run_big() {
    local name=$1 port=$2 sid=$3 size=$4 count=$5 before t0 t1 last
    before=$(sink_count)
    start_sampler "$sid" "$RUN/$name.rss"
    t0=$(now)
    "${ON_HARNESS[@]}" "$LOADGEN" big --addr "$IP:$port" --size "$size" --messages "$count" --ca "$CA" \
        --header "$INFO_HEADER" --header "$TENANT_HEADER" >"$RUN/$name.json" 2>"$RUN/$name.err" || true
    t1=$(now)
    BIG_ACKED=$(json "$RUN/$name.json" acked)
    BIG_ACKED=${BIG_ACKED:-0}
    BIG_DELIVERED=$(($(wait_sink $((before + BIG_ACKED))) - before))
    stop_sampler
    last=$(sink_last)
    BIG_BYTES=$(json "$RUN/$name.json" size)
    BIG_BYTES=${BIG_BYTES:-$size}
    BIG_CLIENT_S=$(calc "$t1 - $t0" 3)
    BIG_E2E_S=$(calc "($last > $t0 ? $last : $t1) - $t0" 3)
    read -r BIG_HWM BIG_PSS BIG_PROCS BIG_ANON <"$RUN/$name.rss"
    BIG_OK=1
    if [ "$BIG_ACKED" != "$count" ] || [ "$BIG_DELIVERED" != "$count" ]; then
        BIG_OK=0
        FAILED=1
    fi
}

# ---------------------------------------------------------------- Postfix (private instance)
# The daemons a private Postfix needs, shared with the tests' Postfix downstream.
POSTFIX_SERVICES=$(cat "$ROOT/tests/support/postfix-services.cf")

# start_postfix NAME [EXTRA_MAIN_CF] : a fresh private Postfix relaying contoso.com to the sink;
# sets PF_PORT, PF_SID, PF_DIR.
start_postfix() {
    local name=$1 extra=${2:-} d q
    d=$RUN/postfix-$name
    PF_DIR=$d
    PF_PORT=$(free_port)
    mkdir -p "$d/etc" "$d/data"
    chmod 755 "$d" "$d/etc"
    for q in active bounce corrupt defer deferred flush hold incoming private saved trace; do
        mkdir -p "$d/spool/$q"
        chown postfix "$d/spool/$q"
        chmod 700 "$d/spool/$q"
    done
    mkdir -p "$d/spool/maildrop" "$d/spool/public" "$d/spool/pid"
    chown postfix:postdrop "$d/spool/maildrop" "$d/spool/public"
    chmod 730 "$d/spool/maildrop"
    chmod 710 "$d/spool/public"
    chown postfix "$d/data"
    cat >"$d/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $d/spool
data_directory = $d/data
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.bench.test
mydestination =
inet_interfaces = $IP
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = contoso.com
relayhost = [$IP]:$SINK_PORT
smtpd_recipient_restrictions = permit_mynetworks, reject
smtpd_tls_security_level = may
smtpd_tls_cert_file = $CERT
smtpd_tls_key_file = $KEY
smtp_tls_security_level = may
smtp_tls_CAfile = $CA
smtp_tls_session_cache_database = btree:\${data_directory}/smtp_scache
smtpd_tls_session_cache_database = btree:\${data_directory}/smtpd_scache
smtp_tls_loglevel = 1
maillog_file = $d/maillog
maillog_file_prefixes = /tmp, /var, $d
notify_classes =
biff = no
smtp_host_lookup = native
$extra
EOF
    {
        printf '%s:%s inet n - n - - smtpd\n' "$IP" "$PF_PORT"
        printf '%s\n' "$POSTFIX_SERVICES"
    } >"$d/etc/master.cf"
    start_session "$d/master.out" "${ON_SERVER[@]}" env MAIL_CONFIG="$d/etc" "$MASTER" -c "$d/etc" -d
    PF_SID=$LAST_SID
    wait_port "$PF_PORT" "Postfix ($name)" "$PF_SID" "$d/maillog"
}

count_in() { grep -c -- "$2" "$1" 2>/dev/null || true; }

postfix_tls_note() {
    local d=$1 n
    note "Postfix: $(count_in "$d/maillog" 'TLS connection established to') TLS connections to the sink, $(count_in "$d/maillog" 'status=sent') deliveries logged, $(count_in "$d/maillog" 'status=deferred') deferrals"
}

# ---------------------------------------------------------------- DNS for auth and dnsbl
# A private knotd on loopback, authoritative for the sender's domain (SPF passes for loopback,
# DMARC p=none) and for a block list listing only 127.0.0.2; its config and zones live in the run
# folder. (A closed port would not do: a UDP question to it waits for its timeout.) Sets
# DNS_SERVERS, the [dns] servers value.
start_dns() {
    local d=$RUN/knot port
    port=$(free_port)
    mkdir -p "$d/zones" "$d/storage"
    printf '%s\n' '$ORIGIN example.org.' '$TTL 3600' \
        '@ SOA ns.invalid. hostmaster.invalid. 1 3600 600 86400 3600' '@ NS ns.invalid.' \
        '@ TXT "v=spf1 ip4:127.0.0.0/8 -all"' '_dmarc TXT "v=DMARC1; p=none"' >"$d/zones/example.org.zone"
    printf '%s\n' '$ORIGIN bl.bench.test.' '$TTL 3600' \
        '@ SOA ns.invalid. hostmaster.invalid. 1 3600 600 86400 3600' '@ NS ns.invalid.' \
        '2.0.0.127 A 127.0.0.2' >"$d/zones/bl.bench.test.zone"
    printf '%s\n' 'server:' "    rundir: $d" "    listen: $IP@$port" 'database:' "    storage: $d/storage" \
        'log:' '  - target: stderr' '    any: warning' 'template:' '  - id: default' "    storage: $d/zones" \
        '    file: "%s.zone"' '    zonefile-sync: -1' '    journal-content: none' \
        'zone:' '  - domain: example.org' '  - domain: bl.bench.test' >"$d/knot.conf"
    start_session "$d/knotd.log" "${ON_HARNESS[@]}" /usr/sbin/knotd -c "$d/knot.conf"
    wait_port "$port" knotd "$LAST_SID" "$d/knotd.log"
    DNS_SERVERS="\"$IP:$port\""
    note "Knot DNS on $IP:$port serves example.org (SPF, DMARC) and bl.bench.test (DNSBL)"
}

# ---------------------------------------------------------------- rspamd (private instance)
# start_rspamd : a private rspamd (the Debian package's configuration, with local overrides in the
# run folder through --var LOCAL_CONFDIR: nothing under /etc is edited) on loopback free ports:
# the normal worker (/checkv2: exogate's rspamd check) and the proxy worker in milter mode (a
# Postfix's smtpd_milters) handing each message to that normal worker, as the package sets them
# up. Its DNS asks the private Knot (call start_dns first), so no query leaves the machine (it
# answers REFUSED for names it does not serve, which rspamd treats as a failure at once). Worker
# counts are the package's unless RSPAMD_WORKERS is given. The compiled hyperscan databases are
# kept in RSPAMD_CACHE across runs (a cold start compiles them: 10-20 s). Sets RSPAMD_SID,
# RSPAMD_URL (normal worker), RSPAMD_MILTER (the proxy's port), RSPAMD_CONTROLLER (/stat), RSPAMD_DIR.
start_rspamd() {
    local d=$RUN/rspamd normal milter ctl cache=${RSPAMD_CACHE:-$TARGET/bench-cache/rspamd} count=""
    if [ ! -x /usr/bin/rspamd ]; then
        say "installing: rspamd"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rspamd >/dev/null
    fi
    [ -n "${DNS_SERVERS:-}" ] || die "start_rspamd needs the private Knot (start_dns) first"
    RSPAMD_DIR=$d
    normal=$(free_port) milter=$(free_port) ctl=$(free_port)
    mkdir -p "$d/conf/local.d" "$d/db" "$d/run" "$d/log" "$cache"
    [ -n "${RSPAMD_WORKERS:-}" ] && count="count = $RSPAMD_WORKERS;"
    printf 'dns { nameserver = [%s]; }\nhs_cache_dir = "%s";\n' "$DNS_SERVERS" "$cache" >"$d/conf/local.d/options.inc"
    printf 'type = "file";\nlevel = "warning";\n' >"$d/conf/local.d/logging.inc"
    printf 'bind_socket = "%s:%s";\n%s\n' "$IP" "$normal" "$count" >"$d/conf/local.d/worker-normal.inc"
    printf 'bind_socket = "%s:%s";\n' "$IP" "$ctl" >"$d/conf/local.d/worker-controller.inc"
    printf 'bind_socket = "%s:%s";\n%s\nupstream "local" { default = yes; hosts = "%s:%s"; }\n' \
        "$IP" "$milter" "$count" "$IP" "$normal" >"$d/conf/local.d/worker-proxy.inc"
    # -i: as root without dropping to _rspamd, so the cache stays owned by whoever runs the script.
    start_session "$d/stdout.log" /usr/bin/rspamd -f -i -c /etc/rspamd/rspamd.conf \
        --var "LOCAL_CONFDIR=$d/conf" --var "DBDIR=$d/db" --var "RUNDIR=$d/run" --var "LOGDIR=$d/log"
    RSPAMD_SID=$LAST_SID
    for _ in $(seq 1 1800); do
        kill -0 "$RSPAMD_SID" 2>/dev/null || die "rspamd exited: $(tail -n 5 "$d/stdout.log" "$d/log/rspamd.log" 2>/dev/null)"
        if curl -s "http://$IP:$normal/ping" 2>/dev/null | grep -q pong &&
            ss -Hltn "sport = :$milter" 2>/dev/null | grep -q .; then
            break
        fi
        sleep 0.1
    done
    curl -s "http://$IP:$normal/ping" | grep -q pong || die "rspamd did not answer on $IP:$normal: $(tail -n 5 "$d/log/rspamd.log" 2>/dev/null)"
    RSPAMD_URL="http://$IP:$normal"
    RSPAMD_MILTER=$milter
    RSPAMD_CONTROLLER="http://$IP:$ctl"
    note "rspamd $(/usr/bin/rspamd --version 2>/dev/null | grep -o '[0-9][0-9.]*' | head -n 1): normal worker $RSPAMD_URL, milter (proxy) on $IP:$milter, $(pgrep -s "$RSPAMD_SID" | wc -l) processes, DNS $DNS_SERVERS"
}

# The [policy.default] of the exogate config: none (the built-in default, which includes auth),
# or a list of checks. A [policy.default] table replaces the built-in list, so `default` is read
# from the source (BUILTIN_DEFAULTS in src/checks/mod.rs): a check added to the defaults later is
# then in every line, and lines differ only by what they name. POLICY_CHECKS is that list as
# words: `default` (the built-in list), a kind to add (`dnsbl`: an IP and a domain zone on the
# private Knot's block list; `rspamd`: the private rspamd at RSPAMD_URL, see start_rspamd; other
# kinds with their defaults), `-KIND` to leave one out (e.g. "default -auth"). Empty: no
# [policy.default], unless DNSBL=1, which is "default dnsbl".
builtin_checks() {
    sed -n '/BUILTIN_DEFAULTS: \[/,/\];/p' "$ROOT/src/checks/mod.rs" | grep -o '"[a-z_]*"' | tr -d '"'
}
policy_section() {
    local words=${POLICY_CHECKS:-} w k kinds=() drop=" "
    [ -z "$words" ] && [ "$DNSBL" = 1 ] && words="default dnsbl"
    [ -n "$words" ] || return 0
    for w in $words; do
        case $w in
            -*) drop+="${w#-} " ;;
            default)
                k=$(builtin_checks)
                [ -n "$k" ] || die "cannot read BUILTIN_DEFAULTS from src/checks/mod.rs"
                # shellcheck disable=SC2206
                kinds+=($k)
                ;;
            *) kinds+=("$w") ;;
        esac
    done
    printf '[policy.default]\n'
    for k in "${kinds[@]}"; do
        [[ $drop == *" $k "* ]] && continue
        printf '[[policy.default.check]]\nkind = "%s"\n' "$k"
        case $k in
            dnsbl) printf '[[policy.default.check.zone]]\nname = "bl.bench.test"\ntype = "%s"\n' ip domain ;;
            rspamd) printf 'url = "%s"\n' "${RSPAMD_URL:?start_rspamd first}" ;;
        esac
    done
}

# The [store] of the exogate config: none (the embedded SQLite store in the state folder, the
# default), or with STORE=0 a PostgreSQL URL on a loopback port where nothing listens: the store
# is "unavailable at start", the writer's batches fail and wait (0.2 s, 2 s, 10 s), the 16-record
# queue stays full, and the mail path builds every record and drops it at the channel (counted in
# exogate_store_writes_total{result="dropped"}). Nothing is written: the difference from a run
# with the store is what writing the events costs.
store_section() {
    [ "$STORE" = 0 ] || return 0
    printf '[store]\nurl = "postgresql://bench@%s:%s/none"\nwrite_queue = 16\n' "$IP" "$(free_port)"
}

# ---------------------------------------------------------------- exogate
# The tenants of the exogate config: the benchmark tenant, or GW_TENANTS_TOML (a curve's own
# [[tenant]] tables, e.g. thousands of them) instead. GW_EXTRA_TOML is appended to the config
# (a curve's own settings; a key given twice makes check-config fail, which is the point), and
# GW_SERVER_TOML to its [server] table (e.g. commit_log_size = 0).
tenant_section() {
    if [ -n "${GW_TENANTS_TOML:-}" ]; then
        printf '%s\n' "$GW_TENANTS_TOML"
        return 0
    fi
    printf '[[tenant]]\nportal = "contoso"\ndomains = ["contoso.com"]\ntenant_id = "%s"\ndeliver_to = ["%s:%s"]\n' \
        "$TENANT_ID" "$IP" "$SINK_PORT"
}

# start_exogate NAME MODE : a fresh gateway (own state folder); sets GW_PORT, GW_SID, GW_DIR, GW_ADMIN.
start_exogate() {
    local name=$1 mode=$2 d retry=${GW_RETRY:-'["5s"]'}
    d=$RUN/exogate-$name
    GW_DIR=$d
    GW_PORT=$(free_port)
    GW_ADMIN=$(free_port)
    mkdir -p "$d/state"
    # No [policy.default] (unless DNSBL=1): the default policy runs every built-in check with its
    # defaults, auth included, asking the private Knot.
    cat >"$d/gateway.toml" <<EOF
[server]
hostname = "gw.bench.test"
listen = ["$IP:$GW_PORT"]
state_dir = "$d/state"
max_message_size = 209715200
max_connections = 12000
max_connections_per_ip = 12000
${GW_SERVER_TOML:-}

[tls]
cert = "$CERT"
key = "$KEY"

[admission]
allow = ["127.0.0.0/8"]

[delivery]
mode = "$mode"
# A deferral is retried within the drain timeout (the production default starts at 1m);
# GW_RETRY replaces the list (a curve that keeps a backlog deferred).
retry = $retry

[relay]
ca = "$CA"

[dns]
servers = [$DNS_SERVERS]

[admin]
listen = "$IP:$GW_ADMIN"

[log]
level = "${GW_LOG_LEVEL:-info}"

$(tenant_section)

$(policy_section)

$(store_section)

${GW_EXTRA_TOML:-}
EOF
    "$EXOGATE" check-config --config "$d/gateway.toml" >"$d/check-config.out" 2>&1 ||
        die "exogate check-config failed: $(cat "$d/check-config.out")"
    # As deployed: deploy/exogate.service and the Dockerfile fix glibc's mmap threshold
    # (GW_MALLOC_ENV="" measures glibc's adaptive default instead).
    start_session "$d/gateway.log" "${ON_SERVER[@]}" env ${GW_MALLOC_ENV-MALLOC_MMAP_THRESHOLD_=4194304} "$EXOGATE" run --config "$d/gateway.toml"
    GW_SID=$LAST_SID
    wait_port "$GW_PORT" "exogate ($name)" "$GW_SID" "$d/gateway.log"
}

exogate_notes() {
    local d=$1 active
    curl -s "http://$IP:$GW_ADMIN/metrics" >"$d/metrics.txt" 2>/dev/null || true
    active=$(find "$d/state/queue/active" -name '*.q' 2>/dev/null | wc -l)
    note "exogate: $(grep -E '^exogate_(messages|deliveries|store_writes)_total' "$d/metrics.txt" 2>/dev/null | sed 's/^exogate_//' | tr '\n' ' ')queue files left: $active; log lines at WARN/ERROR: $(count_in "$d/gateway.log" ' WARN \| ERROR ')"
    if grep -qE ' (WARN|ERROR) ' "$d/gateway.log"; then
        # head stops reading early: grep's SIGPIPE must not fail the caller under pipefail.
        grep -E ' (WARN|ERROR) ' "$d/gateway.log" | sed 's/^/  #   /' | cut -c1-220 | head -n 3 || true
    fi
}

