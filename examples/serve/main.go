// Command serve is a minimal HTTP service around a slatrun checkpoint: it
// loads model.onnx into a predict.Predictor and serves
//
//	POST /predict   {"inputs": [[C·H·W floats], ...]}
//	                → {"predictions": [{"class": k, "probabilities": [K floats]}, ...]}
//	GET  /metrics   Prometheus metrics (package metrics, plus Go's own)
//
// Each input is one image flattened in C,H,W order, in the model's range
// (usually [0,1]). A wrong length or an empty list is answered 400 with
// {"error": "..."}.
//
//	go run ./examples/serve --model runs/NAME/model.onnx --addr :8080
//	curl -s localhost:8080/predict -d '{"inputs": [[0.1, 0.2, ...]]}'
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/slatrun/slatrun/metrics"
	"github.com/slatrun/slatrun/onnx/ort"
	"github.com/slatrun/slatrun/predict"
)

func main() {
	model := flag.String("model", "model.onnx", "the checkpoint's forward graph")
	addr := flag.String("addr", ":8080", "listen address")
	ortLib := flag.String("ort-lib", "", "ONNX Runtime library (default: $ONNXRUNTIME_LIB, then ~/.cache/slatrun)")
	provider := flag.String("provider", "cpu", "execution provider: cpu or cuda")
	device := flag.Int("device", 0, "CUDA device")
	mode := flag.String("mode", "pool", "scheduling: pool or micro-batch")
	sessions := flag.Int("sessions", 0, "ONNX Runtime sessions (0: one per CPU for pool, 1 for micro-batch)")
	batch := flag.Int("batch", 0, "rows per session run (0: 1 for pool, 16 for micro-batch)")
	maxInputs := flag.Int("max-inputs", 256, "most images per request")
	flag.Parse()

	if err := run(*model, *addr, *ortLib, *provider, *device, *mode, *sessions, *batch, *maxInputs); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		os.Exit(1)
	}
}

func run(model, addr, ortLib, provider string, device int, mode string, sessions, batch, maxInputs int) error {
	if err := ort.Init(ortLib); err != nil {
		return err
	}
	if provider == "cuda" {
		if err := ort.CheckCUDA(device); err != nil {
			return err
		}
	}
	m, err := predict.ParseMode(mode)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	met := metrics.New(metrics.Options{})
	reg.MustRegister(met)
	p, err := predict.Open(model, predict.Options{
		Runtime:  ort.Options{Provider: provider, DeviceID: device},
		Mode:     m,
		Sessions: sessions,
		Batch:    batch,
		Ladder:   true,
		Observe:  met.ObservePrediction,
	})
	if err != nil {
		return err
	}
	defer p.Close()

	srv := &http.Server{Addr: addr, Handler: NewHandler(p, reg, maxInputs), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	c, h, w := p.Shape()
	log.Printf("serving %s (%d×%d×%d → %d classes, %s, %d sessions at batch %d) on %s",
		model, c, h, w, p.Classes(), p.Mode(), p.Sessions(), p.Batch(), addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Request is the body of POST /predict.
type Request struct {
	// Inputs holds one flattened C·H·W image per entry.
	Inputs [][]float32 `json:"inputs"`
}

// Prediction is one image's answer.
type Prediction struct {
	Class         int       `json:"class"`
	Probabilities []float32 `json:"probabilities"`
}

// Response is the body of a successful POST /predict.
type Response struct {
	Predictions []Prediction `json:"predictions"`
}

// NewHandler serves /predict with p and /metrics from g.
func NewHandler(p *predict.Predictor, g prometheus.Gatherer, maxInputs int) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("POST /predict", func(w http.ResponseWriter, r *http.Request) {
		c, h, wd := p.Shape()
		d, k := c*h*wd, p.Classes()
		var req Request
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, int64(maxInputs)*int64(d)*24+4096))
		if err := dec.Decode(&req); err != nil {
			fail(w, http.StatusBadRequest, "bad JSON: %v", err)
			return
		}
		n := len(req.Inputs)
		if n == 0 || n > maxInputs {
			fail(w, http.StatusBadRequest, "want 1 to %d inputs, got %d", maxInputs, n)
			return
		}
		x := make([]float32, 0, n*d)
		for i, in := range req.Inputs {
			if len(in) != d {
				fail(w, http.StatusBadRequest, "input %d has %d values; want C×H×W = %d×%d×%d = %d", i, len(in), c, h, wd, d)
				return
			}
			x = append(x, in...)
		}
		_, probs, err := p.Predict(r.Context(), x, n)
		switch {
		case errors.Is(err, predict.ErrInput):
			fail(w, http.StatusBadRequest, "%v", err)
			return
		case errors.Is(err, predict.ErrClosed):
			fail(w, http.StatusServiceUnavailable, "%v", err)
			return
		case err != nil:
			fail(w, http.StatusInternalServerError, "%v", err)
			return
		}
		resp := Response{Predictions: make([]Prediction, n)}
		for i := range n {
			row := probs[i*k : (i+1)*k]
			resp.Predictions[i] = Prediction{Class: predict.Argmax(row), Probabilities: row}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(resp)
	})
	return mux
}

func fail(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprintf(format, args...)})
}
