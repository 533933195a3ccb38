package main

import (
	"fmt"
	"html"
	"math"
	"sort"
	"strings"
)

var palette = []string{"#7f7f7f", "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"}

// colour gives the runc shim grey and every other handler its own colour.
func (b *bench) colour(h string) string {
	if h == "runc" {
		return palette[0]
	}
	i := 1
	for _, x := range b.handlers {
		if x == "runc" {
			continue
		}
		if x == h {
			return palette[1+(i-1)%(len(palette)-1)]
		}
		i++
	}
	return "#000000"
}

// niceTicks returns about n round tick values from 0 to at least max.
func niceTicks(max float64, n int) []float64 {
	if max <= 0 || math.IsNaN(max) {
		max = 1
	}
	raw := max / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var ts []float64
	for v := 0.0; v <= max+step*0.999; v += step {
		ts = append(ts, v)
	}
	return ts
}

// scale maps values in [lo, hi] to [0, 1]: linear from 0 with round ticks,
// or, when the values span more than 30× (a VM pod's start beside a wasm
// pod's), logarithmic with 1-2-5 ticks per decade, so that the fast
// handlers do not all fall into the first tick.
func scale(lo, hi float64, n int) (ticks []float64, pos func(float64) float64, log bool) {
	if lo <= 0 || hi/lo <= 30 {
		ticks = niceTicks(hi*1.02, n)
		top := ticks[len(ticks)-1]
		return ticks, func(v float64) float64 { return v / top }, false
	}
	// from the 1-2-5 tick at or below lo to the one at or above hi
	var all []float64
	for d := math.Pow(10, math.Floor(math.Log10(lo))); d < hi*10; d *= 10 {
		all = append(all, d, 2*d, 5*d)
	}
	for _, t := range all {
		if t <= lo*1.0001 || len(ticks) == 0 || ticks[len(ticks)-1] < hi {
			if t <= lo*1.0001 {
				ticks = ticks[:0]
			}
			ticks = append(ticks, t)
		}
	}
	a, b := ticks[0], ticks[len(ticks)-1]
	la, lb := math.Log10(a), math.Log10(b)
	return ticks, func(v float64) float64 { return (math.Log10(math.Max(v, a)) - la) / (lb - la) }, true
}

func fmtTick(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%g", v)
}

type svgW struct{ strings.Builder }

func (s *svgW) f(format string, a ...any) { fmt.Fprintf(&s.Builder, format, a...); s.WriteByte('\n') }

func (s *svgW) text(x, y float64, anchor, style, txt string) {
	s.f(`<text x="%.1f" y="%.1f" text-anchor="%s" %s>%s</text>`, x, y, anchor, style, html.EscapeString(txt))
}

// plot draws the start latency of the sequential phase per handler: an
// empirical CDF of the whole pod start (left) and box plots per CRI step
// with every sample as a dot (right).
func (b *bench) plot() string {
	const W = 1280.0
	H := 590.0 + 24*float64(len(b.handlers))
	var s svgW
	s.f(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="14">`, W, H, W, H)
	s.f(`<rect width="100%%" height="100%%" fill="white"/>`)
	m := b.res.Meta
	s.text(W/2, 28, "middle", `font-size="19" font-weight="bold"`, fmt.Sprintf("Pod start latency through CRI, %d pods per handler one after another (Linux: busybox sleep; wasm: the C test module)", b.o.n))
	s.text(W/2, 50, "middle", `font-size="13" fill="#444"`, fmt.Sprintf("%s · %d CPUs · kernel %s · cgroup %s · %s · %s", m.Started, m.CPUs, m.Kernel, m.Cgroup, m.Runtime, strings.Join(b.handlers, " vs ")))

	// ---- left: CDF of the pod start (sum of the three steps)
	x0, y0, pw, ph := 80.0, 90.0, 500.0, 400.0
	maxX, minX := 0.0, math.Inf(1)
	for _, h := range b.handlers {
		for _, v := range b.res.values("seq", h, b.o.n, "total_ms") {
			maxX, minX = math.Max(maxX, v), math.Min(minX, v)
		}
	}
	xt, xpos, xlog := scale(minX, maxX, 6)
	px := func(v float64) float64 { return x0 + xpos(v)*pw }
	py := func(q float64) float64 { return y0 + ph - q*ph }
	s.text(x0+pw/2, y0-12, "middle", `font-size="15" font-weight="bold"`, "Cumulative distribution of pod start (ms)")
	for _, t := range xt {
		s.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`, px(t), y0, px(t), y0+ph)
		s.text(px(t), y0+ph+18, "middle", "", fmtTick(t))
	}
	for q := 0.0; q <= 1.0001; q += 0.25 {
		s.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`, x0, py(q), x0+pw, py(q))
		s.text(x0-8, py(q)+5, "end", "", fmt.Sprintf("%.0f%%", q*100))
	}
	s.f(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`, x0, y0, pw, ph)
	xlabel := "RunPodSandbox + CreateContainer + StartContainer (ms)"
	if xlog {
		xlabel += ", log scale"
	}
	s.text(x0+pw/2, y0+ph+40, "middle", "", xlabel)
	s.f(`<text x="%.1f" y="%.1f" text-anchor="middle" transform="rotate(-90 %.1f %.1f)">share of pods started within x</text>`, x0-52, y0+ph/2, x0-52, y0+ph/2)
	ly := y0 + ph + 70
	for i, h := range b.handlers {
		xs := append([]float64(nil), b.res.values("seq", h, b.o.n, "total_ms")...)
		if len(xs) == 0 {
			continue
		}
		sort.Float64s(xs)
		c := b.colour(h)
		var pts []string
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(xs[0]), py(0)))
		for j, v := range xs {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(v), py(float64(j)/float64(len(xs)))))
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(v), py(float64(j+1)/float64(len(xs)))))
		}
		s.f(`<polyline points="%s" fill="none" stroke="%s" stroke-width="2.5"/>`, strings.Join(pts, " "), c)
		d := summarize(xs)
		s.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="5,4" stroke-width="1.5"/>`, px(d.P50), py(0), px(d.P50), py(0.5), c)
		s.f(`<circle cx="%.1f" cy="%.1f" r="4.5" fill="%s"/>`, px(d.P50), py(0.5), c)
		lx, lyy := x0, ly+float64(i)*24
		s.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="4"/>`, lx, lyy-5, lx+24, lyy-5, c)
		s.text(lx+32, lyy, "start", "", fmt.Sprintf("%s: p50 %.0f ms, p90 %.0f ms, min %.0f, max %.0f (n=%d)", handlerTitle(h), d.P50, d.P90, d.Min, d.Max, d.N))
	}

	// ---- right: box plots per step
	bx0, by0, bw, bh := 720.0, 90.0, 520.0, 400.0
	steps := seqSteps[:4]
	maxY, minY := 0.0, math.Inf(1)
	for _, h := range b.handlers {
		for _, st := range steps {
			for _, v := range b.res.values("seq", h, b.o.n, st.metric) {
				maxY, minY = math.Max(maxY, v), math.Min(minY, v)
			}
		}
	}
	yt, ypos, ylog := scale(minY, maxY, 6)
	qy := func(v float64) float64 { return by0 + bh - ypos(v)*bh }
	s.text(bx0+bw/2, by0-12, "middle", `font-size="15" font-weight="bold"`, "Per CRI step (ms): box p25–p75, bar p50, whiskers min–max")
	for _, t := range yt {
		s.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`, bx0, qy(t), bx0+bw, qy(t))
		s.text(bx0-8, qy(t)+5, "end", "", fmtTick(t))
	}
	s.f(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`, bx0, by0, bw, bh)
	gw := bw / float64(len(steps))
	nh := float64(len(b.handlers))
	boxW := math.Min(40, gw*0.7/nh)
	labels := []string{"RunPodSandbox", "CreateContainer", "StartContainer", "pod start (sum)"}
	for gi, st := range steps {
		gx := bx0 + gw*float64(gi)
		s.text(gx+gw/2, by0+bh+20, "middle", "", labels[gi])
		if gi > 0 {
			s.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ccc" stroke-dasharray="2,3"/>`, gx, by0, gx, by0+bh)
		}
		for hi, h := range b.handlers {
			xs := b.res.values("seq", h, b.o.n, st.metric)
			if len(xs) == 0 {
				continue
			}
			d := summarize(xs)
			c := b.colour(h)
			cx := gx + gw/2 + (float64(hi)-(nh-1)/2)*(boxW*1.35)
			s.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5"/>`, cx, qy(d.Min), cx, qy(d.Max), c)
			for _, v := range []float64{d.Min, d.Max} {
				s.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5"/>`, cx-boxW/4, qy(v), cx+boxW/4, qy(v), c)
			}
			s.f(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" fill-opacity="0.25" stroke="%s" stroke-width="1.5"/>`, cx-boxW/2, qy(d.P75), boxW, math.Max(1, qy(d.P25)-qy(d.P75)), c, c)
			s.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3.5"/>`, cx-boxW/2, qy(d.P50), cx+boxW/2, qy(d.P50), c)
			for j, v := range xs {
				jit := (float64((j*37)%11)/10 - 0.5) * boxW * 0.6
				s.f(`<circle cx="%.1f" cy="%.1f" r="2" fill="%s" fill-opacity="0.7"/>`, cx+jit, qy(v), c)
			}
			s.text(cx, qy(d.Max)-6, "middle", fmt.Sprintf(`font-size="12" fill="%s"`, c), fmt.Sprintf("%.0f", d.P50))
		}
	}
	ylabel := "ms"
	if ylog {
		ylabel = "ms (log scale)"
	}
	s.f(`<text x="%.1f" y="%.1f" text-anchor="middle" transform="rotate(-90 %.1f %.1f)">%s</text>`, bx0-48, by0+bh/2, bx0-48, by0+bh/2, ylabel)
	s.text(bx0+bw/2, by0+bh+40, "middle", `font-size="12" fill="#444"`, "number above each box: p50 (ms)")
	for i, h := range b.handlers {
		lx, lyy := bx0, ly+float64(i)*24
		s.f(`<rect x="%.1f" y="%.1f" width="22" height="12" fill="%s" fill-opacity="0.25" stroke="%s" stroke-width="1.5"/>`, lx, lyy-11, b.colour(h), b.colour(h))
		s.text(lx+30, lyy, "start", "", handlerTitle(h))
	}
	s.f(`</svg>`)
	return s.String()
}

// memPlot draws memory against pod count per handler: the management
// processes' PSS (left; 0 pods = the fixed cost before the first pod) and
// the pods' kernels' PSS (right: a gVisor pod's runsc processes, a VM pod's
// QEMU and virtiofsd), from the memory phase. A handler capped below a
// pod count (-cap) has no point there.
func (b *bench) memPlot() string {
	const W = 1280.0
	H := 560.0 + 24*float64((len(b.handlers)+1)/2)
	var s svgW
	s.f(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="14">`, W, H, W, H)
	s.f(`<rect width="100%%" height="100%%" fill="white"/>`)
	m := b.res.Meta
	s.text(W/2, 28, "middle", `font-size="19" font-weight="bold"`, "Memory against pod count (PSS, MiB)")
	s.text(W/2, 50, "middle", `font-size="13" fill="#444"`, fmt.Sprintf("%s · %d CPUs · kernel %s · %s", m.Started, m.CPUs, m.Kernel, m.Runtime))
	pods := append([]int{0}, b.o.memPods...)
	xmax := float64(maxInt(pods))
	type pt struct{ x, y float64 }
	series := func(h string, kernel bool) []pt {
		var ps []pt
		for _, p := range pods {
			phase, metric := "mem", "mgmt_pss_kib"
			if p == 0 {
				phase = "idle"
			}
			if kernel {
				metric = "kernel_pss_kib"
			}
			v, ok := b.res.value(phase, h, p, metric)
			if !ok || (kernel && p > 0 && v == 0) {
				continue
			}
			if kernel && p == 0 {
				v = 0
			}
			ps = append(ps, pt{float64(p), v / 1024})
		}
		return ps
	}
	panel := func(x0 float64, title string, kernel bool) {
		y0, pw, ph := 90.0, 500.0, 380.0
		maxY := 0.0
		var hs []string
		for _, h := range b.handlers {
			if h == bareHandler {
				continue
			}
			ps := series(h, kernel)
			if len(ps) == 0 || kernel && len(ps) < 2 {
				continue // not measured, or no pod kernel
			}
			hs = append(hs, h)
			for _, p := range ps {
				maxY = math.Max(maxY, p.y)
			}
		}
		yt := niceTicks(maxY*1.05, 6)
		ymax := yt[len(yt)-1]
		xt := niceTicks(xmax, 5)
		xm := xt[len(xt)-1]
		px := func(v float64) float64 { return x0 + v/xm*pw }
		py := func(v float64) float64 { return y0 + ph - v/ymax*ph }
		s.text(x0+pw/2, y0-12, "middle", `font-size="15" font-weight="bold"`, title)
		for _, t := range yt {
			s.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`, x0, py(t), x0+pw, py(t))
			s.text(x0-8, py(t)+5, "end", "", fmtTick(t))
		}
		for _, t := range xt {
			s.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`, px(t), y0, px(t), y0+ph)
			s.text(px(t), y0+ph+18, "middle", "", fmtTick(t))
		}
		s.f(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`, x0, y0, pw, ph)
		s.text(x0+pw/2, y0+ph+40, "middle", "", "pods running")
		s.f(`<text x="%.1f" y="%.1f" text-anchor="middle" transform="rotate(-90 %.1f %.1f)">PSS (MiB)</text>`, x0-52, y0+ph/2, x0-52, y0+ph/2)
		if len(hs) == 0 {
			s.text(x0+pw/2, y0+ph/2, "middle", `fill="#777"`, "no pod kernel among these handlers")
		}
		for _, h := range hs {
			ps := series(h, kernel)
			c := b.colour(h)
			var xy []string
			for _, p := range ps {
				xy = append(xy, fmt.Sprintf("%.1f,%.1f", px(p.x), py(p.y)))
			}
			s.f(`<polyline points="%s" fill="none" stroke="%s" stroke-width="2.5"/>`, strings.Join(xy, " "), c)
			for _, p := range ps {
				s.f(`<circle cx="%.1f" cy="%.1f" r="4" fill="%s"/>`, px(p.x), py(p.y), c)
			}
			if last := ps[len(ps)-1]; last.x > 0 {
				s.text(px(last.x)+6, py(last.y)+4, "start", fmt.Sprintf(`font-size="12" fill="%s"`, c), fmt.Sprintf("%.0f", last.y))
			}
		}
	}
	panel(80, "Management processes (runc shim: shims + pauses; magnetar: daemon + keeper)", false)
	panel(720, "Pod kernels (gVisor: runsc sandbox + gofers; VM: QEMU + virtiofsd)", true)
	ly := 90 + 380 + 70.0
	i := 0
	for _, h := range b.handlers {
		if h == bareHandler {
			continue
		}
		lx, lyy := 80+float64(i%2)*640, ly+float64(i/2)*24
		c := b.colour(h)
		s.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="4"/>`, lx, lyy-5, lx+24, lyy-5, c)
		label := handlerTitle(h)
		if cp, ok := b.o.caps[h]; ok && cp.Pods < maxInt(b.o.memPods) {
			label += fmt.Sprintf(" (at most %d pods", cp.Pods)
			if b.o.capNote != "" {
				label += ": " + b.o.capNote
			}
			label += ")"
		}
		s.text(lx+32, lyy, "start", "", label)
		i++
	}
	s.f(`</svg>`)
	return s.String()
}
