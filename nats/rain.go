package nats

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/outbox"
	"github.com/bigmarket/bigmarket/rain"
)

// RainQuotaBucket is the KV bucket of the rain sessions' quota versions.
const RainQuotaBucket = "BIGMARKET_RAIN_QUOTA"

// RainQuotaBuckets names the rain quota bucket under prefix, as GuardBuckets names the
// guard's.
func RainQuotaBuckets(prefix string) []string {
	return []string{prefixed(prefix, "_", RainQuotaBucket)}
}

// KVBuckets names every KV bucket the application creates under prefix, for the tests
// and tools that clean a prefix up.
func KVBuckets(prefix string) []string {
	return append(GuardBuckets(prefix), RainQuotaBuckets(prefix)...)
}

// rainReportRetry is how long a node waits before writing again a report of its SeqNo in
// force that failed (NATS down): the report is what an operator reads, not what serves.
const rainReportRetry = time.Second

// rainReportTimeout bounds one write of a node's report.
const rainReportTimeout = 5 * time.Second

// RainQuota carries the rain sessions' quota versions between nodes through one KV bucket:
//
//   - q.<session> holds the version in force (rain.Quota as JSON); a version only ever
//     replaces a lower SeqNo, so a stale write arriving late changes nothing;
//   - n.<session>.<node> holds the SeqNo that node has swapped in (decimal), the node id
//     base64url-encoded into the characters keys allow.
//
// Every node watches the q. keys and offers each version to its Agent, which builds it
// beside the one in force and swaps it in only when complete and newer; each swap is
// reported under the node's n. key in the background, so a swap never waits on NATS.
type RainQuota struct {
	kv    jetstream.KeyValue
	nc    *natsgo.Conn
	agent *rain.Agent
	node  string
	log   *slog.Logger

	mu    sync.Mutex
	dirty map[int64]struct{} // sessions whose SeqNo in force is not reported yet
	wake  chan struct{}      // a report is due; buffered 1 so that swaps never block
}

var _ rain.QuotaBus = (*RainQuota)(nil)

// OpenRainQuota creates or binds the quota bucket and wires agent's swaps to this node's
// reports. Call it before agent is shared: it sets agent.OnSwap (calling the one already
// set first). nodeID names this node in the reports (BIGMARKET_NODE_ID).
func OpenRainQuota(ctx context.Context, js jetstream.JetStream, prefix string, replicas int, nodeID string,
	agent *rain.Agent, log *slog.Logger) (*RainQuota, error) {
	if !prefixPattern.MatchString(prefix) {
		return nil, fmt.Errorf("rain quota bucket prefix %q: only letters, digits, '-' and '_'", prefix)
	}
	if nodeID == "" {
		return nil, errors.New("rain quota bus: empty node id")
	}
	if agent == nil {
		return nil, errors.New("rain quota bus: nil agent")
	}
	if replicas < 1 {
		replicas = 1
	}
	if log == nil {
		log = slog.Default()
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: RainQuotaBuckets(prefix)[0], Description: "bigmarket rain quota versions", History: 1, Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open rain quota bucket: %w", err)
	}
	r := &RainQuota{kv: kv, nc: js.Conn(), agent: agent, node: nodeID, log: log,
		dirty: make(map[int64]struct{}), wake: make(chan struct{}, 1)}
	prev := agent.OnSwap
	agent.OnSwap = func(q *rain.Quota) {
		if prev != nil {
			prev(q)
		}
		r.markDirty(q.SessionID)
	}
	return r, nil
}

// quotaKey is the key of a session's version.
func quotaKey(sessionID int64) string { return "q." + strconv.FormatInt(sessionID, 10) }

// nodePrefix is the prefix of the keys of the nodes' reports for a session.
func nodePrefix(sessionID int64) string { return "n." + strconv.FormatInt(sessionID, 10) + "." }

// nodeKey is the key of a node's report for a session.
func nodeKey(sessionID int64, nodeID string) string {
	return nodePrefix(sessionID) + base64.RawURLEncoding.EncodeToString([]byte(nodeID))
}

// revisionRace reports whether a KV write lost a race with another writer of the key:
// Create found the key, or Update's revision was no longer the last. Replicated buckets
// report the latter with a code of their own, which the client maps only for Update.
func revisionRace(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Put writes q for every node unless the bucket holds the same or a higher SeqNo (a
// retried or stale write is a no-op, nil). An invalid version is refused here, where it is
// written, wrapping rain.ErrInvalid. When Put returns nil, this node's agent has q or a
// newer version in force, so the operator's next read on this node sees it.
func (r *RainQuota) Put(ctx context.Context, q rain.Quota) error {
	if err := q.Validate(); err != nil {
		return fmt.Errorf("put rain quota: %w", err)
	}
	body, err := json.Marshal(q)
	if err != nil {
		return fmt.Errorf("put rain quota of session %d: encode: %w", q.SessionID, err)
	}
	key := quotaKey(q.SessionID)
	for {
		e, err := r.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound): // absent, or deleted
			_, err = r.kv.Create(ctx, key, body)
		case err != nil:
			return fmt.Errorf("put rain quota of session %d: read: %w", q.SessionID, err)
		default:
			var cur rain.Quota
			if derr := json.Unmarshal(e.Value(), &cur); derr != nil || cur.SessionID != q.SessionID {
				// A value nobody can read is no version to protect: the valid one replaces it.
				r.log.Warn("rain quota: replacing an undecodable version", "key", key, "err", derr)
			} else if cur.SeqNo >= q.SeqNo {
				// The bucket is ahead: q is a repeat or stale. Offering what the bucket
				// holds keeps read-your-writes true even if the watch has not caught up.
				if _, oerr := r.agent.Offer(cur); oerr != nil {
					r.log.Warn("rain quota: the bucket holds an invalid version", "key", key, "err", oerr)
				}
				return nil
			}
			_, err = r.kv.Update(ctx, key, body, e.Revision())
		}
		if revisionRace(err) {
			continue // another writer came between the read and the write: judge again
		}
		if err != nil {
			return fmt.Errorf("put rain quota of session %d seqNo %d: %w", q.SessionID, q.SeqNo, err)
		}
		// Stored for every node; this node swaps it in now rather than when its watch
		// delivers it (then a repeat, ignored).
		if _, err := r.agent.Offer(q); err != nil {
			return fmt.Errorf("put rain quota of session %d: %w", q.SessionID, err)
		}
		return nil
	}
}

// Delete removes an ended session's version and the nodes' reports of it; this node
// forgets the session at once, every other node when its watch sees the delete. A node
// whose report of a swap was in flight may write it once more after the purge: the
// reports of an ended session are for the operator to read, never served from.
func (r *RainQuota) Delete(ctx context.Context, sessionID int64) error {
	if err := r.kv.Delete(ctx, quotaKey(sessionID)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete rain quota of session %d: %w", sessionID, err)
	}
	r.agent.Forget(sessionID)
	seqs, err := r.reports(ctx, sessionID)
	if err != nil {
		return fmt.Errorf("delete rain quota of session %d: %w", sessionID, err)
	}
	for key := range seqs {
		if err := r.kv.Purge(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("delete rain quota of session %d: report %s: %w", sessionID, key, err)
		}
	}
	return nil
}

// Nodes returns the SeqNo each node reported in force for the session, by node id.
func (r *RainQuota) Nodes(ctx context.Context, sessionID int64) ([]rain.NodeSeq, error) {
	seqs, err := r.reports(ctx, sessionID)
	if err != nil {
		return nil, fmt.Errorf("rain quota nodes of session %d: %w", sessionID, err)
	}
	prefix := nodePrefix(sessionID)
	out := make([]rain.NodeSeq, 0, len(seqs))
	for key, seq := range seqs {
		node, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(key, prefix))
		if err != nil {
			r.log.Warn("rain quota: ignoring a report with a bad key", "key", key)
			continue
		}
		out = append(out, rain.NodeSeq{NodeID: string(node), SeqNo: seq})
	}
	slices.SortFunc(out, func(a, b rain.NodeSeq) int { return strings.Compare(a.NodeID, b.NodeID) })
	return out, nil
}

// reports reads the nodes' reports of a session by key: a watch of the n.<session>.*
// keys yields their current values, then the end of them.
func (r *RainQuota) reports(ctx context.Context, sessionID int64) (map[string]int64, error) {
	w, err := r.kv.Watch(ctx, nodePrefix(sessionID)+"*", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read reports: %w", err)
	}
	defer func() { _ = w.Stop() }()
	seqs := make(map[string]int64)
	err = initial(ctx, w, func(e jetstream.KeyValueEntry) {
		seq, err := strconv.ParseInt(string(e.Value()), 10, 64)
		if err != nil {
			r.log.Warn("rain quota: ignoring an undecodable report", "key", e.Key())
			return
		}
		seqs[e.Key()] = seq
	})
	if err != nil {
		return nil, fmt.Errorf("read reports: %w", err)
	}
	return seqs, nil
}

// Watch feeds the bucket's versions to the agent: it returns once every current version
// is offered, so a node starting up serves every session with its quota from its first
// request, and keeps offering new versions (forgetting deleted sessions) until ctx ends.
// It also runs the reports of the swaps. The returned wait blocks until both stopped.
func (r *RainQuota) Watch(ctx context.Context) (wait func(), err error) {
	w, err := r.kv.Watch(ctx, "q.*")
	if err != nil {
		return nil, fmt.Errorf("watch rain quota bucket: %w", err)
	}
	if err := initial(ctx, w, r.apply); err != nil {
		_ = w.Stop()
		return nil, fmt.Errorf("watch rain quota bucket: %w", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { r.follow(ctx, w) })
	wg.Go(func() { r.report(ctx) })
	return wg.Wait, nil
}

// follow applies w's updates until ctx ends, opening the watch again after each
// reconnect (at once, not some 20 seconds later when its consumer notices) and whenever
// it ended: a replay of every session's version is harmless, as repeats are ignored.
func (r *RainQuota) follow(ctx context.Context, w jetstream.KeyWatcher) {
	followKV(ctx, r.nc, w, func(ctx context.Context) (jetstream.KeyWatcher, error) {
		return r.kv.Watch(ctx, "q.*")
	}, r.apply, r.log, "rain quota")
}

// apply offers one q. entry to the agent. An entry it cannot use is logged and skipped:
// one bad value must not stop the versions of every other session.
func (r *RainQuota) apply(e jetstream.KeyValueEntry) {
	id, err := strconv.ParseInt(strings.TrimPrefix(e.Key(), "q."), 10, 64)
	if err != nil || id <= 0 {
		r.log.Warn("rain quota: ignoring a key that names no session", "key", e.Key())
		return
	}
	if e.Operation() != jetstream.KeyValuePut {
		r.agent.Forget(id)
		return
	}
	var q rain.Quota
	if err := json.Unmarshal(e.Value(), &q); err != nil {
		r.log.Warn("rain quota: ignoring an undecodable version", "key", e.Key(), "err", err)
		return
	}
	if q.SessionID != id {
		r.log.Warn("rain quota: ignoring a version stored under another session's key", "key", e.Key(), "session", q.SessionID)
		return
	}
	if _, err := r.agent.Offer(q); err != nil {
		r.log.Warn("rain quota: ignoring an invalid version", "key", e.Key(), "seqNo", q.SeqNo, "err", err)
	}
}

// markDirty notes that a session's SeqNo in force changed; it is the agent's OnSwap and
// must never block: many swaps before the reporter runs make one report.
func (r *RainQuota) markDirty(sessionID int64) {
	r.mu.Lock()
	r.dirty[sessionID] = struct{}{}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// report writes this node's SeqNo in force for each session marked dirty, until ctx ends.
// It reads the agent when it writes, not when the swap happened, so the last write of a
// session is its latest swap. A failed write is retried after rainReportRetry.
func (r *RainQuota) report(ctx context.Context) {
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-retry:
			retry = nil
		}
		r.mu.Lock()
		due := r.dirty
		r.dirty = make(map[int64]struct{})
		r.mu.Unlock()
		failed := false
		for id := range due {
			q := r.agent.Quota(id)
			if q == nil {
				continue // forgotten: the session ended
			}
			wctx, cancel := context.WithTimeout(ctx, rainReportTimeout)
			_, err := r.kv.PutString(wctx, nodeKey(id, r.node), strconv.FormatInt(q.SeqNo, 10))
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				r.log.Warn("rain quota: report the SeqNo in force", "session", id, "seqNo", q.SeqNo, "err", err)
				r.mu.Lock()
				r.dirty[id] = struct{}{}
				r.mu.Unlock()
				failed = true
			}
		}
		if failed && retry == nil {
			retry = time.After(rainReportRetry)
		}
	}
}

// WinEvents publishes rain wins; it is the rain service's Publisher.
type WinEvents struct{ p *Publisher }

var _ rain.Publisher = WinEvents{}

// NewWinEvents returns WinEvents publishing through p.
func NewWinEvents(p *Publisher) WinEvents { return WinEvents{p: p} }

// PublishWin publishes w with message id session:user:n and returns once the stream has
// stored it: a win is answered only when it cannot be lost. A republished win (the user's
// next tap after an unacknowledged publish) is dropped by the broker within the duplicate
// window, and by the consumer's idempotency after it.
func (e WinEvents) PublishWin(ctx context.Context, w rain.Win) error {
	body, err := json.Marshal(outbox.Message[rain.Win]{ID: w.MsgID(), Timestamp: w.Time.UnixMilli(), Data: w})
	if err != nil {
		return fmt.Errorf("encode %s message: %w", rain.TopicWin, err)
	}
	return e.p.Publish(ctx, rain.TopicWin, w.MsgID(), body)
}

// winApplier is what WinHandler needs of the rain service.
type winApplier interface {
	ApplyWins(ctx context.Context, wins []rain.Win) []error
}

// WinHandler returns the BatchHandler of rain.TopicWin: a fetched batch of wins is applied
// together. A message that is no win, and a win the records contradict or the credit
// refuses for good, are dead-lettered at once.
func WinHandler(s winApplier) BatchHandler {
	return func(ctx context.Context, events []Event) []error {
		errs := make([]error, len(events))
		var (
			wins []rain.Win
			at   []int
		)
		for i, e := range events {
			w, err := decode[rain.Win](e)
			if err == nil && (w.SessionID <= 0 || w.UserID == "" || w.N < 1) {
				err = fmt.Errorf("decode %s message %s: no session, user or win number: %w", e.Topic, e.MsgID, ErrPermanent)
			}
			if err != nil {
				errs[i] = err
				continue
			}
			wins = append(wins, w)
			at = append(at, i)
		}
		if len(wins) == 0 {
			return errs
		}
		for j, err := range s.ApplyWins(ctx, wins) {
			errs[at[j]] = permanent(err, winPermanent)
		}
		return errs
	}
}

// winPermanent reports whether applying a win failed for a reason no redelivery fixes.
func winPermanent(err error) bool {
	return errors.Is(err, rain.ErrConflict) || errors.Is(err, rain.ErrInvalid) ||
		errors.Is(err, activity.ErrInvalidUserID) || credit.IsPermanent(err)
}
