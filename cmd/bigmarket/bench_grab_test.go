package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/app"
	"github.com/bigmarket/bigmarket/bench"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/reconcile"
	"github.com/bigmarket/bigmarket/sqlstore"
)

// TestBenchGrab runs serve in-process on its embedded defaults, then the grab bench
// against it: 300 grabs at two packets of 50 items, through runGrabBench directly and
// through the command's flags with a JSON summary. Each run grants exactly the 100 items,
// their amounts sum to the packets' totals, and the verification passes.
func TestBenchGrab(t *testing.T) {
	cfg, base, _ := startEmbedded(t, func(c *app.Config) { c.LogLevel = "warn" })

	var direct bench.GrabReport
	t.Run("direct", func(t *testing.T) {
		var out bytes.Buffer
		rep, err := bench.RunGrab(context.Background(), bench.GrabOptions{
			Base: base, AdminToken: cfg.AdminToken, Packets: 2, Items: 50, Amount: 100_00, Users: 100000, Prefix: "gt1",
			Concurrency: 8, Requests: 300, Duration: time.Minute, Verify: true, CreditWait: time.Minute,
		}, benchTestStores(t, cfg), &out)
		if err != nil {
			t.Fatalf("grab bench: %v\n%s", err, out.String())
		}
		checkGrabReport(t, rep, 100_00, 300)
		direct = rep
		for _, want := range []string{"granted 100 grabs of 100 items in 2 packets (200.00 of 200.00 yuan); 200 empty (ERR_RP_001)",
			"PASS credits: 100 of 100 grabbed items credited", "PASS red packets: 0 discrepancies in 2 of 2 packets, 100 items", "verification PASS"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("output lacks %q:\n%s", want, out.String())
			}
		}
	})

	t.Run("command", func(t *testing.T) {
		stdout, raw := runBenchCommand(t, cfg, "grab", "-url", base, "-admin-token", cfg.AdminToken, "-packets", "2",
			"-items", "50", "-amount", "1000.00", "-prefix", "gt2", "-c", "8", "-n", "300")
		var rep bench.GrabReport
		if err := json.Unmarshal(raw, &rep); err != nil {
			t.Fatalf("summary %s: %v", raw, err)
		}
		checkGrabReport(t, rep, 1000_00, 300)
		if !strings.Contains(stdout, "verification PASS") {
			t.Errorf("stdout lacks the verdict:\n%s", stdout)
		}
	})

	// Last, as it breaks the data: a lost credit and a changed item must fail.
	t.Run("detects tampering", func(t *testing.T) {
		if direct.Verification == nil {
			t.Skip("the direct run failed")
		}
		ctx := context.Background()
		db := benchTestStores(t, cfg)
		v, err := bench.NewGrabVerifier(db)
		if err != nil {
			t.Fatal(err)
		}
		packet := direct.Send.PacketIDs[0]
		_, items, err := sqlstore.NewUserStore(db.Users, db.Router).RedPacket(ctx, packet)
		if err != nil || len(items) != 50 || items[0].UserID == "" {
			t.Fatalf("items of %s: %d %v", packet, len(items), err)
		}
		victim := items[0].UserID
		r := db.Router.Route(victim)
		if _, err := db.Users[r.DB].SQL.ExecContext(ctx, "DELETE FROM user_credit_order"+r.Suffix+" WHERE out_business_no = ?",
			packet+"_"+victim); err != nil {
			t.Fatal(err)
		}
		o := bench.GrabOptions{Items: 50, Amount: 100_00, Packets: 2, CreditWait: 300 * time.Millisecond}
		ver, err := v.Verify(ctx, o, direct, time.Now().Add(-time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		failed := map[string]bool{}
		for _, c := range ver.Checks {
			if !c.Pass {
				failed[c.Name] = true
			}
		}
		if ver.Pass || len(failed) != 2 || !failed["credits"] || !failed["red packets"] ||
			len(ver.Discrepancies) != 1 || !strings.HasPrefix(ver.Discrepancies[0], reconcile.KindRedPacketGrabUncredited+" user="+victim+" ") {
			t.Errorf("after deleting a grab's credit, failed checks %v and discrepancies %v; want credits and red packets, one %s",
				failed, ver.Discrepancies, reconcile.KindRedPacketGrabUncredited)
		}
	})

	t.Run("refuses bad options", func(t *testing.T) {
		for name, change := range map[string]func(*bench.GrabOptions){
			"a long prefix":      func(o *bench.GrabOptions) { o.Prefix = strings.Repeat("p", 31) },
			"items below a cent": func(o *bench.GrabOptions) { o.Items, o.Amount = 100, 99 },
			"no end":             func(o *bench.GrabOptions) { o.Requests = 0 },
			"no concurrency":     func(o *bench.GrabOptions) { o.Concurrency = 0 },
		} {
			o := bench.GrabOptions{Base: base, AdminToken: cfg.AdminToken, Packets: 1, Items: 1, Amount: 1, Users: 100, Prefix: "gt3",
				Concurrency: 1, Requests: 1}
			change(&o)
			if _, err := bench.RunGrab(context.Background(), o, bench.Stores{}, &bytes.Buffer{}); err == nil || !strings.HasPrefix(err.Error(), "bench grab: ") {
				t.Errorf("%s: %v", name, err)
			}
		}
	})
}

// checkGrabReport checks a passing report of a run of requests measured grabs at two
// packets of 50 items and amount each: every item granted once, the rest refused as empty,
// the amounts summing to the totals, every check passed.
func checkGrabReport(t *testing.T, rep bench.GrabReport, amount money.Cents, requests int64) {
	t.Helper()
	if rep.Scenario != "grab" || len(rep.Send.PacketIDs) != 2 || rep.Packets != 2 || rep.Items != 50 || rep.Amount != amount {
		t.Errorf("report header: %+v", rep)
	}
	s := rep.Summary
	if s.Requests != requests || s.Codes["0000"] != 100 || s.Codes["ERR_RP_001"] != requests-100 || len(s.Codes) != 2 {
		t.Errorf("measured %d grabs with codes %v; want exactly 100 granted, the rest ERR_RP_001", s.Requests, s.Codes)
	}
	if rep.Grabs != 100 || rep.Empty != requests-100 || rep.Repeats != 0 || rep.UnknownOutcomes != 0 || rep.Granted != 2*amount {
		t.Errorf("grabs %d empty %d repeats %d unknown %d granted %s; want 100 grabs of %s", rep.Grabs, rep.Empty, rep.Repeats,
			rep.UnknownOutcomes, rep.Granted, 2*amount)
	}
	for _, p := range rep.PerPacket {
		if p.Grabs != 50 || p.Amount != amount {
			t.Errorf("packet %s: %d grabs of %s, want 50 of %s", p.PacketID, p.Grabs, p.Amount, amount)
		}
	}
	if rep.AnsweredPerSecond <= 0 || rep.GrantedPerSecond <= 0 || rep.GrantSeconds <= 0 || rep.GrantSeconds > s.Duration {
		t.Errorf("rates: answered %.1f/s, granted %.1f/s over %.3fs of %.3fs", rep.AnsweredPerSecond, rep.GrantedPerSecond,
			rep.GrantSeconds, s.Duration)
	}
	v := rep.Verification
	if v == nil {
		t.Fatal("no verification in the report")
	}
	if !v.Pass || v.Grabbed != 100 || v.Credited != 100 || len(v.Discrepancies) != 0 {
		t.Errorf("verification: %+v", v)
	}
}
