package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/app"
	"github.com/bigmarket/bigmarket/bench"
	"github.com/bigmarket/bigmarket/sqlstore"
)

// TestBenchDraw runs serve in-process on its embedded defaults, then the draw bench
// against it twice: through runDrawBench directly, and through the command's flags with a
// warmup and a JSON summary. Both verifications must pass with the counts matching.
func TestBenchDraw(t *testing.T) {
	cfg, base, _ := startEmbedded(t, func(c *app.Config) { c.LogLevel = "warn" })

	var direct bench.DrawReport
	t.Run("direct", func(t *testing.T) {
		var out bytes.Buffer
		rep, err := bench.RunDraw(context.Background(), bench.DrawOptions{
			Base: base, AdminToken: cfg.AdminToken, ActivityID: 100301, SKU: 9011, Users: 20, Prefix: "bt1",
			ProvisionConcurrency: 4, Concurrency: 8, Requests: 200, Duration: time.Minute, Verify: true,
			// The draw writer writes the records behind the answers.
			AwaitRecords: true,
		}, benchTestStores(t, cfg), &out)
		if err != nil {
			t.Fatalf("draw bench: %v\n%s", err, out.String())
		}
		checkDrawReport(t, rep, 20, 200)
		direct = rep
		if rep.Warmup != nil || rep.Draws != rep.Summary.Codes["0000"] {
			t.Errorf("without warmup the draws %d must be the measured successes %v", rep.Draws, rep.Summary.Codes)
		}
		if !strings.Contains(out.String(), "PASS award records: ") || !strings.Contains(out.String(), "verification PASS") {
			t.Errorf("output lacks the PASS lines:\n%s", out.String())
		}
	})

	t.Run("command", func(t *testing.T) {
		stdout, raw := runBenchCommand(t, cfg, "draw", "-url", base, "-admin-token", cfg.AdminToken, "-users", "20",
			"-prefix", "bt2", "-c", "8", "-n", "100", "-warmup", "300ms", "-provision-c", "4")
		var rep bench.DrawReport
		if err := json.Unmarshal(raw, &rep); err != nil {
			t.Fatalf("summary %s: %v", raw, err)
		}
		checkDrawReport(t, rep, 20, 100)
		if rep.Warmup == nil || rep.Warmup.Requests == 0 {
			t.Fatalf("summary has no warmup run: %s", raw)
		}
		if want := rep.Warmup.Codes["0000"] + rep.Summary.Codes["0000"]; rep.Draws != want {
			t.Errorf("draws %d, want warmup + measured successes %d", rep.Draws, want)
		}
		if !strings.Contains(stdout, "verification PASS") {
			t.Errorf("stdout lacks the verdict:\n%s", stdout)
		}
	})

	// The direct run's records, checked against other tallies of answers: a record beyond
	// the successes fails unless a 0009 (or a draw without an answer) covers it, and a
	// success needs its record whatever else is unknown.
	t.Run("classifies outcomes", func(t *testing.T) {
		if direct.Verification == nil {
			t.Skip("the direct run failed")
		}
		ctx := context.Background()
		db := benchTestStores(t, cfg)
		v, err := bench.OpenDrawVerifier(ctx, db, 100301)
		if err != nil {
			t.Fatal(err)
		}
		users := make([]string, 20)
		for i := range users {
			users[i] = "bt1_" + strconv.Itoa(i)
		}
		busy := &bench.Summary{Codes: map[string]int64{"0000": direct.Draws - 1, "0006": 7, "0009": 1}}
		answered := &bench.Summary{Codes: map[string]int64{"0000": direct.Draws - 1, "0006": 8}}
		for _, tc := range []struct {
			name string
			run  *bench.Summary
			pass bool
		}{
			{"one record beyond the successes, a 0009 covering it", busy, true},
			{"one record beyond the successes and the 0006s, nothing unknown", answered, false},
			{"a success without its record, however many are unknown", &bench.Summary{Codes: map[string]int64{"0000": direct.Draws + 1, "0009": 5}, TransportErrors: 2}, false},
		} {
			draws, timedOut, unknown := bench.DrawOutcomes(nil, tc.run)
			if timedOut != tc.run.Codes["0006"] || unknown != tc.run.Codes["0009"]+tc.run.TransportErrors {
				t.Fatalf("%s: classified as %d timed out, %d unknown", tc.name, timedOut, unknown)
			}
			ver, err := v.Verify(ctx, users, direct.Verification.Before, draws, unknown)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range ver.Checks {
				if c.Name == "award records" && c.Pass != tc.pass {
					t.Errorf("%s: award records check %v (%s), want pass %v", tc.name, c.Pass, c.Detail, tc.pass)
				}
			}
			if ver.Pass != tc.pass {
				t.Errorf("%s: verification pass %v, want %v: %+v", tc.name, ver.Pass, tc.pass, ver.Checks)
			}
		}
	})

	// Last, as it breaks the data: a lost award record and a negative surplus must fail.
	t.Run("detects tampering", func(t *testing.T) {
		if direct.Verification == nil {
			t.Skip("the direct run failed")
		}
		ctx := context.Background()
		db := benchTestStores(t, cfg)
		v, err := bench.OpenDrawVerifier(ctx, db, 100301)
		if err != nil {
			t.Fatal(err)
		}
		users := make([]string, 20)
		for i := range users {
			users[i] = "bt1_" + strconv.Itoa(i)
		}
		victim := users[0]
		recs, err := sqlstore.NewUserStore(db.Users, db.Router).AwardRecords(ctx, victim, 100301)
		if err != nil || len(recs) == 0 {
			t.Fatalf("records of %s: %d %v", victim, len(recs), err)
		}
		sh, err := sqlstore.NewRouter(cfg.DBCount, cfg.TBCount)
		if err != nil {
			t.Fatal(err)
		}
		r := sh.Route(victim)
		udb := db.Users[r.DB].SQL
		if _, err := udb.ExecContext(ctx, "DELETE FROM user_award_record"+r.Suffix+" WHERE order_id = ?", recs[0].OrderID); err != nil {
			t.Fatal(err)
		}
		if _, err := udb.ExecContext(ctx, "UPDATE raffle_activity_account_day SET day_count_surplus = -1 WHERE user_id = ?", victim); err != nil {
			t.Fatal(err)
		}
		ver, err := v.Verify(ctx, users, direct.Verification.Before, direct.Draws, 0)
		if err != nil {
			t.Fatal(err)
		}
		failed := map[string]bool{}
		for _, c := range ver.Checks {
			if !c.Pass {
				failed[c.Name] = true
			}
		}
		if ver.Pass || len(failed) != 4 || !failed["award records"] || !failed["tasks"] || !failed["raffle orders"] || !failed["surplus raffle_activity_account_day.day_count_surplus"] {
			t.Errorf("after deleting a record and a negative day surplus, failed checks %v; want exactly award records, tasks, raffle orders, day surplus", failed)
		}
	})

	t.Run("refuses a long prefix", func(t *testing.T) {
		_, err := bench.RunDraw(context.Background(), bench.DrawOptions{
			Base: base, AdminToken: cfg.AdminToken, ActivityID: 100301, SKU: 9011, Users: 20,
			Prefix: strings.Repeat("p", 31), ProvisionConcurrency: 1, Concurrency: 1, Requests: 1,
		}, bench.Stores{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "32 bytes") {
			t.Errorf("a 34-byte user id: %v", err)
		}
	})
}

// checkDrawReport checks a passing report of a run with users users and requests
// measured draws: every check passed and the counts agree with each other.
func checkDrawReport(t *testing.T, rep bench.DrawReport, users int, requests int64) {
	t.Helper()
	// The users are provisioned in requests of up to 1,000.
	if rep.Scenario != "draw" || rep.StrategyID != 100006 || rep.Provision.Users != users || rep.Provision.Codes["0000"] != int64((users+999)/1000) {
		t.Errorf("report header: %+v", rep)
	}
	if rep.Summary.Requests != requests {
		t.Errorf("measured %d draws, want %d", rep.Summary.Requests, requests)
	}
	if rep.Summary.Codes["0000"] == 0 {
		t.Errorf("no successful draw: codes %v", rep.Summary.Codes)
	}
	for code := range rep.Summary.Codes {
		// A user's draws may overlap (more workers than a user's turn): the claim refuses
		// the second one. Anything else is a failure of the server.
		if code != "0000" && code != "ERR_BIZ_009" {
			t.Errorf("unexpected draw code %s: %v", code, rep.Summary.Codes)
		}
	}
	v := rep.Verification
	if v == nil {
		t.Fatal("no verification in the report")
	}
	if !v.Pass {
		t.Errorf("verification failed: %+v", v.Checks)
	}
	if rep.UnknownOutcomes != 0 {
		t.Errorf("%d draws got no answer", rep.UnknownOutcomes)
	}
	records := v.After.Records - v.Before.Records
	if records != rep.Draws || v.After.Tasks-v.Before.Tasks != records || v.After.UsedOrders-v.Before.UsedOrders != records {
		t.Errorf("draws %d, before %+v, after %+v", rep.Draws, v.Before, v.After)
	}
	var stocked, total int64
	for _, a := range v.Awards {
		if a.Stocked > a.Stock {
			t.Errorf("award %+v granted beyond its stock", a)
		}
		stocked += a.Stocked
		total += a.Records
	}
	if total < records || stocked == 0 {
		t.Errorf("award grants %+v do not cover the run's %d records", v.Awards, records)
	}
}

// runBenchCommand runs "bigmarket bench <args> -out <file>" against the embedded stack of
// cfg (its config from the environment, kept off any real backends) and returns stdout
// and the JSON summary.
func runBenchCommand(t *testing.T, cfg app.Config, args ...string) (string, []byte) {
	t.Helper()
	for _, k := range []string{"BIGMARKET_CONFIG", "BIGMARKET_CONFIG_DSN", "BIGMARKET_USER_DSNS", "BIGMARKET_ADMIN_TOKEN"} {
		t.Setenv(k, "")
	}
	t.Setenv("BIGMARKET_SHARDS", cfg.Shards)
	file := filepath.Join(t.TempDir(), "summary.json")
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), append(append([]string{"bench"}, args...), "-data", cfg.DataDir, "-out", file), &stdout, &stderr); err != nil {
		t.Fatalf("bench %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, stdout.String(), stderr.String())
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), raw
}

// benchTestStores opens cfg's SQL databases for a bench to verify on, closed with the test.
func benchTestStores(t *testing.T, cfg app.Config) bench.Stores {
	t.Helper()
	db, closeDB, err := benchStores(context.Background(), cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeDB)
	return db
}
