package nats

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/outbox"
)

// listDeadLetters lists the dead letters matching f, failing the test on an error.
func listDeadLetters(t *testing.T, d *DeadLetters, f outbox.DeadLetterFilter) []outbox.DeadLetter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := d.List(ctx, f)
	if err != nil {
		t.Fatalf("List(%+v): %v", f, err)
	}
	return got
}

// TestDeadLetterReplayFailsAgainWithBothReasons dead-letters an event, replays it at once
// (well inside the stream's 2 minute duplicate window) into a handler that fails for
// another reason, and finds it dead-lettered again with both reasons under its original
// message id; the first dead letter is gone. Replayed once more into a handler that now
// succeeds, it is handled once, the dead-letter stream is empty and a repeated replay
// finds nothing.
func TestDeadLetterReplayFailsAgainWithBothReasons(t *testing.T) {
	t.Parallel()
	eachEventBackend(t, func(t *testing.T, js jetstream.JetStream, opts EventOptions) {
		const topic = "send_award"
		var phase atomic.Int32
		r := &recorder{Fn: func(e Event) error {
			switch phase.Load() {
			case 0:
				return fmt.Errorf("webhook answered 500: %w", ErrPermanent)
			case 1:
				return errors.New("webhook answered 502")
			default:
				return nil
			}
		}}
		c := NewConsumer(js, opts, topic, r.handle, nil)
		background(t, c.Run)
		publish(t, NewPublisher(js, opts), topic, "order-1", "payload")
		testenv.Eventually(t, 30*time.Second, "dead-lettered", func() (bool, string) {
			return c.Stats().DeadLettered == 1, fmt.Sprintf("%+v", c.Stats())
		})
		d := NewDeadLetters(js, opts, nil)
		first := listDeadLetters(t, d, outbox.DeadLetterFilter{})
		if len(first) != 1 {
			t.Fatalf("dead letters %+v, want one", first)
		}
		dl := first[0]
		if n, err := d.Count(context.Background()); err != nil || n != 1 {
			t.Errorf("dead letters counted %d, %v; want 1", n, err)
		}
		if dl.Stream != opts.Stream() || dl.Subject != opts.Subject(topic) || dl.MsgID != "order-1" ||
			!slices.Equal(dl.Reasons, []string{"webhook answered 500: permanent event failure"}) || dl.DeadAt.IsZero() {
			t.Fatalf("dead letter %+v", dl)
		}

		phase.Store(1)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if got, err := d.Replay(ctx, dl.Seq); err != nil || got.Seq != dl.Seq {
			t.Fatalf("Replay(%d) = %+v, %v", dl.Seq, got, err)
		}
		testenv.Eventually(t, 30*time.Second, "dead-lettered again", func() (bool, string) {
			return c.Stats().DeadLettered == 2, fmt.Sprintf("%+v", c.Stats())
		})
		second := listDeadLetters(t, d, outbox.DeadLetterFilter{})
		want := []string{"webhook answered 500: permanent event failure", "webhook answered 502"}
		if len(second) != 1 || second[0].Seq == dl.Seq || second[0].MsgID != "order-1" ||
			second[0].Subject != opts.Subject(topic) || !slices.Equal(second[0].Reasons, want) {
			t.Fatalf("after a failed replay: %+v, want one new dead letter of order-1 with reasons %q", second, want)
		}
		if _, err := d.Replay(ctx, dl.Seq); !errors.Is(err, outbox.ErrNoDeadLetter) {
			t.Errorf("replaying the replayed dead letter %d again: %v, want ErrNoDeadLetter", dl.Seq, err)
		}
		// The replayed deliveries carry the original id.
		if calls := r.calls("order-1"); len(calls) != 1+opts.MaxDeliver {
			t.Errorf("order-1 delivered %d times, want 1 + MaxDeliver %d", len(calls), opts.MaxDeliver)
		}

		phase.Store(2)
		if _, err := d.Replay(ctx, second[0].Seq); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, "handled after the replay", func() (bool, string) {
			return c.Stats().Handled == 1, fmt.Sprintf("%+v", c.Stats())
		})
		testenv.Eventually(t, 30*time.Second, "consumer settled", settled(t, js, opts, topic))
		if got := listDeadLetters(t, d, outbox.DeadLetterFilter{}); len(got) != 0 {
			t.Errorf("dead letters after a successful replay: %+v", got)
		}
		if n, err := d.Count(ctx); err != nil || n != 0 {
			t.Errorf("dead letters counted %d, %v after a successful replay; want 0", n, err)
		}
		if _, err := d.Replay(ctx, second[0].Seq); !errors.Is(err, outbox.ErrNoDeadLetter) {
			t.Errorf("second replay of %d: %v, want ErrNoDeadLetter", second[0].Seq, err)
		}
		if st := c.Stats(); st.Handled != 1 || st.DeadLettered != 2 {
			t.Errorf("stats %+v", st)
		}
	})
}

// TestDeadLetterListFiltersAndReplayAll lists dead letters by time and stream, refuses an
// unknown stream, and replays them all in one call.
func TestDeadLetterListFiltersAndReplayAll(t *testing.T) {
	t.Parallel()
	eachEventBackend(t, func(t *testing.T, js jetstream.JetStream, opts EventOptions) {
		const topic = "send_rebate"
		var fixed atomic.Bool
		r := &recorder{Fn: func(e Event) error {
			if fixed.Load() {
				return nil
			}
			return fmt.Errorf("rebate store down: %w", ErrPermanent)
		}}
		c := NewConsumer(js, opts, topic, r.handle, nil)
		background(t, c.Run)
		p := NewPublisher(js, opts)
		before := time.Now().Add(-time.Second)
		ids := []string{"r-1", "r-2", "r-3"}
		for _, id := range ids {
			publish(t, p, topic, id, "{}")
		}
		testenv.Eventually(t, 30*time.Second, "all dead-lettered", func() (bool, string) {
			return c.Stats().DeadLettered == 3, fmt.Sprintf("%+v", c.Stats())
		})
		d := NewDeadLetters(js, opts, nil)
		all := listDeadLetters(t, d, outbox.DeadLetterFilter{Since: before, Stream: opts.Stream()})
		var got []string
		for _, dl := range all {
			got = append(got, dl.MsgID)
		}
		if !slices.Equal(got, ids) {
			t.Fatalf("listed %q, want %q in order", got, ids)
		}
		if later := listDeadLetters(t, d, outbox.DeadLetterFilter{Since: time.Now().Add(time.Minute)}); len(later) != 0 {
			t.Errorf("dead letters since a minute ahead: %+v", later)
		}
		if from2 := listDeadLetters(t, d, outbox.DeadLetterFilter{Since: all[1].DeadAt}); len(from2) < 2 || from2[len(from2)-1].MsgID != "r-3" {
			t.Errorf("dead letters since the second's time: %+v", from2)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := d.List(ctx, outbox.DeadLetterFilter{Stream: "NOPE"}); !errors.Is(err, outbox.ErrUnknownStream) {
			t.Errorf("List of an unknown stream: %v, want ErrUnknownStream", err)
		}
		if _, err := d.ReplayAll(ctx, "NOPE"); !errors.Is(err, outbox.ErrUnknownStream) {
			t.Errorf("ReplayAll of an unknown stream: %v, want ErrUnknownStream", err)
		}

		fixed.Store(true)
		replayed, err := d.ReplayAll(ctx, opts.Stream())
		if err != nil || len(replayed) != 3 {
			t.Fatalf("ReplayAll = %d replayed, %v; want 3", len(replayed), err)
		}
		for _, id := range ids {
			testenv.Eventually(t, 30*time.Second, id+" handled", wasHandled(r, id))
		}
		testenv.Eventually(t, 30*time.Second, "consumer settled", settled(t, js, opts, topic))
		if left := listDeadLetters(t, d, outbox.DeadLetterFilter{}); len(left) != 0 {
			t.Errorf("dead letters left: %+v", left)
		}
		if again, err := d.ReplayAll(ctx, ""); err != nil || len(again) != 0 {
			t.Errorf("second ReplayAll = %+v, %v; want nothing", again, err)
		}
		if st := c.Stats(); st.Handled != 3 || st.DeadLettered != 3 {
			t.Errorf("stats %+v", st)
		}
	})
}
