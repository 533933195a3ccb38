package daemon

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/shared/keeper"
)

// KeeperArg makes the binary run as the task keeper (see shared/keeper).
const KeeperArg = "__magnetar_task_keeper"

// keeperCheckInterval is how often a serving daemon checks that its keeper
// lives (superviseKeeper).
const keeperCheckInterval = 2 * time.Second

// strayReapInterval is how often the daemon reaps the zombie children no
// watch claims (proc.ReapStrays): one is reaped 1 to 2 intervals after it exits.
const strayReapInterval = 2 * time.Second

// keeperSockets are the sockets containerd dials (owned by the keeper), the
// private ones the daemon serves behind it, and the keeper's descriptor
// store (FDs, shared/fdstore).
type keeperSockets struct {
	Task, TaskBackend, API, APIBackend, PidFile, FDs string
}

func newKeeperSockets(name, taskSock, apiSock string) keeperSockets {
	dir := filepath.Dir(taskSock)
	return keeperSockets{
		Task: taskSock, TaskBackend: filepath.Join(dir, name+"-task-backend.sock"),
		API: apiSock, APIBackend: filepath.Join(filepath.Dir(apiSock), name+"-api-backend.sock"),
		PidFile: filepath.Join(dir, name+"-keeper.pid"),
		FDs:     filepath.Join(dir, name+"-fds.sock"),
	}
}

// keeperStartTimeout bounds how long ensureKeeper waits for a new keeper to
// listen on both sockets and write its pid file. The wait ends as soon as it
// does (milliseconds on a host); the bound is for a slow machine: under QEMU
// TCG (make cgroupv2-test), the keeper of the wasm daemon, a large cgo
// binary read over virtio-fs, took more than 5 s to come up.
const keeperStartTimeout = 30 * time.Second

// argv is the command line of a keeper of ks:
// `KeeperArg TASK_SOCKET TASK_BACKEND API_SOCKET API_BACKEND PID_FILE FD_SOCKET`.
// Keepers started before the fd store have the same line without
// FD_SOCKET, and those started before the pid file was an argument without
// PID_FILE either (see runningKeeper).
func (ks keeperSockets) argv() []string {
	return []string{KeeperArg, ks.Task, ks.TaskBackend, ks.API, ks.APIBackend, ks.PidFile, ks.FDs}
}

// olderArgs is how many trailing arguments of argv the older keepers'
// command lines lack: FD_SOCKET; PID_FILE and FD_SOCKET.
var olderArgs = []int{1, 2}

// makeDirs creates the directories of the sockets and the pid file that do
// not exist yet (a --listen or task_socket in a directory nobody made), 0700
// as transport.Listen makes them. Existing directories keep their mode.
func (ks keeperSockets) makeDirs() error {
	for _, p := range []string{ks.Task, ks.TaskBackend, ks.API, ks.APIBackend, ks.PidFile, ks.FDs} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return fmt.Errorf("keeper socket directory: %w", err)
		}
	}
	return nil
}

// ensureKeeper reuses the keeper of a previous daemon, or starts one. A
// keeper it replaces (one that runningKeeper does not recognise, or whose
// sockets are gone) sees its sockets replaced and exits once the
// connections it still holds end (see shared/keeper).
func ensureKeeper(ctx context.Context, ks keeperSockets) error {
	if pid, args, ok := keeperArgs(ks); ok {
		// A connection restarts the keeper's idle clock (shared/keeper), so
		// that a keeper idle for almost its bound does not leave as we come.
		if c, err := net.DialTimeout("unix", ks.API, time.Second); err == nil {
			c.Close()
		}
		log.G(ctx).WithField("pid", pid).Info("reusing the keeper: containerd's connections survived the restart")
		if len(args) < len(ks.argv()) {
			log.G(ctx).WithField("pid", pid).Warn("the keeper, started by an older daemon, serves no fd store: " +
				"the stdio a backend relays (a VM's containers') is cut when this daemon restarts, until the keeper is replaced")
		}
		return nil
	}
	if err := ks.makeDirs(); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	argv := ks.argv()
	cmd := exec.Command(self, argv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Dir = "/"
	_ = os.Remove(ks.Task)
	_ = os.Remove(ks.API)
	_ = os.Remove(ks.FDs)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the keeper: %w", err)
	}
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // reap it if it dies while we live
	// The keeper writes its pid file once it listens on both sockets.
	deadline := time.NewTimer(keeperStartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if p, ok := runningKeeper(ks); ok && p == pid {
			break
		}
		select {
		case err := <-exited:
			return fmt.Errorf("the keeper exited at start: %v", err)
		case <-deadline.C:
			_ = cmd.Process.Kill()
			return fmt.Errorf("the keeper did not serve %s and %s within %s", ks.Task, ks.API, keeperStartTimeout)
		case <-tick.C:
		}
	}
	log.G(ctx).WithField("pid", pid).Info("started the keeper")
	return nil
}

// runningKeeper tells whether the pid file names a live keeper of ks whose
// sockets exist. A keeper started with an older command line is recognised
// too and reused: replacing it would close every containerd task
// connection it holds. Without FD_SOCKET (started by a daemon before the
// fd store) it holds no descriptors; without PID_FILE either (before the
// keeper watched its pid file) it lacks the exit on replacement and on
// idleness, until it is replaced for another reason.
func runningKeeper(ks keeperSockets) (int, bool) {
	pid, _, ok := keeperArgs(ks)
	return pid, ok
}

// keeperArgs is runningKeeper, with the running keeper's arguments (argv's
// form, or an older one).
func keeperArgs(ks keeperSockets) (int, []string, bool) {
	data, err := os.ReadFile(ks.PidFile)
	if err != nil {
		return 0, nil, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, nil, false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0, nil, false
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")[1:]
	want := ks.argv()
	known := slices.Equal(args, want)
	for _, n := range olderArgs {
		known = known || slices.Equal(args, want[:len(want)-n])
	}
	if !known {
		return 0, nil, false
	}
	for _, sock := range []string{ks.Task, ks.API} {
		if _, err := os.Stat(sock); err != nil {
			return 0, nil, false
		}
	}
	return pid, args, true
}

// runKeeper is the keeper's main:
// `KeeperArg TASK_SOCKET TASK_BACKEND API_SOCKET API_BACKEND [PID_FILE [FD_SOCKET]]`.
// The shorter lines are those of older daemons that run this binary after
// an upgrade: without FD_SOCKET the keeper serves no descriptor store;
// without PID_FILE it neither writes nor watches a pid file (that daemon
// writes it).
func runKeeper(args []string) error {
	if len(args) < 4 || len(args) > 6 {
		return fmt.Errorf("usage: %s TASK_SOCKET TASK_BACKEND API_SOCKET API_BACKEND [PID_FILE [FD_SOCKET]]", KeeperArg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("component", "task-keeper"))
	cfg := keeper.Config{TaskSocket: args[0], TaskBackend: args[1], APISocket: args[2], APIBackend: args[3]}
	if len(args) >= 5 {
		cfg.PidFile = args[4]
	}
	if len(args) == 6 {
		cfg.FDSocket = args[5]
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	go func() {
		<-sigs
		cancel()
	}()
	return keeper.Run(ctx, cfg)
}
