package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
)

// AgentVersion is the agent binary's version (set with -ldflags -X).
var AgentVersion = "dev"

// System is what Setup, SyncClock and Shutdown change in the guest. The real
// one is agent/internal/guest; tests use a fake.
type System interface {
	// SysctlExists checks that a sysctl key names a file under /proc/sys.
	SysctlExists(key string) error
	// AddEntropy mixes the host's random bytes into the kernel's pool and
	// reseeds its CRNG, so that random numbers drawn afterwards differ from
	// those of any guest booted or restored from the same image.
	AddEntropy(b []byte) error
	SetHostname(name string) error
	WriteResolvConf(data []byte) error
	SetSysctl(key, value string) error
	ConfigureLink(l Link) error
	AddRoute(r RouteSpec) error
	StepClock(d time.Duration) error
	PowerOff(reason string)
}

type sandboxService struct {
	sys      System
	events   *EventQueue
	monitor  runc.ProcessMonitor
	features []string
	boot     time.Time
	setupMu  sync.Mutex
	shutOnce sync.Once
}

func (s *sandboxService) Health(ctx context.Context, r *agentapi.HealthRequest) (*agentapi.HealthResponse, error) {
	if v := r.GetClientVersion(); v != "" && !strings.HasPrefix(v, fmt.Sprintf("%d.", agentapi.Major)) {
		log.G(ctx).WithFields(log.Fields{"client": v, "agent": agentapi.Version}).Warn("host speaks another protocol major")
	}
	return &agentapi.HealthResponse{Version: agentapi.Version, Major: agentapi.Major, Minor: agentapi.Minor,
		AgentVersion: AgentVersion, BootTime: timestamppb.New(s.boot), Pid: uint32(os.Getpid()), Features: s.features}, nil
}

func (s *sandboxService) Setup(ctx context.Context, r *agentapi.SetupRequest) (*emptypb.Empty, error) {
	p, err := Validate(r, s.sys.SysctlExists)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	s.setupMu.Lock()
	defer s.setupMu.Unlock()
	if err := s.apply(p); err != nil {
		log.G(ctx).WithError(err).Error("sandbox setup failed")
		return nil, errgrpc.ToGRPC(err)
	}
	log.G(ctx).WithFields(log.Fields{"entropy_bytes": len(p.Entropy), "hostname": p.Hostname, "sysctls": len(p.Sysctls), "links": len(p.Links), "routes": len(p.Routes)}).Info("sandbox set up")
	return &emptypb.Empty{}, nil
}

func (s *sandboxService) apply(p *Plan) error {
	// first: the rest draws random numbers already (links coming up start
	// IPv6 autoconfiguration with random delays and nonces)
	if p.Entropy != nil {
		if err := s.sys.AddEntropy(p.Entropy); err != nil {
			return fmt.Errorf("entropy: %w", err)
		}
	}
	if p.Hostname != "" {
		if err := s.sys.SetHostname(p.Hostname); err != nil {
			return fmt.Errorf("hostname: %w", err)
		}
	}
	if p.ResolvConf != nil {
		if err := s.sys.WriteResolvConf(p.ResolvConf); err != nil {
			return fmt.Errorf("dns: %w", err)
		}
	}
	for _, sc := range p.Sysctls {
		if err := s.sys.SetSysctl(sc.Key, sc.Value); err != nil {
			return fmt.Errorf("sysctls[%s]: %w", sc.Key, err)
		}
	}
	for i, l := range p.Links {
		if err := s.sys.ConfigureLink(l); err != nil {
			return fmt.Errorf("interfaces[%d]: %w", i, err)
		}
	}
	for i, r := range p.Routes {
		if err := s.sys.AddRoute(r); err != nil {
			return fmt.Errorf("routes[%d]: %w", i, err)
		}
	}
	return nil
}

// maxStep bounds a clock step (a wild delta is a bug on the host).
const maxStep = 100 * 365 * 24 * time.Hour

func (s *sandboxService) SyncClock(ctx context.Context, r *agentapi.SyncClockRequest) (*agentapi.SyncClockResponse, error) {
	arrive := time.Now()
	if d := time.Duration(r.GetDeltaNs()); d != 0 {
		if d > maxStep || d < -maxStep {
			return nil, errgrpc.ToGRPC(fmt.Errorf("delta_ns: %s is beyond 100 years: %w", d, errdefs.ErrInvalidArgument))
		}
		if err := s.sys.StepClock(d); err != nil {
			return nil, errgrpc.ToGRPC(fmt.Errorf("step clock by %s: %w", d, err))
		}
		log.G(ctx).WithField("delta", d).Info("guest clock stepped")
	}
	return &agentapi.SyncClockResponse{GuestArriveTime: timestamppb.New(arrive), GuestSendTime: timestamppb.Now()}, nil
}

func (s *sandboxService) GetEvents(ctx context.Context, r *agentapi.GetEventsRequest) (*agentapi.GetEventsResponse, error) {
	max := int(r.GetMax())
	if max <= 0 || max > 1024 {
		max = 256
	}
	timeout := time.Duration(r.GetTimeoutMs()) * time.Millisecond
	switch {
	case timeout <= 0:
		timeout = 10 * time.Second
	case timeout > time.Minute:
		timeout = time.Minute
	}
	evs, dropped := s.events.Get(ctx, r.GetAfterSeq(), max, timeout)
	return &agentapi.GetEventsResponse{Events: evs, Dropped: dropped}, nil
}

// maxOutput bounds each of DebugExec's captured streams.
const maxOutput = 1 << 20

type capped struct {
	mu        sync.Mutex
	b         bytes.Buffer
	truncated bool
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := maxOutput - c.b.Len(); room < len(p) {
		c.b.Write(p[:max(room, 0)])
		c.truncated = true
		return len(p), nil
	}
	c.b.Write(p)
	return len(p), nil
}

const guestPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func (s *sandboxService) DebugExec(ctx context.Context, r *agentapi.DebugExecRequest) (*agentapi.DebugExecResponse, error) {
	resp, err := s.debugExec(ctx, r)
	return resp, errgrpc.ToGRPC(err)
}

func (s *sandboxService) debugExec(ctx context.Context, r *agentapi.DebugExecRequest) (*agentapi.DebugExecResponse, error) {
	args := r.GetArgs()
	if len(args) == 0 || args[0] == "" {
		return nil, invalid("args", "must name a program")
	}
	for i, a := range args {
		if strings.IndexByte(a, 0) >= 0 {
			return nil, invalid(fmt.Sprintf("args[%d]", i), "contains a NUL byte")
		}
	}
	env := []string{"PATH=" + guestPath, "HOME=/"}
	for i, e := range r.GetEnv() {
		k, _, ok := strings.Cut(e, "=")
		if !ok || k == "" || strings.IndexByte(e, 0) >= 0 {
			return nil, invalid(fmt.Sprintf("env[%d]", i), "%q is not KEY=VALUE", e)
		}
		env = append(env, e)
	}
	dir := r.GetDir()
	if dir == "" {
		dir = "/"
	}
	if !filepath.IsAbs(dir) {
		return nil, invalid("dir", "%q must be absolute", dir)
	}
	timeout := time.Duration(r.GetTimeoutMs()) * time.Millisecond
	switch {
	case timeout <= 0:
		timeout = 10 * time.Second
	case timeout > 5*time.Minute:
		timeout = 5 * time.Minute
	}
	prog := args[0]
	if !filepath.IsAbs(prog) {
		p, err := lookPath(prog)
		if err != nil {
			return nil, fmt.Errorf("args[0]: %q not found in %s: %w", prog, guestPath, errdefs.ErrNotFound)
		}
		prog = p
	}
	cmd := &exec.Cmd{Path: prog, Args: args, Env: env, Dir: dir, Stdin: bytes.NewReader(r.GetStdin()),
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true}, WaitDelay: time.Second}
	var stdout, stderr capped
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	ec, err := s.monitor.Start(cmd)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", prog, err)
	}
	log.G(ctx).WithFields(log.Fields{"args": args, "pid": cmd.Process.Pid}).Info("debug exec")
	stop := time.AfterFunc(timeout, func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	cancelStop := context.AfterFunc(ctx, func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	status, err := s.monitor.Wait(cmd, ec)
	stop.Stop()
	cancelStop()
	if err != nil {
		return nil, fmt.Errorf("wait %s: %w", prog, err)
	}
	return &agentapi.DebugExecResponse{ExitCode: int32(status), Stdout: stdout.b.Bytes(), Stderr: stderr.b.Bytes(),
		Truncated: stdout.truncated || stderr.truncated}, nil
}

func lookPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		return "", errors.New("relative path")
	}
	for _, d := range filepath.SplitList(guestPath) {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}

// shutdownDelay lets the Shutdown answer reach the host before power-off.
const shutdownDelay = 100 * time.Millisecond

func (s *sandboxService) Shutdown(ctx context.Context, r *agentapi.ShutdownRequest) (*emptypb.Empty, error) {
	reason := r.GetReason()
	if reason == "" {
		reason = "host asked"
	}
	if len(reason) > 256 {
		reason = reason[:256]
	}
	s.shutOnce.Do(func() {
		log.G(ctx).WithField("reason", reason).Warn("shutdown requested: powering off")
		time.AfterFunc(shutdownDelay, func() { s.sys.PowerOff(reason) })
	})
	return &emptypb.Empty{}, nil
}
