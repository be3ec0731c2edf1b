// Package orchestrator is slatrun's training loop: SLAT (Park & Lee, ICCV
// 2021) and its baselines — standard, FGSM, FGSM-RS, N-FGSM, PGD-K and
// Free-M — as the SLAT paper and its reference code specify them, with ONNX
// Runtime doing the tensor work.
//
// New derives, once, the graphs a method needs from the forward graph
// (graphs.Derive): the train graph, and for the attacking methods the attack
// graph (SLAT's with its latent taps). The parameters and BN statistics live
// in Go slices bound as inputs of both sessions (ort.Options.Shared), so the
// optimizer updates them in place and both graphs see the update without a
// copy. Run then loops over the data:
//
//	for each epoch, for each minibatch:
//	    step()        one short function per method family (step.go)
//	    afterStep()   statistics, Hooks.OnStep, a metrics line every LogEvery
//	    ctx check     on cancellation: save model.onnx + state.bin, return
//	endEpoch()        PGD probe on the held-out slice, best.onnx,
//	                  catastrophic-overfitting flag, checkpoint, Hooks.OnEpoch
//
// A SLAT step (stepSLAT) is: pass 1 through the attack graph at the clean x
// gives ∂ℓ/∂x and ∂ℓ/∂h at each tap; perturb.SLATInput and perturb.SLATLatent
// turn their signs into δx and δ_l; pass 2 through the train graph at x+δx,
// with δ_l added at each tap under the in-graph domain clip, gives the loss,
// the parameter gradients and the next BN statistics; optim.SGD (exactly
// PyTorch's, momentum and weight decay included) updates the parameters at
// the learning rate and momentum of the optim.Schedule. The step allocates
// nothing. Step sizes left at Auto come from one table, Defaults.
// Trainer.Step runs one step outside Run, on a given minibatch, and
// Trainer.Times splits the time of those steps into attack passes, train
// passes and Go (slatrun bench).
//
// A run directory (Config.Out) holds config.json, metrics.jsonl,
// model.onnx (the forward graph with the trained weights), best.onnx (the
// checkpoint with the best probe robust accuracy) and state.bin (everything
// needed to resume: parameters, BN statistics, momentum buffers, position,
// random generator state, metrics accumulators, and the provenance — the
// forward graph's hash and the data's fingerprint). Every file is written
// to a temporary name and renamed, but metrics.jsonl, which grows by synced
// appends and is cut back to the saved position on resume. A Trainer holds
// the directory's lock (LockRun) from New to Close, so two trainers never
// share a directory. A resumed run (Config.Resume) must have the saved
// run's settings, forward graph and data, and reproduces the metrics and
// weights of an uninterrupted run with the same seed on the same provider
// and thread count. Config.Overwrite replaces an old run, removing its
// files only once the new run's settings and graphs are known to be good.
// The layout and these rules are in docs/run-directory.md.
//
// All randomness comes from Config.Seed: the loader's shuffling and
// augmentation (dataset), the training attacks' random starts (a PCG whose
// state state.bin saves) and the probe's (a PCG per epoch).
package orchestrator
