package reconcile

import (
	"slices"
	"testing"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/outbox"
	"github.com/bigmarket/bigmarket/strategy"
)

// failed returns the names of the lines that failed.
func failed(c Checks) []string {
	var out []string
	for _, x := range c {
		if !x.Pass {
			out = append(out, x.Name)
		}
	}
	return out
}

func wantFailed(t *testing.T, name string, c Checks, want ...string) {
	t.Helper()
	if got := failed(c); !slices.Equal(got, want) || c.Pass() != (len(want) == 0) {
		t.Errorf("%s: failed %v (pass %t) in %+v, want %v", name, got, c.Pass(), c, want)
	}
}

// drawConfig has awards 101 (stock 2) and 102 (stock 1); 102 is also the luck award of a
// tree and 105 the blacklist's award, outside the list.
var drawConfig = strategy.Config{
	Awards: []strategy.Award{{AwardID: 101, Title: "a", Count: 2}, {AwardID: 102, Title: "b", Count: 1}},
	Rules:  []strategy.Rule{{Model: strategy.RuleBlacklist, Value: "105:user1,user2"}, {Model: strategy.RuleWeight, Value: "4000:102"}},
	Trees: map[string]strategy.TreeConfig{"t": {Nodes: []strategy.TreeNode{
		{RuleKey: strategy.RuleLock, Value: "1"}, {RuleKey: strategy.RuleLuckAward, Value: "102:1,100"},
	}}},
}

func TestFallbackAwards(t *testing.T) {
	got := FallbackAwards(drawConfig)
	if len(got) != 2 || !got[102] || !got[105] {
		t.Errorf("FallbackAwards = %v, want 102 and 105", got)
	}
}

func TestStocked(t *testing.T) {
	rec := award.Record{UserID: "u1", OrderID: "o1", AwardID: 102}
	stocked := award.NewSendAwardTask(rec, "")
	luck := award.NewSendAwardTask(rec, "1,100")
	tasks := []Task{
		{Found: true, Message: stocked.Message},
		{Found: true, Message: luck.Message},
		{}, // a record without its task counts as stocked
	}
	if n := Stocked(tasks); n != 2 {
		t.Errorf("Stocked = %d, want 2", n)
	}
}

func TestAwardStock(t *testing.T) {
	// 102 has three records, two of them luck grants; 105 (blacklist) and 107 (unknown)
	// are outside the list.
	grants := Grants(drawConfig, map[int]int64{101: 2, 102: 3, 105: 4}, map[int]int64{102: 1})
	want := []AwardGrants{
		{AwardID: 101, Title: "a", Stock: 2, Records: 2, Stocked: 2},
		{AwardID: 102, Title: "b", Stock: 1, Records: 3, Stocked: 1, Fallback: 2},
	}
	if !slices.Equal(grants, want) {
		t.Fatalf("Grants = %+v, want %+v", grants, want)
	}
	wantFailed(t, "within stock", AwardStock(grants))
	over := Grants(drawConfig, map[int]int64{101: 3, 107: 1}, nil)
	wantFailed(t, "over stock and an unknown award", AwardStock(over), "award 101 stock", "award 107 stock")
	if over[2].Stock != -1 {
		t.Errorf("unknown award grants %+v, want stock -1", over[2])
	}
}

func TestSurpluses(t *testing.T) {
	mins := []SurplusMin{
		{Column: "raffle_activity_account.total_count_surplus", Rows: true, Min: 0, Where: "user database 01"},
		{Column: "strategy_award.award_count_surplus"},
	}
	wantFailed(t, "none negative", Surpluses(mins))
	mins[1] = SurplusMin{Column: "strategy_award.award_count_surplus", Rows: true, Min: -1, Where: "config database"}
	wantFailed(t, "negative", Surpluses(mins), "surplus strategy_award.award_count_surplus")
}

func TestDrawRows(t *testing.T) {
	user := func(orders ...string) UserRows {
		var tasks []outbox.Task
		var recs []award.Record
		var raffle []activity.RaffleOrder
		for _, id := range orders {
			rec := award.Record{UserID: "u", OrderID: id}
			tasks = append(tasks, award.NewSendAwardTask(rec, ""))
			recs = append(recs, rec)
			raffle = append(raffle, activity.RaffleOrder{State: activity.OrderUsed})
		}
		raffle = append(raffle, activity.RaffleOrder{State: activity.OrderCreate})
		return RowsOf(tasks, recs, raffle)
	}
	before := Tally([]UserRows{user("o1")})
	after := Tally([]UserRows{user("o1", "o2"), user("o3")})
	if after != (UserTally{Records: 3, Tasks: 3, UsedOrders: 3}) {
		t.Fatalf("Tally = %+v", after)
	}
	wantFailed(t, "two draws, two records", DrawRows(before, after, 2, 2, 0))
	wantFailed(t, "one unknown outcome that took nothing", DrawRows(before, after, 2, 1, 1))
	wantFailed(t, "three draws, two records", DrawRows(before, after, 2, 3, 0), "award records")

	noTask := user("o4")
	noTask.Tasks, noTask.Missing = 0, 1
	dup := Tally([]UserRows{user("o1", "o2"), user("o2"), noTask})
	wantFailed(t, "a duplicate order id and a record without its task", DrawRows(before, dup, 3, 3, 0), "tasks", "order ids")
	used := after
	used.UsedOrders++
	wantFailed(t, "an order used without a record", DrawRows(before, used, 2, 2, 0), "raffle orders")
}
