package nats

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/guard"
)

// Buckets of the guard: the dynamic settings (big-market's DCC, on ZooKeeper there) and
// the blacklist shared by every node.
const (
	DCCBucket       = "BIGMARKET_DCC"
	BlacklistBucket = "BIGMARKET_BLACKLIST"
)

// GuardBuckets names the guard's buckets under prefix.
func GuardBuckets(prefix string) []string {
	return []string{prefixed(prefix, "_", DCCBucket), prefixed(prefix, "_", BlacklistBucket)}
}

// blacklistMaxAge bounds how long a blacklist entry is kept; entries carry their own
// expiry, judged by each node's clock, so this only keeps the bucket from growing.
const blacklistMaxAge = 8 * 24 * time.Hour

// GuardTarget is what the watch feeds: a node's guard.
type GuardTarget interface {
	// Override applies a setting from the bucket; an empty value removes it.
	Override(key, value string)
	// Blacklist records a user's blacklisting; a zero until lifts it.
	Blacklist(userID string, until time.Time)
	// BlacklistIP records a client IP's blacklisting (a guard.IPKey); a zero until lifts it.
	BlacklistIP(key netip.Addr, until time.Time)
}

// GuardKV keeps the guard's dynamic settings and blacklist in two NATS KV buckets. A
// write reaches every node's watch within milliseconds, and the node that made it has
// applied it before the write returns (read your writes: an operator's next call to the
// same node sees the change).
type GuardKV struct {
	dcc, blacklist jetstream.KeyValue
	nc             *natsgo.Conn
	log            *slog.Logger

	mu       sync.Mutex
	watching bool          // a Watch feeds this node's guard
	applied  uint64        // the dcc bucket's last revision the watch has applied
	advanced chan struct{} // closed and replaced when applied grows
}

// OpenGuardKV creates or binds the two buckets.
func OpenGuardKV(ctx context.Context, js jetstream.JetStream, prefix string, replicas int, log *slog.Logger) (*GuardKV, error) {
	if !prefixPattern.MatchString(prefix) {
		return nil, fmt.Errorf("guard bucket prefix %q: only letters, digits, '-' and '_'", prefix)
	}
	if replicas < 1 {
		replicas = 1
	}
	if log == nil {
		log = slog.Default()
	}
	dcc, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: GuardBuckets(prefix)[0], Description: "bigmarket dynamic settings", History: 5, Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open dcc bucket: %w", err)
	}
	bl, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: GuardBuckets(prefix)[1], Description: "bigmarket blacklist", History: 1,
		TTL: blacklistMaxAge, Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open blacklist bucket: %w", err)
	}
	return &GuardKV{dcc: dcc, blacklist: bl, nc: js.Conn(), log: log, advanced: make(chan struct{})}, nil
}

// PutSetting stores a dynamic setting for every node (the caller validated it) and
// returns once this node's watch has applied it.
func (k *GuardKV) PutSetting(ctx context.Context, key, value string) error {
	rev, err := k.dcc.PutString(ctx, key, value)
	if err != nil {
		return fmt.Errorf("put dcc %s: %w", key, err)
	}
	return k.waitApplied(ctx, key, rev)
}

// DeleteSetting removes a setting, so every node goes back to its configured default, and
// returns once this node's watch has applied the removal.
func (k *GuardKV) DeleteSetting(ctx context.Context, key string) error {
	if err := k.dcc.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete dcc %s: %w", key, err)
	}
	// Delete does not tell its revision: the bucket's last one is at least it.
	st, err := k.dcc.Status(ctx)
	if err != nil {
		return fmt.Errorf("delete dcc %s: read the bucket's revision: %w", key, err)
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return fmt.Errorf("delete dcc %s: bucket status %T has no revision", key, st)
	}
	return k.waitApplied(ctx, key, bs.StreamInfo().State.LastSeq)
}

// waitApplied waits until this node's watch has applied the dcc bucket up to rev; the
// write is stored for every node either way, so an error says only that this node had
// not applied it yet when ctx ended. Without a watch there is nothing to wait for.
func (k *GuardKV) waitApplied(ctx context.Context, key string, rev uint64) error {
	for {
		k.mu.Lock()
		done, advanced := !k.watching || k.applied >= rev, k.advanced
		k.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-advanced:
		case <-ctx.Done():
			return fmt.Errorf("dcc %s stored (revision %d) but not yet applied on this node: %w", key, rev, ctx.Err())
		}
	}
}

// setWatching records whether a watch is applying the dcc bucket to this node, and wakes
// the writers waiting for it.
func (k *GuardKV) setWatching(on bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.watching = on
	close(k.advanced)
	k.advanced = make(chan struct{})
}

// noteApplied records that the watch applied the dcc bucket's revision rev.
func (k *GuardKV) noteApplied(rev uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if rev > k.applied {
		k.applied = rev
		close(k.advanced)
		k.advanced = make(chan struct{})
	}
}

// AddBlacklist blacklists userID on every node until the given time.
func (k *GuardKV) AddBlacklist(ctx context.Context, userID string, until time.Time) error {
	if _, err := k.blacklist.PutString(ctx, blacklistKey(userID), until.UTC().Format(time.RFC3339Nano)); err != nil {
		return fmt.Errorf("put blacklist entry: %w", err)
	}
	return nil
}

// RemoveBlacklist lifts userID's blacklisting on every node (customer service).
func (k *GuardKV) RemoveBlacklist(ctx context.Context, userID string) error {
	if err := k.blacklist.Delete(ctx, blacklistKey(userID)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete blacklist entry: %w", err)
	}
	return nil
}

// AddIPBlacklist blacklists a client IP (a guard.IPKey) on every node until the given time.
func (k *GuardKV) AddIPBlacklist(ctx context.Context, key netip.Addr, until time.Time) error {
	if _, err := k.blacklist.PutString(ctx, ipBlacklistKey(key), until.UTC().Format(time.RFC3339Nano)); err != nil {
		return fmt.Errorf("put IP blacklist entry: %w", err)
	}
	return nil
}

// RemoveIPBlacklist lifts a client IP's blacklisting (a guard.IPKey) on every node.
func (k *GuardKV) RemoveIPBlacklist(ctx context.Context, key netip.Addr) error {
	if err := k.blacklist.Delete(ctx, ipBlacklistKey(key)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete IP blacklist entry: %w", err)
	}
	return nil
}

// blacklistKey encodes a user id into the characters KV keys allow.
func blacklistKey(userID string) string { return base64.RawURLEncoding.EncodeToString([]byte(userID)) }

// ipKeyPrefix starts the blacklist keys of client IPs; a user's key (base64url) never
// holds a dot, so the two cannot meet.
const ipKeyPrefix = "ip."

// ipBlacklistKey is the bucket key of a client IP: its operator form, encoded as a user
// id's is.
func ipBlacklistKey(key netip.Addr) string {
	return ipKeyPrefix + base64.RawURLEncoding.EncodeToString([]byte(guard.FormatIPKey(key)))
}

// Watch feeds both buckets to t: it returns once the current values are applied, so a
// node serves with the shared settings from its first request, and keeps applying
// changes until ctx ends. The returned wait blocks until the watches have stopped.
func (k *GuardKV) Watch(ctx context.Context, t GuardTarget) (wait func(), err error) {
	dccW, err := k.dcc.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch dcc bucket: %w", err)
	}
	blW, err := k.blacklist.WatchAll(ctx)
	if err != nil {
		_ = dccW.Stop()
		return nil, fmt.Errorf("watch blacklist bucket: %w", err)
	}
	applyDCC := func(e jetstream.KeyValueEntry) {
		defer k.noteApplied(e.Revision())
		if e.Operation() != jetstream.KeyValuePut {
			t.Override(e.Key(), "")
			return
		}
		t.Override(e.Key(), string(e.Value()))
	}
	applyBL := func(e jetstream.KeyValueEntry) {
		encoded, isIP := strings.CutPrefix(e.Key(), ipKeyPrefix)
		raw, err := base64.RawURLEncoding.DecodeString(encoded)
		var ip netip.Addr
		if err == nil && isIP {
			ip, err = guard.ParseIPKey(string(raw))
		}
		if err != nil {
			k.log.Warn("ignoring blacklist entry with a bad key", "key", e.Key())
			return
		}
		var until time.Time // zero: lifted
		if e.Operation() == jetstream.KeyValuePut {
			if until, err = time.Parse(time.RFC3339Nano, string(e.Value())); err != nil || until.IsZero() {
				k.log.Warn("ignoring blacklist entry with a bad expiry", "key", e.Key())
				return
			}
		}
		if isIP {
			t.BlacklistIP(ip, until)
		} else {
			t.Blacklist(string(raw), until)
		}
	}
	// Initial values end with a nil entry on each watch.
	for _, w := range []struct {
		w     jetstream.KeyWatcher
		apply func(jetstream.KeyValueEntry)
	}{{dccW, applyDCC}, {blW, applyBL}} {
		if err := initial(ctx, w.w, w.apply); err != nil {
			_ = dccW.Stop()
			_ = blW.Stop()
			return nil, err
		}
	}
	// A watch is opened again after a reconnect and whenever it ended (followKV): its
	// replay of the bucket is harmless, as a setting or an expiry applied twice is the
	// same, and a lifted entry's delete marker lifts it again.
	var wg sync.WaitGroup
	k.setWatching(true)
	wg.Go(func() {
		defer k.setWatching(false)
		followKV(ctx, k.nc, dccW, func(ctx context.Context) (jetstream.KeyWatcher, error) {
			return k.dcc.WatchAll(ctx)
		}, applyDCC, k.log, "dynamic settings")
	})
	wg.Go(func() {
		followKV(ctx, k.nc, blW, func(ctx context.Context) (jetstream.KeyWatcher, error) {
			return k.blacklist.WatchAll(ctx)
		}, applyBL, k.log, "blacklist")
	})
	return wg.Wait, nil
}

func initial(ctx context.Context, w jetstream.KeyWatcher, apply func(jetstream.KeyValueEntry)) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("kv watch closed before its initial values")
			}
			if e == nil {
				return nil
			}
			apply(e)
		}
	}
}
