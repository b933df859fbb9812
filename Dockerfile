# syntax=docker/dockerfile:1
# The meshdns image: one static (musl) binary on distroless, no shell.
#
# Multi-arch: docker buildx build --platform linux/amd64,linux/arm64 -t meshdns .
# The build stage runs on the build machine's own platform and cross-compiles
# for TARGETARCH with scripts/build-static.sh, the script that tests/image.rs
# runs, so the test proves what this image ships. README "The image" says how
# to bump the base images.
FROM --platform=$BUILDPLATFORM docker.io/library/rust:1.95.0-bookworm AS build
ARG TARGETARCH
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/root/.cache/meshdns \
    CARGO_TARGET_DIR=/root/.cache/meshdns/image-target \
    scripts/build-static.sh "$TARGETARCH" /out/meshdns

# Per-platform base: distroless publishes a manifest list per tag.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/meshdns /usr/local/bin/meshdns
USER 65532:65532
EXPOSE 1053/udp 1053/tcp 9253/tcp
ENTRYPOINT ["/usr/local/bin/meshdns"]
CMD ["serve"]
