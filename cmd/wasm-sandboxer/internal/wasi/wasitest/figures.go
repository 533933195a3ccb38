package wasitest

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi"
)

// FiguresEnv turns Figures on; the numbers are for quoting, not asserts.
const FiguresEnv = "MAGNETAR_WASM_FIGURES"

func median(ds []time.Duration) time.Duration {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

func rssKiB() int {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			n, _ := strconv.Atoi(strings.Fields(l)[1])
			return n
		}
	}
	return 0
}

// Figures logs an engine's load and start times and its memory per idle
// instance for the Go guest (and the WAT hello). It runs only with
// MAGNETAR_WASM_FIGURES=1 (go test -v -run Figures).
func Figures(t *testing.T, newEngine func(t *testing.T, cfg wasi.EngineConfig) wasi.Engine) {
	if os.Getenv(FiguresEnv) != "1" {
		t.Skip("set " + FiguresEnv + "=1 to measure")
	}
	s := &suite{newEngine: newEngine}
	ctx := context.Background()
	b := goGuest(t)
	dir := t.TempDir()

	// Cold: compile and write the cache entry.
	e := s.engine(t, wasi.EngineConfig{CacheDir: dir})
	start := time.Now()
	m, err := e.Load(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	cold := time.Since(start)
	var held []time.Duration
	for k := 0; k < 20; k++ {
		m2, _ := s.loadInfo(t, e, b)
		held = append(held, m2.Info().Duration)
		m2.Close()
	}
	// Instantiate + run hello, Go guest and WAT.
	runHello := func(m wasi.Module, args []string) time.Duration {
		var ds []time.Duration
		for k := 0; k < 30; k++ {
			st := time.Now()
			inst, err := m.Start(ctx, &wasi.RunConfig{Args: args})
			if err != nil {
				t.Fatal(err)
			}
			expectExit(t, waitDone(t, inst), 0, "")
			ds = append(ds, time.Since(st))
		}
		return median(ds)
	}
	goHello := runHello(m, []string{"g", "hello"})
	watM := s.load(t, e, wasm(t, watHello))
	watHelloT := runHello(watM, []string{"w"})
	m.Close()

	// Disk: a new engine on the same dir each time (a restarted daemon).
	var disk []time.Duration
	for k := 0; k < 10; k++ {
		e2 := newEngine(t, wasi.EngineConfig{CacheDir: dir})
		m3, info := s.loadInfo(t, e2, b)
		if info.Source != wasi.LoadDisk {
			t.Fatalf("new engine: %+v", info)
		}
		disk = append(disk, info.Duration)
		m3.Close()
		e2.Close()
	}
	t.Logf("Go guest %d bytes: load cold (compile + cache write) %v; memory hit %v; disk hit in a new engine %v (median of 10); instantiate+run hello %v; WAT hello %v (medians of 30)",
		len(b), cold, median(held), median(disk), goHello, watHelloT)

	// Memory per idle instance: Go guests and WAT modules sleeping.
	idle := func(what string, m wasi.Module, args []string, n int) {
		runtime.GC()
		debug.FreeOSMemory()
		base := rssKiB()
		insts := make([]wasi.Instance, n)
		for k := range insts {
			insts[k], _ = s.startReady(t, m, wasi.RunConfig{Args: args})
		}
		runtime.GC()
		debug.FreeOSMemory()
		peak := rssKiB()
		threads := 0
		if ents, err := os.ReadDir("/proc/self/task"); err == nil {
			threads = len(ents)
		}
		var kills []time.Duration
		for _, inst := range insts {
			kills = append(kills, killAndTime(t, inst))
		}
		t.Logf("%d idle %s instances: RSS %d -> %d KiB, %d KiB per instance; %d OS threads; kill latency median %v",
			n, what, base, peak, (peak-base)/n, threads, median(kills))
	}
	idle("Go-guest", s.load(t, e, b), []string{"g", "sleep", "1h"}, 50)
	idle("WAT", s.load(t, e, wasm(t, watSleep(int64(time.Hour)))), []string{"w"}, 200)
}
