package hostproc

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func TestParseStat(t *testing.T) {
	// a comm with a space and parentheses; utime 7, stime 5
	stat := "42 (a (b) c) S 7 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 12345 1000 10\n"
	p, err := parseStat(42, []byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if p.Pid != 42 || p.PPid != 7 || p.Comm != "a (b) c" || p.State != 'S' || p.CPUTicks != 12 {
		t.Errorf("parsed %+v", p)
	}
	if p.Zombie() {
		t.Error("S is not a zombie")
	}
	if p, err := parseStat(9, []byte("9 (z) Z 1")); err != nil || !p.Zombie() || p.PPid != 1 || p.CPUTicks != 0 {
		t.Errorf("short stat: %+v %v", p, err)
	}
	for _, bad := range []string{"", "9 (z", "9 z) S 1", "9 (z) S"} {
		if _, err := parseStat(9, []byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestParseRollup(t *testing.T) {
	m, err := parseRollup(strings.NewReader(`55d0c0a00000-7ffd6b5f1000 ---p 00000000 00:00 0                          [rollup]
Rss:                4096 kB
Pss:                1024 kB
Pss_Anon:            512 kB
Shared_Clean:       3000 kB
Private_Clean:       100 kB
Private_Dirty:       200 kB
`))
	if err != nil {
		t.Fatal(err)
	}
	if m != (Mem{Procs: 1, RSS: 4096, PSS: 1024, USS: 300}) {
		t.Errorf("rollup %+v", m)
	}
	if n := parseThreads("Name:\tx\nThreads:\t 7\nSigQ:\t0/1\n"); n != 7 {
		t.Errorf("threads %d", n)
	}
	m.Add(Mem{Procs: 2, Threads: 3, RSS: 1, PSS: 2, USS: 3})
	if m != (Mem{Procs: 3, Threads: 3, RSS: 4097, PSS: 1026, USS: 303}) {
		t.Errorf("add %+v", m)
	}
}

// TestSelf reads the test's own process from the real /proc.
func TestSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip(err)
	}
	p, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if p.PPid != os.Getppid() || !slices.Equal(p.Args, os.Args) || p.Zombie() {
		t.Errorf("self %+v", p)
	}
	if exe, err := os.Executable(); err == nil && p.Exe != exe {
		t.Errorf("exe %q, want %q", p.Exe, exe)
	}
	ps, err := Scan()
	if err != nil || ps[os.Getpid()] == nil {
		t.Errorf("scan lacks self: %v", err)
	}
	if _, err := os.Stat("/proc/self/smaps_rollup"); err != nil {
		t.Skip(err)
	}
	m, err := ReadMem(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.Procs != 1 || m.Threads < 1 || m.RSS <= 0 || m.PSS <= 0 || m.PSS > m.RSS {
		t.Errorf("self mem %+v", m)
	}
	if s := SumMem([]int{os.Getpid(), -1}); s.Procs != 1 {
		t.Errorf("sum with a missing pid %+v", s)
	}
}
