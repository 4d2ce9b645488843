package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/rain"
)

// rainKeep is how long a rain session's keys outlive its end, so that late taps still get
// Ended or their unacknowledged win, and the ledger job finds the pool.
const rainKeep = 24 * time.Hour

// Status codes of the rain scripts, first element of their reply. The grab script's codes
// are its own, mapped to rain.Status by Grab, so that the wire and the domain can change
// apart.
const (
	rainOK         = 0
	rainWon        = 1
	rainAgain      = 2
	rainMissing    = -1
	rainEnded      = -2
	rainNotStarted = -3
	rainCapped     = -4
	rainEmpty      = -5
	rainPaced      = -6
	rainClosed     = -7
)

// rainIntact is the prelude of every rain script but the pending ones: intact() reports
// whether the session's hot state is whole. KEYS are meta, pool, users, wins, unacked and
// sec (see Rain).
//
// The meta must be there and its counts must add up: the prizes left in the pool plus the
// issued count make the armed count (a lost pool fails this), one wins entry per issued
// prize (a lost wins hash fails this), and a users hash once anything was issued (a lost
// one would let every winner win their cap again). A key is lost whole (eviction, a stray
// DEL, FLUSHALL), never in part, so these O(1) reads are enough. A lost unacked hash is
// not detectable — it may be empty legitimately — and costs only the republish of a win
// whose event failed: its prize is back in the pool after the next rebuild, as it never
// reached rain_win. A lost sec hash only skews the per-second counters.
//
// The grab script passes quick = true and checks the pool by EXISTS instead of SCARD: a
// pool that is not there must be one that was emptied (issued = armed). As keys are lost
// whole, that tells the same; it matters for the embedded server, whose SCARD (like its
// SPOP) sorts the whole set, so that a tap that is answered Paced or Capped does not pay
// for it. Every other script counts the pool exactly.
//
// It returns the meta fields read (state, start_ms, end_ms, armed, issued, keep_ms,
// max_index) with issued and armed as numbers, or nil when the state is not whole.
const rainIntact = `
local function intact(quick)
  local m = redis.call('HMGET', KEYS[1], 'state', 'start_ms', 'end_ms', 'armed', 'issued', 'keep_ms', 'max_index')
  if not m[1] then
    return nil
  end
  local armed, issued = tonumber(m[4]), tonumber(m[5])
  if not armed or not issued then
    return nil
  end
  if quick then
    if issued ~= armed and redis.call('EXISTS', KEYS[2]) == 0 then
      return nil
    end
  elseif redis.call('SCARD', KEYS[2]) + issued ~= armed then
    return nil
  end
  if redis.call('HLEN', KEYS[4]) ~= issued then
    return nil
  end
  if issued > 0 and redis.call('EXISTS', KEYS[3]) == 0 then
    return nil
  end
  m[4], m[5] = armed, issued
  return m
end
`

// rainLoadScript puts a session's hot state in place unless a whole copy is there.
//
// KEYS are meta, pool, users, wins, unacked and sec. ARGV[1] is the keys' expiry, ARGV[2]
// and ARGV[3] the session's start and end, all Unix ms; ARGV[4] the highest prize index
// loaded (-1 for none); ARGV[5] to ARGV[8] count the pool's members, the wins, the users
// and the seconds; then come the members, the wins ("user:n", "member:grabUnixMs" pairs),
// the users (user, wins pairs) and the seconds (unix second, wins pairs).
//
// A whole copy (intact) is kept, whether open or closed: replacing live state from the
// durable records could put back a prize won a moment ago whose event is not yet applied.
// Except when it is fenced (KEYS[7], see fence.go): a whole copy built under another
// replication id may lack wins already answered (a failover rolled back an SPOP and its
// wins entry together, which still add up), and the caller's durable records, applied up
// to every event published, are the truth. Anything else is deleted and written anew,
// unacked hash included (the rebuild starts from what is durable), and the fence is set to
// this server's id. It returns 1 when it wrote the session and 0 when it kept it.
//
// The lists go in by chunks of 1000 arguments, as unpack is bounded by Lua's C stack; 1000
// is even, so a chunk never splits a pair. Counts are written with %d: Lua 5.1 prints
// large numbers in exponent form.
var rainLoadScript = newFencedScript(rainIntact + `
if intact() and not bm_fenced(KEYS[7]) then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
local np, nw, nu, ns = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local function put(cmd, key, from, to)
  for i = from, to, 1000 do
    redis.call(cmd, key, unpack(ARGV, i, math.min(i + 999, to)))
  end
end
local at = 9
put('SADD', KEYS[2], at, at + np - 1)
at = at + np
put('HSET', KEYS[4], at, at + 2 * nw - 1)
at = at + 2 * nw
put('HSET', KEYS[3], at, at + 2 * nu - 1)
at = at + 2 * nu
put('HSET', KEYS[6], at, at + 2 * ns - 1)
redis.call('HSET', KEYS[1], 'state', 'open', 'start_ms', ARGV[2], 'end_ms', ARGV[3],
  'armed', string.format('%d', np + nw), 'issued', string.format('%d', nw),
  'keep_ms', ARGV[1], 'max_index', ARGV[4])
for i = 1, 6 do
  redis.call('PEXPIREAT', KEYS[i], ARGV[1])
end
bm_fence(KEYS[7], ARGV[1])
return 1
`)

// rainGrabScript takes one prize for a user, or answers why not.
//
// KEYS are meta, pool, users, wins, unacked and sec. ARGV[1] is the user, ARGV[2] the
// caller's now in Unix ms (kept as the win's time), ARGV[3] the unix second of now (the
// sec hash's field), ARGV[4] the plan's allowance at now and ARGV[5] the user's cap. The
// reply is {status, issued, ...}:
//
//	-1 the state is not whole (rebuild it); no issued
//	 2 Again: the user's unacknowledged win, "n:member:grabUnixMs"
//	-2 closed, or now at or past the end
//	-3 now before the start
//	-4 the user has won the cap
//	-5 the pool is empty
//	-6 paced: issued ≥ allowed
//	 1 won: n (the user's nth win) and the member
//
// or the error FENCED (ErrFenced) when it would take a prize and the session's fence
// (KEYS[7]) is not this server's replication id: it took nothing, and the session is
// rebuilt as a lost one. The answers before the SPOP are given unfenced: a rolled-back
// copy only lacks the newest wins, so a user capped, an unacknowledged win, an ended or
// not started session hold on it too (its issued can only be lower, so Empty and Paced
// hold unless prizes added later were lost as well — an undersell, never a double win).
//
// The order is the contract. Again comes first, so a user retrying after a failed publish
// gets their win even once the session has ended, paced out or capped them. Empty comes
// before Paced: an empty pool stays empty (short of AddPrizes), so the tap is answered as
// such rather than as a miss to retry — with armed = total, an emptied pool is always
// paced too (issued = armed ≥ allowed), and Paced would hide it.
//
// now comes from the caller's clock, not Redis TIME, so that one clock decides both the
// plan's allowance and the session's window (see redis/redpacket.go). The hashes a grab
// creates take the meta's expiry; PEXPIREAT is set again on each win because the unacked
// hash vanishes whenever its last entry is acknowledged.
var rainGrabScript = newFencedScript(rainIntact + `
local m = intact(true)
if not m then
  return {-1}
end
local issued = m[5]
local un = redis.call('HGET', KEYS[5], ARGV[1])
if un then
  return {2, issued, un}
end
local now = tonumber(ARGV[2])
if m[1] ~= 'open' or now >= tonumber(m[3]) then
  return {-2, issued}
end
if now < tonumber(m[2]) then
  return {-3, issued}
end
local had = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if had >= tonumber(ARGV[5]) then
  return {-4, issued}
end
if issued >= m[4] then
  return {-5, issued}
end
if issued >= tonumber(ARGV[4]) then
  return {-6, issued}
end
if bm_fenced(KEYS[7]) then
  return BM_FENCED
end
local member = redis.call('SPOP', KEYS[2])
if not member then
  return {-5, issued}
end
local n = string.format('%d', redis.call('HINCRBY', KEYS[3], ARGV[1], 1))
local won = member .. ':' .. ARGV[2]
redis.call('HSET', KEYS[4], ARGV[1] .. ':' .. n, won)
redis.call('HSET', KEYS[5], ARGV[1], n .. ':' .. won)
issued = redis.call('HINCRBY', KEYS[1], 'issued', 1)
redis.call('HINCRBY', KEYS[6], ARGV[3], 1)
for i = 3, 6 do
  redis.call('PEXPIREAT', KEYS[i], m[6])
end
return {1, issued, n, member}
`)

// rainAckedScript forgets a user's unacknowledged win, only if it is the one named: an
// acknowledgement that arrives late, after the user won again, must not drop the newer
// win. KEYS are meta and unacked; ARGV[1] is the user and ARGV[2] the win's n. It returns
// {-1} when the session is not loaded and {0, removed} otherwise.
var rainAckedScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1}
end
local v = redis.call('HGET', KEYS[2], ARGV[1])
if v and string.match(v, '^(%d+):') == ARGV[2] then
  return {0, redis.call('HDEL', KEYS[2], ARGV[1])}
end
return {0, 0}
`)

// rainAddScript adds armed prizes to a loaded session's pool.
//
// KEYS are meta, pool, users, wins, unacked and sec; ARGV are members ("index:kind:value").
// A member whose index is not above the highest index armed so far is skipped: it was
// armed already — by a load from rain_prize that raced this call, say — and may have been
// won since, so adding it again could issue it twice. The reply is {-1} when the state is
// not whole, {-7} when the session is closed (its pool is the ledger's), {0, added}, and
// FENCED (writing nothing) when the fence is not this server's replication id.
var rainAddScript = newFencedScript(rainIntact + `
local m = intact()
if not m then
  return {-1}
end
if m[1] ~= 'open' then
  return {-7}
end
if bm_fenced(KEYS[7]) then
  return BM_FENCED
end
local top = tonumber(m[7]) or -1
local fresh = {}
for _, member in ipairs(ARGV) do
  local idx = tonumber(string.match(member, '^(%d+):'))
  if idx and idx > top then
    table.insert(fresh, member)
  end
end
local added, high = 0, top
for i = 1, #fresh, 1000 do
  added = added + redis.call('SADD', KEYS[2], unpack(fresh, i, math.min(i + 999, #fresh)))
end
for _, member in ipairs(fresh) do
  local idx = tonumber(string.match(member, '^(%d+):'))
  if idx > high then
    high = idx
  end
end
if added > 0 then
  redis.call('HINCRBY', KEYS[1], 'armed', added)
  redis.call('HSET', KEYS[1], 'max_index', string.format('%d', high))
  redis.call('PEXPIREAT', KEYS[2], m[6])
end
return {0, added}
`)

// rainStateScript reads a session's counters: {0, issued, left, second, wins, …}, or
// {-1} when the state is not whole.
var rainStateScript = newFencedScript(rainIntact + `
local m = intact()
if not m then
  return {-1}
end
local r = redis.call('HGETALL', KEYS[6])
table.insert(r, 1, m[5])
table.insert(r, 2, redis.call('SCARD', KEYS[2]))
table.insert(r, 1, 0)
return r
`)

// rainWinsScript reads a session's wins: {0, "user:n", "member:grabUnixMs", …}, or {-1}
// when the state is not whole (a lost wins hash must not read as "nobody won").
var rainWinsScript = newFencedScript(rainIntact + `
if not intact() then
  return {-1}
end
local r = redis.call('HGETALL', KEYS[4])
table.insert(r, 1, 0)
return r
`)

// rainCloseScript closes a session and returns the members left in its pool: {0,
// member, …}, or {-1} when the state is not whole (the ledger would be wrong: rebuild
// first). The pool is kept, not taken out: once closed no grab pops it, so every Close —
// the first or a retry after a crash before the ledger was written — returns the same
// members, and a Load afterwards still finds the counts adding up and keeps the copy.
// A fenced session is not closed (FENCED): its pool may hold prizes already won, which
// the ledger must not count as left; the caller closes from the durable records instead.
var rainCloseScript = newFencedScript(rainIntact + `
if not intact() then
  return {-1}
end
if bm_fenced(KEYS[7]) then
  return BM_FENCED
end
redis.call('HSET', KEYS[1], 'state', 'closed')
local r = redis.call('SMEMBERS', KEYS[2])
table.insert(r, 1, 0)
return r
`)

// Rain is the hot state of red packet rain sessions in Redis: each session's pool of
// armed prizes not yet won, who won what, the counters the plan is checked against, and
// whether the session is open. A grab is one Lua script, so a prize is issued at most
// once, never beyond the plan's allowance or a user's cap. It implements rain.Hot.
//
// All keys of a session share the hash tag {<sessionID>}, so every script runs on one
// Cluster slot:
//
//	<prefix>:rain:{<id>}:meta     hash state (open|closed), start_ms, end_ms, armed (prizes
//	                              ever loaded or added), issued, keep_ms (the keys' expiry),
//	                              max_index (the highest prize index armed)
//	<prefix>:rain:{<id>}:pool     set of prize members ("index:kind:value") not yet won
//	<prefix>:rain:{<id>}:users    hash user → wins so far
//	<prefix>:rain:{<id>}:wins     hash "user:n" → "member:grabUnixMs"
//	<prefix>:rain:{<id>}:unacked  hash user → "n:member:grabUnixMs", the user's win whose
//	                              event is not yet acknowledged (at most one)
//	<prefix>:rain:{<id>}:sec      hash unix second → wins granted in it
//	<prefix>:rain:{<id>}:wait     a marker a win returned again writes so that WAIT covers it (WaitReplicas)
//
// The invariant every script checks first is SCARD pool + issued = armed (with one wins
// entry per issued prize); a state that breaks it was partly lost and is reported as
// rain.ErrUnavailable until Load rebuilds it. Redis should not evict these keys
// (maxmemory-policy noeviction, or room enough).
//
// The wins not yet known to be credited, the green channel's list, live apart from the
// sessions under the user's hash tag:
//
//	<prefix>:rain:pending:{<user>}  hash "session:user:n" → "member:grabUnixMs"
type Rain struct {
	client goredis.Cmdable
	prefix string
	fence  bool
	wait   ReplicaWait
}

var _ rain.Hot = (*Rain)(nil)

// NewRain returns Rain on client with keys under prefix (which must not contain braces,
// or every session would hash to the prefix's slot). client may be an auto-pipeliner, so
// that the scripts of concurrent grabs share round trips.
func NewRain(client goredis.Cmdable, prefix string) *Rain {
	if prefix != "" {
		prefix += ":"
	}
	return &Rain{client: client, prefix: prefix}
}

// Fence turns replication-id fencing of the scripts that write a session (load, grab, add,
// set end, close) on or off (see fence.go): on with an external Redis, whose failover can
// roll a session back to a whole state that lacks answered wins, so that the same prize
// would be won twice; off with the embedded server. A fenced script writes nothing and
// its error wraps rain.ErrUnavailable and ErrFenced, the path of a lost session (rebuilt
// from the durable records, which Load then writes over the stale copy). The reads (state,
// wins), the acknowledgement (it only forgets a win already durable) and the green
// channel's pending wins (idempotent) are not fenced. It returns r.
func (r *Rain) Fence(on bool) *Rain {
	r.fence = on
	return r
}

// WaitReplicas makes each grab wait for w.Replicas replicas to acknowledge it (see
// ReplicaWait), through w.Client rather than the auto-pipeliner NewRain may have been
// given. A grab they did not acknowledge, whatever its outcome, answers an error wrapping
// rain.ErrUnavailable, rain.ErrUnconfirmed and ErrUnreplicated (a win taken waits
// unacknowledged in the session); a win returned again (Again, which the caller publishes)
// is confirmed the same way first. The other scripts do not wait: they grant nothing, and
// what they wrote on a cut-off master is rebuilt on the promoted replica (fenced). It
// returns r.
func (r *Rain) WaitReplicas(w ReplicaWait) *Rain {
	r.wait = w
	return r
}

// FenceKey returns the session's fence: the replication id of the server that built it.
func (r *Rain) FenceKey(sessionID int64) string {
	return r.prefix + "rain:{" + strconv.FormatInt(sessionID, 10) + "}:fence"
}

// scriptKeys are Keys and the fence, the keys of the session's scripts.
func (r *Rain) scriptKeys(sessionID int64) []string {
	return append(r.Keys(sessionID), r.FenceKey(sessionID))
}

// fencedRain turns a fenced script's error into one wrapping rain.ErrUnavailable (the path
// of a lost session) and ErrFenced; any other error is returned as it is.
func fencedRain(err error) error {
	if err = fenceErr(err); errors.Is(err, ErrFenced) {
		return fmt.Errorf("%w: %w", rain.ErrUnavailable, err)
	}
	return err
}

// Keys returns the session's keys in the order the scripts take them: meta, pool, users,
// wins, unacked, sec (the scripts take the fence, FenceKey, as a seventh).
func (r *Rain) Keys(sessionID int64) []string {
	base := r.prefix + "rain:{" + strconv.FormatInt(sessionID, 10) + "}:"
	return []string{base + "meta", base + "pool", base + "users", base + "wins", base + "unacked", base + "sec"}
}

// pendingKey is the user's wins not yet known to be credited, under the user's hash tag.
func (r *Rain) pendingKey(userID string) string {
	return r.prefix + "rain:pending:{" + userID + "}"
}

// Load implements rain.Hot. The pool is s.Left; each user's count is the highest N of
// their wins in s.Wins (not their number: should a win be missing from the records, the
// user's next win must not reuse its N, the event's idempotency key); issued is len(Wins)
// and armed len(Left) + len(Wins). The keys expire a day after s.End, so a session ended
// longer ago than that is written and gone at once: callers answer such a session from
// their records instead.
func (r *Rain) Load(ctx context.Context, s rain.HotSession) (bool, error) {
	if s.ID <= 0 {
		return false, fmt.Errorf("load rain session %d: bad id: %w", s.ID, rain.ErrInvalid)
	}
	start, end := s.Start.UnixMilli(), s.End.UnixMilli()
	if start <= 0 || end <= start {
		return false, fmt.Errorf("load rain session %d: start %s, end %s: %w", s.ID, s.Start, s.End, rain.ErrInvalid)
	}
	seen := make(map[int]bool, len(s.Left)+len(s.Wins))
	maxIndex := -1
	check := func(p rain.Prize) error {
		if err := checkPrize(p); err != nil {
			return err
		}
		if seen[p.Index] {
			return fmt.Errorf("prize %d given twice: %w", p.Index, rain.ErrInvalid)
		}
		seen[p.Index] = true
		maxIndex = max(maxIndex, p.Index)
		return nil
	}
	pool := make([]any, 0, len(s.Left))
	for _, p := range s.Left {
		if err := check(p); err != nil {
			return false, fmt.Errorf("load rain session %d: %w", s.ID, err)
		}
		pool = append(pool, p.Member())
	}
	wins := make([]any, 0, 2*len(s.Wins))
	users := map[string]int{}
	secs := map[int64]int{}
	keys := make(map[string]bool, len(s.Wins))
	for _, w := range s.Wins {
		if w.SessionID != s.ID || w.UserID == "" || w.N < 1 {
			return false, fmt.Errorf("load rain session %d: win %s: %w", s.ID, w.MsgID(), rain.ErrInvalid)
		}
		if err := check(w.Prize); err != nil {
			return false, fmt.Errorf("load rain session %d: win %s: %w", s.ID, w.MsgID(), err)
		}
		k := w.UserID + ":" + strconv.Itoa(w.N)
		if keys[k] {
			return false, fmt.Errorf("load rain session %d: win %s given twice: %w", s.ID, w.MsgID(), rain.ErrInvalid)
		}
		keys[k] = true
		wins = append(wins, k, formatRainWin(w.Prize, w.Time))
		users[w.UserID] = max(users[w.UserID], w.N)
		if !w.Time.IsZero() {
			secs[w.Time.Unix()]++
		}
	}
	args := make([]any, 0, 8+len(pool)+len(wins)+2*len(users)+2*len(secs))
	args = append(args, s.End.Add(rainKeep).UnixMilli(), start, end, maxIndex, len(pool), len(s.Wins), len(users), len(secs))
	args = append(args, pool...)
	args = append(args, wins...)
	for u, n := range users {
		args = append(args, u, n)
	}
	for sec, n := range secs {
		args = append(args, sec, n)
	}
	wrote, err := rainLoadScript.run(ctx, r.client, r.fence, r.scriptKeys(s.ID), args...).Int()
	if err != nil {
		return false, fmt.Errorf("load rain session %d: %w", s.ID, err)
	}
	return wrote == 1, nil
}

// AddPrizes implements rain.Hot. Prizes whose index is not above every index armed so far
// are skipped (they are armed already); a closed session refuses with rain.ErrEnded.
func (r *Rain) AddPrizes(ctx context.Context, sessionID int64, prizes []rain.Prize) error {
	if sessionID <= 0 {
		return fmt.Errorf("add prizes to rain session %d: bad id: %w", sessionID, rain.ErrInvalid)
	}
	if len(prizes) == 0 {
		return nil
	}
	args := make([]any, 0, len(prizes))
	for _, p := range prizes {
		if err := checkPrize(p); err != nil {
			return fmt.Errorf("add prizes to rain session %d: %w", sessionID, err)
		}
		args = append(args, p.Member())
	}
	reply, err := rainAddScript.run(ctx, r.client, r.fence, r.scriptKeys(sessionID), args...).Slice()
	if err = fencedRain(err); err != nil {
		return fmt.Errorf("add prizes to rain session %d: %w", sessionID, err)
	}
	status, _, err := splitReply(reply)
	switch {
	case err != nil:
		return fmt.Errorf("add prizes to rain session %d: %w", sessionID, err)
	case status == rainMissing:
		return fmt.Errorf("add prizes to rain session %d: %w", sessionID, rain.ErrUnavailable)
	case status == rainClosed:
		return fmt.Errorf("add prizes to rain session %d: closed: %w", sessionID, rain.ErrEnded)
	case status != rainOK:
		return fmt.Errorf("add prizes to rain session %d: unexpected script status %d", sessionID, status)
	}
	return nil
}

// Grab implements rain.Hot. allowed is the plan's allowance at now and userCap the
// user's cap, both from the quota version the caller read; now comes from the caller's
// clock. A state that is not whole wraps rain.ErrUnavailable; every other outcome is a
// Status, with no error.
func (r *Rain) Grab(ctx context.Context, sessionID int64, userID string, now time.Time, allowed, userCap int) (rain.Outcome, error) {
	ms := now.UnixMilli()
	switch {
	case sessionID <= 0:
		return rain.Outcome{}, fmt.Errorf("grab rain session %d: bad id: %w", sessionID, rain.ErrInvalid)
	case userID == "":
		return rain.Outcome{}, fmt.Errorf("grab rain session %d: no user: %w", sessionID, rain.ErrInvalid)
	case ms <= 0:
		return rain.Outcome{}, fmt.Errorf("grab rain session %d: no time: %w", sessionID, rain.ErrInvalid)
	}
	reply, err := rainGrabScript.runWaiting(ctx, r.client, r.fence, r.wait, r.scriptKeys(sessionID), userID, ms, ms/1000, allowed, userCap).Slice()
	if errors.Is(err, ErrUnreplicated) {
		return rain.Outcome{}, fmt.Errorf("grab rain session %d for %s: %w: %w: %w", sessionID, userID, rain.ErrUnavailable, rain.ErrUnconfirmed, err)
	}
	if err = fencedRain(err); err != nil {
		return rain.Outcome{}, fmt.Errorf("grab rain session %d for %s: %w", sessionID, userID, err)
	}
	out, err := parseGrabReply(sessionID, userID, ms, reply)
	if err != nil {
		return rain.Outcome{}, fmt.Errorf("grab rain session %d for %s: %w", sessionID, userID, err)
	}
	if out.Status == rain.Again && r.wait.On() {
		// The win may be one refused unconfirmed: the caller publishes it, so the
		// replicas must have it first.
		if err := r.wait.cover(ctx, r.prefix+"rain:{"+strconv.FormatInt(sessionID, 10)+"}:wait"); err != nil {
			return rain.Outcome{}, fmt.Errorf("grab rain session %d for %s (again): %w: %w: %w", sessionID, userID, rain.ErrUnavailable, rain.ErrUnconfirmed, err)
		}
	}
	return out, nil
}

// parseGrabReply turns the grab script's reply into an Outcome.
func parseGrabReply(sessionID int64, userID string, ms int64, reply []any) (rain.Outcome, error) {
	status, rest, err := splitReply(reply)
	if err != nil {
		return rain.Outcome{}, err
	}
	if status == rainMissing {
		return rain.Outcome{}, rain.ErrUnavailable
	}
	if len(rest) == 0 {
		return rain.Outcome{}, fmt.Errorf("reply %v: no issued count", reply)
	}
	issued, ok := rest[0].(int64)
	if !ok {
		return rain.Outcome{}, fmt.Errorf("issued of type %T", rest[0])
	}
	out := rain.Outcome{Issued: int(issued)}
	switch status {
	case rainWon:
		if len(rest) != 3 {
			return rain.Outcome{}, fmt.Errorf("reply %v: want issued, n and member", reply)
		}
		n, err := replyInt(rest[1])
		if err != nil {
			return rain.Outcome{}, err
		}
		member, _ := rest[2].(string)
		p, err := rain.ParseMember(member)
		if err != nil {
			return rain.Outcome{}, err
		}
		out.Status = rain.Won
		out.Win = rain.Win{SessionID: sessionID, UserID: userID, N: n, Prize: p, Time: time.UnixMilli(ms)}
	case rainAgain:
		if len(rest) != 2 {
			return rain.Outcome{}, fmt.Errorf("reply %v: want issued and the unacknowledged win", reply)
		}
		s, _ := rest[1].(string)
		nText, won, ok := strings.Cut(s, ":")
		n, err := strconv.Atoi(nText)
		if !ok || err != nil || n < 1 {
			return rain.Outcome{}, fmt.Errorf("bad unacknowledged win %q", s)
		}
		p, at, err := parseRainWin(won)
		if err != nil {
			return rain.Outcome{}, err
		}
		out.Status = rain.Again
		out.Win = rain.Win{SessionID: sessionID, UserID: userID, N: n, Prize: p, Time: at}
	case rainEnded:
		out.Status = rain.Ended
	case rainNotStarted:
		out.Status = rain.NotStarted
	case rainCapped:
		out.Status = rain.Capped
	case rainEmpty:
		out.Status = rain.Empty
	case rainPaced:
		out.Status = rain.Paced
	default:
		return rain.Outcome{}, fmt.Errorf("unexpected script status %d", status)
	}
	return out, nil
}

// Acked implements rain.Hot: the user's unacknowledged win is forgotten only if it is w
// (same N), never a newer one.
func (r *Rain) Acked(ctx context.Context, w rain.Win) error {
	keys := r.Keys(w.SessionID)
	reply, err := rainAckedScript.Run(ctx, r.client, []string{keys[0], keys[4]}, w.UserID, strconv.Itoa(w.N)).Slice()
	if err != nil {
		return fmt.Errorf("acknowledge rain win %s: %w", w.MsgID(), err)
	}
	status, _, err := splitReply(reply)
	switch {
	case err != nil:
		return fmt.Errorf("acknowledge rain win %s: %w", w.MsgID(), err)
	case status == rainMissing:
		return fmt.Errorf("acknowledge rain win %s: %w", w.MsgID(), rain.ErrUnavailable)
	case status != rainOK:
		return fmt.Errorf("acknowledge rain win %s: unexpected script status %d", w.MsgID(), status)
	}
	return nil
}

// State implements rain.Hot.
func (r *Rain) State(ctx context.Context, sessionID int64) (rain.HotState, error) {
	rest, err := r.run(ctx, rainStateScript, sessionID)
	if err != nil {
		return rain.HotState{}, fmt.Errorf("read rain session %d state: %w", sessionID, err)
	}
	if len(rest) < 2 || len(rest)%2 != 0 {
		return rain.HotState{}, fmt.Errorf("read rain session %d state: reply of %d elements", sessionID, len(rest))
	}
	issued, err1 := replyInt(rest[0])
	left, err2 := replyInt(rest[1])
	if err := errors.Join(err1, err2); err != nil {
		return rain.HotState{}, fmt.Errorf("read rain session %d state: %w", sessionID, err)
	}
	st := rain.HotState{Issued: issued, Left: left, PerSecond: make(map[int64]int, len(rest)/2-1)}
	for i := 2; i < len(rest); i += 2 {
		sec, err1 := replyInt64(rest[i])
		n, err2 := replyInt(rest[i+1])
		if err := errors.Join(err1, err2); err != nil {
			return rain.HotState{}, fmt.Errorf("read rain session %d state: second: %w", sessionID, err)
		}
		st.PerSecond[sec] = n
	}
	return st, nil
}

// Wins implements rain.Hot: every win the session's hot state holds, with its grab time
// (zero for a win loaded without one), in no particular order.
func (r *Rain) Wins(ctx context.Context, sessionID int64) ([]rain.Win, error) {
	rest, err := r.run(ctx, rainWinsScript, sessionID)
	if err != nil {
		return nil, fmt.Errorf("read rain session %d wins: %w", sessionID, err)
	}
	if len(rest)%2 != 0 {
		return nil, fmt.Errorf("read rain session %d wins: reply of %d elements", sessionID, len(rest))
	}
	wins := make([]rain.Win, 0, len(rest)/2)
	for i := 0; i < len(rest); i += 2 {
		k, _ := rest[i].(string)
		cut := strings.LastIndexByte(k, ':')
		n, err := strconv.Atoi(k[cut+1:])
		if cut <= 0 || err != nil || n < 1 {
			return nil, fmt.Errorf("read rain session %d wins: bad key %q", sessionID, k)
		}
		v, _ := rest[i+1].(string)
		p, at, err := parseRainWin(v)
		if err != nil {
			return nil, fmt.Errorf("read rain session %d wins: %w", sessionID, err)
		}
		wins = append(wins, rain.Win{SessionID: sessionID, UserID: k[:cut], N: n, Prize: p, Time: at})
	}
	return wins, nil
}

// rainSetEndScript moves a whole session's end: KEYS are the session's six keys, ARGV[1]
// the new end and ARGV[2] the keys' new expiry, both Unix ms. A closed session stays
// closed (its ledger may be written); {-1} when the state is not whole, FENCED when the
// fence is not this server's replication id (the rebuild loads the end from the store).
var rainSetEndScript = newFencedScript(rainIntact + `
local m = intact()
if not m then
  return {-1}
end
if bm_fenced(KEYS[7]) then
  return BM_FENCED
end
redis.call('HSET', KEYS[1], 'end_ms', ARGV[1], 'keep_ms', ARGV[2])
for i = 1, 7 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('PEXPIREAT', KEYS[i], ARGV[2])
  end
end
return {0}
`)

// SetEnd moves a loaded session's end (a quota version that extends or shortens the
// session), with its keys' expiry; rain.ErrUnavailable when the session is not whole in
// Redis (its rebuild then loads the end from the store).
func (r *Rain) SetEnd(ctx context.Context, sessionID int64, end time.Time) error {
	if sessionID <= 0 {
		return fmt.Errorf("bad id: %w", rain.ErrInvalid)
	}
	reply, err := rainSetEndScript.run(ctx, r.client, r.fence, r.scriptKeys(sessionID), end.UnixMilli(), end.Add(rainKeep).UnixMilli()).Slice()
	if err = fencedRain(err); err != nil {
		return fmt.Errorf("set end of rain session %d: %w", sessionID, err)
	}
	if status, _, err := splitReply(reply); err != nil || status != rainOK {
		if err == nil {
			err = rain.ErrUnavailable
		}
		return fmt.Errorf("set end of rain session %d: %w", sessionID, err)
	}
	return nil
}

// Close implements rain.Hot. It is idempotent: the pool is kept (closed, no grab takes
// from it), so a second Close returns the same prizes as the first.
func (r *Rain) Close(ctx context.Context, sessionID int64) ([]rain.Prize, error) {
	rest, err := r.run(ctx, rainCloseScript, sessionID)
	if err != nil {
		return nil, fmt.Errorf("close rain session %d: %w", sessionID, err)
	}
	prizes := make([]rain.Prize, 0, len(rest))
	for _, v := range rest {
		s, _ := v.(string)
		p, err := rain.ParseMember(s)
		if err != nil {
			return nil, fmt.Errorf("close rain session %d: %w", sessionID, err)
		}
		prizes = append(prizes, p)
	}
	return prizes, nil
}

// run runs a read or close script on the session's keys and returns its reply after the
// status, or an error wrapping rain.ErrUnavailable when the state is not whole or fenced.
func (r *Rain) run(ctx context.Context, s fencedScript, sessionID int64) ([]any, error) {
	if sessionID <= 0 {
		return nil, fmt.Errorf("bad id: %w", rain.ErrInvalid)
	}
	reply, err := s.run(ctx, r.client, r.fence, r.scriptKeys(sessionID)).Slice()
	if err = fencedRain(err); err != nil {
		return nil, err
	}
	status, rest, err := splitReply(reply)
	switch {
	case err != nil:
		return nil, err
	case status == rainMissing:
		return nil, rain.ErrUnavailable
	case status != rainOK:
		return nil, fmt.Errorf("unexpected script status %d", status)
	}
	return rest, nil
}

// AddPending implements rain.Hot: it notes w under its user, for the green channel. The
// key's TTL is renewed with each win, as for red packet grabs.
func (r *Rain) AddPending(ctx context.Context, w rain.Win) error {
	err := addPendingScript.Run(ctx, r.client, []string{r.pendingKey(w.UserID)}, w.MsgID(),
		formatRainWin(w.Prize, w.Time), pendingTTL.Milliseconds()).Err()
	if err != nil {
		return fmt.Errorf("note pending rain win %s: %w", w.MsgID(), err)
	}
	return nil
}

// Pending implements rain.Hot: the user's wins not yet known to be credited.
func (r *Rain) Pending(ctx context.Context, userID string) ([]rain.Win, error) {
	m, err := r.client.HGetAll(ctx, r.pendingKey(userID)).Result()
	if err != nil {
		return nil, fmt.Errorf("pending rain wins of %s: %w", userID, err)
	}
	wins := make([]rain.Win, 0, len(m))
	for id, v := range m {
		// id is session:user:n; the user may hold colons, the session and n do not.
		first, last := strings.IndexByte(id, ':'), strings.LastIndexByte(id, ':')
		if first < 0 || last <= first {
			return nil, fmt.Errorf("pending rain win %q of %s: bad id", id, userID)
		}
		session, err1 := strconv.ParseInt(id[:first], 10, 64)
		n, err2 := strconv.Atoi(id[last+1:])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("pending rain win %q of %s: bad id", id, userID)
		}
		p, at, err := parseRainWin(v)
		if err != nil {
			return nil, fmt.Errorf("pending rain win %q of %s: %w", id, userID, err)
		}
		wins = append(wins, rain.Win{SessionID: session, UserID: userID, N: n, Prize: p, Time: at})
	}
	return wins, nil
}

// DonePending implements rain.Hot: it forgets wins that are credited, one pipelined
// round trip for all their users.
func (r *Rain) DonePending(ctx context.Context, wins []rain.Win) error {
	if len(wins) == 0 {
		return nil
	}
	_, err := r.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, w := range wins {
			p.HDel(ctx, r.pendingKey(w.UserID), w.MsgID())
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("forget %d credited rain wins: %w", len(wins), err)
	}
	return nil
}

// checkPrize refuses a prize that ParseMember would not read back.
func checkPrize(p rain.Prize) error {
	if _, err := rain.ParseMember(p.Member()); err != nil || !p.Kind.Valid() {
		return fmt.Errorf("prize %d: %s with a positive value wanted: %w", p.Index, p.Member(), rain.ErrInvalid)
	}
	return nil
}

// formatRainWin writes a win's value in the wins and pending hashes: "member:grabUnixMs",
// with 0 for a win whose time is not known.
func formatRainWin(p rain.Prize, at time.Time) string {
	ms := int64(0)
	if !at.IsZero() {
		ms = at.UnixMilli()
	}
	return p.Member() + ":" + strconv.FormatInt(ms, 10)
}

// parseRainWin reads a value written by formatRainWin.
func parseRainWin(s string) (rain.Prize, time.Time, error) {
	cut := strings.LastIndexByte(s, ':')
	if cut < 0 {
		return rain.Prize{}, time.Time{}, fmt.Errorf("bad rain win %q", s)
	}
	ms, err := strconv.ParseInt(s[cut+1:], 10, 64)
	if err != nil || ms < 0 {
		return rain.Prize{}, time.Time{}, fmt.Errorf("bad rain win %q: time", s)
	}
	p, err := rain.ParseMember(s[:cut])
	if err != nil {
		return rain.Prize{}, time.Time{}, err
	}
	var at time.Time
	if ms > 0 {
		at = time.UnixMilli(ms)
	}
	return p, at, nil
}

// replyInt64 reads a number of a script reply: an integer, or a string holding one (hash
// fields and values come back as strings).
func replyInt64(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bad number %q", x)
		}
		return n, nil
	}
	return 0, fmt.Errorf("number of type %T", v)
}

func replyInt(v any) (int, error) {
	n, err := replyInt64(v)
	return int(n), err
}
