# The tollgate image that deploy/ runs (ghcr.io/example/tollgate:0.1.0 there):
#
#   docker build -t ghcr.io/example/tollgate:0.1.0 .
#   docker run --rm -v "$PWD/deploy:/etc/tollgate:ro" -p 8080:8080 -p 9901:9901 ghcr.io/example/tollgate:0.1.0
#
# The config is not in the image: mount a folder holding proxy.toml (and the key files it names)
# at /etc/tollgate, as deploy/kubernetes.yaml does with its ConfigMap and Secret.

# ---------------------------------------------------------------- build
# The toolchain of rust-version in Cargo.toml; cmake builds pingora's zlib-ng.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Cargo.toml declares the benches and examples, so the manifest needs them to load.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
# The registry and target caches survive between builds (BuildKit); the binary is copied out of
# the cache mount, which is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin tollgate \
 && install -D -m 0755 target/release/tollgate /out/tollgate

# ---------------------------------------------------------------- run
# glibc and libgcc only (aws-lc and mimalloc are linked in), no shell; the "nonroot" user is
# 65532, the runAsUser of deploy/kubernetes.yaml.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/tollgate /usr/local/bin/tollgate
USER 65532:65532
# The proxy listener and the admin port (/healthz, /readyz, /metrics) of deploy/proxy.toml. The
# orchestrator probes the admin port, so the image declares no HEALTHCHECK.
EXPOSE 8080 9901
ENTRYPOINT ["/usr/local/bin/tollgate"]
CMD ["--config", "/etc/tollgate/proxy.toml"]
