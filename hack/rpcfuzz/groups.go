package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"
)

type (
	killReq   = taskapi.KillRequest
	deleteReq = taskapi.DeleteRequest
)

// hostileIDs: every method of both APIs with every id that breaks the
// rules gets InvalidArgument.
func (r *runner) hostileIDs() {
	cc, tc := ctrlCalls(r.d), taskCalls(r.d)
	for _, id := range hostileIDs() {
		for _, m := range slices.Sorted(maps.Keys(cc)) {
			call := cc[m]
			r.try(kase{name: fmt.Sprintf("Controller.%s id=%q", m, id), want: invalid,
				run: func(ctx context.Context, _ *daemon) error { return call(ctx, id) }})
		}
		for _, m := range slices.Sorted(maps.Keys(tc)) {
			call := tc[m]
			r.try(kase{name: fmt.Sprintf("Task.%s id=%q", m, id), want: invalid,
				run: func(ctx context.Context, _ *daemon) error { return call(ctx, id) }})
		}
		// an exec id that breaks the rules, on an unknown container
		r.try(kase{name: fmt.Sprintf("Task.State exec_id=%q", id), want: []codes.Code{codes.InvalidArgument, codes.NotFound},
			run: func(ctx context.Context, d *daemon) error {
				_, err := d.task.State(ctx, &taskapi.StateRequest{ID: "fuzz-unknown", ExecID: id})
				return err
			}})
	}
}

// unknownIDs: valid ids nobody created: NotFound, but for the idempotent
// Stop and Shutdown.
func (r *runner) unknownIDs() {
	cc, tc := ctrlCalls(r.d), taskCalls(r.d)
	for _, m := range slices.Sorted(maps.Keys(cc)) {
		call, want := cc[m], notFound
		switch m {
		case "Create":
			continue
		case "Stop", "Shutdown":
			want = okOnly
		}
		r.try(kase{name: "Controller." + m + " unknown id", want: want,
			run: func(ctx context.Context, _ *daemon) error { return call(ctx, "fuzz-unknown-sandbox") }})
	}
	for _, m := range slices.Sorted(maps.Keys(tc)) {
		call, want := tc[m], notFound
		switch m {
		case "Shutdown":
			want = okOnly
		case "Create": // the pod the bundle names is unknown
			want = []codes.Code{codes.NotFound, codes.FailedPrecondition}
		}
		r.try(kase{name: "Task." + m + " unknown id", want: want,
			run: func(ctx context.Context, _ *daemon) error { return call(ctx, "fuzz-unknown-task") }})
	}
}

// create is a Controller.Create case; a created sandbox is removed at the
// end of the group.
func (r *runner) create(name string, want []codes.Code, req *sandboxapi.ControllerCreateRequest) codes.Code {
	r.made(req.SandboxID)
	return r.try(kase{name: name, want: want, run: func(ctx context.Context, d *daemon) error {
		_, err := d.ctrl.Create(ctx, req)
		return err
	}})
}

// sandboxInputs: Controller.Create with paths outside every root and
// garbage payloads.
func (r *runner) sandboxInputs() {
	d := r.d
	n := 0
	next := func() string { n++; return fmt.Sprintf("fuzz-sb-%d", n) }
	link := filepath.Join(d.outside, "ns-link")
	for _, ns := range []string{"relative/ns", "ns", "/etc/passwd", "/nonexistent/ns", "/run/netns/../../etc/passwd",
		d.outside, "/proc/self/ns/mnt", "/a\x00b", "/dev/null"} {
		req := d.createReq(next(), d.podConfig("ns"))
		req.NetnsPath = ns
		r.create(fmt.Sprintf("Controller.Create netns_path=%q", ns), refused, req)
	}
	// a network namespace by a symlink out of the caller's root: accepted
	// or refused, but nothing may be made
	req := d.createReq(next(), d.podConfig("nslink"))
	req.NetnsPath = link
	r.create("Controller.Create netns_path=symlink to /proc/1/ns/net", anyClear, req)

	g := &gen{r: rand.New(rand.NewPCG(1, 2)), d: d}
	for i := range 7 {
		req := d.createReq(next(), d.podConfig("rootfs"))
		req.Rootfs = g.mounts()
		if i == 0 {
			req.Rootfs = []*types.Mount{{Type: "bind", Source: "/", Options: []string{"rbind"}}}
		}
		r.create(fmt.Sprintf("Controller.Create rootfs=%v", req.Rootfs), anyClear, req)
	}
	for _, a := range []*anypb.Any{
		{TypeUrl: "x", Value: []byte("garbage")},
		{TypeUrl: podURL, Value: []byte{0xff, 0xff, 0xff}},
		{TypeUrl: specURL, Value: []byte("{not json")},
		{TypeUrl: specURL, Value: []byte(`{"root":{"path":"/"},"linux":{"namespaces":[{"type":"network","path":"/proc/1/ns/net"}]}}`)},
		{TypeUrl: "", Value: []byte{1, 2, 3}},
		{TypeUrl: strings.Repeat("u", 100000)},
	} {
		req := d.createReq(next(), nil)
		req.Options = a
		r.create(fmt.Sprintf("Controller.Create options type_url=%.40q value=%.40q", a.TypeUrl, a.Value), anyClear, req)
	}
	// hostile configuration fields, each alone
	for i := range 24 {
		req := d.createReq(next(), g.podConfig())
		r.create(fmt.Sprintf("Controller.Create config %d %v", i, req.Options), anyClear, req)
	}
	r.try(kase{name: "Controller.Update garbage resources", want: refused, run: func(ctx context.Context, d *daemon) error {
		_, err := d.ctrl.Update(ctx, &sandboxapi.ControllerUpdateRequest{SandboxID: "fuzz-unknown", Sandboxer: d.h.sandboxer,
			Sandbox: &types.Sandbox{Spec: &anypb.Any{TypeUrl: specURL, Value: []byte("{")}, Extensions: map[string]*anypb.Any{"x": {TypeUrl: "y"}}},
			Fields:  []string{"../x", "extensions.x", ""}})
		return err
	}})
}

// taskInputs: Task.Create with bundles, stdio and payloads outside every
// root, for a pod that does not exist (refused before the backend).
func (r *runner) taskInputs() {
	d := r.d
	n := 0
	next := func() string { n++; return fmt.Sprintf("fuzz-ct-%d", n) }
	create := func(name string, want []codes.Code, req *taskapi.CreateTaskRequest) {
		r.made("task:" + req.ID)
		r.try(kase{name: name, want: want, run: func(ctx context.Context, d *daemon) error {
			_, err := d.task.Create(ctx, req)
			return err
		}})
	}
	for _, b := range []string{"", "relative/b", "/etc/../etc", "/etc", d.outside + "/nobundle", "/", "/proc/self/root", d.fuzz + "/./b", "/a\x00b"} {
		create(fmt.Sprintf("Task.Create bundle=%q", b), invalid, &taskapi.CreateTaskRequest{ID: next(), Bundle: b})
	}
	// config.json a symlink to a file that is no spec
	passwd := d.bundle("x", func(dir string, _ *specs.Spec) { _ = os.Symlink("/etc/passwd", filepath.Join(dir, "config.json")) })
	create("Task.Create config.json -> /etc/passwd", invalid, &taskapi.CreateTaskRequest{ID: next(), Bundle: passwd})
	garbage := d.bundle("x", func(dir string, _ *specs.Spec) {
		_ = os.WriteFile(filepath.Join(dir, "config.json"), []byte("\x00{garbage"), 0o600)
	})
	create("Task.Create config.json garbage", invalid, &taskapi.CreateTaskRequest{ID: next(), Bundle: garbage})
	for name, edit := range map[string]func(string, *specs.Spec){
		"no process":         func(_ string, s *specs.Spec) { s.Process = nil },
		"no pod annotation":  func(_ string, s *specs.Spec) { delete(s.Annotations, "io.kubernetes.cri.sandbox-id") },
		"pod id ../..":       func(_ string, s *specs.Spec) { s.Annotations["io.kubernetes.cri.sandbox-id"] = "../../etc" },
		"pod id with NUL":    func(_ string, s *specs.Spec) { s.Annotations["io.kubernetes.cri.sandbox-id"] = "a\x00b" },
		"pod id empty":       func(_ string, s *specs.Spec) { s.Annotations["io.kubernetes.cri.sandbox-id"] = "" },
		"root.path / (host)": func(_ string, s *specs.Spec) { s.Root.Path = "/" },
		"root.path ../../..": func(_ string, s *specs.Spec) { s.Root.Path = "../../.." },
		"rootfs symlink to /": func(dir string, _ *specs.Spec) {
			_ = os.Remove(filepath.Join(dir, "rootfs"))
			_ = os.Symlink("/", filepath.Join(dir, "rootfs"))
		},
		"netns of pid 1": func(_ string, s *specs.Spec) {
			s.Linux.Namespaces = []specs.LinuxNamespace{{Type: "network", Path: "/proc/1/ns/net"}}
		},
		"cgroupsPath ../../..": func(_ string, s *specs.Spec) { s.Linux.CgroupsPath = "../../../.." },
	} {
		want := []codes.Code{codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition}
		create("Task.Create spec "+name+", pod unknown", want, &taskapi.CreateTaskRequest{ID: next(), Bundle: d.bundle("fuzz-unknown-pod", edit)})
	}
	// refused by their form; the others (absent paths outside) by the
	// unknown pod, and must not be created
	bad := []string{"relative", "file://relative", "binary://", "fifo:/x", "/a\x00b", "file:///a%00b", "binary:///../../bin/sh?a=b"}
	for _, s := range append(bad, "/tmp/"+d.tag+"-stdout", d.outside+"/out") {
		want := []codes.Code{codes.NotFound, codes.FailedPrecondition}
		if slices.Contains(bad, s) {
			want = invalid
		}
		for _, which := range []string{"stdin", "stdout", "stderr"} {
			req := &taskapi.CreateTaskRequest{ID: next(), Bundle: d.bundle("fuzz-unknown-pod", nil)}
			switch which {
			case "stdin":
				req.Stdin = s
			case "stdout":
				req.Stdout = s
			default:
				req.Stderr = s
			}
			create(fmt.Sprintf("Task.Create %s=%q, pod unknown", which, s), want, req)
		}
	}
	g := &gen{r: rand.New(rand.NewPCG(3, 4)), d: d}
	for i := range 8 {
		req := &taskapi.CreateTaskRequest{ID: next(), Bundle: d.bundle("fuzz-unknown-pod", nil), Rootfs: g.mounts(), Options: g.anyPayload()}
		create(fmt.Sprintf("Task.Create rootfs/options %d, pod unknown", i), []codes.Code{codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition}, req)
	}
	create("Task.Create checkpoint", []codes.Code{codes.FailedPrecondition, codes.InvalidArgument}, &taskapi.CreateTaskRequest{ID: next(), Bundle: d.bundle("fuzz-unknown-pod", nil), Checkpoint: "/etc"})
	// exec and update payloads on an unknown container
	for i := range 6 {
		a := g.anyPayload()
		r.try(kase{name: fmt.Sprintf("Task.Exec spec %d on unknown", i), want: []codes.Code{codes.InvalidArgument, codes.NotFound}, run: func(ctx context.Context, d *daemon) error {
			_, err := d.task.Exec(ctx, &taskapi.ExecProcessRequest{ID: "fuzz-unknown", ExecID: "e", Spec: a, Stdout: g.path()})
			return err
		}})
		r.try(kase{name: fmt.Sprintf("Task.Update resources %d on unknown", i), want: []codes.Code{codes.InvalidArgument, codes.NotFound}, run: func(ctx context.Context, d *daemon) error {
			_, err := d.task.Update(ctx, &taskapi.UpdateTaskRequest{ID: "fuzz-unknown", Resources: a, Annotations: map[string]string{"../x": "\x00"}})
			return err
		}})
	}
	for _, sig := range []uint32{0, 65, 1 << 31} {
		r.try(kase{name: fmt.Sprintf("Task.Kill signal %d on unknown", sig), want: []codes.Code{codes.InvalidArgument, codes.NotFound}, run: func(ctx context.Context, d *daemon) error {
			_, err := d.task.Kill(ctx, &taskapi.KillRequest{ID: "fuzz-unknown", Signal: sig})
			return err
		}})
	}
}

// outOfOrder: calls before their object exists, twice, after Shutdown.
func (r *runner) outOfOrder() {
	d := r.d
	cc, tc := ctrlCalls(d), taskCalls(d)
	step := func(name string, want []codes.Code, f func(ctx context.Context, id string) error, id string) codes.Code {
		return r.try(kase{name: name, want: want, run: func(ctx context.Context, _ *daemon) error { return f(ctx, id) }})
	}
	step("Task.Start before Create", notFound, tc["Start"], "fuzz-o-1")
	step("Task.Delete before Create", notFound, tc["Delete"], "fuzz-o-1")
	step("Task.Delete again", notFound, tc["Delete"], "fuzz-o-1")
	step("Task.Wait on unknown", notFound, tc["Wait"], "fuzz-o-2")
	step("Task.Exec before Create", notFound, tc["Exec"], "fuzz-o-2")
	step("Controller.Start before Create", notFound, cc["Start"], "fuzz-o-3")
	step("Controller.Wait before Create", notFound, cc["Wait"], "fuzz-o-3")

	// a sandbox created but not started
	id := "fuzz-o-4"
	created := r.create("Controller.Create (valid)", anyClear, d.createReq(id, d.podConfig(id))) == codes.OK
	if created {
		step("Controller.Create again", []codes.Code{codes.AlreadyExists}, cc["Create"], id)
		step("Controller.Status of created", okOnly, cc["Status"], id)
		step("Controller.Platform of created", okOnly, cc["Platform"], id)
		step("Controller.Metrics of created", []codes.Code{codes.OK, codes.FailedPrecondition, codes.NotFound}, cc["Metrics"], id)
		r.try(kase{name: "Task.Create in a pod not started", want: []codes.Code{codes.FailedPrecondition}, run: func(ctx context.Context, d *daemon) error {
			_, err := d.task.Create(ctx, &taskapi.CreateTaskRequest{ID: "fuzz-o-4c", Bundle: d.bundle(id, nil)})
			return err
		}})
		step("Controller.Stop of created", okOnly, cc["Stop"], id)
		step("Controller.Wait after Stop", okOnly, cc["Wait"], id)
		step("Controller.Start after Stop", []codes.Code{codes.FailedPrecondition}, cc["Start"], id)
	}
	step("Controller.Shutdown", okOnly, cc["Shutdown"], id)
	step("Controller.Shutdown again", okOnly, cc["Shutdown"], id)
	for _, m := range []string{"Start", "Status", "Platform", "Wait", "Metrics", "Update"} {
		step("Controller."+m+" after Shutdown", notFound, cc[m], id)
	}
	step("Task.Shutdown", okOnly, tc["Shutdown"], "fuzz-o-5")
	step("Task.State after Task.Shutdown", notFound, tc["State"], "fuzz-o-5")
}

// concurrent: the same id from 50 goroutines at once.
func (r *runner) concurrent() {
	d := r.d
	cc, tc := ctrlCalls(d), taskCalls(d)
	const n = 50
	id := "fuzz-c50"
	r.made(id)
	codesOf := r.many(n, kase{name: "50x Controller.Create same id", want: anyClear, run: func(ctx context.Context, d *daemon) error {
		_, err := d.ctrl.Create(ctx, d.createReq(id, d.podConfig(id)))
		return err
	}})
	oks := 0
	for _, c := range codesOf {
		if c == codes.OK {
			oks++
		}
	}
	if oks > 1 {
		r.fail("50x Controller.Create same id", fmt.Sprintf("%d creates succeeded", oks))
	}
	if oks == 1 {
		for _, c := range codesOf {
			if c != codes.OK && c != codes.AlreadyExists {
				r.fail("50x Controller.Create same id", fmt.Sprintf("a loser got %s, want AlreadyExists", c))
				break
			}
		}
		if *podsF && d.h.pods {
			r.many(n, kase{name: "50x Controller.Start same id", want: okOnly, run: func(ctx context.Context, _ *daemon) error { return cc["Start"](ctx, id) }})
		}
		r.many(n, kase{name: "50x Controller.Status same id", want: okOnly, run: func(ctx context.Context, _ *daemon) error { return cc["Status"](ctx, id) }})
		r.many(n, kase{name: "50x Controller.Stop same id", want: okOnly, run: func(ctx context.Context, _ *daemon) error { return cc["Stop"](ctx, id) }})
	}
	r.many(n, kase{name: "50x Controller.Shutdown same id", want: okOnly, run: func(ctx context.Context, _ *daemon) error { return cc["Shutdown"](ctx, id) }})
	r.try(kase{name: "Controller.Status after 50x Shutdown", want: notFound, run: func(ctx context.Context, _ *daemon) error { return cc["Status"](ctx, id) }})
	r.many(n, kase{name: "50x Task.Create same id, pod unknown", want: []codes.Code{codes.NotFound, codes.FailedPrecondition}, run: func(ctx context.Context, _ *daemon) error { return tc["Create"](ctx, "fuzz-c50t") }})
	r.many(n, kase{name: "50x Task.Delete same unknown id", want: notFound, run: func(ctx context.Context, _ *daemon) error { return tc["Delete"](ctx, "fuzz-c50t") }})
	r.many(n, kase{name: "50x Controller.Shutdown hostile id", want: invalid, run: func(ctx context.Context, _ *daemon) error { return cc["Shutdown"](ctx, "../c50") }})
}

// podTasks: with -pods, a running pod, and Task.Create with hostile
// bundles, rootfs, stdio and options aimed at it (so that they reach the
// backend).
func (r *runner) podTasks() {
	d := r.d
	if !*podsF || !d.h.pods {
		return
	}
	pod := "fuzz-pod"
	if r.create("Controller.Create (valid pod)", okOnly, d.createReq(pod, d.podConfig(pod))) != codes.OK {
		return
	}
	if r.try(kase{name: "Controller.Start (valid pod)", want: okOnly, run: func(ctx context.Context, _ *daemon) error { return ctrlCalls(d)["Start"](ctx, pod) }}) != codes.OK {
		return
	}
	n := 0
	next := func() string { n++; return fmt.Sprintf("fuzz-pc-%d", n) }
	want := anyClear
	create := func(name string, req *taskapi.CreateTaskRequest) {
		r.made("task:" + req.ID)
		r.try(kase{name: name, want: want, run: func(ctx context.Context, d *daemon) error {
			_, err := d.task.Create(ctx, req)
			return err
		}})
	}
	target := filepath.Join(d.outside, "target")
	edits := map[string]func(string, *specs.Spec){
		"rootfs symlink out": func(dir string, _ *specs.Spec) {
			_ = os.Remove(filepath.Join(dir, "rootfs"))
			_ = os.Symlink(target, filepath.Join(dir, "rootfs"))
		},
		"root.path ../../outside": func(dir string, s *specs.Spec) { s.Root.Path, _ = filepath.Rel(dir, target) },
		// an absolute root is the caller's to name (ctr run --rootfs):
		// runc makes its mount points there, so it is one of ours
		"root.path absolute": func(_ string, s *specs.Spec) { s.Root.Path = filepath.Join(d.fuzz, "abs-root") },

		"cgroupsPath ../../..": func(_ string, s *specs.Spec) { s.Linux.CgroupsPath = "../../../../rpcfuzz-escape" },
		"mount dest ../../..": func(_ string, s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "../../../../" + target, Type: "tmpfs", Source: "tmpfs"})
		},
		"note .tmp symlink out": func(dir string, _ *specs.Spec) {
			_ = os.Symlink(filepath.Join(d.outside, "victim"), filepath.Join(dir, "shim-binary-path.tmp"))
		},
		"bind mount source symlink": func(dir string, s *specs.Spec) {
			_ = os.Symlink("/etc", filepath.Join(dir, "etc-link"))
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "bind", Source: filepath.Join(dir, "etc-link"), Options: []string{"rbind"}})
		},
	}
	for _, name := range slices.Sorted(maps.Keys(edits)) {
		for _, ms := range [][]*types.Mount{nil, {{Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m"}}}} {
			create(fmt.Sprintf("Task.Create in pod: %s, %d rootfs mounts", name, len(ms)), &taskapi.CreateTaskRequest{ID: next(), Bundle: d.bundle(pod, edits[name]), Rootfs: ms})
		}
	}
	r.container(pod)
	g := &gen{r: rand.New(rand.NewPCG(5, 6)), d: d}
	for i := range 10 {
		req := &taskapi.CreateTaskRequest{ID: next(), Bundle: d.bundle(pod, nil), Rootfs: g.mounts(), Options: g.anyPayload(),
			Stdin: g.path(), Stdout: g.path(), Stderr: g.path(), Terminal: g.pick(2) == 0}
		create(fmt.Sprintf("Task.Create in pod: random %d", i), req)
	}
}

// random: requests drawn from the pools, any method, ids hostile,
// unknown or made by earlier random requests.
func (r *runner) random(rng *rand.Rand) {
	d := r.d
	g := &gen{r: rng, d: d}
	cc, tc := ctrlCalls(d), taskCalls(d)
	cm, tm := slices.Sorted(maps.Keys(cc)), slices.Sorted(maps.Keys(tc))
	var known []string
	for i := range *casesF {
		id, hostile := g.id(known)
		want := anyClear
		if hostile {
			want = invalid
		}
		name := fmt.Sprintf("random #%d", i)
		var run func(ctx context.Context, d *daemon) error
		switch m := g.pick(len(cm) + len(tm) + 6); {
		case m < 4: // Create, with random fields
			req := d.createReq(id, g.podConfig())
			req.Rootfs, req.NetnsPath = g.mounts(), g.str("", "", "/proc/self/ns/net", g.path())
			if g.pick(4) == 0 {
				req.Options = g.anyPayload()
			}
			if !hostile {
				r.made(id)
				known = append(known, id)
			}
			name += fmt.Sprintf(" Controller.Create id=%q netns=%q", id, req.NetnsPath)
			run = func(ctx context.Context, d *daemon) error { _, err := d.ctrl.Create(ctx, req); return err }
		case m < 6: // Task.Create, random bundle and stdio
			pod := g.str("fuzz-unknown-pod", "../x")
			if len(known) > 0 {
				pod = known[g.pick(len(known))]
			}
			req := &taskapi.CreateTaskRequest{ID: id, Bundle: d.bundle(pod, nil), Rootfs: g.mounts(), Options: g.anyPayload(),
				Stdout: g.path(), Stderr: g.path(), Stdin: g.str("", g.path())}
			if g.pick(4) == 0 {
				req.Bundle = g.path()
			}
			r.made("task:" + id)
			name += fmt.Sprintf(" Task.Create id=%q pod=%q bundle=%q", id, pod, req.Bundle)
			run = func(ctx context.Context, d *daemon) error { _, err := d.task.Create(ctx, req); return err }
		case m < 6+len(cm):
			meth := cm[m-6]
			if !hostile && slices.Contains(known, id) && (meth == "Wait" || meth == "Start" && !(*podsF && d.h.pods)) {
				// Wait on a live sandbox blocks by design; Start makes a pod
				meth = "Status"
			}
			if meth == "Create" && !hostile {
				r.made(id)
			}
			call := cc[meth]
			name += fmt.Sprintf(" Controller.%s id=%q", meth, id)
			run = func(ctx context.Context, _ *daemon) error { return call(ctx, id) }
		default:
			meth := tm[m-6-len(cm)]
			call := tc[meth]
			name += fmt.Sprintf(" Task.%s id=%q", meth, id)
			run = func(ctx context.Context, _ *daemon) error { return call(ctx, id) }
		}
		r.try(kase{name: name, want: want, run: run})
	}
}

// image makes a tiny rootfs below ROOT/fuzz (the host's static busybox)
// and returns it.
func (d *daemon) image() (string, error) {
	img := filepath.Join(d.fuzz, "image")
	for _, sub := range []string{"bin", "proc", "dev", "tmp"} {
		if err := os.MkdirAll(filepath.Join(img, sub), 0o755); err != nil {
			return "", err
		}
	}
	data, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return "", fmt.Errorf("a static busybox for the container's rootfs: %w", err)
	}
	if err := os.WriteFile(filepath.Join(img, "bin", "busybox"), data, 0o755); err != nil {
		return "", err
	}
	for _, applet := range []string{"sh", "sleep", "true"} {
		_ = os.Symlink("busybox", filepath.Join(img, "bin", applet))
	}
	return img, nil
}

// container: with a running pod, a real container (busybox sleep), and
// every Task API method on it with bad input, out of order and from 50
// goroutines.
func (r *runner) container(pod string) {
	d := r.d
	img, err := d.image()
	if err != nil {
		r.fail("container", err.Error())
		return
	}
	id := "fuzz-ctr"
	r.made("task:" + id)
	sleeper := func(_ string, s *specs.Spec) {
		s.Process.Args = []string{"/bin/sleep", "30"}
		s.Root = &specs.Root{Path: img, Readonly: true}
		s.Mounts = []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "mode=755", "size=1m"}}}
	}
	req := &taskapi.CreateTaskRequest{ID: id, Bundle: d.bundle(pod, sleeper)}
	// the wasm handler finds no module in a busybox rootfs: refused
	if r.try(kase{name: "Task.Create (busybox sleep)", want: []codes.Code{codes.OK, codes.InvalidArgument, codes.NotFound}, run: func(ctx context.Context, d *daemon) error {
		_, err := d.task.Create(ctx, req)
		return err
	}}) != codes.OK {
		return
	}
	t := func(name string, want []codes.Code, f func(ctx context.Context, d *daemon) error) codes.Code {
		return r.try(kase{name: name, want: want, run: f})
	}
	procSpec := func(args ...string) *anypb.Any {
		b, _ := json.Marshal(specs.Process{Args: args, Cwd: "/"})
		return &anypb.Any{TypeUrl: procURL, Value: b}
	}
	t("Task.Create again", []codes.Code{codes.AlreadyExists}, func(ctx context.Context, d *daemon) error {
		_, err := d.task.Create(ctx, req)
		return err
	})
	// another container, created from 50 goroutines at once: one wins (an
	// id that is no prefix of the first's: runsc takes a prefix for an
	// ambiguous id, a known limit of the gVisor handler)
	twin := &taskapi.CreateTaskRequest{ID: "fuzz-twin", Bundle: d.bundle(pod, sleeper)}
	r.made("task:" + twin.ID)
	codes50 := r.many(50, kase{name: "50x Task.Create same id", want: []codes.Code{codes.OK, codes.AlreadyExists}, run: func(ctx context.Context, d *daemon) error {
		_, err := d.task.Create(ctx, twin)
		return err
	}})
	if n := len(slices.DeleteFunc(codes50, func(c codes.Code) bool { return c != codes.OK })); n != 1 {
		r.fail("50x Task.Create same id", fmt.Sprintf("%d creates succeeded, want 1", n))
	}
	t("Task.Exec before Start", []codes.Code{codes.FailedPrecondition}, func(ctx context.Context, d *daemon) error {
		_, err := d.task.Exec(ctx, &taskapi.ExecProcessRequest{ID: id, ExecID: "e0", Spec: procSpec("/bin/true")})
		return err
	})
	if t("Task.Start", okOnly, func(ctx context.Context, d *daemon) error {
		_, err := d.task.Start(ctx, &taskapi.StartRequest{ID: id})
		return err
	}) != codes.OK {
		return
	}
	t("Task.Start again", []codes.Code{codes.OK, codes.FailedPrecondition}, func(ctx context.Context, d *daemon) error {
		_, err := d.task.Start(ctx, &taskapi.StartRequest{ID: id})
		return err
	})
	for _, e := range hostileIDs()[1:] { // "" is the init process
		t(fmt.Sprintf("Task.Exec exec_id=%q", e), invalid, func(ctx context.Context, d *daemon) error {
			_, err := d.task.Exec(ctx, &taskapi.ExecProcessRequest{ID: id, ExecID: e, Spec: procSpec("/bin/true")})
			return err
		})
		t(fmt.Sprintf("Task.State exec_id=%q", e), []codes.Code{codes.InvalidArgument}, func(ctx context.Context, d *daemon) error {
			_, err := d.task.State(ctx, &taskapi.StateRequest{ID: id, ExecID: e})
			return err
		})
	}
	g := &gen{r: rand.New(rand.NewPCG(9, 10)), d: d}
	for i := range 8 {
		a := g.anyPayload()
		t(fmt.Sprintf("Task.Exec garbage spec %d", i), []codes.Code{codes.InvalidArgument, codes.OK}, func(ctx context.Context, d *daemon) error {
			_, err := d.task.Exec(ctx, &taskapi.ExecProcessRequest{ID: id, ExecID: fmt.Sprintf("g%d", i), Spec: a})
			return err
		})
		t(fmt.Sprintf("Task.Update garbage resources %d", i), []codes.Code{codes.InvalidArgument, codes.OK, codes.Unimplemented}, func(ctx context.Context, d *daemon) error {
			_, err := d.task.Update(ctx, &taskapi.UpdateTaskRequest{ID: id, Resources: a})
			return err
		})
	}
	for _, p := range []string{"relative", "/a\x00b", "binary://", d.outside + "/exec-out", "/tmp/" + d.tag + "-stdout"} {
		t(fmt.Sprintf("Task.Exec stdout=%q", p), []codes.Code{codes.InvalidArgument, codes.NotFound, codes.OK}, func(ctx context.Context, d *daemon) error {
			_, err := d.task.Exec(ctx, &taskapi.ExecProcessRequest{ID: id, ExecID: "out", Spec: procSpec("/bin/true"), Stdout: p})
			if err == nil {
				_, _ = d.task.Delete(ctx, &taskapi.DeleteRequest{ID: id, ExecID: "out"})
			}
			return err
		})
	}
	for _, sig := range []uint32{0, 65, 1 << 31} {
		t(fmt.Sprintf("Task.Kill signal %d", sig), invalid, func(ctx context.Context, d *daemon) error {
			_, err := d.task.Kill(ctx, &taskapi.KillRequest{ID: id, Signal: sig})
			return err
		})
	}
	for name, f := range map[string]func(ctx context.Context, d *daemon) error{
		"Pids": func(ctx context.Context, d *daemon) error {
			_, err := d.task.Pids(ctx, &taskapi.PidsRequest{ID: id})
			return err
		},
		"State": func(ctx context.Context, d *daemon) error {
			_, err := d.task.State(ctx, &taskapi.StateRequest{ID: id})
			return err
		},
		"Connect": func(ctx context.Context, d *daemon) error {
			_, err := d.task.Connect(ctx, &taskapi.ConnectRequest{ID: id})
			return err
		},
	} {
		t("Task."+name+" of the running container", okOnly, f)
	}
	// the spec names no cgroups path (containerd's always does): refused
	t("Task.Stats of the running container", []codes.Code{codes.OK, codes.InvalidArgument}, func(ctx context.Context, d *daemon) error {
		_, err := d.task.Stats(ctx, &taskapi.StatsRequest{ID: id})
		return err
	})
	t("Task.ResizePty without a terminal", []codes.Code{codes.OK, codes.FailedPrecondition, codes.InvalidArgument}, func(ctx context.Context, d *daemon) error {
		_, err := d.task.ResizePty(ctx, &taskapi.ResizePtyRequest{ID: id, Width: 1 << 31, Height: 0})
		return err
	})
	t("Task.Delete while running", []codes.Code{codes.FailedPrecondition}, func(ctx context.Context, d *daemon) error {
		_, err := d.task.Delete(ctx, &taskapi.DeleteRequest{ID: id})
		return err
	})
	r.many(50, kase{name: "50x Task.Kill SIGKILL", want: []codes.Code{codes.OK, codes.NotFound, codes.FailedPrecondition}, run: func(ctx context.Context, d *daemon) error {
		_, err := d.task.Kill(ctx, &taskapi.KillRequest{ID: id, Signal: 9})
		return err
	}})
	t("Task.Wait", okOnly, func(ctx context.Context, d *daemon) error {
		_, err := d.task.Wait(ctx, &taskapi.WaitRequest{ID: id})
		return err
	})
	codesOf := r.many(50, kase{name: "50x Task.Delete", want: []codes.Code{codes.OK, codes.NotFound}, run: func(ctx context.Context, d *daemon) error {
		_, err := d.task.Delete(ctx, &taskapi.DeleteRequest{ID: id})
		return err
	}})
	if n := len(slices.DeleteFunc(codesOf, func(c codes.Code) bool { return c != codes.OK })); n != 1 {
		r.fail("50x Task.Delete", fmt.Sprintf("%d deletes succeeded, want 1", n))
	}
	t("Task.Delete again", notFound, func(ctx context.Context, d *daemon) error {
		_, err := d.task.Delete(ctx, &taskapi.DeleteRequest{ID: id})
		return err
	})
}
