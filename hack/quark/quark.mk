# hack/quark/quark.mk: the quark sandboxer's end-to-end stage, included by the
# top-level Makefile.
#
#   make quark-standin    the stand-in for Quark's quark binary (hack/standins/quark),
#                         for the tests only: _output/standins/quark, never packaged
#   make quark-e2e        containerd 2.4 + crictl + critest with magnetar-quark, every
#                         pod a sandbox of the stand-in (hack/quark/e2e-all.sh;
#                         WORK=_output/quark-e2e, bridge mgbr8, 10.247.0.0/16): every
#                         suite, 10 leak cycles, critest's offline set. Ends with
#                         "quark-e2e: N passed, M failed, K skipped"
#   make quark-e2e-short  the part of make test: lifecycle, mapping, exit codes, tty,
#                         daemon kill -9 and recovery, sandbox process killed, and
#                         critest's offline set (about 1 min; QUARK_SHORT=1)
.PHONY: quark-standin quark-e2e quark-e2e-short

QUARK_STANDIN := $(CURDIR)/_output/standins/quark

quark-standin:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(QUARK_STANDIN) ./hack/standins/quark

quark-e2e: build tools images quark-standin
	QUARK_BIN=$(QUARK_STANDIN) hack/quark/e2e-all.sh

quark-e2e-short: build tools images quark-standin
	QUARK_BIN=$(QUARK_STANDIN) QUARK_SHORT=1 hack/quark/e2e-all.sh

# the package tests run magnetar-quark's daemon with the shipped quark.toml
# pointed at the stand-in
packages-test: quark-standin

test: quark-e2e-short

# make standins builds every stand-in
standins: quark-standin
