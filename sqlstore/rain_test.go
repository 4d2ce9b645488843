package sqlstore_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/outbox"
	"github.com/bigmarket/bigmarket/rain"
	"github.com/bigmarket/bigmarket/sqlstore"
	"github.com/bigmarket/bigmarket/sqlstore/sqltest"
)

// TestRainStore runs the rain store contract on SQLite and, when BIGMARKET_TEST_MYSQL_DSN
// is set, on MySQL/MariaDB: sessions and prizes in the config database, wins in two user
// databases.
func TestRainStore(t *testing.T) {
	t.Parallel()
	sqltest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		f := newRainFixture(t, db)
		t.Run("sessions and prizes", f.testSessions)
		t.Run("quota compare-and-set", f.testSetQuota)
		t.Run("end once", f.testEndSession)
		t.Run("award exists", f.testAwardExists)
		t.Run("wins are recorded and credited once", f.testApplyWins)
		t.Run("conflicting wins", f.testWinConflicts)
	})
}

type rainFixture struct {
	*userFixture
	config *sqlstore.DB
	rain   *sqlstore.RainStore

	mu        sync.Mutex
	committed []outbox.Task
}

// newRainFixture puts the config schema (with the demo awards) beside the first user
// database, as a single-database deployment does, and builds the user store with a
// Committed hook that records the tasks it is told of.
func newRainFixture(t *testing.T, db *sqlstore.DB) *rainFixture {
	t.Helper()
	uf := newUserFixture(t, db)
	if err := sqlstore.MigrateConfig(t.Context(), db); err != nil {
		t.Fatalf("MigrateConfig: %v", err)
	}
	if err := sqlstore.SeedDemo(t.Context(), db); err != nil {
		t.Fatalf("SeedDemo: %v", err)
	}
	f := &rainFixture{userFixture: uf, config: db}
	uf.store = sqlstore.NewUserStoreWith(uf.dbs, uf.router, sqlstore.UserOptions{Committed: func(tasks []outbox.Task) {
		f.mu.Lock()
		f.committed = append(f.committed, tasks...)
		f.mu.Unlock()
	}})
	f.rain = sqlstore.NewRainStore(db, uf.store)
	return f
}

var rainStart = time.Date(2026, 12, 2, 20, 0, 0, 123_000_000, time.UTC)

// newSession creates a session of cash 1.50 ×3, SKU 9011 ×2 and award 101 ×1, plus extra
// cash prizes of 0.01, and returns its id and prizes.
func (f *rainFixture) newSession(t *testing.T, title string, start time.Time, extra int) (int64, rain.Session, []rain.Prize) {
	t.Helper()
	specs := []rain.PrizeSpec{{Kind: rain.KindCash, Amount: 1_50, Count: 3}, {Kind: rain.KindSKU, SKU: 9011, Count: 2},
		{Kind: rain.KindAward, AwardID: 101, Count: 1}}
	var prizes []rain.Prize
	add := func(p rain.Prize) { p.Index = len(prizes); prizes = append(prizes, p) }
	for range 3 {
		add(rain.Prize{Kind: rain.KindCash, Amount: 1_50})
	}
	for range 2 {
		add(rain.Prize{Kind: rain.KindSKU, SKU: 9011})
	}
	add(rain.Prize{Kind: rain.KindAward, AwardID: 101})
	if extra > 0 {
		specs = append(specs, rain.PrizeSpec{Kind: rain.KindCash, Min: 1, Max: 1, Count: extra})
		for range extra {
			add(rain.Prize{Kind: rain.KindCash, Amount: 1})
		}
	}
	s := rain.Session{Title: title, Budget: 100_00, Specs: specs, State: rain.StateArmed,
		Quota: rain.Quota{Start: start, End: start.Add(10*time.Minute + 456*time.Millisecond), Total: len(prizes),
			Burst: 1, Weights: []int{1, 2, 3}, UserCap: 2}}
	id, err := f.rain.CreateSession(t.Context(), s, prizes)
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	s.ID, s.Armed, s.Quota.SessionID, s.Quota.SeqNo = id, len(prizes), id, 1
	return id, s, prizes
}

// sameSession compares what a session reads back as with what was written.
func sameSession(t *testing.T, got, want rain.Session) {
	t.Helper()
	if got.Created.IsZero() {
		t.Errorf("session %d has no create time", got.ID)
	}
	got.Created = want.Created
	if !got.Quota.Start.Equal(want.Quota.Start) || !got.Quota.End.Equal(want.Quota.End) {
		t.Errorf("session %d runs %s to %s, want %s to %s", got.ID, got.Quota.Start, got.Quota.End, want.Quota.Start, want.Quota.End)
	}
	got.Quota.Start, got.Quota.End = want.Quota.Start, want.Quota.End
	if !reflect.DeepEqual(got, want) {
		t.Errorf("session read back as\n%+v\nwant\n%+v", got, want)
	}
}

func (f *rainFixture) testSessions(t *testing.T) {
	ctx := t.Context()
	// 1,200 extra prizes: the prize inserts span three statements.
	idA, a, prizesA := f.newSession(t, "晚八点红包雨", rainStart.Add(time.Hour), 1200)
	idB, b, _ := f.newSession(t, "earlier", rainStart, 0)
	if idA <= 0 || idB <= idA {
		t.Fatalf("session ids %d then %d, want increasing positive ids", idA, idB)
	}
	got, err := f.rain.Session(ctx, idA)
	if err != nil {
		t.Fatal(err)
	}
	sameSession(t, got, a)
	if got.Quota.Start.Nanosecond() != 123_000_000 || got.Quota.End.Nanosecond() != 579_000_000 {
		t.Errorf("times lost their milliseconds: %s %s", got.Quota.Start, got.Quota.End)
	}
	prizes, err := f.rain.Prizes(ctx, idA)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(prizes, prizesA) {
		t.Errorf("prizes read back: %d, want %d (first %+v, want %+v)", len(prizes), len(prizesA), prizes[:1], prizesA[:1])
	}
	if _, err := f.rain.Session(ctx, 1<<40); !errors.Is(err, rain.ErrNotFound) {
		t.Errorf("unknown session: %v", err)
	}
	// Sessions ending after a time, by start: B starts an hour before A.
	list, err := f.rain.Sessions(ctx, b.Quota.End.Add(-time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, s := range list {
		ids = append(ids, s.ID)
	}
	if !slices.Contains(ids, idA) || !slices.Contains(ids, idB) || slices.Index(ids, idB) > slices.Index(ids, idA) {
		t.Errorf("sessions ending after B's last millisecond: %v, want B (%d) before A (%d)", ids, idB, idA)
	}
	list, err = f.rain.Sessions(ctx, b.Quota.End)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list {
		if s.ID == idB {
			t.Errorf("session %d ending at %s listed as ending after it", idB, b.Quota.End)
		}
	}
	// A linear plan without budget stores NULLs and reads back as such.
	lin := rain.Session{Title: "linear", Quota: rain.Quota{Start: rainStart, End: rainStart.Add(time.Minute), Total: 1, UserCap: 1},
		State: rain.StateArmed}
	id, err := f.rain.CreateSession(ctx, lin, []rain.Prize{{Index: 0, Kind: rain.KindCash, Amount: 1}})
	if err != nil {
		t.Fatal(err)
	}
	lin.ID, lin.Armed, lin.Quota.SessionID, lin.Quota.SeqNo, lin.Specs = id, 1, id, 1, []rain.PrizeSpec{}
	got, err = f.rain.Session(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	sameSession(t, got, lin)
	// Refused: a total beyond the prizes, a bad prize, an invalid plan; nothing written.
	before := count(t, f.config, "SELECT COUNT(*) FROM rain_session")
	for name, tc := range map[string]struct {
		title  string
		q      rain.Quota
		prizes []rain.Prize
	}{
		"title too long": {strings.Repeat("雨", 65), rain.Quota{Start: rainStart, End: rainStart.Add(time.Minute), Total: 1, UserCap: 1},
			[]rain.Prize{{Kind: rain.KindCash, Amount: 1}}},
		"total beyond prizes": {"", rain.Quota{Start: rainStart, End: rainStart.Add(time.Minute), Total: 2, UserCap: 1},
			[]rain.Prize{{Kind: rain.KindCash, Amount: 1}}},
		"prize without value": {"", rain.Quota{Start: rainStart, End: rainStart.Add(time.Minute), Total: 1, UserCap: 1},
			[]rain.Prize{{Kind: rain.KindSKU}}},
		"end before start": {"", rain.Quota{Start: rainStart, End: rainStart.Add(-time.Minute), Total: 1, UserCap: 1},
			[]rain.Prize{{Kind: rain.KindCash, Amount: 1}}},
	} {
		if _, err := f.rain.CreateSession(ctx, rain.Session{Title: tc.title, Quota: tc.q}, tc.prizes); !errors.Is(err, rain.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if after := count(t, f.config, "SELECT COUNT(*) FROM rain_session"); after != before {
		t.Errorf("refused sessions were written: %d rows, then %d", before, after)
	}
}

func (f *rainFixture) testSetQuota(t *testing.T) {
	ctx := t.Context()
	id, s, prizes := f.newSession(t, "quota", rainStart, 0)
	q := s.Quota
	q.SeqNo, q.Total, q.UserCap, q.Burst, q.Weights = 2, 8, 3, 0, nil
	q.End = q.End.Add(time.Minute)
	spec := rain.PrizeSpec{Kind: rain.KindCash, Amount: 2_00, Count: 2}
	added := []rain.Prize{{Index: len(prizes), Kind: rain.KindCash, Amount: 2_00}, {Index: len(prizes) + 1, Kind: rain.KindCash, Amount: 2_00}}
	if err := f.rain.SetQuota(ctx, q, 1, []rain.PrizeSpec{spec}, added); err != nil {
		t.Fatal(err)
	}
	want := s
	want.Quota, want.Armed, want.Specs = q, len(prizes)+2, append(slices.Clone(s.Specs), spec)
	got, err := f.rain.Session(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	sameSession(t, got, want)
	if all, err := f.rain.Prizes(ctx, id); err != nil || !reflect.DeepEqual(all, append(slices.Clone(prizes), added...)) {
		t.Errorf("prizes after the change: %+v %v", all, err)
	}
	// A writer that read SeqNo 1 lost the race: conflict, nothing changed.
	stale := q
	stale.UserCap = 9
	if err := f.rain.SetQuota(ctx, stale, 1, nil, nil); !errors.Is(err, rain.ErrConflict) {
		t.Errorf("stale compare-and-set: %v, want ErrConflict", err)
	}
	// Prize indexes armed already: conflict, and the version is not written either.
	next := q
	next.SeqNo = 3
	if err := f.rain.SetQuota(ctx, next, 2, nil, []rain.Prize{{Index: 0, Kind: rain.KindCash, Amount: 5}}); !errors.Is(err, rain.ErrConflict) {
		t.Errorf("re-armed index: %v, want ErrConflict", err)
	}
	for name, tc := range map[string]struct {
		q    rain.Quota
		prev int64
		want error
	}{
		"seqNo not next":      {next, 1, rain.ErrInvalid},
		"unknown session":     {func() rain.Quota { u := next; u.SessionID = 1 << 40; return u }(), 2, rain.ErrNotFound},
		"total beyond armed":  {func() rain.Quota { u := next; u.Total = 100; return u }(), 2, rain.ErrInvalid},
		"invalid cap in plan": {func() rain.Quota { u := next; u.UserCap = 0; return u }(), 2, rain.ErrInvalid},
	} {
		if err := f.rain.SetQuota(ctx, tc.q, tc.prev, nil, nil); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if got, err := f.rain.Session(ctx, id); err != nil || got.Quota.SeqNo != 2 || got.Quota.UserCap != 3 || got.Armed != len(prizes)+2 {
		t.Errorf("refused changes changed the session: %+v %v", got, err)
	}
	// Concurrent writers of the same next version: exactly one wins.
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
	)
	for range 4 {
		wg.Go(func() {
			err := f.rain.SetQuota(ctx, next, 2, nil, nil)
			switch {
			case err == nil:
				mu.Lock()
				wins++
				mu.Unlock()
			case !errors.Is(err, rain.ErrConflict):
				t.Errorf("concurrent compare-and-set: %v", err)
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d concurrent writers of SeqNo 3 succeeded, want 1", wins)
	}
	// An ended session takes no new version.
	if err := f.rain.EndSession(ctx, id, rain.Ledger{EndedAt: rainStart}); err != nil {
		t.Fatal(err)
	}
	last := next
	last.SeqNo = 4
	if err := f.rain.SetQuota(ctx, last, 3, nil, nil); !errors.Is(err, rain.ErrEnded) {
		t.Errorf("quota of an ended session: %v, want ErrEnded", err)
	}
}

func (f *rainFixture) testEndSession(t *testing.T) {
	ctx := t.Context()
	id, _, _ := f.newSession(t, "end", rainStart, 0)
	first := rain.Ledger{EndedAt: rainStart.Add(10 * time.Minute).Truncate(time.Millisecond)}
	first.Granted.Add(rain.Prize{Kind: rain.KindCash, Amount: 1_50})
	first.Unwon.Add(rain.Prize{Kind: rain.KindSKU, SKU: 9011})
	first.Unreleased.Add(rain.Prize{Kind: rain.KindAward, AwardID: 101})
	if err := f.rain.EndSession(ctx, id, first); err != nil {
		t.Fatal(err)
	}
	second := rain.Ledger{EndedAt: first.EndedAt.Add(time.Hour)}
	if err := f.rain.EndSession(ctx, id, second); err != nil {
		t.Fatalf("second end: %v", err)
	}
	got, err := f.rain.Session(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != rain.StateEnded || got.Ledger == nil || !got.Ledger.EndedAt.Equal(first.EndedAt) {
		t.Fatalf("ended session %+v ledger %+v, want the first ledger %+v", got, got.Ledger, first)
	}
	got.Ledger.EndedAt = first.EndedAt
	if !reflect.DeepEqual(*got.Ledger, first) {
		t.Errorf("ledger read back as %+v, want %+v", *got.Ledger, first)
	}
	if err := f.rain.EndSession(ctx, 1<<40, first); !errors.Is(err, rain.ErrNotFound) {
		t.Errorf("end of an unknown session: %v", err)
	}
}

func (f *rainFixture) testAwardExists(t *testing.T) {
	for id, want := range map[int]bool{101: true, 117: true, 999: false} {
		if got, err := f.rain.AwardExists(t.Context(), id); err != nil || got != want {
			t.Errorf("AwardExists(%d) = %v %v, want %v", id, got, err, want)
		}
	}
}

// usersOnEachDB returns n user ids of each user database.
func (f *rainFixture) usersOnEachDB(prefix string, n int) [][]string {
	out := make([][]string, len(f.dbs))
	for i := 0; ; i++ {
		u := fmt.Sprintf("%s-%d", prefix, i)
		db := f.router.Route(u).DB
		if len(out[db]) < n {
			out[db] = append(out[db], u)
		}
		done := true
		for _, us := range out {
			done = done && len(us) == n
		}
		if done {
			return out
		}
	}
}

func (f *rainFixture) taskCount(t *testing.T, messageID string) int {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, task := range f.committed {
		if task.MessageID == messageID {
			n++
		}
	}
	return n
}

func (f *rainFixture) testApplyWins(t *testing.T) {
	ctx := t.Context()
	id, _, prizes := f.newSession(t, "wins", rainStart, 0)
	users := f.usersOnEachDB("rain-w", 2)
	a, b, c := users[0][0], users[1][0], users[1][1]
	at := rainStart.Add(1234 * time.Millisecond)
	wins := []rain.Win{
		{SessionID: id, UserID: a, N: 1, Prize: prizes[0], Time: at},                            // cash 1.50
		{SessionID: id, UserID: a, N: 2, Prize: prizes[1], Time: at.Add(time.Second)},           // cash 1.50
		{SessionID: id, UserID: b, N: 1, Prize: prizes[2], Time: at},                            // cash 1.50
		{SessionID: id, UserID: b, N: 2, Prize: prizes[5], Time: at.Add(time.Second)},           // award 101
		{SessionID: id, UserID: c, N: 1, Prize: prizes[3], Time: at.Add(2 * time.Second)},       // sku 9011
		{SessionID: id, UserID: users[0][1], N: 1, Prize: prizes[4], Time: at.Add(time.Second)}, // sku 9011
	}
	// Overlapping batches applied concurrently, twice over: each win lands once.
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Go(func() {
			batch := slices.Clone(wins[r%3:])
			if r%2 == 1 {
				slices.Reverse(batch)
			}
			for i, err := range f.rain.ApplyWins(ctx, batch) {
				if err != nil {
					t.Errorf("apply %s: %v", batch[i].MsgID(), err)
				}
			}
		})
	}
	wg.Wait()
	for i, err := range f.rain.ApplyWins(ctx, wins) {
		if err != nil {
			t.Errorf("reapply %s: %v", wins[i].MsgID(), err)
		}
	}
	if acc := f.account(t, a); acc.Available != 3_00 || acc.Total != 3_00 {
		t.Errorf("%s credited %+v, want 3.00 once", a, acc)
	}
	if acc := f.account(t, b); acc.Available != 1_50 {
		t.Errorf("%s credited %+v, want 1.50 once", b, acc)
	}
	if acc := f.account(t, c); acc.Available != 0 {
		t.Errorf("%s (a SKU win) credited %+v", c, acc)
	}
	orders, err := f.store.CreditOrders(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if len(orders) != 2 {
		t.Errorf("credit orders of %s: %+v, want two", a, orders)
	}
	for _, w := range wins[:2] {
		i := slices.IndexFunc(orders, func(o credit.Order) bool { return o.OutBusinessNo == w.BusinessNo() })
		if i < 0 || orders[i].Name != rain.NameWin || orders[i].Type != credit.Forward || orders[i].Amount != 1_50 || len(orders[i].OrderID) != 32 {
			t.Errorf("credit orders of %s: %+v, want one forward 1.50 of %s", a, orders, w.BusinessNo())
		}
	}
	// The award win: one record in state create, one send_award task, told once.
	recs, err := f.store.AwardRecords(ctx, b, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].AwardID != 101 || recs[0].State != award.StateCreate || recs[0].StrategyID != 0 ||
		recs[0].AwardTitle != "用户积分，随机1到100" || !recs[0].AwardTime.Equal(at.Add(time.Second).Truncate(time.Second)) {
		t.Fatalf("award records of %s: %+v", b, recs)
	}
	tasks, err := f.store.Tasks(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 1 || tasks[0].Topic != award.TopicSendAward || tasks[0].MessageID != recs[0].OrderID {
		t.Fatalf("tasks of %s: %+v", b, tasks)
	}
	m, err := outbox.Decode[award.SendAward]([]byte(tasks[0].Message))
	if err != nil || m.Data != (award.SendAward{UserID: b, OrderID: recs[0].OrderID, AwardID: 101, AwardTitle: recs[0].AwardTitle}) {
		t.Errorf("send_award message %+v %v", m.Data, err)
	}
	if n := f.taskCount(t, recs[0].OrderID); n != 1 {
		t.Errorf("the award's task was told committed %d times, want 1", n)
	}
	if pending, err := f.store.PendingAwards(ctx, b); err != nil || len(pending) != 1 || pending[0].OrderID != recs[0].OrderID {
		t.Errorf("the green channel sees %+v %v, want the rain award", pending, err)
	}
	// Wins read back by user and across the databases, times to the millisecond.
	got, err := f.rain.Wins(ctx, a, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !sameWin(got[0], wins[0]) || !sameWin(got[1], wins[1]) {
		t.Errorf("wins of %s: %+v, want %+v", a, got, wins[:2])
	}
	if all, err := f.rain.Wins(ctx, a, 0); err != nil || len(all) != 2 {
		t.Errorf("wins of %s in every session: %+v %v", a, all, err)
	}
	if none, err := f.rain.Wins(ctx, a, id+1); err != nil || len(none) != 0 {
		t.Errorf("wins of %s in another session: %+v %v", a, none, err)
	}
	every, err := f.rain.SessionWins(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(every) != len(wins) {
		t.Fatalf("session wins: %d, want %d", len(every), len(wins))
	}
	for _, w := range wins {
		if !slices.ContainsFunc(every, func(g rain.Win) bool { return sameWin(g, w) }) {
			t.Errorf("session wins lack %s: %+v", w.MsgID(), every)
		}
	}
	// Verify's reader: each win with its grants. The SKU recharge is the activity
	// service's (GrantReserved); one of the two SKU wins gets it here.
	f.recharge(t, key(day1, c, 100301), wins[4].BusinessNo(), activity.Count{Total: 1, Day: 1, Month: 1})
	grants, err := f.store.RainGrants(ctx, every)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range wins {
		g := grants[w.BusinessNo()]
		var ok bool
		switch w.Prize.Kind {
		case rain.KindCash:
			ok = len(g.Credits) == 1 && g.Credits[0].Amount == w.Prize.Amount && g.Credits[0].UserID == w.UserID &&
				len(g.Awards) == 0 && len(g.Recharges) == 0
		case rain.KindAward:
			ok = len(g.Awards) == 1 && g.Awards[0].OrderID == recs[0].OrderID && len(g.Credits) == 0 && len(g.Recharges) == 0
		case rain.KindSKU:
			want := 0
			if i == 4 {
				want = 1
			}
			ok = len(g.Recharges) == want && (want == 0 || g.Recharges[0].SKU == 9011) && len(g.Credits) == 0 && len(g.Awards) == 0
		}
		if !ok {
			t.Errorf("grants of %s: %+v", w.MsgID(), g)
		}
	}
	// Each database holds three: a's two and another user's SKU win; b's two and c's.
	for i, d := range f.dbs {
		if n := count(t, d, "SELECT COUNT(*) FROM rain_win WHERE session_id = ?", id); n != 3 {
			t.Errorf("database %d holds %d rain_win rows of the session, want 3", i, n)
		}
	}
}

func sameWin(got, want rain.Win) bool {
	return got.SessionID == want.SessionID && got.UserID == want.UserID && got.N == want.N && got.Prize == want.Prize &&
		got.Time.Equal(want.Time.Truncate(time.Millisecond))
}

func (f *rainFixture) testWinConflicts(t *testing.T) {
	ctx := t.Context()
	id, _, prizes := f.newSession(t, "conflicts", rainStart, 0)
	users := f.usersOnEachDB("rain-c", 2)
	a, b := users[0][0], users[0][1] // one database: its unique keys see both
	at := rainStart.Add(time.Second)
	first := rain.Win{SessionID: id, UserID: a, N: 1, Prize: prizes[0], Time: at}
	if errs := f.rain.ApplyWins(ctx, []rain.Win{first}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	other := func(w rain.Win, edit func(*rain.Win)) rain.Win { edit(&w); return w }
	cases := []struct {
		name string
		win  rain.Win
		want error
	}{
		{"same win, another prize", other(first, func(w *rain.Win) { w.Prize = prizes[1] }), rain.ErrConflict},
		{"prize won by another user", other(first, func(w *rain.Win) { w.UserID = b }), rain.ErrConflict},
		{"prize not armed", other(first, func(w *rain.Win) { w.N = 2; w.Prize = rain.Prize{Index: 99, Kind: rain.KindCash, Amount: 1_50} }), rain.ErrConflict},
		{"prize of another value", other(first, func(w *rain.Win) { w.N = 2; w.Prize = rain.Prize{Index: 1, Kind: rain.KindCash, Amount: 9_99} }), rain.ErrConflict},
		{"bad user", other(first, func(w *rain.Win) { w.UserID = "" }), rain.ErrInvalid},
		{"no number", other(first, func(w *rain.Win) { w.N = 0 }), rain.ErrInvalid},
		{"bad prize", other(first, func(w *rain.Win) { w.Prize.Amount = 0 }), rain.ErrInvalid},
	}
	batch := make([]rain.Win, len(cases))
	for i, tc := range cases {
		batch[i] = tc.win
	}
	// Two new wins of one prize in the same batch: the first is recorded, the second not.
	batch = append(batch, rain.Win{SessionID: id, UserID: a, N: 2, Prize: prizes[1], Time: at},
		rain.Win{SessionID: id, UserID: b, N: 1, Prize: prizes[1], Time: at})
	errs := f.rain.ApplyWins(ctx, batch)
	for i, tc := range cases {
		if !errors.Is(errs[i], tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, errs[i], tc.want)
		}
	}
	if n := len(cases); errs[n] != nil || !errors.Is(errs[n+1], rain.ErrConflict) {
		t.Errorf("two wins of one prize in a batch: %v, %v; want nil, ErrConflict", errs[n], errs[n+1])
	}
	if acc := f.account(t, a); acc.Available != 3_00 {
		t.Errorf("%s credited %s, want 1.50 for each of its two wins", a, acc.Available)
	}
	if acc := f.account(t, b); acc.Available != 0 {
		t.Errorf("%s credited %s for conflicting wins", b, acc.Available)
	}
	if wins, err := f.rain.SessionWins(ctx, id); err != nil || len(wins) != 2 {
		t.Errorf("session wins after the conflicts: %+v %v, want a's two", wins, err)
	}
}
