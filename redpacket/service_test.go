package redpacket

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/guard"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/money"
)

// fakeStore keeps packets in memory and credits by business number, once.
type fakeStore struct {
	mu       sync.Mutex
	packets  map[string]Packet
	items    map[string][]Item
	credited map[string]money.Cents // business number → amount
	applied  int                    // ApplyGrabs calls
	ApplyFn  func(Grab) error
}

func newFakeStore() *fakeStore {
	return &fakeStore{packets: map[string]Packet{}, items: map[string][]Item{}, credited: map[string]money.Cents{}}
}

func (f *fakeStore) PacketID(string, time.Time) string { return fmt.Sprintf("%022d", len(f.packets)+1) }

func (f *fakeStore) SendRedPacket(_ context.Context, p Packet, items []Item, debit *credit.Order) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if debit != nil && debit.Amount != p.Total {
		return errors.New("debit differs from the total")
	}
	f.packets[p.ID], f.items[p.ID] = p, items
	return nil
}

func (f *fakeStore) RedPacket(_ context.Context, id string) (Packet, []Item, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.packets[id]
	if !ok {
		return Packet{}, nil, ErrNotFound
	}
	return p, append([]Item{}, f.items[id]...), nil
}

// ApplyGrabs records each grab on its item and credits it once, as the SQL store does.
func (f *fakeStore) ApplyGrabs(_ context.Context, grabs []Grab) []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied++
	errs := make([]error, len(grabs))
	for i, g := range grabs {
		if f.ApplyFn != nil {
			if errs[i] = f.ApplyFn(g); errs[i] != nil {
				continue
			}
		}
		if items := f.items[g.PacketID]; g.Index < len(items) && items[g.Index].UserID == "" {
			items[g.Index].UserID, items[g.Index].GrabTime = g.UserID, g.Time
		}
		if _, ok := f.credited[g.BusinessNo()]; !ok {
			f.credited[g.BusinessNo()] = g.Amount
		}
	}
	return errs
}

// ExpiredRedPackets pages the open packets past their expiry by id, one "database".
func (f *fakeStore) ExpiredRedPackets(_ context.Context, now time.Time, after Cursor, limit int) ([]string, Cursor, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for id, p := range f.packets {
		if n, _ := strconv.ParseInt(id, 10, 64); n > after.Row && p.State == StateOpen && !now.Before(p.ExpireAt) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	if len(ids) > limit {
		ids = ids[:limit]
	}
	if len(ids) > 0 {
		after.Row, _ = strconv.ParseInt(ids[len(ids)-1], 10, 64)
	}
	return ids, after, nil
}

// RefundRedPacket refunds total − recorded grabs once, as the SQL store does.
func (f *fakeStore) RefundRedPacket(_ context.Context, id string) (money.Cents, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.packets[id]
	if p.State != StateOpen {
		return 0, false, nil
	}
	refund := p.Total
	for _, it := range f.items[id] {
		if it.UserID != "" {
			refund -= it.Amount
		}
	}
	p.State, p.Refund = StateRefunded, refund
	f.packets[id] = p
	return refund, true, nil
}

// fakeHot hands out a packet's items in order, one per user.
type fakeHot struct {
	mu      sync.Mutex
	left    map[string][]Item
	grabbed map[string]Item // packet/user → item
	closed  map[string]bool
	pending map[string]map[string]Grab
}

func newFakeHot() *fakeHot {
	return &fakeHot{left: map[string][]Item{}, grabbed: map[string]Item{}, closed: map[string]bool{}, pending: map[string]map[string]Grab{}}
}

func (h *fakeHot) Load(_ context.Context, id string, items []Item, grabs []Grab, _ time.Time, _ []string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.left[id] = append([]Item{}, items...)
	for _, g := range grabs {
		h.grabbed[id+"/"+g.UserID] = Item{Index: g.Index, Amount: g.Amount}
	}
	return nil
}

func (h *fakeHot) Grab(_ context.Context, id, user string, _ time.Time) (Item, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if it, ok := h.grabbed[id+"/"+user]; ok {
		return it, true, nil
	}
	left, ok := h.left[id]
	if !ok {
		return Item{}, false, ErrUnavailable
	}
	if h.closed[id] {
		return Item{}, false, ErrClosed
	}
	if len(left) == 0 {
		return Item{}, false, ErrEmpty
	}
	it := left[0]
	h.left[id], h.grabbed[id+"/"+user] = left[1:], it
	return it, false, nil
}

func (h *fakeHot) AddPending(_ context.Context, g Grab) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pending[g.UserID] == nil {
		h.pending[g.UserID] = map[string]Grab{}
	}
	h.pending[g.UserID][g.PacketID] = g
	return nil
}

func (h *fakeHot) Pending(_ context.Context, user string) ([]Grab, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Grab
	for _, g := range h.pending[user] {
		out = append(out, g)
	}
	return out, nil
}

func (h *fakeHot) DonePending(_ context.Context, grabs []Grab) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, g := range grabs {
		delete(h.pending[g.UserID], g.PacketID)
	}
	return nil
}

func (h *fakeHot) Close(_ context.Context, id string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.left[id]; !ok {
		return ErrUnavailable
	}
	h.closed[id] = true
	return nil
}

func (h *fakeHot) Grabs(_ context.Context, id string) ([]Grab, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.left[id]; !ok {
		return nil, ErrUnavailable
	}
	var out []Grab
	for k, it := range h.grabbed {
		if p, user, _ := strings.Cut(k, "/"); p == id {
			out = append(out, Grab{PacketID: id, UserID: user, Index: it.Index, Amount: it.Amount})
		}
	}
	return out, nil
}

// lose drops a packet from the hot state, as a Redis data loss does.
func (h *fakeHot) lose(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.left, id)
	for k := range h.grabbed {
		if strings.HasPrefix(k, id+"/") {
			delete(h.grabbed, k)
		}
	}
}

// fakeEvents records published grabs; Err, when set, fails the publish; a publish takes
// delay, or until its context ends.
type fakeEvents struct {
	mu        sync.Mutex
	published []Grab
	Err       error
	delay     time.Duration
}

func (e *fakeEvents) PublishGrab(ctx context.Context, g Grab) error {
	if e.delay > 0 {
		select {
		case <-time.After(e.delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.Err != nil {
		return e.Err
	}
	e.published = append(e.published, g)
	return nil
}

func newTestService() (*Service, *fakeStore, *fakeHot, *fakeEvents) {
	store, hot, events := newFakeStore(), newFakeHot(), &fakeEvents{}
	s := NewService(Options{Store: store, Hot: hot, Events: events, Rand: func() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) },
		Limits: Limits{MaxCount: 100, MaxAmount: 1000_00, MaxGreeting: 8}})
	return s, store, hot, events
}

func TestSendChecks(t *testing.T) {
	t.Parallel()
	s, store, _, _ := newTestService()
	ok := SendRequest{SenderID: "u1", Total: 100_00, Count: 10, Mode: ModeRandom}
	for _, tc := range []struct {
		name string
		mod  func(*SendRequest)
		want string // empty: accepted
	}{
		{"fine", func(*SendRequest) {}, ""},
		{"count 0", func(r *SendRequest) { r.Count = 0 }, "count"},
		{"count over the limit", func(r *SendRequest) { r.Count = 101 }, "count"},
		{"amount over the limit", func(r *SendRequest) { r.Total = 1000_01 }, "total amount"},
		{"less than a cent each", func(r *SendRequest) { r.Total, r.Count = 9, 10 }, "less than 0.01"},
		{"fixed not divisible", func(r *SendRequest) { r.Mode, r.Total, r.Count = ModeFixed, 100_00, 3 }, "equal"},
		{"unknown mode", func(r *SendRequest) { r.Mode = "lucky" }, "mode"},
		{"greeting too long", func(r *SendRequest) { r.Greeting = "恭喜发财大吉大利啊" }, "greeting"},
		{"expiry too long", func(r *SendRequest) { r.Expiry = 8 * 24 * time.Hour }, "expiry"},
		{"user packet with eligible users", func(r *SendRequest) { r.Eligible = []string{"a"} }, "eligible"},
		{"bad eligible user", func(r *SendRequest) { r.SenderID, r.Eligible = "", []string{""} }, "eligible"},
	} {
		req := ok
		tc.mod(&req)
		before := len(store.packets)
		p, err := s.Send(context.Background(), req)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want == "" && (p.ExpireAt.Sub(p.Created) > 24*time.Hour || p.ExpireAt.Sub(p.Created) < 24*time.Hour-time.Second):
			t.Errorf("%s: default expiry %s", tc.name, p.ExpireAt.Sub(p.Created))
		case tc.want != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want ErrInvalid about %q", tc.name, err, tc.want)
		case tc.want != "" && len(store.packets) != before:
			t.Errorf("%s: a refused packet was written", tc.name)
		}
	}
}

func TestGrabIsDurableBeforeItAnswers(t *testing.T) {
	t.Parallel()
	s, store, hot, events := newTestService()
	ctx := context.Background()
	p, err := s.Send(ctx, SendRequest{SenderID: "u1", Total: 3_00, Count: 3, Mode: ModeFixed})
	if err != nil {
		t.Fatal(err)
	}
	g, err := s.Grab(ctx, "alice", p.ID)
	if err != nil || g.Amount != 1_00 || len(events.published) != 1 || events.published[0].MsgID() != p.ID+":alice" {
		t.Fatalf("grab = %+v %v, published %v", g, err, events.published)
	}
	// The broker is down: the item is taken, the answer is an error, nothing is lost.
	events.Err = errors.New("nats: no responders")
	if _, err := s.Grab(ctx, "bob", p.ID); err == nil || errors.Is(err, ErrAlreadyGrabbed) {
		t.Fatalf("grab with the broker down = %v, want an error", err)
	}
	// bob retries once it is back: the same item, published now, answered as a repeat.
	events.Err = nil
	again, err := s.Grab(ctx, "bob", p.ID)
	if !errors.Is(err, ErrAlreadyGrabbed) || again.Amount != 1_00 || len(events.published) != 2 || events.published[1].UserID != "bob" {
		t.Fatalf("retry = %+v %v, published %v", again, err, events.published)
	}
	if _, err := s.Grab(ctx, "carol", p.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Grab(ctx, "dave", p.ID); !errors.Is(err, ErrEmpty) {
		t.Fatalf("grab of an empty packet: %v", err)
	}
	for _, id := range []string{"", "12ab", "{x}", strings.Repeat("1", 33)} {
		if _, err := s.Grab(ctx, "erin", id); !errors.Is(err, ErrNotFound) {
			t.Errorf("grab of %q: %v, want ErrNotFound", id, err)
		}
	}
	if _, err := s.Grab(ctx, "erin", "0000000000000000000999"); !errors.Is(err, ErrNotFound) {
		t.Errorf("grab of an unknown packet: %v", err)
	}
	// The green channel credits alice now; her event, applied later, changes nothing.
	if err := s.Settle(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if store.credited[p.ID+"_alice"] != 1_00 || len(hot.pending["alice"]) != 0 {
		t.Fatalf("after settle: credited %v, pending %v", store.credited, hot.pending["alice"])
	}
	if errs := s.ApplyGrabs(ctx, events.published[:1]); errs[0] != nil || len(store.credited) != 1 {
		t.Fatalf("the later event: %v, credited %v", errs, store.credited)
	}
	calls := store.applied
	if err := s.Settle(ctx, "alice"); err != nil || store.applied != calls {
		t.Fatalf("a second settle with nothing pending applied again: %v", err)
	}
	// A grab that can never apply is forgotten; one that may later is kept.
	store.ApplyFn = func(g Grab) error {
		if g.UserID == "bob" {
			return fmt.Errorf("item taken: %w", ErrConflict)
		}
		return errors.New("database down")
	}
	if err := s.Settle(ctx, "bob"); err != nil || len(hot.pending["bob"]) != 0 {
		t.Fatalf("settle of a conflicting grab: %v, pending %v", err, hot.pending["bob"])
	}
	if err := s.Settle(ctx, "carol"); err == nil || len(hot.pending["carol"]) != 1 {
		t.Fatalf("settle with the database down: %v, pending %v", err, hot.pending["carol"])
	}
}

// fakeDrain counts the waits for the grab events in flight.
type fakeDrain struct{ waits atomic.Int64 }

func (d *fakeDrain) WaitApplied(context.Context) error { d.waits.Add(1); return nil }

// expire moves a packet's expiry into the past in the fake store.
func (f *fakeStore) expire(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.packets[id]
	p.ExpireAt = time.Now().Add(-time.Second)
	f.packets[id] = p
}

func TestRefundAppliesHeldGrabsThenRefundsOnce(t *testing.T) {
	t.Parallel()
	s, store, hot, _ := newTestService()
	ctx := context.Background()
	p, err := s.Send(ctx, SendRequest{SenderID: "u1", Total: 6_00, Count: 3, Mode: ModeFixed})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"ann", "ben"} {
		if _, err := s.Grab(ctx, u, p.ID); err != nil {
			t.Fatal(err)
		}
	}
	// ann's event was applied; ben's is still in flight. A grab the records contradict
	// must not hold the refund back.
	store.ApplyGrabs(ctx, []Grab{{PacketID: p.ID, UserID: "ann", Index: 0, Amount: 2_00, Time: time.Now()}})
	store.ApplyFn = func(g Grab) error {
		if g.UserID == "ghost" {
			return fmt.Errorf("no such item: %w", ErrConflict)
		}
		return nil
	}
	hot.mu.Lock()
	hot.grabbed[p.ID+"/ghost"] = Item{Index: 9, Amount: 1}
	hot.mu.Unlock()
	store.expire(p.ID)
	n, err := s.Sweep(ctx)
	if err != nil || n != 1 {
		t.Fatalf("sweep: %d %v, want 1 packet", n, err)
	}
	got, _, _ := store.RedPacket(ctx, p.ID)
	if got.State != StateRefunded || got.Refund != 2_00 || store.credited[p.ID+"_ben"] != 2_00 {
		t.Fatalf("after the sweep: %+v, credited %v; want ben's held grab credited and 2.00 back", got, store.credited)
	}
	if _, err := s.Grab(ctx, "cat", p.ID); !errors.Is(err, ErrClosed) {
		t.Fatalf("grab after the refund: %v, want ErrClosed", err)
	}
	if n, err := s.Sweep(ctx); n != 0 || err != nil {
		t.Fatalf("second sweep: %d %v, want nothing to do", n, err)
	}
	if r, err := s.Refund(ctx, p.ID); err != nil || r != 0 {
		t.Fatalf("second refund: %s %v, want nothing", r, err)
	}
}

func TestRefundOfLostPacketWaitsForTheEvents(t *testing.T) {
	t.Parallel()
	store, hot, events, drain := newFakeStore(), newFakeHot(), &fakeEvents{}, &fakeDrain{}
	s := NewService(Options{Store: store, Hot: hot, Events: events, Drain: drain})
	ctx := context.Background()
	p, err := s.Send(ctx, SendRequest{SenderID: "u1", Total: 3_00, Count: 3, Mode: ModeFixed})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Grab(ctx, "ann", p.ID); err != nil {
		t.Fatal(err)
	}
	s.ApplyGrabs(ctx, events.published)
	hot.lose(p.ID) // long expired out of Redis, or lost
	store.expire(p.ID)
	r, err := s.Refund(ctx, p.ID)
	if err != nil || r != 2_00 || drain.waits.Load() != 1 {
		t.Fatalf("refund of a lost packet: %s %v after %d drains, want 2.00 after one", r, err, drain.waits.Load())
	}
}

func TestLostPacketIsRebuiltWithoutRegranting(t *testing.T) {
	t.Parallel()
	store, hot, events, drain := newFakeStore(), newFakeHot(), &fakeEvents{}, &fakeDrain{}
	s := NewService(Options{Store: store, Hot: hot, Events: events, Drain: drain, PublishTimeout: 10 * time.Millisecond})
	ctx := context.Background()
	p, err := s.Send(ctx, SendRequest{Total: 2_00, Count: 2, Mode: ModeFixed})
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.Grab(ctx, "ann", p.ID)
	if err != nil {
		t.Fatal(err)
	}
	s.ApplyGrabs(ctx, events.published)
	hot.lose(p.ID)
	// The first grab after the loss waits at most the publish timeout, then a retry finds
	// the packet rebuilt: ann's item stays hers, the other one is ben's.
	if _, err := s.Grab(ctx, "ben", p.ID); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("grab while the packet is rebuilt: %v, want ErrUnavailable", err)
	}
	var g Grab
	testenv.Eventually(t, 10*time.Second, "the packet rebuilt", func() bool {
		g, err = s.Grab(ctx, "ben", p.ID)
		return !errors.Is(err, ErrUnavailable)
	})
	if err != nil || g.Index == first.Index {
		t.Fatalf("grab after the rebuild: %+v %v, want the item ann does not hold", g, err)
	}
	if again, err := s.Grab(ctx, "ann", p.ID); !errors.Is(err, ErrAlreadyGrabbed) || again.Index != first.Index {
		t.Fatalf("ann after the rebuild: %+v %v", again, err)
	}
	if drain.waits.Load() != 1 {
		t.Fatalf("%d drains, want one rebuild", drain.waits.Load())
	}
	store.expire(p.ID)
	hot.lose(p.ID)
	if _, err := s.Grab(ctx, "cat", p.ID); !errors.Is(err, ErrClosed) {
		t.Fatalf("grab of an expired lost packet: %v, want ErrClosed without a rebuild", err)
	}
}

func TestDetail(t *testing.T) {
	t.Parallel()
	s, store, _, _ := newTestService()
	ctx := context.Background()
	p, err := s.Send(ctx, SendRequest{SenderID: "u1", Total: 10_00, Count: 3, Mode: ModeRandom})
	if err != nil {
		t.Fatal(err)
	}
	amounts := map[string]money.Cents{}
	for _, u := range []string{"ann", "ben"} {
		g, err := s.Grab(ctx, u, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		amounts[u] = g.Amount
	}
	// ann's grab is recorded, ben's only in the hot state: both show, ann's first.
	store.ApplyGrabs(ctx, []Grab{{PacketID: p.ID, UserID: "ann", Index: 0, Amount: amounts["ann"], Time: time.Now()}})
	d, err := s.Detail(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Grabs) != 2 || d.Grabs[0].UserID != "ann" || d.Grabs[1].UserID != "ben" || d.RemainingCount != 1 ||
		d.GrabbedAmount+d.RemainingAmount != 10_00 || d.Luckiest != nil || d.Expired {
		t.Fatalf("detail with one item left: %+v", d)
	}
	if _, err := s.Grab(ctx, "cat", p.ID); err != nil {
		t.Fatal(err)
	}
	d, _ = s.Detail(ctx, p.ID)
	var best money.Cents
	for _, g := range d.Grabs {
		best = max(best, g.Amount)
	}
	if d.RemainingCount != 0 || d.Luckiest == nil || d.Luckiest.Amount != best {
		t.Fatalf("detail with nothing left: %+v, want the luckiest of %s", d, best)
	}
	if _, err := s.Detail(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("detail of a bad id: %v", err)
	}
}

// TestGuardedSendAndGrabCommitBeforeTakingAnything runs sends and grabs behind a guard
// with a 10 ms budget. One over its budget before its commit point answers ErrTimeout
// (0006) and takes nothing: no packet, no debit, no item. One past it is waited for and
// answers its own outcome, ERR_RP_004 included when its event's publish times out.
func TestGuardedSendAndGrabCommitBeforeTakingAnything(t *testing.T) {
	t.Parallel()
	settings := guard.DefaultSettings()
	settings.RateLimit, settings.DrawTimeout = false, 10*time.Millisecond
	g := guard.New(guard.Options{Defaults: settings, CommitTimeout: time.Minute})
	s, store, hot, events := newTestService()
	ctx := context.Background()
	send := SendRequest{SenderID: "u1", Total: 3_00, Count: 3, Mode: ModeFixed}

	// late runs call once the budget has run out before it, as when what comes before
	// the commit point is slow; it returns the guard's answer and, once call has
	// returned, call's own.
	late := func(call func(ctx context.Context) error) (answer, own error) {
		done := make(chan error, 1)
		answer = g.Do(ctx, "u1", func(ctx context.Context) error {
			<-ctx.Done()
			err := call(ctx)
			done <- err
			return err
		})
		return answer, <-done
	}
	answer, own := late(func(ctx context.Context) error { _, err := s.Send(ctx, send); return err })
	if !errors.Is(answer, guard.ErrTimeout) || !errors.Is(own, guard.ErrTimeout) || len(store.packets) != 0 {
		t.Fatalf("send over its budget: answered %v, returned %v, %d packets written; want ErrTimeout and nothing written",
			answer, own, len(store.packets))
	}
	p, err := s.Send(ctx, send)
	if err != nil {
		t.Fatal(err)
	}
	answer, own = late(func(ctx context.Context) error { _, err := s.Grab(ctx, "alice", p.ID); return err })
	hot.mu.Lock()
	left := len(hot.left[p.ID])
	hot.mu.Unlock()
	if !errors.Is(answer, guard.ErrTimeout) || !errors.Is(own, guard.ErrTimeout) || left != 3 || len(events.published) != 0 {
		t.Fatalf("grab over its budget: answered %v, returned %v, %d items left, published %v; want ErrTimeout and nothing taken",
			answer, own, left, events.published)
	}

	// Past the commit point the answer waits for the slow step, then is the step's own.
	slowStore := &slowSendStore{fakeStore: store, delay: 50 * time.Millisecond}
	s.opts.Store = slowStore
	var sent Packet
	if err := g.Do(ctx, "u1", func(ctx context.Context) error { sent, err = s.Send(ctx, send); return err }); err != nil || sent.ID == "" {
		t.Fatalf("send whose transaction outlasts the budget = %+v, %v; want the packet", sent, err)
	}
	events.delay = 50 * time.Millisecond
	var got Grab
	if err := g.Do(ctx, "alice", func(ctx context.Context) error { got, err = s.Grab(ctx, "alice", p.ID); return err }); err != nil || got.Amount != 1_00 {
		t.Fatalf("grab whose publish outlasts the budget = %+v, %v; want the item", got, err)
	}
	s.opts.PublishTimeout, events.delay = 30*time.Millisecond, time.Minute
	err = g.Do(ctx, "bob", func(ctx context.Context) error { _, err := s.Grab(ctx, "bob", p.ID); return err })
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, guard.ErrTimeout) {
		t.Fatalf("committed grab whose publish timed out = %v, want ErrUnavailable (ERR_RP_004), not ErrTimeout", err)
	}
}

// slowSendStore is a Store whose send transaction takes delay.
type slowSendStore struct {
	*fakeStore
	delay time.Duration
}

func (s *slowSendStore) SendRedPacket(ctx context.Context, p Packet, items []Item, debit *credit.Order) error {
	time.Sleep(s.delay) // the transaction is slow, past the budget
	return s.fakeStore.SendRedPacket(ctx, p, items, debit)
}
