package nats

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	natsgo "github.com/nats-io/nats.go"
)

// ArmorySubject is the core NATS subject on which nodes announce re-assembled strategies.
const ArmorySubject = "bigmarket.strategy.armory"

// flushTimeout bounds the round trip that confirms a publish or subscription.
const flushTimeout = 5 * time.Second

// ArmoryBus announces strategy re-assemblies and SKU top-ups to every node over core NATS.
// A node that is down misses nothing it needs: it assembles from SQL on first use after
// it starts, and holds no sold-out flag then.
type ArmoryBus struct {
	nc      *natsgo.Conn
	subject string
	prefix  string
	node    string
	log     *slog.Logger
}

// armoryMessage names a strategy to reload or (SKU set, StrategyID 0) a SKU whose stock
// was topped up; a node of an earlier version ignores the latter as malformed.
type armoryMessage struct {
	StrategyID int64  `json:"strategyId"`
	SKU        int64  `json:"sku,omitempty"`
	Node       string `json:"node"`
}

// NewArmoryBus returns a bus on the subject, prefixed like the stock stream's names.
func NewArmoryBus(nc *natsgo.Conn, prefix string, log *slog.Logger) *ArmoryBus {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	subject := ArmorySubject
	if prefix != "" {
		subject = prefix + "." + subject
	}
	if log == nil {
		log = slog.Default()
	}
	return &ArmoryBus{nc: nc, subject: subject, prefix: prefix, node: hex.EncodeToString(b), log: log}
}

// AnnounceArmory publishes that strategyID was re-assembled and waits until the server
// has it.
func (b *ArmoryBus) AnnounceArmory(_ context.Context, strategyID int64) error {
	data, _ := json.Marshal(armoryMessage{StrategyID: strategyID, Node: b.node})
	if err := b.nc.Publish(b.subject, data); err != nil {
		return fmt.Errorf("announce armory of strategy %d: %w", strategyID, err)
	}
	if err := b.nc.FlushTimeout(flushTimeout); err != nil {
		return fmt.Errorf("announce armory of strategy %d: flush: %w", strategyID, err)
	}
	return nil
}

// AnnounceSKUStock publishes that sku's stock was topped up and waits until the server has
// it.
func (b *ArmoryBus) AnnounceSKUStock(_ context.Context, sku int64) error {
	data, _ := json.Marshal(armoryMessage{SKU: sku, Node: b.node})
	if err := b.nc.Publish(b.subject, data); err != nil {
		return fmt.Errorf("announce top-up of sku %d: %w", sku, err)
	}
	if err := b.nc.FlushTimeout(flushTimeout); err != nil {
		return fmt.Errorf("announce top-up of sku %d: flush: %w", sku, err)
	}
	return nil
}

// Listen calls reload for every strategy another node announces, and skuAdded (when not
// nil) for every SKU top-up, until ctx ends.
func (b *ArmoryBus) Listen(ctx context.Context, reload func(ctx context.Context, strategyID int64) error, skuAdded func(sku int64)) error {
	msgs := make(chan *natsgo.Msg, 64)
	sub, err := b.nc.ChanSubscribe(b.subject, msgs)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", b.subject, err)
	}
	defer sub.Unsubscribe()
	if err := b.nc.FlushTimeout(flushTimeout); err != nil {
		return fmt.Errorf("subscribe %s: flush: %w", b.subject, err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg := <-msgs:
			var m armoryMessage
			if err := json.Unmarshal(msg.Data, &m); err != nil || (m.StrategyID <= 0 && m.SKU <= 0) {
				b.log.Warn("armory bus: malformed message", "data", string(msg.Data))
				continue
			}
			if m.Node == b.node {
				continue
			}
			if m.StrategyID <= 0 {
				if skuAdded != nil {
					skuAdded(m.SKU)
				}
				continue
			}
			if err := reload(ctx, m.StrategyID); err != nil {
				b.log.Error("armory bus: reload strategy", "strategy_id", m.StrategyID, "err", err)
			}
		}
	}
}
