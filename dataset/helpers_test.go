package dataset

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// idxBytes builds an IDX file: the magic, the big-endian dimensions, the data.
func idxBytes(magic uint32, dims []uint32, data []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, magic)
	for _, d := range dims {
		b = binary.BigEndian.AppendUint32(b, d)
	}
	return append(b, data...)
}

// tinyImages returns n images of h×w whose pixel j of image i is (7*i+j)%256.
func tinyImages(n, h, w int) []byte {
	b := make([]byte, n*h*w)
	for i := range n {
		for j := range h * w {
			b[i*h*w+j] = byte(7*i + j)
		}
	}
	return b
}

func tinyLabels(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 10)
	}
	return b
}

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// cifarBytes builds n CIFAR records: label byte(s), then 3072 pixels with
// pixel j of record i equal to (i+j)%256. CIFAR-10 labels are i%10; CIFAR-100
// records have coarse label i%20 and fine label (3*i)%100.
func cifarBytes(n, labelBytes int) []byte {
	var b []byte
	for i := range n {
		if labelBytes == 2 {
			b = append(b, byte(i%20), byte(3*i%100))
		} else {
			b = append(b, byte(i%10))
		}
		for j := range cifarPixels {
			b = append(b, byte(i+j))
		}
	}
	return b
}

// checkSet fails unless s is internally consistent.
func checkSet(t testing.TB, s *Set) {
	t.Helper()
	if len(s.X) != s.N*s.C*s.H*s.W || len(s.Y) != s.N {
		t.Fatalf("set %v has %d pixels and %d labels", s, len(s.X), len(s.Y))
	}
	for i, v := range s.X {
		if !(v >= 0 && v <= 1) {
			t.Fatalf("pixel %d is %v, outside [0,1]", i, v)
		}
	}
	for i, y := range s.Y {
		if y < 0 || y >= int64(s.Classes) {
			t.Fatalf("label %d is %d, outside [0,%d)", i, y, s.Classes)
		}
	}
}
