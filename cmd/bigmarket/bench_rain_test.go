package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/bigmarket/bigmarket/bench"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/rain"
)

func TestParseWeights(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want []int
		bad  bool
	}{
		{in: "", want: nil},
		{in: " ", want: nil},
		{in: "1,2,3", want: []int{1, 2, 3}},
		{in: " 0, 5 ", want: []int{0, 5}},
		{in: "1,,2", bad: true},
		{in: "1,-2", bad: true},
		{in: "a", bad: true},
	} {
		got, err := parseWeights(c.in)
		if (err != nil) != c.bad || !slices.Equal(got, c.want) {
			t.Errorf("parseWeights(%q) = %v, %v; want %v (error %t)", c.in, got, err, c.want, c.bad)
		}
	}
}

// TestBenchRainFlags checks that bad flags are refused before anything is opened or sent.
func TestBenchRainFlags(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-weights", "1,x"}, "-weights"},
		{[]string{"-amount", "abc"}, "-amount"},
		{[]string{"-max", "1.234"}, "-max"},
		{[]string{"-budget", "-"}, "-budget"},
		{[]string{"extra"}, "unexpected argument"},
	} {
		var stdout, stderr bytes.Buffer
		err := benchCmd(context.Background(), append([]string{"rain"}, c.args...), &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("bench rain %v: %v, want an error naming %s", c.args, err, c.want)
		}
	}
}

// TestBenchRain runs "bigmarket bench rain" with -verify against a serve on the real
// backends: a 5-second session of 300 prizes tapped by 2,000 users from 16 clients, the
// bench waiting for the win consumer before it checks the rows. The run must pass its
// verification, every tap must be answered, the wins must not exceed the prizes, and the
// last tenth of the session must still win.
func TestBenchRain(t *testing.T) {
	const prizes = 300
	d := newDeployment(t, "")
	_, base := d.start(t)
	out := filepath.Join(t.TempDir(), "rain.json")
	cmd := exec.Command(d.bin, "bench", "rain", "-url", base, "-admin-token", d.adminToken, "-users", "2000",
		"-prizes", strconv.Itoa(prizes), "-d", "5s", "-c", "16", "-prefix", "br"+d.prefix[len(d.prefix)-6:],
		"-verify", "-win-wait", "1m", "-out", out)
	cmd.Env = append(os.Environ(), d.env...)
	stdout, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bench rain: %v\n%s", err, stdout)
	}
	t.Logf("bench rain:\n%s", stdout)
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep bench.RainReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("summary %s: %v", raw, err)
	}
	if rep.Scenario != "rain" || rep.SessionID <= 0 || rep.Prizes != prizes || rep.Users != 2000 {
		t.Errorf("report header: scenario %q session %d prizes %d users %d", rep.Scenario, rep.SessionID, rep.Prizes, rep.Users)
	}
	s := rep.Summary
	if s.Requests <= 0 || rep.TapsPerSecond <= 0 || s.TransportErrors != 0 || rep.Unanswered != 0 || rep.Retry != 0 || rep.Other != 0 {
		t.Errorf("%d taps at %.1f/s: %d transport errors, %d unanswered, %d 0009, %d other (codes %v); want every tap answered",
			s.Requests, rep.TapsPerSecond, s.TransportErrors, rep.Unanswered, rep.Retry, rep.Other, s.Codes)
	}
	if rep.Won <= 0 || rep.Won > prizes || rep.WonKinds[rain.KindCash] != int(rep.Won) || rep.WonCash != money.Cents(rep.Won)*100 {
		t.Errorf("%d wins (%v, %s cash); want 1 to %d cash wins of 1.00", rep.Won, rep.WonKinds, rep.WonCash, prizes)
	}
	if rep.Won+rep.Missed+rep.NotStarted+rep.Ended+rep.Capped != s.Requests {
		t.Errorf("answers %d won + %d missed + %d 001 + %d 002 + %d 003 ≠ %d taps", rep.Won, rep.Missed, rep.NotStarted,
			rep.Ended, rep.Capped, s.Requests)
	}
	if rep.LastTenth <= 0 || rep.ServerLastTenth <= 0 {
		t.Errorf("last tenth of the session: %d wins answered, %d granted by the report; want some", rep.LastTenth, rep.ServerLastTenth)
	}
	if rep.Server == nil || rep.Server.Granted != int(rep.Won) {
		t.Errorf("server report %+v; want %d granted", rep.Server, rep.Won)
	}
	v := rep.Verification
	if v == nil {
		t.Fatal("no verification in the report")
	}
	if !v.Pass || v.Recorded != int(rep.Won) || len(v.Discrepancies) != 0 || len(v.Checks) == 0 {
		t.Errorf("verification: pass %t, %d of %d wins recorded, discrepancies %v, checks %+v", v.Pass, v.Recorded, rep.Won,
			v.Discrepancies, v.Checks)
	}
	for _, want := range []string{"waiting for the win consumer", "verification PASS"} {
		if !strings.Contains(string(stdout), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
