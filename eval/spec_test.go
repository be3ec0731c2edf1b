package eval

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestParseAttacks(t *testing.T) {
	pgd := func(name, loss string, k, r int) AttackSpec {
		return AttackSpec{Name: name, Kind: KindPGD, Loss: loss, Steps: k, Restarts: r, Step: 0.25, RandomStart: true}
	}
	apgd := func(name, loss string, k int) AttackSpec {
		return AttackSpec{Name: name, Kind: KindAPGD, Loss: loss, Steps: k, Restarts: 1, Step: 2, RandomStart: true}
	}
	apgdT := AttackSpec{Name: "apgd-t", Kind: KindAPGDT, Loss: HeadDLRT, Steps: 100, Restarts: 1, Step: 2, RandomStart: true, Targets: 9}
	fgsm := AttackSpec{Name: "fgsm", Kind: KindFGSM, Loss: HeadCE, Steps: 1, Restarts: 1, Step: 1}
	fabT := func(k int) AttackSpec {
		s := AttackSpec{Name: "fab-t", Kind: KindFABT, Loss: HeadDiffT, Steps: k, Restarts: 1, Step: 1, Targets: 9, AlphaMax: 0.1, Eta: 1.05, Beta: 0.9}
		if k != 100 {
			s.Name = fmt.Sprintf("fab-t-%d", k)
		}
		return s
	}
	square := func(q int) AttackSpec {
		s := AttackSpec{Name: "square", Kind: KindSquare, Loss: HeadCE, Steps: q, Restarts: 1, Step: 1, RandomStart: true, PInit: 0.8}
		if q != 5000 {
			s.Name = fmt.Sprintf("square-%d", q)
		}
		return s
	}
	good := []struct {
		list string
		want []AttackSpec
	}{
		{"", nil},
		{"clean", nil},
		{"fgsm", []AttackSpec{fgsm}},
		{"fgsm-ce", []AttackSpec{fgsm}},
		{"FGSM-CW", []AttackSpec{{Name: "fgsm-cw", Kind: KindFGSM, Loss: HeadCW, Steps: 1, Restarts: 1, Step: 1}}},
		{"pgd-20", []AttackSpec{pgd("pgd-20", HeadCE, 20, 1)}},
		{"pgd-20-1", []AttackSpec{pgd("pgd-20", HeadCE, 20, 1)}},
		{"pgd-50-10", []AttackSpec{pgd("pgd-50-10", HeadCE, 50, 10)}},
		{"pgd-ce-50-10", []AttackSpec{pgd("pgd-50-10", HeadCE, 50, 10)}},
		{"pgd-cw-50", []AttackSpec{pgd("pgd-cw-50", HeadCW, 50, 1)}},
		{"pgd-dlr-7-3", []AttackSpec{pgd("pgd-dlr-7-3", HeadDLR, 7, 3)}},
		{"apgd-ce", []AttackSpec{apgd("apgd-ce", HeadCE, 100)}},
		{"apgd-ce-100", []AttackSpec{apgd("apgd-ce", HeadCE, 100)}},
		{"apgd-dlr-50", []AttackSpec{apgd("apgd-dlr-50", HeadDLR, 50)}},
		{"apgd-t", []AttackSpec{apgdT}},
		{"fab-t", []AttackSpec{fabT(100)}},
		{"FAB-T-50", []AttackSpec{fabT(50)}},
		{"square", []AttackSpec{square(5000)}},
		{"square-5000", []AttackSpec{square(5000)}},
		{"square-300", []AttackSpec{square(300)}},
		{" clean, fgsm ,pgd-50-10,pgd-cw-50,apgd-ce,apgd-t ", []AttackSpec{fgsm, pgd("pgd-50-10", HeadCE, 50, 10), pgd("pgd-cw-50", HeadCW, 50, 1), apgd("apgd-ce", HeadCE, 100), apgdT}},
	}
	for _, tc := range good {
		got, err := ParseAttacks(tc.list)
		if err != nil {
			t.Errorf("ParseAttacks(%q): %v", tc.list, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseAttacks(%q) =\n %+v\nwant\n %+v", tc.list, got, tc.want)
		}
		for _, s := range got {
			if err := s.Validate(); err != nil {
				t.Errorf("%s: %v", s.Name, err)
			}
			// The canonical name parses to the same spec.
			again, err := ParseAttacks(s.Name)
			if err != nil || len(again) != 1 || again[0] != s {
				t.Errorf("canonical name %q parses to %+v, %v", s.Name, again, err)
			}
		}
	}
	specs, err := ParseAttacks(StandardAttacks)
	if err != nil || len(specs) != 5 {
		t.Fatalf("StandardAttacks: %v, %v", specs, err)
	}

	bad := []struct{ list, want string }{
		{"pgd", "unknown attack \"pgd\""},
		{"pgd-0", "unknown attack"},
		{"pgd-050", "unknown attack"},
		{"pgd--5", "unknown attack"},
		{"pgd-5-0", "unknown attack"},
		{"pgd-5-2-1", "unknown attack"},
		{"pgd-dlr-t-5", "unknown attack"},
		{"pgd-+5", "unknown attack"},
		{"pgdd-50", "unknown attack"},
		{"fgsm-5", "unknown attack"},
		{"fgsm-dlr-t", "unknown attack"},
		{"apgd", "unknown attack"},
		{"apgd-t-0", "unknown attack"},
		{"apgd-xent", "unknown attack"},
		{"squares", "unknown attack \"squares\""},
		{"square-0", "unknown attack"},
		{"square-t", "unknown attack"},
		{"fab", "unknown attack"},
		{"fab-ce", "unknown attack"},
		{"fab-t-0", "unknown attack"},
		{"autoattack-plus", "plus version is not implemented"},
		{"autoattack-rand", "rand version is not implemented"},
		{"autoattack-fast", "unknown AutoAttack version"},
		{"autoattack,square", "listed twice"},
		{"fgsm,,pgd-5", "empty name"},
		{"pgd-20,pgd-20-1", "listed twice"},
		{"fgsm,fgsm-ce", "listed twice"},
	}
	for _, tc := range bad {
		_, err := ParseAttacks(tc.list)
		if err == nil {
			t.Errorf("ParseAttacks(%q) succeeded", tc.list)
			continue
		}
		if !errors.Is(err, ErrAttack) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseAttacks(%q): %v; want ErrAttack mentioning %q", tc.list, err, tc.want)
		}
		if !strings.Contains(tc.want, "twice") && !strings.Contains(tc.want, "version") && !strings.Contains(err.Error(), "accepted forms: clean, fgsm[-LOSS], pgd-K[-R]") {
			t.Errorf("ParseAttacks(%q): %v does not list the accepted forms", tc.list, err)
		}
	}
}

// TestParseAutoAttack: "autoattack" is AutoAttack's standard cascade, in
// its order and with its settings, each attack marked as part of it.
func TestParseAutoAttack(t *testing.T) {
	for _, list := range []string{"autoattack", "AutoAttack-Standard", " autoattack "} {
		got, err := ParseAttacks(list)
		if err != nil {
			t.Fatalf("ParseAttacks(%q): %v", list, err)
		}
		want := mustParse(t, AutoAttackNames)
		for i := range want {
			want[i].AutoAttack = AAStandard
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("ParseAttacks(%q) = %+v, want %+v", list, got, want)
		}
		var names []string
		for _, s := range got {
			names = append(names, s.Name)
			if err := s.Validate(); err != nil {
				t.Error(err)
			}
		}
		if strings.Join(names, ",") != "apgd-ce,apgd-t,fab-t,square" {
			t.Errorf("order %v", names)
		}
		if got[1].Targets != 9 || got[2].Targets != 9 || got[2].Steps != 100 || got[3].Steps != 5000 || got[3].PInit != 0.8 || got[0].Restarts != 1 {
			t.Errorf("settings differ from AutoAttack's standard version: %+v", got)
		}
	}
	specs := mustParse(t, "fgsm,autoattack")
	if len(specs) != 5 || specs[0].AutoAttack != "" || specs[4].AutoAttack != AAStandard {
		t.Errorf("fgsm,autoattack: %+v", specs)
	}
}

func TestValidate(t *testing.T) {
	ok := AttackSpec{Name: "x", Kind: KindPGD, Loss: HeadCE, Steps: 3, Restarts: 1, Step: 0.25}
	cases := []struct {
		edit func(*AttackSpec)
		want string
	}{
		{func(s *AttackSpec) {}, ""},
		{func(s *AttackSpec) { s.Name = "" }, "no name"},
		{func(s *AttackSpec) { s.Kind = "cw" }, "unknown kind"},
		{func(s *AttackSpec) { s.Loss = HeadDLRT }, "loss \"dlr-t\""},
		{func(s *AttackSpec) { s.Kind = KindAPGDT; s.Targets = 9 }, "dlr-t loss"},
		{func(s *AttackSpec) { s.Kind, s.Loss = KindAPGDT, HeadDLRT }, "Targets"},
		{func(s *AttackSpec) { s.Restarts = 0 }, "restarts 0"},
		{func(s *AttackSpec) { s.Step = 0 }, "step 0"},
		{func(s *AttackSpec) { s.Kind = KindFGSM }, "FGSM is one step"},
		{func(s *AttackSpec) { s.Kind, s.Targets = KindFABT, 9 }, "diff-t head"},
		{func(s *AttackSpec) { s.Kind, s.Loss, s.Eta, s.Beta = KindFABT, HeadDiffT, 1.05, 0.9 }, "Targets"},
		{func(s *AttackSpec) { s.Kind, s.Loss, s.Targets, s.Eta, s.Beta = KindFABT, HeadDiffT, 9, 1.05, 0 }, "β in (0,1]"},
		{func(s *AttackSpec) { s.Kind, s.Loss, s.Targets, s.Eta, s.Beta = KindFABT, HeadDiffT, 9, 1.05, 0.9 }, ""},
		{func(s *AttackSpec) { s.Kind, s.Loss = KindSquare, HeadCW }, "logits of the ce graph"},
		{func(s *AttackSpec) { s.Kind = KindSquare }, "p_init"},
		{func(s *AttackSpec) { s.Kind, s.PInit = KindSquare, 0.8 }, ""},
		{func(s *AttackSpec) { s.AutoAttack = AAPlus }, "not implemented"},
	}
	for _, tc := range cases {
		s := ok
		tc.edit(&s)
		err := s.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", s, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: err = %v, want it to mention %q", s, err, tc.want)
		}
	}
}

// TestAPGDSchedule checks the checkpoints against the paper's recursion
// p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06) and
// AutoAttack's integer version of it.
func TestAPGDSchedule(t *testing.T) {
	checkpoints := func(n int) []int {
		first, decr, least := apgdSchedule(n)
		var w []int
		for at, k := first, first; at <= n; at, k = at+max(k-decr, least), max(k-decr, least) {
			w = append(w, at)
		}
		return w
	}
	if got, want := checkpoints(100), []int{22, 41, 57, 70, 80, 87, 93, 99}; !reflect.DeepEqual(got, want) {
		t.Errorf("checkpoints(100) = %v, want %v", got, want)
	}
	// The paper's recursion, in hundredths to stay exact.
	var paper []int
	for p0, p1 := 0, 22; p1 <= 100; p0, p1 = p1, p1+max(p1-p0-3, 6) {
		paper = append(paper, p1)
	}
	if got := checkpoints(100); !reflect.DeepEqual(got, paper) {
		t.Errorf("checkpoints(100) = %v, the paper's p_j·100 = %v", got, paper)
	}
	if got, want := checkpoints(10), []int{2, 3, 4, 5, 6, 7, 8, 9, 10}; !reflect.DeepEqual(got, want) {
		t.Errorf("checkpoints(10) = %v, want %v", got, want)
	}
	if first, _, _ := apgdSchedule(1); first != 1 {
		t.Errorf("one iteration: first checkpoint %d", first)
	}
}

func TestAPGDHalve(t *testing.T) {
	cases := []struct {
		succ, interval int
		halvedBefore   bool
		bestBefore     float32
		best           float32
		want           bool
	}{
		{16, 22, true, 1, 2, true},   // 16 ≤ 0.75·22 = 16.5: oscillating
		{17, 22, true, 1, 2, false},  // climbing and improving
		{17, 22, true, 2, 2, false},  // no improvement, but halved last time
		{17, 22, false, 2, 2, true},  // no improvement and not halved last time
		{17, 22, false, 2, 1, true},  // best below the last check counts as no improvement
		{17, 22, false, 1, 2, false}, // improved
		{6, 6, false, 1, 2, false},   // every step climbed
		{4, 6, false, 1, 2, true},    // 4 ≤ 4.5
		{0, 1, true, 0, 0, true},
	}
	for _, c := range cases {
		if got := apgdHalve(c.succ, c.interval, c.halvedBefore, c.bestBefore, c.best); got != c.want {
			t.Errorf("apgdHalve(%d of %d, halved before %v, best %v → %v) = %v, want %v",
				c.succ, c.interval, c.halvedBefore, c.bestBefore, c.best, got, c.want)
		}
	}
}

func TestStreamsAreIndependent(t *testing.T) {
	seen := map[uint64]string{}
	for seed := range uint64(3) {
		for _, name := range []string{"pgd-20", "pgd-50-10"} {
			for sample := range 50 {
				for round := range 10 {
					r := stream(seed, attackID(name), sample, round)
					v := r.next()
					key := strings.Join([]string{name}, "")
					if prev, ok := seen[v]; ok {
						t.Fatalf("streams %s and %v/%s/%d/%d start alike", prev, seed, key, sample, round)
					}
					seen[v] = key
				}
			}
		}
	}
	r := stream(1, 2, 3, 4)
	lo, hi := float32(1), float32(-1)
	for range 100000 {
		v := r.sym()
		if v < -1 || v >= 1 {
			t.Fatalf("sym() = %v outside [−1, 1)", v)
		}
		lo, hi = min(lo, v), max(hi, v)
	}
	if lo > -0.999 || hi < 0.999 {
		t.Fatalf("sym() covers only [%v, %v]", lo, hi)
	}
}

func TestHeads(t *testing.T) {
	cases := []struct {
		attacks []AttackSpec
		want    []string
	}{
		{nil, []string{HeadCE}},
		{[]AttackSpec{{Loss: HeadCE}, {Loss: HeadCE}}, []string{HeadCE}},
		{[]AttackSpec{{Loss: HeadCW}, {Loss: HeadCE}, {Loss: HeadDLRT}, {Loss: HeadCW}}, []string{HeadCE, HeadCW, HeadDLRT}},
	}
	for _, c := range cases {
		if got := Heads(c.attacks); !slices.Equal(got, c.want) {
			t.Errorf("Heads(%v) = %v, want %v", c.attacks, got, c.want)
		}
	}
}
