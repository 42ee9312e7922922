# imgstore: the two commands are `make run` and `make test` (see README.md).
BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-libfuzzer
FUZZ_SECONDS ?= 600
FUZZ_RUNS  ?= 0
JOBS       ?= $(shell nproc)
CTEST_JOBS ?= 2
RUN_DIR    ?= $(CURDIR)/.sandbox

.PHONY: all deps build test test-unit test-asan test-fuzz fuzz soak scale chaos bench run sandbox-down install deb format clean

all: build

deps:
	@bash scripts/install-deps

$(BUILD)/Makefile: CMakeLists.txt
	cmake -S . -B $(BUILD) -DIMS_WERROR=ON

build: deps $(BUILD)/Makefile
	cmake --build $(BUILD) -j$(JOBS)

# Every unit and integration test (the integration tests start and stop their own Ceph
# clusters through the sandbox fixture), then the unit tests again under ASan+UBSan.
test: build
	cd $(BUILD) && ctest --output-on-failure -j$(CTEST_JOBS)
	$(MAKE) --no-print-directory test-asan
	$(MAKE) --no-print-directory test-fuzz

test-unit: build
	cd $(BUILD) && ctest --output-on-failure -L unit -j$(CTEST_JOBS)

test-asan: deps
	cmake -S . -B $(BUILD_ASAN) -DIMS_WERROR=ON -DIMS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	cmake --build $(BUILD_ASAN) -j$(JOBS)
	cd $(BUILD_ASAN) && ctest --output-on-failure -L unit -j$(CTEST_JOBS)

# The libFuzzer targets (tests/fuzz), built with clang, a short smoke run each.
FUZZ_TARGETS = fuzz_qcow2 fuzz_luks fuzz_vmdk fuzz_vdi fuzz_vhdx fuzz_vpc fuzz_rpc_dispatch fuzz_rpc_json fuzz_upload_chunk fuzz_manifest fuzz_snap_text fuzz_crypt_key
$(BUILD_FUZZ)/Makefile: CMakeLists.txt
	cmake -S . -B $(BUILD_FUZZ) -DCMAKE_C_COMPILER=clang -DIMS_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo

test-fuzz: deps $(BUILD_FUZZ)/Makefile
	cmake --build $(BUILD_FUZZ) -j$(JOBS) --target $(FUZZ_TARGETS)
	cd $(BUILD_FUZZ) && ctest --output-on-failure -L fuzz

# A long fuzz run of every target (FUZZ_SECONDS each, default 600); see docs/TESTING.md.
fuzz: deps $(BUILD_FUZZ)/Makefile
	cmake --build $(BUILD_FUZZ) -j$(JOBS) --target $(FUZZ_TARGETS)
	bash tests/fuzz/run-long.sh $(BUILD_FUZZ) $(FUZZ_SECONDS) $(FUZZ_RUNS)

# Long runs that do not fit make test: 50 replicated images with a 10 s RPO for 5 minutes.
soak: build
	bash tests/soak/repl-many.sh --images 50 --minutes 5

# The benchmarks of bench/, BENCH_RUNS times each (default 3), with medians and ranges, side by
# side with the tools an operator would use instead (docs/BENCHMARKS.md); results in
# BENCH_OUT (default /var/tmp/imgstore-bench/DATE). Quiet machine wanted: about an hour.
BENCH_RUNS ?= 3
BENCH_ONLY ?= repl,repl-8g,repl-fastmon,import,export,tier,failover,failover-partly,rpc,memory
bench: build
	BUILD=$(BUILD) bash bench/all.sh --runs $(BENCH_RUNS) --only $(BENCH_ONLY) $(if $(BENCH_OUT),--out $(BENCH_OUT))

# Scale (docs/RELIABILITY.md, "Scale"): 500 images with a 60 s RPO on one imgstored for 30
# minutes; SCALE_ARGS for the rest, e.g. SCALE_ARGS='--daemons 2 --kill-after 10'.
SCALE_ARGS ?=
scale: build
	bash tests/soak/scale.sh --images 500 --minutes 30 --rpo 60 $(SCALE_ARGS)

# The fault campaign: CHAOS_ROUNDS rounds (default 50) of kill -9, blocklisting, frozen sites,
# killed failovers and imports, with the invariants checked after each (docs/RELIABILITY.md).
CHAOS_ROUNDS ?= 50
chaos: build
	bash tests/chaos/chaos.sh --rounds $(CHAOS_ROUNDS)

# A local two-site sandbox and a walk through the main job; Ctrl-C stops everything.
run: build
	@RUN_DIR=$(RUN_DIR) BUILD=$(BUILD) bash scripts/demo

sandbox-down:
	bash scripts/sandbox down $(RUN_DIR)

# Installs imgstore only (the CLI, the daemon, its unit, sysusers.d, tmpfiles.d and logrotate
# files, libimgstore and its headers) under PREFIX (default /usr/local), below DESTDIR if set;
# never the build and test dependencies (`make deps` installs those, on a build machine).
PREFIX ?= /usr/local
install:
	@test -f $(BUILD)/Makefile || { echo "make install: nothing built in $(BUILD): run make first" >&2; exit 1; }
	cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	cmake --build $(BUILD) -j$(JOBS)
	cmake --install $(BUILD)

# The Debian packages (debian/; docs/OPERATIONS.md, "Debian packages"): imgstore (the CLI),
# imgstored (the daemon, its unit, sysusers.d, tmpfiles.d, logrotate, an example config),
# libimgstore0 and libimgstore-dev, built by dpkg-buildpackage from a copy of this checkout's
# files into DEB_DIR, then checked by lintian (an error fails). Needs the build dependencies
# only (`make deps` installs them), not a build tree.
DEB_DIR ?= build-deb
deb:
	bash scripts/make-deb $(DEB_DIR) $(JOBS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ) $(DEB_DIR)
