package bench

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/bigmarket/bigmarket/reconcile"
	"github.com/bigmarket/bigmarket/sqlstore"
)

// ErrDrawFailed is returned by the draw bench when an invariant check failed, so that
// the command exits non-zero.
var ErrDrawFailed = errors.New("draw bench: verification failed")

// DrawOptions describes one run of the draw bench.
type DrawOptions struct {
	Base string // server base URL, e.g. http://127.0.0.1:8091: admin calls and draws
	// Bases, when set, are the base URLs the draws go to (Base among them or not): the
	// servers of one deployment. Several need DrawsPerUser.
	Bases      []string
	AdminToken string // for the stock top-up and the provisioning (and the armory in production mode)
	ActivityID int64
	SKU        int64 // recharged once per user, its stock topped up by the users first
	Users      int
	Prefix     string // user ids are Prefix + "_" + index
	// Token, when set, makes the draws go to activity/draw_by_token with the bearer
	// token it returns for the user (signed with the server's JWT secret), the body
	// naming no user: the endpoints a production server serves.
	Token func(userID string) string

	ProvisionConcurrency int // provisioning requests in flight, each of up to 1,000 users
	Concurrency          int
	// DrawsPerUser, when set, replaces the timed run: every user draws exactly this many
	// times, round after round over all users, alternating between Bases (Duration,
	// Requests and Warmup do not apply), and the verification checks each user against
	// its own answers (reconcile.UserDrawChecks). The users must be new to the activity.
	DrawsPerUser int
	Duration     time.Duration
	Requests     int64
	Warmup       time.Duration
	Verify       bool
	// Drain, when set, waits until the server has written every answered draw to SQL (the
	// flash draw's writer) before the verification, which reads SQL.
	Drain func(ctx context.Context) error
	// AwaitRecords makes the verification first wait, up to 10 minutes, until every
	// successful draw has its award record: for a server that writes SQL behind its
	// answers (the flash draw) when Drain cannot reach its broker.
	AwaitRecords bool
	// DrawChecks, when set, adds checks of the server's draws since the run began (the
	// flash draw's: draw events against their rows, hot quota = SQL quota, one win,
	// records ≤ stock) to the verification, after the wait for the writer.
	DrawChecks func(ctx context.Context, since time.Time) (reconcile.Checks, error)

	// Progress receives progress lines; nil is quiet.
	Progress io.Writer
}

// DrawReport is the JSON summary of a draw bench: the load test's own summary wrapped
// with what came before it (provisioning) and after it (the invariant check).
type DrawReport struct {
	Scenario   string `json:"scenario"`
	URL        string `json:"url"`
	ActivityID int64  `json:"activityId"`
	StrategyID int64  `json:"strategyId,omitempty"`
	SKU        int64  `json:"sku"`
	Users      int    `json:"users"`
	Prefix     string `json:"prefix"`
	// URLs are the servers drawn on and DrawsPerUser each user's draws, in a run of
	// fixed draws per user.
	URLs         []string `json:"urls,omitempty"`
	DrawsPerUser int      `json:"drawsPerUser,omitempty"`
	// ByToken: the draws went to draw_by_token with each user's token.
	ByToken bool `json:"byToken,omitempty"`

	Provision ProvisionReport `json:"provision"`
	// Warmup is the unmeasured warm-up run, kept because its successful draws wrote
	// award records too.
	Warmup *Summary `json:"warmup,omitempty"`
	// Summary is the measured run.
	Summary Summary `json:"summary"`
	// The draws of the whole run, warmup included, by what their answer says of their
	// award record: Draws the "0000" answers, each told its award, so each has exactly
	// one record; TimedOut the "0006" answers, which took nothing, so none has a record;
	// UnknownOutcomes the draws whose outcome nobody was told, "0009" answers and those
	// that got no response (transport errors), each with no record or one.
	Draws           int64 `json:"draws"`
	TimedOut        int64 `json:"timedOut"`
	UnknownOutcomes int64 `json:"unknownOutcomes"`
	// DrainSeconds is how long the flash draw's writer took, after the run, to apply
	// every draw to SQL (with DrawOptions.Drain).
	DrainSeconds float64 `json:"drainSeconds,omitempty"`

	Verification *DrawVerification `json:"verification,omitempty"`
}

// ProvisionReport is how the users got their quota.
type ProvisionReport struct {
	Users     int              `json:"users"`
	Seconds   float64          `json:"seconds"`
	PerSecond float64          `json:"perSecond"`
	Codes     map[string]int64 `json:"codes"`
	Retries   int64            `json:"retries"`
}

// DrawVerification is the invariant check on the SQL databases after a run.
type DrawVerification struct {
	Pass    bool                    `json:"pass"`
	Seconds float64                 `json:"seconds"`
	Checks  reconcile.Checks        `json:"checks"`
	Awards  []reconcile.AwardGrants `json:"awards"`
	// Before and After are the bench users' rows before the first draw and after the
	// last one; the run wrote the difference.
	Before reconcile.UserTally `json:"before"`
	After  reconcile.UserTally `json:"after"`
}

// RunDraw runs the draw bench against the server at o.Base, verifying (with o.Verify)
// on its databases db: armory, provisioning, warmup and measured run, then the verification. It prints
// the summary and the PASS/FAIL lines to stdout and returns ErrDrawFailed when a check
// failed. The report is usable (for the JSON file) whenever its Scenario is set, also
// with an error.
func RunDraw(ctx context.Context, o DrawOptions, db Stores, stdout io.Writer) (DrawReport, error) {
	if err := o.check(); err != nil {
		return DrawReport{}, err
	}
	if len(o.Bases) == 0 {
		o.Bases = []string{o.Base}
	}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	rep := DrawReport{URL: o.Base, ActivityID: o.ActivityID, SKU: o.SKU, Users: o.Users, Prefix: o.Prefix, DrawsPerUser: o.DrawsPerUser,
		ByToken: o.Token != nil}
	if o.DrawsPerUser > 0 {
		rep.URLs = o.Bases
	}

	var v *DrawVerifier
	if o.Verify {
		var err error
		if v, err = OpenDrawVerifier(ctx, db, o.ActivityID); err != nil {
			return DrawReport{}, err
		}
		rep.StrategyID = v.strategyID
	}
	servers := o.Bases
	if !slices.Contains(servers, o.Base) {
		servers = append([]string{o.Base}, servers...)
	}
	for _, base := range servers {
		if err := armoryActivity(ctx, base, o.AdminToken, o.ActivityID); err != nil {
			return DrawReport{}, err
		}
	}
	users := make([]string, o.Users)
	bodies := make([][]byte, o.Users)
	var auths []string // by user, with o.Token
	if o.Token != nil {
		auths = make([]string, o.Users)
	}
	for i := range users {
		users[i] = o.Prefix + "_" + strconv.Itoa(i)
		if o.Token != nil {
			auths[i] = "Bearer " + o.Token(users[i])
			bodies[i], _ = json.Marshal(drawBody{ActivityID: o.ActivityID})
		} else {
			bodies[i], _ = json.Marshal(drawBody{UserID: users[i], ActivityID: o.ActivityID})
		}
	}

	var err error
	if rep.Provision, err = provisionUsers(ctx, o, users, progress); err != nil {
		return DrawReport{}, err
	}
	fmt.Fprintf(stdout, "provisioned %d users with sku %d in %.1fs (%.0f/s)\n",
		o.Users, o.SKU, rep.Provision.Seconds, rep.Provision.PerSecond)
	var before reconcile.UserTally
	if v != nil {
		if before, err = v.tally(ctx, users); err != nil {
			return DrawReport{}, err
		}
		if o.DrawsPerUser > 0 && before.Records > 0 {
			return DrawReport{}, fmt.Errorf("bench draw: users %s_* already have %d award records: -draws-per-user needs new users (another -prefix)", o.Prefix, before.Records)
		}
	}
	rep.Scenario = "draw"
	runStart := time.Now()

	// One client for warmup and measured run, so that the measured run starts on warm
	// connections.
	client, transport := scenarioClient(o.Concurrency)
	defer transport.CloseIdleConnections()
	var (
		answers []reconcile.UserDraws
		runErr  error
	)
	if o.DrawsPerUser > 0 {
		fmt.Fprintf(progress, "%d draws of each of %d users on %d servers\n", o.DrawsPerUser, len(users), len(o.Bases))
		rep.Summary, answers, runErr = drawPerUser(ctx, o, client, users, bodies, auths)
	} else {
		n := uint64(len(users))
		opts := Options{
			URL: o.Base + o.drawPath(), Concurrency: o.Concurrency, Client: client,
			Duration: o.Duration, Requests: o.Requests, Progress: o.Progress,
		}
		var auth func(seq uint64) string
		if auths != nil {
			auth = func(seq uint64) string { return auths[seq%n] }
		}
		// Successful warmup draws wrote award records, and the verification must count them.
		rep.Warmup, rep.Summary, runErr = runWithCountedWarmup(ctx, opts, o.Warmup, func(seq uint64) []byte { return bodies[seq%n] }, auth, progress)
	}
	sum := rep.Summary
	fmt.Fprintln(stdout, sum.String())
	rep.Draws, rep.TimedOut, rep.UnknownOutcomes = DrawOutcomes(rep.Warmup, &sum)
	if runErr != nil {
		// An interrupted run aborted draws in flight whose outcome nobody saw: the
		// counts cannot be checked exactly.
		return rep, runErr
	}
	if v == nil {
		return rep, nil
	}
	if o.Drain != nil {
		start := time.Now()
		dctx, cancel := context.WithTimeout(ctx, drainTimeout)
		err := o.Drain(dctx)
		cancel()
		rep.DrainSeconds = time.Since(start).Seconds()
		if err != nil {
			return rep, fmt.Errorf("bench draw: wait for the draw writer: %w", err)
		}
		fmt.Fprintf(stdout, "draw writer drained %.1fs after the run\n", rep.DrainSeconds)
	}
	if o.AwaitRecords {
		start := time.Now()
		if err := v.awaitRecords(ctx, users, before, rep.Draws); err != nil {
			return rep, err
		}
		rep.DrainSeconds += time.Since(start).Seconds()
	}
	fmt.Fprintf(progress, "verifying on the SQL databases\n")
	ver, err := v.Verify(ctx, users, before, rep.Draws, rep.UnknownOutcomes)
	if err != nil {
		return rep, err
	}
	if answers != nil {
		// The quotas of the day and month the run began in (a run across midnight in the
		// server's time zone would read the next day's rows).
		at := runStart.In(cmp.Or(v.db.Location, time.Local))
		if err := v.userDraws(ctx, answers, at.Format(time.DateOnly), at.Format("2006-01")); err != nil {
			return rep, err
		}
		ver.Checks = append(ver.Checks, reconcile.UserDrawChecks(answers)...)
		ver.Pass = ver.Checks.Pass()
	}
	if o.DrawChecks != nil {
		checks, err := o.DrawChecks(ctx, runStart)
		if err != nil {
			return rep, err
		}
		ver.Checks = append(ver.Checks, checks...)
		ver.Pass = ver.Checks.Pass()
	}
	rep.Verification = &ver
	if !printChecks(stdout, ver.Checks, ver.Pass, ver.Seconds) {
		return rep, ErrDrawFailed
	}
	return rep, nil
}

// drainTimeout bounds the wait for the draw writer after a run.
const drainTimeout = 10 * time.Minute

// DrawOutcomes classifies the draws of the runs (a nil run is skipped) by what their
// answers say of their award records: told its award (0000), nothing taken (0006), or
// unknown (0009, no answer at all, or a proxy's answer without an envelope).
func DrawOutcomes(runs ...*Summary) (draws, timedOut, unknown int64) {
	for _, r := range runs {
		if r != nil {
			draws += r.Codes["0000"]
			timedOut += r.Codes["0006"]
			unknown += r.Codes["0009"] + r.TransportErrors + r.Unenveloped()
		}
	}
	return draws, timedOut, unknown
}

func (o DrawOptions) check() error {
	var errs []error
	if o.Users < 1 {
		errs = append(errs, errors.New("-users must be at least 1"))
	}
	if o.Concurrency < 1 || o.ProvisionConcurrency < 1 {
		errs = append(errs, errors.New("-c and -provision-c must be at least 1"))
	}
	duration, warmup, requests := o.Duration, o.Warmup, o.Requests
	switch {
	case o.DrawsPerUser < 0:
		errs = append(errs, errors.New("-draws-per-user must not be negative"))
	case o.DrawsPerUser > 0:
		// The run ends with its draws.
		duration, warmup, requests = 0, 0, int64(o.DrawsPerUser)*int64(o.Users)
	case len(o.Bases) > 1:
		errs = append(errs, errors.New("several servers (-url a,b) need -draws-per-user"))
	}
	for _, b := range o.Bases {
		if u, err := url.Parse(b); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			errs = append(errs, fmt.Errorf("server URL %q: want http:// or https://", b))
		}
	}
	errs = append(errs, runChecks(duration, warmup, requests, o.AdminToken, o.Prefix,
		o.Prefix+"_"+strconv.Itoa(max(o.Users-1, 0)))...)
	if len(errs) > 0 {
		return fmt.Errorf("bench draw: %w", errors.Join(errs...))
	}
	return nil
}

// drawPath is the draw endpoint: activity/draw, or its _by_token twin with o.Token.
func (o DrawOptions) drawPath() string {
	if o.Token != nil {
		return "/api/v1/raffle/activity/draw_by_token"
	}
	return "/api/v1/raffle/activity/draw"
}

// drawBody is the request of activity/draw (of draw_by_token without its user).
type drawBody struct {
	UserID     string `json:"userId,omitempty"`
	ActivityID int64  `json:"activityId"`
}

// provisionBatch is the users of one provisioning request (the server's maximum).
const provisionBatch = 1000

// provisionUsers gives every user one recharge of o.SKU: it first tops the SKU's stock
// up by the number of users (admin/stock/add), then sends the users in batches of
// provisionBatch to admin/activity/provision, o.ProvisionConcurrency batches at a time,
// under a batch number unique to this run. A batch that got no answer, or a retryable
// one, is sent again as it was: the users it already recharged come back as repeated.
func provisionUsers(ctx context.Context, o DrawOptions, users []string, progress io.Writer) (ProvisionReport, error) {
	nonce := make([]byte, 4)
	if _, err := rand.Read(nonce); err != nil {
		return ProvisionReport{}, err
	}
	batchNo := "bench-" + hex.EncodeToString(nonce)
	client := &http.Client{
		Timeout:   2 * time.Minute,
		Transport: &http.Transport{MaxIdleConnsPerHost: o.ProvisionConcurrency, DisableCompression: true},
	}
	defer client.CloseIdleConnections()

	start := time.Now()
	topUp, _ := json.Marshal(map[string]any{"sku": o.SKU, "units": len(users)})
	if env, err := Call(ctx, client, http.MethodPost, o.Base+"/api/v1/admin/stock/add", o.AdminToken, topUp, nil); err != nil || env.Code != "0000" {
		if err == nil {
			err = fmt.Errorf("%s %s", env.Code, env.Info)
		}
		return ProvisionReport{}, fmt.Errorf("top up sku %d by %d units: %w", o.SKU, len(users), err)
	}
	url := o.Base + "/api/v1/admin/activity/provision"

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
	provision := func(batch []string) error {
		body, _ := json.Marshal(map[string]any{"activityId": o.ActivityID, "sku": o.SKU, "outBusinessNo": batchNo, "users": batch})
		var lastErr error
		for attempt := range 5 {
			if attempt > 0 {
				retries.Add(1)
			}
			var res struct {
				Provisioned int `json:"provisioned"`
				Repeated    int `json:"repeated"`
			}
			env, err := Call(ctx, client, http.MethodPost, url, o.AdminToken, body, &res)
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
			case env.Code == "0000" && (res.Repeated == 0 || attempt > 0):
				return nil
			case env.Code == "0000":
				return fmt.Errorf("provision: %d of %d users already had batch %s", res.Repeated, len(batch), batchNo)
			case env.Code == "0001" || env.Code == "0006" || env.Code == "0009":
				lastErr = fmt.Errorf("provision %d users: %s %s", len(batch), env.Code, env.Info)
				continue
			default:
				return fmt.Errorf("provision %d users with sku %d: %s %s", len(batch), o.SKU, env.Code, env.Info)
			}
		}
		return lastErr
	}

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
	batches := (len(users) + provisionBatch - 1) / provisionBatch
	var wg sync.WaitGroup
	for range min(o.ProvisionConcurrency, batches) {
		wg.Go(func() {
			for {
				b := int(next.Add(1) - 1)
				if b >= batches || ctx.Err() != nil {
					return
				}
				mu.Lock()
				failed := firstErr != nil
				mu.Unlock()
				if failed {
					return
				}
				batch := users[b*provisionBatch : min((b+1)*provisionBatch, len(users))]
				if err := provision(batch); err != nil {
					fail(err)
					return
				}
				done.Add(int64(len(batch)))
			}
		})
	}
	wg.Wait()
	close(stop)
	reporter.Wait()
	elapsed := time.Since(start).Seconds()
	rep := ProvisionReport{Users: int(done.Load()), Seconds: elapsed, Codes: codes, Retries: retries.Load()}
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

// DrawVerifier reads the server's SQL databases: the config database for the strategy
// and the SKU and award surpluses, the user databases for the grants.
type DrawVerifier struct {
	db         Stores
	configs    *sqlstore.ConfigStore
	users      *sqlstore.UserStore
	activityID int64
	strategyID int64
}

// OpenDrawVerifier reads the activity's strategy from db and returns the verifier of a
// draw run in it.
func OpenDrawVerifier(ctx context.Context, db Stores, activityID int64) (*DrawVerifier, error) {
	if db.Config == nil || len(db.Users) == 0 {
		return nil, errors.New("bench draw: no databases to verify on")
	}
	act, err := sqlstore.NewActivityStore(db.Config, db.Location).Activity(ctx, activityID)
	if err != nil {
		return nil, fmt.Errorf("bench draw: %w", err)
	}
	return &DrawVerifier{
		db: db, activityID: activityID, strategyID: act.StrategyID,
		configs: sqlstore.NewConfigStore(db.Config), users: sqlstore.NewUserStore(db.Users, db.Router),
	}, nil
}

// Verify runs every check: (a) no award granted beyond its stock, (b) no negative
// surplus anywhere, (c) the bench users' rows match the run's successful draws (see
// reconcile.DrawRows).
func (v *DrawVerifier) Verify(ctx context.Context, users []string, before reconcile.UserTally, draws, unknown int64) (DrawVerification, error) {
	start := time.Now()
	var out DrawVerification
	grants, err := v.awardGrants(ctx)
	if err != nil {
		return out, err
	}
	out.Awards = grants
	out.Checks = append(out.Checks, reconcile.AwardStock(grants)...)
	mins, err := sqlstore.MinSurpluses(ctx, v.db.Config, v.db.Users)
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

// awaitRecords reads the users' rows until they have draws more award records than
// before, up to drainTimeout; the verification then says whether they match.
func (v *DrawVerifier) awaitRecords(ctx context.Context, users []string, before reconcile.UserTally, draws int64) error {
	deadline := time.Now().Add(drainTimeout)
	for {
		after, err := v.tally(ctx, users)
		if err != nil || after.Records-before.Records >= draws || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// awardGrants counts each award's records of the strategy across every shard, split
// into stocked and fallback grants by their tasks (reconcile.Stocked).
func (v *DrawVerifier) awardGrants(ctx context.Context) ([]reconcile.AwardGrants, error) {
	return sqlstore.StrategyGrants(ctx, v.configs, v.users, v.strategyID)
}

// tally counts the users' award records in the activity, their send_award tasks and
// their used raffle orders, read per user (all indexed by user), verifyWorkers users in
// flight.
func (v *DrawVerifier) tally(ctx context.Context, users []string) (reconcile.UserTally, error) {
	results := make([]reconcile.UserRows, len(users))
	err := eachIndex(ctx, len(users), func(ctx context.Context, i int) error {
		r, err := v.tallyUser(ctx, users[i])
		results[i] = r
		return err
	})
	if err != nil {
		return reconcile.UserTally{}, err
	}
	return reconcile.Tally(results), nil
}

// eachIndex runs fn for 0..n-1, verifyWorkers at a time, and returns the first error (which
// stops the rest) or ctx's.
func eachIndex(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(verifyWorkers)
	for i := range n {
		g.Go(func() error { return fn(gctx, i) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

func (v *DrawVerifier) tallyUser(ctx context.Context, user string) (reconcile.UserRows, error) {
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
