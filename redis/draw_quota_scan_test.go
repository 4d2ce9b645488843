package redis

import (
	"context"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/reconcile"
)

// TestDrawQuotaCopies walks the hot copies of three users: each is seen once, with its
// own periods' rows and its pending draws counted; pending-draw hashes, markers and
// indexes are not copies, and a copy of another prefix is not seen.
func TestDrawQuotaCopies(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			client := be.client(t)
			d := newDrawQuota(t, client)
			ctx := t.Context()
			key := func(user string) activity.QuotaKey {
				return activity.QuotaKey{UserID: user, ActivityID: 100301, Day: "2026-12-02", Month: "2026-12"}
			}
			for _, u := range []string{"cp_a", "cp_b", "cp_c"} {
				loadHot(t, d, key(u), activity.Quota{Account: acct(5, 5, 3, 3, 4, 4)})
			}
			// A copy under another prefix (written as the load script writes one).
			other := NewDrawQuota(client, testenv.Unique("fq"))
			if err := client.HSet(ctx, other.quotaKey("cp_a", 100301), "a", "1", "t", "9", "ts", "9").Err(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { client.Del(context.Background(), other.quotaKey("cp_a", 100301)) })
			now := time.Now()
			if _, _, err := d.Take(ctx, key("cp_a"), "oa", now, time.Minute); err != nil {
				t.Fatal(err)
			}
			if err := d.Clear(ctx, "cp_a", 100301, "oa"); err != nil {
				t.Fatal(err)
			}
			for _, o := range []string{"ob1", "ob2"} {
				if _, _, err := d.Take(ctx, key("cp_b"), o, now, time.Minute); err != nil {
					t.Fatal(err)
				}
			}
			got := map[string]reconcile.HotCopy{}
			if err := d.Copies(ctx, func(h reconcile.HotCopy) error {
				if _, dup := got[h.UserID]; dup {
					t.Errorf("copy of %s seen twice", h.UserID)
				}
				got[h.UserID] = h
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(got) != 3 {
				t.Fatalf("copies %+v, want cp_a, cp_b, cp_c", got)
			}
			for u, pending := range map[string]int{"cp_a": 0, "cp_b": 2, "cp_c": 0} {
				h := got[u]
				want, _, err := d.Read(ctx, key(u))
				if err != nil {
					t.Fatal(err)
				}
				if h.ActivityID != 100301 || h.Pending != pending || reconcile.HotQuotaDiff(h.Quota, want) != "" {
					t.Errorf("copy of %s: %+v (pending %d), read %+v; want pending %d", u, h.Quota, h.Pending, want, pending)
				}
			}
			if a := got["cp_a"].Quota; a.Day == nil || a.Day.Key != "2026-12-02" || a.Day.Surplus != 2 || a.Month == nil || a.Month.Surplus != 3 {
				t.Errorf("cp_a's rows after one take: %+v %+v", a.Day, a.Month)
			}
			h, ok, err := d.Copy(ctx, "cp_b", 100301)
			if err != nil || !ok || h.Pending != 2 || h.Quota.Account.TotalSurplus != 3 {
				t.Errorf("Copy(cp_b) = %+v %v %v", h, ok, err)
			}
			if _, ok, err := d.Copy(ctx, "cp_none", 100301); err != nil || ok {
				t.Errorf("Copy of no copy = %v %v", ok, err)
			}
		})
	}
}
