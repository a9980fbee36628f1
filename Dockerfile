# syntax=docker/dockerfile:1
# Multi-stage build: the same release build as CI, then a small non-root runtime.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY src ./src
COPY bench ./bench
RUN cargo build --release --locked --bin streamguard

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates=20230311+deb12u1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home streamguard
COPY --from=build /src/target/release/streamguard /usr/local/bin/streamguard
COPY examples/configs /etc/streamguard/configs
USER 10001
EXPOSE 50051 8000
ENTRYPOINT ["/usr/local/bin/streamguard"]
CMD ["serve", "--config", "/etc/streamguard/configs", "--grpc-addr", "0.0.0.0:50051", "--http-addr", "0.0.0.0:8000"]
