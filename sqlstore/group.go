package sqlstore

import (
	"sync"
	"sync/atomic"
	"time"
)

// Group commit. A draw writes twice (participation, award record); on MySQL each write
// alone is a handful of statements and a commit, and the server's per-statement work, not
// the disk, bounds throughput. So the user store runs the writes that reach one user
// database while earlier ones are in flight as one transaction of multi-row statements:
// an idle store runs each write at once, a busy one amortises a transaction over many.

// Group commit defaults: transactions in flight per database and kind of write, and the
// most writes one transaction carries. One lane measured best on MariaDB on loopback
// (bigger groups cost the server less per draw than parallel small ones); a database far
// away may want more.
const (
	defaultLanes    = 1
	defaultGroupMax = 64
	// groupTimeout bounds one grouped transaction with its retries; the writes in it belong
	// to many requests, so none of their contexts can cancel it.
	groupTimeout = 15 * time.Second
)

// GroupCommit tunes group commit: Lanes transactions in flight per user database and kind
// of write (0: 1), each carrying at most Max writes (0: 64; 1 turns grouping off).
type GroupCommit struct {
	Lanes int
	Max   int
}

// group gathers items and runs them in batches: up to lanes batches run at once, and an
// item that arrives while they all run waits for the next free lane, which takes it with
// everything else that queued meanwhile, up to max. Items are run in arrival order.
type group[T any] struct {
	lanes, max int
	run        func(batch []T)

	mu      sync.Mutex
	queue   []T
	running int

	batches, items atomic.Int64
}

// submit queues item; run reports back through the item itself.
func (g *group[T]) submit(item T) {
	g.mu.Lock()
	g.queue = append(g.queue, item)
	if g.running >= g.lanes {
		g.mu.Unlock()
		return
	}
	g.running++
	g.mu.Unlock()
	go g.lane()
}

// lane runs batches until the queue is empty.
func (g *group[T]) lane() {
	for {
		g.mu.Lock()
		if len(g.queue) == 0 {
			g.running--
			g.mu.Unlock()
			return
		}
		n := min(len(g.queue), g.max)
		batch := make([]T, n)
		copy(batch, g.queue)
		rest := copy(g.queue, g.queue[n:])
		clear(g.queue[rest:])
		g.queue = g.queue[:rest]
		g.mu.Unlock()
		g.batches.Add(1)
		g.items.Add(int64(n))
		g.run(batch)
	}
}

// GroupStats counts grouped writes since the store was made: the transactions run and the
// writes they carried, for participations and for award records. Writes per transaction
// is the group size the load produced.
type GroupStats struct {
	ParticipationTxs, Participations int64
	RecordTxs, Records               int64
}
