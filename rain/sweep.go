package rain

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/bigmarket/bigmarket/internal/tick"
)

// Leaser is an exclusive, expiring claim on a job's name, shared by the nodes; the redis
// adapter (redis.NewLeases) implements it.
type Leaser interface {
	// Claim takes name for ttl; false when another node holds it. The token releases it.
	Claim(ctx context.Context, name string, ttl time.Duration) (token string, ok bool, err error)
	// Release gives name back if token still holds it.
	Release(ctx context.Context, name, token string) error
}

// sweepLease names the sweep's lease.
const sweepLease = "rain_sweep"

// sweepLookback is how far back Sweep looks for sessions that ended unswept (every node
// down, or a session whose end kept failing): a week, far past the day the hot state
// keeps an ended session.
const sweepLookback = 7 * 24 * time.Hour

// SweepLeased runs Sweep every interval until ctx ends, on one node at a time. The lease
// lasts interval + 15s, so a node that dies holding it delays the others by seconds; a
// sweep that outlives its lease is harmless, as every step of ending a session is
// idempotent (Close, the wins by their key, EndSession once).
func (s *Service) SweepLeased(ctx context.Context, leases Leaser, interval time.Duration) error {
	return tick.Every(ctx, interval, func(ctx context.Context) {
		s.sweepOnce(ctx, leases, tick.LeaseTTL(interval))
	})
}

// sweepOnce sweeps if it can claim the lease for ttl.
func (s *Service) sweepOnce(ctx context.Context, leases Leaser, ttl time.Duration) {
	token, ok, err := leases.Claim(ctx, sweepLease, ttl)
	if err != nil || !ok {
		return
	}
	defer func() { _ = leases.Release(context.WithoutCancel(ctx), sweepLease, token) }()
	if n, err := s.Sweep(ctx); err != nil || n > 0 {
		s.opts.Logger.Info("rain sweep", "ended", n, "err", err)
	}
}

// Sweep ends every armed session past its end and returns how many it ended and the
// first error; a session that failed is retried by the next sweep.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	now := s.opts.Now()
	sessions, err := s.opts.Store.Sessions(ctx, now.Add(-sweepLookback))
	if err != nil {
		return 0, fmt.Errorf("rain sweep: %w", err)
	}
	var (
		n     int
		first error
	)
	for _, sess := range sessions {
		if sess.State != StateArmed || now.Before(sess.Quota.End) {
			continue
		}
		if err := s.end(ctx, sess); err != nil {
			s.opts.Logger.Warn("end rain session", "session_id", sess.ID, "err", err)
			if first == nil {
				first = err
			}
			continue
		}
		n++
	}
	return n, first
}

// end closes a session and writes its ledger, exactly once: the hot state is closed (no
// grab after it), every win it holds that the Store lacks is applied (events in flight,
// or never published), and the ledger is counted from the Store's prizes and wins. When
// Redis lost the session no grab can happen any more, so the Store is the whole truth
// once the win events in flight are applied.
func (s *Service) end(ctx context.Context, sess Session) error {
	id := sess.ID
	pool, err := s.opts.Hot.Close(ctx, id)
	var held []Win
	switch {
	case errors.Is(err, ErrUnavailable):
		pool = nil
		if err := s.drain(ctx); err != nil {
			return fmt.Errorf("end rain session %d: %w", id, err)
		}
	case err != nil:
		return fmt.Errorf("close rain session %d: %w", id, err)
	default:
		if held, err = s.opts.Hot.Wins(ctx, id); err != nil {
			return fmt.Errorf("wins of rain session %d: %w", id, err)
		}
	}
	late, err := s.applyUnrecorded(ctx, id, held)
	if err != nil {
		return err
	}
	wins, err := s.opts.Store.SessionWins(ctx, id)
	if err != nil {
		return fmt.Errorf("end rain session %d: %w", id, err)
	}
	prizes, err := s.opts.Store.Prizes(ctx, id)
	if err != nil {
		return fmt.Errorf("end rain session %d: %w", id, err)
	}
	l := ledgerOf(sess.Quota.Total, prizes, wins, s.opts.Now())
	if pool != nil && len(pool) != l.Unwon.Count+l.Unreleased.Count {
		// A win held in Redis that the Store refused: counted as left here, for verify to
		// look at.
		s.opts.Logger.Warn("rain pool and records disagree at the end", "session_id", id, "pool", len(pool), "left_by_records", l.Unwon.Count+l.Unreleased.Count)
	}
	if err := s.opts.Store.EndSession(ctx, id, l); err != nil {
		return fmt.Errorf("end rain session %d: %w", id, err)
	}
	// The Agent keeps the version: its end answers late taps without a Store read. The
	// bus forgets it everywhere when it deletes the session's key.
	s.local.Delete(id)
	s.opts.Logger.Info("rain session ended", "session_id", id, "granted", l.Granted.Count, "unwon", l.Unwon.Count,
		"unreleased", l.Unreleased.Count, "late_wins", late)
	return nil
}

// applyUnrecorded applies the wins the hot state holds that the Store lacks and returns
// how many there were. A win that can never apply (the records contradict it) is logged
// and left to verify; any other failure stops the end until the next sweep.
func (s *Service) applyUnrecorded(ctx context.Context, sessionID int64, held []Win) (int, error) {
	if len(held) == 0 {
		return 0, nil
	}
	recorded, err := s.opts.Store.SessionWins(ctx, sessionID)
	if err != nil {
		return 0, fmt.Errorf("end rain session %d: %w", sessionID, err)
	}
	index := make(map[string]int, len(recorded))
	for _, w := range recorded {
		index[w.MsgID()] = w.Prize.Index
	}
	var missing []Win
	for _, w := range held {
		if i, ok := index[w.MsgID()]; !ok || i != w.Prize.Index {
			missing = append(missing, w)
		}
	}
	if len(missing) == 0 {
		return 0, nil
	}
	for i, err := range s.ApplyWins(ctx, missing) {
		switch {
		case err == nil:
		case Permanent(err):
			s.opts.Logger.Error("rain win held in the hot state cannot be applied; ending without it", "win", missing[i].MsgID(), "err", err)
		default:
			return 0, fmt.Errorf("end of rain session %d waits for win %s: %w", sessionID, missing[i].MsgID(), err)
		}
	}
	return len(missing), nil
}

// ledgerOf counts a session's end: the recorded wins are granted; of the prizes no win
// names, the lowest indexes up to total − granted were released but not won, and the
// rest were never released.
func ledgerOf(total int, prizes []Prize, wins []Win, at time.Time) Ledger {
	l := Ledger{EndedAt: at}
	won := make(map[int]bool, len(wins))
	for _, w := range wins {
		won[w.Prize.Index] = true
		l.Granted.Add(w.Prize)
	}
	released := max(0, total-len(wins))
	left := slices.Clone(prizes)
	slices.SortFunc(left, func(a, b Prize) int { return a.Index - b.Index })
	for _, p := range left {
		switch {
		case won[p.Index]:
		case released > 0:
			l.Unwon.Add(p)
			released--
		default:
			l.Unreleased.Add(p)
		}
	}
	return l
}

// RefreshEvery runs Refresh every interval until ctx ends, on every node: the
// convergence of quota versions the bus did not deliver. A failure is logged and the
// next run tries again.
func (s *Service) RefreshEvery(ctx context.Context, interval time.Duration) error {
	return tick.Every(ctx, interval, func(ctx context.Context) {
		if err := s.Refresh(ctx); err != nil {
			s.opts.Logger.Warn("rain quota refresh", "err", err)
		}
	})
}
