package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/gate"
)

// Wins is the one-win record in Redis; it implements gate.Wins. Each user has one set
// under the user's hash tag (the tag of the user's other hot keys), so that a script on
// the user's quota may read it in the same slot:
//
//	<prefix>:one_win:{u:<userID>}                 the set
//	<prefix>:one_win:{u:<userID>}:hold:<activity>  the hold of the user's running draw
//
// The set holds "<activityID>" for each activity in which the user won a stocked award,
// and a known-member once it knows the activity ("k<activityID>", or fenced
// "k<activityID>|<stamp>", see Fence): a set that does not know an activity (never asked,
// or lost with Redis: a flush, an eviction, its expiry) is rebuilt from the award records
// before it answers, so a lost set never reads as "has not won".
//
// Behind a draw path that writes its award records after its answers (the flash draw),
// the records are complete only once the draw writer has applied every draw published
// before the loss; the hot quota's slot marker (DrawQuota: set by the restore after the
// writer has drained, lost with the slot) says when. Such a Wins (RebuildAfter) answers
// gate.NotReady for a set that does not know the activity while the user's slot has no
// marker, hands the marker's epoch to the rebuild, and writes the rebuild only if that
// epoch still stands. The set shares the user's hash tag with the hot quota, so the
// marker is in the same slot and one script reads both.
type Wins struct {
	client goredis.UniversalClient
	prefix string
	ttl    time.Duration
	hot    *DrawQuota // nil: the award records are written before the answers
	fence  bool
}

var _ gate.Wins = (*Wins)(nil)

// NewWins returns Wins on client whose sets live ttl after their last change (default 30
// days; an expired set is rebuilt like a lost one).
func NewWins(client goredis.UniversalClient, prefix string, ttl time.Duration) *Wins {
	if prefix != "" {
		prefix += ":"
	}
	if ttl <= 0 {
		ttl = 30 * 24 * time.Hour
	}
	return &Wins{client: client, prefix: prefix + "one_win:", ttl: ttl}
}

// RebuildAfter makes lost sets wait for hot's restore (see Wins) and returns w.
func (w *Wins) RebuildAfter(hot *DrawQuota) *Wins {
	w.hot = hot
	return w
}

// Fence turns replication-id fencing of the sets on or off and returns w, as the hot
// quota's Fence (the same setting as the DrawQuota given to RebuildAfter, and in every
// process sharing the sets).
//
// A failover or a restart can lose the SADD of a win while the win was answered and made
// durable: the rolled-back set still knows the activity, so unfenced it answers "has not
// won" and the user wins again. Fenced, a known-member counts only under the stamp it was
// rebuilt under: "k<activity>|<epoch>", the epoch of the user's slot marker, which counts
// only while the slot's fence is the server's replication id (DrawQuota.Fence); without
// RebuildAfter the stamp is the replication id itself. After a failover or a restart the
// slot is fenced, so every hold that is not already "won" answers gate.NotReady (0009, and
// the flash draw starts the restore); the restore sets a new epoch, and each set is then
// rebuilt from the award records once per activity at its user's next hold. A member
// "<activity>" (won) is answered as it is: a rolled-back set only lacks the newest
// members. The hold and the rebuild check the stamp before they write; Note (adding a
// win, always true) and Release are not fenced.
func (w *Wins) Fence(on bool) *Wins {
	w.fence = on
	return w
}

// markerKey is the key whose epoch a rebuild of the user's set is read under: the hot
// quota's marker of the user's slot, or the set itself (never read) without one.
func (w *Wins) markerKey(userID string) string {
	if w.hot == nil {
		return w.SetKey(userID)
	}
	return w.hot.markerKey(w.hot.userSlot(userID))
}

// fenceKey is the fence of the marker's slot (DrawQuota.Fence), or the set itself (never
// read) without a hot quota.
func (w *Wins) fenceKey(userID string) string {
	if w.hot == nil {
		return w.SetKey(userID)
	}
	return w.hot.fenceKey(w.hot.userSlot(userID))
}

// SetKey returns the key of the user's set.
func (w *Wins) SetKey(userID string) string { return w.prefix + "{u:" + userID + "}" }

func (w *Wins) holdKey(userID string, activityID int64) string {
	return w.SetKey(userID) + ":hold:" + strconv.FormatInt(activityID, 10)
}

// The one-win scripts' helpers, after fence.go's, for their two variants:
//
//	OW_FENCE                     whether the variant fences
//	ow_stamp(hot, marker, fence) what a rebuild is read and a known-member stamped under:
//	                             with a hot quota ("1") the slot's epoch, false when the
//	                             marker is missing or (fenced) its fence is another
//	                             server's id; without, fenced, the replication id, and
//	                             unfenced ""
//	ow_known(set, act, stamp)    whether the set knows the activity (fenced: under stamp)
const owLua = `
local function ow_stamp(hot, marker, fence)
  if not hot then
    if OW_FENCE then
      return bm_replid()
    end
    return ''
  end
  local epoch = redis.call('GET', marker)
  if epoch and bm_fenced(fence) then
    return false
  end
  return epoch
end
local function ow_known(set, act, stamp)
  if not OW_FENCE then
    return redis.call('SISMEMBER', set, 'k' .. act) == 1
  end
  return stamp and redis.call('SISMEMBER', set, 'k' .. act .. '|' .. stamp) == 1
end
`

// newOWScript is newFencedScript with the one-win helpers.
func newOWScript(body string) fencedScript {
	return fencedScript{
		on:  goredis.NewScript(fenceOnLua + "local OW_FENCE = true\n" + owLua + body),
		off: goredis.NewScript(fenceOffLua + "local OW_FENCE = false\n" + owLua + body),
	}
}

// holdScript checks the set and takes the hold. KEYS are the set, the hold, the marker
// and the marker's fence; ARGV the activity, the token, the hold's TTL in milliseconds
// and "1" when a rebuild needs the marker. It returns {gate.Hold} or, for Unknown,
// {3, stamp}; NotReady (4) takes no hold. Unfenced, the marker is read only for a set
// that does not know the activity; fenced, every hold not answered "won" reads it.
var holdScript = newOWScript(`
local act, hot = ARGV[1], ARGV[4] == '1'
if redis.call('SISMEMBER', KEYS[1], act) == 1 then
  return {1}
end
local stamp
if OW_FENCE then
  stamp = ow_stamp(hot, KEYS[3], KEYS[4])
end
local known = ow_known(KEYS[1], act, stamp)
if not known then
  if not OW_FENCE then
    stamp = ow_stamp(hot, KEYS[3], KEYS[4])
  end
  if not stamp then
    return {4}
  end
end
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return {2}
end
if not known then
  return {3, stamp}
end
return {0}
`)

// Hold implements gate.Wins.
func (w *Wins) Hold(ctx context.Context, userID string, activityID int64, token string, ttl time.Duration) (gate.Hold, string, error) {
	act := strconv.FormatInt(activityID, 10)
	res, err := holdScript.run(ctx, w.client, w.fence,
		[]string{w.SetKey(userID), w.holdKey(userID, activityID), w.markerKey(userID), w.fenceKey(userID)},
		act, token, max(ttl.Milliseconds(), 1), w.gated()).Slice()
	if err != nil {
		return 0, "", fmt.Errorf("one-win hold of %s in activity %d: %w", userID, activityID, err)
	}
	switch code(res) {
	case 0:
		return gate.Held, "", nil
	case 1:
		return gate.Won, "", nil
	case 2:
		return gate.Busy, "", nil
	case 3:
		return gate.Unknown, str(res, 1), nil
	case 4:
		return gate.NotReady, "", nil
	}
	return 0, "", fmt.Errorf("one-win hold of %s in activity %d: unexpected answer %v", userID, activityID, res)
}

// gated is the scripts' "1" when a rebuild waits for the hot quota's marker.
func (w *Wins) gated() string {
	if w.hot != nil {
		return "1"
	}
	return "0"
}

// rebuiltScript records a rebuild read under the stamp ARGV[1] (an empty one is not
// checked): the known-member of the activity ARGV[3] and, when ARGV[4] is "1", the win;
// it renews the set's TTL (ARGV[2] ms). It returns 0, writing nothing, when the stamp no
// longer stands (a loss or a failover since: ow_stamp differs or is false, fenced). Fenced,
// it drops the activity's known-members of other stamps. KEYS are the set, the marker and
// the marker's fence; ARGV[5] is "1" with a hot quota.
var rebuiltScript = newOWScript(`
local stamp = ow_stamp(ARGV[5] == '1', KEYS[2], KEYS[3])
if ARGV[1] ~= '' and stamp ~= ARGV[1] or OW_FENCE and not stamp then
  return 0
end
local known = 'k' .. ARGV[3]
if OW_FENCE then
  local old = known .. '|'
  known = old .. stamp
  for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    if m ~= known and string.sub(m, 1, #old) == old then
      redis.call('SREM', KEYS[1], m)
    end
  end
end
if ARGV[4] == '1' then
  redis.call('SADD', KEYS[1], known, ARGV[3])
else
  redis.call('SADD', KEYS[1], known)
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// Rebuilt implements gate.Wins.
func (w *Wins) Rebuilt(ctx context.Context, userID string, activityID int64, epoch string, won bool) error {
	wonArg := "0"
	if won {
		wonArg = "1"
	}
	n, err := rebuiltScript.run(ctx, w.client, w.fence, []string{w.SetKey(userID), w.markerKey(userID), w.fenceKey(userID)},
		epoch, w.ttl.Milliseconds(), strconv.FormatInt(activityID, 10), wonArg, w.gated()).Int()
	if err != nil {
		return fmt.Errorf("rebuild one-win of %s in activity %d: %w", userID, activityID, err)
	}
	if n == 0 {
		return fmt.Errorf("rebuild one-win of %s in activity %d: hot state lost or fenced while the award records were read: %w",
			userID, activityID, gate.ErrRebuilding)
	}
	return nil
}

// Note implements gate.Wins.
func (w *Wins) Note(ctx context.Context, userID string, activityID int64) error {
	key := w.SetKey(userID)
	_, err := w.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.SAdd(ctx, key, strconv.FormatInt(activityID, 10))
		p.PExpire(ctx, key, w.ttl)
		return nil
	})
	if err != nil {
		return fmt.Errorf("note one win of %s in activity %d: %w", userID, activityID, err)
	}
	return nil
}

// Release implements gate.Wins.
func (w *Wins) Release(ctx context.Context, userID string, activityID int64, token string) error {
	if err := releaseScript.Run(ctx, w.client, []string{w.holdKey(userID, activityID)}, token).Err(); err != nil {
		return fmt.Errorf("release one-win hold of %s in activity %d: %w", userID, activityID, err)
	}
	return nil
}

// Nonces are the signed draw paths spent, cluster-wide, and each user's path generation;
// they implement gate.Nonces. A user's keys share one hash tag, so that one script checks
// the generation and spends the nonce:
//
//	<prefix>:draw_path:{u:<userID>}          the user's generation (16 hex digits)
//	<prefix>:draw_path:{u:<userID>}:<nonce>  a spent path, until the path's expiry
//
// A loss of Redis loses the spent marks and the generation together (they are in one
// slot, and a flush takes everything), so a path issued before the loss names a
// generation that is gone or replaced, and is refused.
type Nonces struct {
	client goredis.UniversalClient
	prefix string
	now    func() time.Time
}

var _ gate.Nonces = (*Nonces)(nil)

// NewNonces returns Nonces with keys under <prefix>:draw_path:.
func NewNonces(client goredis.UniversalClient, prefix string) *Nonces {
	if prefix != "" {
		prefix += ":"
	}
	return &Nonces{client: client, prefix: prefix + "draw_path:", now: time.Now}
}

func (n *Nonces) genKey(userID string) string { return n.prefix + "{u:" + userID + "}" }

// generationMargin is how much longer than the last path issued under it a generation
// lives, for the clocks of the nodes and of Redis to differ.
const generationMargin = time.Minute

// generationScript returns the user's generation, setting it to ARGV[1] when there is
// none, and makes it live at least ARGV[2] ms more. KEYS is the generation.
var generationScript = goredis.NewScript(`
local g = redis.call('GET', KEYS[1])
if not g then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return g
`)

// Generation implements gate.Nonces.
func (n *Nonces) Generation(ctx context.Context, userID string, until time.Time) (uint64, error) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	ttl := until.Sub(n.now()) + generationMargin
	g, err := generationScript.Run(ctx, n.client, []string{n.genKey(userID)}, hex.EncodeToString(b), max(ttl.Milliseconds(), 1)).Text()
	if err != nil {
		return 0, fmt.Errorf("draw path generation of %s: %w", userID, err)
	}
	gen, err := strconv.ParseUint(g, 16, 64)
	if err != nil || len(g) != 16 {
		return 0, fmt.Errorf("draw path generation of %s is %q: %w", userID, g, err)
	}
	return gen, nil
}

// useScript spends a path of generation ARGV[1] until ARGV[2] (Unix ms): 2 when the
// generation is not the user's (gone with a loss, or expired), 1 when the nonce was spent
// before, 0 when it is spent now. KEYS are the generation and the nonce.
var useScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 2
end
if not redis.call('SET', KEYS[2], '1', 'NX', 'PXAT', ARGV[2]) then
  return 1
end
return 0
`)

// Use implements gate.Nonces.
func (n *Nonces) Use(ctx context.Context, userID string, gen uint64, nonce string, until time.Time) (gate.PathUse, error) {
	if !until.After(n.now()) {
		return gate.PathStale, nil
	}
	key := n.genKey(userID)
	r, err := useScript.Run(ctx, n.client, []string{key, key + ":" + nonce}, fmt.Sprintf("%016x", gen), until.UnixMilli()).Int()
	if err != nil {
		return 0, fmt.Errorf("spend draw path nonce: %w", err)
	}
	switch r {
	case 0:
		return gate.PathSpent, nil
	case 1:
		return gate.PathUsed, nil
	case 2:
		return gate.PathStale, nil
	}
	return 0, fmt.Errorf("spend draw path nonce: unexpected answer %d", r)
}
