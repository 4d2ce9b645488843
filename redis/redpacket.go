package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/redpacket"
)

// rpKeep is how long a packet's keys outlive its expiry, so that late grabbers still get
// redpacket.ErrClosed or their earlier item, and the refund job finds the remainder.
const rpKeep = 24 * time.Hour

// Status codes of the red packet scripts, first element of their reply.
const (
	rpGranted     = 1
	rpAgain       = 2
	rpClosedNow   = 3
	rpOK          = 0
	rpMissing     = -1
	rpClosed      = -2
	rpNotEligible = -3
	rpEmpty       = -4
)

// loadScript puts a packet into Redis unless a live copy is there.
//
// KEYS are items, grabs, meta, eligible and fence. ARGV[1] is the expiry of the keys and ARGV[2]
// the packet's expiry, both Unix ms; ARGV[3] is "1" for a restricted packet; ARGV[4] and
// ARGV[5] count the items and the grabs; then come the items ("index:cents"), the grabs
// (user, "index:cents:grabUnixMs" pairs, or "index:cents" when the time is not known) and
// the eligible users.
//
// A packet whose meta is present is kept when it is closed, or open with its counts adding
// up (items left + grabs = total): replacing live state from durable records could put
// back an item granted a moment ago and not yet recorded. Anything else — no meta, or an
// open packet that lost its items or grabs list — is deleted and written anew. So is an
// open packet whose fence is not this server's replication id (see fence.go): after a
// failover its counts may add up and still lack grabs that were answered, so only the
// durable records (the caller's) can be trusted, and the fence is set anew with them. It
// returns 1 when it wrote the packet and 0 when it kept it.
//
// The lists go in by chunks of 1000 arguments, as unpack is bounded by Lua's C stack
// (8000 slots in Redis); 1000 is even, so a chunk never splits a user from their item.
// The total is written with %d: Lua 5.1 prints large numbers in exponent form.
var loadScript = newFencedScript(`
local meta = redis.call('HMGET', KEYS[3], 'state', 'total')
if meta[1] == 'closed' then
  return 0
end
if meta[1] == 'open' and not bm_fenced(KEYS[5]) and tonumber(meta[2]) ==
    redis.call('LLEN', KEYS[1]) + redis.call('HLEN', KEYS[2]) then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
local ni, ng = tonumber(ARGV[4]), tonumber(ARGV[5])
local function put(cmd, key, from, to)
  for i = from, to, 1000 do
    redis.call(cmd, key, unpack(ARGV, i, math.min(i + 999, to)))
  end
end
put('RPUSH', KEYS[1], 6, 5 + ni)
put('HSET', KEYS[2], 6 + ni, 5 + ni + 2 * ng)
put('SADD', KEYS[4], 6 + ni + 2 * ng, #ARGV)
redis.call('HSET', KEYS[3], 'state', 'open', 'expire_ms', ARGV[2], 'total', string.format('%d', ni + ng))
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[3], 'eligible', '1')
end
for i = 1, 4 do
  redis.call('PEXPIREAT', KEYS[i], ARGV[1])
end
bm_fence(KEYS[5], ARGV[1])
return 1
`)

// grabScript gives one user one item of a packet, once.
//
// KEYS are items, grabs, meta, eligible and fence; ARGV[1] is the user and ARGV[2] the caller's
// now in Unix ms, which the grab keeps as its time ("index:cents:grabUnixMs" in the grabs
// hash). The reply is {status} or {status, item}:
//
//	-1 no meta, or an open packet whose items or grabs were lost (rebuild it)
//	 2 the user grabbed before; item is that grab — even if the packet has since closed
//	-2 closed or expired
//	-3 restricted and the user is not eligible
//	-4 no item left
//	 1 granted: item was popped and recorded under the user
//
// or the error reply FENCED (ErrFenced) when the packet's fence is not this server's
// replication id: it took nothing, and the packet is rebuilt as a lost one. The fence is
// checked only before the write: the answers before it (again, closed, not eligible,
// empty) hold on a rolled-back copy too, since it only lacks the newest grabs and a close.
//
// The count check (items left + grabs = total) costs two O(1) reads; without it a lost
// grabs hash would let every earlier grabber grab again. The grabs hash is created by the
// first grab after a Load without grabs, so it then takes the meta's expiry. PTTL is
// written with %d: Lua 5.1 prints large numbers in exponent form.
var grabScript = newFencedScript(`
local meta = redis.call('HMGET', KEYS[3], 'state', 'expire_ms', 'eligible', 'total')
if not meta[1] then
  return {-1}
end
local got = redis.call('HGET', KEYS[2], ARGV[1])
if got then
  return {2, got}
end
local expire, now = tonumber(meta[2]), tonumber(ARGV[2])
if not expire then
  return redis.error_reply('ERR red packet expire_ms is not a number')
end
if meta[1] ~= 'open' or now >= expire then
  return {-2}
end
if meta[3] == '1' and redis.call('SISMEMBER', KEYS[4], ARGV[1]) == 0 then
  return {-3}
end
if tonumber(meta[4]) ~= redis.call('LLEN', KEYS[1]) + redis.call('HLEN', KEYS[2]) then
  return {-1}
end
if bm_fenced(KEYS[5]) then
  return BM_FENCED
end
local item = redis.call('LPOP', KEYS[1])
if not item then
  return {-4}
end
redis.call('HSET', KEYS[2], ARGV[1], item .. ':' .. ARGV[2])
if redis.call('PTTL', KEYS[2]) == -1 then
  local ttl = redis.call('PTTL', KEYS[3])
  if ttl > 0 then
    redis.call('PEXPIRE', KEYS[2], string.format('%d', ttl))
  end
end
return {1, item}
`)

// closeScript closes a packet and takes its remaining items out.
//
// KEYS are items, grabs, meta and fence. The reply is {-1} when the meta is missing or an
// open packet's counts do not add up (the refund would be wrong: rebuild first), {0} when
// it was already closed, the error FENCED when its fence is not this server's replication
// id (its remainder may be stale), and {3, items...} when this call closed it.
var closeScript = newFencedScript(`
local meta = redis.call('HMGET', KEYS[3], 'state', 'total')
if not meta[1] then
  return {-1}
end
if meta[1] ~= 'open' then
  return {0}
end
if tonumber(meta[2]) ~= redis.call('LLEN', KEYS[1]) + redis.call('HLEN', KEYS[2]) then
  return {-1}
end
if bm_fenced(KEYS[4]) then
  return BM_FENCED
end
local items = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[3], 'state', 'closed')
table.insert(items, 1, 3)
return items
`)

// grabsScript reads a packet's grabs, or {-1} when its meta is missing, so that "no one
// grabbed" is not confused with "not in cache".
var grabsScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 0 then
  return {-1}
end
local g = redis.call('HGETALL', KEYS[1])
table.insert(g, 1, 0)
return g
`)

// remainingScript counts a packet's items left, or returns -1 when its meta is missing.
var remainingScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 0 then
  return -1
end
return redis.call('LLEN', KEYS[1])
`)

// RedPackets is the hot state of red packets in Redis: the pre-split items not yet
// grabbed, who grabbed which, and whether the packet is open. A grab and a close are one Lua
// script each, so an item is granted at most once and a refund is exactly the remainder.
// It implements redpacket.Hot, in the domain's items, grabs and errors.
//
// All keys of a packet share the hash tag {<packetID>}, so every script runs on one
// Cluster slot:
//
//	<prefix>:rp:{<id>}:items     list of "index:cents" not yet grabbed
//	<prefix>:rp:{<id>}:grabs     hash user → "index:cents:grabUnixMs" ("index:cents" if its time is unknown)
//	<prefix>:rp:{<id>}:meta      hash state (open|closed), expire_ms, total, eligible ("1" if restricted)
//	<prefix>:rp:{<id>}:eligible  set of users who may grab (restricted packets only)
//	<prefix>:rp:{<id>}:fence     replication id of the server that built the packet (Fence)
//	<prefix>:rp:{<id>}:wait      a marker a repeated grab writes so that WAIT covers it (WaitReplicas)
//
// Redis must not evict these keys (maxmemory-policy noeviction, or room enough): a lost
// list is detected by the total count and reported as redpacket.ErrUnavailable, but a lost
// eligible set turns every grabber away.
//
// The grabs not yet known to be credited, the green channel's list, live apart from the
// packets under the user's hash tag:
//
//	<prefix>:rp:pending:{<user>}  hash packet → "index:cents:grabUnixMs"
type RedPackets struct {
	client goredis.Cmdable
	prefix string
	fence  bool
	wait   ReplicaWait
	memo   *rpMemos // EmptyMemo; nil when off
}

var _ redpacket.Hot = (*RedPackets)(nil)

// rpItem is one pre-split share as the scripts store it ("index:cents"): its position in
// the packet and its amount in cents. The grabs hash keeps a grabbed one with its grab
// time ("index:cents:grabUnixMs").
type rpItem struct {
	Index int
	Cents int64
}

// grabResult is what a grab got.
type grabResult struct {
	Item rpItem
	// Again means the user had already grabbed; Item is that earlier grab, not a new one.
	Again bool
}

// NewRedPackets returns RedPackets on client with keys under prefix (which must not
// contain braces, or every packet would hash to the prefix's slot). client may be an
// auto-pipeliner, so that the scripts of concurrent grabs share round trips.
func NewRedPackets(client goredis.Cmdable, prefix string) *RedPackets {
	if prefix != "" {
		prefix += ":"
	}
	return &RedPackets{client: client, prefix: prefix}
}

// Fence turns replication-id fencing of the writing scripts (grab, close, load) on or off,
// and returns r. It must be on with Redis or Redis Cluster, whose failover can roll a
// packet back (see fence.go), and off with the embedded server, which has no replication
// and no INFO replication. Turning it on over packets written without it costs each of
// them one rebuild.
//
// The reads (grabs, remaining) and the green channel's pending lists are not fenced: a
// rolled-back packet only lacks its newest grabs, all of them already durable, and a
// rolled-back pending list only lacks or regains entries whose credit is idempotent.
func (r *RedPackets) Fence(on bool) *RedPackets {
	r.fence = on
	return r
}

// WaitReplicas makes each grab wait for w.Replicas replicas to acknowledge it (see
// ReplicaWait), and returns r. A grab that took an item but was not acknowledged answers
// an error wrapping redpacket.ErrUnavailable, redpacket.ErrUnconfirmed and
// ErrUnreplicated; a grab found again (the user's earlier grab, which the caller
// publishes once more) is confirmed the same way first. Grabs then go through w.Client
// rather than the auto-pipeliner NewRedPackets may have been given. Load and close do not
// wait: a load lost on a cut-off master is rebuilt again on the promoted replica (fenced),
// and a close answers no grant.
func (r *RedPackets) WaitReplicas(w ReplicaWait) *RedPackets {
	r.wait = w
	return r
}

// Keys returns the packet's keys in the order the scripts take them: items, grabs, meta,
// eligible, fence.
func (r *RedPackets) Keys(packetID string) []string {
	base := r.prefix + "rp:{" + packetID + "}:"
	return []string{base + "items", base + "grabs", base + "meta", base + "eligible", base + "fence"}
}

// waitKey is the packet's marker that a repeated grab writes to be confirmed (see
// ReplicaWait.cover); it expires by itself.
func (r *RedPackets) waitKey(packetID string) string { return r.prefix + "rp:{" + packetID + "}:wait" }

// Load implements redpacket.Hot: items not yet grabbed go to the list, grabs to the hash.
func (r *RedPackets) Load(ctx context.Context, packetID string, items []redpacket.Item, grabs []redpacket.Grab, expireAt time.Time, eligible []string) error {
	left := make([]rpItem, 0, len(items))
	for _, it := range items {
		left = append(left, rpItem{Index: it.Index, Cents: int64(it.Amount)})
	}
	taken := make(map[string]rpItem, len(grabs))
	at := make(map[string]int64, len(grabs))
	for _, g := range grabs {
		taken[g.UserID] = rpItem{Index: g.Index, Cents: int64(g.Amount)}
		if !g.Time.IsZero() {
			at[g.UserID] = g.Time.UnixMilli()
		}
	}
	return r.loadAt(ctx, packetID, left, taken, at, expireAt, eligible)
}

// load puts a packet's remaining items, the grabs already made and its meta into Redis in
// one script, so no grab ever sees half a packet. It is both the first load and the
// rebuild after redpacket.ErrUnavailable: any partial state (no meta, or an open packet
// whose items or grabs were lost) is replaced. A packet already in Redis and consistent — loaded by
// another process first, or closed — is kept and load returns nil, because replacing it
// from durable records could put back an item granted but not yet recorded.
//
// grabs must hold every grab ever made (from durable records), or its items could be
// granted twice. A non-empty eligible restricts the packet to those users; empty means
// anyone, as redpacket.Packet.Eligible says. All keys expire 24 hours after expireAt; a
// caller does not rebuild a packet that expired long ago, it answers redpacket.ErrClosed
// from its records.
func (r *RedPackets) load(ctx context.Context, packetID string, items []rpItem, grabs map[string]rpItem, expireAt time.Time, eligible []string) error {
	return r.loadAt(ctx, packetID, items, grabs, nil, expireAt, eligible)
}

// loadAt is load with the grabs' times in Unix ms by user (a grab without one is kept
// without time).
func (r *RedPackets) loadAt(ctx context.Context, packetID string, items []rpItem, grabs map[string]rpItem, at map[string]int64, expireAt time.Time, eligible []string) error {
	if err := checkPacketID(packetID); err != nil {
		return fmt.Errorf("load red packet: %w", err)
	}
	if expireAt.UnixMilli() <= 0 {
		return fmt.Errorf("load red packet %s: no expiry", packetID)
	}
	restricted := "0"
	if len(eligible) > 0 {
		restricted = "1"
	}
	args := make([]any, 0, 5+len(items)+2*len(grabs)+len(eligible))
	args = append(args, expireAt.Add(rpKeep).UnixMilli(), expireAt.UnixMilli(), restricted, len(items), len(grabs))
	seen := make(map[int]bool, len(items)+len(grabs))
	add := func(it rpItem, at int64) error {
		if it.Index < 0 || it.Cents <= 0 {
			return fmt.Errorf("item %d of %d cents out of range", it.Index, it.Cents)
		}
		if seen[it.Index] {
			return fmt.Errorf("item %d given twice", it.Index)
		}
		seen[it.Index] = true
		args = append(args, formatRPGrab(it, at))
		return nil
	}
	for _, it := range items {
		if err := add(it, 0); err != nil {
			return fmt.Errorf("load red packet %s: %w", packetID, err)
		}
	}
	for user, it := range grabs {
		if user == "" {
			return fmt.Errorf("load red packet %s: grab without user", packetID)
		}
		args = append(args, user)
		if err := add(it, at[user]); err != nil {
			return fmt.Errorf("load red packet %s: grab of %s: %w", packetID, user, err)
		}
	}
	for _, user := range eligible {
		if user == "" {
			return fmt.Errorf("load red packet %s: empty eligible user", packetID)
		}
		args = append(args, user)
	}
	// A rebuild may free the items of grabs never made durable: drop the memo, and any
	// that a grab built from the state before it meanwhile.
	r.forgetMemo(packetID)
	defer r.forgetMemo(packetID)
	if err := loadScript.run(ctx, r.client, r.fence, r.Keys(packetID), args...).Err(); err != nil {
		return fmt.Errorf("load red packet %s: %w", packetID, err)
	}
	return nil
}

// Grab implements redpacket.Hot.
func (r *RedPackets) Grab(ctx context.Context, packetID, userID string, now time.Time) (redpacket.Item, bool, error) {
	res, err := r.grab(ctx, packetID, userID, now)
	if err != nil {
		return redpacket.Item{}, false, err
	}
	return redpacket.Item{Index: res.Item.Index, Amount: money.Cents(res.Item.Cents), UserID: userID}, res.Again, nil
}

// grab gives userID one item of the packet in one script. A user who grabbed before gets
// that item again with Again set, even after the packet closed or expired: it is their
// result. Otherwise it returns an error wrapping redpacket.ErrUnavailable,
// redpacket.ErrClosed (closed, or now at or past the expiry), redpacket.ErrNotEligible or
// redpacket.ErrEmpty, in that order; a fenced packet's error wraps both
// redpacket.ErrUnavailable and ErrFenced. With EmptyMemo, a packet this node found empty
// answers the last two from the memo, without Redis, until its expiry.
//
// now comes from the caller's injected clock rather than Redis TIME, so that one clock
// decides expiry across the domain and tests can pin it; app clocks are NTP-synced, and a
// few milliseconds at the deadline do not matter.
func (r *RedPackets) grab(ctx context.Context, packetID, userID string, now time.Time) (grabResult, error) {
	if err := checkPacketID(packetID); err != nil {
		return grabResult{}, fmt.Errorf("grab red packet: %w", err)
	}
	if userID == "" {
		return grabResult{}, fmt.Errorf("grab red packet %s: no user", packetID)
	}
	if now.UnixMilli() <= 0 {
		return grabResult{}, fmt.Errorf("grab red packet %s: no time", packetID)
	}
	switch r.memoAnswer(packetID, userID, now.UnixMilli()) {
	case rpEmpty:
		return grabResult{}, fmt.Errorf("grab red packet %s for %s: %w", packetID, userID, redpacket.ErrEmpty)
	case rpNotEligible:
		return grabResult{}, fmt.Errorf("grab red packet %s for %s: %w", packetID, userID, redpacket.ErrNotEligible)
	}
	reply, err := grabScript.runWaiting(ctx, r.client, r.fence, r.wait, r.Keys(packetID), userID, now.UnixMilli()).Slice()
	if err = fenceErr(err); errors.Is(err, ErrFenced) {
		return grabResult{}, fmt.Errorf("grab red packet %s for %s: %w: %w", packetID, userID, redpacket.ErrUnavailable, err)
	}
	if errors.Is(err, ErrUnreplicated) {
		return grabResult{}, fmt.Errorf("grab red packet %s for %s: %w: %w: %w", packetID, userID, redpacket.ErrUnavailable, redpacket.ErrUnconfirmed, err)
	}
	if err != nil {
		return grabResult{}, fmt.Errorf("grab red packet %s for %s: %w", packetID, userID, err)
	}
	status, rest, err := splitReply(reply)
	if err != nil {
		return grabResult{}, fmt.Errorf("grab red packet %s for %s: %w", packetID, userID, err)
	}
	switch status {
	case rpGranted, rpAgain:
		if len(rest) != 1 {
			return grabResult{}, fmt.Errorf("grab red packet %s for %s: reply %v", packetID, userID, reply)
		}
		it, _, err := parseRPGrab(rest[0])
		if err != nil {
			return grabResult{}, fmt.Errorf("grab red packet %s for %s: %w", packetID, userID, err)
		}
		if status == rpAgain && r.wait.On() {
			// The earlier grab may be one that was refused unconfirmed: the answer
			// publishes it, so the replicas must have it first.
			if err := r.wait.cover(ctx, r.waitKey(packetID)); err != nil {
				return grabResult{}, fmt.Errorf("grab red packet %s for %s (again): %w: %w: %w", packetID, userID, redpacket.ErrUnavailable, redpacket.ErrUnconfirmed, err)
			}
		}
		return grabResult{Item: it, Again: status == rpAgain}, nil
	case rpMissing:
		err = redpacket.ErrUnavailable
	case rpClosed:
		err = redpacket.ErrClosed
	case rpNotEligible:
		err = redpacket.ErrNotEligible
	case rpEmpty:
		err = redpacket.ErrEmpty
		r.noteEmpty(ctx, packetID, now.UnixMilli())
	default:
		err = fmt.Errorf("unexpected script status %d", status)
	}
	return grabResult{}, fmt.Errorf("grab red packet %s for %s: %w", packetID, userID, err)
}

// Close implements redpacket.Hot: it closes the packet once; the refund is counted from
// the database.
func (r *RedPackets) Close(ctx context.Context, packetID string) error {
	_, _, err := r.closePacket(ctx, packetID)
	return err
}

// closePacket marks the packet closed and takes out the items still in it, in one script,
// so that the remainder is exact and no grab can slip in between. closedNow reports
// whether this call closed it: a second call returns no items and false. It returns an
// error wrapping redpacket.ErrUnavailable when the packet is not in Redis, lost part of
// its state or is fenced (wrapping ErrFenced too); the caller rebuilds it first. Expiry does not close a packet: the refund job
// calls Close after it.
func (r *RedPackets) closePacket(ctx context.Context, packetID string) (remaining []rpItem, closedNow bool, err error) {
	if err := checkPacketID(packetID); err != nil {
		return nil, false, fmt.Errorf("close red packet: %w", err)
	}
	r.forgetMemo(packetID)
	defer r.forgetMemo(packetID) // and any memo a grab built meanwhile
	keys := r.Keys(packetID)
	reply, err := closeScript.run(ctx, r.client, r.fence, []string{keys[0], keys[1], keys[2], keys[4]}).Slice()
	if err = fenceErr(err); errors.Is(err, ErrFenced) {
		return nil, false, fmt.Errorf("close red packet %s: %w: %w", packetID, redpacket.ErrUnavailable, err)
	}
	if err != nil {
		return nil, false, fmt.Errorf("close red packet %s: %w", packetID, err)
	}
	status, rest, err := splitReply(reply)
	if err != nil {
		return nil, false, fmt.Errorf("close red packet %s: %w", packetID, err)
	}
	switch status {
	case rpOK:
		return nil, false, nil
	case rpMissing:
		return nil, false, fmt.Errorf("close red packet %s: %w", packetID, redpacket.ErrUnavailable)
	case rpClosedNow:
	default:
		return nil, false, fmt.Errorf("close red packet %s: unexpected script status %d", packetID, status)
	}
	remaining = make([]rpItem, 0, len(rest))
	for _, v := range rest {
		it, err := parseRPItem(v)
		if err != nil {
			return nil, false, fmt.Errorf("close red packet %s: %w", packetID, err)
		}
		remaining = append(remaining, it)
	}
	return remaining, true, nil
}

// Grabs implements redpacket.Hot: each grab with the time it was made (zero for a grab
// loaded without one).
func (r *RedPackets) Grabs(ctx context.Context, packetID string) ([]redpacket.Grab, error) {
	m, at, err := r.grabsAt(ctx, packetID)
	if err != nil {
		return nil, err
	}
	grabs := make([]redpacket.Grab, 0, len(m))
	for user, it := range m {
		g := redpacket.Grab{PacketID: packetID, UserID: user, Index: it.Index, Amount: money.Cents(it.Cents)}
		if ms, ok := at[user]; ok {
			g.Time = time.UnixMilli(ms)
		}
		grabs = append(grabs, g)
	}
	return grabs, nil
}

// grabs returns who grabbed which item, for detail pages and for checking the hot state
// against the durable records. It returns an error wrapping redpacket.ErrUnavailable when
// the packet is not in Redis, so that a lost cache is not read as "nobody grabbed".
func (r *RedPackets) grabs(ctx context.Context, packetID string) (map[string]rpItem, error) {
	grabs, _, err := r.grabsAt(ctx, packetID)
	return grabs, err
}

// grabsAt is grabs with the grabs' times in Unix ms by user (a grab loaded without one has
// none).
func (r *RedPackets) grabsAt(ctx context.Context, packetID string) (map[string]rpItem, map[string]int64, error) {
	if err := checkPacketID(packetID); err != nil {
		return nil, nil, fmt.Errorf("read red packet grabs: %w", err)
	}
	keys := r.Keys(packetID)
	reply, err := grabsScript.Run(ctx, r.client, []string{keys[1], keys[2]}).Slice()
	if err != nil {
		return nil, nil, fmt.Errorf("read grabs of red packet %s: %w", packetID, err)
	}
	status, rest, err := splitReply(reply)
	switch {
	case err != nil:
		return nil, nil, fmt.Errorf("read grabs of red packet %s: %w", packetID, err)
	case status == rpMissing:
		return nil, nil, fmt.Errorf("read grabs of red packet %s: %w", packetID, redpacket.ErrUnavailable)
	case status != rpOK || len(rest)%2 != 0:
		return nil, nil, fmt.Errorf("read grabs of red packet %s: reply of %d elements, status %d", packetID, len(reply), status)
	}
	grabs := make(map[string]rpItem, len(rest)/2)
	at := make(map[string]int64, len(rest)/2)
	for i := 0; i < len(rest); i += 2 {
		user, ok := rest[i].(string)
		if !ok {
			return nil, nil, fmt.Errorf("read grabs of red packet %s: user of type %T", packetID, rest[i])
		}
		it, ms, err := parseRPGrab(rest[i+1])
		if err != nil {
			return nil, nil, fmt.Errorf("read grabs of red packet %s: %w", packetID, err)
		}
		grabs[user] = it
		if ms > 0 {
			at[user] = ms
		}
	}
	return grabs, at, nil
}

// pendingKey is the user's grabs not yet known to be credited: packetId →
// "index:cents:grabUnixMs". It lives under the user's hash tag, apart from the packets.
func (r *RedPackets) pendingKey(userID string) string {
	return r.prefix + "rp:pending:{" + userID + "}"
}

// pendingTTL bounds how long a pending entry outlives its credit; the consumer removes it
// once the grab is applied, the TTL only cleans up after a lost removal.
const pendingTTL = 8 * 24 * time.Hour

// addPendingScript sets a pending grab and renews the key's TTL in one command.
var addPendingScript = goredis.NewScript(`
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

// AddPending implements redpacket.Hot: it notes g under its user, for the green channel.
func (r *RedPackets) AddPending(ctx context.Context, g redpacket.Grab) error {
	v := formatRPItem(rpItem{Index: g.Index, Cents: int64(g.Amount)}) + ":" + strconv.FormatInt(g.Time.UnixMilli(), 10)
	err := addPendingScript.Run(ctx, r.client, []string{r.pendingKey(g.UserID)}, g.PacketID, v, pendingTTL.Milliseconds()).Err()
	if err != nil {
		return fmt.Errorf("note pending grab %s: %w", g.MsgID(), err)
	}
	return nil
}

// Pending implements redpacket.Hot: the user's grabs not yet known to be credited.
func (r *RedPackets) Pending(ctx context.Context, userID string) ([]redpacket.Grab, error) {
	m, err := r.client.HGetAll(ctx, r.pendingKey(userID)).Result()
	if err != nil {
		return nil, fmt.Errorf("pending grabs of %s: %w", userID, err)
	}
	grabs := make([]redpacket.Grab, 0, len(m))
	for packetID, v := range m {
		cut := strings.LastIndexByte(v, ':')
		if cut < 0 {
			return nil, fmt.Errorf("pending grab %s of %s: bad value %q", packetID, userID, v)
		}
		at, err := strconv.ParseInt(v[cut+1:], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("pending grab %s of %s: bad value %q", packetID, userID, v)
		}
		it, err := parseRPItem(v[:cut])
		if err != nil {
			return nil, fmt.Errorf("pending grab %s of %s: %w", packetID, userID, err)
		}
		grabs = append(grabs, redpacket.Grab{PacketID: packetID, UserID: userID, Index: it.Index,
			Amount: money.Cents(it.Cents), Time: time.UnixMilli(at)})
	}
	return grabs, nil
}

// DonePending implements redpacket.Hot: it forgets grabs that are credited, one
// pipelined round trip for all their users.
func (r *RedPackets) DonePending(ctx context.Context, grabs []redpacket.Grab) error {
	if len(grabs) == 0 {
		return nil
	}
	_, err := r.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, g := range grabs {
			p.HDel(ctx, r.pendingKey(g.UserID), g.PacketID)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("forget %d credited grabs: %w", len(grabs), err)
	}
	return nil
}

// Remaining returns how many items are left to grab (0 once closed), or an error wrapping
// redpacket.ErrUnavailable when the packet is not in Redis.
func (r *RedPackets) Remaining(ctx context.Context, packetID string) (int64, error) {
	if err := checkPacketID(packetID); err != nil {
		return 0, fmt.Errorf("read red packet remaining: %w", err)
	}
	keys := r.Keys(packetID)
	n, err := remainingScript.Run(ctx, r.client, []string{keys[0], keys[2]}).Int64()
	switch {
	case err != nil:
		return 0, fmt.Errorf("read remaining of red packet %s: %w", packetID, err)
	case n < 0:
		return 0, fmt.Errorf("read remaining of red packet %s: %w", packetID, redpacket.ErrUnavailable)
	}
	return n, nil
}

// checkPacketID refuses ids that would break the hash tag: an empty tag hashes each key
// on its own (CROSSSLOT), and braces would end or open it early.
func checkPacketID(id string) error {
	if id == "" || strings.ContainsAny(id, "{}") {
		return fmt.Errorf("bad packet id %q", id)
	}
	return nil
}

func formatRPItem(it rpItem) string {
	return strconv.Itoa(it.Index) + ":" + strconv.FormatInt(it.Cents, 10)
}

// formatRPGrab writes a grabs hash value: "index:cents:grabUnixMs", or "index:cents" when
// at is 0 (no time known, or an item not grabbed).
func formatRPGrab(it rpItem, at int64) string {
	if at <= 0 {
		return formatRPItem(it)
	}
	return formatRPItem(it) + ":" + strconv.FormatInt(at, 10)
}

// parseRPGrab reads a grabs hash value: "index:cents:grabUnixMs", or "index:cents" (a
// grab loaded without its time, or kept before grab times were), whose at is 0.
func parseRPGrab(v any) (it rpItem, at int64, err error) {
	s, ok := v.(string)
	if !ok {
		return rpItem{}, 0, fmt.Errorf("grab of type %T", v)
	}
	if i := strings.IndexByte(s, ':'); i >= 0 {
		if j := strings.IndexByte(s[i+1:], ':'); j >= 0 {
			cut := i + 1 + j
			if at, err = strconv.ParseInt(s[cut+1:], 10, 64); err != nil || at <= 0 {
				return rpItem{}, 0, fmt.Errorf("bad grab %q: time", s)
			}
			s = s[:cut]
		}
	}
	it, err = parseRPItem(s)
	return it, at, err
}

func parseRPItem(v any) (rpItem, error) {
	s, ok := v.(string)
	if !ok {
		return rpItem{}, fmt.Errorf("item of type %T", v)
	}
	i, c, ok := strings.Cut(s, ":")
	if !ok {
		return rpItem{}, fmt.Errorf("bad item %q", s)
	}
	index, err := strconv.Atoi(i)
	if err != nil {
		return rpItem{}, fmt.Errorf("bad item %q: %w", s, err)
	}
	cents, err := strconv.ParseInt(c, 10, 64)
	if err != nil {
		return rpItem{}, fmt.Errorf("bad item %q: %w", s, err)
	}
	return rpItem{Index: index, Cents: cents}, nil
}

// splitReply splits a script reply into its leading status code and the rest.
func splitReply(reply []any) (int64, []any, error) {
	if len(reply) == 0 {
		return 0, nil, errors.New("empty script reply")
	}
	status, ok := reply[0].(int64)
	if !ok {
		return 0, nil, fmt.Errorf("script status of type %T", reply[0])
	}
	return status, reply[1:], nil
}
