package reconcile

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/strategy"
)

// Discrepancy kinds of the flash draw (issue 14) and of the awards' stock.
const (
	// KindDrawUnwritten: a draw event stored by the broker lacks, after the draw writer
	// applied it, its used raffle order, its award record (of the event's award) or its
	// send_award task.
	KindDrawUnwritten = "draw_unwritten"
	// KindHotQuota: a user's hot quota in Redis differs from its SQL quota although the
	// draw writer has no backlog and the user has no pending draw.
	KindHotQuota = "hot_quota_mismatch"
	// KindOneWin: in an activity with one win, a user holds records of two stocked awards
	// or more.
	KindOneWin = "one_win_exceeded"
	// KindAwardOverStock: an award has more stocked grants (award records) than its stock.
	KindAwardOverStock = "award_over_stock"
)

// DrawEvent is one draw event of the draws stream: Seq and Stored are the broker's.
type DrawEvent struct {
	Seq        uint64
	Stored     time.Time
	OrderID    string
	UserID     string
	ActivityID int64
	AwardID    int
}

// DrawWritten is what SQL holds for one draw event's order id: the raffle order's state
// ("" none), the award record (its user and award, RecordFound false for none) and the
// task with the order id as message id (its topic, "" none).
type DrawWritten struct {
	OrderUser   string
	OrderState  activity.OrderState
	RecordFound bool
	RecordUser  string
	RecordAward int
	TaskTopic   string
	TaskUser    string
}

// DrawEvents checks that every event has its rows: a used raffle order, an award record
// of the event's award and its send_award task, all of the event's user. written is keyed
// by order id.
func DrawEvents(events []DrawEvent, written map[string]DrawWritten) []Discrepancy {
	var f found
	for _, e := range events {
		w := written[e.OrderID]
		var lacks []string
		switch {
		case w.OrderState == "":
			lacks = append(lacks, "no raffle order")
		case w.OrderState != activity.OrderUsed || w.OrderUser != e.UserID:
			lacks = append(lacks, fmt.Sprintf("raffle order %s of %s", w.OrderState, w.OrderUser))
		}
		switch {
		case !w.RecordFound:
			lacks = append(lacks, "no award record")
		case w.RecordAward != e.AwardID || w.RecordUser != e.UserID:
			lacks = append(lacks, fmt.Sprintf("award record of award %d of %s", w.RecordAward, w.RecordUser))
		}
		switch {
		case w.TaskTopic == "":
			lacks = append(lacks, "no send_award task")
		case w.TaskTopic != award.TopicSendAward || w.TaskUser != e.UserID:
			lacks = append(lacks, fmt.Sprintf("task %s of %s", w.TaskTopic, w.TaskUser))
		}
		if len(lacks) > 0 {
			f.report(KindDrawUnwritten, e.UserID, e.OrderID, "draw event %d (activity %d, award %d, stored %s): %s",
				e.Seq, e.ActivityID, e.AwardID, e.Stored.UTC().Format(time.RFC3339), strings.Join(lacks, ", "))
		}
	}
	return f
}

// HotCopy is a user's hot quota in an activity as Redis holds it: the account and the
// rows of the periods it holds (nil when it holds none), and how many draws of the user
// in the activity are pending (taken, not yet cleared).
type HotCopy struct {
	UserID     string
	ActivityID int64
	Quota      activity.Quota
	Pending    int
}

// QuotaPair is a hot copy with the SQL quota of the same user, activity and periods.
type QuotaPair struct {
	Hot HotCopy
	SQL activity.Quota
}

// HotQuotas checks that each hot copy equals its SQL quota: the account, and the month
// and day rows the hot copy holds. It is meant for a draw writer without backlog; a user
// with pending draws is not compared (their units are taken in Redis and may not be
// published yet) and is counted in skipped.
func HotQuotas(pairs []QuotaPair) (ds []Discrepancy, compared, skipped int) {
	var f found
	for _, p := range pairs {
		h := p.Hot
		if h.Pending > 0 {
			skipped++
			continue
		}
		compared++
		if diff := HotQuotaDiff(h.Quota, p.SQL); diff != "" {
			f.report(KindHotQuota, h.UserID, fmt.Sprint(h.ActivityID), "hot %s; SQL %s (%s)",
				showQuota(h.Quota), showQuota(p.SQL), diff)
		}
	}
	return f, compared, skipped
}

// HotQuotaDiff names what differs between a hot copy and SQL: the account, and the
// month and day rows the hot copy holds; "" when nothing does.
func HotQuotaDiff(hot, sql activity.Quota) string {
	var diffs []string
	switch {
	case (hot.Account == nil) != (sql.Account == nil):
		diffs = append(diffs, "account")
	case hot.Account != nil && *hot.Account != *sql.Account:
		diffs = append(diffs, "account")
	}
	if hot.Month != nil && (sql.Month == nil || *hot.Month != *sql.Month) {
		diffs = append(diffs, "month "+hot.Month.Key)
	}
	if hot.Day != nil && (sql.Day == nil || *hot.Day != *sql.Day) {
		diffs = append(diffs, "day "+hot.Day.Key)
	}
	return strings.Join(diffs, ", ")
}

func showQuota(q activity.Quota) string {
	var parts []string
	if a := q.Account; a != nil {
		parts = append(parts, fmt.Sprintf("account total %d/%d month %d/%d day %d/%d",
			a.TotalSurplus, a.Total, a.MonthSurplus, a.Month, a.DaySurplus, a.Day))
	} else {
		parts = append(parts, "no account")
	}
	for _, p := range []*activity.Period{q.Month, q.Day} {
		if p != nil {
			parts = append(parts, fmt.Sprintf("%s %d/%d", p.Key, p.Surplus, p.Count))
		}
	}
	return strings.Join(parts, " ")
}

// StockedAwards returns the strategy's stocked awards as the draw's gate counts them: an
// award whose tree has a rule_stock node and that is no tree's rule_luck_award target.
func StockedAwards(cfg strategy.Config) map[int]bool {
	luck := map[int]bool{}
	for _, t := range cfg.Trees {
		for _, n := range t.Nodes {
			if n.RuleKey == strategy.RuleLuckAward {
				id, _, _ := strings.Cut(strings.TrimSpace(n.Value), ":")
				var a int
				if _, err := fmt.Sscan(strings.TrimSpace(id), &a); err == nil {
					luck[a] = true
				}
			}
		}
	}
	stocked := map[int]bool{}
	for _, a := range cfg.Awards {
		t, ok := cfg.Trees[a.TreeID]
		if !ok || luck[a.AwardID] {
			continue
		}
		for _, n := range t.Nodes {
			if n.RuleKey == strategy.RuleStock {
				stocked[a.AwardID] = true
			}
		}
	}
	return stocked
}

// Win is an award record read for the one-win check.
type Win struct {
	UserID     string
	ActivityID int64
	OrderID    string
	AwardID    int
}

// OneWin checks that in an activity with one win (oneWin[activity]), no user holds
// records of two stocked awards (stocked[activity]) or more. Records of other awards and
// activities are ignored.
func OneWin(oneWin map[int64]bool, stocked map[int64]map[int]bool, records []Win) []Discrepancy {
	type key struct {
		user     string
		activity int64
	}
	wins := map[key][]Win{}
	for _, r := range records {
		if oneWin[r.ActivityID] && stocked[r.ActivityID][r.AwardID] {
			k := key{r.UserID, r.ActivityID}
			wins[k] = append(wins[k], r)
		}
	}
	var f found
	for _, k := range slices.SortedFunc(maps.Keys(wins), func(a, b key) int {
		return strings.Compare(fmt.Sprint(a.activity, a.user), fmt.Sprint(b.activity, b.user))
	}) {
		ws := wins[k]
		if len(ws) < 2 {
			continue
		}
		var orders []string
		for _, w := range ws {
			orders = append(orders, fmt.Sprintf("%s (award %d)", w.OrderID, w.AwardID))
		}
		f.report(KindOneWin, k.user, fmt.Sprint(k.activity), "%d stocked awards in a one-win activity: %s",
			len(ws), strings.Join(orders, ", "))
	}
	return f
}

// OverStock is AwardStock for verify: a discrepancy for each award of the strategy
// whose stocked grants exceed its stock. Records of an award the strategy does not have
// (Stock -1) are left out: they take no stock of it, and verify's award checks judge
// the award ids of records (KindAwardUnknown).
func OverStock(strategyID int64, grants []AwardGrants) []Discrepancy {
	var f found
	for i, c := range AwardStock(grants) {
		if !c.Pass && grants[i].Stock >= 0 {
			f.report(KindAwardOverStock, "", fmt.Sprintf("%d/%d", strategyID, grants[i].AwardID), "%s", c.Detail)
		}
	}
	return f
}
