package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/magnetar-runtime/magnetar/hack/standins/stratovirt/guidebook"
)

// vmControl is what the QMP server does to the VM.
type vmControl interface {
	// pause and resume stop and continue the guest's vCPUs.
	pause() error
	resume() error
	// quit ends the VM; the stand-in exits once its QMP answer is out.
	quit()
}

// qmpServer serves qmp.md's QMP on one unix socket, one client at a time
// (StratoVirt binds one connection to its socket at a time): its greeting,
// the commands qmp.md lists with the answers it shows, and its events.
type qmpServer struct {
	l    net.Listener
	vm   vmControl
	cmds []string // qmp.md's commands

	mu      sync.Mutex
	w       *bufio.Writer // the client connected now (answers, events)
	running bool
}

// greeting is qmp.md's, as it writes it.
const greeting = `{"QMP":{"version":{"StratoVirt":{"micro":1,"minor":0,"major":0},"package":""},"capabilities":[]}}`

func newQMPServer(l net.Listener, vm vmControl) *qmpServer {
	return &qmpServer{l: l, vm: vm, cmds: guidebook.ParseQMP().Commands, running: true}
}

// serve accepts clients until the listener is closed.
func (s *qmpServer) serve() {
	for {
		c, err := s.l.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.w = bufio.NewWriter(c)
		s.mu.Unlock()
		s.serveConn(c)
		s.mu.Lock()
		s.w = nil
		s.mu.Unlock()
		c.Close()
	}
}

// send writes a line to the client connected now.
func (s *qmpServer) send(line string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return false
	}
	if _, err := s.w.WriteString(line + "\n"); err != nil {
		return false
	}
	return s.w.Flush() == nil
}

// request is a command as StratoVirt's parser takes it: execute, optional
// arguments, and an id that is a string.
type request struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments"`
	ID        json.RawMessage `json:"id"`
}

func (s *qmpServer) serveConn(c net.Conn) {
	send := s.send
	if !send(greeting) {
		return
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadBytes('\n')
		if len(strings.TrimSpace(string(line))) > 0 {
			answer, after := s.handle(line)
			if !send(answer) {
				return
			}
			if after != nil {
				after()
			}
		}
		if err != nil {
			return
		}
	}
}

// event is a QMP event line.
func event(name string, data any) string {
	now := time.Now()
	b, _ := json.Marshal(map[string]any{"event": name, "data": data,
		"timestamp": map[string]int64{"seconds": now.Unix(), "microseconds": int64(now.Nanosecond() / 1000)}})
	return string(b)
}

// emit sends an event to the client connected now, if any.
func (s *qmpServer) emit(name string, data any) { s.send(event(name, data)) }

// errorAnswer is an error answer of class with desc.
func errorAnswer(class, desc string, id *string) string {
	m := map[string]any{"error": map[string]string{"class": class, "desc": desc}}
	if id != nil {
		m["id"] = *id
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func returnAnswer(v any, id *string) string {
	m := map[string]any{"return": v}
	if id != nil {
		m["id"] = *id
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// handle answers one line; after, if not nil, runs once the answer is
// sent (quit).
func (s *qmpServer) handle(line []byte) (answer string, after func()) {
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		return errorAnswer("GenericError", err.Error(), nil), nil
	}
	var id *string
	if req.ID != nil {
		var sid string
		if err := json.Unmarshal(req.ID, &sid); err != nil {
			// StratoVirt's id is a string: anything else fails the command
			return errorAnswer("GenericError", fmt.Sprintf("invalid type: %s, expected a string", string(req.ID)), nil), nil
		}
		id = &sid
	}
	if !slices.Contains(s.cmds, req.Execute) {
		return errorAnswer("GenericError", fmt.Sprintf("unknown variant `%s`, expected one of `%s`", req.Execute, strings.Join(s.cmds, "`, `")), nil), nil
	}
	switch req.Execute {
	case "query-status":
		s.mu.Lock()
		running := s.running
		s.mu.Unlock()
		status := "running"
		if !running {
			status = "paused"
		}
		return returnAnswer(map[string]any{"running": running, "singlestep": false, "status": status}, id), nil
	case "quit":
		return returnAnswer(struct{}{}, id), func() {
			s.emit("SHUTDOWN", map[string]any{"guest": false, "reason": "host-qmp-quit"})
			s.vm.quit()
		}
	case "stop":
		if err := s.vm.pause(); err != nil {
			return errorAnswer("GenericError", "Failed to pause VM", id), nil
		}
		s.mu.Lock()
		s.running = false
		s.mu.Unlock()
		s.emit("STOP", struct{}{})
		return returnAnswer(struct{}{}, id), nil
	case "cont":
		if err := s.vm.resume(); err != nil {
			return errorAnswer("GenericError", "Failed to resume VM", id), nil
		}
		s.mu.Lock()
		s.running = true
		s.mu.Unlock()
		s.emit("RESUME", struct{}{})
		return returnAnswer(struct{}{}, id), nil
	}
	return errorAnswer("GenericError", "stratovirt stand-in: "+req.Execute+" is in qmp.md but not emulated by the stand-in", id), nil
}
