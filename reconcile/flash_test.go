package reconcile

import (
	"testing"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/strategy"
)

func TestDrawEvents(t *testing.T) {
	ev := DrawEvent{Seq: 7, Stored: old, OrderID: "o1", UserID: "u1", ActivityID: 100301, AwardID: 102}
	full := DrawWritten{OrderUser: "u1", OrderState: activity.OrderUsed, RecordFound: true, RecordUser: "u1",
		RecordAward: 102, TaskTopic: award.TopicSendAward, TaskUser: "u1"}
	change := func(f func(*DrawWritten)) DrawWritten { w := full; f(&w); return w }
	for _, c := range []struct {
		name    string
		written DrawWritten
		bad     bool
	}{
		{"all rows", full, false},
		{"nothing written", DrawWritten{}, true},
		{"order missing", change(func(w *DrawWritten) { w.OrderState = "" }), true},
		{"order left create", change(func(w *DrawWritten) { w.OrderState = activity.OrderCreate }), true},
		{"order of another user", change(func(w *DrawWritten) { w.OrderUser = "u2" }), true},
		{"record missing", change(func(w *DrawWritten) { w.RecordFound = false }), true},
		{"record of another award", change(func(w *DrawWritten) { w.RecordAward = 101 }), true},
		{"record of another user", change(func(w *DrawWritten) { w.RecordUser = "u2" }), true},
		{"task missing", change(func(w *DrawWritten) { w.TaskTopic = "" }), true},
		{"task of another topic", change(func(w *DrawWritten) { w.TaskTopic = "send_rebate" }), true},
	} {
		ds := DrawEvents([]DrawEvent{ev}, map[string]DrawWritten{"o1": c.written})
		if c.bad {
			wantKinds(t, c.name, ds, KindDrawUnwritten)
			if len(ds) == 1 && (ds[0].Key != "o1" || ds[0].UserID != "u1") {
				t.Errorf("%s: %v names the wrong rows", c.name, ds[0])
			}
		} else {
			wantKinds(t, c.name, ds)
		}
	}
	// Rows of other orders do not stand in for an event's.
	ds := DrawEvents([]DrawEvent{ev, {OrderID: "o2", UserID: "u1", AwardID: 102}}, map[string]DrawWritten{"o1": full})
	wantKinds(t, "second event unwritten", ds, KindDrawUnwritten)
}

func TestHotQuotas(t *testing.T) {
	q := func(ts, ms, ds int64) activity.Quota {
		return activity.Quota{
			Account: &activity.Account{Total: 10, TotalSurplus: ts, Month: 10, MonthSurplus: ms, Day: 5, DaySurplus: ds},
			Month:   &activity.Period{Key: "2026-05", Count: 10, Surplus: ms},
			Day:     &activity.Period{Key: "2026-05-01", Count: 5, Surplus: ds},
		}
	}
	hot := func(quota activity.Quota, pending int) HotCopy {
		return HotCopy{UserID: "u1", ActivityID: 100301, Quota: quota, Pending: pending}
	}
	noDay := q(7, 7, 2)
	noDay.Day = nil
	noAccount := q(7, 7, 2)
	noAccount.Account = nil
	otherDay := q(7, 7, 2)
	otherDay.Day = &activity.Period{Key: "2026-04-30", Count: 5, Surplus: 2}
	for _, c := range []struct {
		name     string
		pair     QuotaPair
		bad      bool
		skipped  int
		compared int
	}{
		{"equal", QuotaPair{hot(q(7, 7, 2), 0), q(7, 7, 2)}, false, 0, 1},
		{"hot took a unit SQL lacks", QuotaPair{hot(q(6, 6, 1), 0), q(7, 7, 2)}, true, 0, 1},
		{"SQL took a unit twice", QuotaPair{hot(q(7, 7, 2), 0), q(6, 6, 1)}, true, 0, 1},
		{"day row differs", QuotaPair{hot(q(7, 7, 2), 0), func() activity.Quota { s := q(7, 7, 2); s.Day.Surplus = 1; return s }()}, true, 0, 1},
		{"SQL lacks the hot day row", QuotaPair{hot(q(7, 7, 2), 0), noDay}, true, 0, 1},
		{"SQL row of another day", QuotaPair{hot(q(7, 7, 2), 0), otherDay}, true, 0, 1},
		{"SQL has no account", QuotaPair{hot(q(7, 7, 2), 0), noAccount}, true, 0, 1},
		{"hot holds no day row", QuotaPair{hot(noDay, 0), q(7, 7, 2)}, false, 0, 1},
		{"pending draw: not compared", QuotaPair{hot(q(6, 6, 1), 1), q(7, 7, 2)}, false, 1, 0},
	} {
		ds, compared, skipped := HotQuotas([]QuotaPair{c.pair})
		if c.bad {
			wantKinds(t, c.name, ds, KindHotQuota)
		} else {
			wantKinds(t, c.name, ds)
		}
		if compared != c.compared || skipped != c.skipped {
			t.Errorf("%s: compared %d skipped %d, want %d %d", c.name, compared, skipped, c.compared, c.skipped)
		}
	}
}

// oneWinStrategy has award 101 as the luck award (stock, but a fallback), 102 and 103
// stocked, 104 without a tree.
var oneWinStrategy = strategy.Config{
	StrategyID: 100006,
	Awards: []strategy.Award{
		{AwardID: 101, TreeID: "tree_luck"}, {AwardID: 102, TreeID: "tree_stock"},
		{AwardID: 103, TreeID: "tree_stock"}, {AwardID: 104},
	},
	Trees: map[string]strategy.TreeConfig{
		"tree_luck":  {ID: "tree_luck", Nodes: []strategy.TreeNode{{RuleKey: strategy.RuleStock}, {RuleKey: strategy.RuleLuckAward, Value: "101:1,100"}}},
		"tree_stock": {ID: "tree_stock", Nodes: []strategy.TreeNode{{RuleKey: strategy.RuleLock, Value: "1"}, {RuleKey: strategy.RuleStock}}},
	},
}

func TestStockedAwards(t *testing.T) {
	got := StockedAwards(oneWinStrategy)
	if len(got) != 2 || !got[102] || !got[103] {
		t.Errorf("stocked %v, want 102 and 103", got)
	}
}

func TestOneWin(t *testing.T) {
	stocked := map[int64]map[int]bool{100301: StockedAwards(oneWinStrategy), 100302: StockedAwards(oneWinStrategy)}
	oneWin := map[int64]bool{100301: true}
	win := func(user string, activityID int64, order string, awardID int) Win {
		return Win{UserID: user, ActivityID: activityID, OrderID: order, AwardID: awardID}
	}
	for _, c := range []struct {
		name    string
		records []Win
		bad     int
	}{
		{"one stocked award each", []Win{win("u1", 100301, "o1", 102), win("u2", 100301, "o2", 102)}, 0},
		{"two stocked awards", []Win{win("u1", 100301, "o1", 102), win("u1", 100301, "o2", 103)}, 1},
		{"same award twice", []Win{win("u1", 100301, "o1", 102), win("u1", 100301, "o2", 102), win("u2", 100301, "o3", 102),
			win("u2", 100301, "o4", 103), win("u2", 100301, "o5", 103)}, 2},
		{"fallback and unstocked awards do not count", []Win{win("u1", 100301, "o1", 102), win("u1", 100301, "o2", 101),
			win("u1", 100301, "o3", 104)}, 0},
		{"activity without one win", []Win{win("u1", 100302, "o1", 102), win("u1", 100302, "o2", 103)}, 0},
		{"one win per activity", []Win{win("u1", 100301, "o1", 102), win("u1", 100302, "o2", 102)}, 0},
	} {
		ds := OneWin(oneWin, stocked, c.records)
		var want []string
		for range c.bad {
			want = append(want, KindOneWin)
		}
		wantKinds(t, c.name, ds, want...)
	}
}

func TestOverStock(t *testing.T) {
	grants := []AwardGrants{
		{AwardID: 101, Stock: 10, Records: 30, Stocked: 10, Fallback: 20},
		{AwardID: 102, Stock: 5, Records: 5, Stocked: 5},
		{AwardID: 103, Stock: 5, Records: 6, Stocked: 6},
		{AwardID: 109, Stock: -1, Records: 1},
	}
	ds := OverStock(100006, grants)
	wantKinds(t, "over stock", ds, KindAwardOverStock)
	if len(ds) == 1 && ds[0].Key != "100006/103" {
		t.Errorf("over stock names %v, want award 103", ds)
	}
	wantKinds(t, "within stock", OverStock(100006, grants[:2]))
}
