package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// A counter is a stock in Redis: the key holds the units left and key+":low" the low
// watermark of deductScript. Award stock and SKU stock are both counters; they differ only
// in their keys and in the domain errors a deduction reports.

// preheatCounter sets the counter to surplus with the expiry unless it exists; an
// existing counter, and the watermark, are left alone.
func preheatCounter(ctx context.Context, client goredis.UniversalClient, key string, surplus int64, expireAt time.Time) error {
	if surplus < 0 || surplus > maxStock {
		return fmt.Errorf("surplus %d out of range", surplus)
	}
	if expireAt.UnixMilli() <= 0 {
		return errors.New("no expiry")
	}
	err := client.Do(ctx, "SET", key, surplus, "NX", "PXAT", expireAt.UnixMilli()).Err()
	if err != nil && !errors.Is(err, goredis.Nil) { // Nil: the counter exists
		return err
	}
	return nil
}

// deductCounter runs deductScript on the counter and returns the units left after the
// grant; an exhausted counter returns out and an absent one missing.
func deductCounter(ctx context.Context, client goredis.UniversalClient, key string, expireAt time.Time, out, missing error) (int64, error) {
	at := expireAt.UnixMilli()
	if at <= 0 {
		return 0, errors.New("no expiry")
	}
	n, err := deductScript.Run(ctx, client, []string{key, key + ":low"}, at).Int64()
	switch {
	case err != nil:
		return 0, err
	case n == deductOut:
		return 0, out
	case n == deductMissing:
		return 0, missing
	case n < 0:
		return 0, fmt.Errorf("unexpected script result %d", n)
	}
	return n, nil
}

// Level is the hot state of one stock, for reconciliation and tests.
type Level struct {
	Counter    int64 // the counter; meaningful when HasCounter
	Low        int64 // the smallest remaining value granted so far; meaningful when HasLow
	HasCounter bool
	HasLow     bool
}

// readLevel reads the counter and its watermark in one round trip (one hash tag, one
// slot); absent keys are reported in the Level, not as errors.
func readLevel(ctx context.Context, client goredis.UniversalClient, key string) (Level, error) {
	vals, err := client.MGet(ctx, key, key+":low").Result()
	if err != nil {
		return Level{}, err
	}
	var l Level
	if l.Counter, l.HasCounter, err = parseLevel(vals[0]); err != nil {
		return Level{}, fmt.Errorf("counter: %w", err)
	}
	if l.Low, l.HasLow, err = parseLevel(vals[1]); err != nil {
		return Level{}, fmt.Errorf("watermark: %w", err)
	}
	return l, nil
}

func parseLevel(v any) (int64, bool, error) {
	if v == nil {
		return 0, false, nil
	}
	s, ok := v.(string)
	if !ok {
		return 0, false, fmt.Errorf("unexpected value type %T", v)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false, err
	}
	return n, true, nil
}
