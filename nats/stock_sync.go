package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/strategy"
)

// Default names of the award stock stream. Messages go to one subject per award below
// StockSubject: "bigmarket.stock.award.<strategyId>.<awardId>".
const (
	StockStream  = "BIGMARKET_STOCK"
	StockSubject = "bigmarket.stock.award"
	StockDurable = "bigmarket_stock_sync"
)

// StockOptions names and tunes the award stock sync. The zero value is the production
// naming with the defaults listed on each field; tests set Prefix to keep apart.
type StockOptions struct {
	// Prefix, when set, is prepended to the stream, subject and consumer names
	// ("<p>_BIGMARKET_STOCK", "<p>.bigmarket.stock.award", "<p>_bigmarket_stock_sync").
	// It may hold letters, digits, '-' and '_'.
	Prefix string
	// Replicas of the stream: 1 embedded (default), 3 on a production cluster.
	Replicas int
	// MaxAge is how long the stream keeps a message (default 72h).
	MaxAge time.Duration
	// MaxPerAward bounds the messages kept per award (default 1000). Dropping the oldest
	// is safe once the consumer has applied them: the store keeps a monotone bound. (With
	// several nodes a later message can carry a lower sequence number than an earlier one,
	// so readers take the maximum over what is retained, never the last message.)
	MaxPerAward int64

	// FlushInterval is how often StockSync publishes (default 100ms).
	FlushInterval time.Duration
	// PublishTimeout bounds one flush (default 5s).
	PublishTimeout time.Duration
	// PublishConcurrency bounds the publishes of one flush in flight (default 16).
	PublishConcurrency int

	// BatchSize is how many messages the consumer fetches at once (default 256).
	BatchSize int
	// FetchWait is how long one fetch waits to fill a batch (default 500ms).
	FetchWait time.Duration
	// AckWait is how long the server waits for an ack before redelivering (default 5s):
	// a delivery that reached nobody (its pull request died with a NATS server or a node)
	// comes again after it, and the award's surplus in SQL lags that long. A batch whose
	// store calls outlast it may be delivered again meanwhile; the update is monotone (the
	// highest sequence number), so the repeat changes nothing.
	AckWait time.Duration
	// MaxDeliver caps deliveries of one message (default -1: unlimited, because a message
	// dropped after a long store outage would leave its award's surplus behind).
	MaxDeliver int
	// Backoff is the delay before a message whose store call failed is redelivered, by
	// delivery count; the last entry repeats (default 1s, 5s, 30s, 60s).
	Backoff []time.Duration
}

var prefixPattern = regexp.MustCompile(`^[A-Za-z0-9_-]*$`)

// Stream returns the stream name.
func (o StockOptions) Stream() string { return o.join("_", StockStream) }

// Subject returns the subject prefix; the stream holds Subject()+".>".
func (o StockOptions) Subject() string { return o.join(".", StockSubject) }

// Durable returns the durable consumer name shared by every node.
func (o StockOptions) Durable() string { return o.join("_", StockDurable) }

func (o StockOptions) join(sep, name string) string { return prefixed(o.Prefix, sep, name) }

func (o StockOptions) awardSubject(ref strategy.AwardRef) string {
	return o.Subject() + "." + strconv.FormatInt(ref.StrategyID, 10) + "." + strconv.Itoa(ref.AwardID)
}

func (o StockOptions) withDefaults() StockOptions {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 72 * time.Hour
	}
	if o.MaxPerAward <= 0 {
		o.MaxPerAward = 1000
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 100 * time.Millisecond
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = 5 * time.Second
	}
	if o.PublishConcurrency <= 0 {
		o.PublishConcurrency = 16
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 256
	}
	if o.FetchWait <= 0 {
		o.FetchWait = 500 * time.Millisecond
	}
	if o.AckWait <= 0 {
		o.AckWait = 5 * time.Second
	}
	if o.MaxDeliver == 0 {
		o.MaxDeliver = -1
	}
	if len(o.Backoff) == 0 {
		o.Backoff = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, time.Minute}
	}
	return o
}

// duplicateWindow is the stream's Nats-Msg-Id dedup window.
const duplicateWindow = 2 * time.Minute

// EnsureStockStream creates the award stock stream, or updates it to opts: file storage,
// limits retention, a 2 minute duplicate window for Nats-Msg-Id.
func EnsureStockStream(ctx context.Context, js jetstream.JetStream, opts StockOptions) error {
	if !prefixPattern.MatchString(opts.Prefix) {
		return fmt.Errorf("stock stream prefix %q: only letters, digits, '-' and '_'", opts.Prefix)
	}
	opts = opts.withDefaults()
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              opts.Stream(),
		Description:       "award grants by sequence number, synced to SQL award_count_surplus",
		Subjects:          []string{opts.Subject() + ".>"},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxAge:            opts.MaxAge,
		MaxMsgsPerSubject: opts.MaxPerAward,
		Duplicates:        duplicateWindow,
		Replicas:          opts.Replicas,
	})
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", opts.Stream(), err)
	}
	return nil
}

// stockMessage is the JSON body of one award stock message: the highest grant sequence
// number of the award a node has seen (Issued). Messages of the old form carried the
// lowest remaining count instead (Remaining, no Issued); readers take one of those as
// award_count − remaining, which a top-up since can only overstate (undersell). A message
// without either reads as remaining 0, sold out.
type stockMessage struct {
	StrategyID int64 `json:"strategyId"`
	AwardID    int   `json:"awardId"`
	Issued     int64 `json:"issued,omitempty"`
	Remaining  int64 `json:"remaining,omitempty"`
}

// msgID is the Nats-Msg-Id of a stock message: a unit is granted once, so its sequence
// number names the grant, and a republished flush is dropped by the stream. (The "i"
// keeps these apart from the old form's ids, which held a remaining count.)
func msgID(ref strategy.AwardRef, issued int64) string {
	return strconv.FormatInt(ref.StrategyID, 10) + "_" + strconv.Itoa(ref.AwardID) + "_i" +
		strconv.FormatInt(issued, 10)
}

// StockSync is the draw path's strategy.StockSink: Consumed records the highest grant
// sequence number per award in memory, and Run publishes them to JetStream in batches, so
// the SQL surplus follows the hot stock without a SQL write per draw. Entries whose publish
// fails stay pending and are published on a later flush. Commit publishes one grant at
// once, for draws that write no record.
type StockSync struct {
	js   jetstream.JetStream
	opts StockOptions
	log  *slog.Logger

	mu       sync.Mutex
	pending  map[strategy.AwardRef]int64
	inflight map[strategy.AwardRef]int64 // taken by the flush running, until acked

	flushMu    sync.Mutex // one flush at a time
	failStreak int        // consecutive failed flushes; guarded by flushMu

	published atomic.Int64
	failed    atomic.Int64
}

var _ strategy.DurableSink = (*StockSync)(nil)

// NewStockSync returns a StockSync publishing to the stream named by opts. Call Run to
// flush periodically, and Close after the draw path has stopped.
func NewStockSync(js jetstream.JetStream, opts StockOptions, logger *slog.Logger) *StockSync {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &StockSync{
		js:       js,
		opts:     opts.withDefaults(),
		log:      logger.With("component", "stock-sync"),
		pending:  make(map[strategy.AwardRef]int64),
		inflight: make(map[strategy.AwardRef]int64),
	}
}

// Consumed records the grant g of ref. It takes a mutex and touches a map: it never
// waits for the broker.
func (s *StockSync) Consumed(ref strategy.AwardRef, g strategy.Grant) {
	s.mu.Lock()
	if cur, ok := s.pending[ref]; !ok || g.Issued > cur {
		s.pending[ref] = g.Issued
	}
	s.mu.Unlock()
}

// Commit records the grant g of ref and publishes it at once, returning when the stream
// has stored it: after that no Redis loss can give the unit again, because every rebuild
// reads the log. If the publish fails the grant stays pending for the next flush and the
// error is returned.
func (s *StockSync) Commit(ctx context.Context, ref strategy.AwardRef, g strategy.Grant) error {
	s.Consumed(ref, g)
	ctx, cancel := context.WithTimeout(ctx, s.opts.PublishTimeout)
	defer cancel()
	if err := s.publish(ctx, ref, g.Issued); err != nil {
		s.failed.Add(1)
		return err
	}
	s.published.Add(1)
	return nil
}

// StockSyncStats counts a StockSync's work since it was created.
type StockSyncStats struct {
	Published int64 // messages acknowledged by the stream (duplicates included)
	Failed    int64 // publishes that failed and were put back
	Pending   int   // awards not yet stored by the stream: waiting for a flush or for its ack
}

// Stats returns the counters. An award whose publish is in flight counts as pending until
// the stream acknowledges it, so a flush stalled on a dead broker does not read as 0.
func (s *StockSync) Stats() StockSyncStats {
	s.mu.Lock()
	n := len(s.pending)
	for ref := range s.inflight {
		if _, ok := s.pending[ref]; !ok {
			n++
		}
	}
	s.mu.Unlock()
	return StockSyncStats{Published: s.published.Load(), Failed: s.failed.Load(), Pending: n}
}

// Run flushes every FlushInterval until ctx is done. A failed flush is logged and its
// entries are retried on the next tick. Run returns nil when ctx is done; entries still
// pending then are left for Close.
func (s *StockSync) Run(ctx context.Context) error {
	t := time.NewTicker(s.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			_ = s.Flush(ctx) // logged by Flush; entries are kept
		}
	}
}

// Close makes a final flush. Call it once the draw path has stopped, with the shutdown
// deadline in ctx. Entries it cannot publish are logged and reported in the error; the
// SQL surplus then lags until the award's next grant is synced.
func (s *StockSync) Close(ctx context.Context) error {
	if err := s.Flush(ctx); err != nil {
		s.log.Error("stock sync closed with unpublished entries",
			"pending", s.Stats().Pending, "err", err)
		return fmt.Errorf("close stock sync: %w", err)
	}
	return nil
}

// Flush publishes every pending entry, one message per award, and waits for the stream's
// acknowledgements. Entries that fail go back to pending (keeping the maximum) and the
// first error is returned.
func (s *StockSync) Flush(ctx context.Context) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()

	s.mu.Lock()
	batch := s.pending
	if len(batch) == 0 {
		s.mu.Unlock()
		return nil
	}
	s.pending = make(map[strategy.AwardRef]int64, len(batch))
	s.inflight = maps.Clone(batch) // its own map: acks delete from it while batch is read
	s.mu.Unlock()

	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, s.opts.PublishTimeout)
	defer cancel()

	var (
		wg       sync.WaitGroup
		failMu   sync.Mutex
		failed   = make(map[strategy.AwardRef]int64)
		firstErr error
		sem      = make(chan struct{}, s.opts.PublishConcurrency)
	)
	for ref, issued := range batch {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := s.publish(ctx, ref, issued); err != nil {
				failMu.Lock()
				failed[ref] = issued
				if firstErr == nil {
					firstErr = err
				}
				failMu.Unlock()
				return
			}
			s.mu.Lock()
			delete(s.inflight, ref)
			s.mu.Unlock()
			s.published.Add(1)
		})
	}
	wg.Wait()

	if len(failed) == 0 {
		if s.failStreak > 0 {
			s.log.Info("stock sync publishing again", "failed_flushes", s.failStreak)
			s.failStreak = 0
		}
		return nil
	}
	s.mu.Lock()
	for ref, issued := range failed {
		if cur, ok := s.pending[ref]; !ok || issued > cur {
			s.pending[ref] = issued
		}
	}
	s.inflight = make(map[strategy.AwardRef]int64)
	s.mu.Unlock()
	s.failed.Add(int64(len(failed)))
	s.failStreak++
	// Log the first failure of a streak, then every 100th, not 10 lines a second; a
	// flush cut short by shutdown is left to Close.
	if parent.Err() == nil && (s.failStreak == 1 || s.failStreak%100 == 0) {
		s.log.Warn("stock sync publish failed; entries kept for retry",
			"failed", len(failed), "of", len(batch), "failed_flushes", s.failStreak, "err", firstErr)
	}
	return fmt.Errorf("publish %d of %d award stock updates: %w", len(failed), len(batch), firstErr)
}

func (s *StockSync) publish(ctx context.Context, ref strategy.AwardRef, issued int64) error {
	data, err := json.Marshal(stockMessage{StrategyID: ref.StrategyID, AwardID: ref.AwardID, Issued: issued})
	if err != nil {
		return fmt.Errorf("encode stock message: %w", err)
	}
	msg := &natsgo.Msg{Subject: s.opts.awardSubject(ref), Data: data}
	ack, err := s.js.PublishMsg(ctx, msg,
		jetstream.WithMsgID(msgID(ref, issued)),
		jetstream.WithExpectStream(s.opts.Stream()))
	if err != nil {
		return fmt.Errorf("publish stock %d/%d: %w", ref.StrategyID, ref.AwardID, err)
	}
	if ack == nil {
		return errors.New("publish stock: no ack")
	}
	return nil
}
