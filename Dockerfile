# Strata: one image for every role (ENTRYPOINT is the `strata` binary):
#   docker run IMAGE node -m /models/model.gguf --host 0.0.0.0     (compute node / stage)
#   docker run IMAGE gateway --config /etc/strata/cluster.yaml     (front door)
#   docker run IMAGE model synth --shape tiny-qwen2 -o /models/m.gguf
# Build: docker build -t strata .   Compose: deploy/compose.yaml. Guide: docs/deploy.md.
#
# ISA: the image is portable across x86-64 CPUs. Nothing is built with -march=native: the
# AVX2 / AVX-512 kernels are compiled per file with their own -m flags and chosen at run time
# (__builtin_cpu_supports in src/kernels/kernels.cc), with scalar twins as the fallback; on
# aarch64 the NEON kernels are baseline ARMv8-A.

# ---- build stage: the project's own setup script, only the `strata` target -----------------
FROM debian:bookworm-slim AS build
WORKDIR /src
# Dependencies first: this layer stays cached while only the sources change.
COPY scripts/setup.sh scripts/setup.sh
RUN bash scripts/setup.sh --build-only && rm -rf /var/lib/apt/lists/*
COPY . .
# Release compiles exactly what the tested RelWithDebInfo build does (the project's -O2 comes
# last, -DNDEBUG), without -g; a unity build (STRATA_UNITY): a much faster build, small binary.
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DSTRATA_TESTS=OFF -DSTRATA_UNITY=ON \
    && ninja -C /build -j"$(nproc)" strata \
    && strip --strip-debug -o /strata /build/strata \
    && /strata --help >/dev/null

# ---- runtime stage: the binary, its shared libraries, the synth vocabularies --------------
FROM debian:bookworm-slim
# Exactly what `ldd strata` needs beyond libc/libstdc++/libgcc (already in the base image).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       libyaml-cpp0.7 libssl3 libhiredis0.14 libpcre2-8-0 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /usr/share/doc/* /usr/share/man/* \
    && useradd --system --uid 10001 --user-group --home-dir /nonexistent \
       --shell /usr/sbin/nologin strata \
    && mkdir -p /models /etc/strata \
    && chown strata:strata /models
COPY --from=build /strata /usr/local/bin/strata
COPY deploy/docker/healthcheck.sh /usr/local/bin/strata-healthcheck
# `strata model synth` copies a tokenizer from these (STRATA_DATA_DIR).
COPY tests/data/vocab/ggml-vocab-qwen2.gguf tests/data/vocab/ggml-vocab-llama-bpe.gguf \
     /usr/share/strata/vocab/
COPY tests/data/templates/*.jinja /usr/share/strata/templates/
ENV STRATA_DATA_DIR=/usr/share/strata
USER strata:strata
WORKDIR /models
VOLUME ["/models"]
# 8000: gateway, 8080: node HTTP API, 9090: pipeline stage protocol.
EXPOSE 8000 8080 9090
# Default: a node's GET /health on 8080 (200 once the model is loaded). The gateway sets
# STRATA_HEALTH_PORT=8000 STRATA_HEALTH_PATH=/ready (200 once a backend is healthy).
HEALTHCHECK --interval=5s --timeout=3s --start-period=120s --retries=3 \
    CMD ["strata-healthcheck"]
ENTRYPOINT ["strata"]
CMD ["--help"]
