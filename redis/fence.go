package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// ErrFenced is a hot script that wrote nothing because its key group was built or last
// verified under another replication id than the server's now: the server is a promoted
// replica or a restarted master, and the group may lack writes that were already
// answered. The caller treats it as a loss of the group's hot state (a retryable answer,
// then a rebuild from the durable records), and the rebuild sets the fence anew.
var ErrFenced = errors.New("redis hot state fenced: written under another replication id, rebuild it from the durable records")

// Replication-id fencing.
//
// Redis replicates asynchronously: when a master dies and a replica is promoted (or a
// master restarts from an AOF or RDB that lags its last replies), the newest writes of a
// hot script can be missing while their effects were answered and made durable. A lost
// write that leaves the group's counts consistent (an item popped and its grab recorded,
// both undone) is not seen as a loss, and the item would be granted again.
//
// Every Redis server has a replication id (INFO replication, master_replid), which a
// promoted replica and a restarted master replace with a new one. Each hot key group (one
// hash tag, so one Cluster slot) keeps a fence key holding the replication id of the
// server that built it; each hot script compares the two before it writes, in the same
// atomic script, so no write can land on a promoted replica before it is noticed. On a
// mismatch, or a missing fence where the group's state exists, the script writes nothing
// and answers the error reply "FENCED ..." (ErrFenced); the group is rebuilt from the
// durable records as after a loss, and the rebuild stores the new id in the fence.
//
// The scripts are written once with the fence helpers and run in one of two variants:
// fenced (production Redis and Redis Cluster) or not (the embedded server, which has no
// replication and does not answer INFO replication). The helpers, as Lua functions:
//
//	bm_fenced(key)      true when key holds no fence or another server's replication id
//	bm_fence(key, at)   sets the fence to this server's id, expiring at Unix ms at
//	BM_FENCED           the error reply to return when fenced
const (
	fenceOnLua = `
local bm_id
local function bm_replid()
  if not bm_id then
    bm_id = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')
    if not bm_id then
      error('no master_replid in INFO replication: this server cannot fence its hot state')
    end
  end
  return bm_id
end
local function bm_fenced(key)
  return redis.call('GET', key) ~= bm_replid()
end
local function bm_fence(key, at)
  redis.call('SET', key, bm_replid(), 'PXAT', at)
end
local BM_FENCED = {err = 'FENCED hot state written under another replication id: rebuild it'}
`
	fenceOffLua = `
local function bm_fenced(key) return false end
local function bm_fence(key, at) end
local BM_FENCED = {err = 'FENCED'}
`
)

// fencedScript is a hot script in its two variants, with the fence checked and without.
type fencedScript struct{ on, off *goredis.Script }

// newFencedScript returns body after each variant's helpers.
func newFencedScript(body string) fencedScript {
	return fencedScript{on: goredis.NewScript(fenceOnLua + body), off: goredis.NewScript(fenceOffLua + body)}
}

// run runs the variant that fence picks.
func (s fencedScript) run(ctx context.Context, c goredis.Scripter, fence bool, keys []string, args ...any) *goredis.Cmd {
	if fence {
		return s.on.Run(ctx, c, keys, args...)
	}
	return s.off.Run(ctx, c, keys, args...)
}

// runWaiting runs the script as run does, through c, or with w on through w's client with
// WAIT behind it (ReplicaWait.run).
func (s fencedScript) runWaiting(ctx context.Context, c goredis.Scripter, fence bool, w ReplicaWait, keys []string, args ...any) *goredis.Cmd {
	if w.On() {
		return w.run(ctx, s, fence, keys, args...)
	}
	return s.run(ctx, c, fence, keys, args...)
}

// fenceErr turns a script's "FENCED" error reply into an error wrapping ErrFenced, and
// returns any other error (or nil) as it is.
func fenceErr(err error) error {
	var re goredis.Error
	if errors.As(err, &re) && strings.HasPrefix(re.Error(), "FENCED") {
		return fmt.Errorf("%w (%s)", ErrFenced, re.Error())
	}
	return err
}

// probeScript answers this server's replication id the way the fenced scripts read it.
var probeScript = goredis.NewScript(fenceOnLua + `return bm_replid()`)

// ProbeFence checks that the server can fence hot scripts: that a script may read INFO
// replication and finds master_replid in it, as Redis 7 allows and answers. It returns the
// replication id of the server that ran the probe. Redis-compatible servers without
// replication (the embedded one) fail it: their hot state is built unfenced.
func ProbeFence(ctx context.Context, c goredis.Scripter) (string, error) {
	id, err := probeScript.Run(ctx, c, nil).Text()
	if err != nil {
		return "", fmt.Errorf("redis cannot fence hot scripts (INFO replication inside a script): %w", err)
	}
	return id, nil
}
