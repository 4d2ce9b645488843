package redis

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/flash"
)

// DrawQuota is the flash draw's hot state: each user's quota per activity, with the
// semantics of activity.Quota, and the user's pending draws. It implements
// flash.HotQuota and activity.HotQuota.
//
// Every key of a user shares the hash tag {u:<user>}, so that one script sees them all on
// a Cluster:
//
//	<prefix>:fq:{u:<user>}:<activity>     hash, the quota rows (see quotaFields)
//	<prefix>:fq:{u:<user>}:<activity>:p   hash, the pending draws: i:<order> the draw
//	                                      ("takeMs|day|month|score|today"), l:<order> its
//	                                      lease (Unix ms), o:<order> its outcome (JSON)
//	<prefix>:fq:{u:<user>}:w              hash, the user's unwritten credit wins: order id
//	                                      → the draw's event (JSON), from the fix of a
//	                                      credit outcome until the draw writer (or the
//	                                      credit green channel) has written it to SQL
//
// Two keys per Cluster slot live under a tag chosen to hash to that slot (slotTag), so
// that a script on a user's keys can use them too, and a loss of the slot loses them
// together with the user's keys:
//
//	<prefix>:fq:ready:{<tag>}   the slot's epoch: present once every draw event published
//	                            before the slot was (re)started has been applied to SQL;
//	                            a hot quota is loaded from SQL only while it is present
//	<prefix>:fq:pend:{<tag>}    sorted set of the slot's pending draws by take time,
//	                            "<activity>|<order>|<user>", for the sweep
//	<prefix>:fq:fence:{<tag>}   the replication id the marker was set under (Fence)
//
// Redis must not evict these keys (maxmemory-policy noeviction).
type DrawQuota struct {
	client goredis.Cmdable
	prefix string
	// shards is how many pending-draw indexes and readiness markers there are: one per
	// Cluster hash slot on a Cluster (a script touches only the keys of its user's slot),
	// one on a single server, where the sweep, the readiness check and the marking then
	// read one key instead of 16,384 (about 0.2 s each on the embedded server).
	shards int
	fence  bool
	wait   ReplicaWait
}

var (
	_ flash.HotQuota    = (*DrawQuota)(nil)
	_ activity.HotQuota = (*DrawQuota)(nil)
)

// NewDrawQuota returns the hot quota on client under prefix: laid out for a Cluster when
// client is a *ClusterClient, for a single server otherwise (see OnCluster).
func NewDrawQuota(client goredis.Cmdable, prefix string) *DrawQuota {
	if prefix != "" {
		prefix += ":"
	}
	_, cluster := client.(*goredis.ClusterClient)
	return (&DrawQuota{client: client, prefix: prefix + "fq:"}).OnCluster(cluster)
}

// OnCluster lays the hot quota out for a Redis Cluster (an index and a marker in every
// hash slot) or for a single server (one of each), for a client, such as an
// auto-pipeliner, whose kind NewDrawQuota cannot see. Every process sharing the hot state
// must use the same layout; a deployment uses one kind of Redis.
func (d *DrawQuota) OnCluster(cluster bool) *DrawQuota {
	d.shards = 1
	if cluster {
		d.shards = slots
	}
	return d
}

// WaitReplicas makes the take, the load and take, and the sweep's resume wait for
// w.Replicas replicas to acknowledge them (see ReplicaWait), through w.Client rather than
// the client (or auto-pipeliner) NewDrawQuota was given: one they did not acknowledge
// answers an error wrapping ErrUnreplicated, the unknown outcome of a take (flash: 0009;
// a unit it took is a pending draw that the user's retry or the sweep settles, and their
// resume writes its lease, so WAIT confirms the take before it is settled). Clear, fix,
// refund, release and raise do not wait: they act on a draw a confirmed take or resume
// handed out. It returns d.
func (d *DrawQuota) WaitReplicas(w ReplicaWait) *DrawQuota {
	d.wait = w
	return d
}

// Fence turns replication-id fencing of the hot quota on or off and returns d: on with a
// Redis that has replicas or restarts from its AOF or RDB, off with the embedded server
// (see fence.go). Every process sharing the hot state must use the same setting.
//
// Fenced, each slot has a fence key beside its marker (<prefix>:fq:fence:{<tag>}, the
// replication id of the server that set the marker), and a marker counts only while its
// fence is this server's id: after a failover or a restart the slot reads as lost, so
// takes answer ErrHotNotReady and the restore runs as after a loss (grace, the draw
// writer drained, a new epoch). Each quota also records the epoch it was loaded under
// (field e): a quota of another epoch is a copy from before the failover, which may lack
// takes already answered, so it is loaded again from SQL, replacing it and its pending
// draws (those published are in SQL; the others were never answered, as after a loss).
// The take, load, load-and-take and resume scripts check both before they write. The
// other writes (fix, clear, refund, release, raise, the unwritten credit wins) are not
// fenced: they touch only a draw or a quota that a fenced take or resume handed out, or
// a copy that is replaced before any take reads it again.
func (d *DrawQuota) Fence(on bool) *DrawQuota {
	d.fence = on
	return d
}

// The draw quota's fence helpers, after fence.go's, for its scripts' two variants:
//
//	DQ_FENCE                     whether the variant fences
//	dq_epoch(marker, fence)      the slot's epoch, false when the marker is missing or fenced
//	dq_fence(fence)              sets the slot's fence to this server's id, without expiry
//	dq_load(q, p, epoch, at, …)  puts a quota in place under epoch unless one loaded under
//	                             it is there (fenced; unfenced, unless one is there),
//	                             replacing a stale one and its pending draws; 1 when it wrote
const dqLua = `
local function dq_epoch(marker, fence)
  local epoch = redis.call('GET', marker)
  if epoch and bm_fenced(fence) then
    return false
  end
  return epoch
end
local function dq_load(quota, pending, epoch, at, ...)
  if redis.call('EXISTS', quota) == 1 then
    if not DQ_FENCE or redis.call('HGET', quota, 'e') == epoch then
      return 0
    end
    redis.call('DEL', quota, pending)
  end
  redis.call('HSET', quota, 'e', epoch, ...)
  redis.call('PEXPIREAT', quota, at)
  return 1
end
`

// newDQScript is newFencedScript with the draw quota's helpers.
func newDQScript(body string) fencedScript {
	return fencedScript{
		on: goredis.NewScript(fenceOnLua + `
local DQ_FENCE = true
local function dq_fence(fence)
  redis.call('SET', fence, bm_replid())
end
` + dqLua + body),
		off: goredis.NewScript(fenceOffLua + `
local DQ_FENCE = false
local function dq_fence(fence) end
` + dqLua + body),
	}
}

// markReadyScript sets a slot's marker to the epoch ARGV[1] and its fence, unless the
// marker is there and not fenced; KEYS are the marker and the fence. 1 when it set them.
var markReadyScript = newDQScript(`
if dq_epoch(KEYS[1], KEYS[2]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
dq_fence(KEYS[2])
return 1
`)

// readyScript answers 1 when the slot's marker is there and not fenced; KEYS are the
// marker and the fence.
var readyScript = newDQScript(`
if dq_epoch(KEYS[1], KEYS[2]) then
  return 1
end
return 0
`)

func (d *DrawQuota) quotaKey(user string, activityID int64) string {
	return d.prefix + "{u:" + user + "}:" + strconv.FormatInt(activityID, 10)
}

func (d *DrawQuota) pendingKey(user string, activityID int64) string {
	return d.quotaKey(user, activityID) + ":p"
}

// unwrittenKey is the user's unwritten credit wins.
func (d *DrawQuota) unwrittenKey(user string) string { return d.prefix + "{u:" + user + "}:w" }

// unwrittenTTL bounds how long an unwritten credit win that nobody forgot (its writer's
// forget lost) stays: the draw writer is never that far behind, and a win found written
// already is only forgotten again.
const unwrittenTTL = 24 * time.Hour

func (d *DrawQuota) markerKey(slot int) string { return d.prefix + "ready:{" + slotTag(slot) + "}" }

// fenceKey is the slot's fence (see Fence).
func (d *DrawQuota) fenceKey(slot int) string { return d.prefix + "fence:{" + slotTag(slot) + "}" }

func (d *DrawQuota) indexKey(slot int) string { return d.prefix + "pend:{" + slotTag(slot) + "}" }

// userSlot is the shard of a user's pending-draw index and marker: on a Cluster, the
// hash slot of the user's keys.
func (d *DrawQuota) userSlot(user string) int {
	if d.shards == 1 {
		return 0
	}
	return keySlot(d.quotaKey(user, 0))
}

// keySlot is the Cluster slot of key as Redis computes it: the CRC of its hash tag (the
// text between the first '{' and the next '}', when not empty), else of the whole key.
func keySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16([]byte(key)) % slots)
}

// The quota hash's fields:
//
//	a                "1" when the user has an account
//	t ts d ds m ms   the account: total and surplus, day limit and surplus, month limit and surplus
//	mk mc mu         the month row: its key, count and surplus (absent: no row yet)
//	dk dc du         the day row
//
// A row whose key is not the current period is, as in SQL, not the current period's row.

// Status codes of the draw quota scripts, first element of their reply.
const (
	dqTaken     = 1
	dqResumed   = 2
	dqNotReady  = -1
	dqMissing   = -2
	dqTotal     = -3
	dqMonth     = -4
	dqDay       = -5
	dqLeased    = -6
	dqStaleTake = -7
	dqGone      = 0
	dqStaleLoad = -1
)

// takeScript resumes an abandoned pending draw or takes one unit and creates a pending
// draw: the flash draw's commit point.
//
// KEYS are the quota, the pending draws, the slot's marker, the slot's index and the
// slot's fence (see Fence). ARGV are
// the day and month keys, the order id, now (Unix ms), the lease (ms), the index member
// of the new draw without its order id ("<activity>|") and the user.
//
// Replies: {-1} no quota and no marker (not loadable now); {-2, epoch} no quota (load it
// under epoch); {-3}, {-4}, {-5} total, month, day exhausted; {2, order, info, outcome}
// a pending draw whose lease ran out, now leased to the caller (no unit is taken: a
// retry settles the draw it already paid for); {1, info} a unit taken.
//
// The take is activity.Quota.Take: total first, then the month row (created from the
// account's month limit when the period has none), then the day row; all three surpluses
// lose one and the account mirrors the rows' surpluses. A period key never goes back: a
// node whose clock lags behind another's takes from the later period already in use.
// info is "takeMs|day|month|score|today", score and today being the user's draws in the
// activity and today before this one (rule_weight, rule_lock).
var takeScript = newDQScript(takeLua)

// loadTakeScript is loadQuotaScript and takeScript in one step, for a first touch: one
// round trip less than a load followed by a take. KEYS are takeScript's; ARGV are
// takeScript's seven, then loadQuotaScript's (the epoch, the expiry, the fields and
// values). It replies {-7} when the marker is not the epoch (nothing was loaded or
// taken: read SQL again), and otherwise as takeScript, the quota being in place (loaded
// now, or by another request before).
var loadTakeScript = newDQScript(`
if redis.call('GET', KEYS[3]) ~= ARGV[8] or DQ_FENCE and bm_fenced(KEYS[5]) then
  return {-7}
end
dq_load(KEYS[1], KEYS[2], ARGV[8], ARGV[9], unpack(ARGV, 10))
` + takeLua)

const takeLua = `
local epoch = DQ_FENCE and dq_epoch(KEYS[3], KEYS[5])
if redis.call('EXISTS', KEYS[1]) == 0 or DQ_FENCE and redis.call('HGET', KEYS[1], 'e') ~= epoch then
  if not DQ_FENCE then
    epoch = redis.call('GET', KEYS[3])
  end
  if not epoch then
    return {-1}
  end
  return {-2, epoch}
end
local now = tonumber(ARGV[4])
local pend = redis.call('HGETALL', KEYS[2])
if #pend > 0 then
  local f = {}
  for i = 1, #pend, 2 do
    f[pend[i]] = pend[i + 1]
  end
  local best, bestAt
  for k, v in pairs(f) do
    local id = string.match(k, '^i:(.+)$')
    if id and tonumber(f['l:' .. id] or '0') <= now then
      local at = tonumber(string.match(v, '^(%d+)'))
      if not best or at < bestAt then
        best, bestAt = id, at
      end
    end
  end
  if best then
    redis.call('HSET', KEYS[2], 'l:' .. best, string.format('%d', now + tonumber(ARGV[5])))
    return {2, best, f['i:' .. best], f['o:' .. best] or ''}
  end
end
local q = redis.call('HMGET', KEYS[1], 'a', 't', 'ts', 'm', 'd', 'mk', 'mc', 'mu', 'dk', 'dc', 'du')
local ts = tonumber(q[3])
if q[1] ~= '1' or not ts or ts <= 0 then
  return {-3}
end
local day, month = ARGV[1], ARGV[2]
local mk, mc, mu = q[6], tonumber(q[7]), tonumber(q[8])
if mk and mk > month then
  month = mk
end
if mk ~= month then
  mc, mu = tonumber(q[4]), tonumber(q[4])
end
if mu <= 0 then
  return {-4}
end
local dk, dc, du = q[9], tonumber(q[10]), tonumber(q[11])
if dk and dk > day then
  day = dk
end
if dk ~= day then
  dc, du = tonumber(q[5]), tonumber(q[5])
end
if du <= 0 then
  return {-5}
end
ts, mu, du = ts - 1, mu - 1, du - 1
redis.call('HSET', KEYS[1], 'ts', ts, 'mk', month, 'mc', mc, 'mu', mu, 'ms', mu, 'dk', day, 'dc', dc, 'du', du, 'ds', du)
local score = tonumber(q[2]) - ts - 1
local today = dc - du - 1
local info = ARGV[4] .. '|' .. day .. '|' .. month .. '|' .. string.format('%d|%d', score, today)
redis.call('HSET', KEYS[2], 'i:' .. ARGV[3], info, 'l:' .. ARGV[3], string.format('%d', now + tonumber(ARGV[5])))
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[2], string.format('%d', ttl))
end
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[6] .. ARGV[3] .. '|' .. ARGV[7])
return {1, info}
`

// loadScript puts a user's quota in place, read from SQL under the slot's epoch.
//
// KEYS are the quota, the slot's marker, the pending draws and the slot's fence; ARGV are the epoch, the keys' expiry (Unix
// ms) and the fields and values. It returns -1 when the marker is not the epoch (a loss
// and restore since the read, or a loss not yet restored: read SQL again), 0 when a quota
// is there already (another request loaded it), and 1 when it wrote it. The marker check
// is what makes the load safe: SQL holds every draw of the user as long as the marker the
// read was made under is present.
var loadQuotaScript = newDQScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] or DQ_FENCE and bm_fenced(KEYS[4]) then
  return -1
end
return dq_load(KEYS[1], KEYS[3], ARGV[1], ARGV[2], unpack(ARGV, 3))
`)

// raiseScript adds to a quota, if present, what a recharge committed to SQL added.
//
// KEYS is the quota; ARGV are the month and day keys of the recharge, whether SQL has an
// account ("1"), and SQL's account total, month and day counts. The difference between
// SQL's counts and the quota's is added as activity.Quota.Add adds a count: to the
// account's counts and surpluses, and to the current period's rows when they exist. Only
// recharges change these counts, so the difference is exactly the recharges the quota
// has not seen, and a raise run twice adds nothing the second time. Returns 1 when it
// added something.
var raiseScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 or ARGV[3] ~= '1' then
  return 0
end
local q = redis.call('HMGET', KEYS[1], 'a', 't', 'm', 'd', 'mk', 'dk')
local has = q[1] == '1'
local function diff(want, have)
  local d = tonumber(want) - (has and tonumber(have) or 0)
  if d < 0 then
    return 0
  end
  return d
end
local dt, dm, dd = diff(ARGV[4], q[2]), diff(ARGV[5], q[3]), diff(ARGV[6], q[4])
if has and dt == 0 and dm == 0 and dd == 0 then
  return 0
end
if not has then
  redis.call('HSET', KEYS[1], 'a', '1', 't', 0, 'ts', 0, 'm', 0, 'ms', 0, 'd', 0, 'ds', 0)
end
redis.call('HINCRBY', KEYS[1], 't', dt)
redis.call('HINCRBY', KEYS[1], 'ts', dt)
redis.call('HINCRBY', KEYS[1], 'm', dm)
redis.call('HINCRBY', KEYS[1], 'ms', dm)
redis.call('HINCRBY', KEYS[1], 'd', dd)
redis.call('HINCRBY', KEYS[1], 'ds', dd)
if q[5] == ARGV[1] then
  redis.call('HINCRBY', KEYS[1], 'mc', dm)
  redis.call('HINCRBY', KEYS[1], 'mu', dm)
end
if q[6] == ARGV[2] then
  redis.call('HINCRBY', KEYS[1], 'dc', dd)
  redis.call('HINCRBY', KEYS[1], 'du', dd)
end
return 1
`)

// fixScript stores a pending draw's outcome unless it has one. It returns 1 when it
// stored the caller's outcome (the common case: the caller has it already, so it is not
// sent back and decoded again), the outcome stored before otherwise, or false when the
// draw is no longer pending. KEYS are the pending draws and the user's unwritten credit
// wins; ARGV the order id, the outcome, the draw's event to keep among the unwritten
// credit wins when this outcome is stored ("" for none) and that hash's time to live in
// ms.
var fixScript = goredis.NewScript(`
if redis.call('HEXISTS', KEYS[1], 'i:' .. ARGV[1]) == 0 then
  return false
end
if redis.call('HSETNX', KEYS[1], 'o:' .. ARGV[1], ARGV[2]) == 0 then
  return redis.call('HGET', KEYS[1], 'o:' .. ARGV[1])
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
return 1
`)

// clearScript forgets a pending draw. KEYS are the pending draws and the slot's index;
// ARGV the order id and its index member.
var clearScript = goredis.NewScript(`
redis.call('HDEL', KEYS[1], 'i:' .. ARGV[1], 'l:' .. ARGV[1], 'o:' .. ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
`)

// releaseScript ends the lease of a pending draw that is still there.
var releasePendingScript = goredis.NewScript(`
if redis.call('HEXISTS', KEYS[1], 'i:' .. ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'l:' .. ARGV[1], '0')
end
return 1
`)

// refundScript gives a pending draw's unit back and forgets the draw, when it has no
// outcome (a draw that lost the race for the last prize of an activity without
// fallback: nothing was won, nothing is published). KEYS are the quota, the pending draws
// and the slot's index; ARGV the order id and its index member. The unit goes back to the
// total, and to the month and day rows it came from while they are still the current
// ones (the account mirrors them), which undoes the take exactly. Returns 1 when it gave
// the unit back, 0 when the draw is gone or has an outcome.
var refundScript = goredis.NewScript(`
local info = redis.call('HGET', KEYS[2], 'i:' .. ARGV[1])
if not info or redis.call('HEXISTS', KEYS[2], 'o:' .. ARGV[1]) == 1 then
  return 0
end
local day, month = string.match(info, '^%d+|([^|]+)|([^|]+)|')
redis.call('HINCRBY', KEYS[1], 'ts', 1)
local q = redis.call('HMGET', KEYS[1], 'mk', 'dk')
if q[1] == month then
  redis.call('HSET', KEYS[1], 'ms', redis.call('HINCRBY', KEYS[1], 'mu', 1))
end
if q[2] == day then
  redis.call('HSET', KEYS[1], 'ds', redis.call('HINCRBY', KEYS[1], 'du', 1))
end
redis.call('HDEL', KEYS[2], 'i:' .. ARGV[1], 'l:' .. ARGV[1], 'o:' .. ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[2])
return 1
`)

// resumeScript leases a pending draw the sweep found. KEYS are the pending draws, the
// slot's index, the slot's marker, the quota and the slot's fence; ARGV the order id, now
// (ms), the lease (ms) and the index member. Replies: {0} gone (its index entry is
// dropped), {-6} leased to another (or, fenced, the slot not loadable yet), {2, info,
// outcome}. Fenced, a pending draw whose quota was not loaded under the slot's epoch is a
// leftover of a copy from before a failover (see Fence) and is dropped as gone.
var resumeScript = newDQScript(`
if DQ_FENCE then
  local epoch = dq_epoch(KEYS[3], KEYS[5])
  if not epoch then
    return {-6}
  end
  if redis.call('HGET', KEYS[4], 'e') ~= epoch then
    redis.call('HDEL', KEYS[1], 'i:' .. ARGV[1], 'l:' .. ARGV[1], 'o:' .. ARGV[1])
  end
end
local info = redis.call('HGET', KEYS[1], 'i:' .. ARGV[1])
if not info then
  redis.call('ZREM', KEYS[2], ARGV[4])
  return {0}
end
local now = tonumber(ARGV[2])
if tonumber(redis.call('HGET', KEYS[1], 'l:' .. ARGV[1]) or '0') > now then
  return {-6}
end
redis.call('HSET', KEYS[1], 'l:' .. ARGV[1], string.format('%d', now + tonumber(ARGV[3])))
return {2, info, redis.call('HGET', KEYS[1], 'o:' .. ARGV[1]) or ''}
`)

func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// Take implements flash.HotQuota.
func (d *DrawQuota) Take(ctx context.Context, key activity.QuotaKey, orderID string, now time.Time, lease time.Duration) (flash.Pending, bool, error) {
	slot := d.userSlot(key.UserID)
	keys := []string{d.quotaKey(key.UserID, key.ActivityID), d.pendingKey(key.UserID, key.ActivityID), d.markerKey(slot), d.indexKey(slot), d.fenceKey(slot)}
	res, err := takeScript.runWaiting(ctx, d.client, d.fence, d.wait, keys, key.Day, key.Month, orderID, now.UnixMilli(), lease.Milliseconds(),
		strconv.FormatInt(key.ActivityID, 10)+"|", key.UserID).Slice()
	if err != nil {
		return flash.Pending{}, false, fmt.Errorf("take hot quota of %s in %d: %w", key.UserID, key.ActivityID, err)
	}
	return taken(res, orderID)
}

// LoadTake implements flash.HotQuota: Load and Take in one script.
func (d *DrawQuota) LoadTake(ctx context.Context, key activity.QuotaKey, epoch string, q activity.Quota, expireAt time.Time,
	orderID string, now time.Time, lease time.Duration) (flash.Pending, bool, error) {
	slot := d.userSlot(key.UserID)
	keys := []string{d.quotaKey(key.UserID, key.ActivityID), d.pendingKey(key.UserID, key.ActivityID), d.markerKey(slot), d.indexKey(slot), d.fenceKey(slot)}
	args := append([]any{key.Day, key.Month, orderID, now.UnixMilli(), lease.Milliseconds(),
		strconv.FormatInt(key.ActivityID, 10) + "|", key.UserID}, loadArgs(key, epoch, q, expireAt)...)
	res, err := loadTakeScript.runWaiting(ctx, d.client, d.fence, d.wait, keys, args...).Slice()
	if err != nil {
		return flash.Pending{}, false, fmt.Errorf("load and take hot quota of %s in %d: %w", key.UserID, key.ActivityID, err)
	}
	if code(res) == dqStaleTake {
		return flash.Pending{}, false, flash.ErrHotStale
	}
	return taken(res, orderID)
}

// taken reads the reply of takeScript for a take with orderID.
func taken(res []any, orderID string) (flash.Pending, bool, error) {
	switch code(res) {
	case dqNotReady:
		return flash.Pending{}, false, flash.ErrHotNotReady
	case dqMissing:
		return flash.Pending{}, false, &flash.HotMissing{Epoch: str(res, 1)}
	case dqTotal:
		return flash.Pending{}, false, activity.ErrTotalQuotaExhausted
	case dqMonth:
		return flash.Pending{}, false, activity.ErrMonthQuotaExhausted
	case dqDay:
		return flash.Pending{}, false, activity.ErrDayQuotaExhausted
	case dqTaken:
		p, err := parsePending(orderID, str(res, 1), "")
		return p, false, err
	case dqResumed:
		p, err := parsePending(str(res, 1), str(res, 2), str(res, 3))
		return p, true, err
	}
	return flash.Pending{}, false, fmt.Errorf("take hot quota: unexpected reply %v", res)
}

func code(res []any) int64 {
	if len(res) == 0 {
		return -100
	}
	n, _ := res[0].(int64)
	return n
}

func str(res []any, i int) string {
	if i >= len(res) {
		return ""
	}
	s, _ := res[i].(string)
	return s
}

// parsePending reads a pending draw's info ("takeMs|day|month|score|today") and outcome.
func parsePending(orderID, info, outcome string) (flash.Pending, error) {
	f := strings.Split(info, "|")
	if len(f) != 5 {
		return flash.Pending{}, fmt.Errorf("pending draw %s: malformed %q", orderID, info)
	}
	at, err1 := strconv.ParseInt(f[0], 10, 64)
	score, err2 := strconv.ParseInt(f[3], 10, 64)
	today, err3 := strconv.ParseInt(f[4], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return flash.Pending{}, fmt.Errorf("pending draw %s: malformed %q: %w", orderID, info, err)
	}
	p := flash.Pending{OrderID: orderID, OrderTime: time.UnixMilli(at), Day: f[1], Month: f[2],
		Score: max(score, 0), DrawsToday: max(today, 0)}
	if outcome != "" {
		var o flash.Outcome
		if err := json.Unmarshal([]byte(outcome), &o); err != nil {
			return flash.Pending{}, fmt.Errorf("pending draw %s: outcome: %w", orderID, err)
		}
		p.Outcome = &o
	}
	return p, nil
}

// Load implements flash.HotQuota.
func (d *DrawQuota) Load(ctx context.Context, key activity.QuotaKey, epoch string, q activity.Quota, expireAt time.Time) error {
	args := loadArgs(key, epoch, q, expireAt)
	slot := d.userSlot(key.UserID)
	keys := []string{d.quotaKey(key.UserID, key.ActivityID), d.markerKey(slot), d.pendingKey(key.UserID, key.ActivityID), d.fenceKey(slot)}
	n, err := loadQuotaScript.run(ctx, d.client, d.fence, keys, args...).Int()
	if err != nil {
		return fmt.Errorf("load hot quota: %w", err)
	}
	if n == dqStaleLoad {
		return flash.ErrHotStale
	}
	return nil
}

// loadArgs are loadQuotaScript's ARGV: the epoch, the expiry and the quota's fields.
func loadArgs(key activity.QuotaKey, epoch string, q activity.Quota, expireAt time.Time) []any {
	args := []any{epoch, expireAt.UnixMilli()}
	if a := q.Account; a != nil {
		args = append(args, "a", "1", "t", a.Total, "ts", a.TotalSurplus, "d", a.Day, "ds", a.DaySurplus, "m", a.Month, "ms", a.MonthSurplus)
	} else {
		args = append(args, "a", "0")
	}
	if m := q.Month; m != nil {
		args = append(args, "mk", key.Month, "mc", m.Count, "mu", m.Surplus)
	}
	if dd := q.Day; dd != nil {
		args = append(args, "dk", key.Day, "dc", dd.Count, "du", dd.Surplus)
	}
	return args
}

// Raise implements activity.HotQuota.
func (d *DrawQuota) Raise(ctx context.Context, key activity.QuotaKey, q activity.Quota) error {
	if q.Account == nil {
		return nil
	}
	a := q.Account
	err := raiseScript.Run(ctx, d.client, []string{d.quotaKey(key.UserID, key.ActivityID)},
		key.Month, key.Day, "1", a.Total, a.Month, a.Day).Err()
	if err != nil {
		return fmt.Errorf("raise hot quota of %s in %d: %w", key.UserID, key.ActivityID, err)
	}
	return nil
}

// Read implements activity.HotQuota: the quota rows of the key's periods, rows of other
// periods being absent as in SQL.
func (d *DrawQuota) Read(ctx context.Context, key activity.QuotaKey) (activity.Quota, bool, error) {
	h, err := d.client.HGetAll(ctx, d.quotaKey(key.UserID, key.ActivityID)).Result()
	if err != nil {
		return activity.Quota{}, false, fmt.Errorf("read hot quota of %s in %d: %w", key.UserID, key.ActivityID, err)
	}
	if len(h) == 0 {
		return activity.Quota{}, false, nil
	}
	n := func(f string) int64 { v, _ := strconv.ParseInt(h[f], 10, 64); return v }
	var q activity.Quota
	if h["a"] == "1" {
		q.Account = &activity.Account{Total: n("t"), TotalSurplus: n("ts"), Day: n("d"), DaySurplus: n("ds"), Month: n("m"), MonthSurplus: n("ms")}
	}
	if h["mk"] == key.Month {
		q.Month = &activity.Period{Key: key.Month, Count: n("mc"), Surplus: n("mu")}
	}
	if h["dk"] == key.Day {
		q.Day = &activity.Period{Key: key.Day, Count: n("dc"), Surplus: n("du")}
	}
	return q, true, nil
}

// Fix implements flash.HotQuota.
func (d *DrawQuota) Fix(ctx context.Context, userID string, activityID int64, orderID string, o flash.Outcome, keep *flash.Event) (flash.Outcome, error) {
	body, err := json.Marshal(o)
	if err != nil {
		return flash.Outcome{}, err
	}
	var kept []byte
	if keep != nil {
		if kept, err = json.Marshal(keep); err != nil {
			return flash.Outcome{}, err
		}
	}
	keys := []string{d.pendingKey(userID, activityID), d.unwrittenKey(userID)}
	got, err := fixScript.Run(ctx, d.client, keys, orderID, body, kept, unwrittenTTL.Milliseconds()).Result()
	if errors.Is(err, goredis.Nil) {
		return flash.Outcome{}, flash.ErrPendingGone
	}
	if err != nil {
		return flash.Outcome{}, fmt.Errorf("fix outcome of %s: %w", orderID, err)
	}
	stored, ok := got.(string)
	if !ok {
		return o, nil // this outcome is the one stored
	}
	var fixed flash.Outcome
	if err := json.Unmarshal([]byte(stored), &fixed); err != nil {
		return flash.Outcome{}, fmt.Errorf("fix outcome of %s: %w", orderID, err)
	}
	return fixed, nil
}

// Unwritten implements flash.HotQuota.
func (d *DrawQuota) Unwritten(ctx context.Context, userID string) ([]flash.Event, error) {
	h, err := d.client.HGetAll(ctx, d.unwrittenKey(userID)).Result()
	if err != nil {
		return nil, fmt.Errorf("unwritten credit wins of %s: %w", userID, err)
	}
	events := make([]flash.Event, 0, len(h))
	for orderID, body := range h {
		var e flash.Event
		if err := json.Unmarshal([]byte(body), &e); err != nil || e.OrderID != orderID || e.UserID != userID {
			return nil, fmt.Errorf("unwritten credit win %s of %s: %q: %v", orderID, userID, body, err)
		}
		events = append(events, e)
	}
	slices.SortFunc(events, func(a, b flash.Event) int {
		return cmp.Or(a.OrderTime.Compare(b.OrderTime), strings.Compare(a.OrderID, b.OrderID))
	})
	return events, nil
}

// Forget implements flash.HotQuota: one HDEL per user, in one pipeline.
func (d *DrawQuota) Forget(ctx context.Context, events []flash.Event) error {
	byUser := map[string][]string{}
	for _, e := range events {
		byUser[e.UserID] = append(byUser[e.UserID], e.OrderID)
	}
	if len(byUser) == 0 {
		return nil
	}
	_, err := d.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for user, orders := range byUser {
			p.HDel(ctx, d.unwrittenKey(user), orders...)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("forget %d unwritten credit wins: %w", len(events), err)
	}
	return nil
}

func member(userID string, activityID int64, orderID string) string {
	return strconv.FormatInt(activityID, 10) + "|" + orderID + "|" + userID
}

// Clear implements flash.HotQuota.
func (d *DrawQuota) Clear(ctx context.Context, userID string, activityID int64, orderID string) error {
	keys := []string{d.pendingKey(userID, activityID), d.indexKey(d.userSlot(userID))}
	if err := clearScript.Run(ctx, d.client, keys, orderID, member(userID, activityID, orderID)).Err(); err != nil {
		return fmt.Errorf("clear pending draw %s: %w", orderID, err)
	}
	return nil
}

// Refund implements flash.HotQuota.
func (d *DrawQuota) Refund(ctx context.Context, userID string, activityID int64, orderID string) (bool, error) {
	keys := []string{d.quotaKey(userID, activityID), d.pendingKey(userID, activityID), d.indexKey(d.userSlot(userID))}
	n, err := refundScript.Run(ctx, d.client, keys, orderID, member(userID, activityID, orderID)).Int()
	if err != nil {
		return false, fmt.Errorf("refund pending draw %s: %w", orderID, err)
	}
	return n == 1, nil
}

// Release implements flash.HotQuota.
func (d *DrawQuota) Release(ctx context.Context, userID string, activityID int64, orderID string) error {
	if err := releasePendingScript.Run(ctx, d.client, []string{d.pendingKey(userID, activityID)}, orderID).Err(); err != nil {
		return fmt.Errorf("release pending draw %s: %w", orderID, err)
	}
	return nil
}

// Abandoned implements flash.HotQuota: it reads every slot's index, in pipelines.
func (d *DrawQuota) Abandoned(ctx context.Context, before time.Time, limit int) ([]flash.PendingRef, error) {
	var refs []flash.PendingRef
	chunk := min(256, d.shards)
	for from := 0; from < d.shards && len(refs) < limit; from += chunk {
		pipe := d.client.Pipeline()
		cmds := make([]*goredis.StringSliceCmd, 0, chunk)
		for slot := from; slot < from+chunk; slot++ {
			cmds = append(cmds, pipe.ZRangeByScore(ctx, d.indexKey(slot), &goredis.ZRangeBy{
				Min: "-inf", Max: "(" + ms(before), Count: int64(limit)}))
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
			return refs, fmt.Errorf("list pending draws: %w", err)
		}
		for _, c := range cmds {
			for _, m := range c.Val() {
				act, rest, ok1 := strings.Cut(m, "|")
				order, user, ok2 := strings.Cut(rest, "|")
				id, err := strconv.ParseInt(act, 10, 64)
				if !ok1 || !ok2 || err != nil {
					continue
				}
				refs = append(refs, flash.PendingRef{UserID: user, ActivityID: id, OrderID: order})
			}
		}
	}
	if len(refs) > limit {
		refs = refs[:limit]
	}
	return refs, nil
}

// Resume implements flash.HotQuota.
func (d *DrawQuota) Resume(ctx context.Context, ref flash.PendingRef, now time.Time, lease time.Duration) (flash.Pending, bool, error) {
	slot := d.userSlot(ref.UserID)
	keys := []string{d.pendingKey(ref.UserID, ref.ActivityID), d.indexKey(slot), d.markerKey(slot),
		d.quotaKey(ref.UserID, ref.ActivityID), d.fenceKey(slot)}
	res, err := resumeScript.runWaiting(ctx, d.client, d.fence, d.wait, keys, ref.OrderID, now.UnixMilli(), lease.Milliseconds(),
		member(ref.UserID, ref.ActivityID, ref.OrderID)).Slice()
	if err != nil {
		return flash.Pending{}, false, fmt.Errorf("resume pending draw %s: %w", ref.OrderID, err)
	}
	if code(res) != dqResumed {
		return flash.Pending{}, false, nil
	}
	p, err := parsePending(ref.OrderID, str(res, 1), str(res, 2))
	return p, err == nil, err
}

// MarkReady implements flash.HotQuota: the markers missing (or, fenced, fenced) are set to
// a new epoch, with the fence; the ones present are kept, so a load read under them stays
// valid.
func (d *DrawQuota) MarkReady(ctx context.Context) error {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	epoch := hex.EncodeToString(b)
	chunk := min(256, d.shards)
	for from := 0; from < d.shards; from += chunk {
		pipe := d.client.Pipeline()
		for slot := from; slot < from+chunk; slot++ {
			if d.fence {
				// Eval, not EvalSha: a pipeline cannot fall back on NOSCRIPT.
				markReadyScript.on.Eval(ctx, pipe, []string{d.markerKey(slot), d.fenceKey(slot)}, epoch)
			} else {
				pipe.SetNX(ctx, d.markerKey(slot), epoch, 0)
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("mark hot quotas loadable: %w", err)
		}
	}
	return nil
}

// Ready implements flash.HotQuota.
func (d *DrawQuota) Ready(ctx context.Context) (bool, error) {
	chunk := min(256, d.shards)
	for from := 0; from < d.shards; from += chunk {
		pipe := d.client.Pipeline()
		cmds := make([]func() int64, 0, chunk)
		for slot := from; slot < from+chunk; slot++ {
			if d.fence {
				c := readyScript.on.Eval(ctx, pipe, []string{d.markerKey(slot), d.fenceKey(slot)})
				cmds = append(cmds, func() int64 { n, _ := c.Int64(); return n })
			} else {
				cmds = append(cmds, pipe.Exists(ctx, d.markerKey(slot)).Val)
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return false, fmt.Errorf("hot quota markers: %w", err)
		}
		for _, n := range cmds {
			if n() == 0 {
				return false, nil
			}
		}
	}
	return true, nil
}

// slots is the number of Redis Cluster hash slots.
const slots = 16384

var (
	slotTagsOnce sync.Once
	slotTags     [slots]string
)

// slotTag returns a short hash tag whose key lands in slot: the first of "s0", "s1", …
// that hashes there. The table is computed once (a few hundred thousand CRCs).
func slotTag(slot int) string {
	slotTagsOnce.Do(func() {
		left := slots
		for i := 0; left > 0; i++ {
			tag := "s" + strconv.Itoa(i)
			s := crc16([]byte(tag)) % slots
			if slotTags[s] == "" {
				slotTags[s] = tag
				left--
			}
		}
	})
	return slotTags[slot]
}

// crc16 is the CRC-16/XMODEM Redis Cluster hashes keys with (polynomial 0x1021, initial
// value 0).
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
