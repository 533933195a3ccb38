#!/usr/bin/env bash
# hack/packages/lib.sh: shared by gen.sh, build.sh and test.sh. Source it.
#
# A sandboxer is described by deploy/sandboxers/NAME.conf (see runc.conf);
# everything else follows from NAME. DEPLOY (default $ROOT/deploy) can point
# at another tree, as the tests do.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
DEPLOY=${DEPLOY:-$ROOT/deploy}
NFPM_VERSION=${NFPM_VERSION:-$(awk '$1 == "github.com/goreleaser/nfpm/v2" {print $2}' "$ROOT/hack/tools/nfpm/go.mod")}
PKG_OUT=${PKG_OUT:-$OUT/packages}

# sandboxer_names: NAME of every deploy/sandboxers/NAME.conf
sandboxer_names() {
  local f
  for f in "$DEPLOY"/sandboxers/*.conf; do
    [ -f "$f" ] && basename "$f" .conf
  done
  return 0
}

# load_sandboxer NAME: set NAME SUMMARY DESCRIPTION DEB_DEPENDS RPM_DEPENDS
# EXTRA_FILES UNIT_SERVICE_EXTRA RUNTIMECLASS_EXTRA TEST_CONFIG_EDIT (a sed expression the
# package test applies to the default config before it runs the daemon with
# it: paths the package installs) DAEMON HANDLER_NOTE BINARY_KEY from the conf, and the
# derived HANDLER (= package name; = unit name for a daemon), BINARY, CONFIG
# (path in DEPLOY), DAEMON_PACKAGE.
#
# A conf with DAEMON=OTHER is a runtime handler of OTHER's daemon (clh.conf:
# DAEMON=vmm): its package magnetar-NAME ships only the handler's drop-in and
# RuntimeClass and depends on magnetar-OTHER of the same version; BINARY,
# CONFIG and the socket are OTHER's. Without DAEMON the conf is a daemon's
# own (DAEMON=NAME).
load_sandboxer() {
  local f=$DEPLOY/sandboxers/$1.conf
  [ -f "$f" ] || die "no sandboxer $1: $f missing"
  NAME= SUMMARY= DESCRIPTION= UNIT_SERVICE_EXTRA= RUNTIMECLASS_EXTRA= TEST_CONFIG_EDIT= DAEMON= HANDLER_NOTE= BINARY_KEY=
  DEB_DEPENDS=() RPM_DEPENDS=() EXTRA_FILES=()
  # shellcheck source=/dev/null
  source "$f"
  [ "$NAME" = "$1" ] || die "$f: NAME=$NAME, want $1"
  [ -n "$SUMMARY" ] && [ -n "$DESCRIPTION" ] || die "$f: SUMMARY and DESCRIPTION are required"
  HANDLER=magnetar-$NAME
  if [ -z "$DAEMON" ] || [ "$DAEMON" = "$NAME" ]; then
    DAEMON=$NAME
    [[ $NAME =~ ^[a-z][a-z0-9]*$ ]] || die "$f: NAME must be lowercase letters and digits"
  else
    # a handler name may have dashes (magnetar-wasm-wazero)
    [[ $NAME =~ ^[a-z][a-z0-9]*(-[a-z0-9]+)*$ ]] || die "$f: NAME must be lowercase letters, digits and inner dashes"
    [ -z "$UNIT_SERVICE_EXTRA$TEST_CONFIG_EDIT" ] && [ ${#EXTRA_FILES[@]} = 0 ] ||
      die "$f: a handler of $DAEMON's daemon (DAEMON=$DAEMON) ships no unit, config or other file: UNIT_SERVICE_EXTRA, TEST_CONFIG_EDIT and EXTRA_FILES must be empty"
    [ -f "$DEPLOY/sandboxers/$DAEMON.conf" ] || die "$f: DAEMON=$DAEMON: no $DEPLOY/sandboxers/$DAEMON.conf"
    ! grep -Eq '^DAEMON=.' "$DEPLOY/sandboxers/$DAEMON.conf" ||
      die "$f: DAEMON=$DAEMON is itself a handler; name the daemon's conf"
  fi
  DAEMON_PACKAGE=magnetar-$DAEMON
  BINARY=$DAEMON-sandboxer
  CONFIG=$DEPLOY/etc/magnetar/$DAEMON.toml
}

# is_handler: the loaded conf is a handler of another sandboxer's daemon
# (DAEMON=OTHER): a package without binary, unit or config
is_handler() { [ "$DAEMON" != "$NAME" ]; }

# render TEMPLATE: the template with @NAME@ @HANDLER@ @PACKAGE@ @BINARY@
# @DAEMON@ @DAEMON_PACKAGE@ @SUMMARY@ @UNIT_SERVICE_EXTRA@ @RUNTIMECLASS_EXTRA@
# @HANDLER_NOTE@ (as "# " comment lines) filled in (a line holding only an
# empty placeholder disappears); a line "@INCLUDE FILE@" is replaced by the
# rendered FILE of the template's directory (which includes nothing)
render() {
  local t note= inc
  t=$(<"$1")
  while [[ $t =~ @INCLUDE\ ([a-z0-9.-]+)@ ]]; do
    [ -z "${2:-}" ] || die "$2 includes $1, which includes ${BASH_REMATCH[1]}: one level only"
    inc=$(render "$(dirname "$1")/${BASH_REMATCH[1]}" "$1") || exit 1
    t=${t//"${BASH_REMATCH[0]}"/$inc}
  done
  t=${t//@NAME@/$NAME}
  t=${t//@HANDLER@/$HANDLER}
  t=${t//@PACKAGE@/$HANDLER}
  t=${t//@BINARY@/$BINARY}
  t=${t//@DAEMON_PACKAGE@/$DAEMON_PACKAGE}
  t=${t//@DAEMON@/$DAEMON}
  t=${t//@SUMMARY@/$SUMMARY}
  [ -z "$HANDLER_NOTE" ] || note=$(sed 's/^/# /; s/ $//' <<<"$HANDLER_NOTE")
  t=$(fill "$t" UNIT_SERVICE_EXTRA "$UNIT_SERVICE_EXTRA")
  t=$(fill "$t" RUNTIMECLASS_EXTRA "$RUNTIMECLASS_EXTRA")
  t=$(fill "$t" HANDLER_NOTE "$note")
  printf '%s\n' "$t"
}

# fill TEXT KEY VALUE: TEXT with @KEY@ replaced by VALUE, or without the
# line holding only @KEY@ when VALUE is empty
fill() {
  local t=$1
  if [ -n "$3" ]; then
    t=${t//@$2@/$3}
  else
    t=${t//$'\n'@$2@/}
  fi
  printf '%s' "$t"
}

# generated_files: "TEMPLATE OUTPUT" pairs (paths relative to DEPLOY) of
# the files hack/packages/gen.sh writes for the loaded sandboxer or handler
# (a handler has no unit of its own)
generated_files() {
  is_handler || echo "templates/sandboxer.service systemd/$HANDLER.service"
  echo "templates/containerd-dropin.toml etc/containerd/conf.d/$HANDLER.toml"
  echo "templates/runtimeclass.yaml kubernetes/runtimeclass-$HANDLER.yaml"
}

# maintainer_script SCRIPT: the template of postinst, prerm or postrm for the
# loaded conf (a handler package's start with handler-)
maintainer_script() {
  if is_handler; then echo "$DEPLOY/templates/handler-$1.sh"; else echo "$DEPLOY/templates/$1.sh"; fi
}

# pkg_version: the package version from `git describe`, valid for deb and rpm
#   tag v1.2.3                       -> 1.2.3
#   tag v1.2.3-rc.1                  -> 1.2.3~rc.1      (sorts before 1.2.3)
#   N commits after tag v1.2.3       -> 1.2.3+git<N>.<sha>
#   no tag                           -> 0.0.0~git<N>.<sha>   (N = commits in HEAD)
#   uncommitted changes              -> ... .dirty appended
# PKG_VERSION overrides it.
pkg_version() {
  if [ -n "${PKG_VERSION:-}" ]; then echo "$PKG_VERSION"; return; fi
  local d tag n sha v dirty=
  if ! git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then echo 0.0.0~unknown; return; fi
  if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then dirty=.dirty; fi
  sha=$(git -C "$ROOT" rev-parse --short=7 HEAD)
  if d=$(git -C "$ROOT" describe --tags --long --match 'v[0-9]*' 2>/dev/null); then
    tag=${d%-*-g*}; n=${d%-g*}; n=${n##*-}
    v=${tag#v}
    v=${v/-/\~}            # pre-release: 1.2.3-rc.1 -> 1.2.3~rc.1
    v=${v//-/.}
    if [ "$n" != 0 ]; then v=$v+git$n.$sha; fi
  else
    v=0.0.0~git$(git -C "$ROOT" rev-list --count HEAD).$sha
  fi
  echo "$v$dirty"
}

# nfpm_bin: path of nfpm $NFPM_VERSION, built once into the tools cache from the
# pinned module hack/tools/nfpm (its own go.mod; the main module is untouched)
nfpm_bin() {
  local dest=$MAGNETAR_TOOLS/nfpm-$NFPM_VERSION
  if [ ! -x "$dest/bin/nfpm" ]; then
    log "building nfpm $NFPM_VERSION into $dest"
    mkdir -p "$dest/bin"
    (cd "$ROOT/hack/tools/nfpm" && CGO_ENABLED=0 go build -trimpath -o "$dest/bin/nfpm.tmp.$$" github.com/goreleaser/nfpm/v2/cmd/nfpm) ||
      die "building nfpm failed"
    mv "$dest/bin/nfpm.tmp.$$" "$dest/bin/nfpm"
  fi
  echo "$dest/bin/nfpm"
}
