package redis

import (
	"context"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/strategy"
)

// maxStock bounds a preheated counter so that every value stays exact in Lua, whose
// numbers are doubles.
const maxStock = 1 << 53

// Results of deductScript other than a remaining count (which is >= 0).
const (
	deductOut     = -1
	deductMissing = -2
)

// deductScript takes one unit of an award's stock in one round trip.
//
// KEYS[1] is the counter, KEYS[2] the low watermark: the smallest remaining value ever
// granted. ARGV[1] is the expiry of both keys in Unix milliseconds. It returns the units
// remaining after the grant (>= 0, which also names the granted unit), -1 when the stock
// is out and -2 when the counter is absent (it is not created).
//
// A grant never reaches the watermark: if the counter was set back up (a stale preheat,
// a restore), the next grant is watermark-1 instead of counter-1. Granted values thus
// strictly decrease, so each is granted at most once, ever, with O(1) memory.
//
// When out, the script only writes if the counter is not already 0, so a crowd hitting
// an exhausted award costs one GET each. Numbers are written with %d because Lua 5.1
// would print large doubles in exponent form.
var deductScript = goredis.NewScript(`
local c = redis.call('GET', KEYS[1])
if not c then
  return -2
end
c = tonumber(c)
if not c then
  return redis.error_reply('ERR award stock counter is not a number')
end
local n = c - 1
local w = redis.call('GET', KEYS[2])
if w then
  w = tonumber(w)
  if not w then
    return redis.error_reply('ERR award stock watermark is not a number')
  end
  if n >= w then
    n = w - 1
  end
end
if n < 0 then
  if c ~= 0 then
    redis.call('SET', KEYS[1], '0', 'PXAT', ARGV[1])
    if w then
      redis.call('PEXPIREAT', KEYS[2], ARGV[1])
    end
  end
  return -1
end
local v = string.format('%d', n)
redis.call('SET', KEYS[1], v, 'PXAT', ARGV[1])
redis.call('SET', KEYS[2], v, 'PXAT', ARGV[1])
return n
`)

// Stock is the hot award stock in Redis; it implements strategy.Stock.
//
// An award has two keys sharing one Cluster hash tag, so the script may touch both:
//
//	<prefix>:award_stock:{<strategyID>_<awardID>}      the counter
//	<prefix>:award_stock:{<strategyID>_<awardID>}:low  the low watermark
type Stock struct {
	client goredis.UniversalClient
	prefix string
}

var _ strategy.Stock = (*Stock)(nil)

// NewStock returns a Stock on client whose keys start with prefix (which must not
// contain braces, or every award would hash to the prefix's slot). An empty prefix is
// allowed.
func NewStock(client goredis.UniversalClient, prefix string) *Stock {
	if prefix != "" {
		prefix += ":"
	}
	return &Stock{client: client, prefix: prefix}
}

// CounterKey returns the key of ref's counter.
func (s *Stock) CounterKey(ref strategy.AwardRef) string {
	return s.prefix + "award_stock:{" + strconv.FormatInt(ref.StrategyID, 10) + "_" +
		strconv.Itoa(ref.AwardID) + "}"
}

// LowKey returns the key of ref's low watermark.
func (s *Stock) LowKey(ref strategy.AwardRef) string { return s.CounterKey(ref) + ":low" }

// Exists reports whether ref's counter is in Redis.
func (s *Stock) Exists(ctx context.Context, ref strategy.AwardRef) (bool, error) {
	n, err := s.client.Exists(ctx, s.CounterKey(ref)).Result()
	if err != nil {
		return false, fmt.Errorf("read stock of award %d of strategy %d: %w", ref.AwardID, ref.StrategyID, err)
	}
	return n == 1, nil
}

// Preheat sets ref's counter to surplus with the given expiry unless the counter exists;
// an existing counter, and the watermark, are left alone.
func (s *Stock) Preheat(ctx context.Context, ref strategy.AwardRef, surplus int64, expireAt time.Time) error {
	if err := preheatCounter(ctx, s.client, s.CounterKey(ref), surplus, expireAt); err != nil {
		return fmt.Errorf("preheat award %d of strategy %d: %w", ref.AwardID, ref.StrategyID, err)
	}
	return nil
}

// Deduct takes one unit of ref's stock in one Lua round trip and returns the units
// remaining after it. Both keys get expireAt. It returns an error wrapping
// strategy.ErrStockOut when none is left and strategy.ErrStockMissing when the counter is
// absent. A remaining value once returned is never returned again for ref, even if the
// counter is later set back up.
func (s *Stock) Deduct(ctx context.Context, ref strategy.AwardRef, expireAt time.Time) (int64, error) {
	n, err := deductCounter(ctx, s.client, s.CounterKey(ref), expireAt, strategy.ErrStockOut, strategy.ErrStockMissing)
	if err != nil {
		return 0, fmt.Errorf("deduct award %d of strategy %d: %w", ref.AwardID, ref.StrategyID, err)
	}
	return n, nil
}

// Remaining reads ref's counter and watermark in one round trip. Absent keys are
// reported in the Level, not as errors.
func (s *Stock) Remaining(ctx context.Context, ref strategy.AwardRef) (Level, error) {
	l, err := readLevel(ctx, s.client, s.CounterKey(ref))
	if err != nil {
		return Level{}, fmt.Errorf("read stock of award %d of strategy %d: %w", ref.AwardID, ref.StrategyID, err)
	}
	return l, nil
}
