package dataset

import (
	"bufio"
	"compress/flate"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// IDX magic numbers: two zero bytes, the element type (0x08, unsigned byte)
// and the number of dimensions.
const (
	idxImagesMagic = 0x00000803
	idxLabelsMagic = 0x00000801
	mnistClasses   = 10
)

// FashionMNISTDir is where the Debian package dataset-fashion-mnist installs
// Fashion-MNIST (the four standard .gz files).
const FashionMNISTDir = "/usr/share/datasets/fashion-mnist"

// LoadFashionMNIST reads split ("train" or "test") of Fashion-MNIST from
// FashionMNISTDir.
func LoadFashionMNIST(split string) (*Set, error) {
	s, err := LoadMNISTDir(FashionMNISTDir, split)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (install the Debian package dataset-fashion-mnist, or give fashion-mnist:DIR)", err)
	}
	return s, err
}

// LoadMNISTDir reads split ("train" or "test") of MNIST or Fashion-MNIST from
// dir, which holds the standard files train-images-idx3-ubyte,
// train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte,
// each raw or gzip-compressed with a .gz suffix.
func LoadMNISTDir(dir, split string) (*Set, error) {
	if err := checkSplit(split); err != nil {
		return nil, err
	}
	prefix := "train"
	if split == "test" {
		prefix = "t10k"
	}
	images, err := findIDX(dir, prefix+"-images-idx3-ubyte")
	if err != nil {
		return nil, err
	}
	labels, err := findIDX(dir, prefix+"-labels-idx1-ubyte")
	if err != nil {
		return nil, err
	}
	return LoadIDX(images, labels)
}

// findIDX returns the path of name or name.gz in dir (the raw file first).
func findIDX(dir, name string) (string, error) {
	for _, n := range []string{name, name + ".gz"} {
		p := filepath.Join(dir, n)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("dataset: no %s or %s.gz in %s: %w", name, name, dir, fs.ErrNotExist)
}

// LoadIDX reads an IDX image file (magic 0x00000803, N×H×W unsigned bytes)
// and its IDX label file (magic 0x00000801, N labels in 0..9), each raw or
// gzip-compressed (detected by the gzip magic 0x1f8b). Both must be regular
// files. Before it reads any data it checks both headers: H and W at most
// MaxSide, N×H×W at most MaxDataBytes, as many labels as images, and no more
// data than the file can hold (a raw file's size after the header must be
// exactly the data's; a gzip file can hold at most 1032 times its size). It
// then reads the data as it arrives, so a header that promises more than
// there is fails at the end of the file, having cost no more memory than the
// file's contents.
func LoadIDX(imagesPath, labelsPath string) (*Set, error) {
	fi, isize, err := openRegular(imagesPath)
	if err != nil {
		return nil, err
	}
	defer fi.Close()
	fl, lsize, err := openRegular(labelsPath)
	if err != nil {
		return nil, err
	}
	defer fl.Close()
	return decodeIDXPair(fi, fl, isize, lsize, imagesPath, labelsPath)
}

// decodeIDXPair decodes an image and a label stream of the given sizes in
// bytes (as stored: compressed for gzip); the names appear in errors. Both
// headers are checked, against the limits and each other, before any data
// is read, and the labels are read and checked before the images.
func decodeIDXPair(images, labels io.Reader, imagesSize, labelsSize int64, imagesName, labelsName string) (*Set, error) {
	im, err := openIDX(images, imagesSize, imagesName, 3)
	if err != nil {
		return nil, err
	}
	lb, err := openIDX(labels, labelsSize, labelsName, 1)
	if err != nil {
		return nil, err
	}
	n := im.dims[0]
	if lb.dims[0] != n {
		return nil, fmt.Errorf("dataset: %w: %s has %d images but %s has %d labels", ErrCount, imagesName, n, labelsName, lb.dims[0])
	}
	lab, err := lb.data()
	if err != nil {
		return nil, err
	}
	y := make([]int64, n)
	for i, l := range lab {
		if int(l) >= mnistClasses {
			return nil, fmt.Errorf("dataset: %s: %w: label %d of example %d, want 0..%d", labelsName, ErrLabel, l, i, mnistClasses-1)
		}
		y[i] = int64(l)
	}
	pix, err := im.data()
	if err != nil {
		return nil, err
	}
	s := &Set{N: n, C: 1, H: im.dims[1], W: im.dims[2], Classes: mnistClasses, X: make([]float32, len(pix)), Y: y}
	bytesToUnit(s.X, pix)
	return s, nil
}

// idxStream is an IDX stream whose header has been read and checked.
type idxStream struct {
	name string
	src  io.Reader // positioned at the data (decompressed for gzip)
	gz   bool
	dims []int
	need int // bytes of data the header promises
}

// after is " after gunzip" for a gzip stream, for messages about the data.
func (s *idxStream) after() string {
	if s.gz {
		return " after gunzip"
	}
	return ""
}

// openIDX reads and checks the header of an unsigned-byte IDX stream of
// size bytes (as stored) with ndims dimensions (3: images, 1: labels),
// gzip-compressed or raw.
func openIDX(r io.Reader, size int64, name string, ndims int) (*idxStream, error) {
	br := bufio.NewReader(r)
	s := &idxStream{name: name, src: br}
	head, err := br.Peek(2)
	if len(head) == 0 {
		if err == nil || err == io.EOF {
			return nil, fmt.Errorf("dataset: %s: %w", name, ErrEmpty)
		}
		return nil, fmt.Errorf("dataset: %s: %w", name, err)
	}
	if len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, readError(name, err, "the gzip header is cut short")
		}
		s.src, s.gz = zr, true
	}
	after := s.after()

	hdr := make([]byte, 4+4*ndims)
	if n, err := io.ReadFull(s.src, hdr[:4]); err != nil {
		if n == 0 && s.gz && err == io.EOF {
			return nil, fmt.Errorf("dataset: %s: %w (nothing%s)", name, ErrEmpty, after)
		}
		return nil, readError(name, err, fmt.Sprintf("%d bytes%s, too short for the %d-byte IDX header", n, after, len(hdr)))
	}
	if err := checkMagic(binary.BigEndian.Uint32(hdr), ndims); err != nil {
		return nil, fmt.Errorf("dataset: %s: %w", name, err)
	}
	if n, err := io.ReadFull(s.src, hdr[4:]); err != nil {
		return nil, readError(name, err, fmt.Sprintf("%d bytes%s, too short for the %d-byte IDX header", 4+n, after, len(hdr)))
	}
	s.dims = make([]int, ndims)
	total := uint64(1)
	for i := range s.dims {
		d := uint64(binary.BigEndian.Uint32(hdr[4+4*i:]))
		if d == 0 {
			return nil, fmt.Errorf("dataset: %s: %w: the header says %s; every dimension must be positive", name, ErrHeader, dimString(hdr[4:]))
		}
		if i > 0 && d > MaxSide {
			return nil, fmt.Errorf("dataset: %s: %w: %w: the header says %s, images of %d×%d pixels, larger than the %d×%d this reader accepts",
				name, ErrHeader, ErrLimit, dimString(hdr[4:]), binary.BigEndian.Uint32(hdr[8:]), binary.BigEndian.Uint32(hdr[12:]), MaxSide, MaxSide)
		}
		if d > MaxDataBytes/total {
			return nil, fmt.Errorf("dataset: %s: %w: %w: the header says %s, more than the %d bytes of data this reader accepts",
				name, ErrHeader, ErrLimit, dimString(hdr[4:]), MaxDataBytes)
		}
		total *= d
		s.dims[i] = int(d)
	}
	s.need = int(total)
	// What the file can hold: a raw file exactly what follows the header,
	// a gzip file at most maxDeflateRatio times its size.
	switch avail := size - int64(len(hdr)); {
	case !s.gz && int64(s.need) > avail:
		return nil, fmt.Errorf("dataset: %s: %w: the header promises %s (%d bytes of data) but only %d follow",
			name, ErrTruncated, describe(s.dims), s.need, max(avail, 0))
	case !s.gz && int64(s.need) < avail:
		return nil, fmt.Errorf("dataset: %s: %w: more data than the %s the header promises: %d bytes follow the header, not %d (is the count wrong?)",
			name, ErrTrailing, describe(s.dims), avail, s.need)
	case s.gz && uint64(s.need) > maxDeflateRatio*uint64(max(size, 0)):
		return nil, fmt.Errorf("dataset: %s: %w: the header promises %s (%d bytes of data), more than a %d-byte gzip file can hold (deflate expands at most %d-fold)",
			name, ErrTruncated, describe(s.dims), s.need, size, maxDeflateRatio)
	}
	return s, nil
}

// data reads the data the header promised, and checks that the stream
// ends there.
func (s *idxStream) data() ([]byte, error) {
	data, err := readN(s.src, s.need)
	if err != nil {
		return nil, readError(s.name, err, fmt.Sprintf("the header promises %s (%d bytes of data) but only %d follow%s", describe(s.dims), s.need, len(data), s.after()))
	}
	var one [1]byte
	if n, err := io.ReadFull(s.src, one[:]); n > 0 {
		return nil, fmt.Errorf("dataset: %s: %w: more data%s than the %s the header promises (is the count wrong?)", s.name, ErrTrailing, s.after(), describe(s.dims))
	} else if err != io.EOF {
		return nil, readError(s.name, err, "")
	}
	return data, nil
}

// checkMagic explains a wrong IDX magic number.
func checkMagic(got uint32, ndims int) error {
	want, what, other, otherWhat := uint32(idxImagesMagic), "IDX images", uint32(idxLabelsMagic), "IDX labels"
	if ndims == 1 {
		want, what, other, otherWhat = other, otherWhat, want, what
	}
	switch {
	case got == want:
		return nil
	case got == other:
		return fmt.Errorf("%w 0x%08x (%s), want 0x%08x (%s); are the image and label files swapped?", ErrMagic, got, otherWhat, want, what)
	case got>>8 == 0x08:
		return fmt.Errorf("%w 0x%08x (an IDX file with %d dimensions), want 0x%08x (%s, %d dimensions)", ErrMagic, got, got&0xff, want, what, ndims)
	case got>>16 == 0 && got>>8 != 0x08:
		return fmt.Errorf("%w 0x%08x (IDX element type 0x%02x), want 0x%08x (%s of unsigned bytes, type 0x08)", ErrMagic, got, got>>8&0xff, want, what)
	default:
		return fmt.Errorf("%w 0x%08x, want 0x%08x (%s); this is not an IDX file", ErrMagic, got, want, what)
	}
}

func dimString(b []byte) string {
	var sb strings.Builder
	for i := 0; i+4 <= len(b); i += 4 {
		if i > 0 {
			sb.WriteString("×")
		}
		fmt.Fprint(&sb, binary.BigEndian.Uint32(b[i:]))
	}
	return sb.String()
}

func describe(dims []int) string {
	if len(dims) == 1 {
		return fmt.Sprintf("%d labels", dims[0])
	}
	return fmt.Sprintf("%d images of %d×%d", dims[0], dims[1], dims[2])
}

// readN reads exactly n bytes, growing its buffer as data arrives so that a
// header promising more than there is costs no more memory than the data.
// On a short read it returns what it got and io.ErrUnexpectedEOF.
func readN(r io.Reader, n int) ([]byte, error) {
	buf := make([]byte, 0, min(n, 1<<16))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			nb := make([]byte, len(buf), min(n, 2*cap(buf)))
			copy(nb, buf)
			buf = nb
		}
		m, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if len(buf) == n {
			break // an error with the last bytes shows again on the next read
		}
		if err == io.EOF {
			return buf, io.ErrUnexpectedEOF
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// readError turns a read failure into one error naming the file: truncation
// (with the explanation short), corrupt gzip data, or the I/O error itself.
func readError(name string, err error, short string) error {
	var corrupt flate.CorruptInputError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		if short == "" {
			short = "the gzip stream ends early"
		}
		return fmt.Errorf("dataset: %s: %w: %s", name, ErrTruncated, short)
	case errors.As(err, &corrupt) || errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader):
		return fmt.Errorf("dataset: %s: %w: %v", name, ErrCorrupt, err)
	}
	return fmt.Errorf("dataset: %s: %w", name, err)
}
