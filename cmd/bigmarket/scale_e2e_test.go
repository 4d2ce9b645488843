package main

import (
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bigmarket/bigmarket/bench"
)

// TestBenchDrawPerUserTwoProcesses runs "bigmarket bench draw -draws-per-user" (the home
// of issue 14's 10,000 users × 20 draws across two serve processes) at a small scale
// against two flash serve processes: every user draws exactly its draws, alternating
// between the two, and the bench's verification passes with every check of the mode
// present — each user's quota lost exactly its answered draws, one record per unit, each
// answered award recorded — next to the flash draw's own (draw events written, hot quota
// = SQL quota, records ≤ stock).
func TestBenchDrawPerUserTwoProcesses(t *testing.T) {
	const users, draws = 300, 5
	d := newDeployment(t, "")
	_, a := d.start(t, flashEnv)
	_, b := d.start(t, flashEnv)
	out := filepath.Join(t.TempDir(), "draw.json")
	cmd := exec.Command(d.bin, "bench", "draw", "-url", a+","+b, "-admin-token", d.adminToken,
		"-users", "300", "-draws-per-user", "5", "-c", "32", "-provision-c", "2",
		"-prefix", "pu"+d.prefix[len(d.prefix)-6:], "-out", out, "-q")
	cmd.Env = append(append(os.Environ(), d.env...), flashEnv)
	stdout, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bench draw: %v\n%s", err, stdout)
	}
	t.Logf("bench draw:\n%s", stdout)
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep bench.DrawReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("summary %s: %v", raw, err)
	}
	if rep.DrawsPerUser != draws || !slices.Equal(rep.URLs, []string{a, b}) || rep.Warmup != nil {
		t.Errorf("report of %d draws per user on %v (warmup %v); want %d on %s and %s, no warmup", rep.DrawsPerUser, rep.URLs, rep.Warmup, draws, a, b)
	}
	// SKU 9011 gives each user 150 draws; with nothing broken every draw is answered 0000.
	if rep.Summary.Requests != users*draws || rep.Draws != users*draws || rep.UnknownOutcomes != 0 {
		t.Errorf("%d draws sent, %d answered 0000, %d unknown; want %d each sent and answered (codes %v)",
			rep.Summary.Requests, rep.Draws, rep.UnknownOutcomes, users*draws, rep.Summary.Codes)
	}
	if rep.Verification == nil || !rep.Verification.Pass {
		t.Fatalf("verification: %+v", rep.Verification)
	}
	passed := map[string]string{}
	for _, c := range rep.Verification.Checks {
		passed[c.Name] = c.Detail
	}
	for _, name := range []string{"quota per user", "records per user", "answered draws recorded", "award records",
		"draw events written", "hot quota = SQL quota", "records <= stock"} {
		if _, ok := passed[name]; !ok {
			t.Errorf("verification lacks the check %q: %v", name, slices.Sorted(maps.Keys(passed)))
		}
	}
	if want := "300 users took 1500 units for 1500 draws answered 0000 and 0 unknown"; !strings.HasPrefix(passed["quota per user"], want) {
		t.Errorf("quota per user: %q, want %q", passed["quota per user"], want)
	}
}
