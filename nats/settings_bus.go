package nats

import (
	"context"
	"encoding/json"
	"fmt"

	natsgo "github.com/nats-io/nats.go"
)

// SettingsSubject is the core NATS subject on which nodes announce changed activity
// settings (gate.Settings).
const SettingsSubject = "bigmarket.activity.settings"

type settingsMessage struct {
	ActivityID int64  `json:"activityId"`
	Node       string `json:"node"`
}

func (b *ArmoryBus) settingsSubject() string {
	if b.prefix != "" {
		return b.prefix + "." + SettingsSubject
	}
	return SettingsSubject
}

// AnnounceSettings publishes that an activity's settings changed and waits until the
// server has it; it implements gate.Announcer.
func (b *ArmoryBus) AnnounceSettings(_ context.Context, activityID int64) error {
	data, _ := json.Marshal(settingsMessage{ActivityID: activityID, Node: b.node})
	if err := b.nc.Publish(b.settingsSubject(), data); err != nil {
		return fmt.Errorf("announce settings of activity %d: %w", activityID, err)
	}
	if err := b.nc.FlushTimeout(flushTimeout); err != nil {
		return fmt.Errorf("announce settings of activity %d: flush: %w", activityID, err)
	}
	return nil
}

// ListenSettings calls changed for every activity whose settings another node announces,
// until ctx ends. A node that misses one serves its cached copy for at most the gate's
// cache TTL.
func (b *ArmoryBus) ListenSettings(ctx context.Context, changed func(activityID int64)) error {
	subject := b.settingsSubject()
	msgs := make(chan *natsgo.Msg, 64)
	sub, err := b.nc.ChanSubscribe(subject, msgs)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", subject, err)
	}
	defer sub.Unsubscribe()
	if err := b.nc.FlushTimeout(flushTimeout); err != nil {
		return fmt.Errorf("subscribe %s: flush: %w", subject, err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg := <-msgs:
			var m settingsMessage
			if err := json.Unmarshal(msg.Data, &m); err != nil || m.ActivityID <= 0 {
				b.log.Warn("settings bus: malformed message", "data", string(msg.Data))
				continue
			}
			if m.Node != b.node {
				changed(m.ActivityID)
			}
		}
	}
}
