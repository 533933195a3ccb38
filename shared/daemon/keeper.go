package daemon

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/shared/keeper"
	"github.com/magnetar-runtime/magnetar/shared/store"
	"github.com/magnetar-runtime/magnetar/shared/transport"
)

// KeeperArg makes the binary run as the task keeper (see shared/keeper).
const KeeperArg = "__magnetar_task_keeper"

// keeperCheckInterval is how often a serving daemon checks that its keeper
// lives (superviseKeeper).
const keeperCheckInterval = 2 * time.Second

// keeperSockets are the sockets containerd dials (owned by the keeper) and
// the private ones the daemon serves behind it.
type keeperSockets struct {
	Task, TaskBackend, API, APIBackend, PidFile string
}

func newKeeperSockets(name, taskSock, apiSock string) keeperSockets {
	dir := filepath.Dir(taskSock)
	return keeperSockets{
		Task: taskSock, TaskBackend: filepath.Join(dir, name+"-task-backend.sock"),
		API: apiSock, APIBackend: filepath.Join(filepath.Dir(apiSock), name+"-api-backend.sock"),
		PidFile: filepath.Join(dir, name+"-keeper.pid"),
	}
}

// ensureKeeper reuses the keeper of a previous daemon, or starts one.
func ensureKeeper(ctx context.Context, ks keeperSockets) error {
	if pid, ok := runningKeeper(ks); ok {
		log.G(ctx).WithField("pid", pid).Info("reusing the keeper: containerd's connections survived the restart")
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, KeeperArg, ks.Task, ks.TaskBackend, ks.API, ks.APIBackend)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Dir = "/"
	_ = os.Remove(ks.Task)
	_ = os.Remove(ks.API)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the keeper: %w", err)
	}
	pid := cmd.Process.Pid
	go func() { _ = cmd.Wait() }() // reap it if it dies while we live
	if err := store.WriteFileAtomic(ks.PidFile, []byte(strconv.Itoa(pid)), 0o600); err != nil {
		_ = cmd.Process.Kill()
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, sock := range []string{ks.Task, ks.API} {
		for {
			if fi, err := os.Stat(sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
				break
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				return fmt.Errorf("keeper did not create %s", sock)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	log.G(ctx).WithField("pid", pid).Info("started the keeper")
	return nil
}

// runningKeeper tells whether the pid file names a live keeper of ks.
func runningKeeper(ks keeperSockets) (int, bool) {
	data, err := os.ReadFile(ks.PidFile)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0, false
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	want := []string{KeeperArg, ks.Task, ks.TaskBackend, ks.API, ks.APIBackend}
	if len(args) != len(want)+1 {
		return 0, false
	}
	for i, a := range want {
		if args[i+1] != a {
			return 0, false
		}
	}
	for _, sock := range []string{ks.Task, ks.API} {
		if _, err := os.Stat(sock); err != nil {
			return 0, false
		}
	}
	return pid, true
}

// runKeeper is the keeper's main:
// `KeeperArg TASK_SOCKET TASK_BACKEND API_SOCKET API_BACKEND`.
func runKeeper(args []string) error {
	if len(args) != 4 {
		return fmt.Errorf("usage: %s TASK_SOCKET TASK_BACKEND API_SOCKET API_BACKEND", KeeperArg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("component", "task-keeper"))
	l, err := transport.Listen(args[0])
	if err != nil {
		return err
	}
	al, err := transport.Listen(args[2])
	if err != nil {
		return err
	}
	go func() {
		if err := keeper.ServeStream(ctx, al, args[3], keeper.Options{}); err != nil {
			log.G(ctx).WithError(err).Error("sandbox API relay stopped")
			cancel()
		}
	}()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	go func() {
		<-sigs
		cancel()
	}()
	return keeper.Serve(ctx, l, args[1], keeper.Options{})
}
