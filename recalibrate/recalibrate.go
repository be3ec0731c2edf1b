// Package recalibrate recomputes the batch-norm running statistics of a
// trained model from clean data, leaving every weight as it is.
//
// A model's running statistics are an average of the batch statistics its
// training passes saw. When those passes ran at perturbed points (the
// attack and train passes of adversarial training), the averages describe
// perturbed activations, and the model evaluates clean images with
// statistics that do not fit them. Recalibration replaces each running mean
// and variance by the average, over N clean images in batches, of the
// batch mean and the unbiased batch variance that a training-mode forward
// pass computes at that layer — what PyTorch does with the statistics
// reset and momentum=None. Layers are normalized with batch statistics
// while the averages are taken, as in training.
package recalibrate

import (
	"errors"
	"fmt"
	"math"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/graphs"
	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/ort"
)

// Options configures a recalibration.
type Options struct {
	// N is the number of examples, the first N of the data (0: all).
	N int
	// Batch is the batch size of the training-mode passes (default 128). A
	// final incomplete batch is dropped, so that every batch statistic
	// comes from Batch examples.
	Batch int
	// Runtime configures the ONNX Runtime session (Batch and Shared are
	// set here).
	Runtime ort.Options
}

// Report says what a recalibration did.
type Report struct {
	Images  int      `json:"images"`
	Batches int      `json:"batches"`
	Stats   []string `json:"stats"` // the recomputed statistics
	// MaxShift is, per statistic, the largest |new − old| over its channels.
	MaxShift map[string]float64 `json:"max_shift"`
}

// Model returns forward with its BN running statistics recomputed on the
// first opts.N examples of set. ort.Init must have been called.
func Model(forward *onnx.Model, set *dataset.Set, opts Options) (*onnx.Model, *Report, error) {
	if set == nil || set.N == 0 {
		return nil, nil, errors.New("recalibrate: no data")
	}
	if opts.N < 0 {
		return nil, nil, fmt.Errorf("recalibrate: N = %d: want ≥ 0 (0: all %d examples)", opts.N, set.N)
	}
	if opts.Batch < 0 {
		return nil, nil, fmt.Errorf("recalibrate: Batch = %d: want ≥ 1 (0: 128)", opts.Batch)
	}
	n := set.N
	if opts.N > 0 {
		n = min(opts.N, set.N)
	}
	B := opts.Batch
	if B == 0 {
		B = 128
	}
	B = min(B, n)
	params, stats, err := graphs.Parameters(forward)
	if err != nil {
		return nil, nil, fmt.Errorf("recalibrate: %w", err)
	}
	if len(stats) == 0 {
		return nil, nil, errors.New("recalibrate: the model has no batch-norm running statistics")
	}
	// An attack graph with BN momentum 1: its <stat>.next outputs are the
	// batch's own mean and unbiased variance, whatever the statistics fed
	// in (zeros here, so that old non-finite values cannot leak through).
	g, err := graphs.Derive(forward, graphs.Spec{Kind: graphs.Attack, Batch: B, Taps: []string{},
		BNMomentum: 1, NCHWcBlock: opts.Runtime.NCHWc()})
	if err != nil {
		return nil, nil, fmt.Errorf("recalibrate: %w", err)
	}
	shared := map[string][]float32{}
	for _, p := range params {
		shared[p.Name] = p.Data
	}
	for _, s := range stats {
		shared[s.Name] = make([]float32, len(s.Data))
	}
	ro := opts.Runtime
	ro.Batch, ro.Shared, ro.Outputs = B, shared, nil
	s, err := ort.NewSession(g, ro)
	if err != nil {
		return nil, nil, fmt.Errorf("recalibrate: %w", err)
	}
	defer s.Close()
	xs, ls := s.Shape(contract.Input), s.Shape(contract.Logits)
	if len(xs) != 4 || len(ls) != 2 {
		return nil, nil, fmt.Errorf("recalibrate: the model takes x %v and gives logits %v; want an image classifier (x [N,C,H,W], logits [N,K])", xs, ls)
	}
	if err := dataset.CheckShape(set, int(xs[1]), int(xs[2]), int(xs[3])); err != nil {
		return nil, nil, fmt.Errorf("recalibrate: %w", err)
	}
	k := ls[1]
	for i, y := range set.Y[:n] {
		if y < 0 || y >= k {
			return nil, nil, fmt.Errorf("recalibrate: label %d of example %d is outside the model's %d classes", y, i, k)
		}
	}

	sums := make([][]float64, len(stats))
	next := make([][]float32, len(stats))
	for i, st := range stats {
		sums[i] = make([]float64, len(st.Data))
		next[i] = s.Float(contract.NextName(st.Name))
	}
	loader := dataset.NewLoader(set.Slice(0, n), B, false, 0)
	loader.DropLast = true
	x, y := s.Float(contract.Input), s.Int64(contract.Labels)
	batches := 0
	for loader.Next(x, y) {
		if err := s.Run(); err != nil {
			return nil, nil, fmt.Errorf("recalibrate: batch %d: %w", batches+1, err)
		}
		for i := range stats {
			for j, v := range next[i] {
				sums[i][j] += float64(v)
			}
		}
		batches++
	}
	rep := &Report{Images: batches * B, Batches: batches, MaxShift: map[string]float64{}}
	values := make(map[string][]float32, len(stats))
	for i, st := range stats {
		v := make([]float32, len(st.Data))
		shift := 0.0
		for j := range v {
			m := sums[i][j] / float64(batches)
			if math.IsNaN(m) || math.IsInf(m, 0) {
				return nil, nil, fmt.Errorf("recalibrate: %s[%d] is %v: the model's activations are not finite on this data", st.Name, j, m)
			}
			v[j] = float32(m)
			shift = max(shift, math.Abs(m-float64(st.Data[j])))
		}
		values[st.Name] = v
		rep.Stats = append(rep.Stats, st.Name)
		rep.MaxShift[st.Name] = shift
	}
	m, err := graphs.WithWeights(forward, values)
	if err != nil {
		return nil, nil, fmt.Errorf("recalibrate: %w", err)
	}
	return m, rep, nil
}
