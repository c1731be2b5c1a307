# Tether — common tasks. `make test` is THE test command (CI runs it through .ci/run).
SHELL := /bin/bash
VENV ?= $(or $(TETHER_VENV),.venv)
ARGS ?=
RUN_ARGS ?=

.PHONY: deps run test fuzz lint proto images

deps:          ## Debian packages + venv with the project and its test tools
	bash scripts/install-deps.sh

run:           ## deps, default CNI network if none, then the daemon (flags: RUN_ARGS='...')
	bash scripts/run.sh $(RUN_ARGS)

test:          ## deps, lint, then pytest in a private netns (pytest args: ARGS='-k foo')
	bash scripts/test.sh $(ARGS)

fuzz:          ## the CRI fuzzer, longer and with fresh randomness (FUZZ_EXAMPLES=N, default 3000)
	TETHER_FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),3000) TETHER_SKIP_LINT=1 \
	  bash scripts/test.sh tests/integration/test_fuzz.py $(ARGS)

lint:          ## ruff + mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

proto:         ## regenerate the CRI gRPC stubs
	$(VENV)/bin/python tools/gen_proto.py

images:        ## build the offline test images (cached)
	bash tests/images/build.sh
