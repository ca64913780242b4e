# ChainFS top-level Makefile: thin wrapper over CMake + ctest.
#   make                 install missing Debian packages, build (./build/chainfs)
#   make build           build only (no package check)
#   make deps            install missing Debian packages (root or sudo)
#   make test            install missing Debian packages, build, run every test
#   make up / make down  start / stop a local cluster with a mounted file system
#   make test SANITIZE=address,undefined   the same suite under ASan+UBSan
#   make fuzz            build libFuzzer targets with clang, run each FUZZ_SECONDS
#   make check           clang-format and clang-tidy over the sources
#   make install         libchainfs, libhf3fs_api_shared, headers, chainfs.pc under PREFIX
BUILD    ?= build
SANITIZE ?=
JOBS     ?= 2
WERROR   ?= OFF
FUZZ_SECONDS ?= 30
CTEST_ARGS ?=
DATA     ?= ./chainfs-data
MNT      ?= ./mnt
PREFIX   ?= /usr/local

comma := ,
ifneq ($(SANITIZE),)
BUILD := build-$(subst $(comma),-,$(SANITIZE))
CMAKE_EXTRA := -DCFS_SANITIZE=$(SANITIZE) -DCFS_DEBUG_ASSERT=ON -DCMAKE_BUILD_TYPE=Debug
endif

.PHONY: all build deps test up down fuzz check clean install

# Plain `make` on a fresh machine would otherwise stop inside CMake with
# "A required package was not found": check the packages first (a no-op
# when all are present) so it installs them or names `make deps`.
all: deps
	$(MAKE) --no-print-directory build

build:
	cmake -S . -B $(BUILD) -DCFS_WERROR=$(WERROR) $(CMAKE_EXTRA) >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

deps:
	@bash scripts/install-deps.sh

test: deps
	$(MAKE) --no-print-directory build
	ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS) $(CTEST_ARGS)

up: deps
	$(MAKE) --no-print-directory build
	@bash scripts/up.sh "$(BUILD)/chainfs" "$(DATA)" "$(MNT)"

down:
	@if [ -x $(BUILD)/chainfs ] && $(BUILD)/chainfs down --help >/dev/null 2>&1; then \
		$(BUILD)/chainfs down --dir $(DATA); else echo "nothing to stop"; fi

fuzz: deps
	cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCFS_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build build-fuzz -j$(JOBS) --target cfs_fuzz_targets
	@bash scripts/run-fuzz.sh build-fuzz/fuzz tests/fuzz/corpus $(FUZZ_SECONDS)

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

check:
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')
	cmake -S . -B $(BUILD) >/dev/null
	clang-tidy -p $(BUILD) --quiet $$(git ls-files 'src/*.c') 2>/dev/null

clean:
	rm -rf build build-* 
