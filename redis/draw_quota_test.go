package redis

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/flash"
	"github.com/bigmarket/bigmarket/internal/testenv"
)

func newDrawQuota(t *testing.T, client goredis.UniversalClient) *DrawQuota {
	t.Helper()
	d := NewDrawQuota(client, testenv.Unique("fq"))
	// Fenced where the server can fence (real Redis), as serve runs it.
	if _, err := ProbeFence(t.Context(), client); err == nil {
		d.Fence(true)
	}
	dropMarkers(t, client, d)
	if err := d.MarkReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	return d
}

// loadHot loads q for key through the take script's epoch, as the flash draw does.
func loadHot(t *testing.T, d *DrawQuota, key activity.QuotaKey, q activity.Quota) {
	t.Helper()
	ctx := t.Context()
	_, _, err := d.Take(ctx, key, "probe", time.Now(), time.Second)
	missing, ok := errors.AsType[*flash.HotMissing](err)
	if !ok {
		t.Fatalf("Take before load = %v, want HotMissing", err)
	}
	if err := d.Load(ctx, key, missing.Epoch, q, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
}

func acct(total, totalLeft, day, dayLeft, month, monthLeft int64) *activity.Account {
	return &activity.Account{Total: total, TotalSurplus: totalLeft, Day: day, DaySurplus: dayLeft, Month: month, MonthSurplus: monthLeft}
}

// TestDrawQuotaTakeIsQuotaTake runs the take script and activity.Quota.Take on the same
// quotas: the outcome, the rows after and the rule inputs (draws before this one in
// total and today) must be the same.
func TestDrawQuotaTakeIsQuotaTake(t *testing.T) {
	const day, month = "2026-12-02", "2026-12"
	cases := []struct {
		name string
		q    activity.Quota
	}{
		{"no account", activity.Quota{}},
		{"total used up", activity.Quota{Account: acct(5, 0, 3, 3, 4, 4)}},
		{"fresh account, no rows", activity.Quota{Account: acct(5, 5, 3, 3, 4, 4)}},
		{"month limit zero", activity.Quota{Account: acct(5, 5, 3, 3, 0, 0)}},
		{"day limit zero", activity.Quota{Account: acct(5, 5, 0, 0, 4, 4)}},
		{"rows of today", activity.Quota{Account: acct(10, 7, 3, 1, 6, 3),
			Month: &activity.Period{Key: month, Count: 6, Surplus: 3}, Day: &activity.Period{Key: day, Count: 3, Surplus: 1}}},
		{"day row used up", activity.Quota{Account: acct(10, 7, 3, 0, 6, 3),
			Month: &activity.Period{Key: month, Count: 6, Surplus: 3}, Day: &activity.Period{Key: day, Count: 3, Surplus: 0}}},
		{"month row used up", activity.Quota{Account: acct(10, 7, 3, 3, 6, 0),
			Month: &activity.Period{Key: month, Count: 6, Surplus: 0}}},
		{"recharged rows", activity.Quota{Account: acct(12, 9, 5, 3, 8, 5),
			Month: &activity.Period{Key: month, Count: 8, Surplus: 5}, Day: &activity.Period{Key: day, Count: 5, Surplus: 3}}},
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			d := newDrawQuota(t, be.client(t))
			for i, c := range cases {
				key := activity.QuotaKey{UserID: fmt.Sprintf("u%d", i), ActivityID: 100301, Day: day, Month: month}
				loadHot(t, d, key, c.q)
				want := c.q.Clone()
				for n := range 5 { // until it runs out, or five draws
					wantErr := want.Take(day, month)
					p, resumed, err := d.Take(t.Context(), key, fmt.Sprintf("o%d-%d", i, n), time.Now(), time.Minute)
					if !errors.Is(err, wantErr) || (wantErr == nil) != (err == nil) {
						t.Fatalf("%s draw %d: Take = %v, Quota.Take = %v", c.name, n, err, wantErr)
					}
					if err != nil {
						break
					}
					if resumed {
						t.Fatalf("%s draw %d: resumed a draw whose lease is live", c.name, n)
					}
					if p.Score != want.UsedTotal()-1 || p.DrawsToday != want.UsedToday()-1 || p.Day != day || p.Month != month {
						t.Errorf("%s draw %d: pending %+v, want score %d, today %d", c.name, n, p, want.UsedTotal()-1, want.UsedToday()-1)
					}
					got, ok, err := d.Read(t.Context(), key)
					if err != nil || !ok {
						t.Fatalf("Read = %v, %v", ok, err)
					}
					if !reflect.DeepEqual(got, want) {
						t.Fatalf("%s draw %d: hot quota %s, want %s", c.name, n, show(got), show(want))
					}
				}
			}
		})
	}
}

// TestDrawQuotaRollsOver takes on the next day and month: the rows of the earlier
// periods are not the current ones, so new rows start from the account's limits; a node
// whose clock lags takes from the later period already in use.
func TestDrawQuotaRollsOver(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			d := newDrawQuota(t, be.client(t))
			ctx := t.Context()
			key := activity.QuotaKey{UserID: "roll", ActivityID: 1, Day: "2026-11-30", Month: "2026-11"}
			q := activity.Quota{Account: acct(10, 8, 2, 0, 5, 3),
				Month: &activity.Period{Key: "2026-11", Count: 5, Surplus: 3}, Day: &activity.Period{Key: "2026-11-30", Count: 2, Surplus: 0}}
			loadHot(t, d, key, q)
			if _, _, err := d.Take(ctx, key, "a", time.Now(), time.Minute); !errors.Is(err, activity.ErrDayQuotaExhausted) {
				t.Fatalf("Take on a used-up day = %v", err)
			}
			next := key
			next.Day, next.Month = "2026-12-01", "2026-12"
			want := q.Clone()
			want.Month, want.Day = nil, nil
			if err := want.Take(next.Day, next.Month); err != nil {
				t.Fatal(err)
			}
			p, _, err := d.Take(ctx, next, "b", time.Now(), time.Minute)
			if err != nil || p.Day != next.Day || p.Month != next.Month || p.DrawsToday != 0 || p.Score != 2 {
				t.Fatalf("Take next day = %+v, %v", p, err)
			}
			got, _, _ := d.Read(ctx, next)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("after rollover %s, want %s", show(got), show(want))
			}
			// A lagging clock still names the old day: the unit comes from the new one.
			p, _, err = d.Take(ctx, key, "c", time.Now(), time.Minute)
			if err != nil || p.Day != next.Day || p.Month != next.Month || p.DrawsToday != 1 {
				t.Fatalf("Take with a lagging clock = %+v, %v", p, err)
			}
		})
	}
}

// TestDrawQuotaPending: a pending draw is resumed (no unit taken) once its lease ends or
// is released, its outcome once fixed stays, and a cleared draw is gone.
func TestDrawQuotaPending(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			d := newDrawQuota(t, be.client(t))
			ctx := t.Context()
			key := activity.QuotaKey{UserID: "pend", ActivityID: 7, Day: "2026-12-02", Month: "2026-12"}
			loadHot(t, d, key, activity.Quota{Account: acct(3, 3, 3, 3, 3, 3)})
			now := time.Now()
			p1, _, err := d.Take(ctx, key, "o1", now, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			// Leased: a concurrent draw takes its own unit.
			p2, resumed, err := d.Take(ctx, key, "o2", now, time.Minute)
			if err != nil || resumed || p2.OrderID != "o2" {
				t.Fatalf("concurrent Take = %+v, %v, %v", p2, resumed, err)
			}
			o := flash.Outcome{AwardID: 101, AwardTitle: "随机积分", Sort: 1, RuleValue: "1,100", AwardTime: now.UnixMilli()}
			if got, err := d.Fix(ctx, key.UserID, key.ActivityID, "o1", o, nil); err != nil || got != o {
				t.Fatalf("Fix = %+v, %v", got, err)
			}
			other := o
			other.AwardID = 105
			if got, err := d.Fix(ctx, key.UserID, key.ActivityID, "o1", other, nil); err != nil || got != o {
				t.Fatalf("second Fix = %+v, %v; want the first outcome kept", got, err)
			}
			if err := d.Release(ctx, key.UserID, key.ActivityID, "o1"); err != nil {
				t.Fatal(err)
			}
			p, resumed, err := d.Take(ctx, key, "o3", now, time.Minute)
			if err != nil || !resumed || p.OrderID != "o1" || p.Outcome == nil || *p.Outcome != o || p.Score != p1.Score {
				t.Fatalf("Take after release = %+v, %v, %v; want o1 resumed with its outcome", p, resumed, err)
			}
			if q, _, _ := d.Read(ctx, key); q.Account.TotalSurplus != 1 {
				t.Fatalf("total surplus %d after two units and a resume, want 1", q.Account.TotalSurplus)
			}
			// o2's lease runs out: the sweep finds it and resumes it.
			later := now.Add(2 * time.Minute)
			refs, err := d.Abandoned(ctx, later, 10)
			if err != nil || len(refs) != 2 {
				t.Fatalf("Abandoned = %+v, %v; want o1 and o2", refs, err)
			}
			rp, ok, err := d.Resume(ctx, flash.PendingRef{UserID: key.UserID, ActivityID: key.ActivityID, OrderID: "o2"}, later, time.Minute)
			if err != nil || !ok || rp.OrderID != "o2" || rp.Outcome != nil {
				t.Fatalf("Resume = %+v, %v, %v", rp, ok, err)
			}
			if _, ok, _ := d.Resume(ctx, flash.PendingRef{UserID: key.UserID, ActivityID: key.ActivityID, OrderID: "o2"}, later, time.Minute); ok {
				t.Fatal("Resume of a leased draw succeeded")
			}
			for _, id := range []string{"o1", "o2"} {
				if err := d.Clear(ctx, key.UserID, key.ActivityID, id); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := d.Fix(ctx, key.UserID, key.ActivityID, "o2", o, nil); !errors.Is(err, flash.ErrPendingGone) {
				t.Fatalf("Fix of a cleared draw = %v", err)
			}
			if refs, _ := d.Abandoned(ctx, later, 10); len(refs) != 0 {
				t.Fatalf("Abandoned after clear = %+v", refs)
			}
			p, resumed, err = d.Take(ctx, key, "o4", later, time.Minute)
			if err != nil || resumed || p.OrderID != "o4" {
				t.Fatalf("Take after clear = %+v, %v, %v", p, resumed, err)
			}
		})
	}
}

// TestDrawQuotaLoadNeedsMarker: without the slot's marker nothing loads (the writer may
// be behind), and a load read under an epoch that was replaced is refused.
func TestDrawQuotaLoadNeedsMarker(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			client := be.client(t)
			d := NewDrawQuota(client, testenv.Unique("fq"))
			dropMarkers(t, client, d)
			ctx := t.Context()
			key := activity.QuotaKey{UserID: "m", ActivityID: 1, Day: "2026-12-02", Month: "2026-12"}
			if _, _, err := d.Take(ctx, key, "o", time.Now(), time.Second); !errors.Is(err, flash.ErrHotNotReady) {
				t.Fatalf("Take without markers = %v", err)
			}
			if ok, err := d.Ready(ctx); err != nil || ok {
				t.Fatalf("Ready = %v, %v", ok, err)
			}
			if err := d.MarkReady(ctx); err != nil {
				t.Fatal(err)
			}
			if ok, err := d.Ready(ctx); err != nil || !ok {
				t.Fatalf("Ready after MarkReady = %v, %v", ok, err)
			}
			_, _, err := d.Take(ctx, key, "o", time.Now(), time.Second)
			missing, ok := errors.AsType[*flash.HotMissing](err)
			if !ok {
				t.Fatalf("Take = %v", err)
			}
			// The slot is lost and restored between the SQL read and the load.
			marker := d.markerKey(d.userSlot(key.UserID))
			if err := client.Del(ctx, marker).Err(); err != nil {
				t.Fatal(err)
			}
			if err := d.MarkReady(ctx); err != nil {
				t.Fatal(err)
			}
			if err := d.Load(ctx, key, missing.Epoch, activity.Quota{Account: acct(1, 1, 1, 1, 1, 1)}, time.Now().Add(time.Hour)); !errors.Is(err, flash.ErrHotStale) {
				t.Fatalf("Load under a replaced epoch = %v", err)
			}
		})
	}
}

// TestDrawQuotaRaise: a raise adds what a recharge added to SQL, as Quota.Add does, once.
func TestDrawQuotaRaise(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			d := newDrawQuota(t, be.client(t))
			ctx := t.Context()
			key := activity.QuotaKey{UserID: "r", ActivityID: 1, Day: "2026-12-02", Month: "2026-12"}
			// SQL before: an account with today's rows; the hot copy has taken two more units.
			sqlQ := activity.Quota{Account: acct(5, 4, 2, 1, 3, 2),
				Month: &activity.Period{Key: key.Month, Count: 3, Surplus: 2}, Day: &activity.Period{Key: key.Day, Count: 2, Surplus: 1}}
			loadHot(t, d, key, sqlQ)
			if _, _, err := d.Take(ctx, key, "x", time.Now(), time.Minute); err != nil {
				t.Fatal(err)
			}
			hot, _, _ := d.Read(ctx, key)
			c := activity.Count{Total: 10, Day: 4, Month: 6}
			sqlQ.Add(c)
			hot.Add(c)
			for range 2 {
				if err := d.Raise(ctx, key, sqlQ); err != nil {
					t.Fatal(err)
				}
			}
			got, _, _ := d.Read(ctx, key)
			if !reflect.DeepEqual(got, hot) {
				t.Fatalf("after raise %s, want %s", show(got), show(hot))
			}
			// No account in the hot copy yet: the raise creates it.
			k2 := key
			k2.UserID = "r2"
			loadHot(t, d, k2, activity.Quota{})
			var fresh activity.Quota
			fresh.Add(c)
			if err := d.Raise(ctx, k2, fresh); err != nil {
				t.Fatal(err)
			}
			if got, _, _ := d.Read(ctx, k2); !reflect.DeepEqual(got, fresh) {
				t.Fatalf("raise of a new account %s, want %s", show(got), show(fresh))
			}
			// No hot copy: nothing is written (the next load reads SQL).
			k3 := key
			k3.UserID = "r3"
			if err := d.Raise(ctx, k3, fresh); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := d.Read(ctx, k3); ok {
				t.Fatal("raise created a hot copy")
			}
		})
	}
}

// TestSlotTags: every slot's tag hashes to it, and a user's marker shares the user's slot.
func TestSlotTags(t *testing.T) {
	for slot := range slots {
		if got := keySlot("x{" + slotTag(slot) + "}y"); got != slot {
			t.Fatalf("tag of slot %d hashes to %d", slot, got)
		}
	}
	d := NewDrawQuota(nil, "p").OnCluster(true)
	for _, u := range []string{"xiaofuge", "user-00001", "用户", "a}b"} {
		if keySlot(d.quotaKey(u, 9)) != keySlot(d.markerKey(d.userSlot(u))) {
			t.Errorf("user %q: marker in another slot", u)
		}
	}
}

// dropMarkers deletes d's slot markers when the test ends, so that runs on a shared
// Redis do not pile them up.
func dropMarkers(t *testing.T, client goredis.UniversalClient, d *DrawQuota) {
	t.Cleanup(func() {
		pipe := client.Pipeline()
		for slot := range d.shards {
			pipe.Del(context.Background(), d.markerKey(slot), d.fenceKey(slot))
		}
		_, _ = pipe.Exec(context.Background())
	})
}

func show(q activity.Quota) string {
	s := "{"
	if q.Account != nil {
		s += fmt.Sprintf("acct %+v", *q.Account)
	}
	if q.Month != nil {
		s += fmt.Sprintf(" month %+v", *q.Month)
	}
	if q.Day != nil {
		s += fmt.Sprintf(" day %+v", *q.Day)
	}
	return s + "}"
}

// TestDrawQuotaRefund: a pending draw without an outcome gives its unit back exactly (the
// quota is as before the take) and is gone; one with an outcome keeps its unit.
func TestDrawQuotaRefund(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			d := newDrawQuota(t, be.client(t))
			ctx := t.Context()
			key := activity.QuotaKey{UserID: "refund", ActivityID: 3, Day: "2026-12-02", Month: "2026-12"}
			loadHot(t, d, key, activity.Quota{Account: acct(4, 4, 2, 2, 3, 3)})
			if _, _, err := d.Take(ctx, key, "kept", time.Now(), time.Minute); err != nil {
				t.Fatal(err)
			}
			before, _, _ := d.Read(ctx, key)
			if _, _, err := d.Take(ctx, key, "lost", time.Now(), time.Minute); err != nil {
				t.Fatal(err)
			}
			if ok, err := d.Refund(ctx, key.UserID, key.ActivityID, "lost"); err != nil || !ok {
				t.Fatalf("Refund = %v, %v", ok, err)
			}
			if got, _, _ := d.Read(ctx, key); !reflect.DeepEqual(got, before) {
				t.Fatalf("after refund %s, want %s", show(got), show(before))
			}
			if ok, _ := d.Refund(ctx, key.UserID, key.ActivityID, "lost"); ok {
				t.Fatal("second refund of the same draw gave a unit back")
			}
			if _, err := d.Fix(ctx, key.UserID, key.ActivityID, "kept", flash.Outcome{AwardID: 102}, nil); err != nil {
				t.Fatal(err)
			}
			if ok, _ := d.Refund(ctx, key.UserID, key.ActivityID, "kept"); ok {
				t.Fatal("refund of a draw with an outcome gave its unit back")
			}
			if refs, _ := d.Abandoned(ctx, time.Now().Add(time.Hour), 10); len(refs) != 1 || refs[0].OrderID != "kept" {
				t.Fatalf("pending after refund: %+v", refs)
			}
		})
	}
}

// TestDrawQuotaUnwrittenCreditWins: a credit win's event joins the user's unwritten
// credit wins in the fix that stores its outcome, and only then (not on a second fix of
// the same draw, nor for a draw no longer pending); Unwritten returns the user's own,
// oldest first; Forget drops exactly the events named.
func TestDrawQuotaUnwrittenCreditWins(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			client := be.client(t)
			d := newDrawQuota(t, client)
			ctx := t.Context()
			now := time.Now().Truncate(time.Millisecond)
			event := func(user, order string, at time.Time) flash.Event {
				return flash.Event{OrderID: order, UserID: user, ActivityID: 7, ActivityName: "a", StrategyID: 9,
					OrderTime: at, Day: "2026-12-02", Month: "2026-12", AwardID: 101, AwardTitle: "随机积分",
					RuleValue: "1,100", AwardTime: at, Credit: true}
			}
			keys := map[string]activity.QuotaKey{}
			for _, u := range []string{"gw1", "gw2"} {
				keys[u] = activity.QuotaKey{UserID: u, ActivityID: 7, Day: "2026-12-02", Month: "2026-12"}
				loadHot(t, d, keys[u], activity.Quota{Account: acct(9, 9, 9, 9, 9, 9)})
			}
			fix := func(user, order string, at time.Time, keep bool) {
				t.Helper()
				if _, _, err := d.Take(ctx, keys[user], order, at, time.Minute); err != nil {
					t.Fatal(err)
				}
				o := flash.Outcome{AwardID: 101, AwardTitle: "随机积分", RuleValue: "1,100", AwardTime: at.UnixMilli(), Credit: keep}
				var e *flash.Event
				if keep {
					ev := event(user, order, at)
					e = &ev
				}
				if _, err := d.Fix(ctx, user, 7, order, o, e); err != nil {
					t.Fatal(err)
				}
			}
			fix("gw1", "b", now.Add(time.Second), true)
			fix("gw1", "a", now, true)
			fix("gw1", "c", now, false) // not a credit win: not kept
			fix("gw2", "z", now, true)
			// A second fix of a fixed draw keeps nothing new, even when it names another event.
			other := event("gw1", "b", now.Add(time.Hour))
			if _, err := d.Fix(ctx, "gw1", 7, "b", flash.Outcome{AwardID: 105}, &other); err != nil {
				t.Fatal(err)
			}
			// A draw no longer pending keeps nothing.
			gone := event("gw1", "gone", now)
			if _, err := d.Fix(ctx, "gw1", 7, "gone", flash.Outcome{AwardID: 101}, &gone); !errors.Is(err, flash.ErrPendingGone) {
				t.Fatalf("Fix of a draw never taken = %v", err)
			}
			got, err := d.Unwritten(ctx, "gw1")
			if want := []flash.Event{event("gw1", "a", now), event("gw1", "b", now.Add(time.Second))}; err != nil || !eventsEqual(got, want) {
				t.Fatalf("Unwritten(gw1) = %+v, %v; want %+v", got, err, want)
			}
			if ttl := client.PTTL(ctx, d.unwrittenKey("gw1")).Val(); ttl <= 0 || ttl > unwrittenTTL {
				t.Errorf("unwritten wins live %v, want (0, %v]", ttl, unwrittenTTL)
			}
			if err := d.Forget(ctx, []flash.Event{event("gw1", "a", now), event("gw2", "z", now)}); err != nil {
				t.Fatal(err)
			}
			if got, err := d.Unwritten(ctx, "gw1"); err != nil || !eventsEqual(got, []flash.Event{event("gw1", "b", now.Add(time.Second))}) {
				t.Fatalf("Unwritten(gw1) after forgetting a = %+v, %v; want b", got, err)
			}
			if got, err := d.Unwritten(ctx, "gw2"); err != nil || len(got) != 0 {
				t.Fatalf("Unwritten(gw2) after forgetting z = %+v, %v; want none", got, err)
			}
			if err := d.Forget(ctx, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func eventsEqual(a, b []flash.Event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].OrderTime.Equal(b[i].OrderTime) || !a[i].AwardTime.Equal(b[i].AwardTime) {
			return false
		}
		x, y := a[i], b[i]
		x.OrderTime, x.AwardTime, y.OrderTime, y.AwardTime = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if x != y {
			return false
		}
	}
	return true
}

// TestDrawQuotaLoadTake: the first touch's load and take in one script takes as a load
// followed by a take does; under a replaced epoch it loads and takes nothing; when another
// request loaded the quota first it takes from that one; and racing first touches of one
// user take exactly the units the quota has.
func TestDrawQuotaLoadTake(t *testing.T) {
	const day, month = "2026-12-02", "2026-12"
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			client := be.client(t)
			d := newDrawQuota(t, client)
			ctx := t.Context()
			expire := time.Now().Add(time.Hour)
			epochOf := func(key activity.QuotaKey) string {
				t.Helper()
				_, _, err := d.Take(ctx, key, "probe", time.Now(), time.Second)
				missing, ok := errors.AsType[*flash.HotMissing](err)
				if !ok {
					t.Fatalf("Take before load = %v, want HotMissing", err)
				}
				return missing.Epoch
			}

			// Loaded and taken as Load + Take would.
			key := activity.QuotaKey{UserID: "lt1", ActivityID: 100301, Day: day, Month: month}
			q := activity.Quota{Account: acct(10, 7, 3, 1, 6, 3),
				Month: &activity.Period{Key: month, Count: 6, Surplus: 3}, Day: &activity.Period{Key: day, Count: 3, Surplus: 1}}
			p, resumed, err := d.LoadTake(ctx, key, epochOf(key), q, expire, "o1", time.Now(), time.Minute)
			if err != nil || resumed || p.OrderID != "o1" || p.Score != 3 || p.DrawsToday != 2 {
				t.Fatalf("LoadTake = %+v, %v, %v; want o1 with score 3, today 2", p, resumed, err)
			}
			want := q.Clone()
			if err := want.Take(day, month); err != nil {
				t.Fatal(err)
			}
			if got, ok, err := d.Read(ctx, key); err != nil || !ok || !reflect.DeepEqual(got, want) {
				t.Fatalf("after LoadTake: %+v %v %v, want %+v", got, ok, err, want)
			}
			if _, _, err := d.Take(ctx, key, "o2", time.Now(), time.Minute); !errors.Is(err, activity.ErrDayQuotaExhausted) {
				t.Fatalf("Take after LoadTake = %v, want the day used up", err)
			}

			// A replaced epoch: nothing loaded, nothing taken.
			stale := activity.QuotaKey{UserID: "lt2", ActivityID: 100301, Day: day, Month: month}
			epoch := epochOf(stale)
			if err := client.Del(ctx, d.markerKey(d.userSlot(stale.UserID))).Err(); err != nil {
				t.Fatal(err)
			}
			if err := d.MarkReady(ctx); err != nil {
				t.Fatal(err)
			}
			if _, _, err := d.LoadTake(ctx, stale, epoch, q, expire, "s1", time.Now(), time.Minute); !errors.Is(err, flash.ErrHotStale) {
				t.Fatalf("LoadTake under a replaced epoch = %v, want ErrHotStale", err)
			}
			if _, ok, err := d.Read(ctx, stale); err != nil || ok {
				t.Fatalf("quota after a stale LoadTake: present %v, %v", ok, err)
			}
			if n, err := client.HLen(ctx, d.pendingKey(stale.UserID, stale.ActivityID)).Result(); err != nil || n != 0 {
				t.Fatalf("pending draws after a stale LoadTake: %d, %v", n, err)
			}

			// Another request loaded first: its quota is the one taken from.
			other := activity.QuotaKey{UserID: "lt3", ActivityID: 100301, Day: day, Month: month}
			epoch = epochOf(other)
			loadHot(t, d, other, activity.Quota{Account: acct(1, 1, 1, 1, 1, 1)})
			if _, _, err := d.LoadTake(ctx, other, epoch, activity.Quota{Account: acct(9, 9, 9, 9, 9, 9)}, expire, "x1", time.Now(), time.Minute); err != nil {
				t.Fatal(err)
			}
			if _, _, err := d.LoadTake(ctx, other, epoch, activity.Quota{Account: acct(9, 9, 9, 9, 9, 9)}, expire, "x2", time.Now(), time.Minute); !errors.Is(err, activity.ErrTotalQuotaExhausted) {
				t.Fatalf("second LoadTake on a quota of one = %v, want the total used up", err)
			}

			// Racing first touches of one user: each loads under the same epoch; the units
			// taken are exactly the quota's.
			race := activity.QuotaKey{UserID: "lt4", ActivityID: 100301, Day: day, Month: month}
			epoch = epochOf(race)
			const racers, units = 40, 7
			rq := activity.Quota{Account: acct(units, units, units, units, units, units)}
			errs := make(chan error, racers)
			for i := range racers {
				go func() {
					_, _, err := d.LoadTake(ctx, race, epoch, rq, expire, fmt.Sprintf("r%d", i), time.Now(), time.Minute)
					errs <- err
				}()
			}
			taken := 0
			for range racers {
				switch err := <-errs; {
				case err == nil:
					taken++
				case !errors.Is(err, activity.ErrTotalQuotaExhausted):
					t.Errorf("racing LoadTake: %v", err)
				}
			}
			if taken != units {
				t.Errorf("racing first touches took %d units of a quota of %d", taken, units)
			}
			if got, _, err := d.Read(ctx, race); err != nil || got.Account == nil || got.Account.TotalSurplus != 0 {
				t.Errorf("after the race: %+v, %v; want the total used up", got, err)
			}
		})
	}
}
