package runsc

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
)

// fakeSandbox answers each connection's one call with answer(method, arg)
// (nil: it closes the connection without an answer).
func fakeSandbox(t *testing.T, answer func(method string, arg json.RawMessage) any) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "runsc-sb.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				var call struct {
					Method string          `json:"method"`
					Arg    json.RawMessage `json:"arg"`
				}
				if json.NewDecoder(conn).Decode(&call) != nil {
					return
				}
				if a := answer(call.Method, call.Arg); a != nil {
					b, _ := json.Marshal(a)
					_, _ = conn.Write(b)
				}
			}()
		}
	}()
	return sock
}

func TestControlProtocol(t *testing.T) {
	var mu sync.Mutex // the fake answers on goroutines of its own
	var calls []string
	sock := fakeSandbox(t, func(method string, arg json.RawMessage) any {
		mu.Lock()
		calls = append(calls, method+" "+string(arg))
		mu.Unlock()
		switch {
		case method == methodWait && string(arg) == `"seven"`:
			return map[string]any{"success": true, "result": 7 << 8}
		case method == methodWait && string(arg) == `"killed"`:
			return map[string]any{"success": true, "result": 9}
		// as the sentry answers: no CPU time in the event, every
		// container's in containerUsage, by name or by id
		case method == methodEvent && (string(arg) == `"c"` || string(arg) == `"d"`):
			return map[string]any{"success": true, "result": map[string]any{"event": map[string]any{
				"type": "stats", "id": "c", "data": map[string]any{"cpu": map[string]any{"usage": map[string]any{}},
					"memory": map[string]any{"usage": map[string]any{"usage": 4096}}, "pids": map[string]any{"current": 2}}},
				"containerUsage": map[string]any{"name-of-c": 12, "d": 13, "other": 99}}}
		case string(arg) == `"hangup"`:
			return nil
		}
		return map[string]any{"success": false, "err": "container not found"}
	})
	c := Control{Socket: sock}
	ctx := context.Background()
	if code, err := c.Wait(ctx, "seven"); err != nil || code != 7 {
		t.Errorf("Wait: %d %v", code, err)
	}
	if code, err := c.Wait(ctx, "killed"); err != nil || code != 137 {
		t.Errorf("Wait of a killed one: %d %v", code, err)
	}
	st, err := c.Stats(ctx, "c", "name-of-c")
	if err != nil || st.CPU.Usage.Total != 12 || st.Memory.Usage.Usage != 4096 || st.Pids.Current != 2 {
		t.Errorf("Stats: %+v %v", st, err)
	}
	if st, err := c.Stats(ctx, "d", "name-of-d"); err != nil || st.CPU.Usage.Total != 13 {
		t.Errorf("Stats of a container the sentry keys by id: %+v %v", st, err)
	}
	if _, err := c.Wait(ctx, "nope"); err == nil || errdefs.IsUnavailable(err) || err.Error() != "runsc sandbox: containerManager.Wait: container not found" {
		t.Errorf("Wait of an unknown one: %v", err)
	}
	if _, err := c.Wait(ctx, "hangup"); !errdefs.IsUnavailable(err) {
		t.Errorf("Wait on a connection closed without an answer: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 6 || calls[0] != `containerManager.Wait "seven"` || calls[2] != `containerManager.Event "c"` {
		t.Errorf("calls %q", calls)
	}
}
