# The README's commands. Each does its own set-up first (idempotent), then its job.
#   make report       data check, derivations that are not fresh (RECHECK=1: all), freshness check, render -> _output/ece046211_hw2_<id1>_<id2>.{pdf,ipynb,zip}
#   make test         pytest
#   make experiments  every task notebook's full profile (GPU when there is one)
#   make check-data   validate every dataset found through the lookup order
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# ALLOW_STALE: 1/true/yes or 0/false/no (empty: no); anything else is an error
ALLOW_STALE ?=
STALE_FLAG = --allow-stale "$(ALLOW_STALE)"
RECHECK ?=

.PHONY: report test experiments check-data setup latex clean

setup: $(STAMP) latex

# Re-install when the pinned dependencies change.
$(STAMP): pyproject.toml
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	@echo "setup: installing pinned Python dependencies into $(VENV) (a few minutes the first time)"
	@$(VPY) -m pip install --quiet --disable-pip-version-check -e . 2>&1 | grep -v "is ignored: it is neither" || true
	@$(VPY) -c "import torch, torchvision, jupytext, nbclient, optuna, kornia" || { echo "setup: Python dependencies failed to install into $(VENV)" >&2; exit 1; }
	@touch $(STAMP)

latex:
	@bash .ci/setup-system.sh

report: setup
	$(VPY) -m hw2.data figures
	$(VPY) -m hw2.pipeline derivations $(if $(RECHECK),--recheck,)
	$(VPY) -m hw2.pipeline check $(STALE_FLAG)
	$(VPY) -m hw2.render $(STALE_FLAG)

test: setup
	$(VPY) -m pytest

experiments: setup
	$(VPY) -m hw2.pipeline experiments --profile full

check-data: $(STAMP)
	$(VPY) -m hw2.data

clean:
	rm -rf _output .pytest_cache .quarto
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
