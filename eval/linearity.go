package eval

import (
	"context"
	"errors"
	"fmt"
	"math"
)

// LocalLinearity returns GradAlign's measure of local linearity (Andriushchenko
// & Flammarion 2020): the mean over samples of cos(∇x ℓ(x), ∇x ℓ(x+u)), with
// ℓ the cross-entropy ("ce" eval graph) and u uniform in [−ε,ε] per value,
// not clipped to [0,1] (as in GradAlign). Samples where either gradient is
// zero are left out, as GradAlign does; if every sample is, the result is an
// error. x holds len(y) images; u is drawn from seed, per sample.
// Values near 1 mean the loss is close to linear within the ε-ball;
// catastrophic overfitting shows as a drop.
func LocalLinearity(ctx context.Context, c *Classifier, x []float32, y []int64, eps float32, seed uint64) (float64, error) {
	dm := c.Dims()
	d := dm.D()
	if len(x) != len(y)*d || len(y) == 0 {
		return 0, fmt.Errorf("eval: local linearity: %d image values for %d labels of %d values each", len(x), len(y), d)
	}
	if !(eps >= 0) || math.IsInf(float64(eps), 0) {
		return 0, fmt.Errorf("eval: local linearity: ε = %v; want a finite number ≥ 0", eps)
	}
	for i, v := range y {
		if v < 0 || v >= int64(dm.K) {
			return 0, fmt.Errorf("eval: local linearity: label %d of example %d is outside [0, %d)", v, i, dm.K)
		}
	}
	a := newAttacker(c, eps, false, seed)
	if err := a.bind(HeadCE); err != nil {
		return 0, err
	}
	all := make([]int, len(y))
	for i := range all {
		all[i] = i
	}
	sum, used := 0.0, 0
	err := batches(all, dm.B, func(rows []int) error {
		a.load(x, y, rows)
		a.labels()
		copy(a.xa, a.x0)
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := a.run(); err != nil {
			return err
		}
		copy(a.g, a.sg)
		for r := range a.b {
			rg := stream(seed, linearityID, a.ids[r], 0)
			for i := r * d; i < (r+1)*d; i++ {
				a.xa[i] = a.x0[i] + eps*rg.sym()
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := a.run(); err != nil {
			return err
		}
		for r := range a.n {
			g1, g2 := a.g[r*d:(r+1)*d], a.sg[r*d:(r+1)*d]
			dot, n1, n2 := 0.0, 0.0, 0.0
			for i := range g1 {
				u, v := float64(g1[i]), float64(g2[i])
				dot, n1, n2 = dot+u*v, n1+u*u, n2+v*v
			}
			if n1 == 0 || n2 == 0 {
				continue
			}
			sum += dot / math.Sqrt(n1*n2)
			used++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("eval: local linearity: %w", err)
	}
	if used == 0 {
		return 0, errors.New("eval: local linearity: every sample has a zero gradient")
	}
	return sum / float64(used), nil
}
