package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/metrics"
	"github.com/slatrun/slatrun/onnx/ort"
	"github.com/slatrun/slatrun/predict"
)

func TestMain(m *testing.M) {
	if err := ort.Init(""); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// server starts the handler on loopback over a freshly saved zoo convnet
// (width 8, 28×28, 10 classes), as a checkpoint's model.onnx would be.
func server(t *testing.T, opts predict.Options) (*httptest.Server, *predict.Predictor) {
	t.Helper()
	m, err := zoo.Build("convnet", zoo.Config{Width: 8, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "model.onnx")
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	met := metrics.New(metrics.Options{})
	reg.MustRegister(met)
	opts.Observe = met.ObservePrediction
	p, err := predict.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(NewHandler(p, reg, 64))
	t.Cleanup(func() {
		ts.Close()
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return ts, p
}

func post(t testing.TB, c *http.Client, url string, body any) (int, []byte) {
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Post(url+"/predict", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

func images(n int) [][]float32 {
	set := dataset.Synthetic(n, 1, 28, 28, 10, 3)
	in := make([][]float32, n)
	for i := range in {
		in[i] = set.X[i*784 : (i+1)*784]
	}
	return in
}

func TestPredict(t *testing.T) {
	ts, p := server(t, predict.Options{})
	in := images(3)
	code, body := post(t, ts.Client(), ts.URL, Request{Inputs: in})
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	var resp Response
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Predictions) != 3 {
		t.Fatalf("%d predictions, want 3", len(resp.Predictions))
	}
	x := slices.Concat(in...)
	_, probs, err := p.Predict(context.Background(), x, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i, pr := range resp.Predictions {
		row := probs[i*10 : (i+1)*10]
		if pr.Class != predict.Argmax(row) || len(pr.Probabilities) != 10 {
			t.Errorf("prediction %d: class %d, %d probabilities; want class %d", i, pr.Class, len(pr.Probabilities), predict.Argmax(row))
		}
		for j := range row {
			if math.Abs(float64(pr.Probabilities[j]-row[j])) > 1e-6 {
				t.Errorf("prediction %d: probability %d = %v, want %v", i, j, pr.Probabilities[j], row[j])
			}
		}
	}
}

func TestBadRequests(t *testing.T) {
	ts, _ := server(t, predict.Options{})
	for _, c := range []struct {
		body any
		want string
	}{
		{Request{Inputs: [][]float32{make([]float32, 783)}}, "input 0 has 783 values; want C×H×W = 1×28×28 = 784"},
		{Request{}, "want 1 to 64 inputs, got 0"},
		{Request{Inputs: images(65)}, "want 1 to 64 inputs, got 65"},
		{"not an object", "bad JSON"},
	} {
		code, body := post(t, ts.Client(), ts.URL, c.body)
		if code != http.StatusBadRequest || !strings.Contains(string(body), c.want) {
			t.Errorf("status %d, body %s; want 400 saying %q", code, body, c.want)
		}
	}
	resp, err := ts.Client().Get(ts.URL + "/predict")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /predict: status %d, want 405", resp.StatusCode)
	}
}

func TestMetrics(t *testing.T) {
	ts, _ := server(t, predict.Options{})
	post(t, ts.Client(), ts.URL, Request{Inputs: images(2)})
	post(t, ts.Client(), ts.URL, Request{Inputs: images(1)})
	resp, err := ts.Client().Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`slatrun_predictions_total{outcome="ok"} 2`,
		`slatrun_prediction_images_total 3`,
		`slatrun_prediction_duration_seconds_count 2`,
		`slatrun_train_steps_total 0`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestLoad runs a bounded load test on loopback: clients goroutines post
// single images for a fixed duration; no request may fail. It logs the
// throughput and the p50/p99 latency (go test -v -run Load ./examples/serve/).
func TestLoad(t *testing.T) {
	const clients = 16
	duration := 2 * time.Second
	if testing.Short() {
		duration = 500 * time.Millisecond
	}
	for _, c := range []struct {
		name string
		opts predict.Options
	}{
		{"pool", predict.Options{Mode: predict.Pool}},
		{"micro-batch", predict.Options{Mode: predict.MicroBatch, Ladder: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts, p := server(t, c.opts)
			tr := &http.Transport{MaxIdleConnsPerHost: clients}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			body, _ := json.Marshal(Request{Inputs: images(1)})
			deadline := time.Now().Add(duration)
			lat := make([][]time.Duration, clients)
			errs := make([]error, clients)
			var wg sync.WaitGroup
			start := time.Now()
			for i := range clients {
				wg.Go(func() {
					for time.Now().Before(deadline) {
						t0 := time.Now()
						resp, err := client.Post(ts.URL+"/predict", "application/json", bytes.NewReader(body))
						if err != nil {
							errs[i] = err
							return
						}
						_, err = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if err != nil || resp.StatusCode != http.StatusOK {
							errs[i] = fmt.Errorf("status %d, %v", resp.StatusCode, err)
							return
						}
						lat[i] = append(lat[i], time.Since(t0))
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			for _, err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			all := slices.Concat(lat...)
			if len(all) == 0 {
				t.Fatal("no request completed")
			}
			slices.Sort(all)
			st := p.Stats()
			t.Logf("%s: %d clients, %v: %d requests, %.0f req/s, p50 %v, p99 %v, %.1f images/run",
				c.name, clients, elapsed.Round(time.Millisecond), len(all), float64(len(all))/elapsed.Seconds(),
				all[len(all)/2].Round(time.Microsecond), all[len(all)*99/100].Round(time.Microsecond),
				float64(st.Rows)/float64(max(st.Runs, 1)))
		})
	}
}
