// Command podtimeline shows where the time of a pod start goes, per runtime
// handler, from the logs of a hack/bench/profile.sh run:
//
//   - containerd's log (info level): the CRI calls RunPodSandbox,
//     CreateContainer, StartContainer with their start and end;
//   - the sandboxers' logs (debug level): "sandbox created", "sandbox started",
//     "task created" per sandbox or container id;
//   - calls.log, written by the runc and CNI plugin wrappers profile.sh
//     installs: one line per exec, "NAME START END RC CNI_COMMAND CNI_CONTAINERID ARGS…"
//     (times in seconds since the epoch, with microseconds).
//
// For every pod of the sequential phase (names bench-seq-HANDLER-N) it splits
// each CRI step into the runc and CNI executions inside it and the rest
// (containerd, shim or sandboxer, ttrpc/gRPC hops), prints the medians per
// handler, and the full timeline of one typical pod per handler.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

type event struct {
	At   time.Time
	Src  string // containerd, sandboxer, runc, cni
	What string
	End  time.Time // for execs
	Args string
}

type pod struct {
	Handler, Name, SID, CID string
	R0, R1, C0, C1, S0, S1  time.Time
	Events                  []event
}

var (
	reTime = regexp.MustCompile(`^time="([^"]+)"`)
	reMsg  = regexp.MustCompile(`msg="((?:[^"\\]|\\.)*)"`)
	reRun0 = regexp.MustCompile(`^RunPodSandbox for name:\\"(bench-seq-[^"\\]+)\\"`)
	reRun1 = regexp.MustCompile(`returns sandbox id \\"([0-9a-f]+)\\"`)
	reCr0  = regexp.MustCompile(`^CreateContainer within sandbox \\"([0-9a-f]+)\\" for container`)
	reCr1  = regexp.MustCompile(`^CreateContainer within sandbox \\"([0-9a-f]+)\\" for .* returns container id \\"([0-9a-f]+)\\"`)
	reSt0  = regexp.MustCompile(`^StartContainer for \\"([0-9a-f]+)\\"$`)
	reSt1  = regexp.MustCompile(`^StartContainer for \\"([0-9a-f]+)\\" returns successfully`)
	reKV   = regexp.MustCompile(`(sandbox_id|container_id|id)=([0-9a-f]{64})`)
)

func parseLogTime(line string) (time.Time, bool) {
	m := reTime.FindStringSubmatch(line)
	if m == nil {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, m[1])
	return t, err == nil
}

// logMsg is the time and message of a logrus text line at or after t0.
func logMsg(line string, t0 time.Time) (time.Time, string, bool) {
	at, ok := parseLogTime(line)
	if !ok || at.Before(t0) {
		return at, "", false
	}
	mm := reMsg.FindStringSubmatch(line)
	if mm == nil {
		return at, "", false
	}
	return at, mm[1], true
}

func epoch(s string) time.Time {
	f, _ := strconv.ParseFloat(s, 64)
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9))
}

func main() {
	cdLog := flag.String("containerd", "", "containerd log")
	sbLogs := flag.String("sandboxers", "", "sandboxer logs, comma separated")
	calls := flag.String("calls", "", "calls.log of the runc/CNI wrappers")
	since := flag.String("since", "", "ignore log lines before this RFC 3339 time")
	flag.Parse()
	var t0 time.Time
	if *since != "" {
		var err error
		if t0, err = time.Parse(time.RFC3339, *since); err != nil {
			fmt.Fprintln(os.Stderr, "podtimeline: -since:", err)
			os.Exit(2)
		}
	}
	pods := map[string]*pod{} // by name
	bySID := map[string]*pod{}
	byCID := map[string]*pod{}
	var order []*pod

	readLines(*cdLog, func(line string) {
		at, msg, ok := logMsg(line, t0)
		if !ok {
			return
		}
		switch {
		case reRun1.MatchString(msg):
			name := reRun0.FindStringSubmatch(msg)
			if name == nil {
				return
			}
			if p := pods[name[1]]; p != nil {
				p.R1, p.SID = at, reRun1.FindStringSubmatch(msg)[1]
				bySID[p.SID] = p
			}
			return
		case reRun0.MatchString(msg):
			name := reRun0.FindStringSubmatch(msg)[1]
			h := strings.TrimPrefix(name, "bench-seq-")
			h = h[:strings.LastIndexByte(h, '-')]
			p := &pod{Handler: h, Name: name, R0: at}
			pods[name] = p
			order = append(order, p)
			return
		case reCr1.MatchString(msg):
			m := reCr1.FindStringSubmatch(msg)
			if p := bySID[m[1]]; p != nil {
				p.C1, p.CID = at, m[2]
				byCID[p.CID] = p
			}
			return
		case reCr0.MatchString(msg):
			if p := bySID[reCr0.FindStringSubmatch(msg)[1]]; p != nil {
				p.C0 = at
			}
			return
		case reSt1.MatchString(msg):
			if p := byCID[reSt1.FindStringSubmatch(msg)[1]]; p != nil {
				p.S1 = at
			}
			return
		case reSt0.MatchString(msg):
			if p := byCID[reSt0.FindStringSubmatch(msg)[1]]; p != nil {
				p.S0 = at
			}
			return
		}
		// any other containerd line naming one of our ids
		for _, kv := range reKV.FindAllStringSubmatch(line, -1) {
			if p := owner(bySID, byCID, kv[2]); p != nil {
				p.Events = append(p.Events, event{At: at, Src: "containerd", What: short(msg, 70)})
				return
			}
		}
		for id, p := range bySID {
			if strings.Contains(msg, id) {
				p.Events = append(p.Events, event{At: at, Src: "containerd", What: short(strings.ReplaceAll(msg, id, "<pod>"), 70)})
				return
			}
		}
		for id, p := range byCID {
			if strings.Contains(msg, id) {
				p.Events = append(p.Events, event{At: at, Src: "containerd", What: short(strings.ReplaceAll(msg, id, "<ctr>"), 70)})
				return
			}
		}
	})
	for _, f := range strings.Split(*sbLogs, ",") {
		if f == "" {
			continue
		}
		readLines(f, func(line string) {
			at, msg, ok := logMsg(line, t0)
			if !ok {
				return
			}
			for _, kv := range reKV.FindAllStringSubmatch(line, -1) {
				if p := owner(bySID, byCID, kv[2]); p != nil {
					p.Events = append(p.Events, event{At: at, Src: "sandboxer", What: msg})
					return
				}
			}
		})
	}
	readLines(*calls, func(line string) {
		f := strings.Fields(line)
		if len(f) < 4 {
			return
		}
		ev := event{Src: f[0], At: epoch(f[1]), End: epoch(f[2]), Args: strings.Join(f[4:], " ")}
		if ev.At.Before(t0) {
			return
		}
		for _, x := range f[4:] {
			if p := owner(bySID, byCID, x); p != nil {
				what := f[0]
				if f[0] == "runc" {
					what += " " + runcVerb(f[4:])
					if x == p.SID {
						what += " (pause)"
					}
				} else if len(f) > 5 {
					what += " " + f[4] // CNI_COMMAND
				}
				ev.What = what
				p.Events = append(p.Events, ev)
				return
			}
		}
	})

	report(order)
}

func owner(bySID, byCID map[string]*pod, id string) *pod {
	if p := bySID[id]; p != nil {
		return p
	}
	return byCID[id]
}

// runcVerb finds the runc subcommand among its arguments.
func runcVerb(args []string) string {
	for _, a := range args {
		switch a {
		case "create", "start", "run", "delete", "kill", "state", "exec", "update", "pause", "resume", "ps", "events", "features":
			return a
		}
	}
	return "?"
}

func short(s string, n int) string {
	s = strings.ReplaceAll(s, `\"`, `"`)
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func readLines(path string, fn func(string)) {
	if path == "" {
		return
	}
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "podtimeline:", err)
		os.Exit(1)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		fn(sc.Text())
	}
}

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// execs sums the durations of the exec events matching pred within [from, to].
func execs(p *pod, from, to time.Time, pred func(e event) bool) float64 {
	var sum float64
	for _, e := range p.Events {
		if e.End.IsZero() || e.At.Before(from) || e.End.After(to.Add(time.Millisecond)) || !pred(e) {
			continue
		}
		sum += msf(e.End.Sub(e.At))
	}
	return sum
}

// union is the time covered by the execs matching pred within [from, to]:
// nested execs (the bridge plugin runs host-local) count once.
func union(p *pod, from, to time.Time, pred func(e event) bool) float64 {
	var iv [][2]time.Time
	for _, e := range p.Events {
		if e.End.IsZero() || e.At.Before(from) || e.End.After(to.Add(time.Millisecond)) || !pred(e) {
			continue
		}
		iv = append(iv, [2]time.Time{e.At, e.End})
	}
	sort.Slice(iv, func(i, j int) bool { return iv[i][0].Before(iv[j][0]) })
	var sum float64
	var cur [2]time.Time
	for i, x := range iv {
		switch {
		case i == 0:
			cur = x
		case x[0].After(cur[1]):
			sum += msf(cur[1].Sub(cur[0]))
			cur = x
		case x[1].After(cur[1]):
			cur[1] = x[1]
		}
	}
	if len(iv) > 0 {
		sum += msf(cur[1].Sub(cur[0]))
	}
	return sum
}

func src(s string) func(e event) bool { return func(e event) bool { return e.Src == s } }
func what(s string) func(e event) bool {
	return func(e event) bool { return strings.HasPrefix(e.What, s) }
}

func report(order []*pod) {
	cols := []string{
		"RunPodSandbox", "  CNI plugin execs", "  runc create (pause)", "  runc start (pause)", "  rest of RunPodSandbox",
		"CreateContainer",
		"StartContainer", "  runc create", "  runc start", "  rest of StartContainer",
		"pod start (sum)",
	}
	vals := map[string]map[string][]float64{}
	var handlers []string
	for _, p := range order {
		if p.S1.IsZero() || p.R1.IsZero() || p.C1.IsZero() {
			continue
		}
		if vals[p.Handler] == nil {
			vals[p.Handler] = map[string][]float64{}
			handlers = append(handlers, p.Handler)
		}
		v := vals[p.Handler]
		run := msf(p.R1.Sub(p.R0))
		cni := union(p, p.R0, p.R1, func(e event) bool { return strings.HasPrefix(e.Src, "cni-") })
		pc := execs(p, p.R0, p.R1, what("runc create"))
		ps := execs(p, p.R0, p.R1, what("runc start"))
		start := msf(p.S1.Sub(p.S0))
		rc := execs(p, p.S0, p.S1, what("runc create"))
		rs := execs(p, p.S0, p.S1, what("runc start"))
		for k, x := range map[string]float64{
			"RunPodSandbox": run, "  CNI plugin execs": cni, "  runc create (pause)": pc, "  runc start (pause)": ps,
			"  rest of RunPodSandbox": run - cni - pc - ps,
			"CreateContainer":         msf(p.C1.Sub(p.C0)),
			"StartContainer":          start, "  runc create": rc, "  runc start": rs, "  rest of StartContainer": start - rc - rs,
			"pod start (sum)": run + msf(p.C1.Sub(p.C0)) + start,
		} {
			v[k] = append(v[k], x)
		}
	}
	if len(handlers) == 0 {
		fmt.Println("no complete pod found in the logs")
		return
	}
	fmt.Printf("Where the time of a pod start goes (medians over the sequential phase, ms; runc and CNI times measured around each exec):\n\n")
	fmt.Printf("| step |")
	for _, h := range handlers {
		fmt.Printf(" %s (n=%d) |", h, len(vals[h]["RunPodSandbox"]))
	}
	fmt.Printf("\n|---|")
	for range handlers {
		fmt.Printf("--:|")
	}
	fmt.Println()
	for _, c := range cols {
		fmt.Printf("| %s |", strings.Replace(c, "  ", "↳ ", 1))
		for _, h := range handlers {
			fmt.Printf(" %.1f |", median(vals[h][c]))
		}
		fmt.Println()
	}
	// the pod closest to its handler's median, in full
	for _, h := range handlers {
		med := median(vals[h]["pod start (sum)"])
		var best *pod
		bestD := time.Duration(1 << 62)
		for _, p := range order {
			if p.Handler != h || p.S1.IsZero() || p.R1.IsZero() {
				continue
			}
			d := p.S1.Sub(p.R0) - time.Duration(med*float64(time.Millisecond))
			if d < 0 {
				d = -d
			}
			if d < bestD {
				best, bestD = p, d
			}
		}
		if best == nil {
			continue
		}
		fmt.Printf("\nTimeline of %s (%s), ms from RunPodSandbox:\n\n", best.Name, h)
		evs := append([]event{
			{At: best.R0, Src: "cri", What: "RunPodSandbox begins"},
			{At: best.R1, Src: "cri", What: "RunPodSandbox returns"},
			{At: best.C0, Src: "cri", What: "CreateContainer begins"},
			{At: best.C1, Src: "cri", What: "CreateContainer returns"},
			{At: best.S0, Src: "cri", What: "StartContainer begins"},
			{At: best.S1, Src: "cri", What: "StartContainer returns"},
		}, best.Events...)
		sort.SliceStable(evs, func(i, j int) bool { return evs[i].At.Before(evs[j].At) })
		for _, e := range evs {
			if e.At.Before(best.R0) || e.At.After(best.S1.Add(time.Millisecond)) {
				continue
			}
			dur := ""
			if !e.End.IsZero() {
				dur = fmt.Sprintf(" … %7.1f  (%.1f ms)", msf(e.End.Sub(best.R0)), msf(e.End.Sub(e.At)))
			}
			fmt.Printf("  %7.1f  %-10s %s%s\n", msf(e.At.Sub(best.R0)), e.Src, e.What, dur)
		}
	}
}
