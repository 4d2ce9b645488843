package sqlstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/bigmarket/bigmarket/activity"
)

// Grouped quota reads. The flash draw reads a user's quota rows from SQL on the user's
// first draw (its hot copy's load): at a million users nearly every draw is a first one.
// Reads that reach one user database while earlier ones are in flight go out together,
// one unlocked statement for all their users.

// Quota read group defaults: statements in flight per user database, and the most reads
// one statement carries.
const (
	quotaReadLanes = 2
	quotaReadMax   = 128
	// quotaReadTimeout bounds one grouped statement: it serves many requests, so none of
	// their contexts can cancel it.
	quotaReadTimeout = 10 * time.Second
)

// quotaReads are a store's read groups, made on first use.
type quotaReads struct {
	once   sync.Once
	groups []*readGroup
}

// readGroup gathers quota reads and runs them in batches: up to lanes batches at once, and
// a read that arrives while they all run waits for the next free lane, which takes it with
// everything else that queued meanwhile, up to max, in arrival order.
type readGroup struct {
	lanes, max int
	run        func(batch []*quotaRead)

	mu      sync.Mutex
	queue   []*quotaRead
	running int
}

// submit queues r; run reports back through r.done.
func (g *readGroup) submit(r *quotaRead) {
	g.mu.Lock()
	g.queue = append(g.queue, r)
	if g.running >= g.lanes {
		g.mu.Unlock()
		return
	}
	g.running++
	g.mu.Unlock()
	go g.lane()
}

// lane runs batches until the queue is empty.
func (g *readGroup) lane() {
	for {
		g.mu.Lock()
		if len(g.queue) == 0 {
			g.running--
			g.mu.Unlock()
			return
		}
		n := min(len(g.queue), g.max)
		batch := make([]*quotaRead, n)
		copy(batch, g.queue)
		rest := copy(g.queue, g.queue[n:])
		clear(g.queue[rest:])
		g.queue = g.queue[:rest]
		g.mu.Unlock()
		g.run(batch)
	}
}

// quotaRead is one Quota call waiting for its group's statement.
type quotaRead struct {
	key  activity.QuotaKey
	q    activity.Quota
	err  error
	done chan struct{}
}

// Quota implements activity.UserStore: the rows as committed when it is called, read by
// an unlocked statement shared with the reads of other users made at the same time.
func (s *UserStore) Quota(ctx context.Context, key activity.QuotaKey) (activity.Quota, error) {
	if err := ctx.Err(); err != nil {
		return activity.Quota{}, fmt.Errorf("quota %s/%d: %w", key.UserID, key.ActivityID, err)
	}
	s.quotaReads.once.Do(func() {
		for i := range s.dbs {
			s.quotaReads.groups = append(s.quotaReads.groups, &readGroup{lanes: quotaReadLanes, max: quotaReadMax,
				run: func(b []*quotaRead) { s.runQuotaReads(i, b) }})
		}
	})
	r := &quotaRead{key: key, done: make(chan struct{})}
	s.quotaReads.groups[s.router.Route(key.UserID).DB].submit(r)
	select {
	case <-r.done:
	case <-ctx.Done():
		// The read goes on for the others; its rows are nobody's.
		return activity.Quota{}, fmt.Errorf("quota %s/%d: %w", key.UserID, key.ActivityID, ctx.Err())
	}
	if r.err != nil {
		return activity.Quota{}, fmt.Errorf("quota %s/%d: %w", key.UserID, key.ActivityID, r.err)
	}
	return r.q, nil
}

// runQuotaReads reads the quotas of batch from database dbi: one statement per period
// scope (activity, day, month), nearly always one.
func (s *UserStore) runQuotaReads(dbi int, batch []*quotaRead) {
	ctx, cancel := context.WithTimeout(context.Background(), quotaReadTimeout)
	defer cancel()
	db := s.dbs[dbi]
	keys := make([]activity.QuotaKey, len(batch))
	for i, r := range batch {
		keys[i] = r.key
	}
	var reads script
	states := readQuotas(&reads, db.Dialect, keys, false)
	var err error
	for _, st := range reads.stmts {
		if err = queryEach(ctx, db.SQL, st.query, st.args, st.read); err != nil {
			break
		}
	}
	for _, r := range batch {
		if err != nil {
			r.err = err
		} else {
			r.q = states[r.key].before.Clone()
		}
		close(r.done)
	}
}
