# syntax=docker/dockerfile:1
# Gatehouse: one C++ binary, built on Debian 12 (bookworm) and run on debian:12-slim.
#
#   docker build -t gatehouse .                                   # the gateway only (default)
#   docker build -t gatehouse --build-arg WITH_NODE=true .        # + Node.js/npm/npx for stdio servers started with node or npx
#   docker build -t gatehouse --build-arg WITH_SAMPLES=true .     # + Node.js and the sample servers of config/servers.json
#
# Runtime layout: /usr/local/bin/gatehouse; the admin portal in /usr/share/gatehouse/web (GATEHOUSE_WEB_DIR);
# the servers file /etc/gatehouse/servers.json (MCP_SERVERS_FILE: mount your own over it); the SQLite store and
# other state in the volume /data, which is also the working directory and HOME. Every other setting comes
# from the environment: see .env.example. Stdio servers need their commands inside the image (WITH_NODE, or
# build FROM this image and add what they need).

ARG DEBIAN_IMAGE=debian:12
ARG RUNTIME_IMAGE=debian:12-slim
# The sample servers need Node.js >= 20 (Debian 12's own nodejs is 18), so Node comes from this image.
ARG NODE_IMAGE=node:20-bookworm-slim
ARG WITH_NODE=false
ARG WITH_SAMPLES=false

# ---- build: the gatehouse binary (Release, no tests) ---------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      cmake ninja-build g++ pkg-config ca-certificates \
      libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev \
      libssl-dev libsqlite3-dev libpq-dev libhiredis-dev libtcmalloc-minimal4 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY src ./src
# A from-scratch build takes about 2 minutes on 2 cores; raise the job count on bigger builders.
ARG BUILD_JOBS=2
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGATEHOUSE_TESTS=OFF -DGATEHOUSE_BENCH=OFF \
 && cmake --build build --target gatehouse -j "${BUILD_JOBS}" \
 && strip build/gatehouse \
 && build/gatehouse --version

# ---- npm: the admin portal's packages (web/) and, when asked for, the sample MCP servers ---------------------------
# The whole (filtered, see .dockerignore) context is copied so that this stage works whether web/package.json
# exists or not.
FROM ${NODE_IMAGE} AS npm
ARG WITH_SAMPLES
COPY . /ctx
RUN set -eux; \
    mkdir -p /out/web /out/samples; \
    if [ -d /ctx/web ]; then cp -a /ctx/web/. /out/web/; fi; \
    if [ -f /out/web/package.json ]; then \
      cd /out/web && npm ci --no-audit --no-fund --loglevel=error && npm run --if-present build; \
    fi; \
    if [ "${WITH_SAMPLES}" = "true" ]; then \
      cp /ctx/samples/package.json /ctx/samples/package-lock.json /out/samples/; \
      cd /out/samples && npm ci --omit=dev --no-audit --no-fund --loglevel=error; \
    fi

# ---- runtime: libraries, binary, portal, default servers file ------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
ARG DEBIAN_FRONTEND=noninteractive
# The binary's shared libraries, by package (dpkg -S on Debian 12): libssl3, libsqlite3-0, libpq5, libhiredis0.14,
# libboost-json1.81.0, libboost-url1.81.0, libtcmalloc-minimal4. ca-certificates for https upstreams and OIDC discovery; tini as PID 1
# (passes SIGTERM/SIGHUP on, reaps orphans of stdio servers); bash for the health check.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates tini bash \
      libssl3 libsqlite3-0 libpq5 libhiredis0.14 libboost-json1.81.0 libboost-url1.81.0 libtcmalloc-minimal4; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 10001 gatehouse; \
    useradd --system --uid 10001 --gid gatehouse --home-dir /data --shell /usr/sbin/nologin gatehouse; \
    mkdir -p /data /etc/gatehouse /usr/share/gatehouse; \
    chown gatehouse:gatehouse /data
COPY --from=build /src/build/gatehouse /usr/local/bin/gatehouse
COPY --from=npm /out/web /usr/share/gatehouse/web
COPY deploy/servers.json /etc/gatehouse/servers.json
RUN gatehouse --version
ENV GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8085 \
    DATABASE_URL=sqlite:////data/gatehouse.db \
    MCP_SERVERS_FILE=/etc/gatehouse/servers.json \
    GATEHOUSE_WEB_DIR=/usr/share/gatehouse/web \
    HOME=/data
USER gatehouse:gatehouse
WORKDIR /data
EXPOSE 8085
# No curl in the image: bash's /dev/tcp sends one HTTP/1.0 request. A 503 (draining) counts as unhealthy.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${GATEWAY_PORT:-8085} && printf 'GET /gateway/health HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
# SIGTERM drains in-flight calls for SHUTDOWN_GRACE_MS (10 s by default): give docker stop more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/gatehouse"]
CMD ["serve"]

# ---- optional Node.js (WITH_NODE=true) -------------------------------------------------------------------------------
FROM runtime AS node-false

FROM runtime AS node-true
USER root
COPY --from=npm /usr/local/bin/node /usr/local/bin/node
COPY --from=npm /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && node --version && npm --version
USER gatehouse:gatehouse

# ---- optional sample servers (WITH_SAMPLES=true; brings Node.js along) ----------------------------------------------
FROM node-${WITH_NODE} AS samples-false

FROM node-true AS samples-true
USER root
COPY --from=npm /out/samples /opt/gatehouse/samples
COPY deploy/servers.samples.json /etc/gatehouse/servers.json
RUN install -d -o gatehouse -g gatehouse /data/files
USER gatehouse:gatehouse

# ---- the image ---------------------------------------------------------------------------------------------------------
FROM samples-${WITH_SAMPLES} AS final
# Declared last: a build step that writes under a declared volume may be discarded.
VOLUME ["/data"]
