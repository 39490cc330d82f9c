# exogate container image: built with the Rust toolchain, run on distroless.
#
#   docker build -t exogate .
#   docker run -d --name exogate -p 25:25 --ulimit nofile=16384:16384 \
#     -v /srv/exogate/etc:/etc/exogate:ro -v /srv/exogate/state:/var/lib/exogate exogate
#
# /etc/exogate/gateway.toml (and the keys it names) is mounted read-only;
# /var/lib/exogate holds the spool and quarantine and must persist (a named
# volume, which starts owned by uid 10025 as the image's folder is, or a host
# directory owned by uid 10025). Keep server.state_dir at "/var/lib/exogate".
# For /metrics from outside the container set admin.listen = "0.0.0.0:8025" and
# publish 8025 on a private interface only; the HEALTHCHECK probes
# 127.0.0.1:8025, which 0.0.0.0:8025 includes.
#
# Port 25 as a non-root user: Docker (20.10 and later) sets
# net.ipv4.ip_unprivileged_port_start=0 in a container's own network
# namespace, so no capability is needed; Podman (4.x) does not: add
# --sysctl net.ipv4.ip_unprivileged_port_start=0. With --network host or an
# older engine, listen on 2525 instead and publish -p 25:2525.
#
# deploy/container-test.sh builds this image and carries a message through it;
# tests/deploy.rs replays the build stage from its COPY lines on every test run.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# The release profile keeps line tables for backtraces (62 MB binary); the
# image drops them and keeps the symbols (13 MB): a panic's backtrace still
# names the functions, without line numbers.
ENV CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=debuginfo

# Dependencies first, from the manifest alone: stub targets stand in for the
# sources, so this layer (the slow part) is reused until Cargo.toml or
# Cargo.lock change. The stubs are every target the manifest declares.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && : > src/lib.rs \
 && echo 'fn main() {}' > benches/scan.rs \
 && echo 'fn main() {}' > benches/auth.rs \
 && echo 'fn main() {}' > benches/events.rs \
 && cargo build --release --locked --bin exogate \
 && rm -rf src benches

# The sources. touch: COPY keeps the files' own (older) times, and cargo would
# take the stub build for up to date.
COPY src ./src
COPY benches/scan.rs ./benches/scan.rs
COPY benches/auth.rs ./benches/auth.rs
COPY benches/events.rs ./benches/events.rs
RUN touch src/lib.rs src/main.rs \
 && cargo build --release --locked --bin exogate \
 && mkdir -m 0750 state

# gcr.io/distroless/cc-debian12: glibc, libgcc, CA certificates, tzdata and
# nothing else: no shell, no package manager (see the README for the choice).
FROM gcr.io/distroless/cc-debian12
COPY --from=build /src/target/release/exogate /usr/local/bin/exogate
# A named volume starts as a copy of this folder: owned by the daemon's user.
COPY --from=build --chown=10025:10025 /src/state /var/lib/exogate
# A fixed numeric uid/gid (the image has no useradd): state directories on the
# host are chowned to 10025.
USER 10025:10025
# A fixed mmap threshold: glibc's adaptive one keeps large freed buffers of
# big messages resident (see deploy/exogate.service).
ENV MALLOC_MMAP_THRESHOLD_=4194304
VOLUME ["/etc/exogate", "/var/lib/exogate"]
EXPOSE 25 8025
# /healthz on the admin listener, asked by the daemon's own binary
# (`exogate healthcheck`) since the image has no shell or curl; --timeout
# bounds a hung answer.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["/usr/local/bin/exogate", "healthcheck", "127.0.0.1:8025"]
# SIGTERM (docker stop) drains sessions for server.shutdown_grace (30s by
# default), then 5s of 421s and 5s for the queue: give docker stop a longer
# --time / stop_grace_period than that (60s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/exogate", "run", "--config", "/etc/exogate/gateway.toml"]
