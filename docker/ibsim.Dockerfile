# The simulated IB Gateway (paper/demo clusters and CI only; never next to a real account).
# Built from the repository root: docker build -f docker/ibsim.Dockerfile .
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLCONFIGDIR=/tmp/matplotlib

RUN groupadd --system --gid 10001 trading \
 && useradd --system --uid 10001 --gid trading --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin trading

# Dependencies first, in their own layer: rebuilt only when requirements.txt changes.
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt

COPY pyproject.toml README.md /tmp/src/
COPY trading /tmp/src/trading
RUN pip install --no-cache-dir --no-deps /tmp/src && rm -rf /tmp/src

WORKDIR /app
USER 10001:10001
# 4002: the TWS API port of IB Gateway's paper mode, so clients need no other setting.
EXPOSE 4002

# ibsim writes no Redis heartbeat: alive = its API port accepts connections.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-m", "trading.healthcheck", "--tcp", "4002"]

# Listen on every interface: the clients are other containers.
CMD ["python", "-m", "trading.ibsim", "--host", "0.0.0.0", "--port", "4002"]
