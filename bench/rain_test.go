package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/rain"
	"github.com/bigmarket/bigmarket/reconcile"
)

// rainServer is a one-session rain server in memory, speaking the API the bench taps: it
// paces by the plan unless unpaced, and is also the bench's source of rows, which can
// hide a recorded win (hide) to look like a win lost between the answer and its row.
type rainServer struct {
	unpaced bool
	hide    bool
	// stall holds the answer to the first win this long (the lock released), as a node
	// held up by a failover answers a win after the client's timeout.
	stall   time.Duration
	stalled bool

	mu      sync.Mutex
	created rainCreate
	q       rain.Quota
	prizes  []rain.Prize
	wins    []rain.Win
	byUser  map[string]int
	tokens  int // grabs by token
}

const rainTestToken = "admin"

func (s *rainServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	reply := func(code string, data any) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"code": code, "info": code, "data": data})
	}
	admin := r.Header.Get("Authorization") == "Bearer "+rainTestToken
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/api/v1/admin/rain/sessions" && admin:
		if err := json.NewDecoder(r.Body).Decode(&s.created); err != nil {
			reply("0002", nil)
			return
		}
		c := s.created
		s.q = rain.Quota{SessionID: 42, SeqNo: 1, Start: time.UnixMilli(c.StartTime), End: time.UnixMilli(c.EndTime),
			Burst: c.Burst, Weights: c.Weights, UserCap: c.UserCap}
		for _, spec := range c.Prizes {
			for range spec.Count {
				s.prizes = append(s.prizes, rain.Prize{Index: len(s.prizes), Kind: spec.Kind, Amount: spec.Amount})
			}
		}
		s.q.Total = len(s.prizes)
		if s.q.Validate() != nil {
			reply("0002", nil)
			return
		}
		s.byUser = map[string]int{}
		reply("0000", map[string]any{"sessionId": 42})
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/rain/sessions":
		reply("0000", map[string]any{"serverTime": now.UnixMilli(), "sessions": []map[string]any{
			{"sessionId": 42, "title": s.created.Title, "startTime": s.q.Start.UnixMilli(), "endTime": s.q.End.UnixMilli()}}})
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/admin/rain/sessions/42" && admin:
		var slices []RainSlice
		for at := s.q.Start; at.Before(s.q.End); at = at.Add(time.Second) {
			end := at.Add(time.Second)
			granted := 0
			for _, w := range s.wins {
				if w.Time.Before(end) {
					granted++
				}
			}
			slices = append(slices, RainSlice{Start: at.UnixMilli(), Allowed: s.q.Allowed(end), Granted: granted})
		}
		reply("0000", RainServerReport{ServerTime: now.UnixMilli(), Total: s.q.Total, Released: s.q.Allowed(now), Granted: len(s.wins),
			SeqNo: 1, Nodes: []rain.NodeSeq{{NodeID: "n1", SeqNo: 1}}, SliceSeconds: 1, Slices: slices})
	case r.Method == http.MethodPost && (r.URL.Path == "/api/v1/rain/grab" || r.URL.Path == "/api/v1/rain/grab_by_token"):
		var in struct {
			UserID    string `json:"userId"`
			SessionID int64  `json:"sessionId"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.SessionID != 42 {
			reply("0002", nil)
			return
		}
		if strings.HasSuffix(r.URL.Path, "_by_token") {
			user, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer tok-")
			if !ok || in.UserID != "" {
				reply("0002", nil)
				return
			}
			in.UserID = user
			s.tokens++
		}
		switch {
		case now.Before(s.q.Start):
			reply("ERR_RAIN_001", nil)
		case !now.Before(s.q.End) || len(s.wins) == len(s.prizes):
			reply("ERR_RAIN_002", nil)
		case s.byUser[in.UserID] >= s.q.UserCap:
			reply("ERR_RAIN_003", nil)
		case !s.unpaced && len(s.wins) >= s.q.Allowed(now):
			reply("0000", map[string]any{"won": false})
		default:
			p := s.prizes[len(s.wins)]
			s.byUser[in.UserID]++
			s.wins = append(s.wins, rain.Win{SessionID: 42, UserID: in.UserID, N: s.byUser[in.UserID], Prize: p, Time: now})
			if s.stall > 0 && !s.stalled {
				s.stalled = true
				s.mu.Unlock()
				time.Sleep(s.stall)
				s.mu.Lock()
			}
			reply("0000", map[string]any{"won": true, "kind": p.Kind, "amount": p.Amount})
		}
	default:
		reply("0002", nil)
	}
}

// The rows, as reconcile.RainSource.

func (s *rainServer) Session(_ context.Context, id int64) (rain.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id != 42 {
		return rain.Session{}, rain.ErrNotFound
	}
	return rain.Session{ID: 42, Quota: s.q, Budget: s.created.Budget, Specs: s.created.Prizes, Armed: len(s.prizes), State: rain.StateEnded}, nil
}

func (s *rainServer) Prizes(context.Context, int64) ([]rain.Prize, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]rain.Prize(nil), s.prizes...), nil
}

func (s *rainServer) SessionWins(context.Context, int64) ([]rain.Win, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	wins := append([]rain.Win(nil), s.wins...)
	if s.hide && len(wins) > 0 {
		wins = wins[1:]
	}
	return wins, nil
}

func (s *rainServer) RainGrants(_ context.Context, wins []rain.Win) (map[string]reconcile.RainGrant, error) {
	g := map[string]reconcile.RainGrant{}
	for _, w := range wins {
		g[w.BusinessNo()] = reconcile.RainGrant{Credits: []reconcile.CreditOrder{{UserID: w.UserID, Name: rain.NameWin,
			Type: credit.Forward, Amount: w.Prize.Amount, BusinessNo: w.BusinessNo()}}}
	}
	return g, nil
}

func rainOptions(base string, src reconcile.RainSource) RainOptions {
	return RainOptions{
		Base: base, AdminToken: rainTestToken, Users: 30, Prefix: "r", Concurrency: 4,
		Duration: time.Second, Lead: 300 * time.Millisecond, Prizes: 20, Amount: 100, UserCap: 1, Burst: -1,
		Budget: 2000, Verify: true, Source: src, WinWait: 300 * time.Millisecond, Skew: 100 * time.Millisecond,
	}
}

func TestRunRain(t *testing.T) {
	t.Parallel()
	srv := &rainServer{}
	ts := httptest.NewServer(srv)
	defer ts.Close()

	var out bytes.Buffer
	rep, err := RunRain(context.Background(), rainOptions(ts.URL, srv), &out)
	if err != nil {
		t.Fatalf("RunRain: %v\n%s", err, out.String())
	}
	c := srv.created
	if c.UserCap != 1 || c.Burst != 1 || c.Budget != 2000 || len(c.Prizes) != 1 || c.Prizes[0] != (rain.PrizeSpec{Kind: rain.KindCash, Amount: 100, Count: 20}) ||
		c.EndTime-c.StartTime != 1000 {
		t.Errorf("created %+v", c)
	}
	srv.mu.Lock()
	wins := len(srv.wins)
	srv.mu.Unlock()
	if rep.SessionID != 42 || rep.Scenario != "rain" || rep.Won != int64(wins) || rep.WonCash != money.Cents(100*wins) || rep.WonKinds[rain.KindCash] != wins {
		t.Errorf("report: session %d, won %d of %s (%v); the server gave %d wins", rep.SessionID, rep.Won, rep.WonCash, rep.WonKinds, wins)
	}
	if wins == 0 || wins > 20 {
		t.Errorf("%d wins of 20 prizes", wins)
	}
	answers := rep.Won + rep.Missed + rep.NotStarted + rep.Ended + rep.Capped + rep.Retry + rep.Other
	if answers != rep.Summary.Requests-rep.Summary.TransportErrors || rep.Unanswered != rep.Summary.TransportErrors {
		t.Errorf("%d answers counted of %d taps (%d without an answer, %d counted)", answers, rep.Summary.Requests,
			rep.Summary.TransportErrors, rep.Unanswered)
	}
	if rep.Server == nil || rep.Server.Granted != wins || len(rep.Seconds) != 2 {
		t.Fatalf("server report %+v, seconds %+v", rep.Server, rep.Seconds)
	}
	// A win granted late in the second may be answered after it ends (a loaded machine):
	// by the end of second 0 at most every win is answered, and by the last second all.
	if s := rep.Seconds[0]; s.Allowed != 20 || s.ServerAllowed != 20 || s.ServerGranted != wins || s.Answered > wins {
		t.Errorf("second 0: %+v, want 20 allowed, %d granted and at most that answered", s, wins)
	}
	if s := rep.Seconds[len(rep.Seconds)-1]; s.Answered != wins {
		t.Errorf("last second: %+v, want all %d wins answered", s, wins)
	}
	v := rep.Verification
	if v == nil || !v.Pass || v.Recorded != wins || len(v.Checks) != 9 {
		t.Fatalf("verification %+v\n%s", v, out.String())
	}
	// One second's end, the session's: allowed 20 less the burst of 1, against every win.
	if v.Shortfall != 19-wins || v.ShortfallAt != 1 {
		t.Errorf("shortfall %d at +%.0fs, want %d at +1s", v.Shortfall, v.ShortfallAt, 19-wins)
	}
	for _, want := range []string{"PASS rain pacing", "PASS rain answers", "PASS rain late wins", "verification PASS", "session 42: 20 prizes"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunRainByToken(t *testing.T) {
	t.Parallel()
	srv := &rainServer{}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	o := rainOptions(ts.URL, srv)
	o.Token = func(user string) string { return "tok-" + user }
	o.Verify, o.Source = false, nil
	var out bytes.Buffer
	rep, err := RunRain(context.Background(), o, &out)
	if err != nil {
		t.Fatalf("RunRain: %v\n%s", err, out.String())
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if !rep.ByToken || srv.tokens == 0 || int64(srv.tokens) != rep.Summary.Requests-rep.Summary.TransportErrors || rep.Verification != nil {
		t.Errorf("%d grabs by token of %d taps; report %+v", srv.tokens, rep.Summary.Requests, rep)
	}
	for _, w := range srv.wins {
		if !strings.HasPrefix(w.UserID, "r-") {
			t.Errorf("win of user %q, want the token's r-… user", w.UserID)
		}
	}
}

// TestRunRainWinAfterClientTimeout answers the first win after the client's per-request
// timeout: that tap has no answer, so its outcome is unknown, and its recorded win is one
// the checks allow (not a win "answered none").
func TestRunRainWinAfterClientTimeout(t *testing.T) {
	t.Parallel()
	srv := &rainServer{stall: DefaultTimeout + time.Second}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	var out bytes.Buffer
	rep, err := RunRain(context.Background(), rainOptions(ts.URL, srv), &out)
	if err != nil {
		t.Fatalf("RunRain: %v\n%s", err, out.String())
	}
	if rep.Summary.TransportErrors < 1 || rep.Unanswered != rep.Summary.TransportErrors {
		t.Errorf("%d taps without an answer, %d counted unknown; want the stalled tap among them, all counted",
			rep.Summary.TransportErrors, rep.Unanswered)
	}
	srv.mu.Lock()
	wins := len(srv.wins)
	srv.mu.Unlock()
	if v := rep.Verification; v == nil || !v.Pass || v.Recorded != wins || rep.Won != int64(wins-1) {
		t.Fatalf("verification %+v, %d wins answered of %d recorded; want a pass with the stalled win unknown\n%s",
			rep.Verification, rep.Won, wins, out.String())
	}
}

func TestRunRainFails(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		srv  *rainServer
		want []string
	}{
		// Every prize goes at once: far over a plan that releases 1 + 20/s.
		{"unpaced", &rainServer{unpaced: true}, []string{"FAIL rain pacing", "FAIL rain answer pacing"}},
		// A win answered but never recorded.
		{"lost win", &rainServer{hide: true}, []string{"FAIL rain answers"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ts := httptest.NewServer(c.srv)
			defer ts.Close()
			var out bytes.Buffer
			rep, err := RunRain(context.Background(), rainOptions(ts.URL, c.srv), &out)
			if !errors.Is(err, ErrRainFailed) || rep.Verification == nil || rep.Verification.Pass {
				t.Fatalf("RunRain: %v, want ErrRainFailed\n%s", err, out.String())
			}
			for _, want := range c.want {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

func TestRainOptionsCheck(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		change func(o *RainOptions)
		want   string
	}{
		{"no prizes", func(o *RainOptions) { o.Prizes = 0 }, "-prizes"},
		{"more SKU prizes than prizes", func(o *RainOptions) { o.SKUPrizes, o.SKU = 21, 9011 }, "-sku-prizes"},
		{"SKU prizes without a SKU", func(o *RainOptions) { o.SKUPrizes = 1 }, "-sku"},
		{"award prizes without an award", func(o *RainOptions) { o.AwardPrizes = 1 }, "-award"},
		{"a range below its minimum", func(o *RainOptions) { o.Max = 50 }, "-max"},
		{"cap 0", func(o *RainOptions) { o.UserCap = 0 }, "-user-cap"},
		{"a burst beyond the prizes", func(o *RainOptions) { o.Burst = 21 }, "-burst"},
		{"a session under a second", func(o *RainOptions) { o.Duration = 500 * time.Millisecond }, "-d"},
		{"verify with nothing to read", func(o *RainOptions) { o.Source = nil }, "-verify"},
		{"no admin token", func(o *RainOptions) { o.AdminToken = "" }, "admin token"},
	} {
		o := rainOptions("http://127.0.0.1:1", &rainServer{})
		o.Burst = 1
		c.change(&o)
		if err := o.check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %s", c.name, err, c.want)
		}
	}
	o := rainOptions("http://127.0.0.1:1", &rainServer{})
	o.Burst = 1
	if err := o.check(); err != nil {
		t.Errorf("valid options: %v", err)
	}
	if got := fmt.Sprint(o.specs()); got != fmt.Sprint([]rain.PrizeSpec{{Kind: rain.KindCash, Amount: 100, Count: 20}}) {
		t.Errorf("specs %s", got)
	}
	o.Max, o.SKU, o.SKUPrizes, o.AwardID, o.AwardPrizes = 300, 9011, 3, 101, 2
	want := []rain.PrizeSpec{{Kind: rain.KindCash, Min: 100, Max: 300, Count: 15}, {Kind: rain.KindSKU, SKU: 9011, Count: 3}, {Kind: rain.KindAward, AwardID: 101, Count: 2}}
	if got := o.specs(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("specs %v, want %v", got, want)
	}
}
