package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"
)

// memPoint is the sandboxer and its VMs with Pods running pods (one
// sleeping container each): three snapshots a second apart (each also
// measures the VMs' CPU over its second).
type memPoint struct {
	Pods  int       `json:"pods"`
	Load1 float64   `json:"load1"`
	Snaps []memSnap `json:"snapshots"`
}

// memStart is one pod start of the memory phase, with Idle pods already
// running.
type memStart struct {
	Idle      int     `json:"idle_pods"`
	RunPod    float64 `json:"runpod_ms"`
	Container float64 `json:"container_ms"` // CreateContainer + StartContainer → running
	Load1     float64 `json:"load1"`
}

// memory starts pods one after the other up to the largest count and
// samples at each count; the pods are removed at the end. Outside a smoke
// run a pod that cannot start ends the phase with what was measured (the
// reason is reported).
func (b *bench) memory(ctx context.Context) error {
	counts := slices.Clone(b.o.memPods)
	slices.Sort(counts)
	counts = slices.Compact(counts)
	top := counts[len(counts)-1]
	fmt.Fprintf(os.Stderr, "vmmbench: memory at %v running pods (one sleeping container each)\n", counts)
	base, err := b.memPoint(0)
	if err != nil {
		return err
	}
	b.res.Mem = append(b.res.Mem, base)
	var ids []string
	for k := 1; k <= top; k++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if avail := memAvailableMiB(); avail < 2*b.o.memMiB+1024 {
			b.res.MemNote = fmt.Sprintf("stopped at %d pods: MemAvailable %d MiB is too little for another %d MiB guest", k-1, avail, b.o.memMiB)
			break
		}
		b.seq++
		name := fmt.Sprintf("vmmbench-mem-%d", b.seq)
		cfg, err := b.cri.podConfig(name)
		if err != nil {
			return err
		}
		st := memStart{Idle: k - 1, Load1: loadavg()[0]}
		t0 := time.Now()
		id, err := b.cri.runPod(ctx, cfg)
		t1 := time.Now()
		if err == nil {
			ids = append(ids, id)
			var cid string
			if cid, err = b.cri.startContainer(ctx, id, cfg); err == nil {
				err = b.cri.waitRunning(ctx, cid)
			}
		}
		if err != nil {
			if b.o.smoke {
				return fmt.Errorf("memory phase, pod %d: %w", k, err)
			}
			b.res.MemNote = fmt.Sprintf("stopped at %d pods: pod %d failed: %v", k-1, k, err)
			break
		}
		st.RunPod, st.Container = ms(t1.Sub(t0)), ms(time.Since(t1))
		b.res.MemStarts = append(b.res.MemStarts, st)
		b.logf("memory: pod %d running (RunPodSandbox %.0f ms, container %.0f ms, load %.2f)", k, st.RunPod, st.Container, st.Load1)
		if slices.Contains(counts, k) {
			p, err := b.memPoint(k)
			if err != nil {
				return err
			}
			if n := len(p.Snaps[0].VMs); n != k {
				return fmt.Errorf("memory phase: %d pods running but %d VMs found below %s", k, n, b.vmRunDir)
			}
			b.res.Mem = append(b.res.Mem, p)
			d := p.Snaps[1]
			b.logf("memory: %d pods: daemon PSS %d KiB, keeper PSS %d KiB", k, d.Daemon.PSS, d.Keeper.PSS)
		}
	}
	t0 := time.Now()
	for _, id := range ids {
		if _, _, err := b.cri.removePod(ctx, id); err != nil {
			return fmt.Errorf("memory phase teardown: %w", err)
		}
	}
	b.res.MemTeardown = ms(time.Since(t0))
	b.res.MemTeardownPods = len(ids)
	if err := b.procs.waitNoVMs(30 * time.Second); err != nil {
		return fmt.Errorf("sandboxer: %w", err)
	}
	return nil
}

// memPoint waits for the pods to settle (2 s), then takes three snapshots.
func (b *bench) memPoint(pods int) (memPoint, error) {
	time.Sleep(2 * time.Second)
	p := memPoint{Pods: pods, Load1: loadavg()[0]}
	for i := 0; i < 3; i++ {
		s, err := b.procs.snapshot(time.Second)
		if err != nil {
			return p, err
		}
		p.Snaps = append(p.Snaps, s)
	}
	return p, nil
}
