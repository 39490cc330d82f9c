#!/usr/bin/env bash
# Builds the exogate image with Podman and carries a message through it.
#
#   deploy/container-test.sh            # as root; SKIPs (exit 0) without a working engine
#   EXOGATE_CONTAINER_STRICT=1 deploy/container-test.sh   # a missing engine is an error
#   deploy/container-test.sh --cache-check  # also rebuilds after a source change
#   deploy/container-test.sh --sizes    # also builds the debian-slim and scratch variants
#
# What it does:
#  1. Makes the base images the Dockerfile names, locally, because no registry
#     can be reached here: a Debian bookworm root from debootstrap becomes
#     `rust:1.95-slim-bookworm` (plus gcc, libc6-dev, this machine's Rust
#     toolchain and its crates.io download cache, with CARGO_NET_OFFLINE=true)
#     and `gcr.io/distroless/cc-debian12` (the same Debian packages distroless
#     puts in that image: libc6, libgcc-s1, libstdc++6, libgomp1, libssl3,
#     tzdata, netbase, base-files, the CA bundle; passwd/group; no shell).
#  2. `podman build` of the repository's Dockerfile, unchanged, with no
#     network (--cache-check: again after a change in src/, and the
#     dependency layer must come from the cache).
#  3. Runs the image with the configuration as a read-only bind mount and the
#     state as a named volume, port 25 published on loopback; waits for its
#     own HEALTHCHECK; checks it runs as uid 10025 and has no shell.
#  4. Sends a message with Python's smtplib over STARTTLS (verified) for a
#     tenant whose deliver_to is a TLS SMTP sink on the host's loopback
#     (deploy/smtp-sink.py), reached through slirp4netns's host-loopback
#     address. SIGTERM arrives in the middle of the message's data: the
#     message must still get its 250 and the container exit 0. The message is
#     then either at the sink or in the volume's spool (the queue stops with
#     the sessions); in the second case a new container on the same volume
#     must relay it and stop with exit 0 on `podman stop`. At the end the sink
#     holds it exactly once, over TLS, original bytes intact after our header
#     fields, and `exogate queue list` on the volume says 0 message(s).
#  5. --sizes: builds the debian-slim and scratch variants of the runtime
#     stage from the same build stage, checks each starts, passes its
#     HEALTHCHECK and stops with exit 0, and prints the three image sizes.
#
# What it does not prove: that the official base images behave like the
# stand-ins (same Debian packages, not the same bytes), nor pulling from a
# registry, nor Docker's engine (Podman's; the Dockerfile uses nothing
# Podman-specific), nor port 25 from the Internet.
#
# This sandbox needed: runc rather than crun (crun refuses the cgroup v1/v2
# hybrid), explicit --ulimit values (raising rlimits is not permitted), and
# slirp4netns; Podman's healthcheck timers need systemd, so the script runs
# `podman healthcheck run` itself.
#
# Images and the debootstrap root are cached under var/container (or
# $EXOGATE_CONTAINER_CACHE) in their own Podman storage, apart from the
# machine's, so a real `rust:` image a user has is never overwritten.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${EXOGATE_CONTAINER_CACHE:-$repo/var/container}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
strict=${EXOGATE_CONTAINER_STRICT:-0}
image=localhost/exogate:container-test
name=exogate-container-test
volume=exogate-container-test-state
sizes=0
cache_check=0
for arg in "$@"; do
  case "$arg" in
    --sizes) sizes=1 ;;
    --cache-check) cache_check=1 ;;
    *) echo "usage: $0 [--cache-check] [--sizes]" >&2; exit 2 ;;
  esac
done

say() { printf '[%4ss] %s\n' "$SECONDS" "$*"; }
skip() {
  echo "container-test: SKIP: $*" >&2
  [ "$strict" = 1 ] && exit 1
  exit 0
}
fail() {
  echo "container-test: FAIL: $*" >&2
  exit 1
}

[ "$(id -u)" -eq 0 ] || skip "needs root (rootful podman, debootstrap)"

# ---- the engine ----

need=()
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v slirp4netns >/dev/null || need+=(slirp4netns)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || skip "no apt-get to install ${need[*]}"
  say "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o DPkg::Lock::Timeout=600 "${need[@]}" fuse-overlayfs uidmap crun >/dev/null \
    || skip "apt-get install ${need[*]} failed"
fi

mkdir -p "$cache"
# Podman's run-time state, one per storage (short: it holds sockets).
runroot=/run/exogate-container-test-$(printf '%s' "$cache" | cksum | cut -d' ' -f1)
P=(podman --root "$cache/storage" --runroot "$runroot" --cgroup-manager cgroupfs)
# A sandbox may forbid raising rlimits (no CAP_SYS_RESOURCE): give explicit
# ones below the hard limits (the gateway needs 2 per connection at most).
limits=(--ulimit nofile=16384:16384 --ulimit nproc=4096:4096)
"${P[@]}" info >/dev/null 2>"$cache/podman-info.err" \
  || skip "podman info fails: $(tail -n 3 "$cache/podman-info.err")"

# ---- base images made locally ----

rootfs=$cache/rootfs-bookworm
if [ ! -e "$rootfs/.complete" ]; then
  say "debootstrap bookworm (minbase) from $mirror"
  rm -rf "$rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || skip "debootstrap failed: $(tail -n 3 "$cache/debootstrap.log")"
  touch "$rootfs/.complete"
fi

has_image() { "${P[@]}" image exists "$1"; }

# The distroless package set, extracted without maintainer scripts, as
# distroless itself assembles it.
distroless_pkgs=(base-files netbase tzdata ca-certificates libc6 libssl3 libgcc-s1 libgomp1 libstdc++6)

builder=$cache/rootfs-rust
if ! has_image docker.io/library/rust:1.95-slim-bookworm || ! has_image gcr.io/distroless/cc-debian12:latest; then
  say "preparing the build root (gcc, libc6-dev) and the distroless packages"
  rm -rf "$builder"
  cp -a "$rootfs" "$builder"
  rm -f "$builder/.complete"
  chroot "$builder" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get update -q && apt-get install -y -q --no-install-recommends gcc libc6-dev ca-certificates \
           && mkdir -p /var/tmp/debs && cd /var/tmp/debs && apt-get download '"${distroless_pkgs[*]}"' \
           && apt-get clean && rm -rf /var/lib/apt/lists/*' >"$cache/builder.log" 2>&1 \
    || fail "apt-get in the build root: $(tail -n 5 "$cache/builder.log")"
  mv "$builder/var/tmp/debs" "$cache/debs-distroless"
fi

if ! has_image docker.io/library/rust:1.95-slim-bookworm; then
  sysroot=$(rustc --print sysroot)
  version=$(rustc -V)
  case "$version" in *" 1.95."*) ;; *) fail "the host's rustc is $version, the Dockerfile names 1.95" ;; esac
  cargo_home=${CARGO_HOME:-$HOME/.cargo}
  say "making rust:1.95-slim-bookworm from $version ($sysroot) and $cargo_home/registry"
  mkdir -p "$builder/usr/local/rust" "$builder/usr/local/cargo/registry"
  for d in bin lib libexec; do
    [ -d "$sysroot/$d" ] && cp -a "$sysroot/$d" "$builder/usr/local/rust/"
  done
  # The download cache and the index; cargo unpacks what it needs.
  cp -a "$cargo_home/registry/index" "$cargo_home/registry/cache" "$builder/usr/local/cargo/registry/"
  tar -C "$builder" -c . | "${P[@]}" import -q \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'ENV RUST_VERSION=1.95.0' \
    --change 'ENV CARGO_NET_OFFLINE=true' \
    - docker.io/library/rust:1.95-slim-bookworm >/dev/null
fi

if ! has_image gcr.io/distroless/cc-debian12:latest; then
  say "making gcr.io/distroless/cc-debian12 from ${distroless_pkgs[*]}"
  d=$cache/rootfs-distroless
  rm -rf "$d"
  mkdir -p "$d"
  for deb in "$cache"/debs-distroless/*.deb; do dpkg-deb -x "$deb" "$d"; done
  # update-ca-certificates' default: every Mozilla root, one bundle.
  mkdir -p "$d/etc/ssl/certs"
  cat "$d"/usr/share/ca-certificates/mozilla/*.crt >"$d/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$d/usr/share/ca-certificates" "$d/usr/sbin" "$d/usr/share/man" "$d/usr/share/lintian" \
    "$d/usr/share/info" "$d/usr/share/doc"/*/changelog* "$d/usr/share/locale"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$d/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$d/etc/group"
  install -d -m 1777 "$d/tmp"
  install -d -m 0700 -o 65532 -g 65532 "$d/home/nonroot"
  install -d -m 0700 "$d/root"
  tar -C "$d" -c . | "${P[@]}" import -q \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    - gcr.io/distroless/cc-debian12:latest >/dev/null
  rm -rf "$d"
fi
# The imported images hold what the roots held.
rm -rf "$builder"

# The runtime: crun is Podman's default; it refuses cgroup v1/v2 hybrids, runc
# does not. Whichever can start the distroless image (without a shell: run
# its dynamic loader) is used for the build and the run.
runtime=
for r in crun runc; do
  command -v "$r" >/dev/null || continue
  if "${P[@]}" run --rm --runtime "$r" "${limits[@]}" --network none \
      --entrypoint /lib64/ld-linux-x86-64.so.2 gcr.io/distroless/cc-debian12:latest --version \
      >/dev/null 2>"$cache/runtime-$r.err"; then
    runtime=$r
    break
  fi
done
[ -n "$runtime" ] || skip "no OCI runtime can start a container: crun: $(tail -n 1 "$cache/runtime-crun.err" 2>/dev/null); runc: $(tail -n 1 "$cache/runtime-runc.err" 2>/dev/null)"
R=(--runtime "$runtime" "${limits[@]}")
say "engine: $(podman --version), runtime $runtime, storage $("${P[@]}" info -f '{{.Store.GraphDriverName}}')"

# ---- the image ----

build() {
  # --pull=never: the base images are the local ones; --network none: the
  # build must not need the network (cargo works from the image's cache).
  "${P[@]}" build --format docker --pull=never --network none "${R[@]}" "$@"
}

say "podman build (log: $cache/build.log)"
t0=$SECONDS
build -t "$image" "$repo" >"$cache/build.log" 2>&1 || fail "podman build: $(tail -n 30 "$cache/build.log")"
say "built $image in $((SECONDS - t0))s: $("${P[@]}" image inspect -f '{{.Size}}' "$image") bytes"

if [ "$cache_check" = 1 ]; then
  # The same build after a change in src/: the dependency layer must come
  # from the cache and only the crate be rebuilt.
  ctx=$(mktemp -d)
  cp -a "$repo"/{Dockerfile,.dockerignore,Cargo.toml,Cargo.lock,src,benches,deploy} "$ctx/"
  echo "// container-test cache check $(date +%s%N)" >>"$ctx/src/main.rs"
  say "rebuild after a change in src/main.rs (log: $cache/build-changed.log)"
  t0=$SECONDS
  build -t localhost/exogate:cache-check "$ctx" >"$cache/build-changed.log" 2>&1 \
    || fail "podman build after a source change: $(tail -n 30 "$cache/build-changed.log")"
  rm -rf "$ctx"
  dep_step=$(grep -n 'RUN mkdir -p src benches' "$cache/build-changed.log" | head -n 1 | cut -d: -f1)
  [ -n "$dep_step" ] || fail "no dependency step in the build log"
  sed -n "$((dep_step + 1))p" "$cache/build-changed.log" | grep -q 'Using cache' \
    || fail "the dependency layer was rebuilt after a source change: $(sed -n "$dep_step,$((dep_step + 3))p" "$cache/build-changed.log")"
  compiled=$(grep -c '^ *Compiling ' "$cache/build-changed.log" || true)
  say "rebuilt in $((SECONDS - t0))s: dependency layer from the cache, $compiled crate(s) compiled"
  "${P[@]}" rmi -f localhost/exogate:cache-check >/dev/null
fi

# ---- the image at work ----

work=$(mktemp -d /tmp/exogate-container-test.XXXXXX)
sink_pid=
cleanup() {
  "${P[@]}" rm -f -t 0 "$name" >/dev/null 2>&1 || true
  "${P[@]}" volume rm -f "$volume" >/dev/null 2>&1 || true
  if [ -n "$sink_pid" ]; then kill "$sink_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cleanup_old() {
  "${P[@]}" rm -f -t 0 "$name" >/dev/null 2>&1 || true
  "${P[@]}" volume rm -f "$volume" >/dev/null 2>&1 || true
}
cleanup_old

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
smtp_port=$(free_port)
sink_port=$(free_port)
# slirp4netns: the container reaches the host's loopback at 10.0.2.2.
host_from_container=10.0.2.2

# Certificates: a CA, the gateway's (the client checks it), the sink's (the
# gateway checks it against relay.ca, by the IP address it connects to).
pki=$work/pki
mkdir -p "$pki" "$work/etc" "$work/sink"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=exogate-container-test-ca -keyout "$pki/ca.key" -out "$pki/ca.pem" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
leaf() {
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
    -keyout "$pki/$1.key" -out "$pki/$1.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n' "$2" >"$pki/$1.ext"
  openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 2 -extfile "$pki/$1.ext" -out "$pki/$1.pem" 2>/dev/null
}
leaf gw.test "DNS:gw.test,IP:127.0.0.1"
leaf sink.test "DNS:sink.test,IP:127.0.0.1,IP:$host_from_container"
cp "$pki/ca.pem" "$pki/gw.test.pem" "$pki/gw.test.key" "$work/etc/"
# The key readable by the daemon's user only, as an operator would do it.
chown 10025:10025 "$work/etc/gw.test.key"
chmod 0600 "$work/etc/gw.test.key"

cat >"$work/etc/gateway.toml" <<TOML
[server]
hostname = "gw.test"
listen = ["0.0.0.0:25"]
state_dir = "/var/lib/exogate"
shutdown_grace = "20s"

[tls]
cert = "/etc/exogate/gw.test.pem"
key = "/etc/exogate/gw.test.key"
require = true

[admission]
# Published ports arrive from slirp4netns's side of the network.
allow = ["10.0.2.0/24", "127.0.0.0/8"]

[delivery]
mode = "queue"
retry = ["2s"]

[relay]
ca = "/etc/exogate/ca.pem"

[admin]
listen = "127.0.0.1:8025"

[[tenant]]
portal = "contoso"
domains = ["contoso.com"]
deliver_to = ["$host_from_container:$sink_port"]
policy = "default"

[policy.default]
junk_score = 5.0
quarantine_score = 10.0
reject_score = 20.0
[[policy.default.check]]
kind = "attachments"
[[policy.default.check]]
kind = "content"
TOML

python3 "$repo/deploy/smtp-sink.py" --listen "127.0.0.1:$sink_port" --cert "$pki/sink.test.pem" \
  --key "$pki/sink.test.key" --out "$work/sink" >"$work/sink.log" 2>&1 &
sink_pid=$!

"${P[@]}" volume create "$volume" >/dev/null
start_gateway() {
  local img=${1:-$image}
  "${P[@]}" rm -f -t 0 "$name" >/dev/null 2>&1 || true
  "${P[@]}" run -d --name "$name" "${R[@]}" \
    --network slirp4netns:allow_host_loopback=true \
    -p "127.0.0.1:$smtp_port:25" \
    --sysctl net.ipv4.ip_unprivileged_port_start=0 \
    -v "$work/etc:/etc/exogate:ro" -v "$volume:/var/lib/exogate" \
    "$img" >/dev/null 2>"$work/run.err" || fail "podman run failed: $(cat "$work/run.err")"
  # Podman runs HEALTHCHECK from systemd timers, absent here: run it by hand
  # (the image's own command, inside the container) until it passes.
  local healthy=0
  for _ in $(seq 1 60); do
    if "${P[@]}" healthcheck run "$name" >/dev/null 2>&1; then healthy=1; break; fi
    [ "$("${P[@]}" inspect -f '{{.State.Running}}' "$name")" = true ] || break
    sleep 1
  done
  [ "$healthy" = 1 ] || fail "the HEALTHCHECK never passed; log: $("${P[@]}" logs "$name" 2>&1 | tail -n 20)"
}
# Waits for the container to end: exit status 0 (a second SIGTERM would
# make it exit 1 at once, so nothing here signals it twice).
wait_exit() {
  timeout 120 "${P[@]}" wait "$name" >/dev/null 2>"$work/wait.err" \
    || fail "the container did not stop within 120s: $(cat "$work/wait.err")"
  local code
  code=$("${P[@]}" inspect -f '{{.State.ExitCode}}' "$name")
  "${P[@]}" logs "$name" >"$work/gateway-$1.log" 2>&1
  [ "$code" = 0 ] || fail "exit status $code; log: $(tail -n 20 "$work/gateway-$1.log")"
}
# `exogate queue list` in a container on the volume, as an operator runs it;
# its last line says "N message(s)".
queue_list() {
  "${P[@]}" run --rm "${R[@]}" --network none -v "$work/etc:/etc/exogate:ro" -v "$volume:/var/lib/exogate" \
    --entrypoint /usr/local/bin/exogate "$image" queue --config /etc/exogate/gateway.toml list \
    2>"$work/queue.err" || fail "exogate queue list: $(cat "$work/queue.err")"
}
queued() { queue_list | awk '/ message\(s\)$/ { n = $1 } END { print n + 0 }'; }

say "podman run: config $work/etc read-only, state in volume $volume, 127.0.0.1:$smtp_port -> 25"
start_gateway
say "healthy: $("${P[@]}" inspect -f '{{.Config.Healthcheck.Test}}' "$name")"

pid=$("${P[@]}" inspect -f '{{.State.Pid}}' "$name")
uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
[ "$uid" = 10025 ] || fail "the daemon runs as uid $uid, not 10025"
say "the daemon (pid $pid on the host) runs as uid $uid"
for sh in /bin/sh /bin/bash /usr/bin/busybox; do
  if "${P[@]}" run --rm "${R[@]}" --network none --entrypoint "$sh" "$image" -c true >/dev/null 2>&1; then
    fail "the image has a shell: $sh"
  fi
done
say "no shell in the image (/bin/sh, /bin/bash, busybox cannot be started)"

# One session: STARTTLS verified against our CA; SIGTERM arrives in the middle
# of the message's data. The daemon must finish that transaction (250), then
# close the idle session (421), relay the message and exit 0, spool empty.
say "sending through the container; SIGTERM in the middle of the data"
export SMTP_PORT=$smtp_port CA=$pki/ca.pem SENT=$work/sent.eml
KILL_CMD="$(printf '%q ' "${P[@]}") kill --signal TERM $name"
LOGS_CMD="$(printf '%q ' "${P[@]}") logs $name"
export KILL_CMD LOGS_CMD
python3 - <<'PY' || fail "the SMTP conversation failed"
import os, smtplib, ssl, subprocess, time
head = (
    b"From: Alice <alice@fabrikam.example>\r\n"
    b"To: Bob <bob@contoso.com>\r\n"
    b"Subject: container test\r\n"
    b"Message-ID: <container-test@fabrikam.example>\r\n"
    b"\r\n"
    b"Carried through the container while it drained.\r\n"
)
tail = b".A line that starts with a dot, sent after SIGTERM.\r\n"
open(os.environ["SENT"], "wb").write(head + tail)
ctx = ssl.create_default_context(cafile=os.environ["CA"])
s = smtplib.SMTP("127.0.0.1", int(os.environ["SMTP_PORT"]), local_hostname="exo.example", timeout=60)
s.ehlo()
s.starttls(context=ctx)
s.ehlo()
print(f"  STARTTLS ok ({s.sock.version()}, certificate verified)")
assert s.mail("alice@fabrikam.example")[0] == 250
assert s.rcpt("bob@contoso.com")[0] == 250
s.putcmd("data")
assert s.getreply()[0] == 354
s.send(head)
subprocess.run(os.environ["KILL_CMD"], shell=True, check=True, stdout=subprocess.DEVNULL)
for _ in range(150):
    logs = subprocess.run(os.environ["LOGS_CMD"], shell=True, capture_output=True, text=True)
    if "shutting down" in logs.stdout + logs.stderr:
        break
    time.sleep(0.2)
else:
    raise SystemExit("the daemon never logged that it is shutting down")
print("  SIGTERM delivered in the middle of DATA; the daemon logged that it is shutting down")
s.send(tail.replace(b"\r\n.", b"\r\n..").replace(b".A", b"..A", 1) + b".\r\n")
code, text = s.getreply()
assert code == 250, (code, text)
print(f"  end of data after SIGTERM: {code} {text.decode()}")
try:
    code, text = s.getreply()
    print(f"  then, the session idle: {code} {text.decode()}")
except smtplib.SMTPServerDisconnected:
    print("  then the daemon closed the idle session")
s.close()
PY

say "waiting for the container to exit"
wait_exit first
say "exit status 0; its log ends:"
tail -n 4 "$work/gateway-first.log" | sed 's/^/    /'

# What SIGTERM promises (DESIGN §8): sessions finish, exit 0, nothing
# acknowledged is lost. The queue stops with the sessions, so the message is
# either already relayed or still in the spool on the volume, never both, never
# neither. A new container on the same volume must then relay it.
left=$(queued)
n=$(find "$work/sink" -name '*.eml' | wc -l)
if [ "$n" = 1 ] && [ "$left" = 0 ]; then
  say "relayed before the daemon exited; spool empty"
elif [ "$n" = 0 ] && [ "$left" = 1 ]; then
  say "not yet relayed when the daemon exited; exogate queue list on the volume:"
  queue_list | sed 's/^/    /'
  say "a new container on the same volume"
  start_gateway
  for _ in $(seq 1 60); do
    [ -f "$work/sink/1.eml" ] && break
    sleep 1
  done
  # podman stop sends the image's STOPSIGNAL (SIGTERM), once.
  "${P[@]}" stop -t 90 "$name" >/dev/null 2>&1 &
  wait_exit second
  say "podman stop: exit status 0 again; its log ends:"
  tail -n 3 "$work/gateway-second.log" | sed 's/^/    /'
else
  fail "after the stop: $n message(s) at the sink and spool [$left]"
fi

[ -f "$work/sink/1.eml" ] || fail "the sink received nothing; sink log: $(cat "$work/sink.log")"
export DELIVERED=$work/sink/1.eml META=$work/sink/1.json
python3 - <<'PY' || fail "the delivered message is not what was sent"
import json, os
sent = open(os.environ["SENT"], "rb").read()
got = open(os.environ["DELIVERED"], "rb").read()
meta = json.load(open(os.environ["META"]))
assert meta["tls"], "relayed without TLS"
assert meta["rcpt"] == ["<bob@contoso.com>"], meta
assert got.endswith(sent), "the original bytes are not intact at the end of the delivered message"
added = got[: len(got) - len(sent)].decode()
names = [l.split(":", 1)[0] for l in added.split("\r\n") if l and not l[0].isspace()]
assert all(n == "Received" or n.startswith("X-CLOUD-SEC-AV-") for n in names), names
assert "X-CLOUD-SEC-AV-Verdict" in names, names
print(f"  delivered over TLS to {meta['rcpt']}: original bytes intact, added {names}")
PY

n=$(find "$work/sink" -name '*.eml' | wc -l)
[ "$n" = 1 ] || fail "the sink holds $n messages, not 1"
left=$(queued)
[ "$left" = 0 ] || fail "the spool is not empty at the end: $(queue_list)"
mountpoint=$("${P[@]}" volume inspect -f '{{.Mountpoint}}' "$volume")
files=$(find "$mountpoint" -type f | sed "s|^$mountpoint/||" | sort | tr '\n' ' ')
say "spool empty (exogate queue list: 0 message(s)); files in the state volume: ${files:-none}"

[ "$sizes" = 1 ] || { say "PASS in ${SECONDS}s"; exit 0; }

# ---- the other runtime variants, for the size comparison ----
#
# The same build stage; each variant must start from the same config and
# volume layout, pass its HEALTHCHECK and stop with exit status 0.
# debian-slim: the previous image (Debian's slim base, ca-certificates from
#   apt, bash's /dev/tcp for the HEALTHCHECK).
# scratch: nothing but the binary (its own `healthcheck` is the probe) and the CA bundle. The musl
#   target is not installed here (no toolchain can be fetched), so the static
#   binary is glibc's (-C target-feature=+crt-static); exogate resolves names
#   with hickory, not getaddrinfo, which is what static glibc cannot do.
if ! has_image docker.io/library/debian:bookworm-slim; then
  say "making debian:bookworm-slim from the debootstrap root (docs, man pages, locales, apt lists removed)"
  d=$cache/rootfs-slim
  rm -rf "$d"
  cp -a "$rootfs" "$d"
  rm -f "$d/.complete"
  rm -rf "$d"/var/cache/apt/*.bin "$d"/var/cache/apt/archives/*.deb "$d"/var/lib/apt/lists/* \
    "$d"/usr/share/man/* "$d"/usr/share/info/* "$d"/usr/share/locale/* "$d"/var/log/*
  find "$d/usr/share/doc" -type f ! -name copyright -delete
  # What Debian's official slim image configures, so apt in a derived image
  # leaves no caches or documentation behind either.
  cat >"$d/etc/apt/apt.conf.d/docker-clean" <<'CONF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CONF
  printf 'Acquire::Languages "none";\n' >"$d/etc/apt/apt.conf.d/docker-no-languages"
  printf 'Acquire::GzipIndexes "true";\n' >"$d/etc/apt/apt.conf.d/docker-gzip-indexes"
  printf 'APT::AutoRemove::SuggestsImportant "false";\n' >"$d/etc/apt/apt.conf.d/docker-autoremove-suggests"
  cat >"$d/etc/dpkg/dpkg.cfg.d/docker" <<'CONF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
CONF
  tar -C "$d" -c . | "${P[@]}" import -q \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - docker.io/library/debian:bookworm-slim >/dev/null
  rm -rf "$d"
fi

build_stage=$(awk '/^FROM /{n++} n == 1' "$repo/Dockerfile")
[ -n "$build_stage" ] || fail "no build stage in the Dockerfile"
variants=$cache/variants
mkdir -p "$variants"
{
  echo "$build_stage"
  cat <<'STAGE'
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10025 exogate \
 && useradd --system --uid 10025 --gid exogate --home-dir /var/lib/exogate --no-create-home \
      --shell /usr/sbin/nologin exogate \
 && install -d -o exogate -g exogate -m 0750 /var/lib/exogate \
 && install -d -m 0755 /etc/exogate
COPY --from=build /src/target/release/exogate /usr/local/bin/exogate
USER exogate:exogate
VOLUME ["/etc/exogate", "/var/lib/exogate"]
EXPOSE 25 8025
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8025 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/exogate", "run", "--config", "/etc/exogate/gateway.toml"]
STAGE
} >"$variants/Containerfile.debian-slim"
static='RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --bin exogate --target x86_64-unknown-linux-gnu'
{
  echo "$build_stage" | sed -e "s|cargo build --release --locked --bin exogate|$static|"
  cat <<'STAGE'
FROM scratch
COPY --from=build /src/target/x86_64-unknown-linux-gnu/release/exogate /usr/local/bin/exogate
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build --chown=10025:10025 /src/state /var/lib/exogate
USER 10025:10025
VOLUME ["/etc/exogate", "/var/lib/exogate"]
EXPOSE 25 8025
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["/usr/local/bin/exogate", "healthcheck", "127.0.0.1:8025"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/exogate", "run", "--config", "/etc/exogate/gateway.toml"]
STAGE
} >"$variants/Containerfile.scratch"

report=("distroless-cc (the Dockerfile)  $("${P[@]}" image inspect -f '{{.Size}}' "$image") bytes")
for v in debian-slim scratch; do
  say "building the $v variant (log: $variants/build-$v.log)"
  t0=$SECONDS
  # The debian-slim variant fetches ca-certificates with apt: network on.
  "${P[@]}" build --format docker --pull=never --network host "${R[@]}" \
    -f "$variants/Containerfile.$v" -t "localhost/exogate:$v" "$repo" >"$variants/build-$v.log" 2>&1 \
    || fail "the $v variant: $(tail -n 30 "$variants/build-$v.log")"
  "${P[@]}" volume rm -f "$volume" >/dev/null 2>&1
  "${P[@]}" volume create "$volume" >/dev/null
  start_gateway "localhost/exogate:$v"
  "${P[@]}" stop -t 90 "$name" >/dev/null 2>&1 &
  wait_exit "$v"
  size=$("${P[@]}" image inspect -f '{{.Size}}' "localhost/exogate:$v")
  say "$v: built in $((SECONDS - t0))s, healthy, stopped with exit status 0; $size bytes"
  report+=("$v  $size bytes")
done
say "image sizes (uncompressed, as podman images counts them):"
printf '    %s\n' "${report[@]}"
say "PASS in ${SECONDS}s"
