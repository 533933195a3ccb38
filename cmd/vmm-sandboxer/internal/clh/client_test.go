package clh

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/shared/clhapi"
	"github.com/magnetar-runtime/magnetar/shared/clhapi/clhvalidate"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestOperationsAreTheDocuments: every operation the client sends exists in
// the document with that method, and every status it takes for success is
// one the document defines.
func TestOperationsAreTheDocuments(t *testing.T) {
	v, err := clhvalidate.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range operations {
		var body []byte
		switch op.String() {
		case opCreate.String():
			body = []byte(`{"payload":{}}`)
		case opAddNet.String():
			body = []byte(`{}`)
		}
		r := newRequest(t, op, body)
		ex, err := v.Request(context.Background(), r)
		if err != nil {
			t.Errorf("%s: %v", op, err)
			continue
		}
		for _, s := range op.ok {
			if !ex.Documented(s) {
				t.Errorf("%s: success status %d is not in the document (%v)", op, s, ex.Statuses())
			}
		}
	}
}

// TestClientExchanges drives every operation against a fake API that checks
// each request and response against the document; the tap descriptors of
// vm.add-net arrive with SCM_RIGHTS.
func TestClientExchanges(t *testing.T) {
	f := startFake(t, fakeModeServe)
	c := NewClient(f.socket)
	ctx := ctxT(t, 10*time.Second)
	p, err := c.Ping(ctx)
	if err != nil || p.Version != "fake" || p.Pid == nil || *p.Pid != int64(os.Getpid()) {
		t.Fatalf("ping: %+v, %v", p, err)
	}
	if _, err := c.Info(ctx); !errdefs.IsNotFound(err) {
		t.Errorf("info before create: %v, want NotFound (404)", err)
	}
	if err := c.BootVM(ctx); !errdefs.IsNotFound(err) {
		t.Errorf("boot before create: %v, want NotFound (404)", err)
	}
	dir := t.TempDir()
	cfg := testConfig(dir, "/run/share", 0)
	body, err := VMConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CreateVM(ctx, body); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateVM(ctx, body); !errdefs.IsUnknown(err) || !strings.Contains(err.Error(), "500") {
		t.Errorf("second create: %v, want the VMM's 500", err)
	}
	if err := c.CreateVM(ctx, body); !errors.As(err, new(*APIError)) {
		t.Errorf("an error answer is not an *APIError: %T", err)
	}
	tap0, tap1 := tempFile(t), tempFile(t)
	if info, err := c.AddNet(ctx, NetConfig(0, vm.NIC{MAC: "02:00:00:00:00:01", MTU: 1450}), tap0); err != nil || info != nil {
		t.Fatalf("cold add-net: %+v, %v", info, err)
	}
	if err := c.BootVM(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil || info.State != clhapi.Running || info.Config.Cpus.BootVcpus != 2 {
		t.Fatalf("info: %+v, %v", info, err)
	}
	hot, err := c.AddNet(ctx, NetConfig(1, vm.NIC{MAC: "02:00:00:00:00:02"}), tap1)
	if err != nil || hot == nil || hot.Id != "net1" || hot.Bdf == "" {
		t.Fatalf("hot add-net: %+v, %v", hot, err)
	}
	f.mu.Lock()
	if len(f.netFD) != 2 || len(f.netFD[0]) != 1 || len(f.netFD[1]) != 1 || !sameFile(f.netFD[0][0], tap0) || !sameFile(f.netFD[1][0], tap1) {
		t.Errorf("descriptors received with add-net: %v", f.netFD)
	}
	f.mu.Unlock()
	if err := c.ShutdownVM(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.ShutdownVM(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("shutdown of a VM shut down: %v, want FailedPrecondition (405)", err)
	}
	if err := c.ShutdownVMM(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestClientBoundedByContext: a call ends with its context, and a socket
// nobody serves is Unavailable.
func TestClientBoundedByContext(t *testing.T) {
	c := NewClient(t.TempDir() + "/none.sock")
	if _, err := c.Ping(ctxT(t, time.Second)); !errdefs.IsUnavailable(err) {
		t.Errorf("ping of no socket: %v, want Unavailable", err)
	}
	f := startFake(t, fakeModeServe)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := NewClient(f.socket).Ping(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("ping with a cancelled context: %v", err)
	}
	if _, err := NewClient(f.socket).AddNet(ctx, NetConfig(0, vm.NIC{MAC: "02:00:00:00:00:01"}), tempFile(t)); !errors.Is(err, context.Canceled) {
		t.Errorf("add-net with a cancelled context: %v", err)
	}
}

func tempFile(t *testing.T) *os.File {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "tap")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
