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
// same never-regrant script as award stock, on keys
//
//	<prefix>:sku_stock:{<sku>}      the counter
//	<prefix>:sku_stock:{<sku>}:low  the low watermark
type SKUStock struct {
	client goredis.UniversalClient
	prefix string
}

var _ activity.SKUStock = (*SKUStock)(nil)

// NewSKUStock returns a SKUStock on client with keys under prefix.
func NewSKUStock(client goredis.UniversalClient, prefix string) *SKUStock {
	if prefix != "" {
		prefix += ":"
	}
	return &SKUStock{client: client, prefix: prefix}
}

// CounterKey returns the key of the SKU's counter.
func (s *SKUStock) CounterKey(sku int64) string {
	return s.prefix + "sku_stock:{" + strconv.FormatInt(sku, 10) + "}"
}

// Exists reports whether the SKU's counter is in Redis.
func (s *SKUStock) Exists(ctx context.Context, sku int64) (bool, error) {
	n, err := s.client.Exists(ctx, s.CounterKey(sku)).Result()
	if err != nil {
		return false, fmt.Errorf("read stock of sku %d: %w", sku, err)
	}
	return n == 1, nil
}

// Preheat sets the SKU's counter to surplus unless it exists.
func (s *SKUStock) Preheat(ctx context.Context, sku, surplus int64, expireAt time.Time) error {
	if err := preheatCounter(ctx, s.client, s.CounterKey(sku), surplus, expireAt); err != nil {
		return fmt.Errorf("preheat sku %d: %w", sku, err)
	}
	return nil
}

// Deduct takes one unit of the SKU's stock; an exhausted stock returns an error wrapping
// activity.ErrSKUStockExhausted, a missing one activity.ErrSKUStockMissing (stock unknown
// until it is rebuilt: nothing is taken, never oversell).
func (s *SKUStock) Deduct(ctx context.Context, sku int64, expireAt time.Time) (int64, error) {
	n, err := deductCounter(ctx, s.client, s.CounterKey(sku), expireAt, activity.ErrSKUStockExhausted, activity.ErrSKUStockMissing)
	if err != nil {
		return 0, fmt.Errorf("deduct sku %d: %w", sku, err)
	}
	return n, nil
}

// Remaining reads the SKU's counter and watermark in one round trip.
func (s *SKUStock) Remaining(ctx context.Context, sku int64) (Level, error) {
	l, err := readLevel(ctx, s.client, s.CounterKey(sku))
	if err != nil {
		return Level{}, fmt.Errorf("read stock of sku %d: %w", sku, err)
	}
	return l, nil
}
