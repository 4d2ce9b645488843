package redpacket

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/credit"
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
	return p, f.items[id], nil
}

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
		if _, ok := f.credited[g.BusinessNo()]; !ok {
			f.credited[g.BusinessNo()] = g.Amount
		}
	}
	return errs
}

func (f *fakeStore) ExpiredRedPackets(context.Context, time.Time, Cursor, int) ([]string, Cursor, error) {
	return nil, Cursor{}, nil
}

func (f *fakeStore) RefundRedPacket(context.Context, string) (money.Cents, bool, error) {
	return 0, false, nil
}

// fakeHot hands out a packet's items in order, one per user.
type fakeHot struct {
	mu      sync.Mutex
	left    map[string][]Item
	grabbed map[string]Item // packet/user → item
	pending map[string]map[string]Grab
}

func newFakeHot() *fakeHot {
	return &fakeHot{left: map[string][]Item{}, grabbed: map[string]Item{}, pending: map[string]map[string]Grab{}}
}

func (h *fakeHot) Load(_ context.Context, id string, items []Item, _ []Grab, _ time.Time, _ []string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.left[id] = append([]Item{}, items...)
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

func (h *fakeHot) Close(context.Context, string) ([]Item, error) { return nil, nil }
func (h *fakeHot) Grabs(context.Context, string) ([]Grab, error) { return nil, nil }

// fakeEvents records published grabs; Err, when set, fails the publish.
type fakeEvents struct {
	mu        sync.Mutex
	published []Grab
	Err       error
}

func (e *fakeEvents) PublishGrab(_ context.Context, g Grab) error {
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
