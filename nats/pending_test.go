package nats

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/internal/testenv"
)

// TestConsumerPending counts a consumer's backlog: none before the consumer exists, every
// event published while its handler is held (delivered or not), none once they are handled.
func TestConsumerPending(t *testing.T) {
	t.Parallel()
	eachEventBackend(t, func(t *testing.T, js jetstream.JetStream, opts EventOptions) {
		const topic = "send_award"
		release := make(chan struct{})
		free := sync.OnceFunc(func() { close(release) })
		r := &recorder{Fn: func(Event) error {
			<-release
			return nil
		}}
		c := NewConsumer(js, opts, topic, r.handle, nil)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if n, err := c.Pending(ctx); err != nil || n != 0 {
			t.Fatalf("pending before the consumer exists: %d, %v", n, err)
		}
		p := NewPublisher(js, opts)
		for i := range 3 {
			publish(t, p, topic, fmt.Sprint("pending-", i), "payload")
		}
		background(t, c.Run)
		t.Cleanup(free) // runs before background's: the consumer stops even if the test fails while it is held
		testenv.Eventually(t, 30*time.Second, "three events pending while the handler is held", func() (bool, string) {
			n, err := c.Pending(ctx)
			return err == nil && n == 3, fmt.Sprintf("%d, %v", n, err)
		})
		free()
		testenv.Eventually(t, 30*time.Second, "nothing pending once handled", func() (bool, string) {
			n, err := c.Pending(ctx)
			return err == nil && n == 0, fmt.Sprintf("%d, %v", n, err)
		})
	})
}
