package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEvalAutoAttack: slatrun eval --attacks autoattack prints the table
// with the AutoAttack line and writes eval.json with the per-attack
// numbers, the autoattack block and the model file's SHA-256; the plus
// version is a usage error that says it is not implemented.
func TestEvalAutoAttack(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "mlp.onnx")
	var out, errb bytes.Buffer
	if code := run([]string{"export", "--model", "mlp", "-o", model}, &out, &errb); code != 0 {
		t.Fatalf("export: exit %d: %s", code, errb.String())
	}
	js := filepath.Join(dir, "eval.json")
	out.Reset()
	errb.Reset()
	args := []string{"eval", "--model", model, "--data", "synthetic:1x8x8", "--eps", "1/255", "--attacks", "autoattack", "--test-n", "16", "--eval-batch", "8", "-o", js}
	if code := run(args, &out, &errb); code != 0 {
		t.Fatalf("eval: exit %d: %s", code, errb.String())
	}
	if s := out.String(); !strings.Contains(s, "AutoAttack (standard, Linf, ε = 1/255, n = 16)") || !strings.Contains(s, "fab-t (aa)") {
		t.Errorf("stdout lacks the AutoAttack line or fab-t:\n%s", s)
	}
	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		ModelSHA256 string `json:"model_sha256"`
		Attacks     []struct {
			Name     string  `json:"name"`
			Accuracy float64 `json:"accuracy"`
			Broke    *int    `json:"broke"`
			Queries  *int64  `json:"queries"`
			Seconds  *float64
		} `json:"attacks"`
		AutoAttack *struct {
			Version       string   `json:"version"`
			ThreatModel   string   `json:"threat_model"`
			N             int      `json:"n"`
			CleanAcc      *float64 `json:"clean_acc"`
			AutoAttackAcc *float64 `json:"autoattack_acc"`
			Attacks       []string `json:"attacks"`
		} `json:"autoattack"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	mb, err := os.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	if h := sha256.Sum256(mb); doc.ModelSHA256 != hex.EncodeToString(h[:]) {
		t.Errorf("model_sha256 %q, want %x", doc.ModelSHA256, h)
	}
	if len(doc.Attacks) != 4 || doc.Attacks[3].Name != "square" {
		t.Fatalf("attacks %+v", doc.Attacks)
	}
	for _, a := range doc.Attacks {
		if a.Broke == nil || a.Queries == nil || a.Seconds == nil {
			t.Errorf("%s lacks broke, queries or seconds: %s", a.Name, b)
		}
	}
	aa := doc.AutoAttack
	if aa == nil || aa.Version != "standard" || aa.ThreatModel != "Linf" || aa.N != 16 || aa.CleanAcc == nil || aa.AutoAttackAcc == nil || len(aa.Attacks) != 4 {
		t.Errorf("autoattack block %+v", aa)
	}

	errb.Reset()
	if code := run([]string{"eval", "--model", model, "--data", "synthetic:1x8x8", "--attacks", "autoattack-plus"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "not implemented") {
		t.Errorf("autoattack-plus: exit %d, stderr %q", code, errb.String())
	}
}
