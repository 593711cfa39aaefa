# Quill — build, run and test. `make run` and `make test` work on a fresh Debian machine with
# Swift 6 installed: missing system packages are installed with apt-get first.

SWIFT      ?= swift
PYTHON     ?= python3
SYSTEM_PACKAGES := libblas-dev libopenblas0-pthread libsentencepiece-dev
TEST_VENV  := .venv-test
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PROMPT     ?= Once upon a time

.PHONY: all build deps run test test-swift test-python model bench clean

all: build

# Install the system libraries Quill links against, only when one is missing.
deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update && $(SUDO) apt-get install -y $$missing; \
	fi

build: deps
	$(SWIFT) build -c release

# Build, then tell a story with the model shipped in models/.
run: build
	.build/release/quill --echo -p "$(PROMPT)" -n 256 --verbose

test: deps test-swift test-python

test-swift:
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --disable-swift-testing

# The converter's tests need numpy and safetensors only (no ML framework); they run the
# debug binary that test-swift built.
$(TEST_VENV)/.installed: scripts/requirements-test.txt
	$(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/pip install --quiet -r scripts/requirements-test.txt
	touch $@

test-python: $(TEST_VENV)/.installed
	QUILL_BIN=$(CURDIR)/.build/debug/quill $(TEST_VENV)/bin/pytest -q Tests/python

# Train the default model and tokenizer from ../shared/corpora (about an hour on 2 cores).
model:
	scripts/train/make_model.sh

clean:
	rm -rf .build $(TEST_VENV)
