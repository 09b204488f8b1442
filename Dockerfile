# One image for every Milepost service: migrate, worker, scheduler, api.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc g++ make && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
COPY rules rules
COPY crm crm
COPY channels channels
COPY worker worker
# durable_rules builds its C core here, so the runtime image needs no compiler.
RUN UV_PROJECT_ENVIRONMENT=/venv uv sync --frozen --no-dev

FROM python:3.11-slim
RUN useradd --create-home milepost
COPY --from=build /venv /venv
COPY --from=build /app /app
COPY campaigns /app/campaigns
WORKDIR /app
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 MILEPOST_CAMPAIGNS=/app/campaigns
USER milepost
# The API (MILEPOST_API_PORT) and the worker's Prometheus metrics (MILEPOST_METRICS_PORT).
EXPOSE 8000 9191
CMD ["milepost", "--help"]
