package runsc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"

	runc "github.com/containerd/go-runc"

	"github.com/magnetar-runtime/magnetar/shared/runcproc"
)

// CLI runs runsc for one pod: every call names the pod's --root and
// repeats the same global flags, as runsc requires of the calls on one
// sandbox.
type CLI struct {
	// Binary is runsc's absolute path.
	Binary string
	// Root is the pod's runsc state directory (--root).
	Root string
	// Flags are the other global flags: --platform, --network, and what
	// the configuration adds.
	Flags []string
}

// Runc is go-runc's client for the pod, whose calls log (JSON) into
// logFile: runsc's command line for create, start, kill, delete, ps,
// update, pause, resume and exec is runc's.
func (c *CLI) Runc(logFile string) *runc.Runc {
	return &runc.Runc{Command: c.Binary, Root: c.Root, Log: logFile, LogFormat: runc.JSON, ExtraArgs: c.Flags}
}

// Command is `runsc <global flags> args...`, logging into logFile, in the
// same form as go-runc's (so that runcproc.Error reads its log).
func (c *CLI) Command(ctx context.Context, logFile string, args ...string) *exec.Cmd {
	g := []string{"--root", c.Root, "--log", logFile, "--log-format", "json"}
	g = append(g, c.Flags...)
	return exec.CommandContext(ctx, c.Binary, append(g, args...)...)
}

// run runs a command to its end; its error carries runsc's message (from
// its log, else its output).
func (c *CLI) run(ctx context.Context, logFile, op string, args ...string) ([]byte, error) {
	cmd := c.Command(ctx, logFile, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if msg := runcproc.LastError(logFile); msg == "" && stderr.Len() > 0 {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(stderr.Bytes()))
		}
		return nil, runscError(op, logFile, err)
	}
	return stdout.Bytes(), nil
}

// runscError is runcproc.Error for runsc.
func runscError(op, logFile string, err error) error {
	return runcproc.Error("runsc", op, logFile, err)
}

// Stdio are the files a command gets as its stdin, stdout and stderr.
type Stdio interface {
	Set(cmd *exec.Cmd)
}

// Start runs `runsc start id` with io's files as its stdio, which runsc
// hands to the container: a container joining a sandbox takes its stdio
// at start (nil, or a stream io leaves unset: /dev/null, never a pipe of
// ours, which the container would hold open for its whole life). runsc's
// error is in logFile.
func (c *CLI) Start(ctx context.Context, logFile, id string, io Stdio) error {
	cmd := c.Command(ctx, logFile, "start", id)
	if io != nil {
		io.Set(cmd)
	}
	if err := cmd.Run(); err != nil {
		return runscError("start", logFile, err)
	}
	return nil
}

// KillPid sends sig to pid, a pid in the sandbox's root PID namespace (an
// exec's, from --internal-pid-file), of container id.
func (c *CLI) KillPid(ctx context.Context, logFile, id string, pid int, sig syscall.Signal) error {
	_, err := c.run(ctx, logFile, "kill", "kill", "--pid", strconv.Itoa(pid), id, strconv.Itoa(int(sig)))
	return err
}

// DeleteForce runs `runsc delete --force id`.
func (c *CLI) DeleteForce(ctx context.Context, logFile, id string) error {
	_, err := c.run(ctx, logFile, "delete", "delete", "--force", id)
	return err
}

// State is what `runsc state` tells of a container.
type State struct {
	ID string `json:"id"`
	// Status: creating, created, running, paused, stopped.
	Status string `json:"status"`
	// Pid is the sandbox process's (-1 once stopped).
	Pid int `json:"pid"`
}

// State runs `runsc state id`.
func (c *CLI) State(ctx context.Context, logFile, id string) (*State, error) {
	out, err := c.run(ctx, logFile, "state", "state", id)
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("runsc state %s: %w", id, err)
	}
	return &st, nil
}

// Create runs `runsc create --bundle bundle --pid-file pidFile id` for a
// pod's root container, with /dev/null as its stdio: the sandbox process it
// leaves running inherits that stdio for good (a pipe would never reach
// EOF). runsc's error is in logFile.
func (c *CLI) Create(ctx context.Context, logFile, id, bundle, pidFile string) error {
	cmd := c.Command(ctx, logFile, "create", "--bundle", bundle, "--pid-file", pidFile, id)
	if err := cmd.Run(); err != nil {
		return runscError("create", logFile, err)
	}
	return nil
}

// NullNetNS is where runsc pins the empty network namespace of the gofers
// of a root (a bind mount of an nsfs file, runsc's specutils.NullNetNSFilename):
// runsc leaves it mounted, whoever removes the root unmounts it first.
func NullNetNS(root string) string { return filepath.Join(root, "null-netns") }
