# Quill — build, run and test. `make run` and `make test` work on a fresh Debian machine with
# Swift 6 installed: missing system packages are installed with apt-get first.

SWIFT      ?= swift
PYTHON     ?= python3
SYSTEM_PACKAGES := libblas-dev libopenblas0-pthread libsentencepiece-dev
# What `make test` needs besides (the CLI tests measure peak memory with /usr/bin/time; mandoc
# lints the man page, zsh and fish parse their completions).
TEST_PACKAGES   := time python3-venv mandoc zsh fish
TEST_VENV  := .venv-test
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PROMPT     ?= Once upon a time

.PHONY: all build deps run install uninstall docs test test-swift test-python test-scale fuzz fuzz-build fuzz-smoke sanitize check-llamacpp model bench clean

all: build

# Install the system libraries Quill links against, only when one is missing.
deps:
	@missing=""; for p in $(SYSTEM_PACKAGES) $(EXTRA_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update && $(SUDO) apt-get install -y $$missing; \
	fi

# The Swift runtime and Foundation linked in (--static-swift-stdlib): the binary starts in about
# 7 ms less (no dynamic relocation of a dozen Swift libraries: a whole 15M-model run went from 30
# to 23 ms), and an installed quill runs without the Swift toolchain beside it.
build: deps
	$(SWIFT) build -c release --static-swift-stdlib

# Build, then tell a story with the model shipped in models/ (-n 640, its window, so the story ends by itself).
run: build
	.build/release/quill --echo -p "$(PROMPT)" -n 640 --verbose

test: EXTRA_PACKAGES = $(TEST_PACKAGES)
test: deps test-swift test-python fuzz-smoke

test-swift:
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --disable-swift-testing

# The Python tests (converters, GGUF, corruption) need the PyPI packages in
# scripts/requirements-test.txt (numpy, safetensors, gguf, sentencepiece, and transformers without
# torch, only to write configs); they run the debug binary that test-swift built.
$(TEST_VENV)/.installed: scripts/requirements-test.txt
	$(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/pip install --quiet -r scripts/requirements-test.txt
	touch $@

test-python: $(TEST_VENV)/.installed
	QUILL_BIN=$(CURDIR)/.build/debug/quill $(TEST_VENV)/bin/pytest -q -rs Tests/python

# Spark's local mode (Tests/scale: scripts/spark_generate.py against one `quill --batch` run), not
# in `make test`: PySpark is about 320 MB and needs a Java runtime (Debian's default-jre-headless),
# so it has its own venv and CI runs it as a second step.
SCALE_PACKAGES := default-jre-headless python3-venv
SCALE_VENV := .venv-scale

$(SCALE_VENV)/.installed: scripts/requirements-scale.txt
	$(PYTHON) -m venv $(SCALE_VENV)
	$(SCALE_VENV)/bin/pip install --quiet -r scripts/requirements-scale.txt
	touch $@

test-scale: EXTRA_PACKAGES = $(SCALE_PACKAGES)
test-scale: deps $(SCALE_VENV)/.installed
	$(SWIFT) build
	QUILL_BIN=$(CURDIR)/.build/debug/quill $(SCALE_VENV)/bin/pytest -q -rs Tests/scale

# libFuzzer targets, one per parser of untrusted bytes (Sources/QuillFuzz), built with
# AddressSanitizer and coverage into .build-fuzz. `make fuzz` runs each for FUZZ_SECONDS;
# `make fuzz-smoke` (part of `make test`) for a few seconds, to keep them alive. New inputs go
# to a scratch folder, never into the seed corpus in Tests/Fuzz/corpus.
FUZZ_TARGETS := checkpoint gguf tokenizer batch-file batch-line json arguments
FUZZ_SECONDS ?= 180
FUZZ_BUILD   := .build-fuzz
FUZZ_RUNTIME = $(firstword $(wildcard $(dir $(realpath $(shell which $(SWIFT))))../lib/clang/*/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a))

fuzz-build:
	@test -n "$(FUZZ_RUNTIME)" || { echo "libFuzzer runtime (libclang_rt.fuzzer_no_main) not found in the Swift toolchain"; exit 1; }
	$(SWIFT) build --scratch-path $(FUZZ_BUILD) --product quill-fuzz -Xswiftc -DQUILL_FUZZING \
	  -Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp \
	  -Xcc -fsanitize=fuzzer-no-link,address -Xlinker $(FUZZ_RUNTIME) -Xlinker -lstdc++

define run-fuzzers
	@for target in $(FUZZ_TARGETS); do \
	  work=$$(mktemp -d); \
	  QUILL_FUZZ_TARGET=$$target $(FUZZ_BUILD)/debug/quill-fuzz -max_total_time=$(1) -print_final_stats=1 \
	    -artifact_prefix=$$work/ $$work Tests/Fuzz/corpus/$$target > $$work/log 2>&1; status=$$?; \
	  runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $$work/log); \
	  echo "fuzz $$target: $$runs executions in $(1) s, corpus $$(ls Tests/Fuzz/corpus/$$target | wc -l) seeds + $$(ls $$work | grep -cv '^log$$') new, exit $$status"; \
	  if [ $$status -ne 0 ]; then tail -40 $$work/log; echo "crash inputs and log kept in $$work"; exit 1; fi; \
	  rm -rf $$work; \
	done
endef

fuzz: fuzz-build
	$(call run-fuzzers,$(FUZZ_SECONDS))

fuzz-smoke: fuzz-build
	$(call run-fuzzers,5)

# The test suite under AddressSanitizer, with the C kernels also under UBSan (Swift's own
# -sanitize=undefined is not supported on Linux), in its own build folder. Leak detection is off:
# it reports the test harness's own Foundation and XCTest allocations, not Quill's. The quarantine
# of freed memory is kept small so that the tests' peak-memory limits measure Quill, not ASan.
sanitize:
	$(SWIFT) build --build-tests --scratch-path .build-asan --sanitize=address -Xcc -fsanitize=undefined -Xcc -fno-sanitize-recover=undefined
	ASAN_OPTIONS=detect_leaks=0:quarantine_size_mb=16 QUILL_SANITIZED_BUILD=1 $(SWIFT) test --skip-build --scratch-path .build-asan --sanitize=address --disable-swift-testing

# Files written by llama.cpp's own converter and quantizer, checked against the Hugging Face model
# (Tests/python/test_llamacpp_converter.py). Not part of `make test`: it needs PyPI's torch (about
# 6 GB in .venv-llamacpp) and the llama.cpp build of ../shared/anchors (build.sh, about 3 minutes).
QUILL_ANCHORS   ?= $(HOME)/.cache/quill-anchors
LLAMACPP_VENV   := .venv-llamacpp
LLAMACPP_SOURCE  = $(firstword $(wildcard $(QUILL_ANCHORS)/src/llama_cpp_python-*/vendor/llama.cpp))

$(LLAMACPP_VENV)/.installed: scripts/requirements-test.txt
	$(PYTHON) -m venv $(LLAMACPP_VENV)
	$(LLAMACPP_VENV)/bin/pip install --quiet -r scripts/requirements-test.txt torch
	touch $@

check-llamacpp: $(LLAMACPP_VENV)/.installed
	test -x $(QUILL_ANCHORS)/llama.cpp/bin/llama-quantize || ../shared/anchors/build.sh
	$(SWIFT) build
	LLAMA_CPP_SOURCE=$(LLAMACPP_SOURCE) LLAMA_CPP_BIN=$(QUILL_ANCHORS)/llama.cpp/bin QUILL_BIN=$(CURDIR)/.build/debug/quill \
	  $(LLAMACPP_VENV)/bin/pytest -q -s Tests/python/test_llamacpp_converter.py

# Train the default model and tokenizer from ../shared/corpora (about an hour on 2 cores).
model:
	scripts/train/make_model.sh

# Install: the binary, the default model and tokenizer (found from the binary's own path), the
# man page and completions. INSTALL_BINARY=path installs a binary already built (the tests do).
PREFIX  ?= /usr/local
DESTDIR ?=
INSTALL_BINARY ?=
INSTALLED_FILES := bin/quill share/quill/tinystories.bin share/quill/tinystories.model share/man/man1/quill.1 \
  share/bash-completion/completions/quill share/zsh/site-functions/_quill share/fish/vendor_completions.d/quill.fish

install: $(if $(INSTALL_BINARY),,build)
	install -D -m 755 $(or $(INSTALL_BINARY),.build/release/quill) $(DESTDIR)$(PREFIX)/bin/quill
	install -D -m 644 models/tinystories.bin $(DESTDIR)$(PREFIX)/share/quill/tinystories.bin
	install -D -m 644 models/tinystories.model $(DESTDIR)$(PREFIX)/share/quill/tinystories.model
	install -D -m 644 docs/quill.1 $(DESTDIR)$(PREFIX)/share/man/man1/quill.1
	install -D -m 644 docs/completions/quill.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/quill
	install -D -m 644 docs/completions/_quill $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_quill
	install -D -m 644 docs/completions/quill.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/quill.fish

uninstall:
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/,$(INSTALLED_FILES))
	-rmdir $(DESTDIR)$(PREFIX)/share/quill 2>/dev/null

# The man page, completions and README flag tables, printed from the command table.
docs:
	$(SWIFT) build
	.build/debug/quill _docs man > docs/quill.1
	.build/debug/quill _docs bash > docs/completions/quill.bash
	.build/debug/quill _docs zsh > docs/completions/_quill
	.build/debug/quill _docs fish > docs/completions/quill.fish
	$(PYTHON) scripts/update_readme_flags.py .build/debug/quill README.md

clean:
	rm -rf .build .build-fuzz .build-asan $(TEST_VENV) $(SCALE_VENV)
