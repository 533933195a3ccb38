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
# it: paths the package installs) from the conf, and the derived HANDLER
# (= package = unit name), BINARY, CONFIG (path in DEPLOY).
load_sandboxer() {
  local f=$DEPLOY/sandboxers/$1.conf
  [ -f "$f" ] || die "no sandboxer $1: $f missing"
  NAME= SUMMARY= DESCRIPTION= UNIT_SERVICE_EXTRA= RUNTIMECLASS_EXTRA= TEST_CONFIG_EDIT=
  DEB_DEPENDS=() RPM_DEPENDS=() EXTRA_FILES=()
  # shellcheck source=/dev/null
  source "$f"
  [ "$NAME" = "$1" ] || die "$f: NAME=$NAME, want $1"
  [[ $NAME =~ ^[a-z][a-z0-9]*$ ]] || die "$f: NAME must be lowercase letters and digits"
  [ -n "$SUMMARY" ] && [ -n "$DESCRIPTION" ] || die "$f: SUMMARY and DESCRIPTION are required"
  HANDLER=magnetar-$NAME
  BINARY=$NAME-sandboxer
  CONFIG=$DEPLOY/etc/magnetar/$NAME.toml
}

# render TEMPLATE: the template with @NAME@ @HANDLER@ @PACKAGE@ @BINARY@
# @SUMMARY@ @UNIT_SERVICE_EXTRA@ @RUNTIMECLASS_EXTRA@ filled in (a line
# holding only an empty placeholder disappears)
render() {
  local t
  t=$(<"$1")
  t=${t//@NAME@/$NAME}
  t=${t//@HANDLER@/$HANDLER}
  t=${t//@PACKAGE@/$HANDLER}
  t=${t//@BINARY@/$BINARY}
  t=${t//@SUMMARY@/$SUMMARY}
  if [ -n "$UNIT_SERVICE_EXTRA" ]; then
    t=${t//@UNIT_SERVICE_EXTRA@/$UNIT_SERVICE_EXTRA}
  else
    t=${t//$'\n'@UNIT_SERVICE_EXTRA@/}
  fi
  if [ -n "$RUNTIMECLASS_EXTRA" ]; then
    t=${t//@RUNTIMECLASS_EXTRA@/$RUNTIMECLASS_EXTRA}
  else
    t=${t//$'\n'@RUNTIMECLASS_EXTRA@/}
  fi
  printf '%s\n' "$t"
}

# generated_files NAME: "TEMPLATE OUTPUT" pairs (paths relative to DEPLOY) of
# the files hack/packages/gen.sh writes for a loaded sandboxer
generated_files() {
  echo "templates/sandboxer.service systemd/$HANDLER.service"
  echo "templates/containerd-dropin.toml etc/containerd/conf.d/$HANDLER.toml"
  echo "templates/runtimeclass.yaml kubernetes/runtimeclass-$HANDLER.yaml"
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
