package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"time"
)

// monitor is the stand-in's connection to its QEMU's QMP socket: commands
// in order, events to a callback. The stand-in owns QEMU, so one
// connection lasts QEMU's life.
type monitor struct {
	conn    net.Conn
	onEvent func(name string, data json.RawMessage)

	mu      sync.Mutex // one command at a time
	replies chan qmpMessage
}

type qmpMessage struct {
	QMP    json.RawMessage `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

// dialMonitor connects to QEMU's QMP socket (retrying until deadline while
// QEMU creates it), reads the greeting and negotiates.
func dialMonitor(path string, deadline time.Time, onEvent func(string, json.RawMessage)) (*monitor, error) {
	var c net.Conn
	var err error
	for {
		c, err = net.Dial("unix", path)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("qmp: %w", err)
	}
	m := &monitor{conn: c, onEvent: onEvent, replies: make(chan qmpMessage, 1)}
	r := bufio.NewReader(c)
	c.SetReadDeadline(deadline)
	line, err := r.ReadBytes('\n')
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("qmp greeting: %w", err)
	}
	var g qmpMessage
	if json.Unmarshal(line, &g) != nil || g.QMP == nil {
		c.Close()
		return nil, fmt.Errorf("qmp greeting: %q", line)
	}
	c.SetReadDeadline(time.Time{})
	go m.read(r)
	if err := m.execute("qmp_capabilities", nil); err != nil {
		c.Close()
		return nil, err
	}
	return m, nil
}

func (m *monitor) read(r *bufio.Reader) {
	defer close(m.replies)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		var msg qmpMessage
		if json.Unmarshal(line, &msg) != nil {
			continue
		}
		if msg.Event != "" {
			if m.onEvent != nil {
				m.onEvent(msg.Event, msg.Data)
			}
			continue
		}
		m.replies <- msg
	}
}

// execute runs a command and waits for its answer (10 s at most).
func (m *monitor) execute(cmd string, args any) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, err := json.Marshal(struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
	}{cmd, args})
	if err != nil {
		return err
	}
	m.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := m.conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	select {
	case msg, ok := <-m.replies:
		if !ok {
			return fmt.Errorf("qmp %s: qemu closed the monitor", cmd)
		}
		if msg.Error != nil {
			return fmt.Errorf("qmp %s: %s: %s", cmd, msg.Error.Class, msg.Error.Desc)
		}
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("qmp %s: no answer", cmd)
	}
}

func (m *monitor) close() { m.conn.Close() }
