package qemu

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
)

// fakeQEMUEnv makes the test binary act as QEMU (TestMain): its value is
// the behaviour, one of the fakeMode* constants.
const fakeQEMUEnv = "MAGNETAR_TEST_FAKE_QEMU"

const (
	// fakeModeServe serves QMP on the -qmp socket and exits on quit.
	fakeModeServe = "serve"
	// fakeModeIgnoreQuit answers quit but keeps running (and ignores SIGTERM).
	fakeModeIgnoreQuit = "ignore-quit"
	// fakeModeDie prints an error and exits 1 at once, as QEMU does with
	// a kernel it cannot load.
	fakeModeDie = "die"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeQEMUEnv); mode != "" {
		os.Exit(fakeQEMU(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeQEMU stands in for qemu-system-x86_64 (started by the driver with
// QEMU's argv): it writes the console and pid files, listens on the -qmp
// socket and on the agent chardev socket, and serves QMP.
func fakeQEMU(mode string, args []string) int {
	var qmpPath, agentPath, console, pidfile string
	for i := 0; i+1 < len(args); i++ {
		v := args[i+1]
		switch {
		case args[i] == "-qmp":
			qmpPath = strings.TrimPrefix(strings.SplitN(v, ",", 2)[0], "unix:")
		case args[i] == "-chardev" && strings.HasPrefix(v, "socket,id=agent,path="):
			agentPath = strings.SplitN(strings.TrimPrefix(v, "socket,id=agent,path="), ",", 2)[0]
		case args[i] == "-chardev" && strings.HasPrefix(v, "file,id=console,path="):
			console = strings.TrimPrefix(v, "file,id=console,path=")
		case args[i] == "-pidfile":
			pidfile = v
		}
	}
	if mode == fakeModeDie {
		fmt.Fprintln(os.Stderr, "qemu-system-x86_64: fake: could not load kernel")
		return 1
	}
	if mode == fakeModeIgnoreQuit {
		signal.Ignore(syscall.SIGTERM, syscall.SIGINT)
	}
	_ = os.WriteFile(console, []byte("fake guest booting\n"), 0o644)
	_ = os.WriteFile(pidfile, []byte(fmt.Sprintln(os.Getpid())), 0o644)
	if agentPath != "" {
		if l, err := net.Listen("unix", agentPath); err == nil {
			defer l.Close()
		}
	}
	l, err := net.Listen("unix", qmpPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake qemu:", err)
		return 1
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return 1
		}
		if serveQMP(c) && mode == fakeModeServe {
			return 0
		}
	}
}

// serveQMP is a QMP server on one connection: greeting, then every
// command is answered after an event and an answer to another id (which
// the client must skip). It knows qmp_capabilities, query-status, quit and
// "fail" (a GenericError); others are CommandNotFound. It reports whether
// quit was asked.
func serveQMP(c net.Conn) (quit bool) {
	defer c.Close()
	enc := json.NewEncoder(c)
	_ = enc.Encode(map[string]any{"QMP": map[string]any{
		"version":      map[string]any{"qemu": map[string]int{"major": 7, "minor": 2, "micro": 22}, "package": "fake"},
		"capabilities": []string{"oob"}}})
	dec := json.NewDecoder(c)
	negotiated := false
	for {
		var req struct {
			Execute string          `json:"execute"`
			ID      json.RawMessage `json:"id"`
		}
		if err := dec.Decode(&req); err != nil {
			return false
		}
		_ = enc.Encode(map[string]any{"event": "FAKE_TICK", "data": map[string]string{"cmd": req.Execute},
			"timestamp": map[string]int{"seconds": 1, "microseconds": 2}})
		_ = enc.Encode(map[string]any{"return": map[string]string{"stale": "yes"}, "id": 999999})
		answer := func(k string, v any) { _ = enc.Encode(map[string]any{k: v, "id": req.ID}) }
		errorAnswer := func(class, desc string) { answer("error", map[string]string{"class": class, "desc": desc}) }
		switch {
		case req.Execute == "qmp_capabilities":
			negotiated = true
			answer("return", map[string]any{})
		case !negotiated:
			errorAnswer("CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'")
		case req.Execute == "query-status":
			answer("return", map[string]any{"status": "running", "singlestep": false, "running": true})
		case req.Execute == "quit":
			answer("return", map[string]any{})
			_ = enc.Encode(map[string]any{"event": "SHUTDOWN", "data": map[string]any{"guest": false, "reason": "host-qmp-quit"},
				"timestamp": map[string]int{"seconds": 1, "microseconds": 3}})
			return true
		case req.Execute == "fail":
			errorAnswer("GenericError", "it failed")
		default:
			errorAnswer("CommandNotFound", "The command "+req.Execute+" has not been found")
		}
	}
}
