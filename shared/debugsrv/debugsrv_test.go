package debugsrv

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func client(sock string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
}

func get(t *testing.T, c *http.Client, path string) (int, string) {
	t.Helper()
	resp, err := c.Get("http://magnetar" + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

func TestServeProfilesOnPrivateSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "run", "x-debug.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := Serve(ctx, sock); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
		t.Fatalf("debug socket mode %v, want a socket with 0600", st.Mode())
	}
	c := client(sock)
	code, body := get(t, c, "/debug/pprof/")
	if code != http.StatusOK || !strings.Contains(body, "goroutine") || !strings.Contains(body, "heap") {
		t.Fatalf("index: %d %q", code, body)
	}
	code, body = get(t, c, "/debug/pprof/heap")
	// a gzipped profile.proto
	if code != http.StatusOK || !strings.HasPrefix(body, "\x1f\x8b") {
		t.Fatalf("heap: %d, %d bytes, not gzip", code, len(body))
	}
	code, body = get(t, c, "/debug/pprof/goroutine?debug=1")
	if code != http.StatusOK || !strings.Contains(body, "TestServeProfilesOnPrivateSocket") {
		t.Fatalf("goroutines: %d %q", code, body)
	}
	for _, p := range []string{"/", "/metrics", "/debug/vars"} {
		if code, _ := get(t, c, p); code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404: only the profiles are served", p, code)
		}
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(sock); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the debug socket is still there after the daemon's lifetime ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServeRefusesALiveSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "x-debug.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := Serve(ctx, sock); err != nil {
		t.Fatal(err)
	}
	if err := Serve(ctx, sock); err == nil || !strings.Contains(err.Error(), "debug socket") {
		t.Fatalf("a second server on a live socket: %v, want an error naming the debug socket", err)
	}
}
