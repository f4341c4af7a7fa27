# Multi-stage build: compile with the official Swift image, run on a slim Debian with only what the binary needs.
FROM swift:6.3-bookworm AS build
# libpg_query (the PostgreSQL parser) comes from Debian, as on the project machines.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpg-query-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
RUN swift package resolve
COPY Sources ./Sources
COPY Tests ./Tests
# Exclusivity checks off in the release binary: ~7% of the pooler's user CPU in the profile (docs/benchmarks.md).
RUN swift build -c release --product pgcat --static-swift-stdlib -Xswiftc -enforce-exclusivity=unchecked \
    && cp "$(swift build -c release --static-swift-stdlib -Xswiftc -enforce-exclusivity=unchecked --show-bin-path)/pgcat" /usr/local/bin/pgcat

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libstdc++6 tzdata libpg-query1504.0 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 999 --home /nonexistent --shell /usr/sbin/nologin pgcat
COPY --from=build /usr/local/bin/pgcat /usr/local/bin/pgcat
COPY pgcat.yaml /etc/pgcat/pgcat.yaml
USER pgcat
# 6432: PostgreSQL clients and the admin console; 9930: Prometheus exporter.
EXPOSE 6432 9930
# SIGINT drains open transactions (up to shutdown_timeout) before exiting.
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/pgcat"]
CMD ["--config", "/etc/pgcat/pgcat.yaml"]
