package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/metrics"
	"github.com/slatrun/slatrun/onnx/onnxpb"
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

// testLimits are the handler's limits in most tests: 64 images per request.
func testLimits() Limits {
	l := DefaultLimits()
	l.MaxInputs = 64
	return l
}

// savedModel saves a zoo convnet (width 8, 28×28, 10 classes) as a
// checkpoint's model.onnx would be, and returns its path.
func savedModel(t testing.TB) string {
	t.Helper()
	m, err := zoo.Build("convnet", zoo.Config{Width: 8, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "model.onnx")
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// handler opens the model in a Predictor and makes a Handler over it, with
// the metrics of package metrics in reg. The predictor is closed at the
// end of the test.
func handler(t testing.TB, opts predict.Options, lim Limits) (*Handler, *predict.Predictor, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	met := metrics.New(metrics.Options{})
	reg.MustRegister(met)
	opts.Observe = met.ObservePrediction
	p, err := predict.Open(savedModel(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	h, err := NewHandler(p, reg, lim)
	if err != nil {
		t.Fatal(err)
	}
	return h, p, reg
}

// server starts a handler on loopback, with the flags' default timeouts
// changed by edit if not nil.
func server(t testing.TB, opts predict.Options, lim Limits, edit func(*Timeouts)) (*httptest.Server, *predict.Predictor, *prometheus.Registry) {
	t.Helper()
	h, p, reg := handler(t, opts, lim)
	to := DefaultTimeouts
	if edit != nil {
		edit(&to)
	}
	ts := httptest.NewUnstartedServer(h)
	ts.Config = NewServer(h, to)
	ts.Start()
	t.Cleanup(ts.Close) // runs before the predictor's Close
	return ts, p, reg
}

// postRaw posts body to /predict and returns the status, the body and the
// response's headers.
func postRaw(t testing.TB, c *http.Client, url string, body []byte) (int, []byte, http.Header) {
	t.Helper()
	resp, err := c.Post(url+"/predict", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out, resp.Header
}

func post(t testing.TB, c *http.Client, url string, body any) (int, []byte) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	code, out, _ := postRaw(t, c, url, b)
	return code, out
}

func images(n int) [][]float32 {
	set := dataset.Synthetic(n, 1, 28, 28, 10, 3)
	in := make([][]float32, n)
	for i := range in {
		in[i] = set.X[i*784 : (i+1)*784]
	}
	return in
}

func marshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// metric returns the sum of the samples of metric name in g whose labels
// include labels (name=value pairs).
func metric(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	samples:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
				}
				if !found {
					continue samples
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// checkPredictions checks that body is a Response of n predictions of 10
// probabilities summing to 1, the class being their argmax.
func checkPredictions(body []byte, n int) error {
	var resp Response
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("body %q: %v", body, err)
	}
	if len(resp.Predictions) != n {
		return fmt.Errorf("%d predictions, want %d", len(resp.Predictions), n)
	}
	for i, pr := range resp.Predictions {
		sum := 0.0
		for _, v := range pr.Probabilities {
			sum += float64(v)
		}
		if len(pr.Probabilities) != 10 || math.Abs(sum-1) > 1e-4 || pr.Class != predict.Argmax(pr.Probabilities) {
			return fmt.Errorf("prediction %d: class %d, probabilities %v", i, pr.Class, pr.Probabilities)
		}
	}
	return nil
}

func TestPredict(t *testing.T) {
	ts, p, _ := server(t, predict.Options{}, testLimits(), nil)
	in := images(3)
	code, body := post(t, ts.Client(), ts.URL, Request{Inputs: in})
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	if err := checkPredictions(body, 3); err != nil {
		t.Fatal(err)
	}
	var resp Response
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	x := slices.Concat(in...)
	_, probs, err := p.Predict(context.Background(), x, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i, pr := range resp.Predictions {
		row := probs[i*10 : (i+1)*10]
		if pr.Class != predict.Argmax(row) {
			t.Errorf("prediction %d: class %d; want class %d", i, pr.Class, predict.Argmax(row))
		}
		for j := range row {
			if math.Abs(float64(pr.Probabilities[j]-row[j])) > 1e-6 {
				t.Errorf("prediction %d: probability %d = %v, want %v", i, j, pr.Probabilities[j], row[j])
			}
		}
	}
}

// TestBadRequests: every malformed body is answered 4xx with a JSON error
// saying what is wrong, and counted by its code.
func TestBadRequests(t *testing.T) {
	ts, _, reg := server(t, predict.Options{}, testLimits(), nil)
	one := marshal(t, Request{Inputs: images(1)})
	huge := slices.Repeat([]float32{3e38}, 784)
	huge[5] = -2e6
	for _, c := range []struct {
		name string
		body []byte
		code int
		want string
	}{
		{"short input", marshal(t, Request{Inputs: [][]float32{make([]float32, 783)}}), 400, "input 0 has 783 values; want C×H×W = 1×28×28 = 784"},
		{"no inputs", marshal(t, Request{}), 400, "want 1 to 64 inputs, got 0"},
		{"too many inputs", marshal(t, Request{Inputs: images(65)}), 400, "want 1 to 64 inputs, got 65"},
		{"not an object", []byte(`"not an object"`), 400, "bad JSON"},
		{"trailing garbage", append(slices.Clip(one), " garbage"...), 400, "bad JSON: trailing data after the JSON value"},
		{"two values", append(slices.Clip(one), one...), 400, "bad JSON: trailing data after the JSON value"},
		{"trailing bracket", append(slices.Clip(one), ']'), 400, "bad JSON: trailing data after the JSON value"},
		{"trailing white space", append(slices.Clip(one), " \n\t\r\n"...), 200, `"predictions"`},
		{"unknown field", []byte(`{"input": [[0.5]]}`), 400, `bad JSON: json: unknown field "input"`},
		{"beyond float32", []byte(`{"inputs": [[1e39]]}`), 400, "bad JSON"},
		{"absurd values", marshal(t, Request{Inputs: [][]float32{huge}}), 400, "input 0, value 0 is 3e+38; want values within ±1e+06"},
		{"body too large", append(slices.Clip(one), bytes.Repeat([]byte(" "), 64*784*24+4096)...), 413, "the body exceeds 1208320 bytes (64 inputs of 784 values)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := metric(t, reg, "slatrun_serve_responses_total", "code", fmt.Sprint(c.code))
			code, body, hdr := postRaw(t, ts.Client(), ts.URL, c.body)
			text := string(body)
			if code != 200 {
				var e map[string]string
				if err := json.Unmarshal(body, &e); err != nil || e["error"] == "" {
					t.Errorf("body %q is not a JSON error (%v)", body, err)
				}
				text = e["error"]
			}
			if code != c.code || !strings.Contains(text, c.want) || hdr.Get("Content-Type") != "application/json" {
				t.Errorf("status %d, %s, body %.300s; want %d saying %q", code, hdr.Get("Content-Type"), body, c.code, c.want)
			}
			if got := metric(t, reg, "slatrun_serve_responses_total", "code", fmt.Sprint(c.code)); got != before+1 {
				t.Errorf("slatrun_serve_responses_total{code=%q} went from %v to %v", fmt.Sprint(c.code), before, got)
			}
		})
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

// TestNonFinite: pixels of 3e38 (allowed here: no --max-abs-input) make the
// model's logits overflow. The answer is a 500 with a JSON error, never an
// empty 200, and the prediction is counted as an error.
func TestNonFinite(t *testing.T) {
	lim := testLimits()
	lim.MaxAbsInput = 0
	ts, _, reg := server(t, predict.Options{}, lim, nil)
	resp, err := ts.Client().Post(ts.URL+"/predict", "application/json", bytes.NewReader(marshal(t, Request{Inputs: [][]float32{slices.Repeat([]float32{3e38}, 784)}})))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var e map[string]string
	if resp.StatusCode != http.StatusInternalServerError || json.Unmarshal(body, &e) != nil || !strings.Contains(e["error"], "not finite") || resp.ContentLength != int64(len(body)) {
		t.Errorf("status %d, Content-Length %d, body %q; want 500 with a JSON error saying the output is not finite", resp.StatusCode, resp.ContentLength, body)
	}
	if code, body := post(t, ts.Client(), ts.URL, Request{Inputs: images(1)}); code != http.StatusOK {
		t.Errorf("a finite input after: status %d, %s", code, body)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"slatrun_predictions_total", []string{"outcome", "error"}, 1},
		{"slatrun_predictions_total", []string{"outcome", "ok"}, 1},
		{"slatrun_serve_responses_total", []string{"code", "500"}, 1},
		{"slatrun_serve_responses_total", []string{"code", "200"}, 1},
	} {
		if got := metric(t, reg, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func TestMetrics(t *testing.T) {
	ts, _, _ := server(t, predict.Options{}, testLimits(), nil)
	post(t, ts.Client(), ts.URL, Request{Inputs: images(2)})
	post(t, ts.Client(), ts.URL, Request{Inputs: images(1)})
	post(t, ts.Client(), ts.URL, Request{})
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
		`slatrun_serve_responses_total{code="200"} 2`,
		`slatrun_serve_responses_total{code="400"} 1`,
		`slatrun_serve_inflight_requests 0`,
		`slatrun_serve_queued_requests 0`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// slowPost starts a POST /predict whose body (a valid request) is sent up
// to its last byte, which waits for finish; it returns finish, which sends
// that byte and returns the status and body of the answer.
func slowPost(t *testing.T, addr string, body []byte) (finish func() (int, []byte)) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	if _, err := conn.Write(body[:len(body)-1]); err != nil {
		t.Fatal(err)
	}
	return func() (int, []byte) {
		if _, err := conn.Write(body[len(body)-1:]); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
}

// waitFor polls cond every millisecond for at most 10s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestOverload: with its one slot taken (by a request whose body is still
// arriving), the handler queues at most MaxQueue requests for at most
// QueueWait, and answers the others 503 with Retry-After.
func TestOverload(t *testing.T) {
	for _, c := range []struct {
		name     string
		queue    int
		wait     time.Duration
		code     int
		want     string
		minDelay time.Duration
	}{
		{"queue full", 0, time.Second, 503, "overloaded: 1 requests in flight and 0 waiting", 0},
		{"waited too long", 1, 100 * time.Millisecond, 503, "overloaded: no slot free within 100ms (1 requests in flight)", 100 * time.Millisecond},
		{"served after waiting", 1, 10 * time.Second, 200, `"predictions"`, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			lim := testLimits()
			lim.MaxInflight, lim.MaxQueue, lim.QueueWait = 1, c.queue, c.wait
			ts, _, reg := server(t, predict.Options{Sessions: 1}, lim, nil)
			body := marshal(t, Request{Inputs: images(1)})
			finish := slowPost(t, ts.Listener.Addr().String(), body)
			waitFor(t, "the slow request to take the slot", func() bool { return metric(t, reg, "slatrun_serve_inflight_requests") == 1 })

			type answer struct {
				code    int
				body    []byte
				retry   string
				elapsed time.Duration
			}
			done := make(chan answer, 1)
			go func() {
				start := time.Now()
				resp, err := ts.Client().Post(ts.URL+"/predict", "application/json", bytes.NewReader(body))
				if err != nil {
					done <- answer{body: []byte(err.Error())}
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				done <- answer{resp.StatusCode, b, resp.Header.Get("Retry-After"), time.Since(start)}
			}()
			if c.code == 200 {
				waitFor(t, "the second request to queue", func() bool { return metric(t, reg, "slatrun_serve_queued_requests") == 1 })
				if code, b := finish(); code != 200 {
					t.Errorf("slow request: status %d, %s", code, b)
				}
			}
			a := <-done
			if a.code != c.code || !strings.Contains(string(a.body), c.want) || a.elapsed < c.minDelay {
				t.Errorf("status %d after %v, body %s; want %d saying %q after at least %v", a.code, a.elapsed, a.body, c.code, c.want, c.minDelay)
			}
			if c.code == 503 {
				if a.retry != "1" {
					t.Errorf("Retry-After %q, want 1", a.retry)
				}
				if code, b := finish(); code != 200 {
					t.Errorf("slow request: status %d, %s", code, b)
				}
			}
			if got := metric(t, reg, "slatrun_serve_responses_total", "code", fmt.Sprint(c.code)); got < 1 {
				t.Errorf("slatrun_serve_responses_total{code=%q} = %v", fmt.Sprint(c.code), got)
			}
		})
	}
}

// TestSlowClient: a client sending its headers or its body a byte at a time
// loses its connection or gets a 408 once the read timeouts pass, and its
// slot is freed.
func TestSlowClient(t *testing.T) {
	ts, _, reg := server(t, predict.Options{Sessions: 1}, testLimits(), func(to *Timeouts) {
		to.ReadHeader, to.Read = 200*time.Millisecond, 400*time.Millisecond
	})
	body := marshal(t, Request{Inputs: images(1)})
	for _, c := range []struct {
		name, sent string
		code       int // 0: the server closes the connection without an answer
	}{
		{"headers", "POST /predict HTTP/1.1\r\nHost: test\r\n", 0},
		{"body", fmt.Sprintf("POST /predict HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:10]), 408},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", ts.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			if _, err := io.WriteString(conn, c.sent); err != nil {
				t.Fatal(err)
			}
			// Trickle a byte every 100ms, as a slow client would, until the
			// server gives up.
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					case <-time.After(100 * time.Millisecond):
					}
					if _, err := conn.Write([]byte{" 0"[i%2]}); err != nil {
						return
					}
				}
			}()
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(conn)
			elapsed := time.Since(start)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the server still held the connection after %v", elapsed)
			}
			code := 0
			if len(got) > 0 {
				resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(got)), nil)
				if err != nil {
					t.Fatalf("answer %q: %v", got, err)
				}
				code = resp.StatusCode
			}
			if code != c.code || elapsed > 3*time.Second {
				t.Errorf("status %d after %v (%q); want %d within the timeouts", code, elapsed, got, c.code)
			}
		})
	}
	if got := metric(t, reg, "slatrun_serve_inflight_requests"); got != 0 {
		t.Errorf("%v requests still in flight", got)
	}
	if code, b := post(t, ts.Client(), ts.URL, Request{Inputs: images(1)}); code != 200 {
		t.Errorf("after the slow clients: status %d, %s", code, b)
	}
}

// closeRecorder wraps the predictor to see when serve closes it.
type closeRecorder struct {
	io.Closer
	active        *atomic.Int64 // handlers running
	closes        atomic.Int32
	activeAtClose atomic.Int64
}

func (c *closeRecorder) Close() error {
	c.closes.Add(1)
	c.activeAtClose.Store(c.active.Load())
	return c.Closer.Close()
}

// TestShutdown is a bounded load test of a shutdown on loopback: N
// concurrent requests are all inside the handler (held at a gate) when the
// context is cancelled, as SIGTERM does; the gate opens once the listener
// refuses new connections. Every request must get a 200 with valid
// predictions or a clean 503 refusal counted as such: no transport error,
// no connection reset, no "predictor is closed"; and the predictor is
// closed once, after the last handler returned.
func TestShutdown(t *testing.T) {
	const n = 200
	for _, c := range []struct {
		name    string
		lim     Limits
		refusal bool // 503s allowed
	}{
		{"all answered", Limits{MaxInputs: 4, MaxInflight: 8, MaxQueue: n, QueueWait: 10 * time.Second}, false},
		{"overloaded", Limits{MaxInputs: 4, MaxInflight: 2, MaxQueue: 4, QueueWait: 10 * time.Millisecond}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, p, reg := handler(t, predict.Options{Sessions: 2}, c.lim)
			var arrived, active atomic.Int64
			gate := make(chan struct{})
			var open sync.Once
			release := func() { open.Do(func() { close(gate) }) }
			defer release()
			gated := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				active.Add(1)
				defer active.Add(-1)
				if r.URL.Path == "/predict" {
					arrived.Add(1)
					<-gate
				}
				h.ServeHTTP(w, r)
			})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			rec := &closeRecorder{Closer: p, active: &active}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			served := make(chan error, 1)
			go func() { served <- serve(ctx, NewServer(gated, DefaultTimeouts), ln, rec, 10*time.Second) }()

			tr := &http.Transport{MaxIdleConnsPerHost: n}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
			type result struct {
				code  int
				body  []byte
				retry string
				err   error
			}
			results := make([]result, n)
			var wg sync.WaitGroup
			for i := range n {
				body := marshal(t, Request{Inputs: images(1 + i%4)})
				wg.Go(func() {
					resp, err := client.Post("http://"+addr+"/predict", "application/json", bytes.NewReader(body))
					if err != nil {
						results[i].err = err
						return
					}
					defer resp.Body.Close()
					b, err := io.ReadAll(resp.Body)
					results[i] = result{resp.StatusCode, b, resp.Header.Get("Retry-After"), err}
				})
			}
			waitFor(t, fmt.Sprintf("%d requests in the handler", n), func() bool { return arrived.Load() == n })
			start := time.Now()
			cancel() // SIGTERM
			waitFor(t, "the listener to close", func() bool {
				conn, err := net.Dial("tcp", addr)
				if err == nil {
					conn.Close()
				}
				return err != nil
			})
			// A server that closed its predictor as soon as Serve returned
			// would have done so by now.
			time.Sleep(20 * time.Millisecond)
			if rec.closes.Load() != 0 {
				t.Errorf("the predictor was closed with %d requests in the handler", active.Load())
			}
			release()
			wg.Wait()
			var err2 error
			select {
			case err2 = <-served:
			case <-time.After(15 * time.Second):
				t.Fatal("serve did not return")
			}
			drained := time.Since(start)
			if err2 != nil {
				t.Errorf("serve: %v", err2)
			}

			ok, refused := 0, 0
			for i, r := range results {
				switch {
				case r.err != nil:
					t.Errorf("request %d: %v", i, r.err)
				case r.code == http.StatusOK:
					if err := checkPredictions(r.body, 1+i%4); err != nil {
						t.Errorf("request %d: %v", i, err)
					}
					ok++
				case r.code == http.StatusServiceUnavailable && c.refusal && r.retry == "1" && strings.Contains(string(r.body), `"error":"overloaded`):
					refused++
				default:
					t.Errorf("request %d: status %d, Retry-After %q, body %s", i, r.code, r.retry, r.body)
				}
			}
			if rec.closes.Load() != 1 || rec.activeAtClose.Load() != 0 {
				t.Errorf("predictor closed %d times, with %d handlers running", rec.closes.Load(), rec.activeAtClose.Load())
			}
			if ok == 0 {
				t.Error("no request answered")
			}
			for _, m := range []struct {
				name   string
				labels []string
				want   int
			}{
				{"slatrun_serve_responses_total", []string{"code", "200"}, ok},
				{"slatrun_serve_responses_total", []string{"code", "503"}, refused},
				{"slatrun_predictions_total", []string{"outcome", "ok"}, ok},
				{"slatrun_predictions_total", []string{"outcome", "closed"}, 0},
			} {
				if got := metric(t, reg, m.name, m.labels...); got != float64(m.want) {
					t.Errorf("%s%v = %v, want %d", m.name, m.labels, got, m.want)
				}
			}
			t.Logf("%s: %d requests in flight at the signal: %d answered 200, %d refused 503, %d failed; drained and closed in %v",
				c.name, n, ok, refused, n-ok-refused, drained.Round(time.Millisecond))
		})
	}
}

// TestShutdownTimeout: a request still running when the grace period ends
// has its connection closed; serve says so, and closes the predictor.
func TestShutdownTimeout(t *testing.T) {
	h, p, _ := handler(t, predict.Options{Sessions: 1}, testLimits())
	var active atomic.Int64
	stuck := make(chan struct{})
	defer close(stuck)
	entered := make(chan struct{})
	gated := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		active.Add(1)
		defer active.Add(-1)
		close(entered)
		<-stuck
		h.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &closeRecorder{Closer: p, active: &active}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serve(ctx, NewServer(gated, DefaultTimeouts), ln, rec, 100*time.Millisecond) }()
	body := marshal(t, Request{Inputs: images(1)})
	go func() {
		resp, err := http.Post("http://"+ln.Addr().String()+"/predict", "application/json", bytes.NewReader(body))
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	cancel()
	select {
	case err := <-served:
		if err == nil || !strings.Contains(err.Error(), "requests still in flight after 100ms") {
			t.Errorf("serve: %v; want an error about the requests in flight", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return")
	}
	if rec.closes.Load() != 1 {
		t.Errorf("predictor closed %d times", rec.closes.Load())
	}
}

// TestRun runs the command's path: flags, Open, listen, serve, shutdown.
func TestRun(t *testing.T) {
	cfg, err := parseFlags(io.Discard, []string{"--model", savedModel(t), "--addr", "127.0.0.1:0", "--sessions", "1"})
	if err != nil {
		t.Fatal(err)
	}
	addrs := make(chan net.Addr, 1)
	cfg.ready = func(a net.Addr) { addrs <- a }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg) }()
	var addr net.Addr
	select {
	case addr = <-addrs:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not start")
	}
	url := "http://" + addr.String()
	if code, body := post(t, http.DefaultClient, url, Request{Inputs: images(2)}); code != 200 || checkPredictions(body, 2) != nil {
		t.Errorf("status %d, %s", code, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after the signal: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return")
	}
}

// TestRunExternalData: a model whose weights name a file outside it
// ("../../etc/passwd") is refused before the server listens.
func TestRunExternalData(t *testing.T) {
	m, err := zoo.Build("convnet", zoo.Config{Width: 8, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	w := m.Graph().GetInitializer()[0]
	w.RawData, w.FloatData = nil, nil
	w.DataLocation = onnxpb.TensorProto_EXTERNAL.Enum()
	w.ExternalData = []*onnxpb.StringStringEntryProto{{Key: proto.String("location"), Value: proto.String("../../etc/passwd")}}
	path := filepath.Join(t.TempDir(), "model.onnx")
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseFlags(io.Discard, []string{"--model", path, "--addr", "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	cfg.ready = func(net.Addr) { t.Error("the server started") }
	err = run(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "keeps its data in an external file") || !strings.Contains(err.Error(), "../../etc/passwd") {
		t.Errorf("run: %v; want a refusal of the external data", err)
	}
}

func TestParseFlags(t *testing.T) {
	d := DefaultLimits()
	for _, c := range []struct {
		args []string
		want func(config) bool
		err  string
	}{
		{nil, func(c config) bool {
			return c.limits == d && c.timeouts == DefaultTimeouts && c.addr == ":8080" && d.MaxInflight >= 4 && d.MaxAbsInput > 0
		}, ""},
		{[]string{"--max-inflight", "3", "--max-queue", "0", "--queue-wait", "250ms", "--max-abs-input", "0", "--read-timeout", "2s", "--shutdown-timeout", "1m"}, func(c config) bool {
			return c.limits.MaxInflight == 3 && c.limits.MaxQueue == 0 && c.limits.QueueWait == 250*time.Millisecond && c.limits.MaxAbsInput == 0 &&
				c.timeouts.Read == 2*time.Second && c.timeouts.Shutdown == time.Minute && c.timeouts.Write == DefaultTimeouts.Write
		}, ""},
		{[]string{"--max-inflight", "0"}, nil, "want inputs and in flight ≥ 1"},
		{[]string{"--max-queue", "-1"}, nil, "the others ≥ 0"},
		{[]string{"--max-abs-input", "NaN"}, nil, "the others ≥ 0"},
		{[]string{"extra"}, nil, `unexpected arguments ["extra"]`},
		{[]string{"--read-timeout", "soon"}, nil, `invalid argument "soon" for "--read-timeout" flag`},
		{[]string{"--provider", "CPU"}, func(c config) bool { return c.provider == "CPU" }, ""},
		{[]string{"--provider", "tpu"}, nil, `--provider: ort: unknown provider "tpu"`},
	} {
		cfg, err := parseFlags(io.Discard, c.args)
		switch {
		case c.err == "" && (err != nil || !c.want(cfg)):
			t.Errorf("%q: %+v, %v", c.args, cfg, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) && !errors.Is(err, pflag.ErrHelp):
			t.Errorf("%q: error %v; want one saying %q", c.args, err, c.err)
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
			lim := testLimits()
			lim.MaxQueue, lim.QueueWait = clients, 10*time.Second
			ts, p, _ := server(t, c.opts, lim, nil)
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
