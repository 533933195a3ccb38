package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/magnetar-runtime/magnetar/shared/killpoint"
	"github.com/magnetar-runtime/magnetar/shared/proc"
)

// harness drives hack/containerd.sh for one handler's harness.
type harness struct {
	root, work, handler string
	// daemon is the handler whose daemon serves handler: itself, or the
	// one an alias is served by (magnetar-clh: magnetar-vmm)
	daemon string
	env    []string
}

func newHarness(root, work, handler string) (*harness, error) {
	daemon, err := daemonOf(root, handler)
	if err != nil {
		return nil, err
	}
	env := []string{"WORK=" + work, "BRIDGE=" + *bridgeF, "SUBNET=" + *subnetF,
		"CGROUP_PARENT=" + *cgroupF, "HARNESS_SANDBOXERS=" + daemon,
		// a sandbox a kill left unstarted, or that containerd forgot, is
		// shut down well within converge
		"UNSTARTED_GRACE=" + unstartedGrace.String(), "FORGOTTEN_CHECK=" + forgottenCheck.String()}
	return &harness{root: root, work: work, handler: handler, daemon: daemon, env: env}, nil
}

// daemonOf asks hack/lib.sh (daemon_handler, the one list of the harness's
// handler aliases) which handler's daemon serves handler.
func daemonOf(root, handler string) (string, error) {
	cmd := exec.Command("bash", "-c", `source hack/lib.sh && daemon_handler "$1"`, "bash", handler)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/lib.sh daemon_handler %s: %w", handler, err)
	}
	d := strings.TrimSpace(string(out))
	if d == "" {
		return "", fmt.Errorf("hack/lib.sh daemon_handler %s: no answer", handler)
	}
	return d, nil
}

// vm tells that the handler's pods are VMs.
func (h *harness) vm() bool { return h.daemon == "magnetar-vmm" }

// script runs hack/containerd.sh with args; extra adds to the environment.
func (h *harness) script(timeout time.Duration, extra []string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(h.root, "hack", "containerd.sh"), args...)
	cmd.Dir = h.root
	// a kill point in our own environment would arm every daemon started
	env := []string{}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, killpoint.EnvVar+"=") {
			env = append(env, e)
		}
	}
	cmd.Env = append(append(env, h.env...), extra...)
	out, err := cmd.CombinedOutput()
	// "slow:" is the harness's own warning that a step took long (CRI's
	// recovery after a containerd restart): always shown
	if *verbose || err != nil || bytes.Contains(out, []byte("] slow: ")) {
		os.Stdout.Write(out)
	}
	if err != nil {
		return fmt.Errorf("hack/containerd.sh %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

func (h *harness) start() error {
	_ = h.script(5*time.Minute, nil, "reset")
	if err := h.script(5*time.Minute, nil, "start"); err != nil {
		return err
	}
	if !wasmHandler(h.handler) {
		return nil
	}
	// the wasm workload's image (hack/containerd.sh imports busybox only)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(h.root, "hack", "wasm", "images.sh"), "import")
	cmd.Dir = h.root
	cmd.Env = append(os.Environ(), h.env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("hack/wasm/images.sh import: %w: %s", err, out)
	}
	return nil
}

func (h *harness) stop() error { return h.script(5*time.Minute, nil, "stop") }

// pidFile reads a pid file of the run dir; 0 when absent or not alive.
func (h *harness) pidFile(name string) int {
	b, err := os.ReadFile(filepath.Join(h.work, "run", name))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !alive(pid) {
		return 0
	}
	return pid
}

func (h *harness) daemonPid() int     { return h.pidFile(h.daemon + ".pid") }
func (h *harness) containerdPid() int { return h.pidFile("containerd.pid") }

// keeperPid is the pid of the daemon's task keeper (<short>-keeper.pid).
func (h *harness) keeperPid() int {
	return h.pidFile(strings.TrimPrefix(h.daemon, "magnetar-") + "-keeper.pid")
}

func (h *harness) daemonLog() string     { return filepath.Join(h.work, "logs", h.daemon+".log") }
func (h *harness) containerdLog() string { return filepath.Join(h.work, "logs", "containerd.log") }

// restartDaemon starts the daemon again with the harness's command line,
// with the kill point kp armed unless empty.
func (h *harness) restartDaemon(kp string) error {
	var extra []string
	if kp != "" {
		extra = []string{killpoint.EnvVar + "=" + kp}
	}
	return h.script(time.Minute, extra, "sandboxer-start", h.daemon)
}

func (h *harness) restartContainerd() error {
	return h.script(2*time.Minute, nil, "containerd-start")
}

// waitKeeper waits for the daemon to have a live keeper.
func (h *harness) waitKeeper(not int, within time.Duration) (int, error) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if p := h.keeperPid(); p != 0 && p != not {
			return p, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0, fmt.Errorf("no new keeper within %s (pid file %s)", within, filepath.Join(h.work, "run", strings.TrimPrefix(h.daemon, "magnetar-")+"-keeper.pid"))
}

// alive tells that pid exists and is not a zombie.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	st, err := proc.ReadStat(pid)
	if err != nil || st.State == "X" {
		return false
	}
	if st.State != "Z" {
		return true
	}
	// a thread group's leader turns zombie before its other threads have
	// exited, and they hold the process's files (its listening sockets)
	// until the last one is gone: a daemon restarted before that finds its
	// socket still served. Its parent (systemd) is told only then.
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	return len(tasks) > 1
}

// kill sends SIGKILL to pid and waits up to 10 s for it to be gone.
func kill(pid int) error {
	if pid <= 0 {
		// 0 and -1 would signal a process group, or everything
		return fmt.Errorf("no process to kill (pid %d: not running)", pid)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill %d: %w", pid, err)
	}
	return waitGone(pid, 10*time.Second)
}

func waitGone(pid int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for alive(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d still alive %s after SIGKILL", pid, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// logMark is a log file's size: what was written after it is new.
type logMark map[string]int64

func marks(files ...string) logMark {
	m := logMark{}
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			m[f] = st.Size()
		} else {
			m[f] = 0
		}
	}
	return m
}

// panicked tells a log line of a panic: Go's own report of one that ended
// the process ("panic: ", "fatal error: " at the start of a line), or one a
// server recovered (shared/rpcserver: "panic in handler"). Not the word
// alone: a VM's kernel command line (panic=-1) holds it.
func panicked(l string) bool {
	return strings.HasPrefix(l, "panic: ") || strings.HasPrefix(l, "fatal error: ") || strings.Contains(l, "panic in handler")
}

// grep returns the new lines of each file containing one of words (at
// most max per file), prefixed with the file's base name.
func (m logMark) grep(max int, words ...string) []string {
	return m.grepFunc(max, func(l string) bool {
		for _, w := range words {
			if strings.Contains(l, w) {
				return true
			}
		}
		return false
	})
}

// grepFunc returns the new lines of each file that match (at most max per
// file), prefixed with the file's base name.
func (m logMark) grepFunc(max int, match func(string) bool) []string {
	var out []string
	for f, off := range m {
		b, err := os.ReadFile(f)
		if err != nil || int64(len(b)) < off {
			continue
		}
		n := 0
		for _, l := range strings.Split(string(b[off:]), "\n") {
			if !match(l) {
				continue
			}
			if n < max {
				if len(l) > 400 {
					l = l[:400] + "..."
				}
				out = append(out, filepath.Base(f)+": "+l)
			}
			n++
		}
		if n > max {
			out = append(out, fmt.Sprintf("%s: ... %d more", filepath.Base(f), n-max))
		}
	}
	return out
}
