package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// A counter is a stock in Redis. Award stock and SKU stock are both counters; they differ
// only in their keys and in the domain errors a deduction reports. A counter is three keys
// sharing one Cluster hash tag, so that one script may touch them all:
//
//	key          the units left (remaining), for readers; a deduction never trusts it alone
//	key:issued   the units granted so far: the high watermark of grant sequence numbers
//	key:total    the units the stock has ever had (award_count or stock_count)
//
// A unit is named by its grant sequence number issued = total − remaining, which a top-up
// (total += N) does not change. issued only ever grows, and a grant is allowed only while
// issued < total, so each sequence number is granted at most once, however the counter is
// set back up (a stale preheat, a restore) or topped up, with O(1) memory.
//
// The keys of the old form were key and key+":low" (the smallest remaining value granted)
// without a total. A deduction reports such a counter as missing, which makes the caller
// rebuild it through recovery; preheatScript then converts it, keeping the smaller of its
// remaining units and what durable records allow.
//
// Fencing (fence.go). A fourth key, key:fence, holds the replication id of the server that
// built the counter. A failover or a restart that loses a deduction leaves issued lower
// and the counter higher than the grants already answered (and made durable): both keys
// are there and agree, so the counter looks whole, and the units would be granted again —
// an oversell. With the fence on, every script that writes the counter checks the fence
// right before its first write and, on a mismatch or a missing fence, writes nothing and
// answers FENCED; the caller takes the path of a lost counter (a retry answer, then the
// rebuild from the durable records), and preheatScript replaces the stale counter —
// although it is whole — and sets the fence to the server's id in the same script.

// Results of the scripts other than a count (which is >= 0).
const (
	deductOut     = -1
	deductMissing = -2
)

// deductScript takes k units in one round trip, all or none: one for a draw's award or a
// recharge's SKU unit, many for a bulk recharge (SKUStock.DeductN).
//
// KEYS are key, key:issued, key:total, key:fence; ARGV[1] is the expiry of all four in
// Unix milliseconds and ARGV[2] the units k (absent: 1). It returns {remaining, issued}
// after the grant, {-1} when fewer than k units are left (nothing is taken), {-2} when any
// key is absent (nothing is created: an old-form counter lacks the total, a lost one
// everything) and the error FENCED, writing nothing, when it would write and the fence is
// not this server's replication id. A refusal that writes nothing is answered unfenced: a
// rolled-back counter has issued no higher than the truth, so "no unit left" still holds.
//
// The units granted are the sequence numbers issued+1 … issued+k; they must all be within
// total, and the counter must hold k: a counter set back up gives nothing beyond total,
// and one set down (an operator stopping a stock) is honoured, the units left after the
// grant being min(counter − k, total − issued − k). When the grant is refused the counter
// is set to 0 only when not even one unit is left (a bulk request larger than what is left
// does not hide the units a single request may still take), and only if it is not 0
// already, so that a crowd hitting an exhausted stock costs three GETs each. Numbers are
// written with %d because Lua 5.1 would print large doubles in exponent form.
var deductScript = newFencedScript(`
local c = redis.call('GET', KEYS[1])
local i = redis.call('GET', KEYS[2])
local t = redis.call('GET', KEYS[3])
if not c or not i or not t then
  return {-2}
end
c, i, t = tonumber(c), tonumber(i), tonumber(t)
local k = tonumber(ARGV[2] or '1')
if not c or not i or not t or not k or k < 1 then
  return redis.error_reply('ERR stock counter or units is not a number')
end
local n = i + k
if c < k or n > t then
  if c ~= 0 and (c < 1 or i + 1 > t) then
    if bm_fenced(KEYS[4]) then
      return BM_FENCED
    end
    redis.call('SET', KEYS[1], '0', 'PXAT', ARGV[1])
    redis.call('PEXPIREAT', KEYS[4], ARGV[1])
    redis.call('PEXPIREAT', KEYS[2], ARGV[1])
    redis.call('PEXPIREAT', KEYS[3], ARGV[1])
  end
  return {-1}
end
if bm_fenced(KEYS[4]) then
  return BM_FENCED
end
local r = t - n
if c - k < r then
  r = c - k
end
redis.call('SET', KEYS[1], string.format('%d', r), 'PXAT', ARGV[1])
redis.call('SET', KEYS[2], string.format('%d', n), 'PXAT', ARGV[1])
redis.call('PEXPIREAT', KEYS[3], ARGV[1])
redis.call('PEXPIREAT', KEYS[4], ARGV[1])
return {r, n}
`)

// preheatScript creates a counter unless it exists in the current form and is not fenced.
//
// KEYS are key, key:issued, key:total, key:low, key:fence; ARGV are total, remaining and
// the expiry. A whole counter whose fence is not this server's replication id is rewritten
// like a partial one (its surviving issued can only be lower than the truth, which the
// caller's durable remaining bounds), and the fence is set to this server's id.
// Whatever survives of an earlier counter can only lower what is granted: issued becomes
// the largest of total − remaining, a surviving issued, total − a surviving counter (old or
// partial) and total − an old-form low watermark; remaining is then total − issued (at
// least 0). The old form's low key is removed. It returns 1 when it wrote and 0 when a
// current-form counter was there.
var preheatScript = newFencedScript(`
if redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[3]) == 3 and not bm_fenced(KEYS[5]) then
  return 0
end
local t = tonumber(ARGV[1])
local i = t - tonumber(ARGV[2])
local function bound(v)
  if v then
    v = tonumber(v)
    if v and t - v > i then
      i = t - v
    end
  end
end
local old = redis.call('GET', KEYS[2])
if old then
  old = tonumber(old)
  if old and old > i then
    i = old
  end
end
bound(redis.call('GET', KEYS[1]))
bound(redis.call('GET', KEYS[4]))
if i < 0 then
  i = 0
end
local r = t - i
if r < 0 then
  r = 0
end
redis.call('SET', KEYS[1], string.format('%d', r), 'PXAT', ARGV[3])
redis.call('SET', KEYS[2], string.format('%d', i), 'PXAT', ARGV[3])
redis.call('SET', KEYS[3], string.format('%d', t), 'PXAT', ARGV[3])
redis.call('DEL', KEYS[4])
bm_fence(KEYS[5], ARGV[3])
return 1
`)

// topUpScript raises a counter's total to ARGV[1], the stock's new total in SQL, and its
// counter by as much (at most to total − issued); issued is left alone, so no unit already
// granted comes back.
//
// KEYS are key, key:issued, key:total, key:fence; ARGV are the new total and the expiry;
// a raise on a fenced counter writes nothing and answers FENCED. Taking the
// maximum makes it idempotent and order-insensitive: a counter rebuilt from SQL after the
// top-up already holds the units, and two top-ups applied out of order end at the larger.
// It returns the remaining units, or -2 when the counter is absent or in the old form (the
// rebuild reads SQL, which holds the new units).
var topUpScript = newFencedScript(`
local c = redis.call('GET', KEYS[1])
local i = redis.call('GET', KEYS[2])
local t = redis.call('GET', KEYS[3])
if not c or not i or not t then
  return -2
end
c, i, t = tonumber(c), tonumber(i), tonumber(t)
local nt = tonumber(ARGV[1])
if nt > t then
  if bm_fenced(KEYS[4]) then
    return BM_FENCED
  end
  c = c + nt - t
  if c > nt - i then
    c = nt - i
  end
  if c < 0 then
    c = 0
  end
  t = nt
  redis.call('SET', KEYS[3], string.format('%d', t), 'PXAT', ARGV[2])
  redis.call('SET', KEYS[1], string.format('%d', c), 'PXAT', ARGV[2])
  redis.call('PEXPIREAT', KEYS[2], ARGV[2])
  redis.call('PEXPIREAT', KEYS[4], ARGV[2])
end
return c
`)

func counterKeys(key string) []string { return []string{key, key + ":issued", key + ":total"} }

// fencedCounterKeys are counterKeys and the fence, the keys of deductScript and topUpScript.
func fencedCounterKeys(key string) []string { return append(counterKeys(key), key+":fence") }

// counterExists reports whether the counter is in Redis in the current form.
func counterExists(ctx context.Context, client goredis.UniversalClient, key string) (bool, error) {
	n, err := client.Exists(ctx, counterKeys(key)...).Result()
	if err != nil {
		return false, err
	}
	return n == 3, nil
}

// preheatCounter creates the counter with total units of which remaining are left, unless
// it exists in the current form (and, with fence, is not fenced); see preheatScript.
func preheatCounter(ctx context.Context, client goredis.UniversalClient, fence bool, key string, total, remaining int64, expireAt time.Time) error {
	if total < 0 || total > maxStock {
		return fmt.Errorf("total %d out of range", total)
	}
	if remaining < 0 || remaining > total {
		return fmt.Errorf("remaining %d out of range 0..%d", remaining, total)
	}
	if expireAt.UnixMilli() <= 0 {
		return errors.New("no expiry")
	}
	return preheatScript.run(ctx, client, fence, append(counterKeys(key), key+":low", key+":fence"), total, remaining, expireAt.UnixMilli()).Err()
}

// deductCounter runs deductScript for units on the counter and returns the units left
// after the grant and the sequence number of its last unit; fewer units left than asked
// returns out (nothing is taken) and an absent (or old-form) counter missing; with fence,
// a fenced counter returns an error wrapping both missing and ErrFenced (nothing is taken:
// the caller rebuilds it as a lost one).
//
// With wait on, the deduction waits for its replicas (ReplicaWait): one they did not
// acknowledge returns an error wrapping missing and ErrUnreplicated. Its unit is taken
// where it ran; if that master stays, the unit is never granted (a sequence number is
// never granted twice: undersell by one, as a deduction whose reply timed out), and if it
// is cut off and demoted, the promoted replica never had it.
func deductCounter(ctx context.Context, client goredis.Scripter, fence bool, wait ReplicaWait, key string, units int64, expireAt time.Time, out, missing error) (remaining, issued int64, err error) {
	at := expireAt.UnixMilli()
	if at <= 0 {
		return 0, 0, errors.New("no expiry")
	}
	if units < 1 {
		return 0, 0, fmt.Errorf("deduct %d units", units)
	}
	res, err := deductScript.runWaiting(ctx, client, fence, wait, fencedCounterKeys(key), at, units).Int64Slice()
	switch err = fenceErr(err); {
	case errors.Is(err, ErrFenced), errors.Is(err, ErrUnreplicated):
		return 0, 0, fmt.Errorf("%w: %w", missing, err)
	case err != nil:
		return 0, 0, err
	case len(res) == 1 && res[0] == deductOut:
		return 0, 0, out
	case len(res) == 1 && res[0] == deductMissing:
		return 0, 0, missing
	case len(res) != 2 || res[0] < 0 || res[1] < units:
		return 0, 0, fmt.Errorf("unexpected script result %v", res)
	}
	return res[0], res[1], nil
}

// topUpCounter raises the counter's total to total; see topUpScript. It reports false when
// the counter is absent, in the old form or fenced, which leaves the units to the rebuild
// (SQL holds them; a fenced counter's next deduction asks for the rebuild).
func topUpCounter(ctx context.Context, client goredis.UniversalClient, fence bool, key string, total int64, expireAt time.Time) (bool, error) {
	if total < 0 || total > maxStock {
		return false, fmt.Errorf("total %d out of range", total)
	}
	at := expireAt.UnixMilli()
	if at <= 0 {
		return false, errors.New("no expiry")
	}
	n, err := topUpScript.run(ctx, client, fence, fencedCounterKeys(key), total, at).Int64()
	if err = fenceErr(err); errors.Is(err, ErrFenced) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return n != deductMissing, nil
}

// Level is the hot state of one stock, for reconciliation and tests.
type Level struct {
	Counter    int64 // the units left; meaningful when HasCounter
	Issued     int64 // the units granted so far; meaningful when HasIssued
	Total      int64 // the units the stock has ever had; meaningful when HasTotal
	Low        int64 // an old-form low watermark; meaningful when HasLow
	HasCounter bool
	HasIssued  bool
	HasTotal   bool
	HasLow     bool
}

// readLevel reads the counter's keys in one round trip (one hash tag, one slot); absent
// keys are reported in the Level, not as errors.
func readLevel(ctx context.Context, client goredis.UniversalClient, key string) (Level, error) {
	vals, err := client.MGet(ctx, append(counterKeys(key), key+":low")...).Result()
	if err != nil {
		return Level{}, err
	}
	var l Level
	for i, f := range []struct {
		v   *int64
		has *bool
	}{{&l.Counter, &l.HasCounter}, {&l.Issued, &l.HasIssued}, {&l.Total, &l.HasTotal}, {&l.Low, &l.HasLow}} {
		if *f.v, *f.has, err = parseLevel(vals[i]); err != nil {
			return Level{}, fmt.Errorf("stock key %d: %w", i, err)
		}
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
