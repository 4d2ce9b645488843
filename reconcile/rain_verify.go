package reconcile

import (
	"context"
	"fmt"
	"time"

	"github.com/bigmarket/bigmarket/rain"
)

// KindRainLedger: a session past its end (and the grace) has no ledger, or its ledger
// does not count its rows: granted is not its recorded wins, or granted, unwon and
// unreleased do not add up to the armed prizes.
const KindRainLedger = "rain_ledger"

// RainSessions reads the sessions verify checks and their rows; sqlstore's rain store
// (with the user store for the grants) is the one over SQL.
type RainSessions interface {
	RainSource
	Sessions(ctx context.Context, endAfter time.Time) ([]rain.Session, error)
}

// RainReport is what verify's rain checks found and how much they covered.
type RainReport struct {
	Discrepancies []Discrepancy
	Sessions      int // sessions checked
	Open          int // of them, still running or within the grace: no ledger or full win numbers expected yet
	Wins          int // wins of the sessions checked
}

func (r RainReport) String() string {
	return fmt.Sprintf("%d rain sessions (%d still open) with %d wins", r.Sessions, r.Open, r.Wins)
}

// VerifyRain runs every rain check on each session ending after w.Since: prizes, caps,
// total, budget, grants and pacing (wins stamped within skew of the plan's clock). A
// session that ended before w.Settled is settled: its win numbers must have no gap and
// its ledger must be written and count its rows. One still open may be waiting for a win
// event in flight, which can arrive after a later win of the same user, so neither is
// asked of it yet; what is recorded must still never exceed the plan or the prizes.
func VerifyRain(ctx context.Context, src RainSessions, w Window, skew time.Duration) (RainReport, error) {
	w = w.normalize()
	sessions, err := src.Sessions(ctx, w.Since)
	if err != nil {
		return RainReport{}, err
	}
	var rep RainReport
	for _, s := range sessions {
		r, err := ReadRain(ctx, src, s.ID)
		if err != nil {
			return RainReport{}, err
		}
		rep.Sessions++
		rep.Wins += len(r.Wins)
		settled := r.Session.Quota.End.Before(w.Settled)
		if !settled {
			rep.Open++
		}
		for _, d := range RainDiscrepancies(r, skew) {
			if settled || d.Kind != KindRainWinNo {
				rep.Discrepancies = append(rep.Discrepancies, d)
			}
		}
		if settled {
			rep.Discrepancies = append(rep.Discrepancies, RainLedger(r)...)
		}
	}
	Sort(rep.Discrepancies)
	return rep, nil
}

// RainLedger checks an ended session's ledger against its rows: it is written, granted
// is exactly the recorded wins (count and cash), and granted, unwon and unreleased
// together are the armed prizes (count and cash).
func RainLedger(r RainRows) []Discrepancy {
	var f found
	s := r.Session
	key := fmt.Sprint(s.ID)
	if s.State != rain.StateEnded || s.Ledger == nil {
		f.report(KindRainLedger, "", key, "ended at %s, state %q, no ledger", s.Quota.End.UTC().Format(time.RFC3339Nano), s.State)
		return f
	}
	l := s.Ledger
	var won rain.Tally
	for _, w := range r.Wins {
		won.Add(w.Prize)
	}
	if l.Granted.Count != won.Count || l.Granted.Cash != won.Cash {
		f.report(KindRainLedger, "", key, "ledger granted %d of %s, recorded %d wins of %s",
			l.Granted.Count, l.Granted.Cash, won.Count, won.Cash)
	}
	count := l.Granted.Count + l.Unwon.Count + l.Unreleased.Count
	cash := l.Granted.Cash + l.Unwon.Cash + l.Unreleased.Cash
	if count != len(r.Prizes) || cash != RainCash(r.Prizes) {
		f.report(KindRainLedger, "", key, "ledger granted %d + unwon %d + unreleased %d = %d prizes of %s, armed %d of %s",
			l.Granted.Count, l.Unwon.Count, l.Unreleased.Count, count, cash, len(r.Prizes), RainCash(r.Prizes))
	}
	return f
}
