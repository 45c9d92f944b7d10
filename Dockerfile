# The operator image. Dependencies are installed in a build stage; the final stage
# has the venv only (no pip, no setuptools) and runs as the chart's non-root uid.
# BASE is the registry image, pinned by digest; hack/image.sh overrides it with a
# base built from Debian packages where no registry is reachable.
ARG BASE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

FROM ${BASE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
# Installed without bytecode; then the modules the operator really imports are
# imported once with PYTHONPYCACHEPREFIX set, so /opt/hemostat/pycache holds .pyc
# files for exactly those (standard library included) and nothing else. The root
# filesystem is read-only at run time, so that tree is all the bytecode there is.
# Unused parts of the kubernetes client go: its asyncio copy (half its size) and
# the API groups the operator never calls (the package loads them lazily by name).
ENV PYTHONPYCACHEPREFIX=/opt/hemostat/pycache
RUN python3 -m venv /opt/hemostat \
 && /opt/hemostat/bin/pip install --no-cache-dir --no-compile --disable-pip-version-check . \
 && /opt/hemostat/bin/pip uninstall --yes --quiet pip setuptools \
 && kube=$(/opt/hemostat/bin/python -c 'import kubernetes, os; print(os.path.dirname(kubernetes.__file__))') \
 && rm -rf "$kube/aio" \
 && find "$kube/client/api" -name '*_api.py' \
      ! -name core_v1_api.py ! -name apps_v1_api.py ! -name autoscaling_v2_api.py \
      ! -name coordination_v1_api.py ! -name custom_objects_api.py ! -name admissionregistration_v1_api.py -delete \
 && rm -rf "$PYTHONPYCACHEPREFIX" \
 && /opt/hemostat/bin/python -c "import importlib, pkgutil, hemostat, openfeature.evaluation_context; \
      [importlib.import_module(m.name) for m in pkgutil.walk_packages(hemostat.__path__, 'hemostat.') \
       if not m.name.startswith(('hemostat.sim', 'hemostat.__main__'))]"

FROM ${BASE}
COPY --from=build /opt/hemostat /opt/hemostat
ENV PATH=/opt/hemostat/bin:$PATH \
    PYTHONPYCACHEPREFIX=/opt/hemostat/pycache \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["hemostat"]
CMD ["run", "--bind-address=0.0.0.0"]
