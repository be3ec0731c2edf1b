// Package sweep runs reliability studies: a grid of training runs (methods ×
// ε × seeds × any further training flag), each cell an ordinary run
// directory, every final and best checkpoint evaluated with the same
// attacks, and a report (report.md, report.json, PNG plots) of clean and
// robust accuracy with mean ± std over seeds, training time and the runs
// that collapsed (catastrophic overfitting).
//
// A sweep directory holds:
//
//	sweep.json               the Spec and its cells, in grid order
//	cells/NAME/              one run directory per cell (docs/run-directory.md), plus
//	    cell.json            the cell: method, ε, seed, axis values, training flags
//	    trained.json         written when training finished: the cell is never trained again
//	    eval-final.json      cached evaluation of model.onnx (redone only if its key changes)
//	    eval-best.json       cached evaluation of best.onnx
//	    failed.json          the error of a cell that failed (retried on the next Run)
//	    train.log            the run's log lines
//	shards/I-of-N.json       what a shard (Options.Shard) did
//	report.md, report.json   the report (Collect, WriteMarkdown)
//	plots/*.png              the plots (PlotReport)
//
// Run is resumable: cells with trained.json are skipped, cells with a
// state.bin but no trained.json resume where they stopped (the
// orchestrator's Config.Resume), and cached evaluations are reused. Run
// holds a cell's lock (orchestrator.LockRun) while it trains and evaluates
// it; a cell whose lock another process holds is skipped (Summary.Busy). The
// cells are independent, so a sweep scales out by sharding: Shard{I, N}
// runs the cells whose grid index is I mod N, every shard computes the same
// grid from the same Spec, and Collect merges the cells of several shard
// directories into the one report a single Run would have written.
// K8sJob writes the Kubernetes Indexed Job that runs the shards (one pod
// per shard, the index from JOB_COMPLETION_INDEX, results on a shared
// volume).
//
// The package does not parse training flags: Options.Train receives each
// cell's command line (Cell.Args, the flags of "slatrun train") and trains
// it; cmd/slatrun supplies the function that "slatrun train" itself uses.
package sweep
