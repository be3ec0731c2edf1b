// Package contract is the one home of the names shared by the graphs that
// package graphs derives and the code that runs them (orchestrator, eval,
// recalibrate, predict, the zoo): tensor names of the derived graphs'
// inputs and outputs, the slatrun.* metadata keys and values, the graph
// kinds and the eval loss heads. Producer and consumers import these
// constants instead of spelling the strings themselves, so a name changes
// in one place. docs/contract.md describes what each one means.
//
// The package is a leaf: it imports nothing from the project.
package contract

import "strings"

// Tensor names of the derived graphs' inputs and outputs.
const (
	// Input is the image input [N, C, H, W] (the forward graph's input,
	// renamed).
	Input = "x"
	// Labels is the int64 label input [N] of the attack, train and eval
	// kinds.
	Labels = "y"
	// Target is the int64 target-class input [N] of the targeted heads
	// (HeadDLRT, HeadDiffT) only.
	Target = "target"
	// Logits is the logits output [N, K].
	Logits = "logits"
	// Loss is the mean cross-entropy output (0-d) of the attack and train
	// kinds.
	Loss = "loss"
	// LossEach is the per-example loss output [N] of the eval and kl
	// kinds.
	LossEach = "loss.each"
	// AdvInput is the trades kind's second image input [N, C, H, W], the
	// adversarial x′ that the second instance of the network sees.
	AdvInput = "x.adv"
	// AdvLogits is the trades kind's output of the logits at AdvInput
	// [N, K].
	AdvLogits = "logits.adv"
	// RefLogits is the kl kind's input of the clean logits [N, K] whose
	// softmax is the fixed target distribution of the KL divergence.
	RefLogits = "logits.ref"
)

// Prefixes and suffixes that name tensors after another tensor t; build
// names with GradName, DeltaName, RangeName, L1Name and NextName.
const (
	// GradPrefix starts the gradient output of t: grad.<t>.
	GradPrefix = "grad."
	// DeltaPrefix starts the perturbation input of tap t (train kind):
	// delta.<t>.
	DeltaPrefix = "delta."
	// RangePrefix starts the range output of tap t (attack kind with
	// graphs.Spec.TapRange): range.<t>, hi − lo of t per sample and
	// channel.
	RangePrefix = "range."
	// L1Prefix starts the L1-norm output of tap t's gradient (attack kind
	// with graphs.Spec.TapL1): l1.<t> = Σ|grad.<t>| over the whole batch,
	// shape [1, …, 1] (t's rank).
	L1Prefix = "l1."
	// NextSuffix ends the updated BN running statistic output of the
	// training kinds: <stat>.next.
	NextSuffix = ".next"
)

// GradName returns the name of the gradient output of tensor t, grad.<t>.
func GradName(t string) string { return GradPrefix + t }

// DeltaName returns the name of the perturbation input of tap t, delta.<t>.
func DeltaName(t string) string { return DeltaPrefix + t }

// RangeName returns the name of the range output of tap t, range.<t>.
func RangeName(t string) string { return RangePrefix + t }

// L1Name returns the name of the gradient L1-norm output of tap t, l1.<t>.
func L1Name(t string) string { return L1Prefix + t }

// NextName returns the name of the updated running statistic output of
// stat, <stat>.next.
func NextName(stat string) string { return stat + NextSuffix }

// InputGrad is the name of the input gradient output, grad.x.
const InputGrad = GradPrefix + Input

// Metadata keys. Every key starts with MetaPrefix; derived graphs keep the
// forward graph's slatrun.* keys and set the ones they describe.
const (
	// MetaPrefix starts every slatrun metadata key.
	MetaPrefix = "slatrun."
	// MetaKind is the graph's kind (KindForward, KindAttack, ...).
	MetaKind = MetaPrefix + "kind"
	// MetaTaps lists the taps (a List): in a zoo model the default taps,
	// in a derived graph those it was derived with.
	MetaTaps = MetaPrefix + "taps"
	// MetaParams lists the trainable parameters, in the order of their
	// grad.<param> outputs.
	MetaParams = MetaPrefix + "params"
	// MetaStats lists the BN running statistics, in the order of their
	// <stat>.next outputs.
	MetaStats = MetaPrefix + "stats"
	// MetaBatch is the concrete batch size a derived graph is specialized
	// to (decimal).
	MetaBatch = MetaPrefix + "batch"
	// MetaLoss is an eval graph's loss head (HeadCE, ...).
	MetaLoss = MetaPrefix + "loss"
	// MetaModel is a zoo model's name.
	MetaModel = MetaPrefix + "model"
	// MetaInput is a zoo model's input size "C,H,W".
	MetaInput = MetaPrefix + "input"
	// MetaClasses is a zoo model's number of classes (decimal).
	MetaClasses = MetaPrefix + "classes"
	// MetaBeta is a trades graph's KL weight β (decimal).
	MetaBeta = MetaPrefix + "beta"
	// MetaBN, set to BNNone, says a model really has no batch
	// normalization (so Derive does not take it for a PyTorch eval-mode
	// export that folded BN into its convolutions).
	MetaBN = MetaPrefix + "bn"
)

// BNNone is the MetaBN value of a model without batch normalization.
const BNNone = "none"

// The values of MetaKind: what a derived graph computes.
const (
	KindForward = "forward"
	KindAttack  = "attack"
	KindTrain   = "train"
	KindEval    = "eval"
	// KindKL is TRADES's inner maximization: BN on the running statistics
	// (inputs, not updated), per-example KL(softmax(RefLogits) ‖
	// softmax(f(x))) and its input gradient.
	KindKL = "kl"
	// KindTRADES is TRADES's outer loss: the network instantiated twice
	// with shared parameters (x and AdvInput, each with its own batch
	// statistics), CE(f(x), y) + β·KL(f(x) ‖ f(x′)) and its parameter
	// gradients.
	KindTRADES = "trades"
)

// Loss heads: the per-example losses of the eval kind (MetaLoss). For
// every head a higher loss is more adversarial.
const (
	HeadCE   = "ce"    // cross-entropy: logsumexp(z) − z_y
	HeadCW   = "cw"    // CW margin: max_{j≠y} z_j − z_y
	HeadDLR  = "dlr"   // −(z_y − max_{j≠y} z_j) / (z_π1 − z_π3 + 1e-12)
	HeadDLRT = "dlr-t" // targeted: −(z_y − z_t) / (z_π1 − (z_π3+z_π4)/2 + 1e-12); input Target
	// HeadDiffT is the targeted logit difference z_t − z_y (input Target),
	// the function whose value and gradient FAB-T linearizes.
	HeadDiffT = "diff-t"
)

// HeadLogits names the eval graph with the logits alone: no loss, no
// gradient, one forward pass (Square reads only the logits). It is not a
// loss head, and Heads does not list it.
const HeadLogits = "logits"

// HeadKL is the loss of the kl kind (MetaLoss): the per-example
// KL(softmax(RefLogits) ‖ softmax(z)) = Σ_j p_j·(log p_j − log q_j).
// It is not an eval head.
const HeadKL = "kl"

// HeadTRADES is the loss of the trades kind (MetaLoss): the batch mean of
// CE(z, y) + β·KL(softmax(z) ‖ softmax(z′)). It is not an eval head.
const HeadTRADES = "trades"

// DefaultHead is the loss head of an eval graph derived with no head named.
const DefaultHead = HeadCE

// Heads lists every loss head, in a fixed order.
func Heads() []string { return []string{HeadCE, HeadCW, HeadDLR, HeadDLRT, HeadDiffT} }

// Targeted reports whether the head takes the Target input.
func Targeted(head string) bool { return head == HeadDLRT || head == HeadDiffT }

// MinClasses returns the fewest classes the loss head needs (DLR sorts the
// top three logits, its targeted form the top four), or 0 for an unknown
// head.
func MinClasses(head string) int {
	switch head {
	case HeadCE, HeadCW, HeadDiffT, HeadLogits:
		return 2
	case HeadDLR:
		return 3
	case HeadDLRT:
		return 4
	}
	return 0
}

// listSep separates the names of a list-valued metadata entry.
const listSep = ","

// List joins names into a list-valued metadata entry (MetaTaps,
// MetaParams, MetaStats).
func List(names []string) string { return strings.Join(names, listSep) }

// SplitList splits a list-valued metadata entry; "" is the empty list (nil).
func SplitList(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, listSep)
}
