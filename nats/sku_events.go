package nats

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/outbox"
)

// TopicSKUStockZero is big-market's topic for a SKU whose hot stock ran out; its data is
// the SKU. The consumer clears the SKU's SQL stock at once instead of at the next
// reconcile of the Redis watermark.
const TopicSKUStockZero = "activity_sku_stock_zero"

// SKUStockZero publishes TopicSKUStockZero events; it is the activity service's
// StockZeroPublisher.
type SKUStockZero struct {
	p   *Publisher
	now func() time.Time
}

var _ activity.StockZeroPublisher = (*SKUStockZero)(nil)

// NewSKUStockZero returns a SKUStockZero publishing through p.
func NewSKUStockZero(p *Publisher) *SKUStockZero {
	return &SKUStockZero{p: p, now: time.Now}
}

// skuStockZeroID is the message id of sku's stock zero event: the grant numbered issued
// takes the last unit once, so a retried publish is a duplicate the stream drops, while
// the sell-out after a top-up is a new event.
func skuStockZeroID(sku, issued int64) string {
	return "sku_stock_zero_" + strconv.FormatInt(sku, 10) + "_" + strconv.FormatInt(issued, 10)
}

// skuStockZeroMessage is big-market's message (data: the SKU) plus the sequence number of
// the grant that took the last unit. An old-form message has no issued.
type skuStockZeroMessage struct {
	outbox.Message[int64]
	Issued int64 `json:"issued,omitempty"`
}

// PublishSKUStockZero publishes that the grant numbered issued took sku's last unit of hot
// stock and waits until the stream has stored it.
func (z *SKUStockZero) PublishSKUStockZero(ctx context.Context, sku, issued int64) error {
	id := skuStockZeroID(sku, issued)
	body, err := json.Marshal(skuStockZeroMessage{
		Message: outbox.Message[int64]{ID: id, Timestamp: z.now().UnixMilli(), Data: sku}, Issued: issued})
	if err != nil {
		return fmt.Errorf("encode %s message: %w", TopicSKUStockZero, err)
	}
	return z.p.Publish(ctx, TopicSKUStockZero, id, body)
}

// SKUSurplusStore lowers a SKU's SQL stock; sqlstore.ActivityStore implements it.
type SKUSurplusStore interface {
	// SyncSKUIssued lowers the SKU's stock_count_surplus to stock_count − issued.
	SyncSKUIssued(ctx context.Context, sku, issued int64) error
	// SyncSKUSurplus lowers the SKU's stock_count_surplus to remaining, never raising it.
	SyncSKUSurplus(ctx context.Context, sku, remaining int64) error
}

// SKUStockZeroHandler returns the Handler of TopicSKUStockZero: it lowers the SKU's SQL
// stock to stock_count − issued, which is zero unless the SKU was topped up since (an
// old-form message, without issued, clears it). The update is monotone, so redelivery is
// harmless. A message that is not an outbox.Message with a positive SKU is dead-lettered
// (ErrPermanent).
func SKUStockZeroHandler(store SKUSurplusStore) Handler {
	return func(ctx context.Context, e Event) error {
		var m skuStockZeroMessage
		if err := json.Unmarshal(e.Data, &m); err != nil {
			return fmt.Errorf("decode %s message %s: %w: %w", TopicSKUStockZero, e.MsgID, ErrPermanent, err)
		}
		if m.Data <= 0 {
			return fmt.Errorf("%s message %s has no sku: %w", TopicSKUStockZero, e.MsgID, ErrPermanent)
		}
		if m.Issued > 0 {
			if err := store.SyncSKUIssued(ctx, m.Data, m.Issued); err != nil {
				return fmt.Errorf("sync stock of sku %d: %w", m.Data, err)
			}
			return nil
		}
		if err := store.SyncSKUSurplus(ctx, m.Data, 0); err != nil {
			return fmt.Errorf("clear stock of sku %d: %w", m.Data, err)
		}
		return nil
	}
}
