package nats

import (
	"context"
	"log/slog"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// kvRewatchCheck is how often a followed watch checks whether the connection came back
// since it last looked, or whether its watch ended and must be opened again.
const kvRewatchCheck = time.Second

// followKV applies w's updates until ctx ends, opening a new watch with open when the old
// one cannot be trusted to deliver:
//   - after each reconnect: a watch resumes by itself after the connection comes back, but
//     only once its ordered consumer has missed enough heartbeats (some 20 seconds after a
//     broker restart), so a value written meanwhile would reach the node that late;
//   - when the watch ended (its consumer could not be recreated, e.g. the bucket's stream
//     was lost): without this the node would silently stop following the bucket.
//
// Each new watch replays the bucket's current values (deletes included) before its
// updates, so apply must take a value it has seen as a repeat. A check runs every
// kvRewatchCheck, which bounds how late a node resumes once the broker answers again.
func followKV(ctx context.Context, nc *natsgo.Conn, w jetstream.KeyWatcher, open func(context.Context) (jetstream.KeyWatcher, error),
	apply func(jetstream.KeyValueEntry), log *slog.Logger, what string) {
	defer func() {
		if w != nil {
			_ = w.Stop()
		}
	}()
	reconnects := nc.Stats().Reconnects
	tick := time.NewTicker(kvRewatchCheck)
	defer tick.Stop()
	var updates <-chan jetstream.KeyValueEntry
	if w != nil {
		updates = w.Updates()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-updates:
			if !ok {
				log.Warn(what+": watch ended; opening it again", "every", kvRewatchCheck)
				_ = w.Stop()
				w, updates = nil, nil // reopened by the next tick
				continue
			}
			if e != nil {
				apply(e)
			}
		case <-tick.C:
			n := nc.Stats().Reconnects
			if (w != nil && n == reconnects) || !nc.IsConnected() {
				continue
			}
			nw, err := open(ctx)
			if err != nil {
				log.Warn(what+": open the watch again", "err", err)
				continue // the next tick tries again
			}
			if w != nil {
				_ = w.Stop()
			}
			w, updates, reconnects = nw, nw.Updates(), n
		}
	}
}
