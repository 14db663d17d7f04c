# The simulated IB Gateway (paper/demo clusters and CI only; never next to a real account): the
# shared base (docker/base.Dockerfile) and a command. Built from the repository root by
# `make images`, or by hand: docker build -f docker/ibsim.Dockerfile -t trading/ibsim:dev .
ARG TRADING_BASE=trading/base:dev
# checkov:skip=CKV_DOCKER_7: the base is this repository's own image, tagged by make images
FROM ${TRADING_BASE}

WORKDIR /app
USER 10001:10001
# 4002: the TWS API port of IB Gateway's paper mode, so clients need no other setting.
EXPOSE 4002

# ibsim writes no Redis heartbeat: alive = its API port accepts connections.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-m", "trading.healthcheck", "--tcp", "4002"]

# Listen on every interface: the clients are other containers.
CMD ["python", "-m", "trading.ibsim", "--host", "0.0.0.0", "--port", "4002"]
