# imgstore: the two commands are `make run` and `make test` (see README.md).
BUILD      ?= build
BUILD_ASAN ?= build-asan
JOBS       ?= $(shell nproc)
CTEST_JOBS ?= 2
RUN_DIR    ?= $(CURDIR)/.sandbox

.PHONY: all deps build test test-unit test-asan run sandbox-down install format clean

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

test-unit: build
	cd $(BUILD) && ctest --output-on-failure -L unit -j$(CTEST_JOBS)

test-asan: deps
	cmake -S . -B $(BUILD_ASAN) -DIMS_WERROR=ON -DIMS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	cmake --build $(BUILD_ASAN) -j$(JOBS)
	cd $(BUILD_ASAN) && ctest --output-on-failure -L unit -j$(CTEST_JOBS)

# A local two-site sandbox and a walk through the main job; Ctrl-C stops everything.
run: build
	@RUN_DIR=$(RUN_DIR) BUILD=$(BUILD) bash scripts/demo

sandbox-down:
	bash scripts/sandbox down $(RUN_DIR)

install: build
	cmake --install $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD_ASAN)
