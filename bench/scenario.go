package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/reconcile"
	"github.com/bigmarket/bigmarket/sqlstore"
)

// Stores are the server's SQL databases, opened by the caller from the same config as the
// server's (and closed by it), on which a scenario verifies its run.
type Stores struct {
	Config   *sqlstore.DB
	Users    []*sqlstore.DB
	Router   sqlstore.Router
	Location *time.Location // the server's time zone, for the activity's dates
}

// verifyWorkers bounds the concurrent per-user queries of a verification.
const verifyWorkers = 16

// WriteReport writes a scenario's report as indented JSON to path.
func WriteReport(path string, rep any) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	enc := json.NewEncoder(f)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		f.Close()
		return fmt.Errorf("write summary: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}

// runWithCountedWarmup runs the warmup as a run of its own rather than Run's unrecorded
// warmup, because its requests change state the verification counts, then the measured
// run; requests are numbered across both, so body(seq) never repeats one.
// auth, when not nil, is request seq's Authorization header, numbered as body's.
func runWithCountedWarmup(ctx context.Context, opts Options, warmup time.Duration, body func(seq uint64) []byte, auth func(seq uint64) string, progress io.Writer) (*Summary, Summary, error) {
	var (
		warm   *Summary
		offset uint64
	)
	if warmup > 0 {
		wo := opts
		wo.Duration, wo.Requests, wo.Progress = warmup, 0, nil
		wo.Body = func(_ int, seq uint64) []byte { return body(seq) }
		if auth != nil {
			wo.Auth = func(_ int, seq uint64) string { return auth(seq) }
		}
		fmt.Fprintf(progress, "warming up for %s\n", warmup)
		w, err := Run(ctx, wo)
		warm = &w
		if err != nil {
			return warm, Summary{}, err
		}
		offset = uint64(w.Requests)
	}
	opts.Body = func(_ int, seq uint64) []byte { return body(seq + offset) }
	if auth != nil {
		opts.Auth = func(_ int, seq uint64) string { return auth(seq + offset) }
	}
	sum, err := Run(ctx, opts)
	return warm, sum, err
}

// printChecks prints a verification's checks and verdict and reports whether it passed.
func printChecks(w io.Writer, checks []reconcile.Check, pass bool, seconds float64) bool {
	for _, c := range checks {
		fmt.Fprintf(w, "%s %s: %s\n", passFail(c.Pass), c.Name, c.Detail)
	}
	fmt.Fprintf(w, "verification %s (%.1fs)\n", passFail(pass), seconds)
	return pass
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// runChecks are the checks the draw and grab scenarios' options share: a run with an end
// and no negative time, an admin token, and user ids (the last is lastUser) that fit the
// user tables.
func runChecks(duration, warmup time.Duration, requests int64, adminToken, prefix, lastUser string) []error {
	var errs []error
	if duration < 0 || warmup < 0 || requests < 0 {
		errs = append(errs, errors.New("-d, -warmup and -n must not be negative"))
	}
	if duration == 0 && requests == 0 {
		errs = append(errs, errors.New("set -d or -n: the run needs an end"))
	}
	if adminToken == "" {
		errs = append(errs, errors.New("no admin token"))
	}
	if prefix == "" || activity.CheckUserID(lastUser) != nil {
		errs = append(errs, fmt.Errorf("user ids such as %q do not fit the user tables (at most 32 bytes)", lastUser))
	}
	return errs
}
