package nats

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/flash"
	"github.com/bigmarket/bigmarket/internal/testenv"
)

// TestDrawLogWalksByTime publishes draws before and after a point in time and checks that
// the log walks exactly those stored from that time on up to a sequence, and that the
// writer's progress reaches the last draw once a consumer has applied them.
func TestDrawLogWalksByTime(t *testing.T) {
	t.Parallel()
	eachEventBackend(t, func(t *testing.T, js jetstream.JetStream, opts EventOptions) {
		ctx := context.Background()
		log := NewDrawLog(js, opts)
		if _, _, err := log.Progress(ctx); !errors.Is(err, ErrNoDrawStream) {
			t.Fatalf("progress without a stream: %v, want ErrNoDrawStream", err)
		}
		drawOpts := DrawEventOptions(opts)
		if err := EnsureDrawStream(ctx, js, drawOpts); err != nil {
			t.Fatal(err)
		}
		deleteStreamsAtEnd(t, js, drawOpts.Stream())
		pub := NewDrawEvents(NewPublisher(js, drawOpts))
		publish := func(i int) {
			t.Helper()
			e := flash.Event{OrderID: fmt.Sprintf("o%d", i), UserID: "u1", ActivityID: 100301, AwardID: 100 + i, AwardTime: time.Now()}
			if err := pub.PublishDraw(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 3 {
			publish(i)
		}
		time.Sleep(5 * time.Millisecond) // the broker's timestamps must tell the two groups apart
		since := time.Now()
		for i := 3; i < 6; i++ {
			publish(i)
		}
		walk := func(since time.Time, upto uint64) []string {
			t.Helper()
			var ids []string
			err := log.Walk(ctx, since, upto, func(d StoredDraw) error {
				if d.Err != nil || d.Seq == 0 || d.Stored.IsZero() {
					t.Errorf("draw %+v", d)
				}
				ids = append(ids, d.Event.OrderID)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			return ids
		}
		if got := fmt.Sprint(walk(since, 6)); got != "[o3 o4 o5]" {
			t.Errorf("walk since the middle: %s", got)
		}
		if got := fmt.Sprint(walk(since, 4)); got != "[o3]" {
			t.Errorf("walk up to 4: %s", got)
		}
		if got := fmt.Sprint(walk(time.Time{}, 6)); got != "[o0 o1 o2 o3 o4 o5]" {
			t.Errorf("walk of everything: %s", got)
		}
		if got := walk(time.Now().Add(time.Hour), 6); len(got) != 0 {
			t.Errorf("walk from the future: %v", got)
		}
		last, applied, err := log.Progress(ctx)
		if err != nil || last != 6 || applied != 0 {
			t.Fatalf("progress before the writer: last %d applied %d %v", last, applied, err)
		}
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		cons := NewBatchConsumer(js, drawOpts, TopicDraw, func(_ context.Context, es []Event) []error { return make([]error, len(es)) },
			slog.New(slog.NewTextHandler(io.Discard, nil)))
		go func() { _ = cons.Run(cctx) }()
		testenv.Eventually(t, 30*time.Second, "the writer applies every draw", func() (bool, string) {
			last, applied, err := log.Progress(ctx)
			return err == nil && applied == last, fmt.Sprintf("last %d applied %d %v", last, applied, err)
		})
	})
}
