# Hemostat: the verbs. `make test` installs everything it needs from this repo's files.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: help install lint fmt crds manifests unit e2e test testenv-deps testenv-build testenv-up testenv-down testenv-status demo bench bench-scale bench-attribution bench-fairness image kind-up kind-down clean

help: ## list the verbs
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(PY) hack/floors.py > $(VENV)/floors.txt  # the floors are what the tests run on
	$(BIN)/pip install --quiet -e '.[dev,charts]' -c $(VENV)/floors.txt
	@rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP) ## create .venv and install hemostat with dev tools

lint: $(STAMP) ## ruff, formatting, import-layer contracts and mypy (strict on decide/ and cycle/)
	$(BIN)/ruff check operator tests bench hack
	$(BIN)/ruff format --check operator tests bench hack
	$(BIN)/lint-imports
	$(BIN)/mypy

fmt: $(STAMP) ## format the code
	$(BIN)/ruff format operator tests bench hack
	$(BIN)/ruff check --fix operator tests bench hack

crds: $(STAMP) ## regenerate crds/ and the chart's copy from the pydantic models
	$(BIN)/python -m hemostat.crdgen

manifests: testenv-build ## render manifests/install.yaml from the Helm chart
	hack/render-manifests.sh

testenv-deps: ## install Prometheus and Alertmanager from Debian if missing
	@command -v prometheus >/dev/null && command -v prometheus-alertmanager >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null; \
	  else echo "prometheus or alertmanager is missing: run 'sudo apt-get install --no-install-recommends prometheus prometheus-alertmanager'" >&2; exit 1; fi; }

testenv-build: ## build the control-plane binaries from pinned Go modules (cached in ~/.cache/hemostat)
	hack/build-testenv.sh

testenv-up: testenv-deps ## start the local control plane + Prometheus on 127.0.0.1 (writes .testenv/env)
	hack/testenv.sh up

testenv-down: ## stop the local control plane and remove its state
	hack/testenv.sh down

testenv-status: ## show the local control plane's processes
	hack/testenv.sh status

unit: $(STAMP) ## unit tests only (no cluster)
	$(BIN)/python -m pytest tests --ignore=tests/e2e

e2e: $(STAMP) testenv-up ## end-to-end tests against the real control plane
	$(BIN)/python -m pytest tests/e2e

test: $(STAMP) testenv-up ## everything: lint, unit and end-to-end tests
	$(MAKE) --no-print-directory lint
	$(BIN)/python -m pytest tests

demo: $(STAMP) testenv-deps ## watch an automatic rollback on the local control plane
	hack/demo.sh

bench-scale: $(STAMP) testenv-up ## scale: round CPU in-process, a baseline (3 Deployments, 1 policy), then SCALE Deployments (1000; SCALE=10000) under 1 policy and under SCALE_POLICIES (100); SCALE_SOAK_MINUTES=30 soaks the last
	$(BIN)/python bench/round_cpu.py --deployments $${SCALE:-1000} --policies 1 $${SCALE_POLICIES:-100}
	$(BIN)/python bench/run.py scale --deployments 3 --policies 1 --minutes $${SCALE_MINUTES:-2}
	$(BIN)/python bench/run.py scale --deployments $${SCALE:-1000} --policies 1 $${SCALE_POLICIES:-100} \
		--minutes $${SCALE_MINUTES:-2} --soak-minutes $${SCALE_SOAK_MINUTES:-0}

image: ## build the operator image (docker, else podman; IMAGE=localhost/hemostat:dev) and print its size
	hack/image.sh

kind-up: ## create a kind cluster for users with Docker (writes .kind/kubeconfig)
	@command -v kind >/dev/null || { echo "kind is not installed: https://kind.sigs.k8s.io" >&2; exit 1; }
	mkdir -p .kind && kind create cluster --name hemostat --kubeconfig .kind/kubeconfig --wait 120s
	@echo "run the e2e tests on it: HEMOSTAT_E2E_KUBECONFIG=$$PWD/.kind/kubeconfig make e2e"

kind-down: ## delete the kind cluster
	kind delete cluster --name hemostat

clean: testenv-down ## remove the venv and local state
	rm -rf $(VENV) .pytest_cache .ruff_cache

bench-attribution: $(STAMP) testenv-up ## the attribution corpus (121 labelled scenarios, attribution on and off): confusion matrix, wrong rollbacks, missed bad deploys
	$(BIN)/python bench/attribution.py --parallel $${ATTRIBUTION_PARALLEL:-8}

bench-fairness: $(STAMP) testenv-up ## a quiet namespace's bad rollout alone and beside a noisy namespace holding every query slot (fair share)
	$(BIN)/python bench/fairness.py --runs $${FAIRNESS_RUNS:-5}

bench: $(STAMP) testenv-up ## latency of detect/rollback/resolve, the rollout-watch fast lane (tables + bench/results/*.json); SOAK_MINUTES=30 adds a soak
	$(BIN)/python bench/run.py latency --runs $${BENCH_RUNS:-10}
	$(BIN)/python bench/run.py fastlane --runs $${FASTLANE_RUNS:-5}
	@if [ -n "$${SOAK_MINUTES:-}" ]; then $(BIN)/python bench/run.py soak --minutes $$SOAK_MINUTES; fi
