package main

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// podSample is one pod start, in ms (-1: not measured). Source of each
// figure: H host-timed, G guest-measured, D derived.
type podSample struct {
	Variant     string  `json:"variant"` // runp | crictl
	Name        string  `json:"name"`    // the pod's name (its console: consoles/<name>.log)
	Run         int     `json:"run"`
	Pos         int     `json:"position"`
	SandboxID   string  `json:"sandbox_id"`
	ContainerID string  `json:"container_id,omitempty"`
	VMDir       string  `json:"vm_dir"`
	MemoryMiB   int     `json:"memory_mib"`
	Load1       float64 `json:"load1"`

	// Total: runp: RunPodSandbox; crictl: `crictl runp` started → the
	// container seen running (H).
	Total float64 `json:"total_ms"`
	// RunPod is RunPodSandbox as its caller saw it (our CRI call, or the
	// crictl runp process) (H); CRIRunPod containerd's own (its log) (H).
	RunPod    float64 `json:"runpod_ms"`
	CRIRunPod float64 `json:"cri_runpod_ms"`

	// RunPod, piece by piece (they add up to it):
	CallToCRI      float64 `json:"call_to_cri_ms"`      // H: caller → containerd's "RunPodSandbox for" (crictl: its process start)
	Before         float64 `json:"before_ms"`           // H: containerd → the sandboxer's "pod created": netns, CNI, metadata
	SbCreate       float64 `json:"sb_create_ms"`        // H: "pod created" → Start's network stage (Create persisted, containerd's Start call)
	Network        float64 `json:"network_ms"`          // H: taps + tc in the pod netns
	VMMStart       float64 `json:"vmm_start_ms"`        // H: virtiofsd + QEMU start → QMP greeting
	Virtiofsd      float64 `json:"virtiofsd_ms"`        // H: of which "starting the VMM" → "virtiofsd listening"
	Kernel         float64 `json:"kernel_ms"`           // D: QMP greeting → the agent's main() (kernel, initramfs unpack, Go runtime init)
	AgentInit      float64 `json:"agent_init_ms"`       // G: the agent's main() → "guest initialised" (mounts + modules + share)
	Mounts         float64 `json:"agent_mounts_ms"`     // G
	Modules        float64 `json:"agent_modules_ms"`    // G
	Share          float64 `json:"agent_share_ms"`      // G
	InitToServing  float64 `json:"init_to_serving_ms"`  // H: "guest initialised" → "magnetar-agent serving" (console arrivals)
	ServingToReady float64 `json:"serving_to_ready_ms"` // H: "serving" on the console → the sandboxer's "agent connected"
	Setup          float64 `json:"setup_ms"`            // H: "agent connected" → stage running (Setup, clock sync)
	SetupGuest     float64 `json:"setup_guest_ms"`      // H: "agent connected" → the agent's "sandbox set up" on the console
	SbAfter        float64 `json:"sb_after_ms"`         // H: stage running → "sandbox started" (persisted)
	After          float64 `json:"after_ms"`            // H: "sandbox started" → containerd's "returns sandbox id"
	CRIToCaller    float64 `json:"cri_to_caller_ms"`    // H: containerd returned → the caller has the answer (crictl: its exit)

	// the sandboxer's own "pod VM ready" line (H, daemon-timed)
	DVMM   float64 `json:"daemon_vmm_ms"`
	DAgent float64 `json:"daemon_agent_ms"`
	DSetup float64 `json:"daemon_setup_ms"`
	DTotal float64 `json:"daemon_total_ms"`

	// crictl: the container
	CreateGap    float64 `json:"create_gap_ms"`    // H: crictl runp exit → crictl create start (ours)
	CrictlCreate float64 `json:"crictl_create_ms"` // H: the crictl create process
	CRICreate    float64 `json:"cri_create_ms"`    // H: containerd's CreateContainer (its log)
	StartGap     float64 `json:"start_gap_ms"`     // H: crictl create exit → crictl start start (ours)
	CrictlStart  float64 `json:"crictl_start_ms"`  // H: the crictl start process
	CRIStart     float64 `json:"cri_start_ms"`     // H: containerd's StartContainer (its log)
	StartToTask  float64 `json:"start_to_task_ms"` // H: crictl start → the container's directory in the share (Task.Create begins)
	ShareRootfs  float64 `json:"share_rootfs_ms"`  // H: that directory → its config.json (rootfs and mounts in the share)
	GuestCreate  float64 `json:"guest_create_ms"`  // H: config.json → "container created in the guest" (runc create in the guest)
	GuestStart   float64 `json:"guest_start_ms"`   // H: created in the guest → containerd's StartContainer returns (runc start in the guest)
	StartToExit  float64 `json:"start_to_exit_ms"` // H: StartContainer returned → crictl start exits
	UntilRunning float64 `json:"until_running_ms"` // H: crictl start exit → ContainerStatus RUNNING
	// AgentCreated is the sandboxer's "container created in the guest" (host
	// clock) − the agent's "container created" (guest clock, synced at
	// Setup): the Create answer's way back, give or take the clock sync
	// (nil: not found).
	AgentCreated *float64 `json:"agent_created_skew_ms,omitempty"`
	PodInit      float64  `json:"pod_init_ms"` // H: the agent's "pod init started" arrival − the container's config.json (a shared-PID pod only)

	Stop   float64 `json:"stop_ms"`   // H: StopPodSandbox
	Remove float64 `json:"remove_ms"` // H: RemovePodSandbox
}

// newPodSample has every figure unmeasured.
func newPodSample(variant string) podSample {
	s := podSample{Variant: variant}
	v := reflect.ValueOf(&s).Elem()
	for i := 0; i < v.NumField(); i++ {
		if f := v.Field(i); f.Kind() == reflect.Float64 && v.Type().Field(i).Name != "Load1" {
			f.SetFloat(-1)
		}
	}
	return s
}

func (s podSample) String() string {
	b, _ := json.Marshal(s)
	return string(b)
}

// podTimes are the host times the bench itself took.
type podTimes struct {
	callStart, podReturned time.Time // RunPodSandbox (or crictl runp) called, answered
	createStart, createEnd time.Time // crictl create
	startStart, startEnd   time.Time // crictl start
	ctrDir, ctrConfig      time.Time // the container's directory and config.json appeared in the share
	running                time.Time // ContainerStatus said RUNNING
}

func since(a, b time.Time) float64 {
	if a.IsZero() || b.IsZero() {
		return -1
	}
	return ms(b.Sub(a))
}

// breakdown fills s from the sandboxer's lines of this pod (pod), all its
// lines since the start (all: the container lines carry no sandbox_id in
// every version), containerd's lines, the console and the bench's own
// times. It returns what it could not find.
func breakdown(s *podSample, t *podTimes, pod, all, cd []logLine, con []conLine, name string) []string {
	var missing []string
	at := func(lines []logLine, what string, ok func(logLine) bool) time.Time {
		l, found := find(lines, ok)
		if !found {
			missing = append(missing, what)
			return time.Time{}
		}
		return l.T
	}
	cdRun := at(cd, "containerd: RunPodSandbox for "+name, func(l logLine) bool {
		return strings.HasPrefix(l.Msg, "RunPodSandbox for ") && strings.Contains(l.Msg, `name:"`+name+`"`) && !strings.Contains(l.Msg, " returns ")
	})
	cdRunEnd := at(cd, "containerd: RunPodSandbox returns", msgHas("RunPodSandbox for ", `name:"`+name+`"`, "returns sandbox id"))
	created := at(pod, `sandboxer: "pod created"`, msgIs("pod created"))
	stNet := at(pod, "sandboxer: stage network", msgIs("pod start", "stage", "network"))
	stVMM := at(pod, "sandboxer: stage starting the VMM", msgIs("pod start", "stage", "starting the VMM"))
	qmp := at(pod, `sandboxer: "the VMM answers on QMP"`, msgIs("the VMM answers on QMP"))
	if l, ok := find(pod, msgIs("virtiofsd listening")); ok {
		s.Virtiofsd = since(stVMM, l.T)
	}
	connected := at(pod, `sandboxer: "agent connected"`, msgIs("agent connected"))
	stRunning := at(pod, "sandboxer: stage running", msgIs("pod start", "stage", "running"))
	started := at(pod, `sandboxer: "sandbox started"`, msgIs("sandbox started"))
	if l, ok := find(pod, msgIs("pod created")); ok {
		s.MemoryMiB, _ = strconv.Atoi(l.F["memory_mib"])
	}
	if l, ok := find(pod, msgIs("pod VM ready")); ok {
		s.DVMM, s.DAgent, s.DSetup, s.DTotal = logMS(l.F, "vmm_ms"), logMS(l.F, "agent_ms"), logMS(l.F, "setup_ms"), logMS(l.F, "total_ms")
	} else {
		missing = append(missing, `sandboxer: "pod VM ready"`)
	}
	// the agent's main(): the host saw "guest initialised" (its line
	// carries elapsed since main(), guest-measured)
	var mainAt, servingAt time.Time
	if cl, ll, ok := agentLine(con, "guest initialised"); ok {
		s.AgentInit = logMS(ll.F, "elapsed")
		s.Mounts, s.Modules, s.Share = logMS(ll.F, "t_mounts"), logMS(ll.F, "t_modules"), logMS(ll.F, "t_share")
		if s.AgentInit >= 0 {
			mainAt = cl.At.Add(-time.Duration(s.AgentInit * float64(time.Millisecond)))
		}
		if sl, _, ok := agentLine(con, "magnetar-agent serving"); ok {
			servingAt = sl.At
			s.InitToServing = ms(sl.At.Sub(cl.At))
		} else {
			missing = append(missing, `console: "magnetar-agent serving"`)
		}
	} else {
		missing = append(missing, `console: "guest initialised"`)
	}
	s.RunPod = since(t.callStart, t.podReturned)
	s.CRIRunPod = since(cdRun, cdRunEnd)
	s.CallToCRI = since(t.callStart, cdRun)
	s.Before = since(cdRun, created)
	s.SbCreate = since(created, stNet)
	s.Network = since(stNet, stVMM)
	s.VMMStart = since(stVMM, qmp)
	s.Kernel = since(qmp, mainAt)
	s.ServingToReady = since(servingAt, connected)
	s.Setup = since(connected, stRunning)
	if cl, _, ok := agentLine(con, "sandbox set up"); ok {
		s.SetupGuest = since(connected, cl.At)
	}
	s.SbAfter = since(stRunning, started)
	s.After = since(started, cdRunEnd)
	s.CRIToCaller = since(cdRunEnd, t.podReturned)
	if s.Variant == "runp" {
		s.Total = s.RunPod
		return missing
	}

	cid := s.ContainerID
	cdCreate := at(cd, "containerd: CreateContainer", msgHas("CreateContainer within sandbox", s.SandboxID))
	cdCreateEnd := at(cd, "containerd: CreateContainer returns", msgHas("CreateContainer within sandbox", s.SandboxID, "returns container id"))
	cdStart := at(cd, "containerd: StartContainer", func(l logLine) bool {
		return l.Msg == `StartContainer for "`+cid+`"`
	})
	cdStartEnd := at(cd, "containerd: StartContainer returns", msgIs(`StartContainer for "`+cid+`" returns successfully`))
	inGuest := at(all, `sandboxer: "container created in the guest"`, func(l logLine) bool {
		return l.Msg == "container created in the guest" && l.F["container_id"] == cid
	})
	if t.ctrDir.IsZero() || t.ctrConfig.IsZero() {
		missing = append(missing, "the container's directory or config.json in the share (never seen)")
	}
	s.CreateGap = since(t.podReturned, t.createStart)
	s.CrictlCreate = since(t.createStart, t.createEnd)
	s.CRICreate = since(cdCreate, cdCreateEnd)
	s.StartGap = since(t.createEnd, t.startStart)
	s.CrictlStart = since(t.startStart, t.startEnd)
	s.CRIStart = since(cdStart, cdStartEnd)
	s.StartToTask = since(t.startStart, t.ctrDir)
	s.ShareRootfs = since(t.ctrDir, t.ctrConfig)
	s.GuestCreate = since(t.ctrConfig, inGuest)
	s.GuestStart = since(inGuest, cdStartEnd)
	s.StartToExit = since(cdStartEnd, t.startEnd)
	s.UntilRunning = since(t.startEnd, t.running)
	s.Total = since(t.callStart, t.running)
	if _, ll, ok := agentLine(con, "container created"); ok && !inGuest.IsZero() {
		v := ms(inGuest.Sub(ll.T))
		s.AgentCreated = &v
	}
	if cl, _, ok := agentLine(con, "pod init started: the pod's shared PID namespace"); ok {
		s.PodInit = since(t.ctrConfig, cl.At)
	}
	return missing
}

// kernelOf is what a pod start spends in the guest kernel's boot (QMP
// greeting → the agent's main(), which also holds unpacking the initramfs
// and the Go runtime's init: counted as kernel here, in Magnetar's favour).
func (s podSample) kernelOf() float64 { return s.Kernel }

// runcOf is what a pod start spends in runc in the guest (the guest Create
// and Start calls: an upper bound, they include the agent's handling and,
// for Start, containerd's bookkeeping after it).
func (s podSample) runcOf() float64 {
	if s.Variant != "crictl" {
		return 0
	}
	if s.GuestCreate < 0 || s.GuestStart < 0 {
		return -1
	}
	return s.GuestCreate + s.GuestStart
}

// ownShare is DESIGN.md §8's "Magnetar's own share of a pod start": all
// but kernel boot and runc in the guest, over the whole start.
func (s podSample) ownShare() float64 {
	k, r := s.kernelOf(), s.runcOf()
	if s.Total <= 0 || k < 0 || r < 0 {
		return -1
	}
	return (s.Total - k - r) / s.Total
}

// magnetarCode is what runs Magnetar's code alone: the sandboxer's steps
// (Create, network, Setup, bookkeeping, the container's share), the agent's
// init and its start of serving; containerd, CNI, crictl and the VMM's own
// start left out.
func (s podSample) magnetarCode() float64 {
	parts := []float64{s.SbCreate, s.Network, s.AgentInit, s.InitToServing, s.ServingToReady, s.Setup, s.SbAfter}
	if s.Variant == "crictl" {
		parts = append(parts, s.ShareRootfs)
	}
	sum := 0.0
	for _, p := range parts {
		if p < 0 {
			return -1
		}
		sum += p
	}
	return sum
}

// pieceSum adds RunPod's pieces (a consistency check: it is RunPod).
func (s podSample) pieceSum() float64 {
	sum := 0.0
	for _, p := range []float64{s.CallToCRI, s.Before, s.SbCreate, s.Network, s.VMMStart, s.Kernel, s.AgentInit,
		s.InitToServing, s.ServingToReady, s.Setup, s.SbAfter, s.After, s.CRIToCaller} {
		if p < 0 {
			return -1
		}
		sum += p
	}
	return sum
}
