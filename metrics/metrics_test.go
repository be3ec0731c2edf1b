package metrics

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/slatrun/slatrun/predict"
)

// TestNames checks the metric names against Prometheus' own linter.
func TestNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(New(Options{}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

func TestOutcome(t *testing.T) {
	for err, want := range map[error]string{
		nil:                                     OutcomeOK,
		fmt.Errorf("x: %w", predict.ErrInput):   OutcomeInput,
		context.Canceled:                        OutcomeCanceled,
		context.DeadlineExceeded:                OutcomeCanceled,
		predict.ErrClosed:                       OutcomeClosed,
		errors.New("ort: run: something broke"): OutcomeError,
	} {
		if got := Outcome(err); got != want {
			t.Errorf("Outcome(%v) = %s, want %s", err, got, want)
		}
	}
}
