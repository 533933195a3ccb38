package gvisorsb

import (
	"errors"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
)

const fuzzShm = "/var/lib/magnetar-gvisor/pods/p1/shm"

// FuzzPodHints: runsc mount hints taken from a pod's CRI annotations are
// either refused (invalid argument naming options.annotations) or passed
// on whole: every hint names a known field with a value runsc accepts, each
// mount has its source, type and share, no two share a source, none takes
// the pod's /dev/shm or its name; other annotations stay out; the
// sandboxer's /dev/shm hint is always there.
func FuzzPodHints(f *testing.F) {
	f.Add("vol.source", "/host/vol", "vol.type", "tmpfs", "vol.share", "pod")
	f.Add("vol.source", "relative", "vol.type", "bind", "vol.share", "pod")
	f.Add("magnetar-shm.source", "/x", "a.b.c", "y", "vol", "z")
	f.Add("v.source", fuzzShm, "v.type", "tmpfs", "v.share", "container")
	f.Add("v.directfs", "off", "w.options", "rw", "", "")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, k3, v3 string) {
		ann := map[string]string{"io.kubernetes.cri.sandbox-name": "p", hintPrefix + k1: v1, hintPrefix + k2: v2, k3: v3}
		if strings.HasPrefix(k3, ".") {
			ann[hintPrefix+k3[1:]] = v3
		}
		out, err := podHints(ann, fuzzShm)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.HasPrefix(err.Error(), "options.annotations") {
				t.Fatalf("podHints(%q) = %v", ann, err)
			}
			return
		}
		if out[hintPrefix+shmHint+".source"] != fuzzShm || out[hintPrefix+shmHint+".type"] != "tmpfs" || out[hintPrefix+shmHint+".share"] != "pod" {
			t.Fatalf("podHints(%q) = %q: no /dev/shm hint", ann, out)
		}
		mounts := map[string]map[string]string{}
		for k, v := range out {
			rest, ok := strings.CutPrefix(k, hintPrefix)
			name, field, _ := strings.Cut(rest, ".")
			allowed, known := hintFields[field]
			if !ok || name == "" || !known || (allowed != nil && !slices.Contains(allowed, v)) || strings.Contains(field, ".") {
				t.Fatalf("podHints(%q) passed %q = %q", ann, k, v)
			}
			if name != shmHint && ann[k] != v {
				t.Fatalf("podHints(%q) passed %q = %q, not the pod's", ann, k, v)
			}
			if mounts[name] == nil {
				mounts[name] = map[string]string{}
			}
			mounts[name][field] = v
		}
		for k, v := range ann {
			if strings.HasPrefix(k, hintPrefix) && out[k] != v {
				t.Fatalf("podHints(%q) dropped %q", ann, k)
			}
		}
		sources := map[string]bool{}
		for name, m := range mounts {
			if m["source"] == "" || m["type"] == "" || m["share"] == "" || !filepath.IsAbs(m["source"]) || sources[m["source"]] {
				t.Fatalf("podHints(%q): mount %q is %q", ann, name, m)
			}
			sources[m["source"]] = true
		}
	})
}

// FuzzRewriteSpec: a container's spec, whatever CRI annotations it comes
// with, joins its pod's sandbox as a container (never as a second sandbox
// root), names its pod, and carries exactly the pod's mount hints.
func FuzzRewriteSpec(f *testing.F) {
	f.Add("container", "other-pod", hintPrefix+"evil.source", "/etc", true)
	f.Add("sandbox", "p1", "x", "y", false)
	f.Add("", "", "dev.gvisor.spec.mount.magnetar-shm.source", "/", false)
	f.Fuzz(func(t *testing.T, ctype, sbID, key, val string, hostNet bool) {
		st := &podState{Dir: "/var/lib/magnetar-gvisor/pods/p1", Shm: fuzzShm, Hostname: "p1", HostNetwork: hostNet}
		var err error
		if st.Hints, err = podHints(map[string]string{hintPrefix + "vol.source": "/v", hintPrefix + "vol.type": "tmpfs", hintPrefix + "vol.share": "pod"}, st.Shm); err != nil {
			t.Fatal(err)
		}
		sp := &specs.Spec{Hostname: "own", Annotations: map[string]string{annSandboxID: sbID, key: val}}
		if ctype != "" {
			sp.Annotations[annContainerType] = ctype
		}
		err = rewriteSpec(sp, "p1", st)
		if ctype != "" && ctype != typeContainer {
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), annContainerType) {
				t.Fatalf("container type %q: %v, want refused", ctype, err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if sp.Annotations[annContainerType] != typeContainer || sp.Annotations[annSandboxID] != "p1" {
			t.Fatalf("rewritten annotations %q", sp.Annotations)
		}
		hints := maps.Clone(sp.Annotations)
		maps.DeleteFunc(hints, func(k, _ string) bool { return !strings.HasPrefix(k, hintPrefix) })
		if !maps.Equal(hints, st.Hints) {
			t.Fatalf("hints %q, the pod's are %q", hints, st.Hints)
		}
		if hostNet && sp.Hostname != "" {
			t.Fatalf("host-network container keeps hostname %q", sp.Hostname)
		}
	})
}
