# Gatehouse: `make run` and `make test` are the quick start; see README.md.
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
CMAKE_FLAGS ?=

.PHONY: all build deps run test unit integration browser conformance release bench clean samples

all: build

deps:
	@scripts/install-deps.sh build

$(BUILD_DIR)/build.ninja:
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

build: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR)

samples:
	@scripts/install-samples.sh

run: build samples
	$(BUILD_DIR)/gatehouse serve

test: build
	@scripts/test.sh

unit: build
	cd $(BUILD_DIR) && ctest --output-on-failure

integration: build
	cd tests/integration && npm ci --no-audit --no-fund --loglevel=error && npm test

browser: build
	cd web && npm ci --no-audit --no-fund --loglevel=error
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error && npm test

conformance: build
	tests/conformance/run.sh

# The build to deploy: Release with profile-guided optimisation (build-release/gatehouse; ~8 minutes).
release:
	@scripts/install-deps.sh build bench
	scripts/build-release.sh

bench: release
	bench/micro.sh --benchmark_min_time=0.2
	GATEHOUSE_BIN=$(CURDIR)/build-release/gatehouse bench/run.sh

clean:
	rm -rf $(BUILD_DIR) build-release
