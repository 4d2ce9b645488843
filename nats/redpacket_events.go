package nats

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/bigmarket/bigmarket/outbox"
	"github.com/bigmarket/bigmarket/redpacket"
)

// GrabEvents publishes red packet grabs; it is the red packet service's Publisher.
type GrabEvents struct{ p *Publisher }

var _ redpacket.Publisher = GrabEvents{}

// NewGrabEvents returns GrabEvents publishing through p.
func NewGrabEvents(p *Publisher) GrabEvents { return GrabEvents{p: p} }

// PublishGrab publishes g with message id packetId:userId and returns once the stream
// has stored it: a grab is answered only when it cannot be lost. A repeat within the
// stream's duplicate window is dropped by the broker, later ones by the consumer.
func (e GrabEvents) PublishGrab(ctx context.Context, g redpacket.Grab) error {
	body, err := json.Marshal(outbox.Message[redpacket.Grab]{ID: g.MsgID(), Timestamp: g.Time.UnixMilli(), Data: g})
	if err != nil {
		return fmt.Errorf("encode %s message: %w", redpacket.TopicGrab, err)
	}
	return e.p.Publish(ctx, redpacket.TopicGrab, g.MsgID(), body)
}

// GrabHandler returns the BatchHandler of redpacket.TopicGrab: a fetched batch of grabs
// is applied together. Grabs the records contradict are dead-lettered at once.
func GrabHandler(s *redpacket.Service) BatchHandler {
	return func(ctx context.Context, events []Event) []error {
		errs := make([]error, len(events))
		var (
			grabs []redpacket.Grab
			at    []int
		)
		for i, e := range events {
			g, err := decode[redpacket.Grab](e)
			if err != nil {
				errs[i] = err
				continue
			}
			grabs = append(grabs, g)
			at = append(at, i)
		}
		for j, err := range s.ApplyGrabs(ctx, grabs) {
			errs[at[j]] = permanent(err, redpacket.Permanent)
		}
		return errs
	}
}
