# Tessera: build, boot and test. `make help` lists targets and variables.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build
# cargo parallelises inside each step; the steps themselves run in order (test = host, then qemu).
.NOTPARALLEL:

ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
PYTHON ?= python3
QEMU_PY := $(PYTHON) $(ROOT)/scripts/qemu.py
BOARDS_DIR := $(ROOT)/configs/platforms

# Which of ARCH / PLATFORM / PLAT_CONFIG the caller gave (command line or environment):
# `make test` narrows to them; otherwise it runs every app on every board.
ARCH_SET := $(if $(strip $(ARCH)),1)
PLATFORM_SET := $(if $(strip $(PLATFORM)),1)
PLAT_CONFIG_SET := $(if $(strip $(PLAT_CONFIG)),1)

# ---- variables ------------------------------------------------------------------------------
APP ?= mmap
APPS ?=
LOG ?= warn
SMP ?= 1
MEM ?= 128M
MODE ?= release
TIMEOUT ?= 60
QEMU_ARGS ?=
# Operations per PTE format in the paging differential test run by test-host.
PAGING_DIFF_OPS ?= 100000

# The board: PLAT_CONFIG (a file) if given, else PLATFORM (configs/platforms/<PLATFORM>.toml),
# else ARCH's default board, else the default arch's (configs/arches.toml). `qemu.py resolve`
# reads the list of arches and boards; an unknown arch or board, or a board of another arch
# than ARCH, stops make with a message naming the known ones. The board file then sets ARCH,
# PLATFORM and the Rust target.
RESOLVED := $(shell $(QEMU_PY) resolve --arch '$(strip $(ARCH))' --platform '$(strip $(PLATFORM))' \
	--plat-config '$(if $(PLAT_CONFIG_SET),$(abspath $(PLAT_CONFIG)))' 2>&1)
ifneq ($(word 1,$(RESOLVED)),ok)
  $(error $(or $(RESOLVED),scripts/qemu.py resolve printed nothing))
endif
override ARCH := $(word 2,$(RESOLVED))
override PLATFORM := $(word 3,$(RESOLVED))
TARGET := $(word 4,$(RESOLVED))
BOARD := $(word 5,$(RESOLVED))

ifeq ($(filter $(MODE),debug release),)
  $(error MODE=$(MODE): must be debug or release)
endif
ifeq ($(filter $(LOG),off error warn info debug trace),)
  $(error LOG=$(LOG): must be one of off error warn info debug trace)
endif

TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(ROOT)/target)
RELEASE_FLAG := $(if $(filter release,$(MODE)),--release)
ELF := $(TARGET_DIR)/$(TARGET)/$(MODE)/$(APP)
# What the `config` crate reads when a kernel is built.
BUILD_ENV := TESSERA_PLAT_CONFIG='$(BOARD)' TESSERA_MEM='$(MEM)' TESSERA_SMP='$(SMP)' TESSERA_LOG='$(LOG)'
RUN_ARGS := --board '$(BOARD)' --elf '$(ELF)' --mem '$(MEM)' --smp '$(SMP)'

# `make test` narrows to PLAT_CONFIG/PLATFORM, else ARCH, if given; APPS= narrows apps.
TEST_FILTER := $(if $(PLAT_CONFIG_SET)$(PLATFORM_SET),--plat-config '$(BOARD)',$(if $(ARCH_SET),--arch $(ARCH)))
# The board files `clippy` and `doc` cover (a shell word list, for a recipe): the one
# PLAT_CONFIG/PLATFORM name, else ARCH's boards if ARCH was given, else every board.
SELECTED_BOARDS = $(if $(PLAT_CONFIG_SET)$(PLATFORM_SET),'$(BOARD)',$$($(QEMU_PY) boards $(if $(ARCH_SET),--arch $(ARCH))))
# The CPU counts of test-qemu's SMP passes: every app with SMP_ALL, the smp app with
# SMP_STRESS (slower under TCG: SMP_TIMEOUT seconds).
SMP_ALL ?= 2
SMP_STRESS ?= 4
SMP_TIMEOUT ?= 300
# The RAM size of the second `hello` pass of test-qemu (large enough to split q35's RAM).
BIG_MEM ?= 4G
TEST_ARGS := $(TEST_FILTER) --apps '$(APPS)' --mode $(MODE) --mem '$(MEM)' --smp '$(SMP)' \
	--log $(LOG) --timeout $(TIMEOUT)

.PHONY: help deps deps-rust deps-qemu build run debug test test-host test-qemu test-tools \
	clippy fmt fmt-check doc bench clean distclean app-check

# ---- targets --------------------------------------------------------------------------------
help:
	@echo 'Tessera make targets:'
	@echo '  build       build apps/$$APP for the board (default target)'
	@echo '  run         deps + build + boot it on QEMU; exit status says pass/FAIL'
	@echo '  debug       build + boot halted with a gdb stub on :1234; prints the gdb command'
	@echo '  test        what CI runs: fmt-check, test-host, test-qemu, clippy, doc'
	@echo '  test-host   cargo test on the host (default members; paging on every PTE format) + a longer paging differential run'
	@echo '  test-qemu   deps + every app on every board (narrowed by ARCH/PLATFORM/PLAT_CONFIG/APPS)'
	@echo '  test-tools  self-test of scripts/qemu.py (output matcher; the arch and board list and the files checked against it)'
	@echo '  deps        rust targets + components, and QEMU (system or private copy in .tools/)'
	@echo '  clippy      host clippy, then for each board: every kernel crate, the board and all apps'
	@echo '  fmt         cargo fmt --all          fmt-check  the same with --check'
	@echo '  doc         cargo doc, warnings denied: host crates, then per board runtime, the board, the tessera API'
	@echo '  bench       all benchmarks: host criterion + callgrind, apps/bench on every board -> docs/BENCHMARKS.md'
	@echo '  fuzz        mm random test, MM_FUZZ_OPS (default 1000000) ops per seed, release (host)'
	@echo '  fuzz-libfuzzer  cargo +nightly fuzz run mm_api for FUZZ_TIME (default 60) s (fuzz/)'
	@echo '  miri        the unsafe-heavy unit tests of mm (the area box) under cargo +nightly miri, strict provenance'
	@echo '  clean       cargo clean              distclean  also remove .tools/'
	@echo
	@echo 'Variables (current value):'
	@echo "  ARCH=$(ARCH)        $$($(QEMU_PY) arches | sed 's/ / | /g') (configs/arches.toml; the board file sets it)"
	@echo "  PLATFORM=$(PLATFORM)  board name: configs/platforms/<name>.toml, one of:" \
		"$$(cd '$(BOARDS_DIR)' && ls *.toml | sed 's/\.toml$$//' | tr '\n' ' ')"
	@echo '  PLAT_CONFIG=$(PLAT_CONFIG)  any board TOML; overrides PLATFORM'
	@echo '  APP=$(APP)          app to build/run: apps/<APP>'
	@echo '  APPS=$(APPS)        apps for test-qemu (default: all)'
	@echo '  MODE=$(MODE)    debug | release'
	@echo '  LOG=$(LOG)          off | error | warn | info | debug | trace'
	@echo '  SMP=$(SMP)  MEM=$(MEM)  TIMEOUT=$(TIMEOUT) (seconds per QEMU test run)'
	@echo '  BIG_MEM=$(BIG_MEM)  RAM of test-qemu'"'"'s extra hello passes (with APPS unset)'
	@echo '  QEMU_ARGS=$(QEMU_ARGS)   extra QEMU arguments for run/debug'
	@echo 'Board file: $(BOARD)'

deps:
	@$(ROOT)/scripts/deps.sh all

deps-rust:
	@$(ROOT)/scripts/deps.sh rust

deps-qemu:
	@$(ROOT)/scripts/deps.sh qemu

app-check:
	@test -f '$(ROOT)/apps/$(APP)/Cargo.toml' || { echo "error: no app apps/$(APP) (APP=$(APP); have: $$($(QEMU_PY) apps))" >&2; exit 1; }

build: deps-rust app-check
	$(BUILD_ENV) cargo build -p $(APP) --target $(TARGET) $(RELEASE_FLAG)
	@echo "kernel image: $(ELF)"

run: deps-qemu build
	@$(QEMU_PY) run $(RUN_ARGS) -- $(QEMU_ARGS)

debug: deps-qemu build
	@$(QEMU_PY) run --debug $(RUN_ARGS) -- $(QEMU_ARGS)

# Everything CI checks: formatting, host tests, every app on every board, clippy on the host
# and for every board, and the docs, each with warnings denied.
test: fmt-check test-host test-qemu clippy doc

test-host: deps-rust
	cargo test
	cargo test -p config --features build
	@echo "paging: differential test again, release, $(PAGING_DIFF_OPS) operations per PTE format"
	PAGING_DIFF_OPS=$(PAGING_DIFF_OPS) cargo test -p paging --release --test differential
	@echo "tlb: the shootdown protocol model-checked with loom (own target dir: --cfg loom changes every crate)"
	RUSTFLAGS='--cfg loom' CARGO_TARGET_DIR='$(TARGET_DIR)/loom' cargo test -p tlb --release --test loom

test-qemu: deps-rust deps-qemu test-tools
	@$(QEMU_PY) test $(TEST_ARGS)
ifeq ($(APPS),)
	@echo "test-qemu: hello again with MEM=$(BIG_MEM): every RAM range reachable (q35 splits RAM above 4 GiB)"
	@$(QEMU_PY) test $(TEST_FILTER) --apps hello --mode $(MODE) --mem '$(BIG_MEM)' --smp '$(SMP)' \
		--log $(LOG) --timeout $(TIMEOUT)
	@echo "test-qemu: hello built for MEM=$(BIG_MEM) on a machine with 128M: only the RAM the firmware reports is used"
	@$(QEMU_PY) test $(TEST_FILTER) --apps hello --mode $(MODE) --mem '$(BIG_MEM)' --qemu-mem 128M \
		--smp '$(SMP)' --log $(LOG) --timeout $(TIMEOUT) --no-build
	@echo "test-qemu: every app again with SMP=$(SMP_ALL): the other CPUs online and idle (shootdowns skip them)"
	@$(QEMU_PY) test $(TEST_FILTER) --mode $(MODE) --mem '$(MEM)' --smp '$(SMP_ALL)' \
		--log $(LOG) --timeout $(TIMEOUT)
	@echo "test-qemu: the smp app with SMP=$(SMP_STRESS): every CPU busy in the address space"
	@$(QEMU_PY) test $(TEST_FILTER) --apps smp --mode $(MODE) --mem '$(MEM)' --smp '$(SMP_STRESS)' \
		--log $(LOG) --timeout $(SMP_TIMEOUT)
	@echo "test-qemu: the smp app built for SMP=$(SMP_STRESS) on a machine with $(SMP_ALL) CPUs: a warning, and it runs on those"
	@$(QEMU_PY) test $(TEST_FILTER) --apps smp --mode $(MODE) --mem '$(MEM)' --smp '$(SMP_STRESS)' \
		--qemu-smp '$(SMP_ALL)' --log $(LOG) --timeout $(SMP_TIMEOUT) --no-build \
		--expect 'SMP=$(SMP_STRESS): the firmware lists $(SMP_ALL) CPU(s); running on those' \
		--expect 'smp: $(SMP_ALL) CPU(s) online'
endif

test-tools:
	@out="$$($(QEMU_PY) selftest 2>&1)" || { echo "$$out" >&2; echo "test-tools: scripts/qemu.py selftest FAILED" >&2; exit 1; }; \
	echo "test-tools: scripts/qemu.py selftest: $$(echo "$$out" | grep -E '^Ran ') OK"

clippy: deps-rust
	cargo clippy --all-targets -- -D warnings
	cargo clippy -p hostbench --all-targets -- -D warnings
	cargo clippy -p config --features build --all-targets -- -D warnings
	@apps="$$($(QEMU_PY) apps)"; \
	for b in $(SELECTED_BOARDS); do \
		t="$$($(QEMU_PY) board "$$b" target)"; \
		board="$$($(QEMU_PY) board "$$b" platform)"; \
		pkgs="-p hal -p config -p frames -p paging -p mm -p runtime -p tessera -p $$board"; \
		for a in $$apps; do pkgs="$$pkgs -p $$a"; done; \
		echo "TESSERA_PLAT_CONFIG=$$b cargo clippy --target $$t $$pkgs -- -D warnings"; \
		TESSERA_PLAT_CONFIG="$$b" TESSERA_MEM='$(MEM)' TESSERA_SMP='$(SMP)' TESSERA_LOG='$(LOG)' \
			cargo clippy --target "$$t" $$pkgs -- -D warnings; \
	done

fmt: deps-rust
	cargo fmt --all

fmt-check: deps-rust
	cargo fmt --all -- --check

# Docs with warnings denied (broken links included): the host crates; then for each board
# (narrowed by ARCH / PLATFORM / PLAT_CONFIG) the crates that build only for a board, private
# items included (their docs are for kernel developers, so links to private items resolve and
# are allowed), and the app API `tessera`.
PRIVATE_DOC_FLAGS := -D warnings -A rustdoc::private-intra-doc-links
doc: deps-rust
	RUSTDOCFLAGS='-D warnings' cargo doc --no-deps
	@for b in $(SELECTED_BOARDS); do \
		t="$$($(QEMU_PY) board "$$b" target)"; \
		pkgs="-p config -p runtime -p $$($(QEMU_PY) board "$$b" platform)"; \
		export TESSERA_PLAT_CONFIG="$$b" TESSERA_MEM='$(MEM)' TESSERA_SMP='$(SMP)' TESSERA_LOG='$(LOG)'; \
		echo "TESSERA_PLAT_CONFIG=$$b RUSTDOCFLAGS='$(PRIVATE_DOC_FLAGS)' cargo doc --no-deps --document-private-items --target $$t $$pkgs"; \
		RUSTDOCFLAGS='$(PRIVATE_DOC_FLAGS)' cargo doc --no-deps --document-private-items --target "$$t" $$pkgs; \
		echo "TESSERA_PLAT_CONFIG=$$b RUSTDOCFLAGS='-D warnings' cargo doc --no-deps --target $$t -p tessera"; \
		RUSTDOCFLAGS='-D warnings' cargo doc --no-deps --target "$$t" -p tessera; \
	done

bench: deps
	@$(PYTHON) $(ROOT)/scripts/bench.py --mem '$(MEM)'

.PHONY: fuzz fuzz-libfuzzer miri
fuzz: deps-rust
	MM_FUZZ_OPS=$${MM_FUZZ_OPS:-1000000} cargo test -p mm --release --test random -- --nocapture

fuzz-libfuzzer:
	cd '$(ROOT)/fuzz' && cargo +nightly fuzz run mm_api -- -max_total_time=$${FUZZ_TIME:-60}

# Needs a nightly toolchain with the miri component (rustup component add --toolchain nightly miri);
# not part of `make test`, whose toolchain is pinned.
miri:
	MIRIFLAGS=-Zmiri-strict-provenance cargo +nightly miri test -p mm --lib -- backend::erased

clean:
	cargo clean

distclean: clean
	rm -rf '$(ROOT)/.tools'
