package outbox

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Publisher publishes task messages to the broker, each under its MessageID, and reports
// each one's outcome: errs[i] is tasks[i]'s, nil once the broker has stored it.
type Publisher interface {
	PublishTasks(ctx context.Context, tasks []Task) (errs []error)
}

// Store is what the relay needs of the task table.
type Store interface {
	// MarkTasks moves those of tasks still in state create or fail to state.
	MarkTasks(ctx context.Context, tasks []Task, state State) error
	// ResendTasks claims, in every database, up to limit tasks in state create or fail
	// that were created before before, so that no other node claims them meanwhile; it
	// hands them to send and moves the ones send published to completed and the rest to
	// fail. It returns how many tasks it claimed.
	ResendTasks(ctx context.Context, before time.Time, limit int, send func(ctx context.Context, tasks []Task) []error) (int, error)
}

// Options configures a Relay.
type Options struct {
	Publisher Publisher
	Store     Store
	Now       func() time.Time
	Logger    *slog.Logger
	// Grace is how long a task may stay in create before the compensation job re-sends
	// it (default 10s): younger tasks are the relay's.
	Grace time.Duration
	// Every is how often the compensation job runs (default 5s).
	Every time.Duration
	// Batch is the most tasks one publish round or one claim carries (default 512).
	Batch int
	// Queue is where the store puts the tasks it committed, for the relay to publish; nil
	// gives the relay an empty one of its own, so that only the compensation job feeds it.
	Queue *Queue
	// Workers is how many publish rounds run at once (default 2).
	Workers int
	// PublishTimeout bounds one publish round (default 5s).
	PublishTimeout time.Duration
}

// Relay publishes tasks as soon as the transaction that wrote them commits and marks them
// completed, off the request's path; its compensation job re-sends what the relay could
// not: tasks whose publish failed, tasks of a process that died before publishing, and
// tasks that did not fit the queue.
type Relay struct {
	opts  Options
	queue chan Task // opts.Queue's tasks

	published, failed, resent atomic.Int64
}

// NewRelay returns a Relay on opts.Queue; call Run to start it.
func NewRelay(opts Options) *Relay {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Grace <= 0 {
		opts.Grace = 10 * time.Second
	}
	if opts.Every <= 0 {
		opts.Every = 5 * time.Second
	}
	if opts.Batch <= 0 {
		opts.Batch = 512
	}
	if opts.Queue == nil {
		opts.Queue = NewQueue(0)
	}
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	if opts.PublishTimeout <= 0 {
		opts.PublishTimeout = 5 * time.Second
	}
	opts.Logger = opts.Logger.With("component", "outbox")
	return &Relay{opts: opts, queue: opts.Queue.tasks}
}

// Stats counts the relay's work since it was made.
type Stats struct {
	Published int64 // tasks published and marked completed by the relay or the job
	Failed    int64 // task publishes that failed (left in fail for the job)
	Dropped   int64 // tasks that did not fit the queue (left in create for the job)
	Resent    int64 // tasks the compensation job claimed
	Queued    int64 // tasks waiting in the queue now
}

// Stats returns the counters.
func (r *Relay) Stats() Stats {
	return Stats{Published: r.published.Load(), Failed: r.failed.Load(), Dropped: r.opts.Queue.dropped.Load(),
		Resent: r.resent.Load(), Queued: int64(len(r.queue))}
}

// Run publishes queued tasks and runs the compensation job until ctx is done; then it
// makes one bounded pass (PublishTimeout) over what is still queued. Tasks left after
// that stay in create, for the compensation job of whichever node runs next.
func (r *Relay) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range r.opts.Workers {
		wg.Go(func() { r.relay(ctx) })
	}
	wg.Go(func() { r.compensate(ctx) })
	wg.Wait()
	r.drain(context.WithoutCancel(ctx))
	return nil
}

// drain publishes what is queued until the queue is empty or PublishTimeout has passed.
func (r *Relay) drain(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.PublishTimeout)
	defer cancel()
	for ctx.Err() == nil {
		batch := r.take(nil)
		if len(batch) == 0 {
			return
		}
		r.publish(ctx, batch)
	}
}

// take moves up to Batch queued tasks into batch without waiting.
func (r *Relay) take(batch []Task) []Task {
	for len(batch) < r.opts.Batch {
		select {
		case t := <-r.queue:
			batch = append(batch, t)
		default:
			return batch
		}
	}
	return batch
}

// relay publishes the queue in rounds: the first task waiting and whatever queued behind
// it, up to Batch.
func (r *Relay) relay(ctx context.Context) {
	batch := make([]Task, 0, r.opts.Batch)
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return
		case t := <-r.queue:
			batch = r.take(append(batch[:0], t))
		}
		// A round once taken is finished even if ctx ends meanwhile (PublishTimeout bounds
		// it): cut short, its tasks would be marked fail though the broker may have them.
		r.publish(context.WithoutCancel(ctx), batch)
	}
}

// publish sends batch and records each task's outcome in its row.
func (r *Relay) publish(ctx context.Context, batch []Task) {
	pctx, cancel := context.WithTimeout(ctx, r.opts.PublishTimeout)
	errs := r.opts.Publisher.PublishTasks(pctx, batch)
	cancel()
	ok, failed := split(batch, errs)
	r.published.Add(int64(len(ok)))
	r.failed.Add(int64(len(failed)))
	if len(failed) > 0 {
		r.opts.Logger.Warn("publish tasks failed; the compensation job re-sends them",
			"failed", len(failed), "of", len(batch), "err", firstError(errs))
	}
	// The marks must land even while shutting down: a published task left in create is
	// only published again, but costs a resend.
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.PublishTimeout)
	defer cancel()
	for _, m := range []struct {
		tasks []Task
		state State
	}{{ok, Completed}, {failed, Fail}} {
		if len(m.tasks) == 0 {
			continue
		}
		if err := r.opts.Store.MarkTasks(mctx, m.tasks, m.state); err != nil {
			r.opts.Logger.Warn("mark tasks", "state", m.state, "tasks", len(m.tasks), "err", err)
		}
	}
}

// compensate re-sends stale tasks every Every; the store's claim makes sure one node
// handles a task at a time.
func (r *Relay) compensate(ctx context.Context) {
	t := time.NewTicker(r.opts.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.Compensate(ctx)
	}
}

// Compensate runs the compensation job once: it re-sends tasks older than Grace still in
// create or fail, claim after claim, until a claim comes back short or a publish fails.
func (r *Relay) Compensate(ctx context.Context) {
	for ctx.Err() == nil {
		var sendErr error
		n, err := r.opts.Store.ResendTasks(ctx, r.opts.Now().Add(-r.opts.Grace), r.opts.Batch,
			func(ctx context.Context, tasks []Task) []error {
				pctx, cancel := context.WithTimeout(ctx, r.opts.PublishTimeout)
				defer cancel()
				errs := r.opts.Publisher.PublishTasks(pctx, tasks)
				ok, failed := split(tasks, errs)
				r.published.Add(int64(len(ok)))
				r.failed.Add(int64(len(failed)))
				if len(failed) > 0 {
					sendErr = firstError(errs)
				}
				return errs
			})
		r.resent.Add(int64(n))
		if err != nil {
			r.opts.Logger.Warn("compensation job: resend tasks", "err", err)
			return
		}
		if sendErr != nil {
			r.opts.Logger.Warn("compensation job: broker refused tasks; next round retries", "err", sendErr)
			return
		}
		if n > 0 {
			r.opts.Logger.Info("compensation job re-sent tasks", "tasks", n)
		}
		if n < r.opts.Batch {
			return
		}
	}
}

func split(tasks []Task, errs []error) (ok, failed []Task) {
	for i, t := range tasks {
		if i < len(errs) && errs[i] == nil {
			ok = append(ok, t)
		} else {
			failed = append(failed, t)
		}
	}
	return ok, failed
}

func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return errors.New("no outcome reported")
}
