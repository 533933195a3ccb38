// Command notifylisten stands in for systemd's notification socket in the
// package tests (hack/packages/test.sh), where systemd is not PID 1: it binds
// a unixgram socket, the daemon gets its path as NOTIFY_SOCKET, and every
// datagram (READY=1, WATCHDOG=1, STOPPING=1, ...) is printed on one line.
//
//	notifylisten SOCKET
package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: notifylisten SOCKET")
		os.Exit(2)
	}
	path := os.Args[1]
	_ = os.Remove(path)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "notifylisten:", err)
		os.Exit(1)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		conn.Close()
		os.Remove(path)
		os.Exit(0)
	}()
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			os.Exit(0)
		}
		// one line per datagram, flushed at once (stdout is a file)
		fmt.Println(strings.ReplaceAll(strings.TrimSpace(string(buf[:n])), "\n", " "))
	}
}
