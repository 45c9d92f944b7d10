# The operator image: dependencies built in a full Python image, run from a slim one as
# a non-root user that matches the chart's securityContext (uid/gid 65532).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python -m venv /opt/hemostat \
 && /opt/hemostat/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/hemostat/bin/pip install --no-cache-dir .

FROM python:3.11-slim
COPY --from=build /opt/hemostat /opt/hemostat
ENV PATH=/opt/hemostat/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["hemostat"]
CMD ["run", "--bind-address=0.0.0.0"]
