package strategy

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTreeNodes(t *testing.T) {
	t.Parallel()
	rules := DefaultTreeRules()
	ref := AwardRef{StrategyID: 9, AwardID: 105}
	for _, tc := range []struct {
		name     string
		rule     RuleModel
		value    string
		today    int64
		stock    int64 // -1: missing from the cache
		want     Outcome
		wantErr  error
		wantTake int
	}{
		{name: "lock below N takes over", rule: RuleLock, value: "3", today: 2, want: Outcome{Verdict: TakeOver, Rule: RuleLock}},
		{name: "lock at N allows", rule: RuleLock, value: "3", today: 3, want: Outcome{Verdict: Allow, Rule: RuleLock}},
		{name: "lock zero always allows", rule: RuleLock, value: "0", today: 0, want: Outcome{Verdict: Allow, Rule: RuleLock}},
		{name: "stock left takes over with the pick", rule: RuleStock, stock: 1, want: Outcome{Verdict: TakeOver, AwardID: 105, Rule: RuleStock}, wantTake: 1},
		{name: "stock out allows", rule: RuleStock, stock: 0, want: Outcome{Verdict: Allow, Rule: RuleStock}},
		{name: "stock missing fails", rule: RuleStock, stock: -1, wantErr: ErrStockMissing},
		{name: "luck award with range", rule: RuleLuckAward, value: "101:1,100", want: Outcome{Verdict: TakeOver, AwardID: 101, RuleValue: "1,100", Rule: RuleLuckAward}},
		{name: "luck award alone", rule: RuleLuckAward, value: "100", want: Outcome{Verdict: TakeOver, AwardID: 100, Rule: RuleLuckAward}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stock := newFakeStock()
			if tc.stock >= 0 {
				stock.set(ref, tc.stock)
			}
			s := NewService(Options{Configs: fakeConfigs{}, Stock: stock})
			p, err := rules[tc.rule].Parse(tc.value)
			if err != nil {
				t.Fatal(err)
			}
			got, err := rules[tc.rule].Eval(context.Background(), s.deduct, p, NodeInput{Ref: ref, DrawsToday: tc.today, ExpireAt: time.Now().Add(time.Hour)})
			if !errors.Is(err, tc.wantErr) || got != tc.want {
				t.Errorf("got %+v, %v; want %+v, %v", got, err, tc.want, tc.wantErr)
			}
			if n := stock.taken(ref); n != tc.wantTake {
				t.Errorf("stock taken %d, want %d", n, tc.wantTake)
			}
		})
	}
}

func TestTreeNodeValues(t *testing.T) {
	t.Parallel()
	rules := DefaultTreeRules()
	for _, tc := range []struct {
		rule  RuleModel
		value string
	}{{RuleLock, "x"}, {RuleLock, "-1"}, {RuleLuckAward, ""}, {RuleLuckAward, "abc:1,2"}, {RuleLuckAward, "0"}} {
		if _, err := rules[tc.rule].Parse(tc.value); err == nil {
			t.Errorf("%s value %q accepted", tc.rule, tc.value)
		}
	}
}

// TestTreeWalk covers each branch of the walker on tree_lock_1: lock taken over → luck
// award; lock allowed → stock granted; lock allowed → stock out → luck award.
func TestTreeWalk(t *testing.T) {
	t.Parallel()
	tree, err := NewTree(lockTree("tree_lock_1", "1"), DefaultTreeRules())
	if err != nil {
		t.Fatal(err)
	}
	if tree.LockCount() != 1 {
		t.Errorf("LockCount %d, want 1", tree.LockCount())
	}
	ref := AwardRef{StrategyID: 9, AwardID: 107}
	for _, tc := range []struct {
		name     string
		today    int64
		stock    int64
		want     int
		rule     RuleModel
		wantTake int
	}{
		{"locked", 0, 5, 101, RuleLuckAward, 0},
		{"unlocked with stock", 1, 5, 107, RuleStock, 1},
		{"unlocked without stock", 1, 0, 101, RuleLuckAward, 0},
	} {
		stock := newFakeStock()
		stock.set(ref, tc.stock)
		s := NewService(Options{Configs: fakeConfigs{}, Stock: stock})
		out, err := tree.Walk(context.Background(), s.deduct, NodeInput{Ref: ref, DrawsToday: tc.today})
		if err != nil || out.AwardID != tc.want || out.Rule != tc.rule {
			t.Errorf("%s: got %+v, %v; want award %d by %s", tc.name, out, err, tc.want, tc.rule)
		}
		if n := stock.taken(ref); n != tc.wantTake {
			t.Errorf("%s: stock taken %d, want %d", tc.name, n, tc.wantTake)
		}
	}
	s := NewService(Options{Configs: fakeConfigs{}, Stock: &fakeStock{count: map[AwardRef]int64{ref: 1}, DeductFn: func(AwardRef) error { return errors.New("redis down") }}})
	if _, err := tree.Walk(context.Background(), s.deduct, NodeInput{Ref: ref, DrawsToday: 1}); err == nil || !strings.Contains(err.Error(), "tree_lock_1") {
		t.Errorf("walk with a failing stock: %v, want an error naming the tree", err)
	}
}

// TestTreeWalkHandsDeduct checks that the walker hands rule_stock the deduction it was
// given, with the draw's award, expiry and durability, and nothing else of a Service.
func TestTreeWalkHandsDeduct(t *testing.T) {
	t.Parallel()
	tree, err := NewTree(lockTree("tree_lock_1", "1"), DefaultTreeRules())
	if err != nil {
		t.Fatal(err)
	}
	in := NodeInput{Ref: AwardRef{StrategyID: 9, AwardID: 107}, DrawsToday: 1, ExpireAt: time.Unix(2e9, 0), Durable: true}
	for _, granted := range []bool{true, false} {
		var calls []NodeInput
		deduct := func(_ context.Context, ref AwardRef, expireAt time.Time, durable bool) (bool, error) {
			calls = append(calls, NodeInput{Ref: ref, DrawsToday: 1, ExpireAt: expireAt, Durable: durable})
			return granted, nil
		}
		out, err := tree.Walk(context.Background(), deduct, in)
		want := Outcome{Verdict: TakeOver, AwardID: 101, RuleValue: "1,100", Rule: RuleLuckAward} // no stock: the luck award
		if granted {
			want = Outcome{Verdict: TakeOver, AwardID: 107, Rule: RuleStock}
		}
		if err != nil || out != want {
			t.Errorf("granted %v: got %+v, %v; want %+v", granted, out, err, want)
		}
		if len(calls) != 1 || calls[0] != in {
			t.Errorf("granted %v: deduct called with %+v, want once with %+v", granted, calls, in)
		}
	}
	if _, err := tree.Walk(context.Background(), nil, NodeInput{Ref: in.Ref, DrawsToday: 0}); err != nil {
		t.Errorf("locked walk, which takes no stock, failed without a deduction: %v", err)
	}
}

func TestNewTreeRefusesBadTrees(t *testing.T) {
	t.Parallel()
	good := lockTree("t", "1")
	mutate := func(f func(*TreeConfig)) TreeConfig {
		c := good
		c.Nodes = append([]TreeNode(nil), good.Nodes...)
		c.Lines = append([]TreeLine(nil), good.Lines...)
		f(&c)
		return c
	}
	for name, c := range map[string]TreeConfig{
		"GT line":            mutate(func(c *TreeConfig) { c.Lines[0].LimitType = "GT" }),
		"unknown verdict":    mutate(func(c *TreeConfig) { c.Lines[0].LimitValue = "MAYBE" }),
		"dangling to":        mutate(func(c *TreeConfig) { c.Lines[0].To = "rule_nowhere" }),
		"dangling from":      mutate(func(c *TreeConfig) { c.Lines[0].From = "rule_nowhere" }),
		"missing root":       mutate(func(c *TreeConfig) { c.Root = "rule_nowhere" }),
		"unknown node kind":  mutate(func(c *TreeConfig) { c.Nodes = append(c.Nodes, TreeNode{RuleKey: "rule_magic"}) }),
		"bad lock value":     mutate(func(c *TreeConfig) { c.Nodes[0].Value = "many" }),
		"no ALLOW from lock": mutate(func(c *TreeConfig) { c.Lines = c.Lines[1:] }),
		"two lines one verdict": mutate(func(c *TreeConfig) {
			c.Lines = append(c.Lines, TreeLine{From: RuleLock, To: RuleLuckAward, LimitType: "EQUAL", LimitValue: "ALLOW"})
		}),
		"cycle": mutate(func(c *TreeConfig) {
			c.Lines[2] = TreeLine{From: RuleStock, To: RuleLock, LimitType: "EQUAL", LimitValue: "ALLOW"}
		}),
	} {
		_, err := NewTree(c, DefaultTreeRules())
		if !errors.Is(err, ErrInvalidTree) || !strings.Contains(err.Error(), "tree t") {
			t.Errorf("%s: err %v, want ErrInvalidTree naming the tree", name, err)
		}
	}
	if _, err := NewTree(good, DefaultTreeRules()); err != nil {
		t.Errorf("good tree refused: %v", err)
	}
}
