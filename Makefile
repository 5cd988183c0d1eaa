# The two commands at the top of README.md: `make demo` and `make test`.
# Both work on a fresh clone: they install dependencies first.

NODE ?= node
NPM ?= npm
TAP_FLAGS ?=

.PHONY: all install build demo test test-only soak clean

all: build

# npm ci only when the lock file is newer than the installed tree.
node_modules/.package-lock.json: package.json package-lock.json
	$(NPM) ci --no-audit --no-fund
	@touch $@

install: node_modules/.package-lock.json

build: install
	$(NODE) node_modules/typescript/bin/tsc -p tsconfig.json

demo: build
	$(NODE) dist/demo/demo.js

# Type-checks everything (src, test, demo), then runs every test with coverage.
test: build test-only

# The suite alone, on the Node given by NODE (CI runs it on Node 20 and Node 24).
test-only:
	$(NODE) node_modules/tap/dist/esm/run.mjs $(TAP_FLAGS)
	$(NODE) test/tools/coverage-gate.mjs

# Minutes of sustained load against the service process (SOAK_SECONDS, default 120);
# prints memory over time and fails on an RPC error, a wrong allow or a count mismatch.
soak: build
	$(NODE) dist/test/soak/soak.js

clean:
	rm -rf dist .tap coverage
