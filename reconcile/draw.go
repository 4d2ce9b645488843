package reconcile

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/outbox"
	"github.com/bigmarket/bigmarket/strategy"
)

// AwardGrants is one award of a strategy: its total stock and how many award records it
// has across every shard, split into grants that took stock and fallback grants (the
// luck award, the blacklist award) that take none. Stock is -1 for an award the strategy
// does not have.
type AwardGrants struct {
	AwardID  int    `json:"awardId"`
	Title    string `json:"title"`
	Stock    int64  `json:"stock"`
	Records  int64  `json:"records"`
	Stocked  int64  `json:"stocked"`
	Fallback int64  `json:"fallback"`
}

// FallbackAwards returns the awards the strategy can grant without taking stock: the
// leading award id of its rule_blacklist values and of its trees' rule_luck_award nodes.
func FallbackAwards(cfg strategy.Config) map[int]bool {
	ids := map[int]bool{}
	leading := func(v string) {
		id, _, _ := strings.Cut(strings.TrimSpace(v), ":")
		if n, err := strconv.Atoi(strings.TrimSpace(id)); err == nil {
			ids[n] = true
		}
	}
	for _, r := range cfg.Rules {
		if r.Model == strategy.RuleBlacklist {
			leading(r.Value)
		}
	}
	for _, t := range cfg.Trees {
		for _, n := range t.Nodes {
			if n.RuleKey == strategy.RuleLuckAward {
				leading(n.Value)
			}
		}
	}
	return ids
}

// Stocked counts the grants among an award's records (given by their send_award tasks)
// that took stock: a luck grant's task carries the rule's value as its awardConfig, a
// stocked grant's none. A record without a task counts as stocked, and so does a
// blacklist grant (it carries none either), which can only make the check stricter.
func Stocked(tasks []Task) int64 {
	var n int64
	for _, t := range tasks {
		m, err := outbox.Decode[award.SendAward]([]byte(t.Message))
		if !t.Found || err != nil || m.Data.AwardConfig == "" {
			n++
		}
	}
	return n
}

// Grants splits a strategy's award record counts (by award id) into its awards' grants;
// stocked holds, for the fallback awards with records, how many took stock. Records of
// awards the strategy lacks come last, by id, with Stock -1, except fallback awards,
// which take no stock.
func Grants(cfg strategy.Config, counts map[int]int64, stocked map[int]int64) []AwardGrants {
	fallback := FallbackAwards(cfg)
	counts = maps.Clone(counts)
	var grants []AwardGrants
	for _, a := range cfg.Awards {
		g := AwardGrants{AwardID: a.AwardID, Title: a.Title, Stock: a.Count, Records: counts[a.AwardID]}
		g.Stocked = g.Records
		if fallback[a.AwardID] && g.Records > 0 {
			g.Stocked = stocked[a.AwardID]
			g.Fallback = g.Records - g.Stocked
		}
		grants = append(grants, g)
		delete(counts, a.AwardID)
	}
	for _, id := range slices.Sorted(maps.Keys(counts)) {
		if !fallback[id] {
			grants = append(grants, AwardGrants{AwardID: id, Stock: -1, Records: counts[id]})
		}
	}
	return grants
}

// AwardStock checks that no award was granted beyond its stock, counted from the durable
// award records.
func AwardStock(grants []AwardGrants) Checks {
	var c Checks
	for _, g := range grants {
		name := fmt.Sprintf("award %d stock", g.AwardID)
		if g.Stock < 0 {
			c.Add(name, false, "%d records of an award the strategy does not have", g.Records)
			continue
		}
		fallback := ""
		if g.Fallback > 0 {
			fallback = fmt.Sprintf(" (+%d fallback grants, which take no stock)", g.Fallback)
		}
		c.Add(name, g.Stocked <= g.Stock, "%d stocked grants%s, stock %d", g.Stocked, fallback, g.Stock)
	}
	return c
}

// SurplusMin is the smallest value of one surplus column over every database holding it;
// Rows is false when no database has a row, Where names the database holding the minimum.
type SurplusMin struct {
	Column string
	Rows   bool
	Min    int64
	Where  string
}

// Surpluses checks that no surplus is negative anywhere.
func Surpluses(mins []SurplusMin) Checks {
	var c Checks
	for _, m := range mins {
		if !m.Rows {
			c.Add("surplus "+m.Column, true, "no rows")
			continue
		}
		c.Add("surplus "+m.Column, m.Min >= 0, "min %d (%s)", m.Min, m.Where)
	}
	return c
}

// UserTally counts bench users' rows in an activity.
type UserTally struct {
	Records    int64 `json:"records"`
	Tasks      int64 `json:"tasks"`
	UsedOrders int64 `json:"usedOrders"`
	// DuplicateOrders counts award records whose order id another record has too;
	// MissingTasks records without the outbox task of the same message id.
	DuplicateOrders int64 `json:"duplicateOrders"`
	MissingTasks    int64 `json:"missingTasks"`
}

// UserRows is one user's rows in an activity.
type UserRows struct {
	Orders  []string // of the award records
	Tasks   int64    // send_award tasks
	Used    int64    // used raffle orders
	Missing int64    // award records without their task
}

// RowsOf counts one user's tasks, award records and raffle orders in an activity.
func RowsOf(tasks []outbox.Task, records []award.Record, orders []activity.RaffleOrder) UserRows {
	var r UserRows
	sent := map[string]bool{}
	for _, t := range tasks {
		if t.Topic == award.TopicSendAward {
			sent[t.MessageID] = true
		}
	}
	r.Tasks = int64(len(sent))
	for _, rec := range records {
		r.Orders = append(r.Orders, rec.OrderID)
		if !sent[rec.OrderID] {
			r.Missing++
		}
	}
	for _, o := range orders {
		if o.State == activity.OrderUsed {
			r.Used++
		}
	}
	return r
}

// Tally adds up users' rows, counting order ids seen before.
func Tally(users []UserRows) UserTally {
	var t UserTally
	seen := map[string]struct{}{}
	for _, r := range users {
		t.Records += int64(len(r.Orders))
		t.Tasks += r.Tasks
		t.UsedOrders += r.Used
		t.MissingTasks += r.Missing
		for _, id := range r.Orders {
			if _, dup := seen[id]; dup {
				t.DuplicateOrders++
			}
			seen[id] = struct{}{}
		}
	}
	return t
}

// DrawRows checks what a draw run of users wrote (after less before) against its
// answers: one record, one task and one used order per successful draw (draws), none
// for a draw answered 0006 (not counted in either bound), at most one for a draw whose
// outcome is unknown. The draws are counted in total, as the answers do not name their
// orders; a 0006 that took an award is a record beyond the bound, and fails it.
func DrawRows(before, after UserTally, users int, draws, unknown int64) Checks {
	var c Checks
	records := after.Records - before.Records
	if unknown == 0 {
		c.Add("award records", records == draws, "%d new award records for %d successful draws", records, draws)
	} else {
		c.Add("award records", records >= draws && records <= draws+unknown,
			"%d new award records for %d successful draws and %d draws of unknown outcome (0009 or no answer)", records, draws, unknown)
	}
	tasks := after.Tasks - before.Tasks
	c.Add("tasks", tasks == records && after.MissingTasks == 0,
		"%d new tasks for %d new award records; %d records without their task", tasks, records, after.MissingTasks)
	used := after.UsedOrders - before.UsedOrders
	c.Add("raffle orders", used == records, "%d raffle orders newly used for %d new award records", used, records)
	c.Add("order ids", after.DuplicateOrders == 0, "%d award records of %d users, %d with an order id seen before",
		after.Records, users, after.DuplicateOrders)
	return c
}
