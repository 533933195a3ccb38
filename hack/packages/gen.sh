#!/usr/bin/env bash
# hack/packages/gen.sh: (re)write the per-sandboxer deploy files from
# deploy/templates and deploy/sandboxers/NAME.conf:
#   deploy/systemd/magnetar-NAME.service       (not for a handler: DAEMON=...)
#   deploy/etc/containerd/conf.d/magnetar-NAME.toml
#   deploy/kubernetes/runtimeclass-magnetar-NAME.yaml
# They are committed, so that they can be read and used without building.
#
#   hack/packages/gen.sh           write them
#   hack/packages/gen.sh --check   fail if any is missing or stale, or if one
#                                  of those directories holds a file that no
#                                  conf generates (written by hand) (tests)
source "$(dirname "$0")/lib.sh"
check=0
[ "${1:-}" = --check ] && check=1
stale=0
generated=" "
for n in $(sandboxer_names); do
  load_sandboxer "$n"
  [ -f "$CONFIG" ] || die "deploy/etc/magnetar/$NAME.toml missing: write the default config of $BINARY"
  while read -r tpl out; do
    generated+="$out "
    want=$(render "$DEPLOY/$tpl")
    if [ "$check" = 1 ]; then
      if [ "$want" != "$(cat "$DEPLOY/$out" 2>/dev/null)" ]; then
        echo "stale: deploy/$out (run hack/packages/gen.sh)" >&2
        stale=1
      fi
    else
      mkdir -p "$(dirname "$DEPLOY/$out")"
      printf '%s\n' "$want" > "$DEPLOY/$out"
    fi
  done < <(generated_files)
done
if [ "$check" = 1 ]; then
  for f in "$DEPLOY"/systemd/* "$DEPLOY"/etc/containerd/conf.d/* "$DEPLOY"/kubernetes/*; do
    [ -e "$f" ] || continue
    if [[ "$generated" != *" ${f#"$DEPLOY"/} "* ]]; then
      echo "not generated: deploy/${f#"$DEPLOY"/} (no deploy/sandboxers conf renders it: add one, see deploy/README.md)" >&2
      stale=1
    fi
  done
fi
exit $stale
