package daemon

import (
	"context"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/containerd/log"
)

// notify sends a state line to systemd when run as a Type=notify unit.
func notify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = conn.Write([]byte(state))
}

// watchdog pings systemd at half the WatchdogSec interval, each time only
// after healthy returned nil (a daemon that no longer answers its Sandbox API
// is then killed and restarted by systemd; its pods keep running).
func watchdog(ctx context.Context, healthy func(context.Context, time.Duration) error) {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return
	}
	every := time.Duration(usec) * time.Microsecond / 2
	t := time.NewTicker(every)
	defer t.Stop()
	log.G(ctx).WithField("interval", time.Duration(usec)*time.Microsecond).Debug("systemd watchdog enabled")
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if healthy != nil {
				if err := healthy(ctx, every/2); err != nil {
					log.G(ctx).WithError(err).Error("unhealthy: not pinging the systemd watchdog")
					continue
				}
			}
			notify("WATCHDOG=1")
		}
	}
}
