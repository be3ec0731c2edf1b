// Package predict serves a trained model inside a Go program: a Predictor
// over a checkpoint's forward graph (model.onnx, best.onnx, or any ONNX image
// classifier with one image input [N,C,H,W] and one logits output [N,K])
// returns logits and softmax probabilities, and is safe for concurrent use by
// many goroutines. Robustness evaluates the same forward graph under attacks
// (eval) without the caller deriving eval graphs.
//
// # Sessions and batching
//
// ONNX Runtime sessions in slatrun bind their tensors once (onnx/ort), at a
// fixed batch B (Options.Batch, or the model's own fixed batch). A session
// is used by one goroutine at a time, so a Predictor holds Options.Sessions
// of them and schedules requests onto them in one of two ways (Options.Mode):
//
//   - Pool (the default): a request takes a free session, runs its rows in
//     batches of B (the last one padded), and gives the session back. A
//     request waits only when every session is busy.
//   - MicroBatch: each session has a collector goroutine that takes the
//     first queued request, adds every request already queued (and, with
//     Options.MaxDelay > 0, those arriving within MaxDelay) up to B rows, and
//     runs them as one batch. Fewer, fuller runs, at the price of a hop
//     between goroutines.
//
// Options.Ladder gives each collector sessions at batch 1, 2, 4, … as well,
// so a batch runs at the smallest size that holds it instead of paying for
// padded rows.
//
// On CPU, with single-image requests from 1 to 64 concurrent goroutines
// (BenchmarkPredict, 2 cores), the pool of batch-1 sessions was as fast as
// the best micro-batching variant or faster, in throughput and in latency:
// convolutions cost about as much per image at batch 16 as at batch 1, so
// grouping saves little, while a fixed-batch run pays for its padded rows
// (a lone image at batch 16 took 15× longer than at batch 1). Micro-batching
// pays off where a run has a large fixed cost, as on a GPU (one host↔device
// copy and kernel launches per run, whatever the batch), so it stays an
// option, with Ladder.
//
// Rows of a batch do not influence each other: a Predictor runs batch
// normalization on its running statistics (a BatchNormalization node
// exported in training mode is switched to its inference form), so padding
// and the other requests in a batch never change a request's result.
//
// # Untrusted models and inputs
//
// Open reads a model through onnx.Load, and New checks it with
// Model.Validate, as the slatrun command does. New also refuses, before
// ONNX Runtime sees the model, any tensor that keeps its data in an external
// file (ErrExternalData): ONNX Runtime would resolve the file's location
// against the process's working directory and read whatever it names.
//
// # Errors and shutdown
//
// Predict checks the input's length against n×C×H×W and says what it
// expected, and refuses NaN and infinite values (ErrInput). When the model's
// logits are not finite, as an input far outside its range can make them,
// Predict returns ErrNonFinite rather than NaN probabilities. It stops
// waiting when its context ends, unless its rows are
// already in a running batch, in which case it returns after that one run.
// Close waits for the requests in flight, then releases the sessions; later
// calls return ErrClosed, and a second Close returns nil.
package predict
