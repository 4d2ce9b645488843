package award

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/money"
)

// fakeConfigs serves awards from a map; AwardFn, when set, answers instead.
type fakeConfigs struct {
	awards  map[int]Award
	AwardFn func(awardID int) (Award, error)
}

func (f fakeConfigs) Award(_ context.Context, awardID int) (Award, error) {
	if f.AwardFn != nil {
		return f.AwardFn(awardID)
	}
	a, ok := f.awards[awardID]
	if !ok {
		return Award{}, fmt.Errorf("award %d: %w", awardID, ErrUnknownAward)
	}
	return a, nil
}

// fakeCredits records every ApplyCredit call; ApplyFn, when set, gives the outcomes
// (nil outcomes otherwise).
type fakeCredits struct {
	mu      sync.Mutex
	calls   [][]credit.Change
	ApplyFn func(changes []credit.Change) []error
}

func (f *fakeCredits) ApplyCredit(_ context.Context, changes []credit.Change) []error {
	f.mu.Lock()
	f.calls = append(f.calls, append([]credit.Change(nil), changes...))
	f.mu.Unlock()
	if f.ApplyFn != nil {
		return f.ApplyFn(changes)
	}
	return make([]error, len(changes))
}

func (f *fakeCredits) applied() [][]credit.Change {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

var orderIDPattern = regexp.MustCompile(`^[0-9]{20}$`)

// testAwards are the demo's award rows, plus a row with a key nothing distributes.
var testAwards = map[int]Award{
	101: {ID: 101, Key: KeyCreditRandom, Config: "1,100", Desc: "random credit"},
	102: {ID: 102, Key: KeyCreditRandom, Config: "not a range"},
	103: {ID: 103, Key: "openai_use_count", Config: "5", Desc: "model calls"},
	104: {ID: 104, Key: KeyCreditRandom, Config: "0.5,0.5"},
	105: {ID: 105, Key: "openai_model", Config: "gpt-4"},
	110: {ID: 110, Key: KeyCreditBlacklist, Config: "1"},
	111: {ID: 111, Key: KeyCreditBlacklist, Config: " 2.50 "},
	112: {ID: 112, Key: KeyCreditBlacklist, Config: "0"},
	113: {ID: 113, Key: KeyCreditBlacklist, Config: "one"},
	114: {ID: 114, Key: KeyCreditBlacklist, Config: "-1"},
}

func TestParseRange(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in     string
		lo, hi money.Cents
		bad    bool
	}{
		{in: "1,100", lo: 100, hi: 10000},
		{in: " 0.01 , 0.99 ", lo: 1, hi: 99},
		{in: "5,5", lo: 500, hi: 500},
		{in: "1.5,2.25", lo: 150, hi: 225},
		{in: "", bad: true},
		{in: "100", bad: true},
		{in: "0,10", bad: true},
		{in: "-1,10", bad: true},
		{in: "10,1", bad: true},
		{in: "1,2,3", bad: true},
		{in: "1.001,2", bad: true},
		{in: "a,b", bad: true},
		{in: ",1", bad: true},
		{in: "1,", bad: true},
	} {
		lo, hi, err := ParseRange(tc.in)
		if tc.bad {
			if !errors.Is(err, ErrBadConfig) {
				t.Errorf("ParseRange(%q) = %s, %s, %v; want ErrBadConfig", tc.in, lo, hi, err)
			}
			continue
		}
		if err != nil || lo != tc.lo || hi != tc.hi {
			t.Errorf("ParseRange(%q) = %s, %s, %v; want %s, %s", tc.in, lo, hi, err, tc.lo, tc.hi)
		}
	}
}

// TestDistributeCredit checks the change each credit distributor hands to the store: a
// forward award trade keyed by the raffle order id, completing that order's record.
func TestDistributeCredit(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	type pickCall struct {
		orderID string
		lo, hi  money.Cents
	}
	for _, tc := range []struct {
		name   string
		msg    SendAward
		picked money.Cents // what the injected Pick answers
		want   money.Cents
		pick   *pickCall // the expected Pick call; nil: Pick is not called
	}{
		{
			name: "random from the award's config", msg: SendAward{UserID: "xiaofuge", OrderID: "o-1", AwardID: 101},
			picked: 4711, want: 4711, pick: &pickCall{"o-1", 100, 10000},
		},
		{
			name: "random from the rule's value", msg: SendAward{UserID: "xiaofuge", OrderID: "o-2", AwardID: 101, AwardConfig: "2,3"},
			picked: 250, want: 250, pick: &pickCall{"o-2", 200, 300},
		},
		{
			name: "rule's value wins over a bad award config", msg: SendAward{UserID: "u", OrderID: "o-3", AwardID: 102, AwardConfig: "1,1"},
			picked: 100, want: 100, pick: &pickCall{"o-3", 100, 100},
		},
		{name: "fixed yuan", msg: SendAward{UserID: "u", OrderID: "o-4", AwardID: 110}, want: 100},
		{name: "fixed with blanks and cents", msg: SendAward{UserID: "u", OrderID: "o-5", AwardID: 111}, want: 250},
		{name: "fixed ignores the rule's value", msg: SendAward{UserID: "u", OrderID: "o-6", AwardID: 110, AwardConfig: "5,9"}, want: 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var (
				mu    sync.Mutex
				picks []pickCall
			)
			credits := &fakeCredits{}
			s := NewService(Options{
				Configs: fakeConfigs{awards: testAwards},
				Credits: credits,
				Pick: func(orderID string, lo, hi money.Cents) money.Cents {
					mu.Lock()
					defer mu.Unlock()
					picks = append(picks, pickCall{orderID, lo, hi})
					return tc.picked
				},
				Now: func() time.Time { return now },
			})
			errs := s.Distribute(context.Background(), []SendAward{tc.msg})
			if len(errs) != 1 || errs[0] != nil {
				t.Fatalf("Distribute = %v, want one nil", errs)
			}
			switch {
			case tc.pick == nil && len(picks) != 0:
				t.Errorf("Pick called %v for a fixed award", picks)
			case tc.pick != nil && (len(picks) != 1 || picks[0] != *tc.pick):
				t.Errorf("Pick calls %v, want one %v", picks, *tc.pick)
			}
			calls := credits.applied()
			if len(calls) != 1 || len(calls[0]) != 1 {
				t.Fatalf("ApplyCredit calls %v, want one with one change", calls)
			}
			ch := calls[0][0]
			if ch.UserID != tc.msg.UserID || ch.AwardOrderID != tc.msg.OrderID || ch.Task != nil || ch.Order == nil {
				t.Fatalf("change %+v: want user %s completing %s with a trade and no task", ch, tc.msg.UserID, tc.msg.OrderID)
			}
			o := *ch.Order
			if o.UserID != tc.msg.UserID || o.Type != credit.Forward || o.Name != credit.NameAward || o.Amount != tc.want ||
				o.OutBusinessNo != tc.msg.OrderID {
				t.Errorf("trade %+v: want a forward award trade of %s keyed by %s", o, tc.want, tc.msg.OrderID)
			}
			if !orderIDPattern.MatchString(o.OrderID) || o.OrderID[:13] != fmt.Sprintf("%013d", now.UnixMilli()) {
				t.Errorf("trade order id %q: want 20 digits starting with the injected clock's millisecond", o.OrderID)
			}
			if err := o.Check(); err != nil {
				t.Errorf("trade fails its own check: %v", err)
			}
		})
	}
}

// TestDistributeOutcomes runs one mixed batch: refusals before the store, one store call
// for the rest, and the store's outcomes mapped back to their messages.
func TestDistributeOutcomes(t *testing.T) {
	t.Parallel()
	storeDown := errors.New("store down")
	var fallbackSaw []string
	var fbMu sync.Mutex
	fallback := DistributorFunc(func(_ context.Context, a Award, m SendAward) (credit.Change, error) {
		fbMu.Lock()
		fallbackSaw = append(fallbackSaw, a.Key+"/"+m.OrderID)
		fbMu.Unlock()
		if a.Key == "openai_model" {
			return credit.Change{}, errors.New("receiver answered 503")
		}
		return credit.Change{UserID: "ignored", AwardOrderID: "ignored"}, nil
	})
	credits := &fakeCredits{ApplyFn: func(changes []credit.Change) []error {
		errs := make([]error, len(changes))
		for i, ch := range changes {
			switch ch.AwardOrderID {
			case "dup":
				errs[i] = fmt.Errorf("apply: %w", credit.ErrDuplicate)
			case "poor":
				errs[i] = fmt.Errorf("apply: %w", credit.ErrInsufficient)
			case "gone":
				errs[i] = fmt.Errorf("apply: %w", credit.ErrAwardNotFound)
			case "down":
				errs[i] = storeDown
			}
		}
		return errs
	}}
	s := NewService(Options{
		Configs:  fakeConfigs{awards: testAwards},
		Credits:  credits,
		Fallback: fallback,
		Parallel: 3,
	})
	msgs := []SendAward{
		{UserID: "u1", OrderID: "ok", AwardID: 101},
		{UserID: "u1", OrderID: "no-award", AwardID: 999},
		{UserID: "", OrderID: "no-user", AwardID: 101},
		{UserID: "u1", OrderID: "", AwardID: 101},
		{UserID: "u1", OrderID: "no-award-id"},
		{UserID: "u1", OrderID: "bad-range", AwardID: 102},
		{UserID: "u1", OrderID: "bad-rule", AwardID: 101, AwardConfig: "100,1"},
		{UserID: "u1", OrderID: "bad-fixed-0", AwardID: 112},
		{UserID: "u1", OrderID: "bad-fixed-text", AwardID: 113},
		{UserID: "u1", OrderID: "bad-fixed-neg", AwardID: 114},
		{UserID: "u2", OrderID: "webhook", AwardID: 103},
		{UserID: "u2", OrderID: "webhook-fails", AwardID: 105},
		{UserID: "u3", OrderID: "dup", AwardID: 110},
		{UserID: "u3", OrderID: "poor", AwardID: 110},
		{UserID: "u3", OrderID: "gone", AwardID: 110},
		{UserID: "u3", OrderID: "down", AwardID: 104},
	}
	want := []error{
		nil, ErrUnknownAward, ErrBadMessage, ErrBadMessage, ErrBadMessage, ErrBadConfig, ErrBadConfig,
		ErrBadConfig, ErrBadConfig, ErrBadConfig, nil, nil /* checked below */, nil, credit.ErrInsufficient,
		credit.ErrAwardNotFound, storeDown,
	}
	errs := s.Distribute(context.Background(), msgs)
	if len(errs) != len(msgs) {
		t.Fatalf("%d outcomes for %d messages", len(errs), len(msgs))
	}
	for i, err := range errs {
		if msgs[i].OrderID == "webhook-fails" {
			if err == nil || errors.Is(err, ErrNoDistributor) {
				t.Errorf("message %d (%s): %v, want the fallback's error", i, msgs[i].OrderID, err)
			}
			continue
		}
		if want[i] == nil && err != nil || want[i] != nil && !errors.Is(err, want[i]) {
			t.Errorf("message %d (%s): %v, want %v", i, msgs[i].OrderID, err, want[i])
		}
	}
	calls := credits.applied()
	if len(calls) != 1 {
		t.Fatalf("ApplyCredit called %d times, want once for the batch", len(calls))
	}
	var got []string
	for _, ch := range calls[0] {
		got = append(got, ch.UserID+"/"+ch.AwardOrderID)
	}
	wantApplied := []string{"u1/ok", "u2/webhook", "u3/dup", "u3/poor", "u3/gone", "u3/down"}
	if fmt.Sprint(got) != fmt.Sprint(wantApplied) {
		t.Errorf("applied %v, want %v (in message order, ready ones only)", got, wantApplied)
	}
	for _, ch := range calls[0] {
		if ch.AwardOrderID == "webhook" && ch.Order != nil {
			t.Errorf("webhook change carries a credit trade: %+v", ch.Order)
		}
		if ch.AwardOrderID == "down" && (ch.Order == nil || ch.Order.Amount != 50) {
			t.Errorf("range 0.5,0.5 change: %+v, want a trade of 0.50", ch.Order)
		}
	}
	fbMu.Lock()
	defer fbMu.Unlock()
	if len(fallbackSaw) != 2 {
		t.Errorf("fallback saw %v, want only the two non-credit awards", fallbackSaw)
	}
}

func TestDistributeWithoutFallback(t *testing.T) {
	t.Parallel()
	credits := &fakeCredits{}
	s := NewService(Options{Configs: fakeConfigs{awards: testAwards}, Credits: credits})
	errs := s.Distribute(context.Background(), []SendAward{{UserID: "u", OrderID: "o", AwardID: 103}})
	if !errors.Is(errs[0], ErrNoDistributor) {
		t.Errorf("external award without a fallback: %v, want ErrNoDistributor", errs[0])
	}
	if calls := credits.applied(); len(calls) != 0 {
		t.Errorf("ApplyCredit called %v with nothing ready", calls)
	}
}

func TestDistributeConfigsError(t *testing.T) {
	t.Parallel()
	down := errors.New("config db down")
	credits := &fakeCredits{}
	s := NewService(Options{
		Configs: fakeConfigs{AwardFn: func(int) (Award, error) { return Award{}, down }},
		Credits: credits,
	})
	errs := s.Distribute(context.Background(), []SendAward{{UserID: "u", OrderID: "o", AwardID: 101}})
	if !errors.Is(errs[0], down) || errors.Is(errs[0], ErrUnknownAward) {
		t.Errorf("configs error: %v, want it wrapped as it came", errs[0])
	}
	if calls := credits.applied(); len(calls) != 0 {
		t.Errorf("ApplyCredit called %v with nothing ready", calls)
	}
}

// TestDistributorsOverride shows that a distributor registered for a credit key replaces
// the built-in one.
func TestDistributorsOverride(t *testing.T) {
	t.Parallel()
	var called []string
	credits := &fakeCredits{}
	s := NewService(Options{
		Configs: fakeConfigs{awards: testAwards},
		Credits: credits,
		Distributors: map[string]Distributor{KeyCreditRandom: DistributorFunc(
			func(_ context.Context, a Award, m SendAward) (credit.Change, error) {
				called = append(called, m.OrderID)
				return credit.Change{Order: &credit.Order{UserID: m.UserID, Type: credit.Forward, Amount: 7, OutBusinessNo: m.OrderID}}, nil
			})},
	})
	errs := s.Distribute(context.Background(), []SendAward{{UserID: "u", OrderID: "o", AwardID: 101}})
	if errs[0] != nil || len(called) != 1 {
		t.Fatalf("Distribute = %v; override called %v", errs, called)
	}
	calls := credits.applied()
	if len(calls) != 1 || calls[0][0].Order.Amount != 7 || calls[0][0].AwardOrderID != "o" || calls[0][0].UserID != "u" {
		t.Errorf("applied %+v, want the override's trade completing o for u", calls)
	}
}

// TestDefaultPick checks the default pick: the same order always gets the same amount,
// every amount is in range, and a small range is covered end to end.
func TestDefaultPick(t *testing.T) {
	t.Parallel()
	s := NewService(Options{Configs: fakeConfigs{awards: testAwards}, Credits: &fakeCredits{}})
	pick := s.opts.Pick
	seen := map[money.Cents]int{}
	for i := range 10_000 {
		id := fmt.Sprintf("%013d%07d", 1_700_000_000_000, i)
		got := pick(id, 100, 104)
		if got < 100 || got > 104 {
			t.Fatalf("pick(%s, 1.00, 1.04) = %s, out of range", id, got)
		}
		if again := pick(id, 100, 104); again != got {
			t.Fatalf("pick(%s) = %s then %s; want the same for a redelivery", id, got, again)
		}
		seen[got]++
	}
	for c := money.Cents(100); c <= 104; c++ {
		// 2000 expected each; a uniform draw stays well within ±20%.
		if n := seen[c]; n < 1600 || n > 2400 {
			t.Errorf("amount %s picked %d times of 10000, want about 2000", c, n)
		}
	}
	if got := pick("o", 300, 300); got != 300 {
		t.Errorf("pick of a one-amount range = %s, want 3.00", got)
	}
}

// TestDistributeParallel checks that Prepare calls of a batch run concurrently, at most
// Parallel at a time.
func TestDistributeParallel(t *testing.T) {
	t.Parallel()
	const parallel, n = 3, 12
	var (
		mu             sync.Mutex
		inFlight, peak int
		full           = make(chan struct{})
		fullOnce       sync.Once
		release        = make(chan struct{})
	)
	d := DistributorFunc(func(ctx context.Context, _ Award, m SendAward) (credit.Change, error) {
		mu.Lock()
		inFlight++
		if inFlight > peak {
			peak = inFlight
		}
		if inFlight == parallel {
			fullOnce.Do(func() { close(full) })
		}
		mu.Unlock()
		<-release
		mu.Lock()
		inFlight--
		mu.Unlock()
		return credit.Change{}, nil
	})
	s := NewService(Options{
		Configs:  fakeConfigs{awards: testAwards},
		Credits:  &fakeCredits{},
		Fallback: d,
		Parallel: parallel,
	})
	msgs := make([]SendAward, n)
	for i := range msgs {
		msgs[i] = SendAward{UserID: "u", OrderID: fmt.Sprint("o", i), AwardID: 103}
	}
	done := make(chan []error)
	go func() { done <- s.Distribute(context.Background(), msgs) }()
	select {
	case <-full:
	case <-time.After(10 * time.Second):
		t.Fatalf("never %d Prepare calls at once", parallel)
	}
	close(release)
	var errs []error
	select {
	case errs = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Distribute did not return")
	}
	for i, err := range errs {
		if err != nil {
			t.Errorf("message %d: %v", i, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if peak != parallel {
		t.Errorf("at most %d Prepare calls at once, want %d", peak, parallel)
	}
}

// TestDemoReceiver distributes external awards through the demo receiver: each completes
// (a change with no credit order, applied like a webhook's), one INFO line per award names
// the user, the order and the award with its key and config; credit awards keep their
// own distributors.
func TestDemoReceiver(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	credits := &fakeCredits{}
	s := NewService(Options{Configs: fakeConfigs{awards: testAwards}, Credits: credits,
		Fallback: DemoReceiver{Logger: slog.New(slog.NewTextHandler(&logs, nil))}})
	msgs := []SendAward{
		{UserID: "u1", OrderID: "o1", AwardID: 103, AwardTitle: "calls"},
		{UserID: "u2", OrderID: "o2", AwardID: 105, AwardConfig: "dall-e-3"},
		{UserID: "u3", OrderID: "o3", AwardID: 101},
	}
	for i, err := range s.Distribute(context.Background(), msgs) {
		if err != nil {
			t.Errorf("%+v: %v", msgs[i], err)
		}
	}
	calls := credits.applied()
	if len(calls) != 1 || len(calls[0]) != 3 || calls[0][0].Order != nil || calls[0][1].Order != nil || calls[0][2].Order == nil ||
		calls[0][0].AwardOrderID != "o1" || calls[0][1].UserID != "u2" {
		t.Fatalf("applied %+v; want o1 and o2 completed without credit, o3 credited", calls)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("demo receiver logged %d lines, want one per external award:\n%s", len(lines), logs.String())
	}
	for order, want := range map[string][]string{
		"order_id=o1": {"level=INFO", "user_id=u1", "award_id=103", "award_key=openai_use_count", "award_config=5"},
		"order_id=o2": {"level=INFO", "user_id=u2", "award_id=105", "award_key=openai_model", "award_config=dall-e-3"},
	} {
		line := lines[0]
		if !strings.Contains(line, order) {
			line = lines[1]
		}
		for _, w := range append(want, order) {
			if !strings.Contains(line, w) {
				t.Errorf("log line %q lacks %s", line, w)
			}
		}
	}
}
