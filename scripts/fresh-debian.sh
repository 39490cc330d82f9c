#!/usr/bin/env bash
# Proves the README's two commands on a clean Debian 12 (bookworm) root, the way
# a newcomer meets them: a minimal debootstrapped root that has only what a new
# machine of our kind has (the Rust toolchain by rustup, python3 with pip, git,
# gcc, ca-certificates, and the machine's way to Debian's mirror, PyPI and
# crates.io), a `git clone` of the repository at one commit, then exactly the
# README's test command, then its quick start: the gateway started on
# config/gateway.toml, asked on its SMTP and admin ports, tried with the
# README's swaks and `queue list` commands, and stopped with SIGTERM.
#
# Usage (as root):
#   scripts/fresh-debian.sh [--commit REV] [--repo DIR] [--cache DIR]
#                           [--reuse-registry] [--keep] [--verbose]
#                           [--skip-tests] [--skip-quickstart] [--rebuild-base]
#                           [--timeout DURATION]
#
#   --commit REV       commit to test (default: HEAD of the repository this script is in)
#   --repo DIR         repository to clone (default: the one this script is in)
#   --cache DIR        where the pristine root and the run logs live, outside the repo
#                      (default: $FRESH_CACHE or /var/cache/exogate-fresh)
#   --reuse-registry   copy this machine's ~/.cargo/registry into the root instead of
#                      letting cargo download every crate from crates.io
#   --keep             keep the run's root (CACHE/runs/ID/root) for a look afterwards
#   --verbose          stream each step's log to the terminal as well
#   --timeout D        limit per step, as for timeout(1) (default 3h)
#   --skip-tests / --skip-quickstart   leave out one of the two commands
#                      (the quick start's swaks try needs swaks, which the tests install)
#   --rebuild-base     debootstrap the pristine root again (e.g. for a newer point release)
#
# The pristine root is built once (CACHE/base); each run mounts a fresh overlay
# on it, so every run starts from the same clean state and leaves CACHE/base
# untouched. Logs stay in CACHE/runs/ID/logs. Everything runs in a private mount
# namespace (no mount is ever visible on the host) and every step in its own PID
# namespace (no daemon a test leaves behind outlives its step); a trap unmounts
# the root and removes the run's overlay even on failure. The test step shares
# the host's network (apt, PyPI, crates.io; tests use free loopback ports); the
# quick start runs in a private network namespace, because its ports (2525,
# 8025) are fixed and may be taken on a shared machine.
set -euo pipefail

die() { echo "fresh-debian: $*" >&2; exit 2; }
usage() { sed -n '/^# Usage/,/^# The pristine/p' "$0" | sed 's/^# \{0,1\}//' | head -n -1; }

script_dir="$(cd "$(dirname "$0")" && pwd)"
orig_args=("$@")
repo=""
rev="HEAD"
cache="${FRESH_CACHE:-/var/cache/exogate-fresh}"
reuse_registry=0
keep=0
verbose=0
skip_tests=0
skip_quickstart=0
rebuild_base=0
step_timeout="3h"
while [ $# -gt 0 ]; do
  case "$1" in
    --commit) rev="${2:?--commit needs a value}"; shift 2 ;;
    --repo) repo="${2:?--repo needs a value}"; shift 2 ;;
    --cache) cache="${2:?--cache needs a value}"; shift 2 ;;
    --reuse-registry) reuse_registry=1; shift ;;
    --keep) keep=1; shift ;;
    --verbose) verbose=1; shift ;;
    --skip-tests) skip_tests=1; shift ;;
    --skip-quickstart) skip_quickstart=1; shift ;;
    --rebuild-base) rebuild_base=1; shift ;;
    --timeout) step_timeout="${2:?--timeout needs a value}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, mounts, chroot)"
[ -n "$repo" ] || repo="$(git -C "$script_dir" rev-parse --show-toplevel)"
cache="$(mkdir -p "$cache" && cd "$cache" && pwd)"
case "$cache/" in "$(cd "$repo" && pwd)"/*) die "--cache must be outside the repository" ;; esac

# Everything below runs in a private mount namespace: the mounts die with it.
if [ -z "${FRESH_DEBIAN_NS:-}" ]; then
  exec env FRESH_DEBIAN_NS=1 unshare --mount --propagation private -- "$0" "${orig_args[@]}"
fi

commit="$(git -C "$repo" rev-parse --verify "$rev^{commit}")" || die "no commit $rev in $repo"
t_start=$(date +%s)
stamp() { date +%H:%M:%S; }
say() { echo "[$(stamp)] $*"; }
elapsed() { local s=$(( $(date +%s) - $1 )); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

# --- 1. the pristine root -------------------------------------------------------
# The mirror this machine's apt uses (deb822 or one-line sources).
mirror="$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
[ -n "$mirror" ] || mirror="$(awk '$1 == "deb" && $3 ~ /bookworm$/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)"
[ -n "$mirror" ] || mirror="http://deb.debian.org/debian"
# What a new machine of this kind has besides a minimal Debian: git, gcc (with
# the C library's headers it needs to link), python3 with pip, ca-certificates.
base_packages="ca-certificates,git,gcc,libc6-dev,python3,python3-pip"
base="$cache/base"
if [ $rebuild_base = 1 ] || [ ! -e "$base/.fresh-debian-complete" ]; then
  if ! command -v debootstrap >/dev/null; then
    say "installing debootstrap"
    apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 debootstrap
  fi
  say "debootstrapping bookworm (minbase + $base_packages) from $mirror into $base"
  rm -rf "$base.tmp" "$base"
  t0=$(date +%s)
  if ! debootstrap --variant=minbase --include="$base_packages" bookworm "$base.tmp" "$mirror" \
      >"$cache/debootstrap.log" 2>&1; then
    tail -n 40 "$cache/debootstrap.log"
    die "debootstrap failed (log: $cache/debootstrap.log)"
  fi
  rm -rf "$base.tmp/var/cache/apt/archives/"*.deb
  touch "$base.tmp/.fresh-debian-complete"
  mv "$base.tmp" "$base"
  say "pristine root ready in $(elapsed "$t0")"
fi

# --- 2. this run's copy ---------------------------------------------------------
run_id="$(date +%Y%m%d-%H%M%S)-${commit:0:10}"
run="$cache/runs/$run_id"
root="$run/root"
logs="$run/logs"
mkdir -p "$run/upper" "$run/work" "$root" "$logs"

cleanup() {
  local rc=$?
  set +e
  # Innermost first; -l as a last resort so the upper dir can be removed.
  findmnt -rn -o TARGET | awk -v r="$root" 'index($0, r) == 1' | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  if [ $keep = 0 ]; then
    rm -rf "$run/upper" "$run/work" "$root"
  else
    echo "kept the run's files: $run/upper (the root's changes over $base)"
  fi
  exit $rc
}
step_pid=""
trap cleanup EXIT
trap 'echo "interrupted"; [ -z "$step_pid" ] || { kill -TERM "$step_pid"; wait "$step_pid"; }; exit 130' INT TERM

say "run $run_id: commit $commit"
if ! mount -t overlay overlay -o "lowerdir=$base,upperdir=$run/upper,workdir=$run/work" "$root" 2>/dev/null; then
  # No overlayfs: a full copy (slower, same result).
  rmdir "$root" && cp -a "$base" "$root"
fi

# The machine's way to the registries, as a new machine of this kind has it:
# its apt sources and apt settings, its resolver, its extra trust anchors (the
# registries are reached through an egress proxy with its own CA) and pip's
# configuration. No apt proxy is set here (none in /etc/apt/apt.conf.d or the
# environment); one found there would be copied the same way.
rm -f "$root/etc/apt/sources.list"
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] && cp "$f" "$root$f"
done
for f in /etc/apt/apt.conf.d/*; do
  grep -qiE 'proxy|Check-Valid-Until|Check-Date' "$f" 2>/dev/null && cp "$f" "$root/etc/apt/apt.conf.d/"
done
[ -f /etc/apt/apt.conf ] && cp /etc/apt/apt.conf "$root/etc/apt/apt.conf"
cp /etc/resolv.conf "$root/etc/resolv.conf"
for f in /usr/local/share/ca-certificates/*.crt; do
  [ -f "$f" ] && cp "$f" "$root/usr/local/share/ca-certificates/"
done
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$root/etc/pip.conf"
hostname > "$root/etc/hostname"
cat > "$root/etc/hosts" <<EOF
127.0.0.1	localhost
127.0.1.1	$(hostname)
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
EOF

# The toolchain, read-only, as rustup installs it; a CARGO_HOME of the root's own
# (empty registry: every crate comes from crates.io) unless --reuse-registry.
mkdir -p "$root/root/.rustup" "$root/root/.cargo/bin"
mount --bind /root/.rustup "$root/root/.rustup"
mount -o remount,bind,ro "$root/root/.rustup"
mount --bind /root/.cargo/bin "$root/root/.cargo/bin"
mount -o remount,bind,ro "$root/root/.cargo/bin"
cp /root/.cargo/env "$root/root/.cargo/env"
if [ $reuse_registry = 1 ] && [ -d /root/.cargo/registry ]; then
  say "copying this machine's cargo registry cache ($(du -sh /root/.cargo/registry | cut -f1))"
  cp -a /root/.cargo/registry "$root/root/.cargo/registry"
fi
# What rustup-init writes into a login profile.
[ -f "$root/root/.profile" ] || cp "$root/etc/skel/.profile" "$root/root/.profile" 2>/dev/null || true
echo '. "$HOME/.cargo/env"' >> "$root/root/.profile"

# A real machine's kernel file systems; /proc is mounted per step, inside that
# step's own PID namespace.
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
mount --rbind /sys "$root/sys"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$root/run"
mkdir -p "$root/run/lock" && chmod 1777 "$root/run/lock"

# Runs a bash script inside the root as a login shell of root, in a new PID
# namespace (and a private network namespace with "net"), niced, with a clean
# environment. Output goes to LOG (and the terminal with --verbose).
in_root() {
  local net="$1" log="$2" script="$3"
  local unshare_opts=(--pid --fork --kill-child --mount-proc="$root/proc")
  [ "$net" = net ] && unshare_opts+=(--net)
  local cmd=(timeout --kill-after=60 "$step_timeout" nice -n 10 unshare "${unshare_opts[@]}" --
    bash -c 'if [ "$1" = net ]; then ip link set lo up || exit 1; fi
             exec chroot "$2" /usr/bin/env -i HOME=/root TERM=dumb USER=root LOGNAME=root \
               SHELL=/bin/bash PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
               /bin/bash -l -c "$3"' _ "$net" "$root" "$script")
  # In the background and waited for, so that a signal to this script is handled
  # at once (the trap stops the step; its PID namespace takes every daemon along).
  if [ $verbose = 1 ]; then
    "${cmd[@]}" > >(tee "$log") 2>&1 &
  else
    "${cmd[@]}" >"$log" 2>&1 &
  fi
  step_pid=$!
  local rc=0
  wait "$step_pid" || rc=$?
  step_pid=""
  return $rc
}

fail() { # step log
  echo
  echo "FAIL: $1 (log: $2)"
  echo "----- last 150 lines of $2 -----"
  tail -n 150 "$2"
  if grep -q '^failures:' "$2"; then
    echo "----- failing tests -----"
    grep -E '^    [A-Za-z_0-9:]+$|^test result: FAILED|^error: .*test' "$2" | sort -u
  fi
}

say "setting up the root (trust store)"
if ! in_root host "$logs/setup.log" 'update-ca-certificates'; then
  fail "setup" "$logs/setup.log"; exit 1
fi

say "cloning $repo at ${commit:0:12}"
git clone --quiet --no-hardlinks --no-checkout "$repo" "$root/root/exogate" >"$logs/clone.log" 2>&1 \
  && git -C "$root/root/exogate" checkout --quiet --detach "$commit" >>"$logs/clone.log" 2>&1 \
  || { fail "git clone" "$logs/clone.log"; exit 1; }

# The README's commands, read from the README of that commit: the first sh block
# under "## Tests" and under "## Quick start", and the quick start's `swaks ...`
# and `cargo run ... queue list ...` suggestions.
readme="$root/root/exogate/README.md"
section() { awk -v h="## $1" '$0 == h { on = 1; next } on && /^## / { exit } on' "$readme"; }
first_block() { awk '/^```sh$/ { on = 1; next } on && /^```$/ { exit } on'; }
test_cmd="$(section Tests | first_block)"
qs_cmd="$(section 'Quick start' | first_block)"
qs_swaks="$(section 'Quick start' | grep -o '`swaks [^`]*`' | head -n1 | tr -d '`' || true)"
qs_queue="$(section 'Quick start' | grep -o '`cargo run [^`]*queue list[^`]*`' | head -n1 | tr -d '`' || true)"
[ -n "$test_cmd" ] || die "no sh block under '## Tests' in README.md"
[ -n "$qs_cmd" ] || die "no sh block under '## Quick start' in README.md"
printf '%s\n' "README test command:  $test_cmd" "README quick start:   $qs_cmd" \
  "README try-it:        ${qs_swaks:-(none)}" "                      ${qs_queue:-(none)}"

t_tests=""
if [ $skip_tests = 0 ]; then
  say "running the README's test command (log: $logs/test.log)"
  t0=$(date +%s)
  if ! in_root host "$logs/test.log" "cd /root/exogate && $test_cmd"; then
    t_tests="$(elapsed "$t0")"
    fail "test command ($t_tests)" "$logs/test.log"; exit 1
  fi
  t_tests="$(elapsed "$t0")"
  say "test command passed in $t_tests"
fi

t_qs=""
if [ $skip_quickstart = 0 ]; then
  say "running the README's quick start (log: $logs/quickstart.log)"
  # The probe: the SMTP greeting and STARTTLS on 2525, /healthz on 8025.
  cat > "$root/root/fresh-probe.py" <<'EOF'
import os, smtplib, sys, time, urllib.request
pid, deadline = int(sys.argv[1]), time.time() + float(sys.argv[2])
while True:
    try:
        s = smtplib.SMTP("127.0.0.1", 2525, timeout=10)
        break
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            sys.exit("the gateway exited before answering on 127.0.0.1:2525")
        if time.time() > deadline:
            sys.exit("nothing answered on 127.0.0.1:2525")
        time.sleep(2)
code, msg = s.ehlo("fresh.example")
print("EHLO:", code, msg.decode().replace("\n", " | "))
assert code == 250 and s.has_extn("starttls"), "no 250 with STARTTLS to EHLO"
s.quit()
with urllib.request.urlopen("http://127.0.0.1:8025/healthz", timeout=10) as r:
    print("GET /healthz:", r.status, r.read(200).decode(errors="replace").strip())
    assert r.status == 200
EOF
  cat > "$root/root/fresh-quickstart.sh" <<EOF
set -u
cd /root/exogate
echo "\$ $qs_cmd"
$qs_cmd > /root/gateway.log 2>&1 &
gw=\$!
swaks_out=""
stop() { kill -TERM \$gw 2>/dev/null; wait \$gw; rc=\$?; echo "gateway exit status after SIGTERM: \$rc"; }
show() { echo "----- gateway output -----"; grep -v '^ *Compiling ' /root/gateway.log; }
if ! python3 /root/fresh-probe.py \$gw 3600; then stop; show; exit 1; fi
if [ -n "$qs_swaks" ]; then
  echo "\$ $qs_swaks"
  if ! out="\$($qs_swaks 2>&1)"; then echo "\$out"; stop; show; exit 1; fi
  swaks_out="\$out"
  # swaks exits 0 only when every reply was the expected one (250 at end of data).
  echo "\$out" | grep -E '^(<~|<-|~>|->) ' | tail -n 5
fi
if [ -n "$qs_queue" ]; then
  echo "\$ $qs_queue"
  if ! out="\$($qs_queue 2>&1)"; then echo "\$out"; stop; show; exit 1; fi
  echo "\$out" | tail -n 5
  qid="\$(echo "\$swaks_out" | sed -n 's/.* queued as \([^ ]*\).*/\1/p' | tail -n 1)"
  if [ -n "$qs_swaks" ] && { [ -z "\$qid" ] || ! echo "\$out" | grep -qF "\$qid"; }; then
    echo "the message sent with swaks (queue id '\$qid') is not in the queue"; stop; show; exit 1
  fi
  [ -n "\$qid" ] && echo "in the queue: \$(echo "\$out" | grep -F "\$qid")"
fi
stop
show
[ "\$rc" = 0 ]
EOF
  t0=$(date +%s)
  if ! in_root net "$logs/quickstart.log" 'bash /root/fresh-quickstart.sh'; then
    t_qs="$(elapsed "$t0")"
    fail "quick start ($t_qs)" "$logs/quickstart.log"; exit 1
  fi
  t_qs="$(elapsed "$t0")"
  say "quick start passed in $t_qs"
fi

if [ $skip_tests = 1 ] && [ $skip_quickstart = 1 ]; then
  echo "nothing run (--skip-tests --skip-quickstart): the root and the clone are ready"; exit 0
fi
echo
echo "PASS: commit $commit on a fresh Debian $(cat "$root/etc/debian_version") root" \
  "($([ $reuse_registry = 1 ] && echo "host registry cache" || echo "crates from crates.io"))"
if [ -n "$t_tests" ]; then
  awk '/^test result:/ { p += $4; f += $6; i += $8; n++ }
       END { printf "tests: %d passed, %d failed, %d ignored in %d test binaries\n", p, f, i, n }' \
    "$logs/test.log"
  echo "test command: $t_tests"
fi
if [ -n "$t_qs" ]; then
  grep -E '^(EHLO|GET /healthz|<~  250 .*queued|in the queue|gateway exit status)' "$logs/quickstart.log" | sed 's/^/  /'
  echo "quick start: $t_qs"
fi
echo "total: $(elapsed "$t_start"); logs: $logs"
