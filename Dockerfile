# syntax=docker/dockerfile:1
# Build a static musl binary, ship it alone on distroless (no shell).
FROM rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl && apt-get update && apt-get install -y --no-install-recommends musl-tools
WORKDIR /src
COPY . .
RUN cargo build --locked --release --target x86_64-unknown-linux-musl \
 && cp target/x86_64-unknown-linux-musl/release/meshdns /meshdns

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /meshdns /usr/local/bin/meshdns
USER 65532:65532
EXPOSE 1053/udp 1053/tcp 9253/tcp
ENTRYPOINT ["/usr/local/bin/meshdns"]
CMD ["serve"]
