# Developer entry points. `make setup` once, then `make test`.
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

ROOT        := $(CURDIR)
PYTHON      ?= python3.11
VENV        := $(ROOT)/.venv
BIN         := $(VENV)/bin
COLL_ROOT   := $(ROOT)/.cache/collections
COLL_LINK   := $(COLL_ROOT)/ansible_collections/llm_serving/gke
STAMP       := $(VENV)/.installed
export ANSIBLE_COLLECTIONS_PATH := $(COLL_ROOT)
export ANSIBLE_HOME := $(ROOT)/.cache/ansible-home
export ANSIBLE_LOCAL_TEMP := $(ROOT)/.cache/ansible-tmp
export PATH := $(BIN):$(PATH)

.PHONY: setup system-packages lint sanity unit integration integration-parallel integration-serial molecule molecule-default molecule-switch test build ee \
        cluster-up cluster-down cluster-status control-plane deploy-local clean

setup: $(STAMP) $(COLL_LINK)

# Debian packages the tests need (the control-plane build installs its own).
system-packages:
	@missing=""; for p in python3-venv openssl git rsync; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done
	if ! command -v $(PYTHON) >/dev/null; then missing="$$missing python3.11 python3.11-venv"; fi
	if [ -n "$$missing" ]; then
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo )
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing
	fi

$(STAMP): requirements.txt requirements-dev.txt | system-packages
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

$(COLL_LINK):
	mkdir -p $(dir $@)
	ln -sfn ../../../.. $@

lint: setup
	$(BIN)/yamllint -s .
	$(BIN)/ruff check .
	$(BIN)/ansible-lint --profile production

# ansible-test needs the collection at ansible_collections/<ns>/<name> next to its dependencies:
# test a copy, in its own virtualenv (ansible-test --venv would download get-pip.py, which is offline here).
SANITY_VENV := $(ROOT)/.cache/sanity-venv
SITE        := $(VENV)/lib/python3.11/site-packages/ansible_collections
$(SANITY_VENV)/.installed: requirements.txt
	[ -x $(SANITY_VENV)/bin/python ] || $(PYTHON) -m venv $(SANITY_VENV)
	$(SANITY_VENV)/bin/pip install -q --upgrade pip
	$(SANITY_VENV)/bin/pip install -q ansible-core==2.19.14 -r requirements.txt
	touch $@

GET_PIP_CACHE := $(HOME)/.ansible/test/cache/get_pip_24_2.py
sanity: setup $(SANITY_VENV)/.installed
	mkdir -p $(dir $(GET_PIP_CACHE)) && cp .ci/get_pip_offline.py $(GET_PIP_CACHE)
	tmp=$$(mktemp -d)
	trap 'rm -rf "$$tmp"' EXIT
	mkdir -p $$tmp/ansible_collections/llm_serving $$tmp/ansible_collections/kubernetes $$tmp/ansible_collections/google
	ln -s $(SITE)/kubernetes/core $$tmp/ansible_collections/kubernetes/core
	ln -s $(SITE)/google/cloud $$tmp/ansible_collections/google/cloud
	rsync -a --exclude-from=.ci/sanity-exclude ./ $$tmp/ansible_collections/llm_serving/gke/
	cd $$tmp/ansible_collections/llm_serving/gke
	git init -q && git add -A >/dev/null
	$(SANITY_VENV)/bin/ansible-test sanity --python 3.11 --requirements --color no $(SANITY_ARGS)

# JUnit XML for tests/run_suite.py's summary when it runs the stage (LLM_SERVING_TEST_LOG_DIR set).
junit = $(if $(LLM_SERVING_TEST_LOG_DIR),--junitxml=$(LLM_SERVING_TEST_LOG_DIR)/$(1).xml)
# Integration tests run in parallel workers (pytest-xdist; tests/integration/conftest.py decides which
# modules run whole on one worker); tests marked `serial` (they restart or reconfigure the shared cluster) after.
INTEGRATION_WORKERS ?= 4

unit: setup
	$(BIN)/pytest -q -n 2 --durations=10 $(call junit,unit) tests/unit

integration: setup cluster-up
	rc=0
	$(MAKE) --no-print-directory integration-parallel || rc=$$?
	$(MAKE) --no-print-directory integration-serial || rc=$$?
	exit $$rc

integration-parallel: setup cluster-up
	$(BIN)/pytest -q -n $(INTEGRATION_WORKERS) --dist loadscope -m "not serial" --durations=10 \
	  $(call junit,integration-parallel) tests/integration

integration-serial: setup cluster-up
	$(BIN)/pytest -q -m serial --durations=10 $(call junit,integration-serial) tests/integration

# molecule/kind needs Docker and kind images: not run here (docs/testing.md).
molecule: molecule-default molecule-switch

molecule-default: setup
	$(BIN)/molecule test -s default

molecule-switch: setup
	$(BIN)/molecule test -s switch

molecule-attach: setup  # attach path (molecule/kind's, on a second bare embedded control plane); beside the shared one
	$(BIN)/molecule test -s attach

# Three concurrent lanes (static checks | cluster-up, molecule default, integration | molecule switch); prints
# each stage's wall time, the ten slowest tests and one closing count line (tests/run_suite.py).
test: setup
	$(BIN)/python tests/run_suite.py

build: setup
	rm -rf $(ROOT)/.cache/build
	$(BIN)/ansible-galaxy collection build --force --output-path $(ROOT)/.cache/build

# Execution environment build context (ansible-builder v3); `ansible-builder build` needs a container engine.
ee: build
	$(BIN)/ansible-builder create --file execution-environment.yml --context $(ROOT)/.cache/ee-context

control-plane: setup
	bash localcluster/build-control-plane.sh

cluster-up: setup
	$(BIN)/python -m localcluster up

cluster-down: setup
	$(BIN)/python -m localcluster down

cluster-status: setup
	$(BIN)/python -m localcluster status

# README's first command: local cluster + pattern 3 GPU deployment.
deploy-local: cluster-up
	$(BIN)/ansible-playbook -i inventories/local playbooks/deploy_pattern3_gpu.yml

clean: cluster-down
	rm -rf .cache .localcluster
