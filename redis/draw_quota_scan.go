package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/reconcile"
)

// Reads of the hot quotas for verify and the benches (reconcile.HotQuotas): a walk of
// every hot copy with SCAN, never on the draw path.

// scanCount is the COUNT hint of one SCAN step.
const scanCount = 1000

// Copies calls fn on every user's hot quota in every activity, with the number of the
// user's pending draws there. On a Cluster it walks each master. A copy written or
// removed during the walk may be seen or not.
func (d *DrawQuota) Copies(ctx context.Context, fn func(reconcile.HotCopy) error) error {
	walk := func(ctx context.Context, c goredis.Cmdable) error {
		iter := c.Scan(ctx, 0, d.prefix+"{u:*}:*", scanCount).Iterator()
		var batch []string
		flush := func() error {
			err := d.readCopies(ctx, c, batch, fn)
			batch = batch[:0]
			return err
		}
		for iter.Next(ctx) {
			if _, _, ok := d.parseQuotaKey(iter.Val()); ok {
				batch = append(batch, iter.Val())
			}
			if len(batch) == scanCount {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := iter.Err(); err != nil {
			return fmt.Errorf("scan hot quotas: %w", err)
		}
		return flush()
	}
	if cc, ok := d.client.(*goredis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error { return walk(ctx, c) })
	}
	return walk(ctx, d.client)
}

// Copy reads one user's hot quota in an activity; false when there is none.
func (d *DrawQuota) Copy(ctx context.Context, userID string, activityID int64) (reconcile.HotCopy, bool, error) {
	var (
		got   reconcile.HotCopy
		found bool
	)
	err := d.readCopies(ctx, d.client, []string{d.quotaKey(userID, activityID)}, func(h reconcile.HotCopy) error {
		got, found = h, true
		return nil
	})
	return got, found, err
}

// parseQuotaKey reads the user and activity of a quota key, false for any other key
// (pending draws, markers, indexes).
func (d *DrawQuota) parseQuotaKey(key string) (string, int64, bool) {
	rest, ok := strings.CutPrefix(key, d.prefix+"{u:")
	if !ok {
		return "", 0, false
	}
	i := strings.LastIndex(rest, "}:")
	if i < 0 {
		return "", 0, false
	}
	id, err := strconv.ParseInt(rest[i+2:], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return rest[:i], id, true
}

// readCopies reads the quota keys and their pending draws in one pipeline and calls fn
// on each copy still there.
func (d *DrawQuota) readCopies(ctx context.Context, c goredis.Cmdable, keys []string, fn func(reconcile.HotCopy) error) error {
	if len(keys) == 0 {
		return nil
	}
	pipe := c.Pipeline()
	quotas := make([]*goredis.MapStringStringCmd, len(keys))
	pending := make([]*goredis.StringSliceCmd, len(keys))
	markers := make([]*goredis.StringCmd, len(keys))
	for i, k := range keys {
		quotas[i] = pipe.HGetAll(ctx, k)
		pending[i] = pipe.HKeys(ctx, k+":p")
		if user, _, ok := d.parseQuotaKey(k); ok && d.fence {
			markers[i] = pipe.Get(ctx, d.markerKey(d.userSlot(user)))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return fmt.Errorf("read hot quotas: %w", err)
	}
	for i, k := range keys {
		h := quotas[i].Val()
		if len(h) == 0 {
			continue
		}
		// Fenced, a copy not loaded under its slot's epoch is left from before a failover
		// and is loaded again before any take reads it (see Fence): it is not the hot quota.
		if markers[i] != nil && h["e"] != markers[i].Val() {
			continue
		}
		user, activityID, _ := d.parseQuotaKey(k)
		cp := reconcile.HotCopy{UserID: user, ActivityID: activityID, Quota: hotQuota(h)}
		for _, f := range pending[i].Val() {
			if strings.HasPrefix(f, "i:") {
				cp.Pending++
			}
		}
		if err := fn(cp); err != nil {
			return err
		}
	}
	return nil
}

// hotQuota reads a quota hash with the rows of whatever periods it holds.
func hotQuota(h map[string]string) activity.Quota {
	n := func(f string) int64 { v, _ := strconv.ParseInt(h[f], 10, 64); return v }
	var q activity.Quota
	if h["a"] == "1" {
		q.Account = &activity.Account{Total: n("t"), TotalSurplus: n("ts"), Day: n("d"), DaySurplus: n("ds"), Month: n("m"), MonthSurplus: n("ms")}
	}
	if k := h["mk"]; k != "" {
		q.Month = &activity.Period{Key: k, Count: n("mc"), Surplus: n("mu")}
	}
	if k := h["dk"]; k != "" {
		q.Day = &activity.Period{Key: k, Count: n("dc"), Surplus: n("du")}
	}
	return q
}
