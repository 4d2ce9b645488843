package redis

import (
	"context"
	"fmt"
	"time"

	"github.com/bigmarket/bigmarket/activity"
)

// DeductN takes units of the SKU's stock in one step, all or none (deductScript with k
// units), and returns the units left and the sequence number of the last unit granted.
// Fewer left than units wraps activity.ErrSKUStockExhausted (nothing is taken), a missing
// counter activity.ErrSKUStockMissing.
func (s *SKUStock) DeductN(ctx context.Context, sku, units int64, expireAt time.Time) (left, issued int64, err error) {
	if units < 1 || units > maxStock {
		return 0, 0, fmt.Errorf("deduct %d units of sku %d: %w", units, sku, activity.ErrInvalidUnits)
	}
	left, issued, err = deductCounter(ctx, s.client, s.fence, s.wait, s.CounterKey(sku), units, expireAt, activity.ErrSKUStockExhausted, activity.ErrSKUStockMissing)
	if err != nil {
		return 0, 0, fmt.Errorf("deduct %d units of sku %d: %w", units, sku, err)
	}
	return left, issued, nil
}
