package redis

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/activity"
)

// deductManyScript takes ARGV[2] units of a counter at once, or none: deductScript for a
// bulk recharge. The units granted are the sequence numbers issued+1 … issued+k; they must
// all be within total and the counter must hold k. When fewer are left nothing is taken
// and it returns {-1}; the counter is set to 0 only when not even one unit is left, as
// deductScript does. KEYS and the other results are deductScript's.
var deductManyScript = goredis.NewScript(`
local c = redis.call('GET', KEYS[1])
local i = redis.call('GET', KEYS[2])
local t = redis.call('GET', KEYS[3])
if not c or not i or not t then
  return {-2}
end
c, i, t = tonumber(c), tonumber(i), tonumber(t)
local k = tonumber(ARGV[2])
if not c or not i or not t or not k or k < 1 then
  return redis.error_reply('ERR stock counter or units is not a number')
end
local n = i + k
if c < k or n > t then
  if c ~= 0 and (c <= 0 or i + 1 > t) then
    redis.call('SET', KEYS[1], '0', 'PXAT', ARGV[1])
    redis.call('PEXPIREAT', KEYS[2], ARGV[1])
    redis.call('PEXPIREAT', KEYS[3], ARGV[1])
  end
  return {-1}
end
local r = t - n
if c - k < r then
  r = c - k
end
redis.call('SET', KEYS[1], string.format('%d', r), 'PXAT', ARGV[1])
redis.call('SET', KEYS[2], string.format('%d', n), 'PXAT', ARGV[1])
redis.call('PEXPIREAT', KEYS[3], ARGV[1])
return {r, n}
`)

// DeductN takes units of the SKU's stock in one step, all or none, and returns the units
// left and the sequence number of the last unit granted. Fewer left than units wraps
// activity.ErrSKUStockExhausted (nothing is taken), a missing counter
// activity.ErrSKUStockMissing.
func (s *SKUStock) DeductN(ctx context.Context, sku, units int64, expireAt time.Time) (left, issued int64, err error) {
	at := expireAt.UnixMilli()
	if at <= 0 {
		return 0, 0, errors.New("no expiry")
	}
	if units < 1 || units > maxStock {
		return 0, 0, fmt.Errorf("deduct %d units of sku %d: %w", units, sku, activity.ErrInvalidUnits)
	}
	res, err := deductManyScript.Run(ctx, s.client, counterKeys(s.CounterKey(sku)), at, units).Int64Slice()
	switch {
	case err != nil:
		return 0, 0, fmt.Errorf("deduct %d units of sku %d: %w", units, sku, err)
	case len(res) == 1 && res[0] == deductOut:
		return 0, 0, fmt.Errorf("deduct %d units of sku %d: %w", units, sku, activity.ErrSKUStockExhausted)
	case len(res) == 1 && res[0] == deductMissing:
		return 0, 0, fmt.Errorf("deduct %d units of sku %d: %w", units, sku, activity.ErrSKUStockMissing)
	case len(res) != 2 || res[0] < 0 || res[1] < units:
		return 0, 0, fmt.Errorf("deduct %d units of sku %d: unexpected script result %v", units, sku, res)
	}
	return res[0], res[1], nil
}
