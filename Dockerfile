# Why this file exists: builds cutover's container image for Cloud Run.
# The builder stages compile the release binary with the pinned Rust toolchain,
# dependencies first: cargo-chef reduces the source tree to a "recipe" (the
# manifests and lock file, every crate's code left out), and the layer that
# compiles the recipe is reused by every build whose dependencies did not
# change, so a change to cutover's own code recompiles cutover alone. The last
# stage copies only the binary onto distroless/cc (glibc, libgcc, CA
# certificates for rustls, no shell, no package manager) and runs it as a
# non-root user. All stages are Debian 12 (bookworm), so the binary finds the
# glibc it was linked against.

FROM rust:1.95-slim-bookworm AS chef
# Pinned, and built from exactly its own lock file.
RUN cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /src

# The recipe: what changes only when the dependencies do.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
# The dependency layer: the release profile and the `cutover` binary's
# dependencies only, exactly as Cargo.lock has them (--locked). The repository
# is a workspace; `-p cutover` builds the product package alone (the fakes and
# the lab are workspace members the image never compiles).
RUN cargo chef cook --release --locked -p cutover --bin cutover --recipe-path recipe.json
COPY . .
# The release profile (Cargo.toml) strips the binary.
RUN cargo build --release --locked -p cutover --bin cutover \
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
