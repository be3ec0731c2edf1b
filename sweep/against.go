package sweep

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// Against is the report's answer to "where does this setting hold": each
// setting of a method that is not a baseline, at each ε, against the
// baselines' mean final robust accuracy, and the most reliable setting at
// each ε. A setting holds at an ε when none of its seeds collapsed (slow
// decays included) and its mean final robust accuracy is no more than Tol
// below every baseline's.
type Against struct {
	Baselines []string `json:"baselines"`
	// Tol is the shortfall, a fraction (0.02: two points), still counted as
	// matching a baseline.
	Tol  float64        `json:"tol"`
	Rows []AgainstRow   `json:"rows"`
	Most []MostReliable `json:"most_reliable"`
}

// AgainstRow is one setting at one ε.
type AgainstRow struct {
	Variant string  `json:"variant"`
	Eps     string  `json:"eps"`
	Robust  float64 `json:"robust"`
	// Delta is the setting's mean final robust accuracy minus each
	// baseline's (by name).
	Delta     map[string]float64 `json:"delta"`
	Collapsed int                `json:"collapsed"`
	Decayed   int                `json:"decayed"`
	Runs      int                `json:"runs"`
	Holds     bool               `json:"holds"`
}

// MostReliable is, at one ε, the setting (any method) with the fewest
// collapsed or decayed runs (as a share of its runs) and, among those, the
// highest mean final robust accuracy.
type MostReliable struct {
	Eps     string  `json:"eps"`
	Variant string  `json:"variant"`
	Robust  float64 `json:"robust"`
	Std     float64 `json:"std"`
	Failed  int     `json:"failed"`
	Runs    int     `json:"runs"`
}

// Compare fills rep.Against for the given baseline methods (those not in
// the grid are ignored) and tolerance.
func Compare(rep *Report, baselines []string, tol float64) {
	a := &Against{Tol: tol}
	for _, b := range baselines {
		if slices.Contains(rep.Spec.Methods, b) {
			a.Baselines = append(a.Baselines, b)
		}
	}
	variants, eps := axesOf(rep.Groups)
	for _, e := range eps {
		var best *Group
		for _, v := range variants {
			g := findGroup(rep.Groups, v, e)
			if g == nil {
				continue
			}
			if best == nil || failShare(g) < failShare(best) ||
				failShare(g) == failShare(best) && g.FinalRobust.Mean > best.FinalRobust.Mean {
				best = g
			}
			if slices.Contains(a.Baselines, g.Method) || len(a.Baselines) == 0 {
				continue
			}
			row := AgainstRow{Variant: v, Eps: e, Robust: g.FinalRobust.Mean, Delta: map[string]float64{},
				Collapsed: g.Collapsed, Decayed: g.Decayed, Runs: g.Runs}
			row.Holds = g.Collapsed == 0 && g.Decayed == 0
			for _, b := range a.Baselines {
				h := findGroup(rep.Groups, b, e)
				if h == nil {
					row.Holds = false
					continue
				}
				row.Delta[b] = g.FinalRobust.Mean - h.FinalRobust.Mean
				row.Holds = row.Holds && row.Delta[b] >= -tol
			}
			a.Rows = append(a.Rows, row)
		}
		if best != nil {
			a.Most = append(a.Most, MostReliable{Eps: e, Variant: best.Variant, Robust: best.FinalRobust.Mean,
				Std: best.FinalRobust.Std, Failed: best.Collapsed + best.Decayed, Runs: best.Runs})
		}
	}
	rep.Against = a
}

// failShare is the share of a group's runs that collapsed or decayed.
func failShare(g *Group) float64 {
	if g.Runs == 0 {
		return 1
	}
	return float64(g.Collapsed+g.Decayed) / float64(g.Runs)
}

// writeAgainst writes the comparison, if Compare made one.
func writeAgainst(w io.Writer, rep *Report) {
	a := rep.Against
	if a == nil {
		return
	}
	_, eps := axesOf(rep.Groups)
	if len(a.Baselines) > 0 {
		fmt.Fprintf(w, "## Each setting against %s\n\n", strings.Join(a.Baselines, " and "))
		fmt.Fprintf(w, "Mean final robust accuracy minus the baseline's (points; %s) and the runs that collapsed or "+
			"decayed. **holds**: no run collapsed or decayed, and no baseline is more than %.0f points ahead. (Training "+
			"times per epoch are in the table above; on a shared machine they measure its load as much as the methods' "+
			"cost, which `slatrun bench` measures.)\n\n", strings.Join(a.Baselines, " / "), 100*a.Tol)
		fmt.Fprintf(w, "| setting |")
		for _, e := range eps {
			fmt.Fprintf(w, " ε = %s |", e)
		}
		fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---|", len(eps)))
		var order []string
		for _, r := range a.Rows {
			if !slices.Contains(order, r.Variant) {
				order = append(order, r.Variant)
			}
		}
		for _, v := range order {
			fmt.Fprintf(w, "| %s |", v)
			for _, e := range eps {
				i := slices.IndexFunc(a.Rows, func(r AgainstRow) bool { return r.Variant == v && r.Eps == e })
				if i < 0 {
					fmt.Fprintf(w, " – |")
					continue
				}
				r := a.Rows[i]
				var ds []string
				for _, b := range a.Baselines {
					if d, ok := r.Delta[b]; ok {
						ds = append(ds, fmt.Sprintf("%+.1f", 100*d))
					} else {
						ds = append(ds, "–")
					}
				}
				cell := fmt.Sprintf("%s; %d/%d failed", strings.Join(ds, " / "), r.Collapsed+r.Decayed, r.Runs)
				if r.Holds {
					cell = "**holds** " + cell
				}
				fmt.Fprintf(w, " %s |", cell)
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "## The most reliable setting at each ε\n\nFewest collapsed or decayed runs, then the highest mean final robust accuracy, over every setting of every method:\n\n")
	fmt.Fprintf(w, "| ε | setting | final robust %% | failed runs |\n|---|---|---:|---:|\n")
	for _, m := range a.Most {
		fmt.Fprintf(w, "| %s | %s | %.1f ± %.1f | %d/%d |\n", m.Eps, m.Variant, 100*m.Robust, 100*m.Std, m.Failed, m.Runs)
	}
	fmt.Fprintln(w)
}
