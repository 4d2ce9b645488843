package redis

import (
	"context"
	"errors"
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
type Wins struct {
	client goredis.UniversalClient
	prefix string
	ttl    time.Duration
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

// SetKey returns the key of the user's set.
func (w *Wins) SetKey(userID string) string { return w.prefix + "{u:" + userID + "}" }

func (w *Wins) holdKey(userID string, activityID int64) string {
	return w.SetKey(userID) + ":hold:" + strconv.FormatInt(activityID, 10)
}

// holdScript checks the set and takes the hold. KEYS are the set and the hold; ARGV the
// activity, its known-marker, the token and the hold's TTL in milliseconds. It returns
// the gate.Hold.
var holdScript = goredis.NewScript(`
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
  return 1
end
if not redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[4]) then
  return 2
end
if redis.call('SISMEMBER', KEYS[1], ARGV[2]) == 0 then
  return 3
end
return 0
`)

// Hold implements gate.Wins.
func (w *Wins) Hold(ctx context.Context, userID string, activityID int64, token string, ttl time.Duration) (gate.Hold, error) {
	act := strconv.FormatInt(activityID, 10)
	n, err := holdScript.Run(ctx, w.client, []string{w.SetKey(userID), w.holdKey(userID, activityID)},
		act, "k"+act, token, max(ttl.Milliseconds(), 1)).Int()
	if err != nil {
		return 0, fmt.Errorf("one-win hold of %s in activity %d: %w", userID, activityID, err)
	}
	switch n {
	case 0:
		return gate.Held, nil
	case 1:
		return gate.Won, nil
	case 2:
		return gate.Busy, nil
	case 3:
		return gate.Unknown, nil
	}
	return 0, fmt.Errorf("one-win hold of %s in activity %d: unexpected answer %d", userID, activityID, n)
}

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
func (w *Wins) Rebuilt(ctx context.Context, userID string, activityID int64, won bool) error {
	act := strconv.FormatInt(activityID, 10)
	members := []any{"k" + act}
	if won {
		members = append(members, act)
	}
	if err := w.add(ctx, userID, members...); err != nil {
		return fmt.Errorf("rebuild one-win of %s in activity %d: %w", userID, activityID, err)
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

// Unnote implements gate.Wins.
func (w *Wins) Unnote(ctx context.Context, userID string, activityID int64) error {
	if err := w.client.SRem(ctx, w.SetKey(userID), strconv.FormatInt(activityID, 10)).Err(); err != nil {
		return fmt.Errorf("unnote one win of %s in activity %d: %w", userID, activityID, err)
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

// Nonces are the signed draw paths spent, cluster-wide; they implement gate.Nonces.
type Nonces struct {
	client goredis.UniversalClient
	prefix string
}

var _ gate.Nonces = (*Nonces)(nil)

// NewNonces returns Nonces with keys <prefix>:draw_path:{<nonce>}.
func NewNonces(client goredis.UniversalClient, prefix string) *Nonces {
	if prefix != "" {
		prefix += ":"
	}
	return &Nonces{client: client, prefix: prefix + "draw_path:"}
}

// Use implements gate.Nonces with SET NX until the path expires.
func (n *Nonces) Use(ctx context.Context, nonce string, until time.Time) (bool, error) {
	ttl := time.Until(until)
	if ttl <= 0 {
		return false, nil
	}
	err := n.client.SetArgs(ctx, n.prefix+"{"+nonce+"}", "1", goredis.SetArgs{Mode: "NX", ExpireAt: until}).Err()
	if errors.Is(err, goredis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("spend draw path nonce: %w", err)
	}
	return true, nil
}
