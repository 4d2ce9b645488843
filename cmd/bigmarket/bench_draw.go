package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/bench"
	"github.com/bigmarket/bigmarket/reconcile"
	"github.com/bigmarket/bigmarket/sqlstore"
)

// errVerifyFailed is returned by the draw bench when an invariant check failed, so that
// the command exits non-zero.
var errVerifyFailed = errors.New("draw bench: verification failed")

// drawOptions describes one run of the draw bench.
type drawOptions struct {
	Base       string // server base URL, e.g. http://127.0.0.1:8091
	AdminToken string // for the operator recharge (and the armory in production mode)
	ActivityID int64
	SKU        int64 // recharged once per user
	Users      int
	Prefix     string // user ids are Prefix + "_" + index

	ProvisionConcurrency int
	Concurrency          int
	Duration             time.Duration
	Requests             int64
	Warmup               time.Duration
	Verify               bool

	// Progress receives progress lines; nil is quiet.
	Progress io.Writer
}

// drawReport is the JSON summary of a draw bench: the load test's own summary wrapped
// with what came before it (provisioning) and after it (the invariant check).
type drawReport struct {
	Scenario   string `json:"scenario"`
	URL        string `json:"url"`
	ActivityID int64  `json:"activityId"`
	StrategyID int64  `json:"strategyId,omitempty"`
	SKU        int64  `json:"sku"`
	Users      int    `json:"users"`
	Prefix     string `json:"prefix"`

	Provision provisionReport `json:"provision"`
	// Warmup is the unmeasured warm-up run, kept because its successful draws wrote
	// award records too.
	Warmup *bench.Summary `json:"warmup,omitempty"`
	// Summary is the measured run.
	Summary bench.Summary `json:"summary"`
	// The draws of the whole run, warmup included, by what their answer says of their
	// award record: Draws the "0000" answers, each told its award, so each has exactly
	// one record; TimedOut the "0006" answers, which took nothing, so none has a record;
	// UnknownOutcomes the draws whose outcome nobody was told, "0009" answers and those
	// that got no response (transport errors), each with no record or one.
	Draws           int64 `json:"draws"`
	TimedOut        int64 `json:"timedOut"`
	UnknownOutcomes int64 `json:"unknownOutcomes"`

	Verification *drawVerification `json:"verification,omitempty"`
}

// provisionReport is how the users got their quota.
type provisionReport struct {
	Users     int              `json:"users"`
	Seconds   float64          `json:"seconds"`
	PerSecond float64          `json:"perSecond"`
	Codes     map[string]int64 `json:"codes"`
	Retries   int64            `json:"retries"`
}

// drawVerification is the invariant check on the SQL databases after a run.
type drawVerification struct {
	Pass    bool                    `json:"pass"`
	Seconds float64                 `json:"seconds"`
	Checks  reconcile.Checks        `json:"checks"`
	Awards  []reconcile.AwardGrants `json:"awards"`
	// Before and After are the bench users' rows before the first draw and after the
	// last one; the run wrote the difference.
	Before reconcile.UserTally `json:"before"`
	After  reconcile.UserTally `json:"after"`
}

// benchDrawCmd is "bigmarket bench draw": it loads the config like serve does, so that
// it can verify on the same SQL databases the server writes.
func benchDrawCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench draw", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := commonFlags(fs)
	target := fs.String("url", "", "base URL of the server under test (default: http:// and the config's addr)")
	concurrency := fs.Int("c", 64, "concurrent draws in flight")
	duration := fs.Duration("d", 30*time.Second, "how long to measure")
	requests := fs.Int64("n", 0, "stop after this many measured draws (0: no limit)")
	warmup := fs.Duration("warmup", 2*time.Second, "draws sent before measuring (verified, not measured)")
	out := fs.String("out", "", "write the JSON summary to this file")
	quiet := fs.Bool("q", false, "no progress lines")
	users := fs.Int("users", 10000, "distinct users to provision and draw with")
	activityID := fs.Int64("activity", 100301, "activity to draw in")
	sku := fs.Int64("sku", 9011, "SKU recharged to every user (9011: 150 draws a day)")
	adminToken := fs.String("admin-token", "", "operator token for the recharge (default: BIGMARKET_ADMIN_TOKEN of the config)")
	prefix := fs.String("prefix", "", "user id prefix (default: random, so that runs do not collide)")
	provisionC := fs.Int("provision-c", 32, "concurrent recharges while provisioning")
	verify := fs.Bool("verify", true, "check the invariants on the SQL databases after the run")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: bigmarket bench draw [flags]

Provisions -users users with quota through the operator recharge, draws in the activity at
-c concurrency for -d (or -n draws), then checks on the server's SQL databases (opened
from the same config as serve: -config, BIGMARKET_*) that no award was granted beyond its
stock, no surplus is negative, and every successful draw left exactly one award record,
one task and one used raffle order. Exits non-zero when a check fails.

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench draw: unexpected argument %q", fs.Arg(0))
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	o := drawOptions{
		Base: strings.TrimRight(*target, "/"), AdminToken: *adminToken, ActivityID: *activityID, SKU: *sku,
		Users: *users, Prefix: *prefix, ProvisionConcurrency: *provisionC, Concurrency: *concurrency,
		Duration: *duration, Requests: *requests, Warmup: *warmup, Verify: *verify,
	}
	if err := benchTarget(cfg, "draw", &o.Base, &o.AdminToken, &o.Prefix, "b"); err != nil {
		return err
	}
	if !*quiet {
		o.Progress = stderr
	}
	rep, err := runDrawBench(ctx, cfg, o, stdout)
	if *out != "" && rep.Scenario != "" {
		if werr := writeJSONReport(*out, rep); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

// benchTarget fills what a bench command's flags left empty from the config: the
// server's URL, the admin token (unless the demo made one up, which the bench cannot
// know), and a random user id prefix starting with letter, so that runs do not collide.
func benchTarget(cfg Config, command string, base, adminToken, prefix *string, letter string) error {
	if *base == "" {
		*base = baseURL(cfg.Addr)
	}
	if *adminToken == "" {
		if cfg.generatedAdminToken {
			return fmt.Errorf("bench %s: no admin token: set BIGMARKET_ADMIN_TOKEN as for the server, or -admin-token", command)
		}
		*adminToken = cfg.AdminToken
	}
	if *prefix == "" {
		b := make([]byte, 3)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		*prefix = letter + hex.EncodeToString(b)
	}
	return nil
}

// baseURL turns a listen address into the URL a local client reaches it at.
func baseURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://127.0.0.1:8091"
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// runDrawBench runs the draw bench against the server at o.Base whose databases cfg
// names: armory, provisioning, warmup and measured run, then the verification. It prints
// the summary and the PASS/FAIL lines to stdout and returns errVerifyFailed when a check
// failed. The report is usable (for the JSON file) whenever its Scenario is set, also
// with an error.
func runDrawBench(ctx context.Context, cfg Config, o drawOptions, stdout io.Writer) (drawReport, error) {
	if err := o.check(); err != nil {
		return drawReport{}, err
	}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	rep := drawReport{URL: o.Base, ActivityID: o.ActivityID, SKU: o.SKU, Users: o.Users, Prefix: o.Prefix}

	var v *verifier
	if o.Verify {
		var err error
		if v, err = openVerifier(ctx, cfg, o.ActivityID); err != nil {
			return drawReport{}, err
		}
		defer v.close()
		rep.StrategyID = v.strategyID
	}
	if err := armoryActivity(ctx, o.Base, o.AdminToken, o.ActivityID); err != nil {
		return drawReport{}, err
	}
	users := make([]string, o.Users)
	bodies := make([][]byte, o.Users)
	for i := range users {
		users[i] = o.Prefix + "_" + strconv.Itoa(i)
		bodies[i], _ = json.Marshal(drawBody{UserID: users[i], ActivityID: o.ActivityID})
	}

	var err error
	if rep.Provision, err = provisionUsers(ctx, o, users, progress); err != nil {
		return drawReport{}, err
	}
	fmt.Fprintf(stdout, "provisioned %d users with sku %d in %.1fs (%.0f/s)\n",
		o.Users, o.SKU, rep.Provision.Seconds, rep.Provision.PerSecond)
	var before reconcile.UserTally
	if v != nil {
		if before, err = v.tally(ctx, users); err != nil {
			return drawReport{}, err
		}
	}
	rep.Scenario = "draw"

	// One client for warmup and measured run, so that the measured run starts on warm
	// connections.
	client, transport := drawClient(o.Concurrency)
	defer transport.CloseIdleConnections()
	n := uint64(len(users))
	opts := bench.Options{
		URL: o.Base + "/api/v1/raffle/activity/draw", Concurrency: o.Concurrency, Client: client,
		Duration: o.Duration, Requests: o.Requests, Progress: o.Progress,
	}
	// Successful warmup draws wrote award records, and the verification must count them.
	warm, sum, runErr := runWithCountedWarmup(ctx, opts, o.Warmup, func(seq uint64) []byte { return bodies[seq%n] }, progress)
	rep.Warmup, rep.Summary = warm, sum
	fmt.Fprintln(stdout, sum.String())
	rep.Draws, rep.TimedOut, rep.UnknownOutcomes = drawOutcomes(rep.Warmup, &sum)
	if runErr != nil {
		// An interrupted run aborted draws in flight whose outcome nobody saw: the
		// counts cannot be checked exactly.
		return rep, runErr
	}
	if v == nil {
		return rep, nil
	}
	fmt.Fprintf(progress, "verifying on the SQL databases\n")
	ver, err := v.verify(ctx, users, before, rep.Draws, rep.UnknownOutcomes)
	if err != nil {
		return rep, err
	}
	rep.Verification = &ver
	if !printChecks(stdout, ver.Checks, ver.Pass, ver.Seconds) {
		return rep, errVerifyFailed
	}
	return rep, nil
}

// drawOutcomes classifies the draws of the runs (a nil run is skipped) by what their
// answers say of their award records: told its award (0000), nothing taken (0006), or
// unknown (0009, or no answer at all).
func drawOutcomes(runs ...*bench.Summary) (draws, timedOut, unknown int64) {
	for _, r := range runs {
		if r != nil {
			draws += r.Codes["0000"]
			timedOut += r.Codes["0006"]
			unknown += r.Codes["0009"] + r.TransportErrors
		}
	}
	return draws, timedOut, unknown
}

// runWithCountedWarmup runs the warmup as a run of its own rather than bench's unrecorded
// warmup, because its requests change state the verification counts, then the measured
// run; requests are numbered across both, so body(seq) never repeats one.
func runWithCountedWarmup(ctx context.Context, opts bench.Options, warmup time.Duration, body func(seq uint64) []byte, progress io.Writer) (*bench.Summary, bench.Summary, error) {
	var (
		warm   *bench.Summary
		offset uint64
	)
	if warmup > 0 {
		wo := opts
		wo.Duration, wo.Requests, wo.Progress = warmup, 0, nil
		wo.Body = func(_ int, seq uint64) []byte { return body(seq) }
		fmt.Fprintf(progress, "warming up for %s\n", warmup)
		w, err := bench.Run(ctx, wo)
		warm = &w
		if err != nil {
			return warm, bench.Summary{}, err
		}
		offset = uint64(w.Requests)
	}
	opts.Body = func(_ int, seq uint64) []byte { return body(seq + offset) }
	sum, err := bench.Run(ctx, opts)
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

func (o drawOptions) check() error {
	var errs []error
	if o.Users < 1 {
		errs = append(errs, errors.New("-users must be at least 1"))
	}
	if o.Concurrency < 1 || o.ProvisionConcurrency < 1 {
		errs = append(errs, errors.New("-c and -provision-c must be at least 1"))
	}
	if o.Duration < 0 || o.Warmup < 0 || o.Requests < 0 {
		errs = append(errs, errors.New("-d, -warmup and -n must not be negative"))
	}
	if o.Duration == 0 && o.Requests == 0 {
		errs = append(errs, errors.New("set -d or -n: the run needs an end"))
	}
	if o.AdminToken == "" {
		errs = append(errs, errors.New("no admin token"))
	}
	if last := o.Prefix + "_" + strconv.Itoa(max(o.Users-1, 0)); o.Prefix == "" || activity.CheckUserID(last) != nil {
		errs = append(errs, fmt.Errorf("user ids such as %q do not fit the user tables (at most 32 bytes)", last))
	}
	if len(errs) > 0 {
		return fmt.Errorf("bench draw: %w", errors.Join(errs...))
	}
	return nil
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// drawClient is built like bench's own client: one keep-alive HTTP/1.1 connection per
// worker, no proxy, no gzip, redirects not followed.
func drawClient(concurrency int) (*http.Client, *http.Transport) {
	t := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: bench.DefaultTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        concurrency,
		MaxIdleConnsPerHost: concurrency,
		MaxConnsPerHost:     concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, t
}

// drawBody is the request of activity/draw.
type drawBody struct {
	UserID     string `json:"userId"`
	ActivityID int64  `json:"activityId"`
}

// envelope is the part of a response the bench reads.
type envelope struct {
	Code string `json:"code"`
	Info string `json:"info"`
}

// callAPI sends one request and decodes the envelope; a non-envelope answer is an error.
func callAPI(ctx context.Context, client *http.Client, method, url, adminToken string, body []byte) (envelope, error) {
	return callAPIData(ctx, client, method, url, adminToken, body, nil)
}

// armoryActivity warms the activity's stock and caches and assembles its strategy.
func armoryActivity(ctx context.Context, base, adminToken string, activityID int64) error {
	return armoryGET(ctx, fmt.Sprintf("%s/api/v1/raffle/activity/armory?activityId=%d", base, activityID), adminToken)
}

// armoryGET sends an armory GET (with the admin token, which production mode requires) and
// expects success.
func armoryGET(ctx context.Context, url, adminToken string) error {
	client := &http.Client{Timeout: 30 * time.Second}
	env, err := callAPI(ctx, client, http.MethodGet, url, adminToken, nil)
	if err != nil {
		return fmt.Errorf("armory: %w", err)
	}
	if env.Code != "0000" {
		return fmt.Errorf("armory %s: %s %s", url, env.Code, env.Info)
	}
	return nil
}

// provisionUsers recharges o.SKU to every user through the operator endpoint, each with
// an out business number unique to the user and this run. A recharge that got no answer
// is retried with the same number, so that a repeat (0003) means it was done.
func provisionUsers(ctx context.Context, o drawOptions, users []string, progress io.Writer) (provisionReport, error) {
	nonce := make([]byte, 4)
	if _, err := rand.Read(nonce); err != nil {
		return provisionReport{}, err
	}
	run := hex.EncodeToString(nonce)
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: o.ProvisionConcurrency, DisableCompression: true},
	}
	defer client.CloseIdleConnections()
	url := o.Base + "/api/v1/admin/activity/recharge"

	var (
		next, done, retries atomic.Int64
		mu                  sync.Mutex
		codes               = map[string]int64{}
		firstErr            error
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	recharge := func(user string) error {
		body, _ := json.Marshal(map[string]any{"userId": user, "sku": o.SKU, "outBusinessNo": user + "-" + run})
		var lastErr error
		for attempt := range 3 {
			if attempt > 0 {
				retries.Add(1)
			}
			env, err := callAPI(ctx, client, http.MethodPost, url, o.AdminToken, body)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				lastErr = err
				continue
			}
			mu.Lock()
			codes[env.Code]++
			mu.Unlock()
			switch {
			case env.Code == "0000", env.Code == "0003" && attempt > 0:
				return nil
			case env.Code == "0001" || env.Code == "0006":
				lastErr = fmt.Errorf("recharge %s: %s %s", user, env.Code, env.Info)
				continue
			default:
				return fmt.Errorf("recharge %s with sku %d: %s %s", user, o.SKU, env.Code, env.Info)
			}
		}
		return lastErr
	}

	start := time.Now()
	stop := make(chan struct{})
	var reporter sync.WaitGroup
	reporter.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				d := done.Load()
				fmt.Fprintf(progress, "%7.1fs %8d/%d users provisioned %8.0f/s\n",
					now.Sub(start).Seconds(), d, len(users), float64(d)/now.Sub(start).Seconds())
			}
		}
	})
	var wg sync.WaitGroup
	for range min(o.ProvisionConcurrency, len(users)) {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(len(users)) || ctx.Err() != nil {
					return
				}
				mu.Lock()
				failed := firstErr != nil
				mu.Unlock()
				if failed {
					return
				}
				if err := recharge(users[i]); err != nil {
					fail(err)
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	close(stop)
	reporter.Wait()
	elapsed := time.Since(start).Seconds()
	rep := provisionReport{Users: int(done.Load()), Seconds: elapsed, Codes: codes, Retries: retries.Load()}
	if elapsed > 0 {
		rep.PerSecond = float64(rep.Users) / elapsed
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("provision users: %w", err)
	}
	if firstErr != nil {
		return rep, fmt.Errorf("provision users (%d of %d done): %w", rep.Users, len(users), firstErr)
	}
	return rep, nil
}

// verifier reads the server's SQL databases: the config database for the strategy and
// the SKU and award surpluses, the user databases for the grants.
type verifier struct {
	b          *backends
	tables     int
	configs    *sqlstore.ConfigStore
	users      *sqlstore.UserStore
	activityID int64
	strategyID int64
}

// verifyWorkers bounds the concurrent per-user queries of the verification.
const verifyWorkers = 16

func openVerifier(ctx context.Context, cfg Config, activityID int64) (*verifier, error) {
	b := &backends{}
	if err := openSQL(ctx, cfg, b, false, false); err != nil {
		b.close()
		return nil, err
	}
	router, err := sqlstore.NewRouter(cfg.DBCount, cfg.TBCount)
	if err != nil {
		b.close()
		return nil, err
	}
	act, err := sqlstore.NewActivityStore(b.configDB, cfg.location).Activity(ctx, activityID)
	if err != nil {
		b.close()
		return nil, fmt.Errorf("bench draw: %w", err)
	}
	return &verifier{
		b: b, tables: cfg.TBCount, activityID: activityID, strategyID: act.StrategyID,
		configs: sqlstore.NewConfigStore(b.configDB), users: sqlstore.NewUserStore(b.userDBs, router),
	}, nil
}

func (v *verifier) close() { v.b.close() }

// verify runs every check: (a) no award granted beyond its stock, (b) no negative
// surplus anywhere, (c) the bench users' rows match the run's successful draws (see
// reconcile.DrawRows).
func (v *verifier) verify(ctx context.Context, users []string, before reconcile.UserTally, draws, unknown int64) (drawVerification, error) {
	start := time.Now()
	var out drawVerification
	grants, err := v.awardGrants(ctx)
	if err != nil {
		return out, err
	}
	out.Awards = grants
	out.Checks = append(out.Checks, reconcile.AwardStock(grants)...)
	mins, err := sqlstore.MinSurpluses(ctx, v.b.configDB, v.b.userDBs)
	if err != nil {
		return out, err
	}
	out.Checks = append(out.Checks, reconcile.Surpluses(mins)...)
	after, err := v.tally(ctx, users)
	if err != nil {
		return out, err
	}
	out.Before, out.After = before, after
	out.Checks = append(out.Checks, reconcile.DrawRows(before, after, len(users), draws, unknown)...)
	out.Pass = out.Checks.Pass()
	out.Seconds = time.Since(start).Seconds()
	return out, nil
}

// awardGrants counts each award's records of the strategy across every shard, split
// into stocked and fallback grants by their tasks (reconcile.Stocked).
func (v *verifier) awardGrants(ctx context.Context) ([]reconcile.AwardGrants, error) {
	cfg, err := v.configs.LoadStrategy(ctx, v.strategyID)
	if err != nil {
		return nil, err
	}
	counts, err := v.users.AwardRecordCounts(ctx, v.strategyID)
	if err != nil {
		return nil, err
	}
	stocked := map[int]int64{}
	for id := range reconcile.FallbackAwards(cfg) {
		if counts[id] == 0 {
			continue
		}
		tasks, err := v.users.AwardGrantTasks(ctx, v.strategyID, id)
		if err != nil {
			return nil, err
		}
		stocked[id] = reconcile.Stocked(tasks)
	}
	return reconcile.Grants(cfg, counts, stocked), nil
}

// tally counts the users' award records in the activity, their send_award tasks and
// their used raffle orders, read per user (all indexed by user), verifyWorkers users in
// flight.
func (v *verifier) tally(ctx context.Context, users []string) (reconcile.UserTally, error) {
	results := make([]reconcile.UserRows, len(users))
	var (
		next     atomic.Int64
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	for range min(verifyWorkers, len(users)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(users) || ctx.Err() != nil {
					return
				}
				r, err := v.tallyUser(ctx, users[i])
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				results[i] = r
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return reconcile.UserTally{}, firstErr
	}
	if err := ctx.Err(); err != nil {
		return reconcile.UserTally{}, err
	}
	return reconcile.Tally(results), nil
}

func (v *verifier) tallyUser(ctx context.Context, user string) (reconcile.UserRows, error) {
	tasks, err := v.users.Tasks(ctx, user)
	if err != nil {
		return reconcile.UserRows{}, err
	}
	recs, err := v.users.AwardRecords(ctx, user, v.activityID)
	if err != nil {
		return reconcile.UserRows{}, err
	}
	orders, err := v.users.RaffleOrders(ctx, user, v.activityID)
	if err != nil {
		return reconcile.UserRows{}, err
	}
	return reconcile.RowsOf(tasks, recs, orders), nil
}
