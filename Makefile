# The quick start is `make up` and `make test`; both install what they need into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TEST_WORKERS ?= 6
STAMP := $(VENV)/.installed
# herald's browser code and the Buf CLI come from the npm registry, at the versions web/package-lock.json fixes.
WEB_STAMP := web/node_modules/.installed
WEB_BUILT := web/dist/.built
BUF := web/node_modules/.bin/buf
CONSOLE := $(CURDIR)/herald/services/gateway/console
# The browser the web pages are tested and measured in: Debian's chromium, driven by Playwright.
NEED_CHROMIUM := @command -v chromium >/dev/null || { apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } >/dev/null
# herald-client's lowest protobuf (clients/python/pyproject.toml), which its stubs must import with.
CLIENT_LOWEST_PROTOBUF := $(shell sed -n 's/.*"protobuf>=\([0-9.]*\),.*/\1/p' clients/python/pyproject.toml)

.PHONY: install web up test lint api-check proto bench clean lock

# requirements.lock pins every package herald, its extras and its tools may install (made by `make lock`); installs
# take it as constraints, so an image gets only the extras it asks for, at the locked versions.
# The server depends on herald-client (clients/python: the API's stubs), installed beside it from the source tree.
# The wheelhouse holds the oldest protobuf herald-client admits, for tests/test_packaging.py to install offline.
$(STAMP): pyproject.toml clients/python/pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e clients/python -e '.[dev,nats,parquet]'
	grep -v '^protobuf==' requirements.lock > $(VENV)/client-constraints.txt
	$(BIN)/python -m pip download --quiet --only-binary=:all: --dest $(VENV)/wheelhouse -c $(VENV)/client-constraints.txt \
		protobuf==$(CLIENT_LOWEST_PROTOBUF) grpcio grpcio-status
	touch $@

install: $(STAMP) $(WEB_STAMP)

# npm with the machine's Node.js (Debian's where it has none); no package's install script runs.
$(WEB_STAMP): web/package.json web/package-lock.json
	@command -v npm >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm; } >/dev/null
	npm ci --prefix web --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

# The TypeScript stubs of herald.v1 (protoc-gen-es), type-checked, and bundled by esbuild: the example inbox page into
# web/dist/inbox-example (docs/http.md; tests/gateway/test_browser_inbox.py opens it in chromium), and the console
# into herald/services/gateway/console, which herald-gateway serves at / and the package ships (not committed).
$(WEB_BUILT): $(WEB_STAMP) web/buf.gen.yaml web/tsconfig.json $(wildcard protos/herald/v1/*.proto web/inbox-example/*) \
		$(wildcard web/console/* web/console/pages/*)
	npm run --prefix web --silent build
	mkdir -p $(CONSOLE) && cp web/dist/console/* $(CONSOLE)/
	touch $@

web: $(WEB_BUILT)

# The mesh on this machine: bundled nats-server, embedded SQLite, the four binaries. Ctrl-C stops it.
up: $(STAMP) $(WEB_BUILT)
	$(BIN)/python -m devmesh.launcher

lint: $(STAMP) $(WEB_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BUF) lint

# pytest exits 5 when it collects no test; make fails on it like on any other non-zero code.
# The suite runs on TEST_WORKERS processes (pytest-xdist): most of its time is spent waiting on meshes of its own
# (timers, restarts, outages), so more workers than cores finish it sooner. Workers take a few tests at a time, the
# slow ones first (tests/conftest.py); the tests of one costly module-wide set-up (marked xdist_group) share a worker.
# The tests that time herald under a load of their own (marked serial) run alone afterwards, as they measure herald,
# not the other workers' meshes.
# tests/deploy/ runs promtool on the alerting rules and /metrics: Debian's prometheus package has it.
test: lint api-check web
	@command -v promtool >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } >/dev/null
	$(NEED_CHROMIUM)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder -m "not serial"
	$(BIN)/pytest -m serial

# The API for other languages' teams, with Debian's protoc (grpcio-tools' has only the Python generator):
# - protoc's built-in Java, C#, PHP, Ruby and Objective-C generators take every proto, with the well-known types from
#   grpcio-tools, and honour its language options (a Java outer class per file in com.herald.v1, C# in Herald.V1);
# - buf breaking against the previous commit with buf.yaml's FILE rules (wire, JSON and generated code). A commit
#   whose parent predates the language options (go_package, ...) is held to WIRE_JSON: no other language's
#   generated code had names to keep before them. A clone without a previous commit skips it. herald.internal.v1
#   (the work items the services hand each other) is not API and is not checked; the commit that moved those items
#   out of herald.v1 (its parent still has DeliveryJob there) may delete them from the two files they left.
api-check: $(STAMP) $(WEB_STAMP)
	@command -v protoc >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends protobuf-compiler; } >/dev/null
	@out=$$(mktemp -d) && trap 'rm -rf "$$out"' EXIT && mkdir "$$out/java" "$$out/csharp" "$$out/php" "$$out/ruby" "$$out/objc" && \
	wkt=$$($(BIN)/python -c 'import grpc_tools, pathlib; print(pathlib.Path(grpc_tools.__file__).parent / "_proto")') && \
	protoc --fatal_warnings -Iprotos -I"$$wkt" --java_out="$$out/java" --csharp_out="$$out/csharp" --php_out="$$out/php" \
		--ruby_out="$$out/ruby" --objc_out="$$out/objc" protos/herald/v1/*.proto && \
	test "$$(ls "$$out"/java/com/herald/v1/*Proto.java | wc -l)" -eq "$$(ls protos/herald/v1/*.proto | wc -l)" && \
	! grep -L '^namespace Herald.V1 {' "$$out"/csharp/*.cs | grep . || { echo "api-check: protoc failed or ignored the language options"; exit 1; }
	@if ! git rev-parse -q --verify HEAD~1 >/dev/null; then echo "api-check: no previous commit, buf breaking skipped"; \
	elif git grep -q "message DeliveryJob" HEAD~1 -- protos/herald/v1; then $(BUF) breaking --against '.git#ref=HEAD~1' \
		--config '{"version":"v2","modules":[{"path":"protos"}],"breaking":{"use":["FILE"],"ignore":["protos/herald/internal"],"ignore_only":{"MESSAGE_NO_DELETE":["protos/herald/v1/events.proto","protos/herald/v1/dead_letter_service.proto"]}}}'; \
	elif git grep -q go_package HEAD~1 -- protos; then $(BUF) breaking --against '.git#ref=HEAD~1'; \
	else $(BUF) breaking --against '.git#ref=HEAD~1' \
		--config '{"version":"v2","modules":[{"path":"protos"}],"breaking":{"use":["WIRE_JSON"]}}'; fi

# Regenerate the stubs (clients/python/herald/v1, herald/internal) from protos/ (tests/test_protos.py checks them).
proto: $(STAMP)
	$(BIN)/python protos/generate.py

bench: $(STAMP) web
	$(NEED_CHROMIUM)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.adapters
	$(BIN)/python -m bench.feedback
	$(BIN)/python -m bench.message_status
	$(BIN)/python -m bench.priority
	$(BIN)/python -m bench.search
	$(BIN)/python -m bench.operators
	$(BIN)/python -m bench.console

# Re-resolve requirements.lock after a change to pyproject.toml's dependencies (newest versions that fit).
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra nats --extra parquet \
		--universal --python-version 3.11 --no-emit-package herald-client --no-header --quiet -o requirements.lock

clean:
	rm -rf $(VENV) .herald .mypy_cache .ruff_cache .pytest_cache web/node_modules web/gen web/dist $(CONSOLE)
