package perturb_test

import (
	"fmt"

	"github.com/slatrun/slatrun/perturb"
)

// Three PGD steps on four pixels. The first pixel is black and its gradient
// points down, so the box keeps it where it is; the second saturates at ε
// (not at 3·0.04); the third reaches white after 0.03; the fourth has a zero
// gradient and does not move.
func ExampleLinfStep() {
	x := []float32{0, 0.5, 0.97, 0.5}
	grad := []float32{-1, 2, 3, 0}
	delta := make([]float32, len(x))
	for range 3 {
		perturb.LinfStep(delta, grad, x, 0.04, 0.1)
	}
	fmt.Printf("%.2f\n", delta)
	// Output: [0.00 0.10 0.03 0.00]
}

// The host side of one SLAT step: the input rule, then the latent rule for a
// tap, then (here; in training, inside the train graph) the domain clip.
func ExampleSLATLatent() {
	const eps, eta = 0.1, 0.1
	x := []float32{0.5, 0.95}
	gx := []float32{-3, 1}
	dx := make([]float32, len(x))
	perturb.SLATInput(dx, gx, x, eps, perturb.DefaultInputStepFrac)
	fmt.Printf("δx = %.3f\n", dx)

	// One sample, one channel, four positions of a tap's activation.
	h := []float32{0, 0.05, 1, 2}
	gh := []float32{-1, 1, 0, 1}
	dh := make([]float32, len(h))
	perturb.SLATLatent(dh, gh, eta, perturb.DefaultLatentStep*eta, perturb.DefaultLatentRadius*eta)
	fmt.Printf("raw δh = %.2f\n", dh)
	perturb.DomainClip(dh, h, 1, 1, 4)
	fmt.Printf("clipped δh = %.2f\n", dh)
	// Output:
	// δx = [-0.090 0.050]
	// raw δh = [-0.10 0.10 0.00 0.10]
	// clipped δh = [0.00 0.10 0.00 0.00]
}
