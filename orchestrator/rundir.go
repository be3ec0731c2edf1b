package orchestrator

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ArgsFile is the command line of a run (a JSON array of the flags of
// "slatrun train"), which slatrun writes into the run directory so that
// "slatrun train --resume DIR" needs no other flags. The Trainer does not
// write it, but counts it among the run's files.
const ArgsFile = "cli-args.json"

// ErrRunExists is wrapped by New's error when Config.Out already holds
// files of a run and neither Config.Resume nor Config.Overwrite is set.
var ErrRunExists = errors.New("the run directory holds another run")

// isRunFile reports whether name, a file of a run directory, belongs to the
// run: what the Trainer writes, ArgsFile, and evaluations of the run's
// checkpoints (eval.json, eval-*.json, as slatrun eval --out and slatrun
// sweep write them). Other files (notes, a sweep cell's cell.json and
// train.log, the lock) are not the run's.
func isRunFile(name string) bool {
	switch name {
	case StateFile, ModelFile, BestFile, ConfigFile, MetricsFile, ArgsFile, "eval.json":
		return true
	}
	return strings.HasPrefix(name, "eval-") && strings.HasSuffix(name, ".json")
}

// isRunTemp reports whether name is the temporary file of an atomic write
// of a run file (onnx.WriteFileAtomic's ".NAME.tmpRANDOM") that a crash
// left behind.
func isRunTemp(name string) bool {
	i := strings.LastIndex(name, ".tmp")
	return strings.HasPrefix(name, ".") && i > 1 && isRunFile(name[1:i])
}

// removalRank orders the removal of an old run's files: state.bin first, so
// that from the first removal on the directory cannot be resumed, and
// config.json last, so that whatever a crash leaves still says what it was.
func removalRank(name string) int {
	switch name {
	case StateFile:
		return 0
	case ConfigFile:
		return 3
	}
	if isRunTemp(name) {
		return 2
	}
	return 1
}

// RunFiles lists the files of run directory dir that belong to a run:
// state.bin, model.onnx, best.onnx, config.json, metrics.jsonl, ArgsFile
// and evaluations (eval.json, eval-*.json). New refuses to start a fresh
// run in a directory that has any, unless Config.Overwrite is set.
func RunFiles(dir string) ([]string, error) { return runFiles(dir, false) }

// runFiles lists the files of dir that belong to a run (isRunFile), and
// the temporary leftovers of their writes when temps is set, in the order
// clearRun removes them.
func runFiles(dir string, temps bool) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("orchestrator: run directory: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		if n := e.Name(); isRunFile(n) || temps && isRunTemp(n) {
			names = append(names, n)
		}
	}
	sort.SliceStable(names, func(i, j int) bool { return removalRank(names[i]) < removalRank(names[j]) })
	return names, nil
}

// clearRun removes the files of the run in dir (runFiles, temporary
// leftovers included) and returns their names. It removes state.bin
// first and config.json last, so that a crash part-way leaves a subset of
// the old run's files that cannot be resumed, and that New refuses to start
// a run beside until Overwrite removes them; it never leaves new files
// beside old ones, since the new run writes nothing before clearRun
// returns. The caller holds the directory's lock.
func clearRun(dir string) ([]string, error) {
	names, err := runFiles(dir, true)
	if err != nil {
		return nil, err
	}
	for i, n := range names {
		if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return names[:i], fmt.Errorf("orchestrator: overwrite: remove the earlier run's %s: %w", n, err)
		}
	}
	if len(names) > 0 {
		if err := syncDir(dir); err != nil {
			return names, fmt.Errorf("orchestrator: overwrite: %w", err)
		}
	}
	return names, nil
}

// syncDir flushes dir's entries (the removals) to disk.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
