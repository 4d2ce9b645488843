package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	goredis "github.com/redis/go-redis/v9"
)

// rpMemoLife bounds how long a memo answers, from the grab that found the packet empty:
// the bound of a change it cannot see (another node's rebuild freeing items), as a
// sold-out flag's SoldOutTTL is for a top-up.
const rpMemoLife = 5 * time.Second

// rpMemoMaxUsers bounds the grabbers plus eligible users a memo may hold: a packet with
// more is left to the script, so one memo stays a few megabytes at most.
const rpMemoMaxUsers = 200_000

// rpMemo is what a node knows of a packet found empty: enough to give every later grab the
// script's answer without asking Redis, until the packet's expiry or for rpMemoLife,
// whichever ends first.
//
// It holds because emptiness is final: no grab puts an item back into an open packet's
// list, a close takes the remainder out, and a failover that rolls a copy back to empty
// means it was empty then (with the replica wait on, the memo is kept only once the
// replicas have the emptiness). No grab can follow emptiness, so the grabbers of an empty
// packet are final too. The one exception is a rebuild of a lost or fenced packet from
// the database: it frees the items of grabs that were answered with an error and never
// made durable. The node that rebuilds drops its memo (Load); another node's memo keeps
// answering empty for at most rpMemoLife, after which its grabs reach the freed items.
type rpMemo struct {
	until      int64 // ms: the packet's expiry (the script then answers closed), or sooner: rpMemoLife
	grabbers   map[string]struct{}
	restricted bool
	eligible   map[string]struct{}
}

// rpMemos is the node-local memo of empty packets (EmptyMemo).
type rpMemos struct {
	cache    *lru.Cache[string, *rpMemo]
	building sync.Map // packet id → struct{}: one build in flight per packet
	builds   atomic.Int64
}

// EmptyMemo keeps, on this node, a memo of up to size packets found empty (LRU), and
// returns r; size ≤ 0 turns it off (the default). Once a grab answers empty, one pipelined
// read takes the packet's grabbers, expiry and eligible users, and for rpMemoLife (5 s;
// less when the packet expires sooner) every grab of a user who is not a grabber answers
// redpacket.ErrNotEligible (a restricted packet's outsider) or redpacket.ErrEmpty here,
// exactly as the script would, without a Redis round trip; then the next empty answer
// builds it again. A grabber still goes to Redis for their item (Again, with its replica
// wait). At the expiry the memo is dropped and the script answers closed.
//
// What the memo cannot see lasts at most rpMemoLife: a close on another node before the
// expiry (only the refund job closes packets today, after it), or a rebuild on another
// node that frees items (see rpMemo). Close and Load on this node drop it at once. With
// the replica wait on, a memo is kept only once the replicas acknowledge the emptiness.
func (r *RedPackets) EmptyMemo(size int) *RedPackets {
	if size <= 0 {
		r.memo = nil
		return r
	}
	cache, _ := lru.New[string, *rpMemo](size) // size > 0 never fails
	r.memo = &rpMemos{cache: cache}
	return r
}

// memoAnswer returns the status the memo gives a grab of userID at nowMs: rpEmpty or
// rpNotEligible, or 0 when the grab must go to Redis (no memo, a grabber, or expired —
// the memo is then dropped).
func (r *RedPackets) memoAnswer(packetID, userID string, nowMs int64) int64 {
	if r.memo == nil {
		return 0
	}
	m, ok := r.memo.cache.Get(packetID)
	if !ok {
		return 0
	}
	if nowMs >= m.until {
		r.memo.cache.Remove(packetID)
		return 0
	}
	if _, grabbed := m.grabbers[userID]; grabbed {
		return 0
	}
	if m.restricted {
		if _, ok := m.eligible[userID]; !ok {
			return rpNotEligible
		}
	}
	return rpEmpty
}

// noteEmpty builds the memo of a packet a grab at nowMs just found empty, unless one is
// there or another grab of this node is building it. A failed or doubtful read leaves no
// memo: the next empty answer tries again.
func (r *RedPackets) noteEmpty(ctx context.Context, packetID string, nowMs int64) {
	if r.memo == nil || r.memo.cache.Contains(packetID) {
		return
	}
	if _, busy := r.memo.building.LoadOrStore(packetID, struct{}{}); busy {
		return
	}
	defer r.memo.building.Delete(packetID)
	// A build that finished between the check above and LoadOrStore stored its memo
	// before leaving the map.
	if r.memo.cache.Contains(packetID) {
		return
	}
	r.memo.builds.Add(1)
	m, err := r.readMemo(ctx, packetID, nowMs)
	if err != nil || m == nil {
		return
	}
	// With the replica wait on, the emptiness must be on the replicas too, or a failover
	// could promote a copy that still has items the memo would hide.
	if r.wait.On() && r.wait.cover(ctx, r.waitKey(packetID)) != nil {
		return
	}
	r.memo.cache.Add(packetID, m)
}

// readMemo reads an empty packet's memo in one MULTI/EXEC round trip (its keys share a
// slot), or nil when the packet is not open, expired at nowMs, not empty, its counts do
// not add up, or it has too many users to keep.
func (r *RedPackets) readMemo(ctx context.Context, packetID string, nowMs int64) (*rpMemo, error) {
	keys := r.Keys(packetID)
	var (
		left     *goredis.IntCmd
		grabbers *goredis.StringSliceCmd
		meta     *goredis.SliceCmd
		eligible *goredis.StringSliceCmd
	)
	_, err := r.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		left = p.LLen(ctx, keys[0])
		grabbers = p.HKeys(ctx, keys[1])
		meta = p.HMGet(ctx, keys[2], "state", "expire_ms", "eligible", "total")
		eligible = p.SMembers(ctx, keys[3])
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read empty red packet %s: %w", packetID, err)
	}
	vals := meta.Val()
	str := func(i int) string {
		s, _ := vals[i].(string)
		return s
	}
	if len(vals) != 4 || str(0) != "open" {
		return nil, nil
	}
	until, err1 := strconv.ParseInt(str(1), 10, 64)
	total, err2 := strconv.ParseInt(str(3), 10, 64)
	if err := errors.Join(err1, err2); err != nil || nowMs >= until {
		return nil, nil
	}
	users := grabbers.Val()
	if left.Val() != 0 || int64(len(users)) != total || len(users)+len(eligible.Val()) > rpMemoMaxUsers {
		return nil, nil
	}
	m := &rpMemo{until: min(until, nowMs+rpMemoLife.Milliseconds()), grabbers: make(map[string]struct{}, len(users)), restricted: str(2) == "1"}
	for _, u := range users {
		m.grabbers[u] = struct{}{}
	}
	if m.restricted {
		m.eligible = make(map[string]struct{}, len(eligible.Val()))
		for _, u := range eligible.Val() {
			m.eligible[u] = struct{}{}
		}
	}
	return m, nil
}

// forgetMemo drops the packet's memo on this node (its state changed: closed here).
func (r *RedPackets) forgetMemo(packetID string) {
	if r.memo != nil {
		r.memo.cache.Remove(packetID)
	}
}
