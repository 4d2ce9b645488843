package rain

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/guard"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/money"
)

// fakeStore keeps sessions, prizes and recorded wins in memory, as the SQL store does.
type fakeStore struct {
	mu       sync.Mutex
	next     int64
	sessions map[int64]Session
	prizes   map[int64][]Prize
	wins     map[string]Win // msg id → recorded win
	ended    map[int64]int  // EndSession calls that wrote
	// SetQuotaFn, when set, runs first in SetQuota under the lock; an error is returned.
	SetQuotaFn func(f *fakeStore, q Quota, prev int64) error
	// ApplyFn, when set, decides a win's outcome before it is recorded.
	ApplyFn  func(Win) error
	setCalls int
}

func newFakeStore() *fakeStore {
	return &fakeStore{sessions: map[int64]Session{}, prizes: map[int64][]Prize{}, wins: map[string]Win{}, ended: map[int64]int{}}
}

func (f *fakeStore) CreateSession(_ context.Context, s Session, prizes []Prize) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	s.ID, s.Quota.SessionID = f.next, f.next
	f.sessions[s.ID], f.prizes[s.ID] = s, slices.Clone(prizes)
	return s.ID, nil
}

func (f *fakeStore) Session(_ context.Context, id int64) (Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sessions[id]
	if !ok {
		return Session{}, fmt.Errorf("session %d: %w", id, ErrNotFound)
	}
	return s, nil
}

func (f *fakeStore) Sessions(_ context.Context, endAfter time.Time) ([]Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Session
	for _, s := range f.sessions {
		if s.Quota.End.After(endAfter) {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b Session) int { return a.Quota.Start.Compare(b.Quota.Start) })
	return out, nil
}

func (f *fakeStore) Prizes(_ context.Context, id int64) ([]Prize, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.prizes[id]), nil
}

func (f *fakeStore) SetQuota(_ context.Context, q Quota, prev int64, specs []PrizeSpec, prizes []Prize) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setCalls++
	if f.SetQuotaFn != nil {
		if err := f.SetQuotaFn(f, q, prev); err != nil {
			return err
		}
	}
	s := f.sessions[q.SessionID]
	if s.Quota.SeqNo != prev || q.SeqNo != prev+1 {
		return fmt.Errorf("seq %d over %d: %w", q.SeqNo, s.Quota.SeqNo, ErrConflict)
	}
	s.Quota = q
	s.Specs = append(slices.Clone(s.Specs), specs...)
	s.Armed += len(prizes)
	f.sessions[q.SessionID] = s
	f.prizes[q.SessionID] = append(f.prizes[q.SessionID], prizes...)
	return nil
}

func (f *fakeStore) EndSession(_ context.Context, id int64, l Ledger) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.sessions[id]
	if s.State == StateEnded {
		return nil
	}
	s.State, s.Ledger = StateEnded, &l
	f.sessions[id] = s
	f.ended[id]++
	return nil
}

// ApplyWins records each win once by its msg id; a prize won by another win conflicts.
func (f *fakeStore) ApplyWins(_ context.Context, wins []Win) []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	errs := make([]error, len(wins))
	for i, w := range wins {
		if f.ApplyFn != nil {
			if errs[i] = f.ApplyFn(w); errs[i] != nil {
				continue
			}
		}
		if old, ok := f.wins[w.MsgID()]; ok {
			if old.Prize != w.Prize {
				errs[i] = fmt.Errorf("win %s names another prize: %w", w.MsgID(), ErrConflict)
			}
			continue
		}
		for _, old := range f.wins {
			if old.SessionID == w.SessionID && old.Prize.Index == w.Prize.Index {
				errs[i] = fmt.Errorf("prize %d won twice: %w", w.Prize.Index, ErrConflict)
			}
		}
		if errs[i] == nil {
			f.wins[w.MsgID()] = w
		}
	}
	return errs
}

func (f *fakeStore) Wins(_ context.Context, user string, id int64) ([]Win, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Win
	for _, w := range f.wins {
		if w.UserID == user && (id == 0 || w.SessionID == id) {
			out = append(out, w)
		}
	}
	return out, nil
}

func (f *fakeStore) SessionWins(_ context.Context, id int64) ([]Win, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Win
	for _, w := range f.wins {
		if w.SessionID == id {
			out = append(out, w)
		}
	}
	return out, nil
}

func (f *fakeStore) recorded() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.wins)
}

// hotSession is one session in the fake hot state, kept as the grab script keeps it.
type hotSession struct {
	start, end time.Time
	closed     bool
	pool       []Prize // popped from the front (the real SPOP is random)
	users      map[string]int
	wins       map[string]Win // "user:n"
	unacked    map[string]Win // user → win
	issued     int
	sec        map[int64]int
}

// fakeHot runs the grab script's rules in memory and counts the grabs that reach it.
type fakeHot struct {
	mu       sync.Mutex
	sessions map[int64]*hotSession
	pending  map[string]map[string]Win // user → msg id → win
	grabs    atomic.Int64
	loads    atomic.Int64
	// LoadErr, when set, fails Load.
	LoadErr error
	// hold, when set, makes Grab wait until it is closed (set it before any grab).
	hold chan struct{}
}

func newFakeHot() *fakeHot {
	return &fakeHot{sessions: map[int64]*hotSession{}, pending: map[string]map[string]Win{}}
}

func (h *fakeHot) Load(_ context.Context, s HotSession) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.LoadErr != nil {
		return false, h.LoadErr
	}
	h.loads.Add(1)
	if _, ok := h.sessions[s.ID]; ok {
		return false, nil
	}
	hs := &hotSession{start: s.Start, end: s.End, pool: slices.Clone(s.Left), users: map[string]int{},
		wins: map[string]Win{}, unacked: map[string]Win{}, sec: map[int64]int{}}
	for _, w := range s.Wins {
		hs.users[w.UserID]++
		hs.wins[fmt.Sprintf("%s:%d", w.UserID, w.N)] = w
		hs.issued++
		hs.sec[w.Time.Unix()]++
	}
	h.sessions[s.ID] = hs
	return true, nil
}

// lose drops a session as a Redis FLUSHALL would.
func (h *fakeHot) lose(id int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.sessions, id)
}

func (h *fakeHot) session(id int64) (*hotSession, error) {
	s, ok := h.sessions[id]
	if !ok {
		return nil, fmt.Errorf("rain session %d: %w", id, ErrUnavailable)
	}
	return s, nil
}

func (h *fakeHot) AddPrizes(_ context.Context, id int64, prizes []Prize) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, err := h.session(id)
	if err != nil {
		return err
	}
	s.pool = append(s.pool, prizes...)
	return nil
}

func (h *fakeHot) Grab(_ context.Context, id int64, user string, now time.Time, allowed, userCap int) (Outcome, error) {
	h.grabs.Add(1)
	if h.hold != nil {
		<-h.hold
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	s, err := h.session(id)
	if err != nil {
		return Outcome{}, err
	}
	if w, ok := s.unacked[user]; ok {
		return Outcome{Status: Again, Win: w, Issued: s.issued}, nil
	}
	switch {
	case s.closed || !now.Before(s.end):
		return Outcome{Status: Ended}, nil
	case now.Before(s.start):
		return Outcome{Status: NotStarted}, nil
	case s.users[user] >= userCap:
		return Outcome{Status: Capped, Issued: s.issued}, nil
	case s.issued >= allowed:
		return Outcome{Status: Paced, Issued: s.issued}, nil
	case len(s.pool) == 0:
		return Outcome{Status: Empty, Issued: s.issued}, nil
	}
	p := s.pool[0]
	s.pool = s.pool[1:]
	s.users[user]++
	s.issued++
	w := Win{SessionID: id, UserID: user, N: s.users[user], Prize: p, Time: now.Truncate(time.Millisecond)}
	s.wins[fmt.Sprintf("%s:%d", user, w.N)] = w
	s.unacked[user] = w
	s.sec[now.Unix()]++
	return Outcome{Status: Won, Win: w, Issued: s.issued}, nil
}

func (h *fakeHot) Acked(_ context.Context, w Win) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s, ok := h.sessions[w.SessionID]; ok && s.unacked[w.UserID].N == w.N {
		delete(s.unacked, w.UserID)
	}
	return nil
}

func (h *fakeHot) State(_ context.Context, id int64) (HotState, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, err := h.session(id)
	if err != nil {
		return HotState{}, err
	}
	sec := map[int64]int{}
	for k, v := range s.sec {
		sec[k] = v
	}
	return HotState{Issued: s.issued, Left: len(s.pool), PerSecond: sec}, nil
}

func (h *fakeHot) Wins(_ context.Context, id int64) ([]Win, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, err := h.session(id)
	if err != nil {
		return nil, err
	}
	var out []Win
	for _, w := range s.wins {
		out = append(out, w)
	}
	return out, nil
}

func (h *fakeHot) Close(_ context.Context, id int64) ([]Prize, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, err := h.session(id)
	if err != nil {
		return nil, err
	}
	s.closed = true
	return slices.Clone(s.pool), nil
}

func (h *fakeHot) AddPending(_ context.Context, w Win) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pending[w.UserID] == nil {
		h.pending[w.UserID] = map[string]Win{}
	}
	h.pending[w.UserID][w.MsgID()] = w
	return nil
}

func (h *fakeHot) Pending(_ context.Context, user string) ([]Win, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Win
	for _, w := range h.pending[user] {
		out = append(out, w)
	}
	return out, nil
}

func (h *fakeHot) DonePending(_ context.Context, wins []Win) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range wins {
		delete(h.pending[w.UserID], w.MsgID())
	}
	return nil
}

func (h *fakeHot) pendingOf(user string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.pending[user])
}

func (h *fakeHot) unacked(id int64, user string) (Win, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.sessions[id]
	if !ok {
		return Win{}, false
	}
	w, ok := s.unacked[user]
	return w, ok
}

// fakeEvents records the wins published; PublishFn, when set, may fail one.
type fakeEvents struct {
	mu        sync.Mutex
	published []Win
	PublishFn func(Win) error
}

func (e *fakeEvents) PublishWin(_ context.Context, w Win) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.PublishFn != nil {
		if err := e.PublishFn(w); err != nil {
			return err
		}
	}
	e.published = append(e.published, w)
	return nil
}

func (e *fakeEvents) all() []Win {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.published)
}

// fakeDrain counts the drains.
type fakeDrain struct{ calls atomic.Int64 }

func (d *fakeDrain) WaitApplied(context.Context) error { d.calls.Add(1); return nil }

// fakeBus records the versions put.
type fakeBus struct {
	mu   sync.Mutex
	puts []Quota
}

func (b *fakeBus) Put(_ context.Context, q Quota) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.puts = append(b.puts, q)
	return nil
}

func (b *fakeBus) Nodes(_ context.Context, id int64) ([]NodeSeq, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var seq int64
	for _, q := range b.puts {
		if q.SessionID == id {
			seq = max(seq, q.SeqNo)
		}
	}
	return []NodeSeq{{NodeID: "n1", SeqNo: seq}}, nil
}

// fakeReserver counts reserved units per SKU; ReserveFn may refuse one.
type fakeReserver struct {
	mu        sync.Mutex
	units     map[int64]int64
	ReserveFn func(sku, units int64) error
}

func (r *fakeReserver) ReserveSKU(_ context.Context, sku, units int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ReserveFn != nil {
		if err := r.ReserveFn(sku, units); err != nil {
			return err
		}
	}
	if r.units == nil {
		r.units = map[int64]int64{}
	}
	r.units[sku] += units
	return nil
}

func (r *fakeReserver) reserved() map[int64]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[int64]int64{}
	for k, v := range r.units {
		out[k] = v
	}
	return out
}

// fakeAwards knows awards 101 and 102.
type fakeAwards struct{}

func (fakeAwards) AwardExists(_ context.Context, id int) (bool, error) {
	return id == 101 || id == 102, nil
}

// fakeSKUs records recharges by business number, once; GrantFn may fail one.
type fakeSKUs struct {
	mu      sync.Mutex
	granted map[string]int64
	GrantFn func(user string, sku int64, no string) error
}

func (g *fakeSKUs) GrantReserved(_ context.Context, user string, sku int64, no string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.GrantFn != nil {
		if err := g.GrantFn(user, sku, no); err != nil {
			return err
		}
	}
	if g.granted == nil {
		g.granted = map[string]int64{}
	}
	g.granted[no] = sku
	return nil
}

// rig is a Service with its fakes.
type rig struct {
	s        *Service
	store    *fakeStore
	hot      *fakeHot
	events   *fakeEvents
	drain    *fakeDrain
	bus      *fakeBus
	agent    *Agent
	reserver *fakeReserver
	skus     *fakeSKUs
	clock    *testenv.Clock
}

// t1 is the start of the sessions the tests create.
var t1 = time.Date(2026, 12, 2, 20, 0, 0, 0, time.UTC)

func newRig(opts ...func(*Options)) *rig {
	r := &rig{
		store: newFakeStore(), hot: newFakeHot(), events: &fakeEvents{}, drain: &fakeDrain{}, bus: &fakeBus{},
		agent: &Agent{}, reserver: &fakeReserver{}, skus: &fakeSKUs{}, clock: testenv.NewClock(t1.Add(-time.Minute)),
	}
	o := Options{
		Store: r.store, Hot: r.hot, Events: r.events, Drain: r.drain, Bus: r.bus, Agent: r.agent,
		Reserver: r.reserver, Awards: fakeAwards{}, SKUs: r.skus, Now: r.clock.Now,
		Rand:           func() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) },
		PublishTimeout: 50 * time.Millisecond,
	}
	for _, f := range opts {
		f(&o)
	}
	r.s = NewService(o)
	return r
}

func intp(n int) *int { return &n }

// cash100 is a session of 100 fixed prizes of 1.00 over 100 s, no burst, cap 2: one
// prize released per second.
func cash100() CreateRequest {
	return CreateRequest{
		Title: "晚八点红包雨", Start: t1, End: t1.Add(100 * time.Second), UserCap: 2, Burst: intp(0),
		Prizes: []PrizeSpec{{Kind: KindCash, Amount: 100, Count: 100}},
	}
}

func (r *rig) create(t *testing.T, req CreateRequest) Session {
	t.Helper()
	s, err := r.s.Create(context.Background(), req)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return s
}

func TestCreateChecks(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("雨", MaxTitle+1)
	for _, c := range []struct {
		name string
		edit func(*CreateRequest)
	}{
		{"empty title", func(r *CreateRequest) { r.Title = " " }},
		{"long title", func(r *CreateRequest) { r.Title = long }},
		{"end before start", func(r *CreateRequest) { r.End = r.Start }},
		{"end past", func(r *CreateRequest) { r.Start, r.End = t1.Add(-time.Hour), t1.Add(-2*time.Minute) }},
		{"too long", func(r *CreateRequest) { r.End = r.Start.Add(MaxDuration + time.Second) }},
		{"no cap", func(r *CreateRequest) { r.UserCap = 0 }},
		{"cap too high", func(r *CreateRequest) { r.UserCap = MaxUserCap + 1 }},
		{"burst above total", func(r *CreateRequest) { r.Burst = intp(106) }},
		{"negative weight", func(r *CreateRequest) { r.Weights = []int{1, -1} }},
		{"zero weights", func(r *CreateRequest) { r.Weights = []int{0, 0} }},
		{"no prizes", func(r *CreateRequest) { r.Prizes = nil }},
		{"zero count", func(r *CreateRequest) { r.Prizes[0].Count = 0 }},
		{"amount and range", func(r *CreateRequest) { r.Prizes[0].Min, r.Prizes[0].Max = 1, 5 }},
		{"min above max", func(r *CreateRequest) { r.Prizes[0] = PrizeSpec{Kind: KindCash, Min: 6, Max: 5, Count: 1} }},
		{"zero min", func(r *CreateRequest) { r.Prizes[0] = PrizeSpec{Kind: KindCash, Max: 5, Count: 1} }},
		{"cash with sku", func(r *CreateRequest) { r.Prizes[0].SKU = 9011 }},
		{"amount too large", func(r *CreateRequest) { r.Prizes[0].Amount = MaxAmount + 1 }},
		{"sku zero", func(r *CreateRequest) { r.Prizes = append(r.Prizes, PrizeSpec{Kind: KindSKU, Count: 1}) }},
		{"unknown award", func(r *CreateRequest) {
			r.Prizes = append(r.Prizes, PrizeSpec{Kind: KindAward, AwardID: 999, Count: 1})
		}},
		{"unknown kind", func(r *CreateRequest) { r.Prizes[0].Kind = "coupon" }},
		{"too many prizes", func(r *CreateRequest) {
			r.Prizes = append(r.Prizes, PrizeSpec{Kind: KindAward, AwardID: 101, Count: MaxPrizes})
		}},
		{"over budget", func(r *CreateRequest) {
			// 100 × 1.00 fixed plus 10 × up to 5.00: 150.00 of cash.
			r.Prizes = append(r.Prizes, PrizeSpec{Kind: KindCash, Min: 100, Max: 500, Count: 10})
			r.Budget = 149_99
		}},
		{"negative budget", func(r *CreateRequest) { r.Budget = -1 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig()
			req := cash100()
			req.Prizes = append(req.Prizes, PrizeSpec{Kind: KindSKU, SKU: 9011, Count: 5})
			c.edit(&req)
			_, err := r.s.Create(context.Background(), req)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			if len(r.store.sessions) != 0 || len(r.reserver.reserved()) != 0 {
				t.Fatalf("a refused request wrote %d sessions and reserved %v", len(r.store.sessions), r.reserver.reserved())
			}
		})
	}
}

func TestCreateArmsWritesLoadsAndSpreads(t *testing.T) {
	t.Parallel()
	r := newRig()
	req := cash100()
	req.Burst = nil
	req.Budget = 150_00 // exactly the cash the prizes can give: allowed
	req.Prizes = []PrizeSpec{
		{Kind: KindCash, Amount: 100, Count: 100},
		{Kind: KindCash, Min: 100, Max: 500, Count: 10},
		{Kind: KindSKU, SKU: 9011, Count: 30},
		{Kind: KindAward, AwardID: 101, Count: 7},
		{Kind: KindSKU, SKU: 9011, Count: 3},
	}
	s := r.create(t, req)
	const total = 150
	if s.ID == 0 || s.Quota.SessionID != s.ID || s.Quota.SeqNo != 1 || s.Quota.Total != total || s.Armed != total {
		t.Fatalf("session %+v: want an id, seqNo 1 and %d prizes", s, total)
	}
	if s.Quota.Burst != DefaultBurst(total) || s.Quota.Burst != 2 {
		t.Fatalf("burst %d, want the default %d", s.Quota.Burst, DefaultBurst(total))
	}
	prizes := r.store.prizes[s.ID]
	var tally Tally
	for i, p := range prizes {
		if p.Index != i {
			t.Fatalf("prize %d has index %d", i, p.Index)
		}
		tally.Add(p)
	}
	if tally.CashCount != 110 || tally.SKUs[9011] != 33 || tally.Awards[101] != 7 {
		t.Fatalf("armed %+v", tally)
	}
	if got := r.reserver.reserved(); len(got) != 1 || got[9011] != 33 {
		t.Fatalf("reserved %v, want 33 units of sku 9011 in one call", got)
	}
	if st, err := r.hot.State(context.Background(), s.ID); err != nil || st.Left != total || st.Issued != 0 {
		t.Fatalf("hot state %+v, %v: want %d prizes loaded", st, err, total)
	}
	if q := r.agent.Quota(s.ID); q == nil || q.SeqNo != 1 || q.Total != total {
		t.Fatalf("agent holds %+v", q)
	}
	if len(r.bus.puts) != 1 || r.bus.puts[0].SessionID != s.ID {
		t.Fatalf("bus puts %+v", r.bus.puts)
	}
}

func TestCreateWrittenButNotLoadedIsRebuiltByTheFirstGrab(t *testing.T) {
	t.Parallel()
	r := newRig()
	r.hot.LoadErr = errors.New("redis down")
	s := r.create(t, cash100())
	r.hot.mu.Lock()
	r.hot.LoadErr = nil
	r.hot.mu.Unlock()
	r.clock.Set(t1.Add(10 * time.Second))
	testenv.Eventually(t, 20*time.Second, "the first grabs rebuild the session and win", func() (bool, string) {
		res, err := r.s.Grab(context.Background(), "u1", s.ID)
		if err != nil && !errors.Is(err, ErrUnavailable) {
			t.Fatalf("grab: %v", err)
		}
		return res.Won, fmt.Sprint(err)
	})
}

func TestArmRangedCashWithinBoundsAndSeeded(t *testing.T) {
	t.Parallel()
	specs := []PrizeSpec{{Kind: KindCash, Min: 1, Max: 3, Count: 3000}, {Kind: KindCash, Amount: 7, Count: 2}}
	a := Arm(specs, 5, rand.New(rand.NewPCG(7, 8)))
	b := Arm(specs, 5, rand.New(rand.NewPCG(7, 8)))
	if !slices.Equal(a, b) {
		t.Fatal("the same seed armed different prizes")
	}
	seen := map[money.Cents]int{}
	for i, p := range a {
		if p.Index != 5+i {
			t.Fatalf("prize %d index %d, want %d", i, p.Index, 5+i)
		}
		if i < 3000 {
			if p.Amount < 1 || p.Amount > 3 {
				t.Fatalf("ranged amount %d outside [1, 3]", p.Amount)
			}
			seen[p.Amount]++
		} else if p.Amount != 7 {
			t.Fatalf("fixed amount %d, want 7", p.Amount)
		}
	}
	// Uniform: each of the three amounts about a third of the time, both ends included.
	for c := money.Cents(1); c <= 3; c++ {
		if seen[c] < 800 || seen[c] > 1200 {
			t.Fatalf("amount %d drawn %d times of 3000", c, seen[c])
		}
	}
	if c := Arm(specs, 5, rand.New(rand.NewPCG(9, 9))); slices.Equal(a, c) {
		t.Fatal("another seed armed the same amounts")
	}
}

func TestGrabFastPathsNeedNoRedis(t *testing.T) {
	t.Parallel()
	r := newRig()
	s := r.create(t, cash100())
	ctx := context.Background()
	if _, err := r.s.Grab(ctx, "u1", s.ID); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("before the start: %v", err)
	}
	r.clock.Set(t1.Add(100 * time.Second))
	if _, err := r.s.Grab(ctx, "u1", s.ID); !errors.Is(err, ErrEnded) {
		t.Fatalf("at the end: %v", err)
	}
	for _, u := range []string{"", " u1", "u\x00", strings.Repeat("u", 33)} {
		if _, err := r.s.Grab(ctx, u, s.ID); !errors.Is(err, ErrInvalid) {
			t.Fatalf("user %q: %v", u, err)
		}
	}
	if _, err := r.s.Grab(ctx, "u1", 999); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown session: %v", err)
	}
	if n := r.hot.grabs.Load(); n != 0 {
		t.Fatalf("%d grabs reached the hot state", n)
	}
}

func TestGrabWinsAndIsDurableBeforeItAnswers(t *testing.T) {
	t.Parallel()
	r := newRig()
	s := r.create(t, cash100())
	// A node that did not create the session loads its version from the Store.
	r.agent.Forget(s.ID)
	r.clock.Set(t1.Add(10 * time.Second))
	res, err := r.s.Grab(context.Background(), "u1", s.ID)
	if err != nil || !res.Won {
		t.Fatalf("grab: %+v, %v", res, err)
	}
	if pub := r.events.all(); len(pub) != 1 || pub[0] != res.Win {
		t.Fatalf("published %+v, want the win %+v", pub, res.Win)
	}
	if _, ok := r.hot.unacked(s.ID, "u1"); ok {
		t.Fatal("a published win is still unacknowledged")
	}
	if r.hot.pendingOf("u1") != 1 {
		t.Fatal("the win is not noted for the green channel")
	}
	if q := r.agent.Quota(s.ID); q == nil || q.SeqNo != 1 {
		t.Fatalf("agent holds %+v after the load", q)
	}
}

// TestPacedMissesAreAnsweredLocally checks that after a Paced outcome the node answers
// misses without Redis until the next release instant, and asks again from it.
func TestPacedMissesAreAnsweredLocally(t *testing.T) {
	t.Parallel()
	r := newRig()
	s := r.create(t, cash100()) // one prize a second
	ctx := context.Background()
	r.clock.Set(t1.Add(1500 * time.Millisecond)) // allowed 1
	if res, err := r.s.Grab(ctx, "u1", s.ID); err != nil || !res.Won {
		t.Fatalf("first grab: %+v, %v", res, err)
	}
	if res, err := r.s.Grab(ctx, "u2", s.ID); err != nil || res.Won {
		t.Fatalf("paced grab: %+v, %v; want a miss", res, err)
	}
	if n := r.hot.grabs.Load(); n != 2 {
		t.Fatalf("%d grabs reached the hot state, want 2", n)
	}
	for _, at := range []time.Duration{1500 * time.Millisecond, 1700 * time.Millisecond, 1999 * time.Millisecond} {
		r.clock.Set(t1.Add(at))
		for _, u := range []string{"u2", "u3", "u4"} {
			if res, err := r.s.Grab(ctx, u, s.ID); err != nil || res.Won {
				t.Fatalf("grab at %s: %+v, %v; want a local miss", at, res, err)
			}
		}
	}
	if n := r.hot.grabs.Load(); n != 2 {
		t.Fatalf("%d grabs reached the hot state before the next release, want 2", n)
	}
	r.clock.Set(t1.Add(2 * time.Second)) // the next release: allowed 2
	if res, err := r.s.Grab(ctx, "u3", s.ID); err != nil || !res.Won {
		t.Fatalf("grab at the next release: %+v, %v", res, err)
	}
	if n := r.hot.grabs.Load(); n != 3 {
		t.Fatalf("%d grabs reached the hot state, want 3", n)
	}
}

// TestGrabsInFlightAreHeldToTheReleasedPrizes checks that no more taps wait on Redis than
// prizes the plan has released and no reply has reported issued: the rest are misses
// answered at once, and every released prize is still won.
func TestGrabsInFlightAreHeldToTheReleasedPrizes(t *testing.T) {
	t.Parallel()
	r := newRig()
	s := r.create(t, cash100()) // one prize a second
	ctx := context.Background()
	r.clock.Set(t1.Add(2500 * time.Millisecond)) // allowed 2, nothing issued
	r.hot.hold = make(chan struct{})
	type answer struct {
		res GrabResult
		err error
	}
	answers := make(chan answer, 6)
	for i := range 6 {
		go func() {
			res, err := r.s.Grab(ctx, fmt.Sprintf("u%d", i), s.ID)
			answers <- answer{res, err}
		}()
	}
	// Four are answered while two wait on Redis: misses.
	for range 4 {
		a := <-answers
		if a.err != nil || a.res.Won {
			t.Fatalf("a tap beyond the released prizes: %+v, %v; want a miss", a.res, a.err)
		}
	}
	testenv.Eventually(t, 10*time.Second, "two grabs waiting on Redis", func() bool { return r.hot.grabs.Load() == 2 })
	close(r.hot.hold)
	for range 2 {
		if a := <-answers; a.err != nil || !a.res.Won {
			t.Fatalf("a tap let through: %+v, %v; want a win", a.res, a.err)
		}
	}
	if n := r.hot.grabs.Load(); n != 2 {
		t.Fatalf("%d grabs reached the hot state, want 2", n)
	}
	// The replies told of 2 issued: with nothing left to release, one tap goes to learn
	// when the next release is (and is Paced), the next is answered by the note.
	for _, u := range []string{"u6", "u7"} {
		if res, err := r.s.Grab(ctx, u, s.ID); err != nil || res.Won {
			t.Fatalf("tap with every released prize won: %+v, %v; want a miss", res, err)
		}
	}
	if n := r.hot.grabs.Load(); n != 3 {
		t.Fatalf("%d grabs reached the hot state, want 3", n)
	}
	r.clock.Set(t1.Add(3 * time.Second)) // the next release
	if res, err := r.s.Grab(ctx, "u8", s.ID); err != nil || !res.Won {
		t.Fatalf("tap at the next release: %+v, %v; want a win", res, err)
	}
}

func TestQuotaSwapClearsThePacedNote(t *testing.T) {
	t.Parallel()
	r := newRig()
	s := r.create(t, cash100())
	ctx := context.Background()
	r.clock.Set(t1.Add(1500 * time.Millisecond))
	if _, err := r.s.Grab(ctx, "u1", s.ID); err != nil {
		t.Fatal(err)
	}
	if res, err := r.s.Grab(ctx, "u2", s.ID); err != nil || res.Won {
		t.Fatalf("paced grab: %+v, %v", res, err)
	}
	if res, err := r.s.Grab(ctx, "u2", s.ID); err != nil || res.Won || r.hot.grabs.Load() != 2 {
		t.Fatalf("local miss: %+v, %v, %d hot grabs", res, err, r.hot.grabs.Load())
	}
	// A burst of 10 arrives as SeqNo 2: the note learned under SeqNo 1 no longer holds.
	q, err := r.s.UpdateQuota(ctx, s.ID, QuotaRequest{Burst: intp(10)})
	if err != nil || q.SeqNo != 2 {
		t.Fatalf("update: %+v, %v", q, err)
	}
	if res, err := r.s.Grab(ctx, "u2", s.ID); err != nil || !res.Won {
		t.Fatalf("grab after the swap: %+v, %v", res, err)
	}
	if n := r.hot.grabs.Load(); n != 3 {
		t.Fatalf("%d grabs reached the hot state, want 3", n)
	}
}

func TestEmptyPoolIsRememberedUntilANewVersion(t *testing.T) {
	t.Parallel()
	r := newRig()
	req := cash100()
	req.Burst = intp(50)
	s := r.create(t, req)
	ctx := context.Background()
	r.clock.Set(t1.Add(time.Second))
	// The pool runs short of the plan (prizes Redis never got): Empty.
	r.hot.mu.Lock()
	r.hot.sessions[s.ID].pool = nil
	r.hot.mu.Unlock()
	for range 3 {
		if _, err := r.s.Grab(ctx, "u1", s.ID); !errors.Is(err, ErrEnded) {
			t.Fatalf("grab on an empty pool: %v, want ErrEnded", err)
		}
	}
	if n := r.hot.grabs.Load(); n != 1 {
		t.Fatalf("%d grabs reached the hot state, want 1", n)
	}
	// A new version (a prize added) makes the note stale: the next grab asks Redis.
	if _, err := r.s.UpdateQuota(ctx, s.ID, QuotaRequest{Prizes: []PrizeSpec{{Kind: KindCash, Amount: 100, Count: 1}}}); err != nil {
		t.Fatal(err)
	}
	if res, err := r.s.Grab(ctx, "u1", s.ID); err != nil || !res.Won {
		t.Fatalf("grab after new prizes: %+v, %v", res, err)
	}
	if n := r.hot.grabs.Load(); n != 2 {
		t.Fatalf("%d grabs reached the hot state, want 2", n)
	}
}

// TestPublishFailureAnswersUnavailableThenTheRetryAnswersTheSameWin checks that a win
// whose event the broker did not store is not answered, and that the user's next tap
// publishes the same win again and answers it — even when the plan paced out meanwhile.
func TestPublishFailureAnswersUnavailableThenTheRetryAnswersTheSameWin(t *testing.T) {
	t.Parallel()
	r := newRig()
	s := r.create(t, cash100())
	ctx := context.Background()
	r.clock.Set(t1.Add(1500 * time.Millisecond))
	var fail atomic.Bool
	fail.Store(true)
	r.events.PublishFn = func(Win) error {
		if fail.Load() {
			return errors.New("nats: timeout")
		}
		return nil
	}
	_, err := r.s.Grab(ctx, "u1", s.ID)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("grab with the broker down: %v, want ErrUnavailable", err)
	}
	held, ok := r.hot.unacked(s.ID, "u1")
	if !ok {
		t.Fatal("the win taken is not held as unacknowledged")
	}
	// Another user finds the plan paced out: a local miss for everyone else from now on.
	if res, err := r.s.Grab(ctx, "u2", s.ID); err != nil || res.Won {
		t.Fatalf("u2: %+v, %v", res, err)
	}
	fail.Store(false)
	res, err := r.s.Grab(ctx, "u1", s.ID)
	if err != nil || !res.Won || res.Win != held {
		t.Fatalf("retry: %+v, %v; want the held win %+v", res, err, held)
	}
	if pub := r.events.all(); len(pub) != 1 || pub[0].MsgID() != held.MsgID() {
		t.Fatalf("published %+v", pub)
	}
	if _, ok := r.hot.unacked(s.ID, "u1"); ok {
		t.Fatal("the answered win is still unacknowledged")
	}
	if st, _ := r.hot.State(ctx, s.ID); st.Issued != 1 {
		t.Fatalf("issued %d, want 1: the retry took no second prize", st.Issued)
	}
}

// TestRetryOnAnotherNodeAnswersTheHeldWin: a win whose publish failed on one node is held
// in the hot state; another node that learned the plan is paced out answers the user's
// plain tap a miss without asking Redis, and the client's retry (after its 0009) reaches
// Redis there and is answered the held win.
func TestRetryOnAnotherNodeAnswersTheHeldWin(t *testing.T) {
	t.Parallel()
	r := newRig()
	s := r.create(t, cash100())
	ctx := context.Background()
	other := NewService(Options{Store: r.store, Hot: r.hot, Events: r.events, Drain: r.drain, Bus: r.bus, Agent: r.agent,
		Now: r.clock.Now, PublishTimeout: 50 * time.Millisecond})
	r.clock.Set(t1.Add(1500 * time.Millisecond))
	var fail atomic.Bool
	fail.Store(true)
	r.events.PublishFn = func(Win) error {
		if fail.Load() {
			return errors.New("nats: timeout")
		}
		return nil
	}
	if _, err := r.s.Grab(ctx, "u1", s.ID); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("grab with the broker down: %v, want ErrUnavailable", err)
	}
	held, ok := r.hot.unacked(s.ID, "u1")
	if !ok {
		t.Fatal("no win held")
	}
	fail.Store(false)
	// The other node learns that the plan is paced out, then answers taps locally.
	if res, err := other.Grab(ctx, "u2", s.ID); err != nil || res.Won {
		t.Fatalf("u2 on the other node: %+v, %v", res, err)
	}
	calls := r.hot.grabs.Load()
	if res, err := other.Grab(ctx, "u1", s.ID); err != nil || res.Won || r.hot.grabs.Load() != calls {
		t.Fatalf("plain tap of the holder on the other node: %+v, %v (%d grab calls, want %d)", res, err, r.hot.grabs.Load(), calls)
	}
	res, err := other.GrabRetry(ctx, "u1", s.ID)
	if err != nil || !res.Won || res.Win != held {
		t.Fatalf("retry on the other node: %+v, %v; want the held win %+v", res, err, held)
	}
	if _, ok := r.hot.unacked(s.ID, "u1"); ok {
		t.Fatal("the answered win is still unacknowledged")
	}
}

// TestLostSessionIsRebuiltWithoutRegranting checks that a session the hot state lost
// answers ErrUnavailable while it is rebuilt from the Store after a drain, and that the
// rebuilt pool lacks the prizes won and the users keep their wins against the cap.
func TestLostSessionIsRebuiltWithoutRegranting(t *testing.T) {
	t.Parallel()
	r := newRig()
	req := cash100()
	req.UserCap = 1
	req.Prizes = []PrizeSpec{{Kind: KindCash, Amount: 100, Count: 3}}
	req.Burst = intp(3)
	s := r.create(t, req)
	ctx := context.Background()
	r.clock.Set(t1.Add(time.Second))
	res, err := r.s.Grab(ctx, "u1", s.ID)
	if err != nil || !res.Won {
		t.Fatalf("grab: %+v, %v", res, err)
	}
	// The consumer applies it.
	if errs := r.s.ApplyWins(ctx, []Win{res.Win}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	r.hot.lose(s.ID)
	_, err = r.s.Grab(ctx, "u2", s.ID)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("grab during the rebuild: %v, want ErrUnavailable", err)
	}
	testenv.Eventually(t, 20*time.Second, "the session rebuilt", func() bool {
		_, err := r.hot.State(ctx, s.ID)
		return err == nil
	})
	if r.drain.calls.Load() == 0 {
		t.Fatal("rebuilt without draining the win events")
	}
	if _, err := r.s.Grab(ctx, "u1", s.ID); !errors.Is(err, ErrCapReached) {
		t.Fatalf("u1 after the rebuild: %v, want ErrCapReached", err)
	}
	won := map[int]bool{res.Win.Prize.Index: true}
	for _, u := range []string{"u2", "u3"} {
		res, err := r.s.Grab(ctx, u, s.ID)
		if err != nil || !res.Won || won[res.Win.Prize.Index] {
			t.Fatalf("%s after the rebuild: %+v, %v (won before: %v)", u, res, err, won)
		}
		won[res.Win.Prize.Index] = true
	}
	// The plan's 3 are issued once, not twice: a miss.
	if res, err := r.s.Grab(ctx, "u4", s.ID); err != nil || res.Won {
		t.Fatalf("the fourth user: %+v, %v, want a miss", res, err)
	}
}

func TestUpdateQuota(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("adds prizes after the armed ones", func(t *testing.T) {
		t.Parallel()
		r := newRig()
		req := cash100()
		req.Budget = 200_00
		s := r.create(t, req)
		q, err := r.s.UpdateQuota(ctx, s.ID, QuotaRequest{UserCap: intp(3), Prizes: []PrizeSpec{
			{Kind: KindCash, Min: 50, Max: 150, Count: 10}, {Kind: KindSKU, SKU: 9011, Count: 5},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if q.SeqNo != 2 || q.Total != 115 || q.UserCap != 3 || q.Burst != 0 {
			t.Fatalf("quota %+v", q)
		}
		got, _ := r.store.Session(ctx, s.ID)
		if got.Armed != 115 || len(got.Specs) != 3 || got.Quota.SeqNo != 2 {
			t.Fatalf("stored %+v", got)
		}
		prizes := r.store.prizes[s.ID]
		for i, p := range prizes {
			if p.Index != i {
				t.Fatalf("prize %d has index %d", i, p.Index)
			}
		}
		if st, _ := r.hot.State(ctx, s.ID); st.Left != 115 {
			t.Fatalf("pool %d, want 115", st.Left)
		}
		if a := r.agent.Quota(s.ID); a.SeqNo != 2 || a.Total != 115 {
			t.Fatalf("agent %+v", a)
		}
		if r.reserver.reserved()[9011] != 5 {
			t.Fatalf("reserved %v", r.reserver.reserved())
		}
		// 100.00 + 15.00 + 1.50 × 60 more would pass 200.00.
		_, err = r.s.UpdateQuota(ctx, s.ID, QuotaRequest{Prizes: []PrizeSpec{{Kind: KindCash, Amount: 150, Count: 60}}})
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("over the budget: %v", err)
		}
	})

	t.Run("retries once after a conflict", func(t *testing.T) {
		t.Parallel()
		r := newRig()
		s := r.create(t, cash100())
		// Another operator's change lands between the read and the write.
		r.store.SetQuotaFn = func(f *fakeStore, q Quota, prev int64) error {
			f.SetQuotaFn = nil
			other := f.sessions[q.SessionID]
			other.Quota.SeqNo++
			other.Quota.UserCap = 7
			f.sessions[q.SessionID] = other
			return fmt.Errorf("seq moved: %w", ErrConflict)
		}
		q, err := r.s.UpdateQuota(ctx, s.ID, QuotaRequest{Burst: intp(4)})
		if err != nil || q.SeqNo != 3 || q.Burst != 4 || q.UserCap != 7 {
			t.Fatalf("after a conflict: %+v, %v; want seq 3 built over the other change", q, err)
		}
		r.store.SetQuotaFn = func(*fakeStore, Quota, int64) error { return ErrConflict }
		if _, err := r.s.UpdateQuota(ctx, s.ID, QuotaRequest{Burst: intp(5)}); !errors.Is(err, ErrConflict) {
			t.Fatalf("two conflicts: %v", err)
		}
		if r.store.setCalls != 4 {
			t.Fatalf("%d writes, want 2 + 2", r.store.setCalls)
		}
	})

	t.Run("never below the issued", func(t *testing.T) {
		t.Parallel()
		r := newRig()
		req := cash100()
		req.Burst = intp(5)
		s := r.create(t, req)
		r.clock.Set(t1)
		for _, u := range []string{"u1", "u2", "u3"} {
			if res, err := r.s.Grab(ctx, u, s.ID); err != nil || !res.Won {
				t.Fatalf("grab: %+v, %v", res, err)
			}
		}
		if _, err := r.s.UpdateQuota(ctx, s.ID, QuotaRequest{Total: intp(2), Burst: intp(0)}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("total below the issued: %v", err)
		}
		q, err := r.s.UpdateQuota(ctx, s.ID, QuotaRequest{Total: intp(3), Burst: intp(0)})
		if err != nil || q.Total != 3 {
			t.Fatalf("total at the issued: %+v, %v", q, err)
		}
		// With the hot state lost, the recorded wins count once drained.
		r.s.ApplyWins(ctx, r.events.all())
		r.hot.lose(s.ID)
		if _, err := r.s.UpdateQuota(ctx, s.ID, QuotaRequest{Total: intp(2)}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("total below the recorded: %v", err)
		}
		if r.drain.calls.Load() == 0 {
			t.Fatal("counted the recorded wins without draining")
		}
	})

	t.Run("checks the version", func(t *testing.T) {
		t.Parallel()
		r := newRig()
		s := r.create(t, cash100())
		for name, req := range map[string]QuotaRequest{
			"burst above total": {Burst: intp(101)},
			"no cap":            {UserCap: intp(0)},
			"weights":           {Weights: &[]int{-1}},
			"end past":          {End: &t1},
			"extended end":      {End: new(t1.Add(200 * time.Second))},
			"bad prize":         {Prizes: []PrizeSpec{{Kind: KindSKU, Count: 1}}},
		} {
			if _, err := r.s.UpdateQuota(ctx, s.ID, req); !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: %v, want ErrInvalid", name, err)
			}
		}
		if _, err := r.s.UpdateQuota(ctx, 999, QuotaRequest{}); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown session: %v", err)
		}
		q, err := r.s.UpdateQuota(ctx, s.ID, QuotaRequest{End: new(t1.Add(50 * time.Second)), Weights: &[]int{1, 3}})
		if err != nil || !q.End.Equal(t1.Add(50*time.Second)) || !slices.Equal(q.Weights, []int{1, 3}) {
			t.Fatalf("shortened: %+v, %v", q, err)
		}
		r.clock.Set(t1.Add(50 * time.Second))
		if _, err := r.s.UpdateQuota(ctx, s.ID, QuotaRequest{Burst: intp(1)}); !errors.Is(err, ErrEnded) {
			t.Fatalf("after the end: %v", err)
		}
	})
}

func TestApplyWinsGrantsSKUsFirstAndSettle(t *testing.T) {
	t.Parallel()
	r := newRig()
	req := cash100()
	req.Prizes = []PrizeSpec{{Kind: KindSKU, SKU: 9011, Count: 2}, {Kind: KindCash, Amount: 100, Count: 1}}
	req.Burst = intp(3)
	req.UserCap = 3
	s := r.create(t, req)
	ctx := context.Background()
	r.clock.Set(t1)
	var wins []Win
	for range 3 {
		res, err := r.s.Grab(ctx, "u1", s.ID)
		if err != nil || !res.Won {
			t.Fatalf("grab: %+v, %v", res, err)
		}
		wins = append(wins, res.Win)
	}
	r.skus.GrantFn = func(string, int64, string) error { return errors.New("database down") }
	if err := r.s.Settle(ctx, "u1"); err == nil {
		t.Fatal("settle with the recharge failing answered nil")
	}
	if n := r.store.recorded(); n != 1 {
		t.Fatalf("%d wins recorded, want only the cash one", n)
	}
	if n := r.hot.pendingOf("u1"); n != 2 {
		t.Fatalf("%d pending, want the 2 sku wins", n)
	}
	r.skus.GrantFn = nil
	got, err := r.s.Wins(ctx, "u1", s.ID)
	if err != nil || len(got) != 3 {
		t.Fatalf("wins after settling: %d, %v", len(got), err)
	}
	for _, w := range wins {
		if w.Prize.Kind == KindSKU && r.skus.granted[w.BusinessNo()] != 9011 {
			t.Fatalf("win %s not recharged under its business number", w.MsgID())
		}
	}
	if n := r.hot.pendingOf("u1"); n != 0 {
		t.Fatalf("%d still pending", n)
	}
	// The events arriving later change nothing.
	for i, err := range r.s.ApplyWins(ctx, wins) {
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	if n := r.store.recorded(); n != 3 {
		t.Fatalf("%d recorded", n)
	}
	// A win the records contradict is permanent: dropped from the pending list.
	bad := wins[2]
	bad.Prize.Index = 99
	r.hot.AddPending(ctx, bad)
	if err := r.s.Settle(ctx, "u1"); err != nil {
		t.Fatalf("settle with a permanent failure: %v", err)
	}
	if n := r.hot.pendingOf("u1"); n != 0 {
		t.Fatalf("the contradicted win is still pending")
	}
}

func TestReport(t *testing.T) {
	t.Parallel()
	r := newRig()
	req := cash100()
	req.Burst = intp(2)
	req.UserCap = 10
	s := r.create(t, req)
	ctx := context.Background()
	// Wins in seconds 0, 0 and 3.
	for _, at := range []time.Duration{0, 500 * time.Millisecond, 3200 * time.Millisecond} {
		r.clock.Set(t1.Add(at))
		if res, err := r.s.Grab(ctx, "u1", s.ID); err != nil || !res.Won {
			t.Fatalf("grab at %s: %+v, %v", at, res, err)
		}
	}
	r.clock.Set(t1.Add(4500 * time.Millisecond))
	rep, err := r.s.Report(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Total != 100 || rep.Released != 6 || rep.Granted != 3 || rep.SeqNo != 1 || rep.SliceSeconds != 1 {
		t.Fatalf("report %+v", rep)
	}
	if len(rep.Nodes) != 1 || rep.Nodes[0].SeqNo != 1 {
		t.Fatalf("nodes %+v", rep.Nodes)
	}
	want := []Slice{
		{Start: t1, Allowed: 3, Granted: 2},
		{Start: t1.Add(time.Second), Allowed: 4, Granted: 2},
		{Start: t1.Add(2 * time.Second), Allowed: 5, Granted: 2},
		{Start: t1.Add(3 * time.Second), Allowed: 6, Granted: 3},
		{Start: t1.Add(4 * time.Second), Allowed: 7, Granted: 3},
	}
	if len(rep.Slices) != len(want) {
		t.Fatalf("slices %+v", rep.Slices)
	}
	for i, sl := range rep.Slices {
		if !sl.Start.Equal(want[i].Start) || sl.Allowed != want[i].Allowed || sl.Granted != want[i].Granted {
			t.Fatalf("slice %d = %+v, want %+v", i, sl, want[i])
		}
	}
	// From the records when the hot state is gone.
	r.s.ApplyWins(ctx, r.events.all())
	r.hot.lose(s.ID)
	rep, err = r.s.Report(ctx, s.ID)
	if err != nil || rep.Granted != 3 || rep.Slices[3].Granted != 3 || rep.Slices[0].Granted != 2 {
		t.Fatalf("report from the records: %+v, %v", rep, err)
	}
}

func TestReportKeepsTheLastHour(t *testing.T) {
	t.Parallel()
	q := Quota{SessionID: 1, SeqNo: 1, Start: t1, End: t1.Add(3 * time.Hour), Total: 10_800, UserCap: 1}
	per := map[int64]int{t1.Unix(): 5, t1.Add(2 * time.Hour).Unix(): 1}
	sl := slicesOf(&q, t1.Add(4*time.Hour), per)
	if len(sl) != maxReportSlices {
		t.Fatalf("%d slices", len(sl))
	}
	if !sl[0].Start.Equal(t1.Add(2*time.Hour)) || sl[0].Granted != 6 || sl[len(sl)-1].Allowed != 10_800 {
		t.Fatalf("first %+v last %+v", sl[0], sl[len(sl)-1])
	}
}

func TestSessionsAndRefresh(t *testing.T) {
	t.Parallel()
	r := newRig()
	a := r.create(t, cash100())
	b := r.create(t, cash100())
	ctx := context.Background()
	r.store.mu.Lock()
	ended := r.store.sessions[b.ID]
	ended.State = StateEnded
	r.store.sessions[b.ID] = ended
	// A version written by another node that this node's bus never delivered.
	live := r.store.sessions[a.ID]
	live.Quota.SeqNo, live.Quota.UserCap = 5, 9
	r.store.sessions[a.ID] = live
	r.store.mu.Unlock()
	got, now, err := r.s.Sessions(ctx)
	if err != nil || len(got) != 1 || got[0].ID != a.ID || !now.Equal(r.clock.Now()) {
		t.Fatalf("sessions %+v at %s, %v", got, now, err)
	}
	if err := r.s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if q := r.agent.Quota(a.ID); q.SeqNo != 5 || q.UserCap != 9 {
		t.Fatalf("after refresh the agent holds %+v", q)
	}
}

// TestConcurrentGrabsStayWithinThePlanAndTheCap hammers one session from many goroutines
// while the clock moves and a quota version swaps in: every win is published once, no
// prize is won twice, no user passes the cap and the issued count never passes allowed.
func TestConcurrentGrabsStayWithinThePlanAndTheCap(t *testing.T) {
	t.Parallel()
	r := newRig()
	req := cash100()
	req.Prizes[0].Count = 500
	req.Burst = intp(20)
	s := r.create(t, req)
	ctx := context.Background()
	r.clock.Set(t1)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 400 {
				user := fmt.Sprintf("u%d", (g*400+i)%300)
				res, err := r.s.Grab(ctx, user, s.ID)
				if err != nil && !errors.Is(err, ErrCapReached) {
					t.Errorf("grab: %v", err)
					return
				}
				if res.Won && res.Win.UserID != user {
					t.Errorf("user %s answered %s's win", user, res.Win.UserID)
				}
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			r.clock.Advance(time.Second)
		}
	})
	wg.Go(func() {
		if _, err := r.s.UpdateQuota(ctx, s.ID, QuotaRequest{UserCap: intp(3)}); err != nil {
			t.Errorf("update: %v", err)
		}
	})
	wg.Wait()
	// A user's taps racing one win get it back (Again) and publish it again: the same
	// message id, dropped by the broker; distinct wins are the issued ones.
	wins := map[string]Win{}
	for _, w := range r.events.all() {
		if old, ok := wins[w.MsgID()]; ok && old != w {
			t.Fatalf("message %s published as %+v and %+v", w.MsgID(), old, w)
		}
		wins[w.MsgID()] = w
	}
	st, _ := r.hot.State(ctx, s.ID)
	if len(wins) != st.Issued || st.Issued+st.Left != 500 {
		t.Fatalf("published %d wins, issued %d, left %d", len(wins), st.Issued, st.Left)
	}
	q := r.agent.Quota(s.ID)
	if st.Issued > q.Allowed(r.clock.Now()) || st.Issued == 0 {
		t.Fatalf("issued %d, allowed at the end of the test %d", st.Issued, q.Allowed(r.clock.Now()))
	}
	prizes, per := map[int]bool{}, map[string]int{}
	for _, w := range wins {
		if prizes[w.Prize.Index] {
			t.Fatalf("prize %d won twice", w.Prize.Index)
		}
		prizes[w.Prize.Index] = true
		per[w.UserID]++
	}
	for u, n := range per {
		if n > 3 {
			t.Fatalf("user %s won %d, over any cap", u, n)
		}
	}
}

// TestSKUUnitsAreReservedOnce checks the reservations: a refused SKU leaves the units
// reserved before it taken (undersold) and writes no session; a quota change that loses
// one race reserves once and indexes its prizes after the winner's.
func TestSKUUnitsAreReservedOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRig()
	r.reserver.ReserveFn = func(sku, _ int64) error {
		if sku == 9012 {
			return errors.New("sku stock exhausted")
		}
		return nil
	}
	req := cash100()
	req.Prizes = append(req.Prizes, PrizeSpec{Kind: KindSKU, SKU: 9011, Count: 2}, PrizeSpec{Kind: KindSKU, SKU: 9012, Count: 2})
	if _, err := r.s.Create(ctx, req); err == nil || len(r.store.sessions) != 0 {
		t.Fatalf("create with a sku short of stock: %v, %d sessions", err, len(r.store.sessions))
	}
	if got := r.reserver.reserved(); got[9011] != 2 || got[9012] != 0 {
		t.Fatalf("reserved %v", got)
	}

	s := r.create(t, cash100())
	r.store.SetQuotaFn = func(f *fakeStore, q Quota, prev int64) error {
		f.SetQuotaFn = nil
		other := f.sessions[q.SessionID]
		other.Quota.SeqNo++
		other.Quota.Total += 2
		other.Armed += 2
		f.sessions[q.SessionID] = other
		f.prizes[q.SessionID] = append(f.prizes[q.SessionID], Prize{Index: 100, Kind: KindCash, Amount: 1}, Prize{Index: 101, Kind: KindCash, Amount: 1})
		return ErrConflict
	}
	q, err := r.s.UpdateQuota(ctx, s.ID, QuotaRequest{Prizes: []PrizeSpec{{Kind: KindSKU, SKU: 9011, Count: 3}}})
	if err != nil || q.SeqNo != 3 || q.Total != 105 {
		t.Fatalf("update after a race: %+v, %v", q, err)
	}
	if got := r.reserver.reserved(); got[9011] != 2+3 {
		t.Fatalf("reserved %v, want the 3 units once", got)
	}
	for i, p := range r.store.prizes[s.ID] {
		if p.Index != i {
			t.Fatalf("prize %d has index %d", i, p.Index)
		}
	}
}

// TestGuardedGrabCommitsBeforeTakingAnything checks that a tap whose time budget ran out
// before the grab script takes nothing, and that a committed one is answered its own
// outcome however long its publish takes.
func TestGuardedGrabCommitsBeforeTakingAnything(t *testing.T) {
	t.Parallel()
	settings := guard.DefaultSettings()
	settings.RateLimit, settings.DrawTimeout = false, 10*time.Millisecond
	g := guard.New(guard.Options{Defaults: settings, CommitTimeout: time.Minute})
	r := newRig(func(o *Options) { o.PublishTimeout = time.Minute })
	s := r.create(t, cash100())
	ctx := context.Background()
	r.clock.Set(t1.Add(10 * time.Second))
	done := make(chan error, 1)
	answer := g.Do(ctx, "u1", func(ctx context.Context) error {
		<-ctx.Done()
		_, err := r.s.Grab(ctx, "u1", s.ID)
		done <- err
		return err
	})
	if own := <-done; !errors.Is(answer, guard.ErrTimeout) || !errors.Is(own, guard.ErrTimeout) || r.hot.grabs.Load() != 0 {
		t.Fatalf("grab over its budget: answered %v, returned %v, %d hot grabs; want ErrTimeout and nothing taken", answer, own, r.hot.grabs.Load())
	}
	r.events.PublishFn = func(Win) error { time.Sleep(50 * time.Millisecond); return nil }
	var res GrabResult
	err := g.Do(ctx, "u1", func(ctx context.Context) error {
		var err error
		res, err = r.s.Grab(ctx, "u1", s.ID)
		return err
	})
	if err != nil || !res.Won {
		t.Fatalf("grab whose publish outlasts the budget: %+v, %v; want the win", res, err)
	}
}
