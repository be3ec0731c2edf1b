package dataset

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpus under testdata/fuzz")

// idxSeeds are the IDX seed inputs: valid pairs, raw and gzip, and broken ones.
func idxSeeds() [][2][]byte {
	img := idxBytes(idxImagesMagic, []uint32{2, 3, 3}, tinyImages(2, 3, 3))
	lbl := idxBytes(idxLabelsMagic, []uint32{2}, []byte{3, 9})
	return [][2][]byte{
		{img, lbl},
		{gzipBytes(img), gzipBytes(lbl)},
		{img[:10], lbl}, // truncated header
		{img, idxBytes(idxLabelsMagic, []uint32{2}, []byte{3, 10})}, // bad label
		{lbl, img}, // swapped
		{idxBytes(idxImagesMagic, []uint32{0xffffffff, 0xffff, 0xffff}, nil), lbl},
		// The bounds checked before any data is read: sides over MaxSide,
		// more than MaxDataBytes, a raw file shorter or longer than its
		// header says, a gzip file too small for what its header says,
		// counts that differ.
		{idxBytes(idxImagesMagic, []uint32{1, 40000, 40000}, nil), idxBytes(idxLabelsMagic, []uint32{1}, []byte{0})},
		{idxBytes(idxImagesMagic, []uint32{1400000, 28, 28}, nil), idxBytes(idxLabelsMagic, []uint32{1400000}, nil)},
		{idxBytes(idxImagesMagic, []uint32{60000, 28, 28}, tinyImages(1, 28, 28)), idxBytes(idxLabelsMagic, []uint32{60000}, nil)},
		{append(img[:len(img):len(img)], 0, 0), lbl},
		{img, idxBytes(idxLabelsMagic, []uint32{2}, []byte{3, 9, 1})},
		{gzipBytes(idxBytes(idxImagesMagic, []uint32{100000, 28, 28}, nil)), gzipBytes(idxBytes(idxLabelsMagic, []uint32{100000}, nil))},
		{img, idxBytes(idxLabelsMagic, []uint32{3}, []byte{3, 9, 1})},
	}
}

// cifarSeeds are the CIFAR seed inputs: one valid record of each kind, and broken ones.
func cifarSeeds() []struct {
	data    []byte
	hundred bool
} {
	return []struct {
		data    []byte
		hundred bool
	}{
		{cifarBytes(1, 1), false},
		{cifarBytes(1, 2), true},
		{cifarBytes(1, 1)[:100], false},
		{append([]byte{10}, make([]byte, cifarPixels)...), false},
	}
}

func FuzzIDX(f *testing.F) {
	for _, s := range idxSeeds() {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, images, labels []byte) {
		s, err := decodeIDXPair(bytes.NewReader(images), bytes.NewReader(labels), int64(len(images)), int64(len(labels)), "images", "labels")
		if err != nil {
			if msg := err.Error(); !strings.HasPrefix(msg, "dataset: ") || !strings.Contains(msg, "images") && !strings.Contains(msg, "labels") {
				t.Fatalf("error %q names no file", msg)
			}
			return
		}
		checkSet(t, s)
		if s.C != 1 || s.Classes != 10 {
			t.Fatalf("got %v", s)
		}
	})
}

func FuzzCIFAR(f *testing.F) {
	for _, s := range cifarSeeds() {
		f.Add(s.data, s.hundred)
	}
	f.Fuzz(func(t *testing.T, data []byte, hundred bool) {
		labelBytes, classes := 1, 10
		if hundred {
			labelBytes, classes = 2, 100
		}
		s, err := decodeCIFAR(data, "data.bin", labelBytes, classes)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "dataset: data.bin: ") {
				t.Fatalf("error %q names no file", err)
			}
			return
		}
		checkSet(t, s)
		if s.Shape() != [4]int{len(data) / (labelBytes + cifarPixels), 3, 32, 32} {
			t.Fatalf("got %v from %d bytes", s, len(data))
		}
	})
}

// TestFuzzCorpus writes the committed seed corpus (go test -run FuzzCorpus
// -update-corpus) and otherwise checks that it is there; go test runs it.
func TestFuzzCorpus(t *testing.T) {
	files := map[string]string{}
	for i, s := range idxSeeds() {
		files[fmt.Sprintf("FuzzIDX/seed%d", i)] = fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n[]byte(%q)\n", s[0], s[1])
	}
	for i, s := range cifarSeeds() {
		files[fmt.Sprintf("FuzzCIFAR/seed%d", i)] = fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nbool(%v)\n", s.data, s.hundred)
	}
	for name, text := range files {
		p := filepath.Join("testdata", "fuzz", name)
		if *updateCorpus {
			writeFile(t, filepath.Dir(p), filepath.Base(p), []byte(text))
			continue
		}
		// Only presence is checked: gzip output may change with the Go release.
		if _, err := os.Stat(p); err != nil {
			t.Errorf("seed corpus file missing (go test -run FuzzCorpus -update-corpus): %v", err)
		}
	}
}
