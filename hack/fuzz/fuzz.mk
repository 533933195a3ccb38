# hack/fuzz/fuzz.mk: Go native fuzzing, included by the top-level Makefile.
#
#   make fuzz        every FuzzXxx target of the module for FUZZTIME (default
#                    1m) each, one at a time (hack/fuzz/fuzz.sh): a table of
#                    target, executions, new interesting inputs, result; last
#                    line "fuzz: N targets, M failed". A failing input lands in
#                    the package's testdata/fuzz/FuzzXxx/ (commit it with the fix).
#   make fuzz-short  the same for FUZZTIME_SHORT each (default 2000x: a count of
#                    executions, not a duration: with a duration go test -fuzz
#                    fails now and then with its own "context deadline
#                    exceeded" when the time is up): part of make test
#
# Knobs: FUZZTIME, FUZZTIME_SHORT, FUZZ_PARALLEL (fuzz workers, default 1, so
# that a run beside another session's keeps to one core), FUZZ_MINIMIZETIME
# (how long a new or failing input is shrunk, default 2s), FUZZ_MATCH (regexp
# over "<package dir>.FuzzXxx"). CPU only: no harness lock needed.
# `go test ./...` (make unit) runs every target's seed corpus (f.Add and
# testdata/fuzz/) as an ordinary test.
.PHONY: fuzz fuzz-short
FUZZTIME ?= 1m
FUZZTIME_SHORT ?= 2000x
FUZZ_PARALLEL ?= 1
FUZZ_MINIMIZETIME ?= 2s

fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) FUZZ_PARALLEL=$(FUZZ_PARALLEL) FUZZ_MINIMIZETIME=$(FUZZ_MINIMIZETIME) FUZZ_MATCH='$(FUZZ_MATCH)' hack/fuzz/fuzz.sh

fuzz-short:
	GO=$(GO) FUZZTIME=$(FUZZTIME_SHORT) FUZZ_PARALLEL=$(FUZZ_PARALLEL) FUZZ_MINIMIZETIME=$(FUZZ_MINIMIZETIME) FUZZ_MATCH='$(FUZZ_MATCH)' hack/fuzz/fuzz.sh

test: fuzz-short
