package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// ErrUnreplicated is a hot write that the master took but fewer replicas than required
// acknowledged within the wait (WAIT n timeout): its outcome is unknown to the system. On
// a master cut off from the rest of the cluster (split brain) the write is lost when the
// master rejoins as a replica; on a master that stays, it is kept. The caller answers it
// as it answers a write it cannot confirm (a retry, the domain's loss path) and never
// publishes or answers the write as done.
var ErrUnreplicated = errors.New("redis hot write not acknowledged by the required replicas: outcome unknown, retry")

// ReplicaWait makes hot writes wait for replicas: each writing script is sent with
// WAIT n timeout right behind it, on the same connection of the key's master (one round
// trip), and a write that fewer than Replicas acknowledged answers ErrUnreplicated.
//
// Why: replication-id fencing (fence.go) refuses writes on a promoted replica or a
// restarted master, but not on an old master cut off from the majority, which takes
// writes until cluster-node-timeout passes while a replica is promoted in its place. What
// it takes there is discarded when it rejoins as a replica; answered and published, such a
// write is granted again by the new master. A write a replica acknowledged survives the
// promotion of that replica; a write none did is refused here, before its effects leave.
//
// The zero value waits for nothing: the scripts run as before, through the client (or
// auto-pipeliner) their type was given.
type ReplicaWait struct {
	// Client is the client of the masters (standalone or Cluster, as Open returns it),
	// never an auto-pipeliner: WAIT covers only the writes of its own connection.
	Client goredis.UniversalClient
	// Replicas is how many replicas must acknowledge each hot write; 0 is off.
	Replicas int
	// Timeout bounds the wait (rounded down to milliseconds, at least 1ms).
	Timeout time.Duration
}

// On reports whether writes wait for replicas.
func (w ReplicaWait) On() bool { return w.Replicas > 0 && w.Client != nil }

// Check reports a ReplicaWait that cannot work: replicas wanted without a client, a
// client that is neither standalone nor Cluster, or a timeout under 1ms.
func (w ReplicaWait) Check() error {
	if w.Replicas < 0 {
		return fmt.Errorf("wait for %d replicas", w.Replicas)
	}
	if w.Replicas == 0 {
		return nil
	}
	switch w.Client.(type) {
	case *goredis.Client, *goredis.ClusterClient:
	default:
		return fmt.Errorf("wait for replicas needs a standalone or Cluster client, not %T", w.Client)
	}
	if w.Timeout < time.Millisecond {
		return fmt.Errorf("replica wait timeout %s: want at least 1ms", w.Timeout)
	}
	return nil
}

// node returns the client of the master that serves key.
func (w ReplicaWait) node(ctx context.Context, key string) (*goredis.Client, error) {
	switch c := w.Client.(type) {
	case *goredis.Client:
		return c, nil
	case *goredis.ClusterClient:
		return c.MasterForKey(ctx, key)
	}
	return nil, fmt.Errorf("wait for replicas needs a standalone or Cluster client, not %T", w.Client)
}

// run runs s (the variant fence picks) and then WAIT on one connection of the master of
// keys[0], in one pipeline, and returns the script's reply; if the script wrote and fewer
// replicas than required acknowledged, the reply carries an error wrapping
// ErrUnreplicated instead. A script error (FENCED among them) is returned as it is: WAIT
// is then only a wasted wait for the writes before it.
//
// A Cluster redirect (MOVED or ASK: the slot moved, or the master was demoted), or a
// refusal such as CLUSTERDOWN during a failover (notRunPrefixes), means the script wrote
// nothing there; the slot map is reloaded and the error is answered as ErrUnreplicated, a
// retry, which finds the slot's master anew.
func (w ReplicaWait) run(ctx context.Context, s fencedScript, fence bool, keys []string, args ...any) *goredis.Cmd {
	script := s.off
	if fence {
		script = s.on
	}
	out := goredis.NewCmd(ctx)
	node, err := w.node(ctx, keys[0])
	if err != nil {
		out.SetErr(err)
		return out
	}
	cmd, acked, err := w.pipeline(ctx, node, func(p goredis.Pipeliner) *goredis.Cmd { return script.EvalSha(ctx, p, keys, args...) })
	if err == nil && cmd.Err() != nil && goredis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
		cmd, acked, err = w.pipeline(ctx, node, func(p goredis.Pipeliner) *goredis.Cmd { return script.Eval(ctx, p, keys, args...) })
	}
	if err != nil {
		out.SetErr(err)
		return out
	}
	if cerr := cmd.Err(); cerr != nil {
		if w.redirected(ctx, cerr) {
			cerr = fmt.Errorf("%w (%w)", ErrUnreplicated, cerr)
		}
		out.SetErr(cerr)
		return out
	}
	if acked < w.Replicas {
		out.SetErr(w.short(acked))
		return out
	}
	out.SetVal(cmd.Val())
	return out
}

// pipeline sends the command add queues and WAIT in one pipeline on one connection of
// node, and returns the command, how many replicas acknowledged, and an error of the
// round trip or of WAIT itself.
func (w ReplicaWait) pipeline(ctx context.Context, node *goredis.Client, add func(goredis.Pipeliner) *goredis.Cmd) (*goredis.Cmd, int, error) {
	p := node.Pipeline()
	cmd := add(p)
	// Not p.Wait: it sets the reply's read timeout to the wait itself, which races the
	// server's own answer at the deadline; the client's read timeout bounds it instead.
	wait := p.Do(ctx, "WAIT", w.Replicas, max(w.Timeout.Milliseconds(), 1))
	_, _ = p.Exec(ctx)
	if err := wait.Err(); err != nil {
		if cmd.Err() != nil && w.redirected(ctx, cmd.Err()) {
			return cmd, 0, nil // WAIT on a demoted master: the script's redirect says it
		}
		var re goredis.Error
		if c, ok := w.Client.(*goredis.ClusterClient); ok && !errors.As(err, &re) {
			// The node may be gone (a master killed): the Cluster client learns the new
			// master from the slot map, as it does after its own commands fail.
			c.ReloadState(ctx)
		}
		// The script's reply may have come, but whether it is kept is unknown.
		return nil, 0, fmt.Errorf("%w (WAIT: %w)", ErrUnreplicated, err)
	}
	n, err := wait.Int()
	if err != nil {
		return nil, 0, fmt.Errorf("%w (WAIT: %w)", ErrUnreplicated, err)
	}
	return cmd, n, nil
}

// cover makes sure that every write the master of key took so far is on the required
// replicas: a write (of key, a marker in the group's slot that expires by itself) and
// WAIT behind it, in one round trip. WAIT counts only its connection's own writes, so an
// answer that repeats an earlier write without writing (a user's grab found again) is
// covered this way; without the marker, WAIT on a connection that wrote nothing answers
// every replica still linked at once, even one cut off that acknowledges nothing.
func (w ReplicaWait) cover(ctx context.Context, key string) error {
	node, err := w.node(ctx, key)
	if err != nil {
		return err
	}
	cmd, acked, err := w.pipeline(ctx, node, func(p goredis.Pipeliner) *goredis.Cmd {
		return p.Do(ctx, "SET", key, "1", "PX", 60_000)
	})
	if err != nil {
		return err
	}
	if cerr := cmd.Err(); cerr != nil {
		if w.redirected(ctx, cerr) {
			return fmt.Errorf("%w (%w)", ErrUnreplicated, cerr)
		}
		return cerr
	}
	if acked < w.Replicas {
		return w.short(acked)
	}
	return nil
}

// short is the error of a write acked replicas acknowledged.
func (w ReplicaWait) short(acked int) error {
	return fmt.Errorf("%w: %d of %d replicas within %s", ErrUnreplicated, acked, w.Replicas, w.Timeout)
}

// notRunPrefixes start the error replies of a script the server refused to run, or that
// could write nothing: a Cluster redirect (the slot moved, or its master was demoted), a
// cluster without a quorum for the slot, a server loading its data, a replica.
var notRunPrefixes = []string{"MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN", "LOADING", "MASTERDOWN", "READONLY"}

// redirected reports an error reply of a script that did not run (notRunPrefixes), which
// the plain Cluster client would have followed or retried within its redirects; it has
// the client reload its slot map, and the caller answers retry.
func (w ReplicaWait) redirected(ctx context.Context, err error) bool {
	var re goredis.Error
	if !errors.As(err, &re) {
		return false
	}
	msg := re.Error()
	if !slices.ContainsFunc(notRunPrefixes, func(p string) bool { return strings.HasPrefix(msg, p) }) {
		return false
	}
	if c, ok := w.Client.(*goredis.ClusterClient); ok {
		c.ReloadState(ctx)
	}
	return true
}
