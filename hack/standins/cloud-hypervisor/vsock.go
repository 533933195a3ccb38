package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Timing of the bridge to the virtio-serial port (see the package doc).
const (
	// settleAfterClose is how long a new host connection waits after the
	// previous one left: the agent must see that hang-up (EOF) and reopen
	// its port before a new peer writes, or the guest drops the new bytes
	// with the old port's.
	settleAfterClose = 250 * time.Millisecond
	// settleAfterConnect is how long the stand-in waits between connecting
	// to the port's socket and answering OK, for an agent caught between a
	// read that returned EOF (no host) and reopening.
	settleAfterConnect = 50 * time.Millisecond
	// connectLineTimeout bounds the wait for "CONNECT <port>\n".
	connectLineTimeout = 10 * time.Second
	// queueTimeout bounds a connection's wait for the port.
	queueTimeout = 30 * time.Second
	// firstHostPort is the first host-side port OK answers name
	// (Firecracker's muxer, whose protocol Cloud Hypervisor follows,
	// assigns them from 2^30 upwards).
	firstHostPort = 1 << 30
)

// muxer serves Cloud Hypervisor's hybrid vsock socket: a host connection
// writes "CONNECT <port>\n" and, when the guest listens on that port, gets
// "OK <host port>\n" and a stream to it. The guest side is the agent's
// virtio-serial port (one stream): connections to the agent's port are
// bridged to it one at a time; any other port has no listener.
type muxer struct {
	l      net.Listener
	port   uint32 // the agent's vsock port (0: nothing bridged)
	serial string // QEMU's chardev socket of the agent's port

	slot chan struct{} // one bridged connection at a time

	mu        sync.Mutex
	listening bool // the guest opened the agent's port
	lastClose time.Time
	cur       []net.Conn // the bridged pair
	nextPort  uint32
	closed    bool
}

func listenMuxer(socket string, port uint32, serial string) (*muxer, error) {
	l, err := net.Listen("unix", socket)
	if err != nil {
		return nil, fmt.Errorf("vsock: %w", err)
	}
	// the socket is the VM's: it goes when the device does (close)
	l.(*net.UnixListener).SetUnlinkOnClose(true)
	m := &muxer{l: l, port: port, serial: serial, slot: make(chan struct{}, 1), nextPort: firstHostPort}
	go m.serve()
	return m, nil
}

// guestListening records that the guest agent opened its port: from now
// on it listens (a virtio-serial port has no listen of its own).
func (m *muxer) guestListening() {
	m.mu.Lock()
	if !m.listening {
		logf("vsock: the guest listens on port %d", m.port)
	}
	m.listening = true
	m.mu.Unlock()
}

// reset ends the bridged connection (the guest was reset).
func (m *muxer) reset() {
	m.mu.Lock()
	cur := m.cur
	m.listening = false
	m.mu.Unlock()
	for _, c := range cur {
		c.Close()
	}
}

func (m *muxer) close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.l.Close()
	m.reset()
}

func (m *muxer) serve() {
	for {
		c, err := m.l.Accept()
		if err != nil {
			return
		}
		go m.handle(c)
	}
}

// handle runs one host connection.
func (m *muxer) handle(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(connectLineTimeout))
	r := bufio.NewReaderSize(c, 64)
	line, err := r.ReadString('\n')
	c.SetReadDeadline(time.Time{})
	port, perr := parseConnect(line)
	if err != nil || perr != nil {
		// not the protocol: Cloud Hypervisor drops the connection
		if err == nil {
			logf("vsock: %v", perr)
		}
		c.Close()
		return
	}
	m.mu.Lock()
	listening := m.listening
	m.mu.Unlock()
	if port != m.port || m.port == 0 || !listening {
		// nothing listens on that port in the guest: it resets the
		// connection, and Cloud Hypervisor closes the host side
		c.Close()
		return
	}
	select {
	case m.slot <- struct{}{}:
	case <-time.After(queueTimeout):
		logf("vsock: a connection to port %d waited %s for the previous one to end: dropped", port, queueTimeout)
		c.Close()
		return
	}
	defer func() { <-m.slot }()
	m.mu.Lock()
	wait := time.Until(m.lastClose.Add(settleAfterClose))
	m.mu.Unlock()
	if wait > 0 {
		time.Sleep(wait)
	}
	s, err := net.Dial("unix", m.serial)
	if err != nil {
		logf("vsock: the agent's port: %v", err)
		c.Close()
		return
	}
	time.Sleep(settleAfterConnect)
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		s.Close()
		c.Close()
		return
	}
	hp := m.nextPort
	m.nextPort++
	m.cur = []net.Conn{c, s}
	m.mu.Unlock()
	if _, err := fmt.Fprintf(c, "OK %d\n", hp); err != nil {
		s.Close()
		c.Close()
		return
	}
	done := make(chan struct{}, 2)
	// what the host sent after CONNECT is buffered in r
	go func() { io.Copy(s, r); done <- struct{}{} }()
	go func() { io.Copy(c, s); done <- struct{}{} }()
	<-done
	c.Close()
	s.Close()
	<-done
	m.mu.Lock()
	m.cur, m.lastClose = nil, time.Now()
	m.mu.Unlock()
}

// parseConnect reads "CONNECT <port>\n".
func parseConnect(line string) (uint32, error) {
	rest, ok := strings.CutPrefix(line, "CONNECT ")
	if !ok || !strings.HasSuffix(rest, "\n") {
		return 0, fmt.Errorf("not a CONNECT line: %q", line)
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(rest, "\n"), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("CONNECT: port %q", strings.TrimSpace(rest))
	}
	return uint32(n), nil
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "cloud-hypervisor (stand-in): %s: "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, a...)...)
}
