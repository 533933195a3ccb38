package runsc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Monitor learns what happens inside a pod's sandbox.
type Monitor interface {
	// Wait blocks until the init of container id has exited and returns
	// its exit status (128+n for a signal n). It fails with an error
	// wrapping errdefs.ErrUnavailable when the sandbox cannot be reached
	// (gone, or not serving: the caller tells which from the sandbox
	// process), and with the sandbox's own error otherwise (an unknown or
	// never started container). An ended ctx ends it with ctx's error.
	Wait(ctx context.Context, id string) (int, error)
	// Stats returns the statistics of container id, whose name in the
	// sandbox is name (its CRI container name, "" if it has none).
	Stats(ctx context.Context, id, name string) (*Stats, error)
}

// Stats are a container's statistics as runsc reports them (`runsc events
// --stats`, runc's format): the sentry's accounting of the container.
type Stats struct {
	CPU struct {
		Usage struct {
			Kernel uint64 `json:"kernel,omitempty"`
			User   uint64 `json:"user,omitempty"`
			Total  uint64 `json:"total,omitempty"`
		} `json:"usage"`
	} `json:"cpu"`
	Memory struct {
		Cache uint64 `json:"cache,omitempty"`
		Usage struct {
			Limit uint64 `json:"limit"`
			Usage uint64 `json:"usage,omitempty"`
			Max   uint64 `json:"max,omitempty"`
		} `json:"usage,omitempty"`
	} `json:"memory"`
	Pids struct {
		Current uint64 `json:"current,omitempty"`
		Limit   uint64 `json:"limit,omitempty"`
	} `json:"pids"`
}

// event is the container part of the answer to containerManager.Event and
// the line `runsc events --stats` prints.
type event struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Data Stats  `json:"data"`
}

// Control is the Monitor over a sandbox's control socket.
type Control struct {
	// Socket is the sandbox's control socket: SocketPath(root, sandbox id).
	Socket string
}

var _ Monitor = Control{}

// SocketPath is where runsc creates the control socket of sandbox id under
// root (runsc-<id>.sock).
func SocketPath(root, id string) string { return filepath.Join(root, "runsc-"+id+".sock") }

// The control calls the sandboxer makes.
const (
	methodWait  = "containerManager.Wait"
	methodEvent = "containerManager.Event"
)

// Wait calls containerManager.Wait: the sandbox answers once the
// container's init has exited, with its wait status.
func (c Control) Wait(ctx context.Context, id string) (int, error) {
	var ws uint32
	if err := c.call(ctx, methodWait, id, &ws); err != nil {
		return 0, err
	}
	return exitCode(syscall.WaitStatus(ws)), nil
}

// Stats calls containerManager.Event. The sentry answers the CPU time of
// every container apart from the event (containerUsage, as `runsc events`
// reads it), keyed by container name when its cgroupfs accounts it (cgroup
// v1 hosts) and by container id otherwise.
func (c Control) Stats(ctx context.Context, id, name string) (*Stats, error) {
	var out struct {
		Event          event             `json:"event"`
		ContainerUsage map[string]uint64 `json:"containerUsage"`
	}
	if err := c.call(ctx, methodEvent, id, &out); err != nil {
		return nil, err
	}
	st := &out.Event.Data
	if st.CPU.Usage.Total == 0 {
		if u, ok := out.ContainerUsage[id]; ok {
			st.CPU.Usage.Total = u
		} else if u, ok := out.ContainerUsage[name]; ok && name != "" {
			st.CPU.Usage.Total = u
		}
	}
	return st, nil
}

// exitCode is a wait status as an exit code, 128+n for a signal n (as
// `runsc wait` reports it).
func exitCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// call makes one call on its own connection, closed when ctx ends.
func (c Control) call(ctx context.Context, method string, arg, result any) error {
	conn, err := c.dial(ctx)
	if err != nil {
		return fmt.Errorf("sandbox control socket %s: %v: %w", c.Socket, err, errdefs.ErrUnavailable)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	req, err := json.Marshal(struct {
		Method string `json:"method"`
		Arg    any    `json:"arg"`
	}{method, arg})
	if err != nil {
		return err
	}
	if _, err := conn.Write(req); err != nil {
		return c.connErr(ctx, method, err)
	}
	var resp struct {
		Success bool            `json:"success"`
		Err     string          `json:"err"`
		Result  json.RawMessage `json:"result"`
	}
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		return c.connErr(ctx, method, err)
	}
	if !resp.Success {
		return fmt.Errorf("runsc sandbox: %s: %s", method, resp.Err)
	}
	if err := json.Unmarshal(resp.Result, result); err != nil {
		return fmt.Errorf("runsc sandbox: %s: answer %q: %w", method, resp.Result, err)
	}
	return nil
}

func (c Control) connErr(ctx context.Context, method string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("runsc sandbox: %s: %v: %w", method, err, errdefs.ErrUnavailable)
}

// dial connects to the socket; a path longer than a unix address holds is
// reached through /proc/self/fd, as runsc itself does.
func (c Control) dial(ctx context.Context) (net.Conn, error) {
	path := c.Socket
	if len(path) >= len(unix.RawSockaddrUnix{}.Path) {
		fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		defer unix.Close(fd)
		path = "/proc/self/fd/" + strconv.Itoa(fd)
	}
	var d net.Dialer
	return d.DialContext(ctx, "unix", path)
}

// Processes is the Monitor through runsc's commands: a `runsc wait`
// process for each Wait, a `runsc events --stats` process for each Stats.
type Processes struct {
	CLI *CLI
	// Log is the runsc log of these commands.
	Log string
}

var _ Monitor = Processes{}

// Wait runs `runsc wait id`; its process ends with the sandboxer's
// (Pdeathsig), so that a daemon killed with -9 leaves none behind (the
// restarted daemon waits again).
func (p Processes) Wait(ctx context.Context, id string) (int, error) {
	cmd := p.CLI.Command(ctx, p.Log, "wait", id)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.Output()
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() < 0 {
			// killed (its Pdeathsig fired with the thread that
			// started it, or from outside): no answer, not gone
			return 0, fmt.Errorf("runsc wait %s: %v: %w", id, err, errdefs.ErrUnavailable)
		}
		return 0, runscError("wait", p.Log, err)
	}
	var r struct {
		ExitStatus int `json:"exitStatus"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, fmt.Errorf("runsc wait %s: %q: %w", id, out, err)
	}
	return r.ExitStatus, nil
}

// Stats runs `runsc events --stats id` (which finds the name itself).
func (p Processes) Stats(ctx context.Context, id, _ string) (*Stats, error) {
	out, err := p.CLI.run(ctx, p.Log, "events", "events", "--stats", id)
	if err != nil {
		return nil, err
	}
	var ev event
	if err := json.Unmarshal(out, &ev); err != nil {
		return nil, fmt.Errorf("runsc events --stats %s: %q: %w", id, out, err)
	}
	return &ev.Data, nil
}
