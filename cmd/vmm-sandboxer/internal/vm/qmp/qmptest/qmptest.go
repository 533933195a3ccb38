// Package qmptest is a QMP server for tests, in the variants of package
// qmp's clients: QEMU's and StratoVirt's (as qmp.md documents it). The
// drivers' fake VMMs (their test binaries standing in for the VMM) serve it
// on their -qmp socket.
package qmptest

import (
	"encoding/json"
	"net"
	"slices"
)

// Dialect is a VMM's variant of the protocol.
type Dialect struct {
	// Greeting is the object under "QMP".
	Greeting any
	// Negotiate refuses every command before qmp_capabilities (QEMU's
	// capabilities negotiation mode).
	Negotiate bool
	// Commands are the commands served besides quit and query-status;
	// "fail" answers a GenericError. Others get Unknown.
	Commands []string
	// Unknown is the error answer to a command not served.
	Unknown func(command string) (class, desc string)
	// Noise sends an event before each answer, and with IDs an answer to
	// another id, which a client must skip.
	Noise bool
}

// QEMU is QEMU 7.2's variant: negotiation, ids echoed, CommandNotFound.
var QEMU = Dialect{
	Greeting: map[string]any{
		"version":      map[string]any{"qemu": map[string]int{"major": 7, "minor": 2, "micro": 22}, "package": "fake"},
		"capabilities": []string{"oob"}},
	Negotiate: true,
	Commands:  []string{"qmp_capabilities", "fail"},
	Unknown: func(c string) (string, string) {
		return "CommandNotFound", "The command " + c + " has not been found"
	},
	Noise: true,
}

// StratoVirt is the variant of StratoVirt's qmp.md: its greeting, no
// negotiation, no ids; a command it does not know fails the way its JSON
// parser does (a GenericError).
var StratoVirt = Dialect{
	Greeting: map[string]any{
		"version":      map[string]any{"StratoVirt": map[string]int{"micro": 1, "minor": 0, "major": 0}, "package": ""},
		"capabilities": []string{}},
	Commands: []string{"fail"},
	Unknown: func(c string) (string, string) {
		return "GenericError", "unknown variant `" + c + "`"
	},
	Noise: true,
}

// Serve serves one connection in dialect d until the client goes away or
// quits, and reports whether quit was asked. It answers query-status with
// running and quit with an empty return then a SHUTDOWN event, and closes
// the connection after quit.
func Serve(c net.Conn, d Dialect) (quit bool) {
	defer c.Close()
	enc := json.NewEncoder(c)
	_ = enc.Encode(map[string]any{"QMP": d.Greeting})
	dec := json.NewDecoder(c)
	negotiated := !d.Negotiate
	for {
		var req struct {
			Execute string          `json:"execute"`
			ID      json.RawMessage `json:"id"`
		}
		if err := dec.Decode(&req); err != nil {
			return false
		}
		if d.Noise {
			_ = enc.Encode(map[string]any{"event": "FAKE_TICK", "data": map[string]string{"cmd": req.Execute},
				"timestamp": map[string]int{"seconds": 1, "microseconds": 2}})
			if req.ID != nil {
				_ = enc.Encode(map[string]any{"return": map[string]string{"stale": "yes"}, "id": 999999})
			}
		}
		answer := func(k string, v any) {
			m := map[string]any{k: v}
			if req.ID != nil {
				m["id"] = req.ID
			}
			_ = enc.Encode(m)
		}
		errorAnswer := func(class, desc string) { answer("error", map[string]string{"class": class, "desc": desc}) }
		known := req.Execute == "quit" || req.Execute == "query-status" || slices.Contains(d.Commands, req.Execute)
		switch {
		case !known:
			errorAnswer(d.Unknown(req.Execute))
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
		}
	}
}
