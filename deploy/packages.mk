# deploy/packages.mk: package targets, included by the top-level Makefile
# (-include deploy/packages.mk).
#
#   make packages        one .deb and one .rpm per conf of deploy/sandboxers/: a
#                        sandboxer's, or a further runtime handler's of its
#                        daemon (magnetar-clh: drop-in and RuntimeClass only)
#                        (nfpm, pinned in hack/tools/nfpm/go.mod), version from
#                        git describe, into _output/packages (hack/packages/build.sh)
#   make packages-test   the package tests (hack/packages/test.sh, two to three minutes):
#                        deploy files vs templates, default config, deb/rpm
#                        contents, conffiles, dependencies, scriptlets,
#                        systemd-analyze verify; as root also the install test
#                        (dpkg -i, the daemon as the unit runs it, a throwaway
#                        containerd with the installed drop-in, e2e smoke,
#                        reinstall + restart with a running pod, dpkg -r / -P).
#                        Part of make test. WORK=_output/pkgtest, bridge mgbr3.
#                        INSTALL_HANDLERS= (empty): the static checks only;
#                        INSTALL_HANDLERS=magnetar-clh: a handler's package
#                        with its daemon's (no pod of it runs)
#   make deploy-gen      rewrite the generated deploy files after changing
#                        deploy/templates or deploy/sandboxers (hack/packages/gen.sh)
#
# Knobs: PKG_VERSION (instead of git describe), PKG_OUT (output dir).
.PHONY: packages packages-test deploy-gen

PACKAGES_TEST := packages-test
# the Makefile's `test:` line expands $(PACKAGES_TEST) before this file is
# read; this line is what puts the package tests into make test
test: packages-test

# the vmm package ships the guest image
packages: build guest-image
	hack/packages/build.sh

packages-test: build tools images guest-image
	hack/packages/test.sh

deploy-gen:
	hack/packages/gen.sh
