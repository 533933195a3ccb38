package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/magnetar-runtime/magnetar/hack/vm/guestvm"
)

func TestStats(t *testing.T) {
	med, lo, hi, n := stats([]float64{5, -1, 1, 3})
	if med != 3 || lo != 1 || hi != 5 || n != 3 {
		t.Errorf("odd: %v %v %v %v", med, lo, hi, n)
	}
	if med, _, _, _ := stats([]float64{1, 2, 3, 10}); med != 2.5 {
		t.Errorf("even median %v", med)
	}
	if _, _, _, n := stats([]float64{-1}); n != 0 {
		t.Errorf("unmeasured counted: %d", n)
	}
}

func TestReport(t *testing.T) {
	r := &result{Runs: 2, Accel: "tcg", Image: map[string]string{"kernel": "k"},
		Marker: []sample{{VMMStart: 40, ToInit: 2000, GuestInit: 1500, Modules: 500, ToModules: 2500, AgentReady: -1, Shutdown: 80},
			{VMMStart: 50, ToInit: 2200, GuestInit: 1600, Modules: 600, ToModules: 2800, AgentReady: -1, Shutdown: 90}},
		Agent: []sample{{VMMStart: 40, ToInit: 2100, GuestInit: -1, Modules: 550, InitWork: 550, ToModules: -1, AgentReady: 2600, Shutdown: 70},
			{VMMStart: 45, ToInit: 2300, GuestInit: -1, Modules: -1, InitWork: -1, ToModules: -1, AgentReady: 3000, Shutdown: 75}},
		RTT: []float64{400, 500, 600}}
	var b bytes.Buffer
	report(&b, r)
	out := b.String()
	for _, want := range []string{"QEMU start → /init (bare guest boot)", "2100", "ratio agent ready / bare guest boot (to /init): 1.33×", "p50 500 µs"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if r.Medians["agent_init"] != 550 {
		t.Errorf("agent modules median from one measured run: %v", r.Medians["agent_init"])
	}
}

func TestAgentPhases(t *testing.T) {
	t0 := time.Now()
	lines := []guestvm.Line{
		{At: t0.Add(3000 * time.Millisecond), Text: `time="…" level=info msg="guest initialised" agent=magnetar-agent elapsed=1.25s modules=20 share="virtiofs:magnetar" t_modules=812ms t_mounts=3.5ms t_share=200ms`},
		{At: t0.Add(3100 * time.Millisecond), Text: `time="…" level=info msg="magnetar-agent serving" agent=magnetar-agent protocol=1.0.0`},
	}
	s := sample{Modules: -1, ToInit: -1, Serving: -1, InitWork: -1, Share: -1}
	agentPhases(lines, t0, &s)
	if s.InitWork != 1250 || s.ToInit != 1750 || s.Serving != 3100 || s.Modules != 812 || s.Share != 200 {
		t.Errorf("phases %+v", s)
	}
	s = sample{Modules: -1, ToInit: -1, Serving: -1, InitWork: -1, Share: -1}
	agentPhases([]guestvm.Line{{At: t0, Text: `msg="guest initialised" elapsed=812ms`}}, t0.Add(-time.Second), &s)
	if s.InitWork != 812 || s.ToInit != 188 || s.Modules != -1 {
		t.Errorf("older agent %+v", s)
	}
}
