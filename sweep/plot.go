package sweep

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/slatrun/slatrun/orchestrator"
)

// Plot files, under a report's plots/ directory.
const (
	PlotRobustVsEps = "robust-vs-eps.png"
	PlotProbe       = "probe.png"
	PlotTapGrads    = "tap-grads.png"
)

// Size of one panel of a tiled figure.
const (
	panelW = 4 * vg.Inch
	panelH = 2.8 * vg.Inch
)

// PlotReport draws the report's plots into dir and returns their paths
// relative to dir's parent (for report.md):
//
//   - robust-vs-eps.png: robust accuracy against ε per method variant, mean
//     over seeds with ± one std error bars, final and best checkpoints;
//   - probe.png: per (variant, ε), each seed's per-epoch probe robust
//     (solid) and clean (dashed) accuracy, where catastrophic overfitting
//     shows;
//   - tap-grads.png: per SLAT (variant, ε), each tap's mean ‖∂ℓ/∂h‖₁ over
//     training, one line per tap and seed (only when SLAT ran).
func PlotReport(rep *Report, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	rel := func(name string) string { return filepath.Join(filepath.Base(dir), name) }
	var out []string
	if len(rep.Groups) > 0 {
		if err := plotRobustVsEps(rep, filepath.Join(dir, PlotRobustVsEps)); err != nil {
			return nil, err
		}
		out = append(out, rel(PlotRobustVsEps))
	}
	variants, eps := axesOf(rep.Groups)
	var probe, taps []panel
	for _, v := range variants {
		for _, e := range eps {
			var runs []runSeries
			for _, c := range rep.Cells {
				if c.Variant() == v && c.Eps == e {
					runs = append(runs, cellSeries(&c, rep.Dirs[c.Name]))
				}
			}
			if len(runs) == 0 {
				continue
			}
			title := fmt.Sprintf("%s, ε = %s", v, e)
			probe = append(probe, panel{title: title, runs: runs})
			if hasTaps(runs) {
				taps = append(taps, panel{title: title, runs: runs})
			}
		}
	}
	cols := max(1, len(eps))
	if len(probe) > 0 {
		if err := drawTiles(probe, cols, probePlot, filepath.Join(dir, PlotProbe)); err != nil {
			return nil, err
		}
		out = append(out, rel(PlotProbe))
	}
	if len(taps) > 0 {
		if err := drawTiles(taps, cols, tapPlot, filepath.Join(dir, PlotTapGrads)); err != nil {
			return nil, err
		}
		out = append(out, rel(PlotTapGrads))
	}
	return out, nil
}

// PlotRuns draws probe.png (and tap-grads.png when a run has SLAT taps)
// for run directories, one panel per run, into dir; it returns the files
// written.
func PlotRuns(runs []string, dir string) ([]string, error) {
	var panels []panel
	var taps []panel
	for _, d := range runs {
		s, err := loadRunSeries(d)
		if err != nil {
			return nil, err
		}
		p := panel{title: s.label, runs: []runSeries{s}}
		p.runs[0].label = ""
		panels = append(panels, p)
		if len(s.taps) > 0 {
			taps = append(taps, p)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	cols := min(3, len(panels))
	var out []string
	if len(panels) > 0 {
		path := filepath.Join(dir, PlotProbe)
		if err := drawTiles(panels, cols, probePlot, path); err != nil {
			return nil, err
		}
		out = append(out, path)
	}
	if len(taps) > 0 {
		path := filepath.Join(dir, PlotTapGrads)
		if err := drawTiles(taps, min(3, len(taps)), tapPlot, path); err != nil {
			return nil, err
		}
		out = append(out, path)
	}
	return out, nil
}

// runSeries is what the per-run plots need of a run.
type runSeries struct {
	label             string // legend prefix ("s0"), "" for a lone run
	epochs            []float64
	clean, robust     []float64 // probe, in %
	flagged           []float64 // epochs flagged catastrophic
	decayed           []float64 // epochs of slow decay (decayEpochs)
	taps              []string
	tapX              []float64            // training progress in epochs
	tapY              map[string][]float64 // per tap, aligned with tapX
	trainAcc          []float64            // training accuracy at the perturbed points, in %
	hasProbe, hasData bool
}

// cellSeries builds a run's series from its report entry, with the
// step-level tap gradients of metrics.jsonl when dir has them.
func cellSeries(c *CellResult, dir string) runSeries {
	s := runSeries{label: fmt.Sprintf("s%d", c.Seed), tapY: map[string][]float64{}}
	var m *Metrics
	if dir != "" {
		m, _ = ReadMetrics(filepath.Join(dir, orchestrator.MetricsFile))
	}
	if m == nil {
		m = &Metrics{}
		for _, e := range c.History {
			em := orchestrator.EpochMetrics{Epoch: e.Epoch, Accuracy: e.Accuracy, TapGradL1: e.TapGradL1, Catastrophic: e.Catastrophic, Decayed: e.Decayed}
			if e.Probe {
				em.Probe = &orchestrator.ProbeResult{Clean: e.ProbeClean, Robust: e.ProbeRobust}
			}
			m.Epochs = append(m.Epochs, em)
		}
	}
	s.fill(m)
	return s
}

// loadRunSeries reads a run directory.
func loadRunSeries(dir string) (runSeries, error) {
	m, err := ReadMetrics(filepath.Join(dir, orchestrator.MetricsFile))
	if err != nil {
		return runSeries{}, fmt.Errorf("sweep: %s is not a run directory: %w", dir, err)
	}
	s := runSeries{label: filepath.Base(filepath.Clean(dir)), tapY: map[string][]float64{}}
	var c Cell
	if readJSON(filepath.Join(dir, CellFile), &c) == nil && c.Method != "" {
		s.label = fmt.Sprintf("%s, ε = %s, seed %d", c.Variant(), c.Eps, c.Seed)
	}
	s.fill(m)
	return s, nil
}

func (s *runSeries) fill(m *Metrics) {
	tapSet := map[string]bool{}
	for _, e := range m.Epochs {
		x := float64(e.Epoch)
		s.epochs = append(s.epochs, x)
		s.trainAcc = append(s.trainAcc, 100*e.Accuracy)
		if e.Probe != nil {
			s.hasProbe = true
			s.clean = append(s.clean, 100*e.Probe.Clean)
			s.robust = append(s.robust, 100*e.Probe.Robust)
		} else {
			s.clean = append(s.clean, math.NaN())
			s.robust = append(s.robust, math.NaN())
		}
		if e.Catastrophic {
			s.flagged = append(s.flagged, x)
		}
		for t := range e.TapGradL1 {
			tapSet[t] = true
		}
	}
	s.hasData = len(m.Epochs) > 0
	s.decayed = decayEpochs(m.Epochs)
	for t := range tapSet {
		s.taps = append(s.taps, t)
	}
	sort.Strings(s.taps)
	if len(s.taps) == 0 {
		return
	}
	// Step lines give the curve within epochs; without them, epoch means.
	perEpoch := 0.0
	if len(m.Epochs) > 0 && m.Epochs[0].GlobalStep > 0 {
		perEpoch = float64(m.Epochs[0].GlobalStep)
	}
	stepTaps := 0
	for _, st := range m.Steps {
		if len(st.TapGradL1) > 0 {
			stepTaps++
		}
	}
	if stepTaps >= 2 && perEpoch > 0 {
		for _, st := range m.Steps {
			if len(st.TapGradL1) == 0 {
				continue
			}
			s.tapX = append(s.tapX, float64(st.GlobalStep)/perEpoch)
			for _, t := range s.taps {
				s.tapY[t] = append(s.tapY[t], st.TapGradL1[t])
			}
		}
		return
	}
	for _, e := range m.Epochs {
		if len(e.TapGradL1) == 0 {
			continue
		}
		s.tapX = append(s.tapX, float64(e.Epoch))
		for _, t := range s.taps {
			s.tapY[t] = append(s.tapY[t], e.TapGradL1[t])
		}
	}
}

// decayEpochs are the epochs whose probe robust accuracy lies
// orchestrator.SlowDecayDrop or more below the best so far, without a
// catastrophic flag: the orchestrator's Decayed flag, recomputed so that
// runs written before the flag existed show it too.
func decayEpochs(epochs []orchestrator.EpochMetrics) []float64 {
	var out []float64
	best := -1.0
	for _, e := range epochs {
		if e.Probe == nil {
			continue
		}
		best = math.Max(best, e.Probe.Robust)
		if e.Decayed || !e.Catastrophic && orchestrator.SlowDecay(best, e.Probe.Robust) {
			out = append(out, float64(e.Epoch))
		}
	}
	return out
}

func hasTaps(runs []runSeries) bool {
	for _, r := range runs {
		if len(r.taps) > 0 {
			return true
		}
	}
	return false
}

// panel is one tile of a figure: a title and the runs it overlays.
type panel struct {
	title string
	runs  []runSeries
}

func xys(x, y []float64) plotter.XYs {
	var out plotter.XYs
	for i := range x {
		if i < len(y) && !math.IsNaN(y[i]) && !math.IsInf(y[i], 0) {
			out = append(out, plotter.XY{X: x[i], Y: y[i]})
		}
	}
	return out
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Legend.Top = true
	p.Legend.TextStyle.Font.Size = vg.Points(7)
	p.Add(plotter.NewGrid())
	return p
}

func addLine(p *plot.Plot, pts plotter.XYs, c color.Color, dashed bool, legend string) {
	if len(pts) == 0 {
		return
	}
	l, s, err := plotter.NewLinePoints(pts)
	if err != nil {
		return
	}
	l.Color, s.Color = c, c
	l.Width = vg.Points(1.5)
	s.Radius = vg.Points(2)
	if dashed {
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		s.Shape = draw.BoxGlyph{}
	}
	p.Add(l, s)
	if legend != "" {
		p.Legend.Add(legend, l, s)
	}
}

// probePlot draws a panel's per-epoch probe accuracies.
func probePlot(pn panel) *plot.Plot {
	p := newPlot(pn.title, "epoch", "probe accuracy (%)")
	p.Y.Min, p.Y.Max = 0, 100
	for i, r := range pn.runs {
		c := plotutil.Color(i)
		sep := " "
		if r.label == "" {
			sep = ""
		}
		if !r.hasProbe {
			addLine(p, xys(r.epochs, r.trainAcc), c, false, r.label+sep+"train acc (no probe)")
			continue
		}
		addLine(p, xys(r.epochs, r.robust), c, false, r.label+sep+"robust")
		addLine(p, xys(r.epochs, r.clean), c, true, r.label+sep+"clean")
		if len(r.flagged) > 0 {
			addMarkers(p, r, r.flagged, draw.CrossGlyph{}, color.RGBA{R: 200, A: 255})
		}
	}
	for _, r := range pn.runs {
		if !r.hasProbe || len(r.decayed) == 0 {
			continue
		}
		// An orange ring: a slow decay, apart from the red cross of a
		// flagged collapse.
		addMarkers(p, r, r.decayed, draw.RingGlyph{}, color.RGBA{R: 230, G: 140, A: 255})
	}
	if n := len(pn.runs[0].epochs); n > 0 {
		p.X.Min, p.X.Max = 0.8, math.Max(float64(n)+0.2, 1.2)
	}
	return p
}

// tapPlot draws a panel's per-tap mean ‖∂ℓ/∂h‖₁ over training.
func tapPlot(pn panel) *plot.Plot {
	p := newPlot(pn.title, "epoch", "mean |∂ℓ/∂h|₁")
	var all []float64
	var taps []string
	for _, r := range pn.runs {
		for _, t := range r.taps {
			if !slices.Contains(taps, t) {
				taps = append(taps, t)
			}
			all = append(all, r.tapY[t]...)
		}
	}
	for j, r := range pn.runs {
		for _, t := range r.taps {
			c := plotutil.Color(slices.Index(taps, t))
			label := t
			if r.label != "" {
				label = r.label + " " + t
			}
			l, err := plotter.NewLine(xys(r.tapX, r.tapY[t]))
			if err != nil {
				continue
			}
			l.Color, l.Width = c, vg.Points(1.2)
			l.Dashes = plotutil.Dashes(j)
			p.Add(l)
			p.Legend.Add(label, l)
		}
	}
	positive := len(all) > 0
	for _, v := range all {
		if !(v > 0) {
			positive = false
		}
	}
	if positive && slices.Max(all)/slices.Min(all) > 20 {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	return p
}

// drawTiles lays the panels out cols to a row and writes a PNG.
func drawTiles(panels []panel, cols int, mk func(panel) *plot.Plot, path string) error {
	rows := (len(panels) + cols - 1) / cols
	grid := make([][]*plot.Plot, rows)
	for i := range grid {
		grid[i] = make([]*plot.Plot, cols)
	}
	for k, pn := range panels {
		grid[k/cols][k%cols] = mk(pn)
	}
	img := vgimg.NewWith(vgimg.UseWH(panelW*vg.Length(cols), panelH*vg.Length(rows)), vgimg.UseDPI(110))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(grid, tiles, dc)
	for i := range grid {
		for j, p := range grid[i] {
			if p != nil {
				p.Draw(canvases[i][j])
			}
		}
	}
	return writePNG(img, path)
}

func writePNG(img *vgimg.Canvas, path string) error {
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("sweep: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	return os.Rename(path+".tmp", path)
}

// errPoints are means with symmetric error bars.
type errPoints struct {
	plotter.XYs
	plotter.YErrors
}

// plotRobustVsEps draws robust accuracy against ε, one line per variant,
// final and best checkpoints side by side.
func plotRobustVsEps(rep *Report, path string) error {
	variants, _ := axesOf(rep.Groups)
	var plots []*plot.Plot
	for _, which := range []string{"final", "best"} {
		p := newPlot("robust accuracy vs ε ("+which+" checkpoint)", "ε", "robust accuracy (%)")
		p.Y.Min, p.Y.Max = 0, 100
		p.Legend.Top, p.Legend.Left = false, true // robust accuracy falls with ε: the lower left is free
		epsTicks(p, rep.Groups)
		any := false
		for i, v := range variants {
			var pts errPoints
			for _, g := range rep.Groups {
				if g.Variant != v {
					continue
				}
				s := g.FinalRobust
				if which == "best" {
					if g.BestRobust == nil {
						continue
					}
					s = *g.BestRobust
				}
				pts.XYs = append(pts.XYs, plotter.XY{X: g.EpsValue, Y: 100 * s.Mean})
				// error bars of ±std, cut at 0% and 100%
				m, sd := 100*s.Mean, 100*s.Std
				pts.YErrors = append(pts.YErrors, struct{ Low, High float64 }{math.Min(sd, m), math.Min(sd, 100-m)})
			}
			if len(pts.XYs) == 0 {
				continue
			}
			sort.Sort(byX(pts))
			any = true
			c := plotutil.Color(i)
			addLine(p, pts.XYs, c, false, v)
			if eb, err := plotter.NewYErrorBars(pts); err == nil {
				eb.Color = c
				eb.Width = vg.Points(1.2)
				p.Add(eb)
			}
		}
		if any {
			plots = append(plots, p)
		}
	}
	if len(plots) == 0 {
		return nil
	}
	img := vgimg.NewWith(vgimg.UseWH(5*vg.Inch*vg.Length(len(plots)), 3.6*vg.Inch), vgimg.UseDPI(110))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: len(plots), PadX: vg.Millimeter * 6, PadTop: vg.Millimeter * 2,
		PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align([][]*plot.Plot{plots}, tiles, dc)
	for j, p := range plots {
		p.Draw(canvases[0][j])
	}
	return writePNG(img, path)
}

// epsTicks puts the x ticks at the sweep's ε values, labelled as given
// (8/255 stays 8/255), with a margin so the end points clear the axes.
func epsTicks(p *plot.Plot, groups []Group) {
	seen := map[float64]string{}
	for _, g := range groups {
		seen[g.EpsValue] = g.Eps
	}
	var ticks []plot.Tick
	lo, hi := math.Inf(1), math.Inf(-1)
	for v, label := range seen {
		ticks = append(ticks, plot.Tick{Value: v, Label: label})
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	if len(ticks) == 0 {
		return
	}
	sort.Slice(ticks, func(i, j int) bool { return ticks[i].Value < ticks[j].Value })
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	pad := 0.08 * (hi - lo)
	if pad == 0 {
		pad = 0.1 * math.Abs(lo)
	}
	p.X.Min, p.X.Max = lo-pad, hi+pad
}

// byX sorts error points by x.
type byX errPoints

func (b byX) Len() int           { return len(b.XYs) }
func (b byX) Less(i, j int) bool { return b.XYs[i].X < b.XYs[j].X }
func (b byX) Swap(i, j int) {
	b.XYs[i], b.XYs[j] = b.XYs[j], b.XYs[i]
	b.YErrors[i], b.YErrors[j] = b.YErrors[j], b.YErrors[i]
}

// addMarkers marks run r's robust accuracy at the given epochs on p.
func addMarkers(p *plot.Plot, r runSeries, epochs []float64, shape draw.GlyphDrawer, c color.Color) {
	var pts plotter.XYs
	for _, x := range epochs {
		for k, e := range r.epochs {
			if e == x {
				pts = append(pts, plotter.XY{X: x, Y: r.robust[k]})
			}
		}
	}
	if sc, err := plotter.NewScatter(pts); err == nil {
		sc.Shape, sc.Color, sc.Radius = shape, c, vg.Points(6)
		p.Add(sc)
	}
}
