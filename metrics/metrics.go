// Package metrics exposes slatrun's training, evaluation and serving numbers
// as Prometheus metrics (github.com/prometheus/client_golang). It is
// optional: nothing else in slatrun imports it, and it runs no HTTP server.
// The host makes a Metrics, registers it with its own registry, and wires it
// into what it runs:
//
//	m := metrics.New(metrics.Options{})
//	reg.MustRegister(m)                          // a prometheus.Registerer
//	cfg.Hooks = m.Hooks(cfg.Hooks)               // orchestrator training
//	popts.Observe = m.ObservePrediction          // predict.Predictor
//	m.ObserveReport(report)                      // eval / predict.Robustness
//
// and serves the registry the way it serves its other metrics (for example
// promhttp.HandlerFor(reg, promhttp.HandlerOpts{}) on its /metrics).
//
// Metric names follow Prometheus' conventions (base units, _total for
// counters, _ratio for fractions in [0,1]); the namespace "slatrun" can be
// changed and constant labels (say, the run's name) added through Options.
package metrics

import (
	"context"
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/slatrun/slatrun/eval"
	"github.com/slatrun/slatrun/orchestrator"
	"github.com/slatrun/slatrun/predict"
)

// Options configure the metrics.
type Options struct {
	// Namespace prefixes every name (default "slatrun").
	Namespace string
	// ConstLabels are added to every metric (for example {"run": "cifar-slat"}).
	ConstLabels prometheus.Labels
	// StepBuckets and PredictionBuckets are the histograms' upper bounds in
	// seconds (defaults: 0.5ms·2^k up to ~16s; 50µs·2^k up to ~1.6s).
	StepBuckets, PredictionBuckets []float64
}

// Outcomes of a prediction, the values of slatrun_predictions_total's
// "outcome" label.
const (
	OutcomeOK       = "ok"
	OutcomeInput    = "bad_input" // predict.ErrInput
	OutcomeCanceled = "canceled"  // the caller's context ended
	OutcomeClosed   = "closed"    // predict.ErrClosed
	OutcomeError    = "error"     // anything else (ONNX Runtime)
)

// Metrics holds slatrun's collectors. It implements prometheus.Collector:
// register it once. All methods are safe for concurrent use.
type Metrics struct {
	// Training (Hooks).
	TrainSteps    prometheus.Counter   // slatrun_train_steps_total: minibatch steps
	TrainExamples prometheus.Counter   // slatrun_train_examples_total: examples of those steps
	StepDuration  prometheus.Histogram // slatrun_step_duration_seconds: wall time of a minibatch step
	TrainLoss     prometheus.Gauge     // slatrun_train_loss: the last step's training loss
	TrainAccuracy prometheus.Gauge     // slatrun_train_accuracy_ratio: the last step's training accuracy
	LearningRate  prometheus.Gauge     // slatrun_learning_rate: the last step's learning rate
	Epochs        prometheus.Counter   // slatrun_train_epochs_total: finished epochs
	Checkpoints   prometheus.Counter   // slatrun_checkpoints_total: checkpoints written
	Catastrophic  prometheus.Gauge     // slatrun_catastrophic_overfitting: 1 once an epoch is flagged
	// Robustness: the per-epoch probe (Hooks) or an evaluation (ObserveReport).
	RobustAccuracy prometheus.Gauge // slatrun_robust_accuracy_ratio: probe robust accuracy, or an evaluation's worst case
	CleanAccuracy  prometheus.Gauge // slatrun_clean_accuracy_ratio: probe or evaluation clean accuracy
	// Serving (ObservePrediction).
	Predictions        *prometheus.CounterVec // slatrun_predictions_total{outcome}: Predict calls
	PredictionImages   prometheus.Counter     // slatrun_prediction_images_total: images classified
	PredictionDuration prometheus.Histogram   // slatrun_prediction_duration_seconds: Predict latency, waiting included

	all []prometheus.Collector

	mu   sync.Mutex
	snap Snapshot
}

// Snapshot is a plain copy of the latest values, for hosts that want them
// without Prometheus (a status page, a log line, a test).
type Snapshot struct {
	// Steps counts the minibatch steps observed; GlobalStep is the
	// trainer's optimizer step count (resumed runs and free-M's replays
	// included).
	Steps, GlobalStep, Epochs, Checkpoints int
	Loss, Accuracy, LR                     float64
	StepSeconds                            float64 // the last step's wall time
	Clean, Robust                          float64 // the last probe or evaluation (0 before one)
	Catastrophic                           bool
	Predictions, PredictErrors             int64
	PredictedImages                        int64
}

// New makes the collectors; register the result with a prometheus.Registerer.
func New(opts Options) *Metrics {
	ns := opts.Namespace
	if ns == "" {
		ns = "slatrun"
	}
	if opts.StepBuckets == nil {
		opts.StepBuckets = prometheus.ExponentialBuckets(0.0005, 2, 16)
	}
	if opts.PredictionBuckets == nil {
		opts.PredictionBuckets = prometheus.ExponentialBuckets(50e-6, 2, 16)
	}
	cl := opts.ConstLabels
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help, ConstLabels: cl})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: name, Help: help, ConstLabels: cl})
	}
	hist := func(name, help string, b []float64) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: name, Help: help, ConstLabels: cl, Buckets: b})
	}
	m := &Metrics{
		TrainSteps:     counter("train_steps_total", "Minibatch training steps taken (free-M replays each minibatch M times in one step)."),
		TrainExamples:  counter("train_examples_total", "Examples in the minibatch training steps taken."),
		StepDuration:   hist("step_duration_seconds", "Wall time of a training step (one minibatch, attack passes included).", opts.StepBuckets),
		TrainLoss:      gauge("train_loss", "Training loss of the last step, at the point the method trains on."),
		TrainAccuracy:  gauge("train_accuracy_ratio", "Training accuracy of the last step, at the point the method trains on."),
		LearningRate:   gauge("learning_rate", "Learning rate of the last optimizer step."),
		Epochs:         counter("train_epochs_total", "Finished training epochs."),
		Checkpoints:    counter("checkpoints_total", "Checkpoints written to the run directory."),
		Catastrophic:   gauge("catastrophic_overfitting", "1 once an epoch's probe flagged catastrophic overfitting, else 0."),
		RobustAccuracy: gauge("robust_accuracy_ratio", "Robust accuracy of the last per-epoch probe (PGD on held-out data) or evaluation (worst case over its attacks)."),
		CleanAccuracy:  gauge("clean_accuracy_ratio", "Clean accuracy of the last per-epoch probe or evaluation."),
		Predictions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "predictions_total",
			Help: "Predict calls, by outcome (ok, bad_input, canceled, closed, error).", ConstLabels: cl}, []string{"outcome"}),
		PredictionImages:   counter("prediction_images_total", "Images classified by successful Predict calls."),
		PredictionDuration: hist("prediction_duration_seconds", "Latency of Predict calls, queueing included.", opts.PredictionBuckets),
	}
	for _, o := range []string{OutcomeOK, OutcomeInput, OutcomeCanceled, OutcomeClosed, OutcomeError} {
		m.Predictions.WithLabelValues(o) // export zeros, so rates work from the start
	}
	m.all = []prometheus.Collector{m.TrainSteps, m.TrainExamples, m.StepDuration, m.TrainLoss, m.TrainAccuracy,
		m.LearningRate, m.Epochs, m.Checkpoints, m.Catastrophic, m.RobustAccuracy, m.CleanAccuracy,
		m.Predictions, m.PredictionImages, m.PredictionDuration}
	return m
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.all {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.all {
		c.Collect(ch)
	}
}

// Snapshot returns the latest values.
func (m *Metrics) Snapshot() Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.snap
}

// Hooks returns training hooks that record the metrics and then call next's
// hooks (if set), so a host's own hooks keep working:
// cfg.Hooks = m.Hooks(cfg.Hooks).
func (m *Metrics) Hooks(next orchestrator.Hooks) orchestrator.Hooks {
	return orchestrator.Hooks{
		OnStep: func(s orchestrator.StepInfo) error {
			m.ObserveStep(s)
			if next.OnStep != nil {
				return next.OnStep(s)
			}
			return nil
		},
		OnEpoch: func(e orchestrator.EpochMetrics) error {
			m.ObserveEpoch(e)
			if next.OnEpoch != nil {
				return next.OnEpoch(e)
			}
			return nil
		},
		OnCheckpoint: func(dir string, epochs int, best bool) error {
			m.Checkpoints.Inc()
			m.mu.Lock()
			m.snap.Checkpoints++
			m.mu.Unlock()
			if next.OnCheckpoint != nil {
				return next.OnCheckpoint(dir, epochs, best)
			}
			return nil
		},
	}
}

// ObserveStep records one training step (what Hooks' OnStep does).
func (m *Metrics) ObserveStep(s orchestrator.StepInfo) {
	acc := 0.0
	if s.Batch > 0 {
		acc = float64(s.Correct) / float64(s.Batch)
	}
	m.TrainSteps.Inc()
	m.TrainExamples.Add(float64(s.Batch))
	m.StepDuration.Observe(s.Duration.Seconds())
	m.TrainLoss.Set(float64(s.Loss))
	m.TrainAccuracy.Set(acc)
	m.LearningRate.Set(s.LR)
	m.mu.Lock()
	m.snap.Steps, m.snap.GlobalStep = m.snap.Steps+1, s.GlobalStep
	m.snap.Loss, m.snap.Accuracy, m.snap.LR = float64(s.Loss), acc, s.LR
	m.snap.StepSeconds = s.Duration.Seconds()
	m.mu.Unlock()
}

// ObserveEpoch records an epoch and its probe (what Hooks' OnEpoch does).
func (m *Metrics) ObserveEpoch(e orchestrator.EpochMetrics) {
	m.Epochs.Inc()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.snap.Epochs++
	if e.Probe != nil {
		m.RobustAccuracy.Set(e.Probe.Robust)
		m.CleanAccuracy.Set(e.Probe.Clean)
		m.snap.Robust, m.snap.Clean = e.Probe.Robust, e.Probe.Clean
	}
	if e.Catastrophic {
		m.Catastrophic.Set(1)
		m.snap.Catastrophic = true
	}
}

// ObserveReport records an evaluation: its clean accuracy and its worst
// case over the attacks.
func (m *Metrics) ObserveReport(r *eval.Report) {
	m.RobustAccuracy.Set(r.WorstCase)
	m.CleanAccuracy.Set(r.Clean)
	m.mu.Lock()
	m.snap.Robust, m.snap.Clean = r.WorstCase, r.Clean
	m.mu.Unlock()
}

// ObservePrediction records one Predict call; it has the type of
// predict.Options.Observe.
func (m *Metrics) ObservePrediction(o predict.Observation) {
	outcome := Outcome(o.Err)
	m.Predictions.WithLabelValues(outcome).Inc()
	m.PredictionDuration.Observe(o.Duration.Seconds())
	m.mu.Lock()
	defer m.mu.Unlock()
	m.snap.Predictions++
	if o.Err != nil {
		m.snap.PredictErrors++
		return
	}
	m.PredictionImages.Add(float64(o.Rows))
	m.snap.PredictedImages += int64(o.Rows)
}

// Outcome classifies a Predict error for slatrun_predictions_total.
func Outcome(err error) string {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, predict.ErrInput):
		return OutcomeInput
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return OutcomeCanceled
	case errors.Is(err, predict.ErrClosed):
		return OutcomeClosed
	}
	return OutcomeError
}
