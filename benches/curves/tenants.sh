#!/usr/bin/env bash
# The tenants curve (issue 16): exogate with 1 → 10,000 tenants of DOMAINS_PER_TENANT domains each
# (10,000 × 5 = 50,000 domains), against Postfix relaying the same domains (relay_domains and
# transport_maps as hash: maps), in one run. Per point it measures (times: median of REPEAT):
#   exogate  `check-config` wall time; start: `exogate run` launched → its first 220 banner
#            (a restart over the state folder of the first start); reload: SIGHUP →
#            exogate_reloads_total{result="ok"} grows on /metrics (incremented right after the new
#            snapshot is swapped in, src/app/reload.rs); VmRSS after start and after the reloads,
#            VmHWM; RCPT round trip p50/p99 (STARTTLS sessions, RCPTs to random tenants'
#            domains, benches/curves/tenants_probe.py) and the server's CPU time per RCPT.
#   Postfix  `postmap` of both maps; start: `master` launched → the first 220 banner (smtpd
#            spawned and its maps opened); the same RCPT client and CPU time (every process).
# Then a delivery check through each server (CHECK_MESSAGES messages to the sink, lib.sh's
# run_loadgen): a message acknowledged but not counted, or a RCPT not answered 250, is a FAILURE.
# Prints a table, writes it and a .dat to $OUT and draws three PNGs there (time, RSS and RCPT
# cost against N, log x) with benches/curves/plot.sh. Also prints the marginal cost per added
# tenant between points: growing with N would be worse than linear.
#
# Owns: the run folder and processes of benches/load/lib.sh (sourced: sink, Knot, Postfix,
# exogate) and $OUT/tenants*. Invariants: loopback only; exogate and Postfix get the same domains,
# client, seed and addresses at every point; figures are compared within one run only. Never
# touches /etc/postfix (postmap reads a minimal main.cf in the run folder).
#
# Usage: flock /work/wt/bench.lock benches/curves/tenants.sh     (as root)
# Env:   POINTS="1 10 100 1000 10000"  tenant counts
#        DOMAINS_PER_TENANT=5          domains per tenant
#        REPEAT=3                      timings per figure (check-config, start, reload, postmap)
#        RCPTS=5000 RCPT_WARMUP=500    timed and untimed RCPTs per session
#        RCPT_ROUNDS=3                 sessions per server and point (RCPT figures: their median)
#        PER_TX=5                      RCPTs per transaction (exogate binds a transaction to one tenant)
#        CHECK_MESSAGES=100            messages of the delivery check per server and point
#        OUT=benches/curves/results    where the table, .dat and PNGs go
#        and lib.sh's: SKIP_BUILD, KEEP, BENCH_TMP, EXOGATE_BIN, LOADGEN_BIN, CARGO_TARGET_DIR
set -euo pipefail

POINTS=${POINTS:-"1 10 100 1000 10000"}
DOMAINS_PER_TENANT=${DOMAINS_PER_TENANT:-5}
REPEAT=${REPEAT:-3}
RCPTS=${RCPTS:-5000}
RCPT_WARMUP=${RCPT_WARMUP:-500}
RCPT_ROUNDS=${RCPT_ROUNDS:-3}
PER_TX=${PER_TX:-5}
CHECK_MESSAGES=${CHECK_MESSAGES:-100}
# lib.sh's load for run_loadgen: the delivery check.
MESSAGES=$CHECK_MESSAGES
SESSIONS=4
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# shellcheck source=benches/load/lib.sh
source "$HERE/../load/lib.sh"

OUT=${OUT:-$ROOT/benches/curves/results}
mkdir -p "$OUT"
TABLE=$OUT/tenants.txt
DAT=$OUT/tenants.dat
PROBE=$HERE/tenants_probe.py
command -v python3 >/dev/null || die "python3 is needed for the RCPT client"
# The commit measured, before this run rewrites its own results (which would read as -dirty).
VERSION=$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo '?')
: >"$TABLE"
out() { printf '%s\n' "$*" | tee -a "$TABLE"; }

out "== exogate tenants curve =="
out "date:      $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
out "machine:   $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
out "versions:  exogate $VERSION, Postfix $(postconf -d -h mail_version 2>/dev/null || echo '?'), $(python3 --version)"
out "points:    N = $POINTS tenants × $DOMAINS_PER_TENANT domains; times are medians of $REPEAT; RCPT: $RCPT_ROUNDS STARTTLS sessions (median) of $RCPTS timed RCPTs (+$RCPT_WARMUP warm-up), $PER_TX per transaction, random tenants"
out ""

start_dns

# domains_file N FILE : one line per tenant, its domains; tenant 0's first is contoso.com (the
# delivery check's recipient domain; loadgen stamps its mail with TENANT_ID and portal contoso).
domains_file() {
    awk -v n="$1" -v k="$DOMAINS_PER_TENANT" 'BEGIN {
        for (i = 0; i < n; i++) {
            line = (i == 0) ? "contoso.com" : sprintf("t%d-d0.bench.test", i)
            for (j = 1; j < k; j++) line = line sprintf(" t%d-d%d.bench.test", i, j)
            print line
        }
    }' >"$2"
}

# tenants_toml FILE : the [[tenant]] tables for start_exogate (GW_TENANTS_TOML), every tenant
# with its own tenant_id and delivering to the sink.
tenants_toml() {
    awk -v ip="$IP" -v port="$SINK_PORT" -v tid0="$TENANT_ID" '{
        i = NR - 1
        portal = (i == 0) ? "contoso" : "t" i
        tid = (i == 0) ? tid0 : sprintf("%08x-0000-4000-8000-%012x", i, i)
        printf "[[tenant]]\nportal = \"%s\"\ndomains = [", portal
        for (j = 1; j <= NF; j++) printf "%s\"%s\"", (j > 1 ? ", " : ""), $j
        printf "]\ntenant_id = \"%s\"\ndeliver_to = [\"%s:%s\"]\n\n", tid, ip, port
    }' "$1"
}

mb() { calc "$1 / 1024" 1; }
ratio() { if [ "$1" != - ] && [ "$2" != - ]; then calc "$1 / $2" 2; else echo -; fi; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# timed MEDIAN_VAR CMD... : runs CMD REPEAT times; sets MEDIAN_VAR to the median wall seconds.
timed() {
    local var=$1 t0 all=() i
    shift
    for i in $(seq 1 "$REPEAT"); do
        t0=$(now)
        "$@" >/dev/null 2>"$RUN/timed.err" || die "$* failed: $(tail -n 3 "$RUN/timed.err")"
        all+=("$(calc "$(now) - $t0" 4)")
    done
    printf -v "$var" '%s' "$(median "${all[@]}")"
}

# timed_start PORT LOG CMD... : starts CMD in a session (sets LAST_SID) and waits for its first 220
# banner on PORT; appends the seconds from launch to banner to STARTS.
timed_start() {
    local port=$1 log=$2 t0
    shift 2
    t0=$(now)
    start_session "$log" "$@"
    python3 "$PROBE" banner --addr "$IP:$port" --pid "$LAST_SID" >"$RUN/banner.json" 2>"$RUN/banner.err" ||
        die "no banner on $port: $(tail -n 1 "$RUN/banner.err"); $(tail -n 3 "$log")"
    STARTS+=("$(calc "$(json "$RUN/banner.json" t) - $t0" 4)")
}

# rcpt_probe NAME PORT SID DOMAINS : the RCPT client, RCPT_ROUNDS sessions; sets RC_P50 RC_P99
# (round trips, µs) and RC_CPU (CPU µs the server spent per RCPT, the session's MAIL, RSET and
# STARTTLS included: on-CPU time, less sensitive than round trips to a busy neighbour), each the
# median over the rounds; FAILED on a refusal.
rcpt_probe() {
    local name=$1 port=$2 sid=$3 domains=$4 j refused cpu0 r p50s=() p99s=() cpus=()
    RC_P50=- RC_P99=- RC_CPU=-
    for r in $(seq 1 "$RCPT_ROUNDS"); do
        j=$RUN/$name.rcpt.json
        cpu0=$(cpu_ns_of_session "$sid")
        python3 "$PROBE" rcpt --addr "$IP:$port" --ca "$CA" --domains "$domains" --count "$RCPTS" \
            --warmup "$RCPT_WARMUP" --per-tx "$PER_TX" --sender "$FROM" --seed "$r" >"$j" 2>"$RUN/$name.rcpt.err" ||
            { NOTES+=("$name: FAILURE: the RCPT client failed: $(tail -n 1 "$RUN/$name.rcpt.err")"); FAILED=1; return 0; }
        cpus+=("$(calc "($(cpu_ns_of_session "$sid") - $cpu0) / 1000 / ($RCPTS + $RCPT_WARMUP)" 1)")
        p50s+=("$(json "$j" p50_us)")
        p99s+=("$(json "$j" p99_us)")
        refused=$(json "$j" refused)
        if [ "$refused" != 0 ]; then
            NOTES+=("$name: FAILURE: $refused RCPTs not answered 250, the first $(json "$j" first_refusal)")
            FAILED=1
        fi
    done
    RC_P50=$(median "${p50s[@]}") RC_P99=$(median "${p99s[@]}") RC_CPU=$(median "${cpus[@]}")
}

# rcpt_note NAME : the RCPT client's detail: a transaction's first RCPT against the others (p50),
# MAIL and RSET (p50), the slowest RCPT and how many took over 100 ms (the last round).
rcpt_note() {
    local j=$RUN/$1.rcpt.json
    [ -s "$j" ] || return 0
    printf 'RCPT p50 µs first in transaction %s, others %s; MAIL %s, RSET %s; max %s µs, %s over 100 ms; %s RCPTs in %s s' \
        "$(json "$j" first_rcpt_p50_us)" "$(json "$j" other_rcpt_p50_us)" "$(json "$j" mail_p50_us)" "$(json "$j" rset_p50_us)" \
        "$(json "$j" max_us)" "$(json "$j" over_100ms)" "$(json "$j" rcpts)" "$(json "$j" session_s)"
}

# delivery_check NAME PORT SID [loadgen args] : CHECK_MESSAGES messages through the server to the
# sink (lib.sh's run_loadgen and report: FAILED=1 unless every one is acknowledged and counted).
delivery_check() {
    local name=$1 line
    shift
    run_loadgen "$name" "delivery check" "$@" >"$RUN/$name.check" 2>&1
    line=$(grep -o 'ok ([0-9/]*)\|FAILURE.*' "$RUN/$name.check" | head -n 1)
    CHECK_TEXT=${line:-FAILURE: $(tail -n 2 "$RUN/$name.check" | tr '\n' ' ')}
    [ -n "$line" ] || FAILED=1
}

ROWF='%6s %7s | %7s %7s %7s %6s %6s %6s %12s %5s | %7s %7s %12s %5s | %5s %5s %5s %5s %5s\n'
# shellcheck disable=SC2059
{
    printf "$ROWF" "" "" "exogate" "" "" "" "" "" "" "" "Postfix" "" "" "" "exogate/Postfix" "" "" "" ""
    printf "$ROWF" N domains "check s" "start s" "reload s" "RSS MB" "re MB" "HWM MB" "RCPT µs p50/99" "CPU" \
        "postmap" "start s" "RCPT µs p50/99" "CPU" "p50" "p99" "CPU" "load" "start"
} | tee -a "$TABLE"
{
    echo "# exogate tenants curve, $(date -u '+%Y-%m-%d %H:%M UTC'), exogate $VERSION"
    echo "# N domains check_s start_s reload_s rss_start_mb rss_reload_mb hwm_mb ex_p50_us ex_p99_us pf_postmap_s pf_start_s pf_p50_us pf_p99_us ex_cpu_us_per_rcpt pf_cpu_us_per_rcpt"
} >"$DAT"
NOTES=()
# postmap reads a main.cf (for its defaults only): a minimal one, never /etc/postfix's.
PM_ETC=$RUN/postmap-etc
mkdir -p "$PM_ETC"
echo "compatibility_level = 3.6" >"$PM_ETC/main.cf"
postmaps() { postmap -c "$PM_ETC" "hash:$1/relay_domains" && postmap -c "$PM_ETC" "hash:$1/transport"; }

for n in $POINTS; do
    ex_check=- pf_postmap=- # set by `timed`
    d=$RUN/tenants-$n
    mkdir -p "$d"
    domains_file "$n" "$d/domains"
    ndom=$(wc -w <"$d/domains" | tr -d ' ')

    # ---------------------------------------------------------------- exogate
    GW_TENANTS_TOML=$(tenants_toml "$d/domains")
    start_exogate "t$n" queue
    timed ex_check "$EXOGATE" check-config --config "$GW_DIR/gateway.toml"
    # Restarts over the state folder the first start made, each timed to the first banner.
    STARTS=()
    for i in $(seq 1 "$REPEAT"); do
        stop_session "$GW_SID"
        timed_start "$GW_PORT" "$GW_DIR/gateway-$i.log" "$EXOGATE" run --config "$GW_DIR/gateway.toml"
        GW_SID=$LAST_SID
    done
    ex_start=$(median "${STARTS[@]}")
    curl -fsS "http://$IP:$GW_ADMIN/readyz" >/dev/null || { NOTES+=("exogate t$n: FAILURE: /readyz not ready"); FAILED=1; }
    rss_start=$(mem_of_session "$GW_SID" VmRSS)
    reloads=() rss_reloads=()
    for i in $(seq 1 "$REPEAT"); do
        python3 "$PROBE" reload --pid "$GW_SID" --metrics "http://$IP:$GW_ADMIN/metrics" >"$d/reload.json" 2>"$d/reload.err" ||
            die "exogate t$n: reload: $(tail -n 1 "$d/reload.err")"
        reloads+=("$(json "$d/reload.json" reload_s)")
        rss_reloads+=("$(mb "$(mem_of_session "$GW_SID" VmRSS)")")
    done
    ex_reload=$(median "${reloads[@]}")
    rss_reload=$(mem_of_session "$GW_SID" VmRSS)
    hwm=$(mem_of_session "$GW_SID" VmHWM)
    rcpt_probe "ex-$n" "$GW_PORT" "$GW_SID" "$d/domains"
    ex_p50=$RC_P50 ex_p99=$RC_P99 ex_cpu=$RC_CPU
    delivery_check "ex-$n" "$GW_PORT" "$GW_SID" --starttls --ca "$CA"
    NOTES+=("N=$n exogate: delivery check $CHECK_TEXT; VmRSS MB after each reload: ${rss_reloads[*]}; $(rcpt_note "ex-$n")")
    stop_session "$GW_SID"

    # ---------------------------------------------------------------- Postfix
    awk '{ for (j = 1; j <= NF; j++) print $j, "OK" }' "$d/domains" >"$d/relay_domains"
    awk -v t="smtp:[$IP]:$SINK_PORT" '{ for (j = 1; j <= NF; j++) print $j, t }' "$d/domains" >"$d/transport"
    timed pf_postmap postmaps "$d"
    chmod 644 "$d"/*.db
    # The recipient's domain decides, as in exogate: relay_domains (permit_auth_destination at
    # RCPT; mynetworks grants nothing), the transport map routes it to the sink. The junk command
    # limit is raised: past 100 RSETs smtpd counts each as an error, sleeps 1 s per error past
    # the soft limit and hangs up at the hard one (exogate has no such limit on RSET). And
    # in_flow_delay = 0: smtpd would pause up to 1 s at a transaction's first RCPT for want of
    # flow tokens, which only deliveries return, and these transactions all end in RSET.
    start_postfix "t$n" "relay_domains = hash:$d/relay_domains
transport_maps = hash:$d/transport
smtpd_relay_restrictions = permit_auth_destination, reject
smtpd_recipient_restrictions = permit_auth_destination, reject
smtpd_junk_command_limit = 1000000
in_flow_delay = 0"
    STARTS=()
    for i in $(seq 1 "$REPEAT"); do
        stop_session "$PF_SID"
        timed_start "$PF_PORT" "$PF_DIR/master-$i.out" env MAIL_CONFIG="$PF_DIR/etc" "$MASTER" -c "$PF_DIR/etc" -d
        PF_SID=$LAST_SID
    done
    pf_start=$(median "${STARTS[@]}")
    rcpt_probe "pf-$n" "$PF_PORT" "$PF_SID" "$d/domains"
    pf_p50=$RC_P50 pf_p99=$RC_P99 pf_cpu=$RC_CPU
    delivery_check "pf-$n" "$PF_PORT" "$PF_SID" --starttls --ca "$CA"
    NOTES+=("N=$n Postfix: delivery check $CHECK_TEXT; $(rcpt_note "pf-$n")")
    stop_session "$PF_SID"

    # shellcheck disable=SC2059
    printf "$ROWF" "$n" "$ndom" "$ex_check" "$ex_start" "$ex_reload" "$(mb "$rss_start")" "$(mb "$rss_reload")" \
        "$(mb "$hwm")" "$ex_p50/$ex_p99" "$ex_cpu" "$pf_postmap" "$pf_start" "$pf_p50/$pf_p99" "$pf_cpu" \
        "$(ratio "$ex_p50" "$pf_p50")" "$(ratio "$ex_p99" "$pf_p99")" "$(ratio "$ex_cpu" "$pf_cpu")" "$(ratio "$ex_check" "$pf_postmap")" \
        "$(ratio "$ex_start" "$pf_start")" | tee -a "$TABLE"
    echo "$n $ndom $ex_check $ex_start $ex_reload $(mb "$rss_start") $(mb "$rss_reload") $(mb "$hwm") $ex_p50 $ex_p99 $pf_postmap $pf_start $pf_p50 $pf_p99 $ex_cpu $pf_cpu" |
        sed 's/ - / nan /g; s/ -$/ nan/' >>"$DAT"
done

out ""
for line in "${NOTES[@]}"; do out "  # $line"; done
# Growth: the marginal cost per added tenant between consecutive points. Flat (or falling) is
# linear or better; growing with N is worse than linear.
out "  # marginal cost per added tenant between points (µs per tenant; RSS in KB per tenant):"
awk '!/^#/ {
    if (pn != "") {
        dn = $1 - pn
        printf "  #   %5d → %-5d  check-config %6.1f  start %6.1f  reload %6.1f  RSS %5.2f KB | postmap %6.1f  Postfix start %6.1f\n",
            pn, $1, ($3 - pc) * 1e6 / dn, ($4 - ps) * 1e6 / dn, ($5 - pr) * 1e6 / dn, ($6 - pm) * 1024 / dn,
            ($11 - pp) * 1e6 / dn, ($12 - pfs) * 1e6 / dn
    }
    pn = $1; pc = $3; ps = $4; pr = $5; pm = $6; pp = $11; pfs = $12
}' "$DAT" | tee -a "$TABLE"
# last_over_first COLUMN : the figure at the largest N over the one at the smallest.
last_over_first() { awk -v c="$1" '!/^#/ { if (f == "") f = $c; l = $c } END { printf "%.2f", (f > 0 ? l / f : 0) }' "$DAT"; }
out "  # RCPT cost at the largest N over the smallest: round trip p50 exogate $(last_over_first 9), Postfix $(last_over_first 13); server CPU exogate $(last_over_first 15), Postfix $(last_over_first 16)"
out ""
out "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$FAILED" = 0 ]; then out "RESULT: ok"; else out "RESULT: FAILURE"; fi

PLOT=$HERE/plot.sh
"$PLOT" "$OUT/tenants-time.png" "Configuration load, start and reload against tenants ($DOMAINS_PER_TENANT domains each)" "tenants" "seconds" "$DAT" \
    --logx --logy 3:"exogate check-config" 4:"exogate start (launch to banner)" 5:"exogate reload (SIGHUP to in force)" \
    11:"Postfix postmap (both maps)" 12:"Postfix start (launch to banner)"
"$PLOT" "$OUT/tenants-rss.png" "exogate memory against tenants ($DOMAINS_PER_TENANT domains each)" "tenants" "MB" "$DAT" \
    --logx 6:"VmRSS after start" 7:"VmRSS after $REPEAT reloads" 8:"VmHWM"
"$PLOT" "$OUT/tenants-rcpt.png" "RCPT cost against tenants (median of $RCPT_ROUNDS STARTTLS sessions, random tenants)" "tenants" "µs" "$DAT" \
    --logx --logy 9:"exogate round trip p50" 10:"exogate round trip p99" 15:"exogate server CPU per RCPT" \
    13:"Postfix round trip p50" 14:"Postfix round trip p99" 16:"Postfix server CPU per RCPT"
say "wrote $TABLE, $DAT and $OUT/tenants-{time,rss,rcpt}.png"
[ "$FAILED" = 0 ] || exit 1
