# Makefile — build/test entry points for routecache.
#
#   make test         start throw-away Redis / Redis Cluster / memcached servers
#                     (scripts/testenv.sh), run go vet + go test -race against
#                     them, and always stop them again.  This is what CI runs.
#   make test-short   go vet + go test -race without any servers (integration
#                     tests skip themselves outside CI when not configured).
#   make servers-up   start the servers in .testenv/ and leave them running;
#                     then `. .testenv/env` and run go test by hand.
#   make servers-down stop the servers in .testenv/.
#   make bench        run the benchmarks beside their baselines (starts its
#                     own servers) and print the ratios: each hit against its
#                     uncached baseline, Gin beside chenyahui/gin-cache
#                     (bench/gincache, a module of its own), the parallel
#                     paths at -cpu 1 and 2, the memory budget, a 64-client
#                     loopback load test (LOADTEST=4s per variant) and the
#                     contention profile (bench-contention).
#   make bench-instr  instructions per request of the hit paths (callgrind):
#                     the figure that does not move with the machine's load;
#                     REPEAT, N1, N2 pass through to scripts/benchinstr.sh.
#   make bench-contention  mutex and block profiles of the parallel hit
#                     benchmarks (-cpu 2), top entries: does a hit wait?
#   make soak         the coherence soak for SOAK=2m (default) against its
#                     own Redis and memcached, faults injected
#   make test-loaded  `make test` while CPU burners occupy every core
#                     (LOADED_RUNS=5 runs it five times in a row): the
#                     suite must hold on a busy machine, as CI's is.
#
# Variables:
#   PKG=./core/...        packages to vet/test (default ./...)
#   GOTESTFLAGS='-run X'  extra flags for go test (e.g. -run, -v, -timeout)
#   TEST_TIMEOUT=30m      go test's per-package timeout in `test` (default 30m)

# Every recipe runs as ONE bash script with strict error handling, so the
# trap in `test` covers all of its steps.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:
.DEFAULT_GOAL := test

GO          ?= go
PKG         ?= ./...
GOTESTFLAGS ?=
# Passed through the environment, unexpanded, so that a value such as
# '-run ^(A|B)$$' reaches go test as written (split on spaces only).
export RC_GOTESTFLAGS := $(value GOTESTFLAGS)
# go test's per-package limit: its default (10m) is too short for core on a
# loaded machine; a -timeout in GOTESTFLAGS comes later and wins.
TEST_TIMEOUT ?= 30m
TESTENV     := scripts/testenv.sh
STATE_DIR   := .testenv

# bench/gincache is a module of its own, which ./... at the root does not
# enter: with the default PKG, vet and test it too (its tests check that
# the benchmarks' caches hit).
define NESTED_TEST
if [[ "$(PKG)" == "./..." ]]; then
	  echo "+ (cd bench/gincache && $(GO) vet ./... && $(GO) test -race -count=1 $${flags[*]} ./...)"
	  ( cd bench/gincache && $(GO) vet ./... && $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) "$${flags[@]}" ./... )
	fi
endef

.PHONY: test test-short test-loaded soak servers-up servers-down bench bench-instr bench-contention

test:
	@state=$$(mktemp -d "$${TMPDIR:-/tmp}/routecache-testenv.XXXXXX")
	# Whatever happens below (failure, Ctrl-C, kill), stop the servers and
	# remove the state dir; the recipe still exits with the failing status.
	trap '$(TESTENV) down "$$state"' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	$(TESTENV) up "$$state"
	. "$$state/env"
	echo "+ $(GO) vet $(PKG)"
	$(GO) vet $(PKG)
	read -ra flags <<< "$$RC_GOTESTFLAGS" # words, never shell syntax
	echo "+ $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $${flags[*]} $(PKG)"
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) "$${flags[@]}" $(PKG)
	$(NESTED_TEST)

test-short:
	@read -ra flags <<< "$$RC_GOTESTFLAGS"
	$(GO) vet $(PKG)
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) "$${flags[@]}" $(PKG)
	$(NESTED_TEST)

# The soak of core's TestSoakNoReadOlderThanACompletedInvalidation, for
# minutes instead of the seconds the test command gives it.
SOAK ?= 2m
soak:
	ROUTECACHE_SOAK=$(SOAK) $(GO) test -race -count=1 -run '^TestSoakNoReadOlderThanACompletedInvalidation$$' -v -timeout 0 ./core

# One busy-loop process per core (stopped by PID however the run ends),
# then the whole test command LOADED_RUNS times; stops at the first failure.
LOADED_RUNS ?= 1
test-loaded:
	@burners=()
	trap 'kill $${burners[@]} 2>/dev/null || true' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	for _ in $$(seq "$$(nproc)"); do
	  ( exec sh -c 'while :; do :; done' ) &
	  burners+=($$!)
	done
	echo "test-loaded: $${#burners[@]} CPU burner(s) running (PIDs $${burners[*]})"
	for i in $$(seq $(LOADED_RUNS)); do
	  echo "test-loaded: run $$i of $(LOADED_RUNS)"
	  $(MAKE) --no-print-directory test
	done

servers-up:
	@$(TESTENV) up $(STATE_DIR)
	echo "servers are up; use them with:  . $(STATE_DIR)/env"

servers-down:
	@$(TESTENV) down $(STATE_DIR)

# Benchmarks, each cached path beside its uncached baseline in the same
# run, with the servers the Redis and Memcached benchmarks need; prints the
# ratios (fastest of BENCHCOUNT runs) and keeps the raw output in bench.out.
# bench/gincache is a nested module (it requires chenyahui/gin-cache, the
# main module does not), so its benchmarks run from its own directory.
BENCHCOUNT ?= 5
LOADTEST   ?= 4s
bench:
	@state=$$(mktemp -d "$${TMPDIR:-/tmp}/routecache-testenv.XXXXXX")
	trap '$(TESTENV) down "$$state"' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	$(TESTENV) up "$$state"
	. "$$state/env"
	{ $(GO) test -run '^$$' -bench 'Gin|Echo|NetHTTP$$|Miss|Redis|Memcache' -benchmem -count $(BENCHCOUNT) -cpu 1 ./core ./ginadapter ./echoadapter ./echo5adapter
	  $(GO) test -run '^$$' -bench 'NetHTTPParallel' -benchmem -count $(BENCHCOUNT) -cpu 1,2 ./core
	  ( cd bench/gincache
	    $(GO) test -run '^$$' -bench 'GinCache$$' -benchmem -count $(BENCHCOUNT) -cpu 1 .
	    $(GO) test -run '^$$' -bench 'GinCacheParallel' -benchmem -count $(BENCHCOUNT) -cpu 1,2 . )
	} > bench.out
	grep '^Benchmark' bench.out
	echo
	$(GO) run ./internal/benchratio < bench.out
	echo
	echo "+ go test -run TestMemoryBudget -v ./core"
	$(GO) test -run 'TestMemoryBudget' -v -count=1 ./core | grep -E 'filled|^ok|FAIL'
	echo
	echo "+ go run ./examples/loadtest -duration $(LOADTEST) -c 64 -rounds 1 (memory hit vs uncached)"
	$(GO) run ./examples/loadtest -duration $(LOADTEST) -c 64 -rounds 1 -redis '' -memcache ''
	echo
	echo "+ scripts/benchcontention.sh"
	scripts/benchcontention.sh

# Mutex and block profiles of the parallel hit benchmarks (2 Ps), top
# entries of the timed requests' stacks.
bench-contention:
	@scripts/benchcontention.sh

# Instructions per request of each hit path beside its baseline, counted
# by valgrind's callgrind (repeatable on a shared machine, unlike ns/op);
# starts a Redis for the near-cache pair.
bench-instr:
	@state=$$(mktemp -d "$${TMPDIR:-/tmp}/routecache-testenv.XXXXXX")
	trap '$(TESTENV) down "$$state"' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	$(TESTENV) up "$$state"
	. "$$state/env"
	scripts/benchinstr.sh
