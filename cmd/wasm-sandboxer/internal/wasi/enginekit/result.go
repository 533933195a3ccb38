package enginekit

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi"
)

// WASI preview1 errno values the engines' host functions return.
const (
	ErrnoSuccess = 0
	ErrnoAgain   = 6
	ErrnoBadf    = 8
	ErrnoFault   = 21
	ErrnoInval   = 28
	ErrnoIO      = 29
	ErrnoNotsup  = 58
	ErrnoPipe    = 64
)

// ExitCode is proc_exit's code as a process exit status: 0..255, the low
// byte as POSIX wait statuses keep it.
func ExitCode(code uint32) uint32 { return code & 0xff }

// NearLimit reports whether linear memory of mem bytes is within the step a
// failed memory.grow would have taken of limit: a page, a quarter of the
// limit, at most 16 MiB (Go's wasm runtime grows by 4 MiB heap arenas).
// Engines that do not see the refused grow use it for Result.OutOfMemory.
func NearLimit(limit, mem uint64) bool {
	if limit == 0 {
		return false
	}
	slack := min(max(limit/4, 64<<10), 16<<20)
	return mem+slack > limit
}

// Env is cfg's environment with PWD set to the working directory unless
// cfg.Env sets it (WASI preview1 has no cwd of its own).
func Env(cfg *wasi.RunConfig) []string {
	cwd := cfg.Cwd
	if cwd == "" {
		cwd = "/"
	}
	env := make([]string, 0, len(cfg.Env)+1)
	hasPWD := false
	for _, e := range cfg.Env {
		if strings.HasPrefix(e, "PWD=") {
			hasPWD = true
		}
		env = append(env, e)
	}
	if !hasPWD {
		env = append(env, "PWD="+cwd)
	}
	return env
}

// SplitEnv splits "K=V" entries into keys and values.
func SplitEnv(env []string) (keys, values []string) {
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		keys, values = append(keys, k), append(values, v)
	}
	return keys, values
}

// Trapped is the Result of a trap; the message also goes to stderr. When
// the engine's message leads with a backtrace and ends with its cause (as
// wasmtime's "error while executing at wasm backtrace: ... Caused by:"),
// the cause is put first.
func Trapped(stderr io.Writer, msg string) wasi.Result {
	if i := strings.Index(msg, "Stack backtrace:"); i >= 0 {
		msg = msg[:i] // the host's (Rust) stack: no use to a module's owner
	}
	msg = strings.TrimSpace(msg)
	if i := strings.LastIndex(msg, "Caused by:"); i >= 0 {
		// The root cause is the last line of the block: "0: context",
		// "1: wasm trap: out of bounds memory access".
		cause := ""
		for _, l := range strings.Split(strings.TrimSpace(msg[i+len("Caused by:"):]), "\n") {
			l = strings.TrimSpace(l)
			if l == "" {
				break
			}
			if n, rest, ok := strings.Cut(l, ": "); ok && strings.Trim(n, "0123456789") == "" {
				l = rest
			}
			cause = l
		}
		if cause != "" {
			msg = cause + "\n" + msg
		}
	}
	if stderr != nil {
		fmt.Fprintf(stderr, "wasm trap: %s\n", msg)
	}
	return wasi.Result{ExitCode: wasi.ExitCodeTrap, Trap: msg, ExitedAt: time.Now()}
}

// Killed is the Result of a killed instance.
func Killed() wasi.Result {
	return wasi.Result{ExitCode: wasi.ExitCodeKilled, Killed: true, ExitedAt: time.Now()}
}

// CheckPreopens refuses a RunConfig whose preopens are not directories or
// name no guest path, before anything is instantiated.
func CheckPreopens(cfg *wasi.RunConfig) error {
	for _, p := range cfg.Preopens {
		if p.Guest != "" && !strings.HasPrefix(p.Guest, "/") {
			return fmt.Errorf("preopen %s: guest path %q is not absolute: %w", p.Host, p.Guest, errdefs.ErrInvalidArgument)
		}
		st, err := os.Stat(p.Host)
		if err != nil {
			return fmt.Errorf("preopen %s: %w: %w", p.Host, err, errdefs.ErrInvalidArgument)
		}
		if !st.IsDir() {
			return fmt.Errorf("preopen %s: not a directory: %w", p.Host, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}
