package redis

import (
	"context"
	"errors"
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

// Preheat sets the SKU's counter to surplus unless it exists.
func (s *SKUStock) Preheat(ctx context.Context, sku, surplus int64, expireAt time.Time) error {
	if surplus < 0 || surplus > maxStock || expireAt.UnixMilli() <= 0 {
		return fmt.Errorf("preheat sku %d: surplus %d or expiry %v out of range", sku, surplus, expireAt)
	}
	err := s.client.Do(ctx, "SET", s.CounterKey(sku), surplus, "NX", "PXAT", expireAt.UnixMilli()).Err()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return fmt.Errorf("preheat sku %d: %w", sku, err)
	}
	return nil
}

// Deduct takes one unit of the SKU's stock; an exhausted stock returns an error wrapping
// activity.ErrSKUStockExhausted, a missing one activity.ErrSKUStockMissing (which is also
// exhausted for callers: undersell, never oversell).
func (s *SKUStock) Deduct(ctx context.Context, sku int64, expireAt time.Time) (int64, error) {
	at := expireAt.UnixMilli()
	if at <= 0 {
		return 0, fmt.Errorf("deduct sku %d: no expiry", sku)
	}
	key := s.CounterKey(sku)
	n, err := deductScript.Run(ctx, s.client, []string{key, key + ":low"}, at).Int64()
	switch {
	case err != nil:
		return 0, fmt.Errorf("deduct sku %d: %w", sku, err)
	case n == deductOut:
		return 0, fmt.Errorf("deduct sku %d: %w", sku, activity.ErrSKUStockExhausted)
	case n == deductMissing:
		return 0, fmt.Errorf("deduct sku %d: %w", sku, activity.ErrSKUStockMissing)
	case n < 0:
		return 0, fmt.Errorf("deduct sku %d: unexpected script result %d", sku, n)
	}
	return n, nil
}

// Remaining reads the SKU's counter and watermark in one round trip.
func (s *SKUStock) Remaining(ctx context.Context, sku int64) (Level, error) {
	key := s.CounterKey(sku)
	vals, err := s.client.MGet(ctx, key, key+":low").Result()
	if err != nil {
		return Level{}, fmt.Errorf("read stock of sku %d: %w", sku, err)
	}
	var l Level
	if l.Counter, l.HasCounter, err = parseLevel(vals[0]); err != nil {
		return Level{}, fmt.Errorf("read stock counter of sku %d: %w", sku, err)
	}
	if l.Low, l.HasLow, err = parseLevel(vals[1]); err != nil {
		return Level{}, fmt.Errorf("read stock watermark of sku %d: %w", sku, err)
	}
	return l, nil
}
