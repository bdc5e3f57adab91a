# Why this file exists: builds cutover's container image for Cloud Run.
# Stage 1 compiles the release binary with the pinned Rust toolchain; stage 2
# copies only that binary onto distroless/cc (glibc, libgcc, CA certificates
# for rustls, no shell, no package manager) and runs it as a non-root user.
# Both stages are Debian 12 (bookworm), so the binary finds the glibc it was
# linked against.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# --locked: build exactly Cargo.lock. The release profile (Cargo.toml) strips
# the binary.
RUN cargo build --release --locked --bin cutover \
    && cp target/release/cutover /cutover

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /cutover /cutover
# 65532 is the `nonroot` user of the distroless image; numeric, so a runtime
# can verify it is not root without reading /etc/passwd.
USER 65532:65532
# Cloud Run sets PORT to this; cutover's default is the same.
EXPOSE 8080
ENTRYPOINT ["/cutover"]
CMD ["serve"]
