package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/rain"
	"github.com/bigmarket/bigmarket/reconcile"
)

// ErrRainFailed is returned by the rain bench when a check failed, so that the command
// exits non-zero.
var ErrRainFailed = errors.New("rain bench: verification failed")

// RainOptions describes one run of the rain bench: a session it creates, and users tapping
// through it.
type RainOptions struct {
	Base       string // server base URL, e.g. http://127.0.0.1:8091
	AdminToken string // for creating the session and reading its report
	Users      int
	Prefix     string // user ids are Prefix + "-" + index

	Concurrency int
	// Duration is the session's length; the taps run from its start until a second
	// past its end. Lead is the time from setup to the start (default 1s).
	Duration time.Duration
	Lead     time.Duration

	// Prizes is the session's number of prizes: SKUPrizes draws of SKU, AwardPrizes
	// records of AwardID, and the rest cash of Amount each or, with Max set, uniform in
	// [Amount, Max].
	Prizes      int
	Amount      money.Cents
	Max         money.Cents
	SKU         int64
	SKUPrizes   int
	AwardID     int
	AwardPrizes int
	UserCap     int
	// Burst is the plan's burst; negative is the default, 1% of the prizes.
	Burst   int
	Weights []int
	Budget  money.Cents // zero: none

	// Token, when set, makes the taps go to grab_by_token with the bearer token it
	// returns for a user, instead of naming the user in the body.
	Token func(userID string) string

	// Verify checks the session's rows after the run: Source reads them; Drain, when
	// set, first waits until the win consumer applied every win published; then the
	// verification polls the recorded wins, at most WinWait, until they cover the
	// answers. Skew is the clock-skew tolerance of the pacing checks.
	Verify  bool
	Source  reconcile.RainSource
	Drain   func(ctx context.Context) error
	WinWait time.Duration
	Skew    time.Duration

	// Progress receives progress lines; nil is quiet.
	Progress io.Writer
}

// RainReport is the JSON summary of a rain bench: the session, the load test's own
// summary, what the taps were answered, the plan against the grants second by second,
// and the checks after it.
type RainReport struct {
	Scenario  string    `json:"scenario"`
	URL       string    `json:"url"`
	SessionID int64     `json:"sessionId"`
	Start     time.Time `json:"start"` // on the server's clock
	End       time.Time `json:"end"`
	Prizes    int       `json:"prizes"`
	Burst     int       `json:"burst"`
	UserCap   int       `json:"userCap"`
	Users     int       `json:"users"`
	Prefix    string    `json:"prefix"`
	ByToken   bool      `json:"byToken"`
	// ClockOffset is the server's clock minus this one's, estimated at setup.
	ClockOffsetMs float64 `json:"clockOffsetMs"`

	Summary Summary `json:"summary"`

	// The taps by answer: Won and Missed are 0000 with won true and false; NotStarted,
	// Ended and Capped the ERR_RAIN_001/002/003; Retry the 0009; Unanswered the taps
	// that got no answer; Other everything else. Retry and Unanswered are the unknown
	// outcomes: each may have won.
	Won        int64 `json:"won"`
	Missed     int64 `json:"missed"`
	NotStarted int64 `json:"notStarted"`
	Ended      int64 `json:"ended"`
	Capped     int64 `json:"capped"`
	Retry      int64 `json:"retry"`
	Unanswered int64 `json:"unanswered"`
	Other      int64 `json:"other"`
	// WonCash is the cash of the won answers, WonKinds their count by kind.
	WonCash  money.Cents       `json:"wonCash"`
	WonKinds map[rain.Kind]int `json:"wonKinds"`
	// TapsPerSecond is the measured run's answered taps per second.
	TapsPerSecond float64 `json:"tapsPerSecond"`
	// LastTenth counts the wins answered in the last tenth of the session (answers'
	// side), ServerLastTenth the grants the server's report shows after its last slice
	// that ends by then (-1 unknown).
	LastTenth       int `json:"lastTenth"`
	ServerLastTenth int `json:"serverLastTenth"`

	// Seconds is the plan against the grants, second by second; Server the session's
	// report read after the run (nil when it could not be read).
	Seconds []RainSecond      `json:"seconds"`
	Server  *RainServerReport `json:"server,omitempty"`

	Verification *RainVerification `json:"verification,omitempty"`
}

// RainSecond is one second of the session, counted at its end: Allowed is the plan's
// allowed(end of second) as this bench computes it; ServerAllowed and ServerGranted are
// the server's report's slice (-1 when it has none); Answered is the wins answered by
// then. All cumulative.
type RainSecond struct {
	Second        int `json:"second"`
	Allowed       int `json:"allowed"`
	ServerAllowed int `json:"serverAllowed"`
	ServerGranted int `json:"serverGranted"`
	Answered      int `json:"answered"`
}

// RainServerReport is GET /api/v1/admin/rain/sessions/{id}.
type RainServerReport struct {
	ServerTime   int64          `json:"serverTime"`
	Total        int            `json:"total"`
	Released     int            `json:"released"`
	Granted      int            `json:"granted"`
	SeqNo        int64          `json:"seqNo"`
	Nodes        []rain.NodeSeq `json:"nodes"`
	SliceSeconds int            `json:"sliceSeconds"`
	Slices       []RainSlice    `json:"slices"`
}

// RainSlice is one slice of the server's report: allowed by its end and granted so far.
type RainSlice struct {
	Start   int64 `json:"start"` // unix ms
	Allowed int   `json:"allowed"`
	Granted int   `json:"granted"`
}

// RainVerification is the check on the session's rows after a run.
type RainVerification struct {
	Pass    bool             `json:"pass"`
	Seconds float64          `json:"seconds"`
	Checks  reconcile.Checks `json:"checks"`
	// Recorded counts the session's wins when the wait ended, WaitSeconds after the run.
	Recorded    int     `json:"recorded"`
	WaitSeconds float64 `json:"waitSeconds"`
	// Discrepancies are the rain checks' findings.
	Discrepancies []string `json:"discrepancies,omitempty"`
	// Shortfall is how far the recorded wins fell furthest behind allowed − burst at the
	// end of a second of the session, ShortfallAt that second's end (seconds into the
	// session): at most 0 when the plan's releases were all taken as they came.
	Shortfall   int     `json:"shortfall"`
	ShortfallAt float64 `json:"shortfallAt"`
}

// RunRain runs the rain bench against the server at o.Base: it creates the session, taps
// through it, prints the summary and the plan against the grants, and (with o.Verify)
// checks the session's rows, printing the PASS/FAIL lines and returning ErrRainFailed
// when a check failed. The report is usable (for the JSON file) whenever its Scenario is
// set, also with an error.
func RunRain(ctx context.Context, o RainOptions, stdout io.Writer) (RainReport, error) {
	if o.Burst < 0 {
		o.Burst = rain.DefaultBurst(o.Prizes)
	}
	if o.Lead == 0 {
		o.Lead = time.Second
	}
	if err := o.check(); err != nil {
		return RainReport{}, err
	}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	rep := RainReport{URL: o.Base, Prizes: o.Prizes, Burst: o.Burst, UserCap: o.UserCap, Users: o.Users, Prefix: o.Prefix,
		ByToken: o.Token != nil, ServerLastTenth: -1}

	users := make([]string, o.Users)
	for i := range users {
		users[i] = o.Prefix + "-" + strconv.Itoa(i)
	}
	// Signed before the session is created: signing 100,000 tokens takes longer than the
	// lead before its start.
	var tokens []string
	if o.Token != nil {
		tokens = make([]string, len(users))
		for i, u := range users {
			tokens[i] = "Bearer " + o.Token(u)
		}
	}
	admin := &http.Client{Timeout: 30 * time.Second}
	defer admin.CloseIdleConnections()
	q, offset, err := createSession(ctx, admin, o)
	if err != nil {
		return RainReport{}, err
	}
	rep.SessionID, rep.Start, rep.End, rep.ClockOffsetMs = q.SessionID, q.Start, q.End, float64(offset)/float64(time.Millisecond)
	fmt.Fprintf(stdout, "session %d: %d prizes over %s from %s (server clock %+.1fms from this one), burst %d, cap %d\n",
		q.SessionID, q.Total, q.End.Sub(q.Start), q.Start.Format(time.RFC3339Nano), rep.ClockOffsetMs, q.Burst, q.UserCap)
	client, transport := scenarioClient(o.Concurrency)
	defer transport.CloseIdleConnections()
	tapper := newRainTapper(transport, q, offset, users, tokens)
	tapper.run = ctx
	client.Transport = tapper
	rep.Scenario = "rain"

	// The taps start at the session's start on this clock and run a second past its end.
	startHere := q.Start.Add(-offset)
	if err := sleepUntil(ctx, startHere); err != nil {
		return rep, err
	}
	path := "/api/v1/rain/grab"
	if o.Token != nil {
		path = "/api/v1/rain/grab_by_token"
	}
	opts := Options{
		URL: o.Base + path, Concurrency: o.Concurrency, Client: client, Progress: o.Progress,
		Header:   http.Header{"Content-Type": {"application/json"}},
		Duration: time.Until(q.End.Add(-offset).Add(time.Second)),
	}
	sum, runErr := Run(ctx, opts)
	rep.Summary = sum
	rep.tally(tapper)
	if server, err := rainServerReport(ctx, admin, o, q.SessionID); err != nil {
		fmt.Fprintf(progress, "no session report: %v\n", err)
	} else {
		rep.Server = &server
	}
	rep.plan(q, tapper)
	fmt.Fprintln(stdout, sum.String())
	rep.print(stdout)
	if runErr != nil {
		// An interrupted run aborted taps in flight whose outcome nobody saw.
		return rep, runErr
	}
	if !o.Verify {
		return rep, nil
	}
	ver, err := verifyRain(ctx, o, q, tapper, progress)
	if err != nil {
		return rep, err
	}
	rep.Verification = &ver
	fmt.Fprintf(stdout, "recorded wins fell at most %d behind allowed − burst at the end of a second (at +%.0fs; 0 or less: every release taken as it came)\n",
		ver.Shortfall, ver.ShortfallAt)
	for _, d := range ver.Discrepancies[:min(len(ver.Discrepancies), 20)] {
		fmt.Fprintln(stdout, d)
	}
	if !printChecks(stdout, ver.Checks, ver.Pass, ver.Seconds) {
		return rep, ErrRainFailed
	}
	return rep, nil
}

func (o RainOptions) check() error {
	var errs []error
	cash := o.Prizes - o.SKUPrizes - o.AwardPrizes
	switch {
	case o.Prizes < 1 || o.Prizes > rain.MaxPrizes:
		errs = append(errs, fmt.Errorf("-prizes must be 1 to %d", rain.MaxPrizes))
	case o.SKUPrizes < 0 || o.AwardPrizes < 0 || cash < 0:
		errs = append(errs, errors.New("-sku-prizes and -award-prizes must not be negative nor exceed -prizes"))
	case cash > 0 && (o.Amount < 1 || (o.Max > 0 && o.Max < o.Amount)):
		errs = append(errs, errors.New("cash prizes need -amount of at least 0.01, and -max (when set) not below it"))
	case o.SKUPrizes > 0 && o.SKU <= 0:
		errs = append(errs, errors.New("-sku-prizes needs -sku"))
	case o.AwardPrizes > 0 && o.AwardID <= 0:
		errs = append(errs, errors.New("-award-prizes needs -award"))
	}
	if o.Users < 1 || o.Concurrency < 1 {
		errs = append(errs, errors.New("-users and -c must be at least 1"))
	}
	if o.UserCap < 1 || o.UserCap > rain.MaxUserCap {
		errs = append(errs, fmt.Errorf("-user-cap must be 1 to %d", rain.MaxUserCap))
	}
	if o.Burst > o.Prizes {
		errs = append(errs, errors.New("-burst must not exceed -prizes"))
	}
	if o.Duration < time.Second || o.Duration > rain.MaxDuration {
		errs = append(errs, fmt.Errorf("-d must be 1s to %s", rain.MaxDuration))
	}
	if o.Lead < 0 || o.WinWait < 0 || o.Skew < 0 {
		errs = append(errs, errors.New("-lead, -win-wait and -skew must not be negative"))
	}
	if o.Verify && o.Source == nil {
		errs = append(errs, errors.New("-verify needs the session's rows, and nothing reads them"))
	}
	errs = append(errs, runChecks(o.Duration, 0, 0, o.AdminToken, o.Prefix, o.Prefix+"-"+strconv.Itoa(max(o.Users-1, 0)))...)
	if len(errs) > 0 {
		return fmt.Errorf("bench rain: %w", errors.Join(errs...))
	}
	return nil
}

// specs are the session's prize lines.
func (o RainOptions) specs() []rain.PrizeSpec {
	var ps []rain.PrizeSpec
	if cash := o.Prizes - o.SKUPrizes - o.AwardPrizes; cash > 0 {
		if o.Max > 0 {
			ps = append(ps, rain.PrizeSpec{Kind: rain.KindCash, Min: o.Amount, Max: o.Max, Count: cash})
		} else {
			ps = append(ps, rain.PrizeSpec{Kind: rain.KindCash, Amount: o.Amount, Count: cash})
		}
	}
	if o.SKUPrizes > 0 {
		ps = append(ps, rain.PrizeSpec{Kind: rain.KindSKU, SKU: o.SKU, Count: o.SKUPrizes})
	}
	if o.AwardPrizes > 0 {
		ps = append(ps, rain.PrizeSpec{Kind: rain.KindAward, AwardID: o.AwardID, Count: o.AwardPrizes})
	}
	return ps
}

// rainCreate is the body of POST /api/v1/admin/rain/sessions.
type rainCreate struct {
	Title     string           `json:"title"`
	StartTime int64            `json:"startTime"`
	EndTime   int64            `json:"endTime"`
	UserCap   int              `json:"userCap"`
	Burst     int              `json:"burst"`
	Weights   []int            `json:"weights,omitempty"`
	Budget    money.Cents      `json:"budget,omitempty"`
	Prizes    []rain.PrizeSpec `json:"prizes"`
}

// rainListed is a session of GET /api/v1/rain/sessions, as far as the bench reads it.
type rainListed struct {
	SessionID int64 `json:"sessionId"`
	StartTime int64 `json:"startTime"`
	EndTime   int64 `json:"endTime"`
}

// createSession tops up the SKU's stock for the SKU prizes (which arming reserves),
// creates the session to start o.Lead from now, and reads it back from the session list
// with the server's time. It returns the session's plan, on the server's clock, and the
// server's clock minus this one's (from the midpoint of the list's round trip).
func createSession(ctx context.Context, client *http.Client, o RainOptions) (rain.Quota, time.Duration, error) {
	if o.SKUPrizes > 0 {
		topUp, _ := json.Marshal(map[string]any{"sku": o.SKU, "units": o.SKUPrizes})
		if env, err := Call(ctx, client, http.MethodPost, o.Base+"/api/v1/admin/stock/add", o.AdminToken, topUp, nil); err != nil || env.Code != "0000" {
			if err == nil {
				err = fmt.Errorf("%s %s", env.Code, env.Info)
			}
			return rain.Quota{}, 0, fmt.Errorf("top up sku %d by %d units: %w", o.SKU, o.SKUPrizes, err)
		}
	}
	start := time.Now().Add(o.Lead)
	body, err := json.Marshal(rainCreate{
		Title: "bench " + o.Prefix, StartTime: start.UnixMilli(), EndTime: start.Add(o.Duration).UnixMilli(),
		UserCap: o.UserCap, Burst: o.Burst, Weights: o.Weights, Budget: o.Budget, Prizes: o.specs(),
	})
	if err != nil {
		return rain.Quota{}, 0, err
	}
	var created struct {
		SessionID int64 `json:"sessionId"`
	}
	env, err := Call(ctx, client, http.MethodPost, o.Base+"/api/v1/admin/rain/sessions", o.AdminToken, body, &created)
	if err != nil {
		return rain.Quota{}, 0, fmt.Errorf("create rain session: %w", err)
	}
	if env.Code != "0000" || created.SessionID <= 0 {
		return rain.Quota{}, 0, fmt.Errorf("create rain session of %d prizes: %s %s", o.Prizes, env.Code, env.Info)
	}
	var list struct {
		ServerTime int64        `json:"serverTime"`
		Sessions   []rainListed `json:"sessions"`
	}
	sent := time.Now()
	env, err = Call(ctx, client, http.MethodGet, o.Base+"/api/v1/rain/sessions", "", nil, &list)
	if err != nil {
		return rain.Quota{}, 0, fmt.Errorf("list rain sessions: %w", err)
	}
	mid := sent.Add(time.Since(sent) / 2)
	if env.Code != "0000" || list.ServerTime <= 0 {
		return rain.Quota{}, 0, fmt.Errorf("list rain sessions: %s %s", env.Code, env.Info)
	}
	i := slices.IndexFunc(list.Sessions, func(s rainListed) bool { return s.SessionID == created.SessionID })
	if i < 0 {
		return rain.Quota{}, 0, fmt.Errorf("rain session %d created but not listed", created.SessionID)
	}
	s := list.Sessions[i]
	q := rain.Quota{SessionID: created.SessionID, SeqNo: 1, Start: time.UnixMilli(s.StartTime), End: time.UnixMilli(s.EndTime),
		Total: o.Prizes, Burst: o.Burst, Weights: o.Weights, UserCap: o.UserCap}
	if err := q.Validate(); err != nil {
		return rain.Quota{}, 0, fmt.Errorf("rain session %d as listed: %w", created.SessionID, err)
	}
	return q, time.UnixMilli(list.ServerTime).Sub(mid), nil
}

// rainServerReport reads the session's report.
func rainServerReport(ctx context.Context, client *http.Client, o RainOptions, id int64) (RainServerReport, error) {
	var r RainServerReport
	env, err := Call(ctx, client, http.MethodGet, fmt.Sprintf("%s/api/v1/admin/rain/sessions/%d", o.Base, id), o.AdminToken, nil, &r)
	if err != nil {
		return r, err
	}
	if env.Code != "0000" {
		return r, fmt.Errorf("rain session %d report: %s %s", id, env.Code, env.Info)
	}
	return r, nil
}

// sleepUntil waits until t, or until ctx is done.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// rainTapper is the transport of the taps: it picks each tap's user, round-robin over the
// users, writes its body (or its token), and reads every answer on its way to the load
// generator, which keeps only the envelope code, to count what each user was answered
// and when the wins were. Only answers with "won":true are decoded.
type rainTapper struct {
	next   http.RoundTripper
	offset time.Duration // server clock − this clock
	users  []string
	bodies [][]byte // by user; nil with tokens
	tokens []string // "Bearer …" by user; nil without
	body   []byte   // the one body with tokens

	// run is the context of the run: only its end aborts a tap. (A tap cut off by the
	// client's own timeout has a done context too, but may have won.)
	run context.Context

	seq        atomic.Uint64
	wins       []atomic.Int32
	cash       []atomic.Int64
	unknown    []atomic.Int32
	misses     atomic.Int64
	unanswered atomic.Int64

	mu    sync.Mutex
	times []time.Time // the wins' answers, on the server's clock
	kinds map[rain.Kind]int
}

// newRainTapper returns the transport of taps in session q over next; with tokens (the
// users' Authorization headers, by user) the taps name their user by token.
func newRainTapper(next http.RoundTripper, q rain.Quota, offset time.Duration, users, tokens []string) *rainTapper {
	t := &rainTapper{next: next, offset: offset, users: users, tokens: tokens,
		wins: make([]atomic.Int32, len(users)), cash: make([]atomic.Int64, len(users)), unknown: make([]atomic.Int32, len(users)),
		kinds: map[rain.Kind]int{}}
	sid := strconv.FormatInt(q.SessionID, 10)
	if tokens != nil {
		t.body = []byte(`{"sessionId":` + sid + `}`)
		return t
	}
	t.bodies = make([][]byte, len(users))
	for i, u := range users {
		id, _ := json.Marshal(u)
		t.bodies[i] = []byte(`{"userId":` + string(id) + `,"sessionId":` + sid + `}`)
	}
	return t
}

// RoundTrip implements http.RoundTripper: it sends a copy of req with the next user's
// body, reads the whole answer, which is small, and hands the load generator a copy.
func (t *rainTapper) RoundTrip(req *http.Request) (*http.Response, error) {
	u := int((t.seq.Add(1) - 1) % uint64(len(t.users)))
	r := new(http.Request)
	*r = *req
	body := t.body
	if t.tokens != nil {
		r.Header = req.Header.Clone()
		r.Header.Set("Authorization", t.tokens[u])
	} else {
		body = t.bodies[u]
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	r.ContentLength = int64(len(body))
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		t.lost(req, u)
		return nil, err
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.lost(req, u)
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	t.observe(u, resp.StatusCode, raw, time.Now())
	return resp, nil
}

// lost counts a tap without an answer as an unknown outcome, unless the run aborted it.
// The request's own context does not tell: the client's per-request timeout ends it as
// well, and a tap that timed out there may have won (a node stalled by a failover answers
// the win after the client gave up).
func (t *rainTapper) lost(_ *http.Request, u int) {
	if t.run != nil && t.run.Err() != nil {
		return
	}
	t.unanswered.Add(1)
	t.unknown[u].Add(1)
}

var wonTrue = []byte(`"won":true`)

func (t *rainTapper) observe(u, status int, raw []byte, at time.Time) {
	code := string(envelopeCode(raw))
	switch {
	case code == "":
		// Not the server's answer: a proxy's 502 or 504, the node having died or
		// stalled with the tap, which may have won.
		t.unknown[u].Add(1)
	case status != http.StatusOK:
	case code == "0009":
		t.unknown[u].Add(1)
	case code != "0000":
	case !bytes.Contains(raw, wonTrue):
		t.misses.Add(1)
	default:
		var env struct {
			Data struct {
				Won    bool        `json:"won"`
				Kind   rain.Kind   `json:"kind"`
				Amount money.Cents `json:"amount"`
			} `json:"data"`
		}
		if json.Unmarshal(raw, &env) != nil || !env.Data.Won {
			t.misses.Add(1)
			return
		}
		t.wins[u].Add(1)
		if env.Data.Kind == rain.KindCash {
			t.cash[u].Add(int64(env.Data.Amount))
		}
		t.mu.Lock()
		t.times = append(t.times, at.Add(t.offset))
		t.kinds[env.Data.Kind]++
		t.mu.Unlock()
	}
}

// answered returns what each user who won or may have won was answered.
func (t *rainTapper) answered() []reconcile.RainAnswered {
	var out []reconcile.RainAnswered
	for i, u := range t.users {
		a := reconcile.RainAnswered{UserID: u, Wins: int(t.wins[i].Load()), Cash: money.Cents(t.cash[i].Load()), Unknown: int(t.unknown[i].Load())}
		if a.Wins > 0 || a.Unknown > 0 {
			out = append(out, a)
		}
	}
	return out
}

// winTimes returns the instants of the won answers, on the server's clock, sorted.
func (t *rainTapper) winTimes() []time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	ts := slices.Clone(t.times)
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	return ts
}

// tally fills the report's counts from the run's summary and the tapper.
func (rep *RainReport) tally(t *rainTapper) {
	s := rep.Summary
	rep.Missed = t.misses.Load()
	rep.NotStarted, rep.Ended, rep.Capped = s.Codes["ERR_RAIN_001"], s.Codes["ERR_RAIN_002"], s.Codes["ERR_RAIN_003"]
	rep.Retry, rep.Unanswered = s.Codes["0009"], t.unanswered.Load()
	t.mu.Lock()
	rep.Won = int64(len(t.times))
	rep.WonKinds = maps.Clone(t.kinds)
	t.mu.Unlock()
	for i := range t.cash {
		rep.WonCash += money.Cents(t.cash[i].Load())
	}
	rep.Other = s.Requests - s.TransportErrors - rep.Won - rep.Missed - rep.NotStarted - rep.Ended - rep.Capped - rep.Retry
	if s.Duration > 0 {
		rep.TapsPerSecond = float64(s.Requests-s.TransportErrors) / s.Duration
	}
}

// plan fills the table of the session's seconds and the last tenth's wins.
func (rep *RainReport) plan(q rain.Quota, t *rainTapper) {
	times := t.winTimes()
	slicesAt := map[int]RainSlice{}
	if rep.Server != nil {
		for _, s := range rep.Server.Slices {
			slicesAt[int((s.Start-q.Start.UnixMilli())/1000)] = s
		}
	}
	n := int((q.End.Sub(q.Start) + time.Second - 1) / time.Second)
	answered := 0
	for i := range n + 1 {
		end := q.Start.Add(time.Duration(i+1) * time.Second)
		for answered < len(times) && times[answered].Before(end) {
			answered++
		}
		sec := RainSecond{Second: i, Allowed: q.Allowed(end), ServerAllowed: -1, ServerGranted: -1, Answered: answered}
		if s, ok := slicesAt[i]; ok {
			sec.ServerAllowed, sec.ServerGranted = s.Allowed, s.Granted
		}
		rep.Seconds = append(rep.Seconds, sec)
	}
	from := q.Start.Add(q.End.Sub(q.Start) * 9 / 10)
	for _, at := range times {
		if !at.Before(from) {
			rep.LastTenth++
		}
	}
	if rep.Server != nil {
		// The grants after the last slice that ends by the last tenth's start: to within
		// a slice, and unknown when no slice ends by then (a session under 1.2s).
		before := -1
		for _, s := range rep.Server.Slices {
			if s.Start+1000 <= from.UnixMilli() {
				before = max(before, s.Granted)
			}
		}
		if before >= 0 {
			rep.ServerLastTenth = rep.Server.Granted - before
		}
	}
}

// print writes the answers and the table of the plan against the grants.
func (rep *RainReport) print(w io.Writer) {
	fmt.Fprintf(w, "taps answered %.1f/s: %d won (%s cash; %s), %d missed (0000), %d ERR_RAIN_001, %d ERR_RAIN_002, %d ERR_RAIN_003, %d 0009, %d unanswered, %d other\n",
		rep.TapsPerSecond, rep.Won, rep.WonCash, describeKinds(rep.WonKinds), rep.Missed, rep.NotStarted, rep.Ended, rep.Capped,
		rep.Retry, rep.Unanswered, rep.Other)
	fmt.Fprintf(w, "latency p50 %.3fms p99 %.3fms\n", rep.Summary.Latency.P50, rep.Summary.Latency.P99)
	server := "no report"
	if rep.Server != nil {
		server = fmt.Sprintf("%d granted, %d released of %d, seqNo %d on %d nodes", rep.Server.Granted, rep.Server.Released,
			rep.Server.Total, rep.Server.SeqNo, len(rep.Server.Nodes))
	}
	fmt.Fprintf(w, "last tenth of the session: %d wins answered, %d granted by the report; server: %s\n", rep.LastTenth, rep.ServerLastTenth, server)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "second\tallowed\tserver allowed\tserver granted\tanswered\tbehind allowed-burst\t")
	lag := 0
	for _, s := range rep.Seconds {
		behind := ""
		if s.ServerGranted >= 0 {
			d := s.Allowed - rep.Burst - s.ServerGranted
			behind = strconv.Itoa(max(d, 0))
			lag = max(lag, d)
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%d\t%s\t\n", s.Second, s.Allowed, orDash(s.ServerAllowed), orDash(s.ServerGranted), s.Answered, behind)
	}
	tw.Flush()
	if rep.Server != nil {
		fmt.Fprintf(w, "grants fell at most %d behind allowed − burst (0: kept up with the plan)\n", max(lag, 0))
	}
}

func orDash(n int) string {
	if n < 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

func describeKinds(k map[rain.Kind]int) string {
	var parts []string
	for _, kind := range []rain.Kind{rain.KindCash, rain.KindSKU, rain.KindAward} {
		if k[kind] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", k[kind], kind))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// drainTimeoutRain bounds the wait for the win consumer after a run.
const drainTimeoutRain = 10 * time.Minute

// verifyRain waits for the win consumer (o.Drain), then until the recorded wins cover the
// answers (at most o.WinWait), and checks the session's rows and the answers.
func verifyRain(ctx context.Context, o RainOptions, q rain.Quota, t *rainTapper, progress io.Writer) (RainVerification, error) {
	start := time.Now()
	var out RainVerification
	if o.Drain != nil {
		fmt.Fprintf(progress, "waiting for the win consumer\n")
		dctx, cancel := context.WithTimeout(ctx, drainTimeoutRain)
		err := o.Drain(dctx)
		cancel()
		if err != nil {
			return out, fmt.Errorf("bench rain: wait for the win consumer: %w", err)
		}
	}
	answered := t.answered()
	fmt.Fprintf(progress, "waiting for the wins to be recorded\n")
	recorded, err := waitRecorded(ctx, o.Source, q.SessionID, answered, o.WinWait, progress)
	if err != nil {
		return out, err
	}
	out.Recorded, out.WaitSeconds = recorded, time.Since(start).Seconds()
	rows, err := reconcile.ReadRain(ctx, o.Source, q.SessionID)
	if err != nil {
		return out, err
	}
	out.Checks = append(out.Checks, reconcile.RainAnswerChecks(q, answered, t.winTimes(), o.Skew, rows.Wins)...)
	out.Checks = append(out.Checks, reconcile.RainChecks(rows, o.Skew)...)
	for _, d := range reconcile.RainDiscrepancies(rows, o.Skew) {
		out.Discrepancies = append(out.Discrepancies, d.String())
	}
	var seconds []time.Time
	for at := q.Start.Add(time.Second); !at.After(q.End); at = at.Add(time.Second) {
		seconds = append(seconds, at)
	}
	if len(seconds) > 0 {
		var when time.Time
		out.Shortfall, when = reconcile.RainShortfall(q, reconcile.WinTimes(rows.Wins), seconds)
		out.ShortfallAt = when.Sub(q.Start).Seconds()
	}
	out.Pass = out.Checks.Pass()
	out.Seconds = time.Since(start).Seconds()
	return out, nil
}

// waitRecorded polls the session's recorded wins until every user has at least the wins
// it was answered, or wait has passed; it returns the number recorded.
func waitRecorded(ctx context.Context, src reconcile.RainSource, id int64, answered []reconcile.RainAnswered, wait time.Duration, progress io.Writer) (int, error) {
	deadline := time.Now().Add(wait)
	lastReport := time.Now()
	want := 0
	for _, a := range answered {
		want += a.Wins
	}
	for {
		wins, err := src.SessionWins(ctx, id)
		if err != nil {
			return 0, fmt.Errorf("rain session %d wins: %w", id, err)
		}
		byUser := map[string]int{}
		for _, w := range wins {
			byUser[w.UserID]++
		}
		short := 0
		for _, a := range answered {
			if byUser[a.UserID] < a.Wins {
				short++
			}
		}
		if short == 0 || !time.Now().Before(deadline) {
			return len(wins), nil
		}
		if time.Since(lastReport) >= time.Second {
			fmt.Fprintf(progress, "%d wins recorded of %d answered; %d users short\n", len(wins), want, short)
			lastReport = time.Now()
		}
		timer := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			timer.Stop()
			return 0, ctx.Err()
		case <-timer.C:
		}
	}
}
