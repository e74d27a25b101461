# The worker / CLI image: `docker compose up` builds it for the worker and simulator services.
FROM python:3.11-slim
WORKDIR /srv/edgeml
COPY pyproject.toml README.md ./
COPY app ./app
COPY agents ./agents
COPY topics ./topics
COPY models ./models
COPY sim ./sim
COPY infra ./infra
COPY training ./training
# edgeml/ holds one symlink per folder above: the installed namespace (edgeml.app, ...)
COPY edgeml ./edgeml
RUN pip install --no-cache-dir .
ENV EDGEML_WEB_HOST=0.0.0.0 \
    EDGEML_DATA_DIR=/var/lib/edgeml
EXPOSE 6066
ENTRYPOINT ["edgeml"]
CMD ["worker", "-l", "info"]
