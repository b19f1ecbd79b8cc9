# qldm job server. Build:  docker build -t qldm .
# A CPU-only torch keeps the image small: pass the PyTorch CPU wheel index as TORCH_INDEX_URL
# (docs/deploy.md); left empty, pip takes torch==2.13.0 from PyPI (the larger CUDA build).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

ARG TORCH_INDEX_URL=
RUN if [ -n "$TORCH_INDEX_URL" ]; then pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0; fi

WORKDIR /app
COPY pyproject.toml README.md ./
COPY qldm ./qldm
COPY circuits ./circuits
COPY mitigation ./mitigation
COPY backends ./backends
COPY jobs ./jobs
COPY service ./service
COPY client ./client
COPY hybrid ./hybrid
COPY bench ./bench
COPY configs ./configs
RUN pip install ".[postgres,ray]"

RUN useradd --create-home --uid 1000 qldm && mkdir -p /data && chown qldm /data
USER qldm

# Settings are read from QLDM_* variables (service/settings.py). Binding beyond loopback turns
# API-key auth on: create keys with `qldm keys create --tenant NAME` against the same database.
ENV QLDM_DATA_DIR=/data \
    QLDM_HOST=0.0.0.0 \
    QLDM_PORT=8000
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"

CMD ["sh", "-c", "exec qldm serve --host \"$QLDM_HOST\" --port \"$QLDM_PORT\""]
