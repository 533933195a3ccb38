package main

import (
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseLogfmt(t *testing.T) {
	f := parseLogfmt(`time="2026-12-03T10:43:39.448533792Z" level=info msg="RunPodSandbox for name:\"smoke\" uid:\"ba11\" attempt:1" stage="starting the VMM" n=3`)
	if f["level"] != "info" || f["msg"] != `RunPodSandbox for name:"smoke" uid:"ba11" attempt:1` || f["stage"] != "starting the VMM" || f["n"] != "3" {
		t.Errorf("parsed %q", f)
	}
	l, ok := parseLogLine(`time="2026-12-03T10:43:39.5Z" level=debug msg="pod start" sandbox_id=abc stage=network`)
	if !ok || l.Msg != "pod start" || l.F["sandbox_id"] != "abc" || l.T.Nanosecond() != 500000000 {
		t.Errorf("line %+v %v", l, ok)
	}
	if _, ok := parseLogLine("=== 2026-12-03 start magnetar-vmm"); ok {
		t.Error("a harness marker parsed as a log line")
	}
	if v := logMS(map[string]string{"e": "1.25s", "n": "80"}, "e"); v != 1250 {
		t.Errorf("duration %v", v)
	}
	if v := logMS(map[string]string{"n": "80"}, "n"); v != 80 {
		t.Errorf("integer ms %v", v)
	}
}

func TestStats(t *testing.T) {
	s := stats([]float64{5, -1, 1, 3})
	if s.Med != 3 || s.Min != 1 || s.Max != 5 || s.N != 3 {
		t.Errorf("odd: %+v", s)
	}
	if s := stats([]float64{1, 2, 3, 10}); s.Med != 2.5 {
		t.Errorf("even: %+v", s)
	}
	if s := stats(nil); s.N != 0 || s.Med != -1 {
		t.Errorf("empty: %+v", s)
	}
}

func TestTomlString(t *testing.T) {
	p := t.TempDir() + "/vmm.toml"
	writeFile(t, p, "run_dir = \"/w/run/vmm\"\n[vm]\nkernel = \"/k\"\nmemory_mib = 512\n")
	if v := tomlString(p, "run_dir"); v != "/w/run/vmm" {
		t.Errorf("run_dir %q", v)
	}
	if v := tomlString(p, "memory_mib"); v != "512" {
		t.Errorf("memory_mib %q", v)
	}
}

// TestBreakdown builds a pod start's lines as the sandboxer, containerd and
// the agent write them and checks that the steps add up to the whole.
func TestBreakdown(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	at := func(msec int) time.Time { return t0.Add(time.Duration(msec) * time.Millisecond) }
	line := func(msec int, rest string) logLine {
		l, ok := parseLogLine(fmt.Sprintf(`time="%s" level=debug %s`, at(msec).Format(time.RFC3339Nano), rest))
		if !ok {
			t.Fatalf("bad line %q", rest)
		}
		return l
	}
	id, cid, name := "sb1", "c1", "vmmbench-crictl-1"
	sb := []logLine{
		line(60, `msg="pod created" memory_mib=256 sandbox_id=sb1`),
		line(63, `msg="pod start" sandbox_id=sb1 stage=network`),
		line(66, `msg="pod start" sandbox_id=sb1 stage="starting the VMM"`),
		line(250, `msg="the VMM answers on QMP" sandbox_id=sb1`),
		line(5250, `msg="agent connected" sandbox_id=sb1`),
		line(5330, `msg="pod start" sandbox_id=sb1 stage=running`),
		line(5331, `msg="pod VM ready" agent_ms=5000 setup_ms=80 total_ms=5268 vmm_ms=187 sandbox_id=sb1`),
		line(5333, `msg="sandbox started" sandbox_id=sb1`),
		line(7000, `msg="container created in the guest" container_id=c1 pid=9 sandbox_id=sb1`),
	}
	cd := []logLine{
		line(10, `msg="RunPodSandbox for name:\"vmmbench-crictl-1\" uid:\"x\" namespace:\"vmmbench\" attempt:0"`),
		line(5340, `msg="RunPodSandbox for name:\"vmmbench-crictl-1\" uid:\"x\" namespace:\"vmmbench\" attempt:0 returns sandbox id \"sb1\""`),
		line(5400, `msg="CreateContainer within sandbox \"sb1\" for container name:\"sleep\""`),
		line(5420, `msg="CreateContainer within sandbox \"sb1\" for name:\"sleep\" returns container id \"c1\""`),
		line(5500, `msg="StartContainer for \"c1\""`),
		line(8000, `msg="StartContainer for \"c1\" returns successfully"`),
	}
	con := []conLine{
		{At: at(4000), Text: `time="1970-01-01T00:00:03Z" level=info msg="guest initialised" elapsed=800ms t_mounts=5ms t_modules=700ms t_share=90ms`},
		{At: at(4900), Text: `time="1970-01-01T00:00:04Z" level=info msg="magnetar-agent serving" protocol=1.0.0`},
		{At: at(7001), Text: `time="` + at(7003).Format(time.RFC3339Nano) + `" level=info msg="container created" container_id=c1 pid=9`},
	}
	tm := podTimes{callStart: at(0), podReturned: at(5360), createStart: at(5361), createEnd: at(5440), startStart: at(5441),
		ctrDir: at(5600), ctrConfig: at(5620), startEnd: at(8030), running: at(8040)}
	s := newPodSample("crictl")
	s.SandboxID, s.ContainerID = id, cid
	if missing := breakdown(&s, &tm, filter(sb, "sandbox_id", id), sb, cd, con, name); len(missing) > 0 {
		t.Fatalf("missing: %v", missing)
	}
	want := map[string][2]float64{
		"kernel":    {s.Kernel, 2950}, // QMP at 250, main() at 4000-800
		"vmm":       {s.VMMStart, 184},
		"serving":   {s.ServingToReady, 350},
		"setup":     {s.Setup, 80},
		"share":     {s.ShareRootfs, 20},
		"guest cr.": {s.GuestCreate, 1380},
		"guest st.": {s.GuestStart, 1000},
		"total":     {s.Total, 8040},
		"memory":    {float64(s.MemoryMiB), 256},
	}
	for k, v := range want {
		if math.Abs(v[0]-v[1]) > 0.01 {
			t.Errorf("%s = %v, want %v", k, v[0], v[1])
		}
	}
	if s.AgentCreated == nil || *s.AgentCreated != -3 {
		t.Errorf("agent created skew %v, want -3", s.AgentCreated)
	}
	if sum := s.pieceSum(); math.Abs(sum-s.RunPod) > 0.01 {
		t.Errorf("steps add up to %v, RunPodSandbox was %v", sum, s.RunPod)
	}
	// own share: all but kernel (2950) and runc (1380 + 1000)
	if v := s.ownShare(); math.Abs(v-(8040-2950-2380)/8040.0) > 1e-9 {
		t.Errorf("own share %v", v)
	}
	var b strings.Builder
	r := &results{Runs: 1, GuestMiB: 256, Pods: []podSample{s}, Bare: []bareSample{{ToInit: 4000, Kernel: 3000, VMMStart: 40, GuestInit: 2900, Modules: 600, ToModules: 4700}},
		Machine: map[string]string{}, Image: map[string]string{}}
	r.report(&b)
	if !strings.HasPrefix(r.Summary, "bench-vmm: 1 run(s), bare boot 4000 ms") {
		t.Errorf("summary %q", r.Summary)
	}
	if !strings.Contains(r.csv(), "crictl,0,0,guest_create,1380.000,ms") {
		t.Errorf("csv:\n%s", r.csv())
	}
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
