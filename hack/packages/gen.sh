#!/usr/bin/env bash
# hack/packages/gen.sh: (re)write the per-sandboxer deploy files from
# deploy/templates and deploy/sandboxers/NAME.conf:
#   deploy/systemd/magnetar-NAME.service
#   deploy/etc/containerd/conf.d/magnetar-NAME.toml
#   deploy/kubernetes/runtimeclass-magnetar-NAME.yaml
# They are committed, so that they can be read and used without building.
#
#   hack/packages/gen.sh           write them
#   hack/packages/gen.sh --check   fail if any is missing or stale (tests)
source "$(dirname "$0")/lib.sh"
check=0
[ "${1:-}" = --check ] && check=1
stale=0
for n in $(sandboxer_names); do
  load_sandboxer "$n"
  [ -f "$CONFIG" ] || die "deploy/etc/magnetar/$NAME.toml missing: write the default config of $BINARY"
  while read -r tpl out; do
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
exit $stale
