// Package dataset is image-classification data for slatrun: images as float32
// NCHW in [0,1] and labels as int64, read from the common distribution formats,
// and a Loader that batches them into caller-owned buffers.
//
// Readers:
//   - LoadIDX, LoadMNISTDir, LoadFashionMNIST: MNIST and Fashion-MNIST IDX
//     files, gzip-compressed or raw (detected by content, not by name).
//   - LoadCIFAR10, LoadCIFAR100: the CIFAR binary versions (data_batch_*.bin,
//     test_batch.bin; train.bin, test.bin).
//   - Synthetic: a seeded task that is quick to learn, for tests and smoke runs.
//   - Open: the data spec strings of the CLI ("fashion-mnist", "cifar10:DIR",
//     "synthetic", ...).
//
// Like the standard library's encoding packages, a reader never panics on bad
// input: it returns one error that names the file and the problem (bad magic
// number, truncation, image/label count mismatch, label out of range, ...).
// The problem is also a sentinel error (ErrMagic, ErrTruncated, ...) that
// callers can test with errors.Is.
//
// Nor does bad input cost more than its real size. The readers open only
// regular files (a link to /dev/zero or a named pipe is ErrNotRegular), and
// they bound what a header or spec promises before allocating for it: by
// the file's real size (a gzip file holds at most 1032 times its size), by
// the other file's header, and by stated limits (ErrLimit): MaxSide pixels
// a side, MaxDataBytes of pixels a split, and for synthetic:CxHxW at most
// SyntheticMaxChannels channels and SyntheticMaxBytes of float32.
//
// A Set is plain memory: Slice and Split return views that share it. A Loader
// walks a Set in batches, shuffled per epoch by a seed, optionally augmented
// (zero pad and random crop, horizontal flip). Everything it does is a pure
// function of (seed, epoch, batch index), so a resumed run can Seek to where it
// stopped and see the very same batches; in steady state it allocates nothing.
package dataset
