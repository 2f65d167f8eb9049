# spikewatch container image: `docker build -t spikewatch .` (docker-compose.yml builds it too).
#
# Stage 1 builds the release binary. rdkafka compiles librdkafka from source (its cmake-build
# feature), so the builder needs cmake on top of the Rust image's C toolchain.
# Stage 2 is a slim Debian with the binary, the incident traces (for `spikewatch demo` and the
# compose replayer) and curl for the healthcheck, running as an unprivileged user.

FROM rust:1.91-bookworm AS builder

RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Everything the workspace manifest names (members, the declared benches) and nothing else, so
# editing docs or tests does not invalidate the build cache.
COPY Cargo.toml Cargo.lock ./
COPY detector ./detector
COPY ingest ./ingest
COPY tracegen ./tracegen
COPY benches ./benches
COPY src ./src

RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin spikewatch \
    && install -D -m 0755 target/release/spikewatch /out/spikewatch


FROM debian:12.8-slim AS runtime

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 spikewatch \
    && useradd --system --uid 10001 --gid spikewatch --no-create-home --shell /usr/sbin/nologin spikewatch \
    && install -d -o 10001 -g 10001 /var/lib/spikewatch

COPY --from=builder /out/spikewatch /usr/local/bin/spikewatch
COPY testdata/incidents /opt/spikewatch/testdata/incidents
COPY deploy/spikewatch.toml /etc/spikewatch/spikewatch.toml

WORKDIR /opt/spikewatch
USER 10001:10001
EXPOSE 8686

HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:8686/readyz || exit 1

ENTRYPOINT ["spikewatch"]
CMD ["run", "--config", "/etc/spikewatch/spikewatch.toml"]
