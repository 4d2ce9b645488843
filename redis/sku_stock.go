package redis

import (
	"context"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/activity"
)

// SKUStock is the hot stock of activity SKUs; it implements activity.SKUStock with the
// same never-regrant counter as award stock (counter.go), on keys
//
//	<prefix>:sku_stock:{<sku>}         the units left
//	<prefix>:sku_stock:{<sku>}:issued  the units granted so far
//	<prefix>:sku_stock:{<sku>}:total   the SKU's stock_count
type SKUStock struct {
	client goredis.UniversalClient
	prefix string
	fence  bool
	wait   ReplicaWait
}

var _ activity.SKUStock = (*SKUStock)(nil)

// NewSKUStock returns a SKUStock on client with keys under prefix.
func NewSKUStock(client goredis.UniversalClient, prefix string) *SKUStock {
	if prefix != "" {
		prefix += ":"
	}
	return &SKUStock{client: client, prefix: prefix}
}

// Fence turns replication-id fencing of the writing scripts on or off, as Stock.Fence; a
// fenced deduction wraps activity.ErrSKUStockMissing (and ErrFenced), so the SKU is rebuilt
// from the durable records as a lost one. It returns s.
func (s *SKUStock) Fence(on bool) *SKUStock {
	s.fence = on
	return s
}

// WaitReplicas makes each deduction wait for w.Replicas replicas to acknowledge it, as
// Stock.WaitReplicas; one they did not acknowledge wraps activity.ErrSKUStockMissing and
// ErrUnreplicated (retry, nothing sold). It returns s.
func (s *SKUStock) WaitReplicas(w ReplicaWait) *SKUStock {
	s.wait = w
	return s
}

// CounterKey returns the key of the SKU's counter.
func (s *SKUStock) CounterKey(sku int64) string {
	return s.prefix + "sku_stock:{" + strconv.FormatInt(sku, 10) + "}"
}

// Exists reports whether the SKU's counter is in Redis in the current form.
func (s *SKUStock) Exists(ctx context.Context, sku int64) (bool, error) {
	ok, err := counterExists(ctx, s.client, s.CounterKey(sku))
	if err != nil {
		return false, fmt.Errorf("read stock of sku %d: %w", sku, err)
	}
	return ok, nil
}

// Preheat creates the SKU's counter with total units of which remaining are left unless
// it exists.
func (s *SKUStock) Preheat(ctx context.Context, sku, total, remaining int64, expireAt time.Time) error {
	if err := preheatCounter(ctx, s.client, s.fence, s.CounterKey(sku), total, remaining, expireAt); err != nil {
		return fmt.Errorf("preheat sku %d: %w", sku, err)
	}
	return nil
}

// Deduct takes one unit of the SKU's stock and returns the units left and the grant's
// sequence number; an exhausted stock returns an error wrapping
// activity.ErrSKUStockExhausted, a missing (or old-form) one activity.ErrSKUStockMissing
// (stock unknown until it is rebuilt: nothing is taken, never oversell).
func (s *SKUStock) Deduct(ctx context.Context, sku int64, expireAt time.Time) (left, issued int64, err error) {
	left, issued, err = deductCounter(ctx, s.client, s.fence, s.wait, s.CounterKey(sku), 1, expireAt, activity.ErrSKUStockExhausted, activity.ErrSKUStockMissing)
	if err != nil {
		return 0, 0, fmt.Errorf("deduct sku %d: %w", sku, err)
	}
	return left, issued, nil
}

// TopUp raises the SKU's stock_count in Redis to total; false when the counter is absent
// or in the old form (the rebuild reads SQL).
func (s *SKUStock) TopUp(ctx context.Context, sku, total int64, expireAt time.Time) (bool, error) {
	ok, err := topUpCounter(ctx, s.client, s.fence, s.CounterKey(sku), total, expireAt)
	if err != nil {
		return false, fmt.Errorf("top up sku %d: %w", sku, err)
	}
	return ok, nil
}

// Remaining reads the SKU's keys in one round trip.
func (s *SKUStock) Remaining(ctx context.Context, sku int64) (Level, error) {
	l, err := readLevel(ctx, s.client, s.CounterKey(sku))
	if err != nil {
		return Level{}, fmt.Errorf("read stock of sku %d: %w", sku, err)
	}
	return l, nil
}

// Issued reads the SKU's high watermark of grants (activity.SKULevels, for the stock
// reconcile job); false when the counter holds none.
func (s *SKUStock) Issued(ctx context.Context, sku int64) (int64, bool, error) {
	l, err := s.Remaining(ctx, sku)
	return l.Issued, l.HasIssued, err
}
