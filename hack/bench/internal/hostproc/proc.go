package hostproc

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Proc is one process as read from /proc.
type Proc struct {
	Pid, PPid int
	State     byte
	Comm      string
	Args      []string
	Exe       string // /proc/<pid>/exe without " (deleted)"; empty when unreadable
	CPUTicks  int64  // utime + stime, in USER_HZ ticks
}

// Cmdline is the process's arguments joined by spaces.
func (p *Proc) Cmdline() string { return strings.Join(p.Args, " ") }

// Zombie says whether the process has exited but not been reaped (Z, X).
func (p *Proc) Zombie() bool { return p.State == 'Z' || p.State == 'X' }

// Scan reads every process of the host, zombies included. Processes that
// vanish while being read are skipped.
func Scan() (map[int]*Proc, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	ps := map[int]*Proc{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, err := Read(pid); err == nil {
			ps[pid] = p
		}
	}
	return ps, nil
}

// Read reads one process: its stat, command line and executable.
func Read(pid int) (*Proc, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	p, err := parseStat(pid, stat)
	if err != nil {
		return nil, err
	}
	if cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && len(cl) > 0 {
		p.Args = strings.Split(strings.TrimRight(string(cl), "\x00"), "\x00")
	}
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
		p.Exe = strings.TrimSuffix(exe, " (deleted)")
	}
	return p, nil
}

// parseStat reads /proc/<pid>/stat: pid (comm) state ppid … utime stime …;
// comm may hold spaces and parentheses.
func parseStat(pid int, stat []byte) (*Proc, error) {
	open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if open < 0 || end < open || end+2 >= len(stat) {
		return nil, fmt.Errorf("pid %d: bad stat", pid)
	}
	f := strings.Fields(string(stat[end+2:]))
	if len(f) < 2 {
		return nil, fmt.Errorf("pid %d: bad stat", pid)
	}
	p := &Proc{Pid: pid, Comm: string(stat[open+1 : end]), State: f[0][0]}
	p.PPid, _ = strconv.Atoi(f[1])
	if len(f) >= 13 { // utime and stime are fields 14 and 15 of the whole line
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		p.CPUTicks = ut + st
	}
	return p, nil
}
