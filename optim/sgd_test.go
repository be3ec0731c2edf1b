package optim

import (
	"math"
	"strings"
	"testing"
)

// TestSGDMatchesHand runs three SGD steps with changing learning rate and
// momentum and compares with torch.optim.SGD's update written out in
// float64.
func TestSGDMatchesHand(t *testing.T) {
	p := [][]float32{{1, -2, 0.5}, {3}}
	g := [][]float32{{0.1, 0.2, -0.3}, {-1}}
	o, err := NewSGD(p, g, 0.01)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]float64{{1, -2, 0.5}, {3}}
	buf := [][]float64{{0, 0, 0}, {0}}
	steps := []struct {
		lr, mom float64
		grads   [][]float32
	}{
		{0.1, 0.9, [][]float32{{0.1, 0.2, -0.3}, {-1}}},
		{0.2, 0.85, [][]float32{{-0.5, 0, 1}, {2}}},
		{0.05, 0.8, [][]float32{{0.25, -0.75, 0}, {0.5}}},
	}
	for k, st := range steps {
		for i := range g {
			copy(g[i], st.grads[i])
		}
		o.Step(float32(st.lr), float32(st.mom))
		for i := range want {
			for j := range want[i] {
				d := float64(st.grads[i][j]) + 0.01*want[i][j]
				if k == 0 {
					buf[i][j] = d
				} else {
					buf[i][j] = st.mom*buf[i][j] + d
				}
				want[i][j] -= st.lr * buf[i][j]
				if math.Abs(float64(p[i][j])-want[i][j]) > 1e-6 {
					t.Fatalf("step %d: p[%d][%d] = %v, want %v", k, i, j, p[i][j], want[i][j])
				}
				if math.Abs(float64(o.Bufs[i][j])-buf[i][j]) > 1e-6 {
					t.Fatalf("step %d: buf[%d][%d] = %v, want %v", k, i, j, o.Bufs[i][j], buf[i][j])
				}
			}
		}
	}
	if allocs := testing.AllocsPerRun(10, func() { o.Step(0.1, 0.9) }); allocs != 0 {
		t.Errorf("SGD.Step allocates %v times", allocs)
	}
}

// TestNewSGDRefusesMismatch: parameters and gradients must pair up.
func TestNewSGDRefusesMismatch(t *testing.T) {
	for _, c := range []struct {
		name          string
		params, grads [][]float32
		want          string
	}{
		{"count", [][]float32{{1}, {2}}, [][]float32{{0}}, "2 parameters but 1 gradients"},
		{"length", [][]float32{{1, 2}}, [][]float32{{0}}, "parameter 0 has 2 values but its gradient 1"},
	} {
		if _, err := NewSGD(c.params, c.grads, 0); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", c.name, err, c.want)
		}
	}
}
