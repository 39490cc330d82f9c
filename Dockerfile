# exogate container image: build with the Rust toolchain, run on a small Debian.
#
#   docker build -t exogate .
#   docker run -d --name exogate -p 25:25 \
#     -v /srv/exogate/etc:/etc/exogate:ro -v /srv/exogate/state:/var/lib/exogate exogate
#
# /etc/exogate/gateway.toml (and the keys it names) is mounted read-only;
# /var/lib/exogate holds the spool and quarantine and must persist (a named
# volume or a host directory owned by uid 10025). Keep server.state_dir at its
# default "/var/lib/exogate". For /metrics from outside the container set
# admin.listen = "0.0.0.0:8025" and publish 8025 on a private interface only.
#
# Port 25 as a non-root user: Docker (20.10 and later) sets
# net.ipv4.ip_unprivileged_port_start=0 in a container's own network namespace,
# so no capability is needed. With --network host or an older engine, listen on
# 2525 instead and publish -p 25:2525.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin exogate

FROM debian:bookworm-slim
# ca-certificates: the system trust store, used to verify Exchange Online's
# certificate when relaying (relay.ca = "") and EXO's client certificate.
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
# /healthz on the admin listener. The image has no curl on purpose (one
# package and its libraries less to patch): bash's /dev/tcp speaks the three
# lines of HTTP needed, and HEALTHCHECK --timeout bounds a hung answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8025 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
# SIGTERM (docker stop) drains sessions for server.shutdown_grace (30s by
# default): give docker stop a longer --time / stop_grace_period than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/exogate", "run", "--config", "/etc/exogate/gateway.toml"]
