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
// and "k<activityID>" once it knows the activity: a set that does not know an activity
// (never asked, or lost with Redis: a flush, an eviction, its expiry) is rebuilt from the
// award records before it answers, so a lost set never reads as "has not won".
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

// markerKey is the key whose epoch a rebuild of the user's set is read under: the hot
// quota's marker of the user's slot, or the set itself (never read) without one.
func (w *Wins) markerKey(userID string) string {
	if w.hot == nil {
		return w.SetKey(userID)
	}
	return w.hot.markerKey(w.hot.userSlot(userID))
}

// SetKey returns the key of the user's set.
func (w *Wins) SetKey(userID string) string { return w.prefix + "{u:" + userID + "}" }

func (w *Wins) holdKey(userID string, activityID int64) string {
	return w.SetKey(userID) + ":hold:" + strconv.FormatInt(activityID, 10)
}

// holdScript checks the set and takes the hold. KEYS are the set, the hold and the
// marker; ARGV the activity, its known-marker, the token, the hold's TTL in milliseconds
// and "1" when a rebuild needs the marker. It returns {gate.Hold} or, for Unknown,
// {3, epoch}; NotReady (4) takes no hold.
var holdScript = goredis.NewScript(`
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
  return {1}
end
local known = redis.call('SISMEMBER', KEYS[1], ARGV[2]) == 1
local epoch = ''
if not known and ARGV[5] == '1' then
  epoch = redis.call('GET', KEYS[3])
  if not epoch then
    return {4}
  end
end
if not redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[4]) then
  return {2}
end
if not known then
  return {3, epoch}
end
return {0}
`)

// Hold implements gate.Wins.
func (w *Wins) Hold(ctx context.Context, userID string, activityID int64, token string, ttl time.Duration) (gate.Hold, string, error) {
	act := strconv.FormatInt(activityID, 10)
	gated := "0"
	if w.hot != nil {
		gated = "1"
	}
	res, err := holdScript.Run(ctx, w.client, []string{w.SetKey(userID), w.holdKey(userID, activityID), w.markerKey(userID)},
		act, "k"+act, token, max(ttl.Milliseconds(), 1), gated).Slice()
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

// rebuiltScript adds ARGV[3…] to the set and renews its TTL (ARGV[2] ms), if the marker
// still holds the epoch ARGV[1] (an empty epoch is not checked); 0 when it does not.
// KEYS are the set and the marker.
var rebuiltScript = goredis.NewScript(`
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('SADD', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// add puts members in the user's set and renews its TTL, in one transaction.
func (w *Wins) add(ctx context.Context, userID string, members ...any) error {
	key := w.SetKey(userID)
	_, err := w.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.SAdd(ctx, key, members...)
		p.PExpire(ctx, key, w.ttl)
		return nil
	})
	return err
}

// Rebuilt implements gate.Wins.
func (w *Wins) Rebuilt(ctx context.Context, userID string, activityID int64, epoch string, won bool) error {
	act := strconv.FormatInt(activityID, 10)
	args := []any{epoch, w.ttl.Milliseconds(), "k" + act}
	if won {
		args = append(args, act)
	}
	n, err := rebuiltScript.Run(ctx, w.client, []string{w.SetKey(userID), w.markerKey(userID)}, args...).Int()
	if err != nil {
		return fmt.Errorf("rebuild one-win of %s in activity %d: %w", userID, activityID, err)
	}
	if n == 0 {
		return fmt.Errorf("rebuild one-win of %s in activity %d: hot state lost while the award records were read: %w",
			userID, activityID, gate.ErrRebuilding)
	}
	return nil
}

// Note implements gate.Wins.
func (w *Wins) Note(ctx context.Context, userID string, activityID int64) error {
	if err := w.add(ctx, userID, strconv.FormatInt(activityID, 10)); err != nil {
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
