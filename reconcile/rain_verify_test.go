package reconcile

import (
	"context"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/rain"
)

// rainLedger is the ledger of rainRows: four wins (cash 2.00), six prizes left of total
// 10, all released.
func rainLedger(r RainRows) *rain.Ledger {
	l := &rain.Ledger{EndedAt: r.Session.Quota.End}
	won := map[int]bool{}
	for _, w := range r.Wins {
		won[w.Prize.Index] = true
		l.Granted.Add(w.Prize)
	}
	for _, p := range r.Prizes {
		if !won[p.Index] {
			l.Unwon.Add(p)
		}
	}
	return l
}

func endedRows() RainRows {
	r := rainRows()
	r.Session.Ledger = rainLedger(r)
	return r
}

func TestRainLedger(t *testing.T) {
	t.Parallel()
	wantKinds(t, "clean", RainLedger(endedRows()))

	armed := endedRows()
	armed.Session.State, armed.Session.Ledger = rain.StateArmed, nil
	wantKinds(t, "not ended", RainLedger(armed), KindRainLedger)

	short := endedRows()
	short.Wins = short.Wins[:3] // the ledger counts a win whose row is gone
	wantKinds(t, "a granted win not recorded", RainLedger(short), KindRainLedger)

	lost := endedRows()
	lost.Session.Ledger.Unwon = rain.Tally{}
	wantKinds(t, "prizes left uncounted", RainLedger(lost), KindRainLedger)
}

// rainSessions serves sessions by id from fixed rows.
type rainSessions struct {
	rows  map[int64]RainRows
	since time.Time
}

func (s *rainSessions) Sessions(_ context.Context, endAfter time.Time) ([]rain.Session, error) {
	s.since = endAfter
	var out []rain.Session
	for _, r := range s.rows {
		if r.Session.Quota.End.After(endAfter) {
			out = append(out, r.Session)
		}
	}
	return out, nil
}

func (s *rainSessions) Session(_ context.Context, id int64) (rain.Session, error) {
	r, ok := s.rows[id]
	if !ok {
		return rain.Session{}, rain.ErrNotFound
	}
	return r.Session, nil
}

func (s *rainSessions) Prizes(_ context.Context, id int64) ([]rain.Prize, error) {
	return s.rows[id].Prizes, nil
}

func (s *rainSessions) SessionWins(_ context.Context, id int64) ([]rain.Win, error) {
	return s.rows[id].Wins, nil
}

func (s *rainSessions) RainGrants(_ context.Context, wins []rain.Win) (map[string]RainGrant, error) {
	return grantsOf(wins), nil
}

// withID returns r as session id (its wins and quota renamed).
func withID(r RainRows, id int64) RainRows {
	r.Session.ID, r.Session.Quota.SessionID = id, id
	wins := make([]rain.Win, len(r.Wins))
	for i, w := range r.Wins {
		w.SessionID = id
		wins[i] = w
	}
	r.Wins = wins
	r.Grants = grantsOf(wins)
	return r
}

func TestVerifyRain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	skew := 100 * time.Millisecond
	settled := rainStart.Add(time.Hour)
	w := Window{Since: rainStart.Add(-time.Hour), Settled: settled}

	src := &rainSessions{rows: map[int64]RainRows{7: endedRows()}}
	rep, err := VerifyRain(ctx, src, w, skew)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Discrepancies) != 0 || rep.Sessions != 1 || rep.Wins != 4 || rep.Open != 0 {
		t.Fatalf("clean: %+v", rep)
	}
	if !src.since.Equal(w.Since) {
		t.Errorf("sessions read ending after %s, want %s", src.since, w.Since)
	}

	// A session before the window is not read.
	rep, err = VerifyRain(ctx, src, Window{Since: rainStart.Add(time.Minute), Settled: settled}, skew)
	if err != nil || rep.Sessions != 0 {
		t.Fatalf("session ended before the window: %+v %v", rep, err)
	}

	// A settled session with a prize won twice, a win number missing and no ledger.
	broken := rainRows()
	broken.Wins = append(broken.Wins, rainWin("c", 2, 3, 5*time.Second))
	broken = withID(broken, 8)
	src.rows[8] = broken
	rep, err = VerifyRain(ctx, src, w, skew)
	if err != nil {
		t.Fatal(err)
	}
	wantKinds(t, "broken session", rep.Discrepancies, KindRainLedger, KindRainPrizeTwice, KindRainWinNo)
	if rep.Sessions != 2 || rep.Wins != 9 {
		t.Errorf("broken: %+v", rep)
	}

	// The same session still open (within the grace): its win numbers and ledger may yet
	// complete, the prize won twice never can.
	rep, err = VerifyRain(ctx, src, Window{Since: w.Since, Settled: rainStart.Add(5 * time.Second)}, skew)
	if err != nil {
		t.Fatal(err)
	}
	wantKinds(t, "open sessions", rep.Discrepancies, KindRainPrizeTwice)
	if rep.Open != 2 {
		t.Errorf("open: %+v", rep)
	}
}
