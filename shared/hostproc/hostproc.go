package hostproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/magnetar-runtime/magnetar/shared/cgroups"
	"github.com/magnetar-runtime/magnetar/shared/proc"
)

// ID identifies one process across daemon restarts: a pid alone may have
// been reused, a pid with its start time may not.
type ID struct {
	// Pid is the process id in the daemon's pid namespace.
	Pid int `json:"pid"`
	// StartTime is field 22 of /proc/<pid>/stat (clock ticks after boot).
	StartTime uint64 `json:"start_time"`
}

// Spec is a process to start.
type Spec struct {
	// Name names the process in errors ("qemu", "virtiofsd").
	Name string
	// Path is the binary; a name without a slash is looked up in PATH.
	Path string
	// Args are the arguments (without argv[0], which is Path).
	Args []string
	// Log receives stdout and stderr (created or truncated).
	Log string
	// ExtraFiles are inherited as descriptors 3, 4, ... (exec.Cmd's).
	ExtraFiles []*os.File
	// Cgroup, when set, is the cgroups path (shared/cgroups) the process
	// is moved to right after it started; it is created if needed.
	Cgroup string
}

// Process is one started or recovered process.
type Process struct {
	name string
	id   ID
	w    *proc.Watch

	mu    sync.Mutex
	pidfd *os.File // for signals; nil once the process exited
}

// Start runs s detached from the daemon (see the package doc) and returns
// once the process runs (its own startup, e.g. a socket, is the caller's
// business). A binary that does not exist fails with errdefs.ErrNotFound
// (LookPath).
// On error nothing is left running.
func Start(ctx context.Context, s Spec) (*Process, error) {
	bin, err := LookPath(s.Name, s.Path)
	if err != nil {
		return nil, err
	}
	var cg cgroups.Cgroup
	if s.Cgroup != "" {
		// created before the process starts, so that a bad path fails
		// without a process to kill
		if cg, err = cgroups.New(s.Cgroup); err != nil {
			return nil, fmt.Errorf("%s cgroup %s: %w", s.Name, s.Cgroup, err)
		}
	}
	logf, err := os.OpenFile(s.Log, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", s.Name, err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, s.Args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = s.ExtraFiles
	cmd.Dir = "/"
	// a session of its own and no Pdeathsig: the VM outlives the daemon
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", s.Name, bin, err)
	}
	pid := cmd.Process.Pid
	// read while nobody can reap it yet: a process that dies at once
	// stays a zombie, with its stat, until the watch reaps it
	started, err := StartTime(pid)
	if err == nil {
		var p *Process
		if p, err = watch(s.Name, pid); err == nil {
			// the watch reaps it; os.Process must not
			_ = cmd.Process.Release()
			p.id.StartTime = started
			return p.intoCgroup(cg, s)
		}
	}
	_ = cmd.Process.Kill()
	_, _ = cmd.Process.Wait()
	return nil, fmt.Errorf("watch %s (pid %d): %w", s.Name, pid, err)
}

// intoCgroup moves the process just started into cg (if any); it is
// killed when that fails. One that has died meanwhile is returned as it
// is: its exit (and log) is what the caller must see, not the cgroup's
// refusal.
func (p *Process) intoCgroup(cg cgroups.Cgroup, s Spec) (*Process, error) {
	if cg != nil {
		if err := cg.AddProc(p.id.Pid); err != nil {
			if errors.Is(err, unix.ESRCH) || !p.Running() || exitedNow(p.id.Pid) {
				return p, nil
			}
			_ = p.KillWait(DefaultKillWait)
			return nil, fmt.Errorf("move %s (pid %d) to cgroup %s: %w", s.Name, p.id.Pid, s.Cgroup, err)
		}
	}
	return p, nil
}

// exitedNow reports whether pid is gone or a zombie.
// MoveToCgroup moves the process into cgroup (created if needed): one
// that Adopt watches, started by another process outside the cgroup (a
// VMM's daemonized fork). It is idempotent; a process that has exited in
// the meantime is not an error. On failure the process is killed.
func (p *Process) MoveToCgroup(cgroup string) error {
	if cgroup == "" {
		return nil
	}
	cg, err := cgroups.New(cgroup)
	if err != nil {
		return fmt.Errorf("%s cgroup %s: %w", p.name, cgroup, err)
	}
	_, err = p.intoCgroup(cg, Spec{Name: p.name, Cgroup: cgroup})
	return err
}

func exitedNow(pid int) bool {
	st, err := proc.ReadStat(pid)
	return err != nil || st.State == "Z"
}

// LookPath resolves the binary of the process name (exec.LookPath): one
// that does not exist fails with errdefs.ErrNotFound, one that cannot be
// run with errdefs.ErrFailedPrecondition.
func LookPath(name, path string) (string, error) {
	bin, err := exec.LookPath(path)
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%s binary %q: %w: %w", name, path, err, errdefs.ErrNotFound)
		}
		return "", fmt.Errorf("%s binary %q: %w: %w", name, path, err, errdefs.ErrFailedPrecondition)
	}
	return bin, nil
}

// watch opens the signalling pidfd and the shared/proc watch of pid.
func watch(name string, pid int) (*Process, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open: %w", err)
	}
	pidfd := os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(pid))
	w, err := proc.Open(pid)
	if err != nil {
		pidfd.Close()
		return nil, err
	}
	p := &Process{name: name, id: ID{Pid: pid}, w: w, pidfd: pidfd}
	w.Notify(func() {
		p.mu.Lock()
		p.pidfd.Close()
		p.pidfd = nil
		p.mu.Unlock()
	})
	return p, nil
}

// Recover watches the process id names again, if it still runs: a live
// process with that pid and that start time. Otherwise (or when id.Pid is
// 0) the Process returned is already Done, its status unknown.
func Recover(name string, id ID) *Process {
	if id.Pid <= 0 {
		return exited(name, id)
	}
	if st, err := StartTime(id.Pid); err != nil || st != id.StartTime {
		return exited(name, id)
	}
	p, err := watch(name, id.Pid)
	if err != nil {
		return exited(name, id)
	}
	// checked again after the pidfds were opened: if the start time still
	// matches, they refer to the process of id (a pid is unique among live
	// processes, and this one lived from before the open until now)
	if st, err := StartTime(id.Pid); err != nil || st != id.StartTime {
		p.mu.Lock()
		if p.pidfd != nil {
			p.pidfd.Close()
			p.pidfd = nil
		}
		p.mu.Unlock()
		return exited(name, id)
	}
	p.id = id
	return p
}

// Adopt watches pid, a process the daemon did not start itself (one that
// daemonized and wrote its pid), as the process name: its ID is read now.
// A pid that is gone fails with errdefs.ErrNotFound; one that has just
// exited (a zombie) is watched, and reaped, and Done soon.
func Adopt(name string, pid int) (*Process, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("%s pid %d: %w", name, pid, errdefs.ErrInvalidArgument)
	}
	st, err := StartTime(pid)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := Recover(name, ID{Pid: pid, StartTime: st})
	if !p.Running() {
		return nil, fmt.Errorf("%s (pid %d): gone: %w", name, pid, errdefs.ErrNotFound)
	}
	return p, nil
}

func exited(name string, id ID) *Process {
	return &Process{name: name, id: id, w: proc.Exited(id.Pid)}
}

// ID is the process's identity, to persist.
func (p *Process) ID() ID { return p.id }

// Pid is the process id.
func (p *Process) Pid() int { return p.id.Pid }

// Name is the name the process was started or recovered with.
func (p *Process) Name() string { return p.name }

// Done is closed once the process has exited (and, if it was our child,
// been reaped).
func (p *Process) Done() <-chan struct{} { return p.w.Done() }

// Running reports whether Done is still open.
func (p *Process) Running() bool {
	select {
	case <-p.w.Done():
		return false
	default:
		return true
	}
}

// ExitedAt is when the exit was seen (zero while running).
func (p *Process) ExitedAt() time.Time {
	if p.Running() {
		return time.Time{}
	}
	_, _, at := p.w.Status()
	return at
}

// ExitStatus describes how the process ended: "exit status N" (128+n for
// signal n, as shared/proc reports it), or "exit status unknown" when it
// was not our child (recovered after a daemon restart). Empty while it
// runs.
func (p *Process) ExitStatus() string {
	if p.Running() {
		return ""
	}
	code, known, _ := p.w.Status()
	if !known {
		return "exit status unknown"
	}
	return "exit status " + strconv.Itoa(code)
}

// Signal sends sig through the pidfd: never to another process that
// reused the pid. A process that has exited is not an error.
func (p *Process) Signal(sig unix.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pidfd == nil {
		return nil
	}
	err := unix.PidfdSendSignal(int(p.pidfd.Fd()), sig, nil, 0)
	if err == nil || errors.Is(err, unix.ESRCH) {
		return nil
	}
	return fmt.Errorf("signal %s (pid %d): %w", p.name, p.id.Pid, err)
}

// Wait waits until the process exited or ctx ends.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.w.Done():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for %s (pid %d): %w", p.name, p.id.Pid, ctx.Err())
	}
}

// DefaultKillWait is how long to wait for a SIGKILLed process to be gone
// (it takes milliseconds; more means a process stuck in the kernel, e.g.
// on a hung file system).
const DefaultKillWait = 10 * time.Second

// childReapWait bounds how long KillWait lets the process reap the
// children it killed first.
const childReapWait = time.Second

// KillWait kills the process and waits up to d for it to be gone. Its
// children are killed first and it is given a moment (up to a second) to
// reap them: killed at once, it would leave them to be re-parented to the
// daemon, a child subreaper that reaps nothing it does not watch, as
// zombies. (virtiofsd is such a parent: its sandbox child does the work.)
func (p *Process) KillWait(d time.Duration) error {
	if !p.Running() {
		return nil
	}
	if kids := p.children(); len(kids) > 0 {
		for _, c := range kids {
			killChild(p.id.Pid, c)
		}
		deadline := time.Now().Add(min(d, childReapWait))
		for p.Running() && len(p.children()) > 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if err := p.Signal(unix.SIGKILL); err != nil {
		return err
	}
	select {
	case <-p.w.Done():
		return nil
	case <-time.After(d):
		return fmt.Errorf("%s (pid %d) still there %s after SIGKILL: %w", p.name, p.id.Pid, d, errdefs.ErrUnavailable)
	}
}

// children are the pids of the process's children (zombies included),
// from /proc/<pid>/task/*/children.
func (p *Process) children() []int {
	dir := "/proc/" + strconv.Itoa(p.id.Pid) + "/task/"
	tasks, _ := os.ReadDir(dir)
	var kids []int
	for _, t := range tasks {
		b, _ := os.ReadFile(dir + t.Name() + "/children")
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				kids = append(kids, c)
			}
		}
	}
	return kids
}

// killChild sends SIGKILL to pid through a pidfd, if it is still a child
// of parent.
func killChild(parent, pid int) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	if st, err := proc.ReadStat(pid); err != nil || st.PPid != parent {
		return
	}
	_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
}

// StartTime is field 22 of /proc/<pid>/stat (proc.StartTime): when the
// process started, in clock ticks after boot. A pid that does not exist
// fails with errdefs.ErrNotFound.
func StartTime(pid int) (uint64, error) { return proc.StartTime(pid) }

// tailBytes bounds what Tail reads from the end of a file.
const tailBytes = 64 << 10

// Tail is the last n lines of the file at path (from its last 64 KiB),
// without a trailing newline; empty when it cannot be read.
func Tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > tailBytes {
		if _, err := f.Seek(-tailBytes, io.SeekEnd); err != nil {
			return ""
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, tailBytes))
	if err != nil {
		return ""
	}
	return lastLines(b, n)
}

// lastLines is the last n lines of b, trailing newlines (and \r) trimmed.
func lastLines(b []byte, n int) string {
	b = bytes.TrimRight(b, "\r\n")
	if n <= 0 || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
