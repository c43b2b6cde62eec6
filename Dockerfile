# Tyto in a container: built on Debian 12 with the -dev packages, run on debian:12-slim with only
# the runtime libraries, as an unprivileged user.
#
#   docker build -t tyto .
#   docker run -p 6969:6969 -e TYTO_REDIS_URL=redis://redis-host:6379 tyto
#   docker run -v $PWD/tyto.yaml:/etc/tyto/tyto.yaml:ro ... tyto     (your own configuration)
#
# Every key of tyto.yaml can also be set from the environment (TYTO_REDIS_URL, TYTO_WORKERS,
# TYTO_PROXY_TRUSTED, ...); docker-compose.yml shows a whole deployment behind haproxy.

# ---- build ------------------------------------------------------------------------------------
FROM debian:12 AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc make pkg-config libc6-dev \
        libevent-dev libhiredis-dev libyaml-dev libsodium-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# A stale binary or build tree from the host (see .dockerignore) must not leak in.
RUN rm -rf build tyto && make -j"$(nproc)" tyto && ./tyto -V

# ---- run --------------------------------------------------------------------------------------
FROM debian:12-slim
# Exactly the shared libraries the binary links (ldd: libevent, libhiredis, libyaml, libsodium, libc).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libevent-2.1-7 libhiredis0.14 libyaml-0-2 libsodium23 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin tyto \
 && mkdir -p /etc/tyto
COPY --from=build /src/tyto /usr/local/bin/tyto
# The documented default configuration; mount your own over it (or over /etc/tyto).
COPY tyto.yaml /etc/tyto/tyto.yaml
USER tyto
EXPOSE 6969
# The admin listener (/metrics, /stats, /healthz) defaults to 127.0.0.1:6970, inside the container
# only; to scrape it from another container set TYTO_ADMIN_LISTEN=0.0.0.0:6970 (docker-compose.yml
# does) and keep 6970 off the published ports.
EXPOSE 6970
# Health without curl in the image: bash's /dev/tcp speaks one HTTP/1.0 request to /healthz,
# which answers 200 only while Redis does (503 otherwise).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/6969 && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && IFS= read -r line <&3 && case \"$line\" in 'HTTP/1.'?' 200 '*) exit 0;; *) exit 1;; esac"]
# SIGTERM (docker stop) drains requests in flight; give it shutdown.timeout_s before SIGKILL.
STOPSIGNAL SIGTERM
CMD ["tyto", "-c", "/etc/tyto/tyto.yaml"]
