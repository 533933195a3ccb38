package service

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
)

// The agent is PID 1: a panicking handler must become an Internal answer,
// and the agent must answer the next call.

func TestUnaryPanicIsAnsweredAndTheAgentServesOn(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := h.client.Sandbox().Setup(ctx, &agentapi.SetupRequest{Hostname: panicHostname})
	if !errdefs.IsInternal(err) || !strings.Contains(err.Error(), "/magnetar.agent.v1.Sandbox/Setup") ||
		!strings.Contains(err.Error(), "fake system: SetHostname") {
		t.Fatalf("Setup whose handler panics = %v, want Internal naming the method and the panic", err)
	}
	if _, err := h.client.Sandbox().Health(ctx, &agentapi.HealthRequest{}); err != nil {
		t.Fatalf("Health after a panic: %v", err)
	}
	// Setup's lock was released by the panic
	if _, err := h.client.Sandbox().Setup(ctx, &agentapi.SetupRequest{Hostname: "pod-1"}); err != nil {
		t.Fatalf("Setup after a panic: %v", err)
	}
	if got := h.sys.appliedCopy(); len(got) != 1 || got[0] != "hostname pod-1" {
		t.Fatalf("applied %q, want the second Setup's hostname", got)
	}
}

func TestStreamPanicIsAnsweredAndTheAgentServesOn(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// a hub bug: the streams of "ghost" are registered as nil, so both
	// handlers dereference nil
	hub := h.agent.Hub
	hub.mu.Lock()
	hub.outs[key{procKey{"ghost", ""}, agentapi.Stdout}] = nil
	hub.ins[key{procKey{"ghost", ""}, agentapi.Stdin}] = nil
	hub.mu.Unlock()

	out, err := h.client.Stdout(ctx, "ghost", "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(out)
	out.Close()
	if !errdefs.IsInternal(err) || !strings.Contains(err.Error(), "/magnetar.agent.v1.Streams/Output") {
		t.Fatalf("Output whose handler panics = %v, want Internal naming the method", err)
	}

	in, err := h.client.Stdin(ctx, "ghost", "")
	if err != nil {
		t.Fatal(err)
	}
	_, werr := in.Write([]byte("x"))
	err = errors.Join(werr, in.Close())
	if !errdefs.IsInternal(err) || !strings.Contains(err.Error(), "/magnetar.agent.v1.Streams/Input") {
		t.Fatalf("Input whose handler panics = %v, want Internal naming the method", err)
	}

	// the next calls, unary and streams, are served
	if _, err := h.client.Sandbox().Health(ctx, &agentapi.HealthRequest{}); err != nil {
		t.Fatalf("Health after the panics: %v", err)
	}
	h.createStart(t, "c1", "exit=0")
	if in, err = h.client.Stdin(ctx, "c1", ""); err != nil {
		t.Fatal(err)
	}
	if err := in.Close(); err != nil {
		t.Fatalf("stdin after the panics: %v", err)
	}
	if out, err = h.client.Stdout(ctx, "c1", ""); err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if b, err := io.ReadAll(out); err != nil || string(b) != "hello\n" {
		t.Fatalf("stdout after the panics: %q, %v", b, err)
	}
}
