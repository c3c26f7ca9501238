# syntax=docker/dockerfile:1
#
# tokengate container image.
#
#   docker build -t tokengate .
#   docker run --rm -p 8080:8080 -v "$PWD/my-config:/etc/tokengate:ro" tokengate
#
# The image runs `tokengate serve --config /etc/tokengate/tokengate.yaml` as a
# non-root user. The repository's config/ is copied to /etc/tokengate/ as an
# example; mount your own there (its `listen` must be 0.0.0.0:8080, not
# 127.0.0.1, to be reachable from outside the container). Any CLI command
# works too: `docker run --rm tokengate --help`.

# ---- build -----------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
# The whole tree (minus .dockerignore) so every target Cargo.toml declares
# (lib, bins, benches) exists when cargo reads the manifest.
COPY . .
# Cache mounts keep the registry and compiled dependencies between builds; the
# binary is copied out of the cached target dir in the same step. Needs
# BuildKit (the default builder since Docker 23).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin tokengate \
    && install -D -m 0755 target/release/tokengate /out/tokengate

# ---- example upstream (deploy/docker-compose.yml) --------------------------
# `docker build --target example-upstream .`: tokengate's bench-upstream, which
# answers every request 200 {"ok":true}. A plain `docker build` skips it.
FROM builder AS example-upstream-builder
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin bench-upstream \
    && install -D -m 0755 target/release/bench-upstream /out/bench-upstream

FROM debian:bookworm-slim AS example-upstream
COPY --from=example-upstream-builder /out/bench-upstream /usr/local/bin/bench-upstream
USER 10001:10001
EXPOSE 9000
ENTRYPOINT ["bench-upstream", "--listen", "0.0.0.0:9000"]

# ---- runtime (the default target: the last stage) --------------------------
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# Fixed ids so mounted volumes and Kubernetes securityContext can match them.
RUN groupadd --system --gid 10001 tokengate \
    && useradd --system --uid 10001 --gid tokengate \
        --home-dir /var/lib/tokengate --create-home --shell /usr/sbin/nologin tokengate
COPY --from=builder /out/tokengate /usr/local/bin/tokengate
COPY config/ /etc/tokengate/
# Writable working directory for the non-root user (e.g. an embedded store file).
WORKDIR /var/lib/tokengate
# Numeric, so `runAsNonRoot` checks (e.g. Kubernetes) can verify it.
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["tokengate"]
CMD ["serve", "--config", "/etc/tokengate/tokengate.yaml", "--listen", "0.0.0.0:8080"]
