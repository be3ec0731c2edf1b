package dataset

import "fmt"

// Settings of the synthetic task.
const (
	syntheticGrid  = 4    // prototypes are a grid×grid pattern per channel, upsampled
	syntheticLow   = 0.2  // pattern levels: each grid cell is low or high
	syntheticHigh  = 0.8  //
	syntheticNoise = 0.25 // standard deviation of the per-pixel Gaussian noise
)

// Synthetic returns n examples of a learnable classification task with
// classes classes and c×h×w images. Each class has a fixed prototype: per
// channel a 4×4 grid of low (0.2) and high (0.8) cells, bilinearly upsampled
// to h×w, so the patterns are smooth and an example shifted by a few pixels
// (pad-crop augmentation) still resembles its class. An example is its class
// prototype plus Gaussian noise (σ 0.25), clipped to [0,1]. Nearest class
// mean classifies it almost perfectly, yet no pixel alone tells the class.
// Labels are balanced (n/classes each, the rest spread over the first
// classes) and shuffled.
//
// The prototypes depend only on c, h, w and classes; seed picks the examples.
// So Synthetic(…, 1) and Synthetic(…, 2) are two samples of the same task, for
// example a training and a test set. Synthetic panics if n < 0 or any size is
// not positive.
func Synthetic(n, c, h, w, classes int, seed uint64) *Set {
	if n < 0 || c < 1 || h < 1 || w < 1 || classes < 1 {
		panic(fmt.Sprintf("dataset: Synthetic(%d, %d, %d, %d, %d): want n ≥ 0 and positive sizes", n, c, h, w, classes))
	}
	d := c * h * w
	protos := prototypes(c, h, w, classes)
	s := &Set{N: n, C: c, H: h, W: w, Classes: classes, X: make([]float32, n*d), Y: make([]int64, n)}
	r := seeded(seed, domainSynthetic, 0, 0)
	for i := range s.Y {
		s.Y[i] = int64(i % classes)
	}
	for i := n - 1; i > 0; i-- {
		j := r.intn(i + 1)
		s.Y[i], s.Y[j] = s.Y[j], s.Y[i]
	}
	for i, y := range s.Y {
		p := protos[int(y)*d : int(y+1)*d]
		x := s.X[i*d : (i+1)*d]
		for j := range x {
			v := float64(p[j]) + syntheticNoise*r.norm()
			x[j] = float32(max(0, min(1, v)))
		}
	}
	return s
}

// prototypes returns the classes prototypes of the synthetic task, each c×h×w.
func prototypes(c, h, w, classes int) []float32 {
	d := c * h * w
	out := make([]float32, classes*d)
	r := seeded(uint64(c)<<40^uint64(h)<<20^uint64(w), domainPrototype, uint64(classes), 0)
	const g = syntheticGrid
	var grid [g * g]float64
	for k := 0; k < classes*c; k++ {
		for i := range grid {
			grid[i] = syntheticLow
			if r.next()&1 == 1 {
				grid[i] = syntheticHigh
			}
		}
		p := out[k*h*w : (k+1)*h*w]
		for i := 0; i < h; i++ {
			y0, y1, fy := lerpIndex(i, h)
			for j := 0; j < w; j++ {
				x0, x1, fx := lerpIndex(j, w)
				top := grid[y0*g+x0]*(1-fx) + grid[y0*g+x1]*fx
				bot := grid[y1*g+x0]*(1-fx) + grid[y1*g+x1]*fx
				p[i*w+j] = float32(top*(1-fy) + bot*fy)
			}
		}
	}
	return out
}

// lerpIndex maps pixel i of n to grid cells a, b and the weight of b
// (align-corners=false bilinear upsampling).
func lerpIndex(i, n int) (a, b int, f float64) {
	const g = syntheticGrid
	u := (float64(i)+0.5)*g/float64(n) - 0.5
	u = max(0, min(g-1, u))
	a = int(u)
	b = min(a+1, g-1)
	return a, b, u - float64(a)
}
