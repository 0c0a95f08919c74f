# sluice in a container: listens on 8080, reads /etc/sluice/applications.toml.
#   docker build -t sluice .
#   docker run -p 8080:8080 -v $PWD/applications.toml:/etc/sluice/applications.toml sluice
FROM debian:12-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential libssl-dev libc-ares-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY src ./src
COPY tools ./tools
COPY tests/unit ./tests/unit
RUN make build/sluice

FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends libssl3 libc-ares2 ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --no-create-home sluice
COPY --from=build /src/build/sluice /usr/local/bin/sluice
COPY examples/applications.toml /etc/sluice/applications.toml
USER sluice
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sluice", "-c", "/etc/sluice/applications.toml"]
