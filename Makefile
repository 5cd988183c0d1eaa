# The two commands at the top of README.md: `make demo` and `make test`.
# Both work on a fresh clone: they install dependencies first.

NODE ?= node
NPM ?= npm
TAP_FLAGS ?=

.PHONY: all install build demo prerequisites test test-only soak bench clean

all: build

# npm ci only when the lock file is newer than the installed tree.
node_modules/.package-lock.json: package.json package-lock.json
	$(NPM) ci --no-audit --no-fund --loglevel=error
	@touch $@

install: node_modules/.package-lock.json

build: install
	$(NODE) node_modules/typescript/bin/tsc -p tsconfig.json

demo: build
	$(NODE) dist/demo/demo.js

# Programs the suite runs besides Node: the openssl CLI (test certificates) and
# redis-server (the shared-cache tests start their own on loopback). Checked
# before anything else, so a missing one is one line instead of failures deep
# in the run.
PREREQUISITES = redis-server openssl

prerequisites:
	@missing=""; for program in $(PREREQUISITES); do \
	  command -v $$program >/dev/null 2>&1 || missing="$$missing $$program"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make test needs:$$missing; install with: apt-get install$$missing (Debian, Ubuntu)" >&2; exit 1; \
	fi

# Type-checks everything (src, test, demo), then runs every test with coverage.
test: prerequisites build test-only

# The suite alone, on the Node given by NODE (CI runs it on Node 20 and Node 24).
test-only: prerequisites
	$(NODE) node_modules/tap/dist/esm/run.mjs $(TAP_FLAGS)
	$(NODE) test/tools/coverage-gate.mjs

# Minutes of sustained load against the service process (SOAK_SECONDS, default 120);
# prints memory over time and fails on an RPC error, a wrong allow or a count mismatch.
soak: build
	$(NODE) dist/test/soak/soak.js

# CPU per Check (the headline), throughput, fixed-rate latency, memory and start-up of the
# service process, as ratios to three baselines measured in the same run (a grpc-js no-op,
# the grpc-js transport ceiling, and that ceiling answering our own cached-allow bytes),
# plus a peer (Express Gateway 1.16, installed on demand into bench/.peer/). Installs h2load
# (nghttp2-client) when missing; everything runs on loopback and stops at the end; about
# 9 minutes. Prints a table and writes bench/results/latest.json; fails only when something
# is broken, never for a missed target. Knobs: BENCH_DURATION (s per run, default 8) and
# the others in README.md, "Benchmark".
bench: build
	$(NODE) dist/bench/run.js

clean:
	rm -rf dist .tap coverage
