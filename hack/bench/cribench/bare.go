package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/magnetar-runtime/magnetar/hack/bench/internal/hostproc"
	"github.com/magnetar-runtime/magnetar/shared/bundle"
	"github.com/magnetar-runtime/magnetar/shared/mount"
	"github.com/magnetar-runtime/magnetar/shared/runcproc"
)

// bareHandler is the floor of a gVisor pod's start: the same two
// containers magnetar-gvisor gives runsc for a pod (its root container,
// the pause, and the application container), created and started by
// calling runsc directly, with no containerd, no CNI and no sandboxer. The
// specs are the ones the sandboxer wrote for a pod of this run (captured
// once, from a pod started through CRI), replayed with fresh ids, a fresh
// empty network namespace and a directory of their own laid out as the
// sandboxer's pod directory (the runsc --root below it); runsc, its global
// flags (--platform, --network, the configured ones) and the pause rootfs
// are the sandboxer's. A round is: runsc create + start of the root
// container (what RunPodSandbox does), then runsc create (CreateContainer)
// and runsc start (StartContainer) of the application container.
const bareHandler = "bare-runsc"

// gvisorNote is the note the gVisor sandboxer writes into containerd's
// bundle of each container (cmd/gvisor-sandboxer: bundleNote): runsc's
// binary, the pod's runsc --root and global flags.
const gvisorNote = "magnetar-gvisor.json"

// Placeholders of the captured specs, replaced in every round.
const (
	phPodDir = "@POD_DIR@"
	phPodID  = "@POD_ID@"
	phCtrID  = "@CTR_ID@"
	phNetNS  = "@NETNS@"
	phRootfs = "@ROOTFS@"
	phPause  = "@PAUSE@"
	phPid    = "@SANDBOX_PID@"
)

// bareFloor runs the floor's rounds below dir.
type bareFloor struct {
	dir   string // WORK/bare-runsc: template/ and one directory per round
	runID string
	runsc string
	flags []string
	// the captured specs (config.json), placeholders in place of the pod's
	// directory, ids, network namespace, rootfs, pause rootfs and pid
	rootSpec, ctrSpec []byte
	// podDirs and podFiles are what the specs use of the pod's directory
	// (relative paths): directories (the /dev/shm hint's source) and files
	// (hostname, hosts, resolv.conf) with their content
	podDirs  []string
	podFiles map[string][]byte
	seq      int
}

// bareRef is one round's pod.
type bareRef struct {
	dir, pod, ctr string
}

func (r bareRef) root() string { return filepath.Join(r.dir, "runsc") }

// gvisorNoteT is the note's content.
type gvisorNoteT struct {
	Runsc string `json:"runsc"`
	Root  string `json:"root"`
	Flags string `json:"flags"`
	Dir   string `json:"dir"`
}

// captureFloor reads what the sandboxer gave runsc for a running pod (ref,
// started on the gVisor handler): the root container's spec from the pod's
// directory, the application container's from the sandboxer's container
// directory (libDir/containers/<id>), runsc and its flags from the note in
// containerd's bundle; it copies the container's rootfs and the pause
// rootfs into dir/template.
func captureFloor(dir, runID, libDir string, ref podRef, sandboxPid int) (*bareFloor, error) {
	if ref.ID == "" || ref.Container == "" {
		return nil, fmt.Errorf("capture: no pod or container")
	}
	ctrCfg := filepath.Join(libDir, "containers", ref.Container, "config.json")
	ctrRaw, err := os.ReadFile(ctrCfg)
	if err != nil {
		return nil, fmt.Errorf("capture: the container's spec (-gvisor-dir %s): %w", libDir, err)
	}
	var ctr specs.Spec
	if err := json.Unmarshal(ctrRaw, &ctr); err != nil {
		return nil, fmt.Errorf("capture: %s: %w", ctrCfg, err)
	}
	if ctr.Root == nil || !filepath.IsAbs(ctr.Root.Path) {
		return nil, fmt.Errorf("capture: %s: no absolute root.path", ctrCfg)
	}
	var note gvisorNoteT
	if ok, err := bundle.ReadNote(filepath.Dir(ctr.Root.Path), gvisorNote, &note); !ok || err != nil {
		return nil, fmt.Errorf("capture: no %s in the container's bundle %s (%v)", gvisorNote, filepath.Dir(ctr.Root.Path), err)
	}
	podDir := filepath.Dir(note.Root)
	rootCfg := filepath.Join(podDir, "root", "config.json")
	rootRaw, err := os.ReadFile(rootCfg)
	if err != nil {
		return nil, fmt.Errorf("capture: the root container's spec: %w", err)
	}
	var root specs.Spec
	if err := json.Unmarshal(rootRaw, &root); err != nil {
		return nil, fmt.Errorf("capture: %s: %w", rootCfg, err)
	}
	if root.Root == nil || root.Linux == nil {
		return nil, fmt.Errorf("capture: %s: no root or linux section", rootCfg)
	}
	netns := ""
	for _, ns := range root.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			netns = ns.Path
		}
	}
	if netns == "" {
		return nil, fmt.Errorf("capture: %s: no network namespace path (a host-network pod?)", rootCfg)
	}
	f := &bareFloor{dir: dir, runID: runID, runsc: note.Runsc, flags: strings.Fields(note.Flags), podFiles: map[string][]byte{}}
	// where two match at one place the first listed wins: the rootfs path
	// holds the container's id, the pod's directory the pod's
	rep := strings.NewReplacer(
		ctr.Root.Path, phRootfs,
		root.Root.Path, phPause,
		podDir, phPodDir,
		netns, phNetNS,
		fmt.Sprintf("/proc/%d/", sandboxPid), "/proc/"+phPid+"/",
		ref.Container, phCtrID,
		ref.ID, phPodID,
	)
	f.rootSpec = []byte(rep.Replace(string(rootRaw)))
	f.ctrSpec = []byte(rep.Replace(string(ctrRaw)))
	// what the specs take from the pod's directory
	var srcs []string
	for _, m := range ctr.Mounts {
		srcs = append(srcs, m.Source)
	}
	for k, v := range ctr.Annotations {
		if strings.HasSuffix(k, ".source") {
			srcs = append(srcs, v)
		}
	}
	for _, s := range srcs {
		rel, ok := strings.CutPrefix(s, podDir+"/")
		if !ok {
			continue
		}
		fi, err := os.Stat(s)
		switch {
		case err != nil:
			return nil, fmt.Errorf("capture: %w", err)
		case fi.IsDir():
			f.podDirs = append(f.podDirs, rel)
		default:
			if f.podFiles[rel], err = os.ReadFile(s); err != nil {
				return nil, fmt.Errorf("capture: %w", err)
			}
		}
	}
	// the rootfs (minus runsc's overlay file stores) and the pause rootfs
	tpl := filepath.Join(dir, "template")
	if err := mount.RemoveAll(tpl); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(tpl, 0o711); err != nil {
		return nil, err
	}
	for _, c := range [][2]string{{ctr.Root.Path, "rootfs"}, {root.Root.Path, "pause"}} {
		if out, err := exec.Command("cp", "-a", "--sparse=always", c[0], filepath.Join(tpl, c[1])).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("capture: copying %s: %v: %s", c[0], err, strings.TrimSpace(string(out)))
		}
		stores, _ := filepath.Glob(filepath.Join(tpl, c[1], ".gvisor.filestore.*"))
		for _, s := range stores {
			_ = os.Remove(s)
		}
	}
	return f, nil
}

// command is `runsc --root root --log log --log-format json <flags> args`,
// as the sandboxer runs it, with /dev/null as stdio (the sandbox a create
// leaves running inherits it).
func (f *bareFloor) command(ctx context.Context, root, logFile string, args ...string) *exec.Cmd {
	g := append([]string{"--root", root, "--log", logFile, "--log-format", "json"}, f.flags...)
	return exec.CommandContext(ctx, f.runsc, append(g, args...)...)
}

// runscCmd runs a runsc command to its end; its error carries runsc's
// message from its log.
func (f *bareFloor) runscCmd(ctx context.Context, root, logFile string, args ...string) error {
	if err := f.command(ctx, root, logFile, args...).Run(); err != nil {
		msg := runcproc.LastError(logFile)
		if msg == "" {
			msg = "(nothing in " + logFile + ")"
		}
		return fmt.Errorf("runsc %s: %w: %s", args[0], err, msg)
	}
	return nil
}

// running checks that a round's application container runs (runsc state).
func (f *bareFloor) running(ctx context.Context, ref bareRef) error {
	out, err := f.command(ctx, ref.root(), filepath.Join(ref.dir, "runsc.log"), "state", ref.ctr).Output()
	if err != nil {
		return fmt.Errorf("runsc state %s: %w", ref.ctr, err)
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return fmt.Errorf("runsc state %s: %w", ref.ctr, err)
	}
	if st.Status != "running" {
		return fmt.Errorf("runsc state %s: %q, want running", ref.ctr, st.Status)
	}
	return nil
}

// start runs one round; on error the returned ref names what to remove.
func (f *bareFloor) start(ctx context.Context) (bareRef, startSample, error) {
	f.seq++
	id := fmt.Sprintf("bare-%s-%d", f.runID, f.seq)
	ref := bareRef{dir: filepath.Join(f.dir, id), pod: id, ctr: id + "-ctr"}
	var s startSample
	ctrSpec, err := f.prepare(ref)
	if err != nil {
		return ref, s, err
	}
	logFile := filepath.Join(ref.dir, "runsc.log")
	rootBundle, ctrBundle := filepath.Join(ref.dir, "root"), filepath.Join(ref.dir, "ctr")
	t0 := time.Now()
	if err := f.runscCmd(ctx, ref.root(), logFile, "create", "--bundle", rootBundle, "--pid-file", filepath.Join(rootBundle, "pid"), ref.pod); err != nil {
		return ref, s, err
	}
	if err := f.runscCmd(ctx, ref.root(), logFile, "start", ref.pod); err != nil {
		return ref, s, err
	}
	t1 := time.Now()
	raw, err := os.ReadFile(filepath.Join(rootBundle, "pid"))
	if err != nil {
		return ref, s, err
	}
	pid, err := atoiPid(raw)
	if err != nil {
		return ref, s, err
	}
	ctrSpec = strings.ReplaceAll(ctrSpec, phPid, strconv.Itoa(pid))
	if err := os.WriteFile(filepath.Join(ctrBundle, "config.json"), []byte(ctrSpec), 0o600); err != nil {
		return ref, s, err
	}
	if err := f.runscCmd(ctx, ref.root(), filepath.Join(ctrBundle, "runsc.log"), "create", "--bundle", ctrBundle, "--pid-file", filepath.Join(ctrBundle, "pid"), ref.ctr); err != nil {
		return ref, s, err
	}
	t2 := time.Now()
	if err := f.runscCmd(ctx, ref.root(), filepath.Join(ctrBundle, "runsc.log"), "start", ref.ctr); err != nil {
		return ref, s, err
	}
	t3 := time.Now()
	s = startSample{Run: ms(t1.Sub(t0)), Create: ms(t2.Sub(t1)), Start: ms(t3.Sub(t2)), Total: ms(t3.Sub(t0))}
	return ref, s, nil
}

// prepare lays out a round's directory (untimed): the pod's files, its
// network namespace (empty: loopback only), the root container's bundle;
// it returns the container's spec, but for the sandbox's pid (known once
// the root container is created).
func (f *bareFloor) prepare(ref bareRef) (string, error) {
	for _, d := range []string{ref.dir, ref.root(), filepath.Join(ref.dir, "root"), filepath.Join(ref.dir, "ctr")} {
		if err := os.Mkdir(d, 0o711); err != nil {
			return "", err
		}
	}
	for _, d := range f.podDirs {
		if err := os.MkdirAll(filepath.Join(ref.dir, d), 0o711); err != nil {
			return "", err
		}
	}
	for rel, data := range f.podFiles {
		if err := os.WriteFile(filepath.Join(ref.dir, rel), data, 0o644); err != nil {
			return "", err
		}
	}
	netns := filepath.Join(ref.dir, "netns")
	if err := os.WriteFile(netns, nil, 0o600); err != nil {
		return "", err
	}
	// loopback up, as CNI's loopback plugin leaves it
	if out, err := exec.Command("unshare", "--net="+netns, "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return "", fmt.Errorf("a network namespace for %s: %v: %s", ref.pod, err, strings.TrimSpace(string(out)))
	}
	tpl := filepath.Join(f.dir, "template")
	rep := strings.NewReplacer(phPodDir, ref.dir, phPodID, ref.pod, phCtrID, ref.ctr, phNetNS, netns,
		phRootfs, filepath.Join(tpl, "rootfs"), phPause, filepath.Join(tpl, "pause"))
	if err := os.WriteFile(filepath.Join(ref.dir, "root", "config.json"), []byte(rep.Replace(string(f.rootSpec))), 0o600); err != nil {
		return "", err
	}
	ctr := rep.Replace(string(f.ctrSpec))
	if err := checkSources(ctr); err != nil {
		return "", fmt.Errorf("the replayed container spec: %w", err)
	}
	return ctr, nil
}

// checkSources checks that every bind mount of spec has its source: a
// path of the captured pod that the replay did not map would be runsc's
// error at create, far from its cause.
func checkSources(spec string) error {
	var sp specs.Spec
	if err := json.Unmarshal([]byte(spec), &sp); err != nil {
		return err
	}
	for _, m := range sp.Mounts {
		if m.Type != "bind" && !slices.Contains(m.Options, "bind") && !slices.Contains(m.Options, "rbind") {
			continue
		}
		if _, err := os.Stat(m.Source); err != nil {
			return fmt.Errorf("mount %s: %w", m.Destination, err)
		}
	}
	return nil
}

// remove deletes a round's containers (timed: the teardown), then makes
// sure nothing of it is left (clean).
func (f *bareFloor) remove(ctx context.Context, ref bareRef) (float64, error) {
	ctx = context.WithoutCancel(ctx)
	logFile := filepath.Join(ref.dir, "runsc.log")
	t0 := time.Now()
	var errs []error
	for _, id := range []string{ref.ctr, ref.pod} {
		if err := f.runscCmd(ctx, ref.root(), logFile, "delete", "--force", id); err != nil && !notFound(err) {
			errs = append(errs, err)
		}
	}
	d := ms(time.Since(t0))
	if err := clean(ref); err != nil {
		errs = append(errs, err)
	}
	return d, errors.Join(errs...)
}

// notFound tells a runsc error about a container it does not know (one
// whose create never ran).
func notFound(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "does not exist") || strings.Contains(msg, "not found") || strings.Contains(msg, "no such file")
}

// clean makes sure nothing of a round is left: its runsc processes (given
// 2 s to exit after a delete, then killed: an error), its mounts (the
// network namespace, runsc's null-netns), its directory.
func clean(ref bareRef) error {
	var errs []error
	if n := killRoot(ref.root(), 2*time.Second); n > 0 {
		errs = append(errs, fmt.Errorf("%s: %d runsc processes still there 2 s after runsc delete (killed)", ref.pod, n))
	}
	if err := mount.RemoveAll(ref.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// killRoot waits up to grace for the processes naming root as their runsc
// --root (the sandbox, its gofers and stubs) to go, then kills them; it
// returns how many it had to kill.
func killRoot(root string, grace time.Duration) int {
	deadline := time.Now().Add(grace)
	killed := map[int]bool{}
	for range 200 {
		ps, err := hostproc.Scan()
		if err != nil {
			break
		}
		left := kernelProcs(ps, root)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for p := range left {
				killed[p] = true
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return len(killed)
}

// sweep removes what an earlier, interrupted run left below dir: no runsc
// call (this run's runsc is not known yet), its processes are killed.
func (f *bareFloor) sweep() error {
	ents, err := os.ReadDir(f.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "bare-") {
			continue
		}
		ref := bareRef{dir: filepath.Join(f.dir, e.Name()), pod: e.Name()}
		killRoot(ref.root(), 0)
		if err := mount.RemoveAll(ref.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// kernelMem measures a pod's kernel: the runsc processes naming root as
// their --root (sandbox, gofers, systrap stubs).
func kernelMem(root string) (hostproc.Mem, error) {
	ps, err := hostproc.Scan()
	if err != nil {
		return hostproc.Mem{}, err
	}
	var total hostproc.Mem
	for pid := range kernelProcs(ps, root) {
		if m, err := hostproc.ReadMem(pid); err == nil {
			total.Add(m)
		}
	}
	return total, nil
}

func atoiPid(b []byte) (int, error) {
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %q: no pid", b)
	}
	return pid, nil
}
