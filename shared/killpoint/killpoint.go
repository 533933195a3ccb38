package killpoint

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// EnvVar names the kill point of a daemon (NAME or NAME:N).
const EnvVar = "MAGNETAR_KILLPOINT"

// The kill points (see the package documentation).
const (
	ControllerCreateDriver    = "controller.create.driver"
	ControllerCreatePersisted = "controller.create.persisted"
	ControllerStartStarting   = "controller.start.starting"
	ControllerStartStarted    = "controller.start.started"
	TaskCreateStarted         = "task.create.started"
	// VMMPoolClaimed: magnetar-vmm has marked a pool VM as a pod's, before
	// anything of the pod is done to it.
	VMMPoolClaimed = "vmm.pool.claimed"
)

// Common lists the kill points every daemon passes through.
var Common = []string{ControllerCreateDriver, ControllerCreatePersisted,
	ControllerStartStarting, ControllerStartStarted, TaskCreateStarted}

// Names lists every kill point: Common and those of one sandboxer.
var Names = append(slices.Clone(Common), VMMPoolClaimed)

var (
	// armed is the point of this process ("" when none): set by Setup only
	armed string
	// nth is which time armed fires (1: the first)
	nth  int64
	hits atomic.Int64
	// kill ends the process (a test replaces it)
	kill = func() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL) }
)

// Parse reads a kill point spec, NAME or NAME:N with N >= 1.
func Parse(spec string) (name string, n int64, err error) {
	name, count, hasCount := strings.Cut(spec, ":")
	n = 1
	if hasCount {
		n, err = strconv.ParseInt(count, 10, 64)
		if err != nil || n < 1 {
			return "", 0, fmt.Errorf("%s=%q: the count must be a number >= 1", EnvVar, spec)
		}
	}
	if !slices.Contains(Names, name) {
		return "", 0, fmt.Errorf("%s=%q: unknown kill point %q (known: %s)", EnvVar, spec, name, strings.Join(Names, ", "))
	}
	return name, n, nil
}

// Setup arms the kill point of the environment, if any, and returns it
// ("" when none). Call it once, at daemon start, before serving.
func Setup() (string, error) {
	spec := os.Getenv(EnvVar)
	if spec == "" {
		return "", nil
	}
	name, n, err := Parse(spec)
	if err != nil {
		return "", err
	}
	armed, nth = name, n
	hits.Store(0)
	return spec, nil
}

// Hit kills the process if name is its armed point and this is the Nth hit.
func Hit(name string) {
	if armed == "" || armed != name {
		return
	}
	if hits.Add(1) == nth {
		kill()
	}
}
