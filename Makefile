# The README's two commands: `make run` (the embedded single-machine cluster) and `make test` (the
# whole suite). Each first does the set-up a fresh Debian machine lacks (deploy/setup.sh).

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
IMAGE ?= poseidon:$(VERSION)
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
POSEIDON_CACHE ?= $(if $(filter 0,$(shell id -u)),/var/cache/poseidon,$(HOME)/.cache/poseidon)
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
# The Compose cluster's project and API port; it runs $(IMAGE).
export COMPOSE_PROJECT_NAME ?= poseidon
COMPOSE_RUN = POSEIDON_IMAGE=$(IMAGE) $(COMPOSE) -f deploy/compose.yaml
export POSEIDON_API_PORT ?= 5555
export POSEIDON_CACHE

.PHONY: run test lint setup-run setup-test image up down

run: setup-run
	cargo run --

test: setup-test
	POSEIDON_SCHEMATHESIS=$(POSEIDON_CACHE)/schemathesis-venv/bin/st cargo test --workspace

lint: setup-run
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

setup-run:
	deploy/setup.sh run

setup-test:
	deploy/setup.sh test

# poseidon:VERSION from the release binary and the libraries it links; no registry, no base image.
image: setup-run
	cargo build --release --bin poseidon
	deploy/image.sh $(IMAGE) $(TARGET_DIR)/release/poseidon

# A manager and three workers as containers on a private network (deploy/compose.yaml); the API
# on 127.0.0.1:$(POSEIDON_API_PORT). Given an image (`make up IMAGE=name`), it builds none.
up: $(if $(filter file,$(origin IMAGE)),image)
	$(COMPOSE_RUN) up -d

# Stops the cluster, removes the task containers its workers started on this engine (they drive
# the host's engine, so Compose does not own them), then the cluster's containers, networks and
# volume. In that order: a running worker would restart what is removed under it, and a network
# with task containers on it cannot be removed.
down:
	$(COMPOSE_RUN) stop
	ids=$$(for w in compose-w1 compose-w2 compose-w3; do docker ps -aq --filter label=io.poseidon.node=$$w; done); \
	if [ -n "$$ids" ]; then docker rm -f $$ids >/dev/null; fi
	$(COMPOSE_RUN) down --volumes --remove-orphans
