package proc

import (
	"os"
	"strconv"
	"strings"
)

// Process is one live process as /proc shows it.
type Process struct {
	PID  int
	Args []string
}

// Line is the command line joined by spaces, for messages.
func (p Process) Line() string { return strings.Join(p.Args, " ") }

// Find lists the live processes, other than this one, whose command line
// match accepts. A zombie has an empty command line and is never listed.
// Processes come and go while /proc is read: the result is a snapshot.
func Find(match func(args []string) bool) []Process {
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	var out []Process
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		if match(args) {
			out = append(out, Process{PID: pid, Args: args})
		}
	}
	return out
}

// Naming accepts a command line with an argument that contains s.
func Naming(s string) func(args []string) bool {
	return func(args []string) bool {
		for _, a := range args {
			if strings.Contains(a, s) {
				return true
			}
		}
		return false
	}
}
