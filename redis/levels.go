package redis

import (
	"context"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/strategy"
)

// Grantable returns the units the counter can still grant: the units left, but never
// more than its total minus the units granted (a counter set back up grants nothing
// beyond its count; see counter.go), and never below 0. False when the counter is not in
// Redis in the current form (not armed, or lost): the units are unknown.
func (l Level) Grantable() (int64, bool) {
	if !l.HasCounter || !l.HasIssued || !l.HasTotal {
		return 0, false
	}
	return max(min(l.Counter, l.Total-l.Issued), 0), true
}

// Levels reads the counters of refs in one pipelined round trip (one MGET per counter,
// each in its own hash slot), for the operator console.
func (s *Stock) Levels(ctx context.Context, refs []strategy.AwardRef) ([]Level, error) {
	keys := make([]string, len(refs))
	for i, ref := range refs {
		keys[i] = s.CounterKey(ref)
	}
	levels, err := readLevels(ctx, s.client, keys)
	if err != nil {
		return nil, fmt.Errorf("read award stock levels: %w", err)
	}
	return levels, nil
}

// Levels reads the counters of skus in one pipelined round trip, as Stock.Levels.
func (s *SKUStock) Levels(ctx context.Context, skus []int64) ([]Level, error) {
	keys := make([]string, len(skus))
	for i, sku := range skus {
		keys[i] = s.CounterKey(sku)
	}
	levels, err := readLevels(ctx, s.client, keys)
	if err != nil {
		return nil, fmt.Errorf("read sku stock levels: %w", err)
	}
	return levels, nil
}

// readLevels reads the counters named by keys (their units left, issued and total; the
// old-form low watermark is not read) in one pipeline.
func readLevels(ctx context.Context, client goredis.UniversalClient, keys []string) ([]Level, error) {
	if len(keys) == 0 {
		return []Level{}, nil
	}
	cmds := make([]*goredis.SliceCmd, len(keys))
	if _, err := client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, key := range keys {
			cmds[i] = p.MGet(ctx, counterKeys(key)...)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	out := make([]Level, len(keys))
	for i, cmd := range cmds {
		l := &out[i]
		fields := []struct {
			v   *int64
			has *bool
		}{{&l.Counter, &l.HasCounter}, {&l.Issued, &l.HasIssued}, {&l.Total, &l.HasTotal}}
		for j, v := range cmd.Val() {
			var err error
			if *fields[j].v, *fields[j].has, err = parseLevel(v); err != nil {
				return nil, fmt.Errorf("%s key %d: %w", keys[i], j, err)
			}
		}
	}
	return out, nil
}
