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
)

// KeeperArg makes the binary run as the task keeper (see shared/keeper).
const KeeperArg = "__magnetar_task_keeper"

// keeperPaths are the backend socket the daemon serves and the keeper's pid
// file, beside the task socket containerd dials.
func keeperPaths(name, taskSock string) (backend, pidFile string) {
	dir := filepath.Dir(taskSock)
	return filepath.Join(dir, name+"-task-backend.sock"), filepath.Join(dir, name+"-task-keeper.pid")
}

// ensureKeeper reuses the keeper of a previous daemon, or starts one.
func ensureKeeper(ctx context.Context, name, taskSock string) (backend string, err error) {
	backend, pidFile := keeperPaths(name, taskSock)
	if pid, ok := runningKeeper(pidFile, taskSock); ok {
		log.G(ctx).WithField("pid", pid).Info("reusing the task keeper: containerd's task connections survived")
		return backend, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(self, KeeperArg, taskSock, backend)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Dir = "/"
	_ = os.Remove(taskSock)
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("starting the task keeper: %w", err)
	}
	pid := cmd.Process.Pid
	go func() { _ = cmd.Wait() }() // reap it if it dies while we live
	if err := store.WriteFileAtomic(pidFile, []byte(strconv.Itoa(pid)), 0o600); err != nil {
		_ = cmd.Process.Kill()
		return "", err
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if fi, err := os.Stat(taskSock); err == nil && fi.Mode()&os.ModeSocket != 0 {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return "", fmt.Errorf("task keeper did not create %s", taskSock)
		}
		time.Sleep(5 * time.Millisecond)
	}
	log.G(ctx).WithField("pid", pid).Info("started the task keeper")
	return backend, nil
}

// runningKeeper tells whether the pid file names a live keeper of taskSock.
func runningKeeper(pidFile, taskSock string) (int, bool) {
	data, err := os.ReadFile(pidFile)
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
	if len(args) >= 3 && args[1] == KeeperArg && args[2] == taskSock {
		if _, err := os.Stat(taskSock); err == nil {
			return pid, true
		}
	}
	return 0, false
}

// runKeeper is the keeper's main: `KeeperArg TASK_SOCKET BACKEND_SOCKET`.
func runKeeper(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: %s TASK_SOCKET BACKEND_SOCKET", KeeperArg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("component", "task-keeper"))
	l, err := listenUnix(args[0])
	if err != nil {
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	go func() {
		<-sigs
		cancel()
	}()
	return keeper.Serve(ctx, l, args[1], keeper.Options{})
}
