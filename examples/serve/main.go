// Command serve is a minimal HTTP service around a slatrun checkpoint: it
// loads model.onnx into a predict.Predictor and serves
//
//	POST /predict   {"inputs": [[C·H·W floats], ...]}
//	                → {"predictions": [{"class": k, "probabilities": [K floats]}, ...]}
//	GET  /metrics   Prometheus metrics (package metrics, plus Go's own)
//
// Each input is one image flattened in C,H,W order, in the model's range
// (usually [0,1]). Every error is answered with {"error": "..."}: 400 for a
// malformed body (bad JSON, trailing data after it, an unknown field, a
// wrong length, an empty list, a value beyond --max-abs-input), 408 for a
// body that does not arrive within --read-timeout, 413 for a body larger
// than --max-inputs images can need, 500 when the model's output is not
// finite, 503 with Retry-After when --max-inflight requests are being
// served and --max-queue more wait already, or one waited --queue-wait.
//
// On SIGINT or SIGTERM the server stops accepting connections, answers the
// requests it has (for at most --shutdown-timeout), and only then closes
// the predictor. A second signal kills it.
//
//	go run ./examples/serve --model runs/NAME/model.onnx --addr :8080
//	curl -s localhost:8080/predict -d '{"inputs": [[0.1, 0.2, ...]]}'
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"

	"github.com/slatrun/slatrun/metrics"
	"github.com/slatrun/slatrun/onnx/ort"
	"github.com/slatrun/slatrun/predict"
)

func main() {
	cfg, err := parseFlags(os.Stderr, os.Args[1:])
	if errors.Is(err, pflag.ErrHelp) {
		return
	}
	if err != nil {
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process
	}()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		os.Exit(1)
	}
}

// config is the command line.
type config struct {
	model, addr, ortLib, provider, mode string
	device, sessions, batch             int
	limits                              Limits
	timeouts                            Timeouts
	// ready, if set, is called with the listening address once the
	// server accepts connections (for tests: --addr 127.0.0.1:0).
	ready func(net.Addr)
}

// Timeouts bound the time a client may take, and the time a shutdown waits.
type Timeouts struct {
	// ReadHeader, Read, Write and Idle are http.Server's ReadHeaderTimeout,
	// ReadTimeout (headers and body), WriteTimeout (from the end of the
	// headers to the end of the response: waiting for a slot, predicting
	// and writing) and IdleTimeout (between requests on a connection).
	ReadHeader, Read, Write, Idle time.Duration
	// Shutdown is how long a shutdown waits for the requests in flight
	// before it closes their connections.
	Shutdown time.Duration
}

// DefaultTimeouts are the flags' defaults.
var DefaultTimeouts = Timeouts{ReadHeader: 5 * time.Second, Read: 30 * time.Second, Write: 60 * time.Second, Idle: 120 * time.Second, Shutdown: 20 * time.Second}

// parseFlags reads the command line (with spf13/pflag, like the slatrun
// CLI); it writes usage and errors to out.
func parseFlags(out io.Writer, args []string) (config, error) {
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	fs.SetOutput(out)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: serve [flags]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var c config
	fs.StringVar(&c.model, "model", "model.onnx", "the checkpoint's forward graph")
	fs.StringVar(&c.addr, "addr", ":8080", "listen address")
	fs.StringVar(&c.ortLib, "ort-lib", "", "ONNX Runtime library (default: $ONNXRUNTIME_LIB, then ~/.cache/slatrun)")
	fs.StringVar(&c.provider, "provider", "cpu", "execution provider: cpu or cuda")
	fs.IntVar(&c.device, "device", 0, "CUDA device")
	fs.StringVar(&c.mode, "mode", "pool", "scheduling: pool or micro-batch")
	fs.IntVar(&c.sessions, "sessions", 0, "ONNX Runtime sessions (0: one per CPU for pool, 1 for micro-batch)")
	fs.IntVar(&c.batch, "batch", 0, "rows per session run (0: 1 for pool, 16 for micro-batch)")
	d := DefaultLimits()
	fs.IntVar(&c.limits.MaxInputs, "max-inputs", d.MaxInputs, "most images per request (it sizes the largest body accepted)")
	fs.IntVar(&c.limits.MaxInflight, "max-inflight", d.MaxInflight, "requests reading their body or predicting at once (each holds about 4× its body in memory)")
	fs.IntVar(&c.limits.MaxQueue, "max-queue", d.MaxQueue, "requests waiting for one of the --max-inflight slots; more are answered 503 at once")
	fs.DurationVar(&c.limits.QueueWait, "queue-wait", d.QueueWait, "longest wait for a slot before a 503")
	fs.Float64Var(&c.limits.MaxAbsInput, "max-abs-input", d.MaxAbsInput, "largest |value| accepted in an input (0: any finite value)")
	t := DefaultTimeouts
	fs.DurationVar(&c.timeouts.ReadHeader, "read-header-timeout", t.ReadHeader, "time to read a request's headers")
	fs.DurationVar(&c.timeouts.Read, "read-timeout", t.Read, "time to read a request, headers and body")
	fs.DurationVar(&c.timeouts.Write, "write-timeout", t.Write, "time from a request's headers to the end of its response")
	fs.DurationVar(&c.timeouts.Idle, "idle-timeout", t.Idle, "time a keep-alive connection may stay idle")
	fs.DurationVar(&c.timeouts.Shutdown, "shutdown-timeout", t.Shutdown, "time a shutdown waits for the requests in flight")
	if err := fs.Parse(args); err != nil {
		if !errors.Is(err, pflag.ErrHelp) { // pflag prints the usage for --help only
			fmt.Fprintln(fs.Output(), err)
			fs.Usage()
		}
		return c, err
	}
	if _, err := (ort.Options{Provider: c.provider}).ExecutionProvider(); err != nil {
		err = fmt.Errorf("--provider: %w", err)
		fmt.Fprintln(fs.Output(), err)
		return c, err
	}
	if fs.NArg() > 0 {
		err := fmt.Errorf("unexpected arguments %q", fs.Args())
		fmt.Fprintln(fs.Output(), err)
		return c, err
	}
	if err := c.limits.check(); err != nil {
		fmt.Fprintln(fs.Output(), err)
		return c, err
	}
	return c, nil
}

func run(ctx context.Context, cfg config) error {
	if err := ort.Init(cfg.ortLib); err != nil {
		return err
	}
	if (ort.Options{Provider: cfg.provider}).OnCUDA() {
		if err := ort.CheckCUDA(cfg.device); err != nil {
			return fmt.Errorf("--provider %s: %w", cfg.provider, err)
		}
	}
	m, err := predict.ParseMode(cfg.mode)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return err
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return err
	}
	met := metrics.New(metrics.Options{})
	if err := reg.Register(met); err != nil {
		return err
	}
	p, err := predict.Open(cfg.model, predict.Options{
		Runtime:  ort.Options{Provider: cfg.provider, DeviceID: cfg.device},
		Mode:     m,
		Sessions: cfg.sessions,
		Batch:    cfg.batch,
		Ladder:   true,
		Observe:  met.ObservePrediction,
	})
	if err != nil {
		return err
	}
	h, err := NewHandler(p, reg, cfg.limits)
	if err != nil {
		return errors.Join(err, p.Close())
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return errors.Join(err, p.Close())
	}
	c, hh, w := p.Shape()
	log.Printf("serving %s (%d×%d×%d → %d classes, %s, %d sessions at batch %d) on %s; at most %d requests in flight and %d waiting, bodies up to %d bytes",
		cfg.model, c, hh, w, p.Classes(), p.Mode(), p.Sessions(), p.Batch(), ln.Addr(), h.lim.MaxInflight, h.lim.MaxQueue, h.maxBody)
	if cfg.ready != nil {
		cfg.ready(ln.Addr())
	}
	return serve(ctx, NewServer(h, cfg.timeouts), ln, p, cfg.timeouts.Shutdown)
}

// NewServer returns an http.Server for h with timeouts t.
func NewServer(h http.Handler, t Timeouts) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    64 << 10,
	}
}

// serve runs srv on ln until ctx ends. It then stops accepting connections,
// waits up to grace for the requests in flight to be answered (closing the
// connections still busy after that), and only then closes p, so that no
// request accepted before the shutdown finds the predictor closed.
func serve(ctx context.Context, srv *http.Server, ln net.Listener, p io.Closer, grace time.Duration) error {
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return errors.Join(fmt.Errorf("serve: %w", err), p.Close())
	case <-ctx.Done():
	}
	log.Printf("shutting down: answering the requests in flight (at most %v)", grace)
	shut, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var errs []error
	if err := srv.Shutdown(shut); err != nil {
		errs = append(errs, fmt.Errorf("shutdown: requests still in flight after %v, their connections closed: %w", grace, err))
		if err := srv.Close(); err != nil {
			errs = append(errs, fmt.Errorf("shutdown: %w", err))
		}
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, fmt.Errorf("serve: %w", err))
	}
	// After a forced close some handlers may still run: Close waits for
	// their Predict calls, and those not started yet get ErrClosed.
	if err := p.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing the predictor: %w", err))
	}
	return errors.Join(errs...)
}

// Limits bound what the /predict handler accepts, and so the memory its
// requests can hold.
type Limits struct {
	// MaxInputs is the most images per request; with the model's input
	// size it sets the largest body read (24 bytes a value, plus 4 KiB).
	MaxInputs int
	// MaxInflight is the most requests reading their body or predicting at
	// once. Each holds the body, its decoded values, a copy and the answer:
	// about 4× its body (7 MB for 256 images of 28×28, 1.9 MB of JSON).
	MaxInflight int
	// MaxQueue is the most requests waiting for one of those slots (they
	// hold no body yet); more are answered 503 at once.
	MaxQueue int
	// QueueWait is the longest wait for a slot; then the answer is 503.
	QueueWait time.Duration
	// MaxAbsInput, if > 0, refuses inputs with a value beyond ±MaxAbsInput
	// (400). Non-finite values are always refused.
	MaxAbsInput float64
}

// DefaultLimits returns the flags' defaults: 256 images per request, two
// requests in flight per CPU (at least 4), 64 waiting for at most 1s,
// values within ±1e6.
func DefaultLimits() Limits {
	return Limits{MaxInputs: 256, MaxInflight: max(4, 2*runtime.GOMAXPROCS(0)), MaxQueue: 64, QueueWait: time.Second, MaxAbsInput: 1e6}
}

func (l Limits) check() error {
	if l.MaxInputs < 1 || l.MaxInflight < 1 || l.MaxQueue < 0 || l.QueueWait < 0 || !(l.MaxAbsInput >= 0) {
		return fmt.Errorf("limits: max inputs %d, max in flight %d, max queue %d, queue wait %v, max |input| %v: want inputs and in flight ≥ 1, the others ≥ 0",
			l.MaxInputs, l.MaxInflight, l.MaxQueue, l.QueueWait, l.MaxAbsInput)
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

// Handler serves POST /predict with a Predictor and GET /metrics.
type Handler struct {
	mux     *http.ServeMux
	p       *predict.Predictor
	lim     Limits
	maxBody int64
	slots   chan struct{} // a token per request reading its body or predicting
	waiting atomic.Int64  // requests waiting for a slot

	responses *prometheus.CounterVec // slatrun_serve_responses_total{code}
	inflight  prometheus.Gauge       // slatrun_serve_inflight_requests
	queued    prometheus.Gauge       // slatrun_serve_queued_requests
}

// NewHandler serves /predict with p within lim and /metrics from reg, on
// which it registers its own collectors: slatrun_serve_responses_total{code}
// (every /predict answer, refusals included), slatrun_serve_inflight_requests
// and slatrun_serve_queued_requests.
func NewHandler(p *predict.Predictor, reg *prometheus.Registry, lim Limits) (*Handler, error) {
	if err := lim.check(); err != nil {
		return nil, err
	}
	c, hh, w := p.Shape()
	h := &Handler{
		p:       p,
		lim:     lim,
		maxBody: int64(lim.MaxInputs)*int64(c*hh*w)*24 + 4096,
		slots:   make(chan struct{}, lim.MaxInflight),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "slatrun", Name: "serve_responses_total",
			Help: "Answers to POST /predict, by HTTP status code (refusals included)."}, []string{"code"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "slatrun", Name: "serve_inflight_requests",
			Help: "POST /predict requests reading their body or predicting."}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "slatrun", Name: "serve_queued_requests",
			Help: "POST /predict requests waiting for a slot."}),
	}
	for _, col := range []prometheus.Collector{h.responses, h.inflight, h.queued} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("serve: registering metrics: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("POST /predict", h.predict)
	h.mux = mux
	return h, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// acquire takes a slot, waiting for one up to lim.QueueWait if there is
// room in the queue. It returns a non-empty reason when it takes none.
func (h *Handler) acquire(ctx context.Context) string {
	select {
	case h.slots <- struct{}{}:
		return ""
	default:
	}
	if h.waiting.Add(1) > int64(h.lim.MaxQueue) {
		h.waiting.Add(-1)
		return fmt.Sprintf("overloaded: %d requests in flight and %d waiting", h.lim.MaxInflight, h.lim.MaxQueue)
	}
	h.queued.Inc()
	defer func() { h.waiting.Add(-1); h.queued.Dec() }()
	t := time.NewTimer(h.lim.QueueWait)
	defer t.Stop()
	select {
	case h.slots <- struct{}{}:
		return ""
	case <-t.C:
		return fmt.Sprintf("overloaded: no slot free within %v (%d requests in flight)", h.lim.QueueWait, h.lim.MaxInflight)
	case <-ctx.Done():
		return fmt.Sprintf("canceled while waiting for a slot: %v", ctx.Err())
	}
}

func (h *Handler) predict(w http.ResponseWriter, r *http.Request) {
	if why := h.acquire(r.Context()); why != "" {
		w.Header().Set("Retry-After", "1")
		h.fail(w, http.StatusServiceUnavailable, "%s", why)
		return
	}
	h.inflight.Inc()
	defer func() { <-h.slots; h.inflight.Dec() }()

	c, hh, wd := h.p.Shape()
	d, k := c*hh*wd, h.p.Classes()
	var req Request
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, h.maxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(&req)
	if err == nil {
		// One JSON value, then only white space.
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("trailing data after the JSON value")
			if terr != nil && !isSyntax(terr) {
				err = terr // the body's read failed, not its syntax
			}
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		h.fail(w, http.StatusRequestEntityTooLarge, "the body exceeds %d bytes (%d inputs of %d values)", tooBig.Limit, h.lim.MaxInputs, d)
		return
	case errors.Is(err, os.ErrDeadlineExceeded):
		h.fail(w, http.StatusRequestTimeout, "the body did not arrive in time: %v", err)
		return
	case err != nil:
		h.fail(w, http.StatusBadRequest, "bad JSON: %v", err)
		return
	}
	n := len(req.Inputs)
	if n == 0 || n > h.lim.MaxInputs {
		h.fail(w, http.StatusBadRequest, "want 1 to %d inputs, got %d", h.lim.MaxInputs, n)
		return
	}
	x := make([]float32, 0, n*d)
	for i, in := range req.Inputs {
		if len(in) != d {
			h.fail(w, http.StatusBadRequest, "input %d has %d values; want C×H×W = %d×%d×%d = %d", i, len(in), c, hh, wd, d)
			return
		}
		if h.lim.MaxAbsInput > 0 {
			for j, v := range in {
				if math.Abs(float64(v)) > h.lim.MaxAbsInput {
					h.fail(w, http.StatusBadRequest, "input %d, value %d is %v; want values within ±%v", i, j, v, h.lim.MaxAbsInput)
					return
				}
			}
		}
		x = append(x, in...)
	}
	req.Inputs = nil
	_, probs, err := h.p.Predict(r.Context(), x, n)
	switch {
	case errors.Is(err, predict.ErrInput):
		h.fail(w, http.StatusBadRequest, "%v", err)
		return
	case errors.Is(err, predict.ErrClosed):
		w.Header().Set("Retry-After", "1")
		h.fail(w, http.StatusServiceUnavailable, "%v", err)
		return
	case err != nil: // predict.ErrNonFinite, or ONNX Runtime's
		h.fail(w, http.StatusInternalServerError, "%v", err)
		return
	}
	resp := Response{Predictions: make([]Prediction, n)}
	for i := range n {
		row := probs[i*k : (i+1)*k]
		resp.Predictions[i] = Prediction{Class: predict.Argmax(row), Probabilities: row}
	}
	h.reply(w, http.StatusOK, resp)
}

func isSyntax(err error) bool {
	var se *json.SyntaxError
	return errors.As(err, &se)
}

// reply writes v as JSON with code; if v cannot be encoded it answers 500
// with an error body instead (never an empty 200).
func (h *Handler) reply(w http.ResponseWriter, code int, v any) {
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(v); err != nil {
		code = http.StatusInternalServerError
		b.Reset()
		json.NewEncoder(&b).Encode(map[string]string{"error": fmt.Sprintf("encoding the response: %v", err)})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(code)
	w.Write(b.Bytes())
	h.responses.WithLabelValues(strconv.Itoa(code)).Inc()
}

func (h *Handler) fail(w http.ResponseWriter, code int, format string, args ...any) {
	h.reply(w, code, map[string]string{"error": fmt.Sprintf(format, args...)})
}
