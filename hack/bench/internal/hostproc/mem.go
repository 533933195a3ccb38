package hostproc

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Mem is the memory of one or more processes, in KiB (smaps_rollup).
type Mem struct {
	Procs   int   `json:"procs"`
	Threads int   `json:"threads"`
	RSS     int64 `json:"rss_kib"`
	PSS     int64 `json:"pss_kib"`
	USS     int64 `json:"uss_kib"` // Private_Clean + Private_Dirty
}

// Add adds o to m.
func (m *Mem) Add(o Mem) {
	m.Procs += o.Procs
	m.Threads += o.Threads
	m.RSS += o.RSS
	m.PSS += o.PSS
	m.USS += o.USS
}

// ReadMem reads one process's memory (/proc/<pid>/smaps_rollup) and thread
// count (/proc/<pid>/status).
func ReadMem(pid int) (Mem, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return Mem{}, err
	}
	defer f.Close()
	m, err := parseRollup(f)
	if err != nil {
		return Mem{}, err
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Mem{}, err
	}
	m.Threads = parseThreads(string(st))
	return m, nil
}

// SumMem is the memory of pids together; those that cannot be read (gone
// meanwhile) count nothing.
func SumMem(pids []int) Mem {
	var m Mem
	for _, pid := range pids {
		if x, err := ReadMem(pid); err == nil {
			m.Add(x)
		}
	}
	return m
}

// parseRollup reads smaps_rollup's Rss, Pss and Private_* lines (kB).
func parseRollup(r io.Reader) (Mem, error) {
	m := Mem{Procs: 1}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(fs[1], 10, 64)
		switch fs[0] {
		case "Rss:":
			m.RSS = v
		case "Pss:":
			m.PSS = v
		case "Private_Clean:", "Private_Dirty:":
			m.USS += v
		}
	}
	if err := sc.Err(); err != nil {
		return Mem{}, err
	}
	return m, nil
}

// parseThreads is status's Threads: line (0: none).
func parseThreads(status string) int {
	n := 0
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			n, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return n
}
