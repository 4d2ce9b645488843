package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// consumerCheckEvery is how often an idle consumer checks that its durable still exists:
// a pull on a deleted consumer just times out.
const consumerCheckEvery = 30 * time.Second

// pullLoop is the fetch loop of every durable pull consumer here: fetch a batch, hand it
// over, and keep going across broker outages (backing off) and a deleted durable
// (created again by ensure). The consumers differ only in how they create their durable
// and what they do with a batch.
//
// While conn is disconnected the loop neither fetches nor ensures. A pull request made
// then waits in the client's reconnect buffer: an outage piled one up per FetchWait there
// (taking room from the publishes the buffer is for), and the server received them only on
// reconnect, the live one with an expiry counted from then while the loop gives it up on
// its own clock, earlier, so a message handed to it in between reached no one until
// AckWait. (The server skips the requests whose fetch has already ended: their inbox has
// no subscriber left.)
type pullLoop struct {
	what      string       // names the consumer in logs and errors
	conn      *natsgo.Conn // the loop waits while it is disconnected; nil: never waits
	log       *slog.Logger
	batchSize int
	fetchWait time.Duration
	ensure    func(ctx context.Context) (jetstream.Consumer, error)
	// handle settles every message of a batch (ack, nak or term); fetched is when the
	// fetch that returned it started.
	handle func(ctx context.Context, msgs []jetstream.Msg, fetched time.Time)
}

// run fetches until ctx is done, starting from cons (nil: create it first). It hands the
// messages it holds back to the server when ctx ends, so another node gets them now, not
// after AckWait.
func (l pullLoop) run(ctx context.Context, cons jetstream.Consumer) {
	lastCheck := time.Now()
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		if !waitConnected(ctx, l.conn) {
			break
		}
		if cons == nil {
			var err error
			if cons, err = l.ensure(ctx); err != nil {
				l.log.Warn(l.what+" unavailable; retrying", "err", err, "retry_in", wait)
				wait = sleep(ctx, wait)
				continue
			}
			lastCheck = time.Now()
		}
		fetched := time.Now()
		msgs, err := l.fetch(ctx, cons)
		if ctx.Err() != nil {
			for _, m := range msgs {
				_ = m.Nak()
			}
			return
		}
		if len(msgs) > 0 {
			l.handle(ctx, msgs, fetched)
		}
		switch {
		case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrConsumerNotFound):
			cons = nil
		case errors.Is(err, errDisconnected):
			// Lost between waitConnected and the fetch: the next round waits for the reconnect.
		case err != nil:
			l.log.Warn(l.what+" fetch failed; retrying", "err", err, "retry_in", wait)
			wait = sleep(ctx, wait)
		case len(msgs) == 0 && time.Since(lastCheck) > consumerCheckEvery:
			if _, err := cons.Info(ctx); errors.Is(err, jetstream.ErrConsumerNotFound) {
				cons = nil
			}
			lastCheck = time.Now()
		default:
			wait = 100 * time.Millisecond
		}
	}
}

// fetch waits up to fetchWait for a batch and returns the messages it got, even when the
// fetch ended with an error.
func (l pullLoop) fetch(ctx context.Context, cons jetstream.Consumer) ([]jetstream.Msg, error) {
	fctx, cancel := context.WithTimeout(ctx, l.fetchWait)
	defer cancel()
	batch, err := fetchConnected(l.conn, func() (jetstream.MessageBatch, error) {
		return cons.Fetch(l.batchSize, jetstream.FetchContext(fctx))
	})
	if err != nil {
		return nil, fmt.Errorf("%s fetch: %w", l.what, err)
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	err = batch.Error()
	if err == nil || (errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil) {
		return msgs, nil
	}
	return msgs, fmt.Errorf("%s fetch: %w", l.what, err)
}

// errDisconnected is a fetch not made because the client was not connected.
var errDisconnected = errors.New("not connected to the broker")

// fetchConnected calls fetch (a jetstream Fetch) only while conn is connected (nil: always)
// and returns errDisconnected otherwise. jetstream's Fetch subscribes an inbox, then
// publishes the pull request; when that publish fails it returns the error without
// unsubscribing the inbox (nats.go v1.55.0), which then stays subscribed, and is
// subscribed again on every reconnect, for the life of the connection. Once the subscribe
// has succeeded the publish fails only while the client is not connected and its
// reconnect buffer is full or off (a closed or draining connection refuses the subscribe
// first), so a fetch made only while connected leaves nothing behind. Every Fetch here
// goes through it.
func fetchConnected(conn *natsgo.Conn, fetch func() (jetstream.MessageBatch, error)) (jetstream.MessageBatch, error) {
	if conn != nil && !conn.IsConnected() {
		return nil, errDisconnected
	}
	return fetch()
}

// waitConnected returns true once conn is connected, at once if it is, or closed (the
// fetch then fails and is retried with backoff); false if ctx ended first. It waits on
// the connection's status changes, not by polling.
func waitConnected(ctx context.Context, conn *natsgo.Conn) bool {
	if conn == nil || conn.IsConnected() {
		return ctx.Err() == nil
	}
	ch := conn.StatusChanged(natsgo.CONNECTED, natsgo.CLOSED)
	defer conn.RemoveStatusListener(ch)
	// Checked after registering, so a reconnect in between is not missed.
	for !conn.IsConnected() && !conn.IsClosed() {
		select {
		case <-ctx.Done():
			return false
		case <-ch:
		}
	}
	return ctx.Err() == nil
}

// sleep waits d or until ctx is done and returns the next, doubled backoff (at most 5s).
func sleep(ctx context.Context, d time.Duration) time.Duration {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	return min(2*d, 5*time.Second)
}
