// Package perturb is the perturbation arithmetic of slatrun's attacks and
// trainers, done on the host in Go: sign steps, L∞ and L2 projections,
// the [0,1] pixel box, uniform random starts, the one-step rules of FGSM,
// FGSM-RS, N-FGSM, PGD and Free-m, and the two host-side rules of a SLAT step
// (SLATInput for the input, SLATLatent for each latent tap). DomainClip is the
// Go reference of the domain clip that the SLAT train graph computes inside
// ONNX, and MeanAbsSum is the per-tap ‖∂ℓ/∂h‖₁ statistic that SLAT's
// explanation rests on (Park & Lee, "Reliably fast adversarial training via
// latent adversarial perturbation", ICCV 2021).
//
// Everything works in place on flat []float32 slices: images are pixel-space
// [0,1] tensors in NCHW order, flattened; a gradient has the layout of the
// tensor it belongs to. Element-wise functions take slices of equal length and
// panic when they are not (a programming error, like an index out of range);
// per-sample functions take the number of elements of one sample, or the
// N, C and H·W of an NCHW tensor, and panic when the lengths do not match.
//
// Nothing here allocates, and the functions a training step calls once per
// minibatch (LinfStep, SLATInput, SLATLatent, FGSMRS, ...) are single fused
// passes without data-dependent branches, so that random gradient signs cost
// no branch mispredictions. SLAT's two (SLATInput, and the sign step of
// SLATLatent) run as AVX2 assembly on amd64 processors that have it, bit
// for bit the Go loops' results, which do the work elsewhere and under the
// purego build tag.
//
// Conventions, after the reference code: sign(0) = 0, so a zero gradient
// leaves its element where it was; sign(NaN) = 0 as well. After a function
// that boxes, x+δ lies in [0,1] exactly in float32 arithmetic (not just up to
// rounding) for every x in [0,1], and an L∞ clip to ±r leaves |δ| ≤ r exactly.
package perturb
