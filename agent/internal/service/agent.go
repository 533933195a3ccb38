package service

import (
	"context"
	"fmt"
	"net"
	"time"

	runc "github.com/containerd/go-runc"
	"github.com/containerd/ttrpc"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
	"github.com/magnetar-runtime/magnetar/shared/rpcserver"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

// Config assembles an agent.
type Config struct {
	// Backend runs the containers (agent/internal/runcbe in the guest).
	Backend task.Backend
	// StateDir holds the task server's records (/run/magnetar/task).
	StateDir string
	// IORoot holds the stdio FIFOs (agentapi.IORoot in the guest).
	IORoot string
	System System
	// Monitor starts and waits for DebugExec's processes (the reaper).
	Monitor runc.ProcessMonitor
	// Features are reported by Health.
	Features []string
	// BootTime is reported by Health (zero: now).
	BootTime time.Time
}

// Agent is the assembled server.
type Agent struct {
	Server *ttrpc.Server
	Tasks  *task.Service
	Events *EventQueue
	Hub    *Hub
}

// New builds the ttrpc server (shared/rpcserver: panics recovered) with the
// Task, Sandbox and Streams services.
func New(life context.Context, cfg Config) (*Agent, error) {
	if cfg.Backend == nil || cfg.System == nil || cfg.Monitor == nil || cfg.StateDir == "" || cfg.IORoot == "" {
		return nil, fmt.Errorf("agent config: Backend, System, Monitor, StateDir and IORoot are required")
	}
	if cfg.BootTime.IsZero() {
		cfg.BootTime = time.Now()
	}
	q := NewEventQueue(0)
	hub := NewHub(cfg.IORoot)
	ts, err := task.New(life, cfg.StateDir, WithStreams(cfg.Backend, hub), q)
	if err != nil {
		return nil, err
	}
	// a panicking handler must not take PID 1, and the guest kernel, with it
	srv, err := rpcserver.NewTTRPC()
	if err != nil {
		return nil, err
	}
	ts.Register(srv)
	agentapi.RegisterSandboxService(srv, &sandboxService{sys: cfg.System, events: q, monitor: cfg.Monitor,
		features: cfg.Features, boot: cfg.BootTime})
	agentapi.RegisterStreamsService(srv, &streams{h: hub})
	return &Agent{Server: srv, Tasks: ts, Events: q, Hub: hub}, nil
}

// Serve serves l until it fails or the server is closed.
func (a *Agent) Serve(ctx context.Context, l net.Listener) error { return a.Server.Serve(ctx, l) }
