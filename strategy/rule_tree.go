package strategy

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Verdict is what a tree node decides.
type Verdict string

// The two verdicts of rule_tree_node_line.rule_limit_value.
const (
	Allow    Verdict = "ALLOW"
	TakeOver Verdict = "TAKE_OVER"
)

// Outcome is a node's decision; a TAKE_OVER may carry the award it grants.
type Outcome struct {
	Verdict   Verdict
	AwardID   int    // zero when the node grants nothing
	RuleValue string // the grant's parameters, e.g. the luck award's credit range "1,100"
	Rule      RuleModel
}

// NodeInput is what a tree node sees of a draw.
type NodeInput struct {
	Ref        AwardRef // the picked award
	DrawsToday int64    // the user's draws completed today before this one
	ExpireAt   time.Time
	Durable    bool // wait until a stock grant is durable (Input.Durable)
}

// NodeParams is a node's rule_value, parsed once when the tree is loaded.
type NodeParams struct {
	N       int64  // rule_lock: the unlock count
	AwardID int    // rule_luck_award: the award
	Value   string // rule_luck_award: the award's rule value; otherwise the raw value
}

// DeductFunc takes one unit of an award's stock for a draw. It reports false when no unit
// is left (or the stock is missing from the cache: undersell, never oversell); with
// durable it returns once the grant is durable. It is the one effect a tree node has:
// the Service hands its own to the walker, tests hand a plain func.
type DeductFunc func(ctx context.Context, ref AwardRef, expireAt time.Time, durable bool) (granted bool, err error)

// TreeRule is one kind of tree node. Parse checks and parses the node's value at load;
// Eval decides a draw, given the stock deduction in case it takes stock (rule_stock).
// Needs lists the verdicts that Eval can return without an award: the tree must have a
// line for each, so that every walk ends with an award.
type TreeRule struct {
	Parse func(value string) (NodeParams, error)
	Eval  func(ctx context.Context, deduct DeductFunc, p NodeParams, in NodeInput) (Outcome, error)
	Needs []Verdict
}

// TreeRules maps rule_tree_node.rule_key to its kind; a tree using a key absent from the
// map is refused at load.
type TreeRules map[RuleModel]TreeRule

// DefaultTreeRules returns rule_lock, rule_stock and rule_luck_award.
func DefaultTreeRules() TreeRules {
	return TreeRules{
		RuleLock: {
			Parse: func(v string) (NodeParams, error) {
				n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				if err != nil || n < 0 {
					return NodeParams{}, fmt.Errorf("rule_lock value %q: want a count >= 0", v)
				}
				return NodeParams{N: n}, nil
			},
			Eval: func(_ context.Context, _ DeductFunc, p NodeParams, in NodeInput) (Outcome, error) {
				if in.DrawsToday >= p.N {
					return Outcome{Verdict: Allow, Rule: RuleLock}, nil
				}
				return Outcome{Verdict: TakeOver, Rule: RuleLock}, nil
			},
			Needs: []Verdict{Allow, TakeOver},
		},
		RuleStock: {
			Parse: func(v string) (NodeParams, error) { return NodeParams{Value: v}, nil },
			Eval: func(ctx context.Context, deduct DeductFunc, _ NodeParams, in NodeInput) (Outcome, error) {
				granted, err := deduct(ctx, in.Ref, in.ExpireAt, in.Durable)
				if err != nil {
					return Outcome{}, err
				}
				if !granted {
					return Outcome{Verdict: Allow, Rule: RuleStock}, nil
				}
				return Outcome{Verdict: TakeOver, AwardID: in.Ref.AwardID, Rule: RuleStock}, nil
			},
			Needs: []Verdict{Allow},
		},
		RuleLuckAward: {
			Parse: parseLuckAward,
			Eval: func(_ context.Context, _ DeductFunc, p NodeParams, _ NodeInput) (Outcome, error) {
				return Outcome{Verdict: TakeOver, AwardID: p.AwardID, RuleValue: p.Value, Rule: RuleLuckAward}, nil
			},
		},
	}
}

// parseLuckAward parses "101:1,100" (award 101, credit range 1–100) or "101".
func parseLuckAward(v string) (NodeParams, error) {
	award, value, _ := strings.Cut(strings.TrimSpace(v), ":")
	id, err := strconv.Atoi(award)
	if err != nil || id <= 0 {
		return NodeParams{}, fmt.Errorf("rule_luck_award value %q: want awardId[:value]", v)
	}
	return NodeParams{AwardID: id, Value: value}, nil
}

// Tree is a loaded rule tree: nodes with their parsed params and outgoing lines.
type Tree struct {
	ID    string
	root  RuleModel
	nodes map[RuleModel]*treeNode
}

type treeNode struct {
	key    RuleModel
	rule   TreeRule
	params NodeParams
	next   map[Verdict]RuleModel
}

// LockCount returns the N of the tree's rule_lock node, or 0 when it has none.
func (t *Tree) LockCount() int64 {
	if n, ok := t.nodes[RuleLock]; ok {
		return n.params.N
	}
	return 0
}

// Has reports whether the tree has a node of the rule.
func (t *Tree) Has(rule RuleModel) bool {
	_, ok := t.nodes[rule]
	return ok
}

// LuckAward returns the award of the tree's rule_luck_award node, its fallback, if it has
// one.
func (t *Tree) LuckAward() (int, bool) {
	if n, ok := t.nodes[RuleLuckAward]; ok {
		return n.params.AwardID, true
	}
	return 0, false
}

// NewTree loads and validates a rule tree: every line EQUAL with a known verdict, no
// dangling node, no cycle, no node kind the rules do not know, and a line for every
// verdict that carries no award.
func NewTree(c TreeConfig, rules TreeRules) (*Tree, error) {
	fail := func(format string, args ...any) (*Tree, error) {
		return nil, fmt.Errorf("tree %s: %s: %w", c.ID, fmt.Sprintf(format, args...), ErrInvalidTree)
	}
	t := &Tree{ID: c.ID, root: c.Root, nodes: make(map[RuleModel]*treeNode, len(c.Nodes))}
	for _, n := range c.Nodes {
		rule, ok := rules[n.RuleKey]
		if !ok {
			return fail("unsupported node %q", n.RuleKey)
		}
		if _, dup := t.nodes[n.RuleKey]; dup {
			return fail("node %q appears twice", n.RuleKey)
		}
		params, err := rule.Parse(n.Value)
		if err != nil {
			return fail("node %s: %v", n.RuleKey, err)
		}
		t.nodes[n.RuleKey] = &treeNode{key: n.RuleKey, rule: rule, params: params, next: map[Verdict]RuleModel{}}
	}
	if _, ok := t.nodes[c.Root]; !ok {
		return fail("root node %q does not exist", c.Root)
	}
	for _, l := range c.Lines {
		if l.LimitType != "EQUAL" {
			return fail("line %s→%s has unsupported limit type %q", l.From, l.To, l.LimitType)
		}
		v := Verdict(l.LimitValue)
		if v != Allow && v != TakeOver {
			return fail("line %s→%s has unknown limit value %q", l.From, l.To, l.LimitValue)
		}
		from, ok := t.nodes[l.From]
		if !ok {
			return fail("line %s→%s starts at a dangling node", l.From, l.To)
		}
		if _, ok := t.nodes[l.To]; !ok {
			return fail("line %s→%s ends at a dangling node", l.From, l.To)
		}
		if _, dup := from.next[v]; dup {
			return fail("node %s has two %s lines", l.From, v)
		}
		from.next[v] = l.To
	}
	for key, n := range t.nodes {
		for _, v := range n.rule.Needs {
			if _, ok := n.next[v]; !ok {
				return fail("node %s has no %s line, so a walk could end without an award", key, v)
			}
		}
	}
	if err := t.checkAcyclic(); err != nil {
		return fail("%v", err)
	}
	return t, nil
}

// checkAcyclic refuses trees whose lines loop, which would make a walk endless.
func (t *Tree) checkAcyclic() error {
	const (
		visiting = 1
		done     = 2
	)
	state := map[RuleModel]int{}
	var visit func(k RuleModel) error
	visit = func(k RuleModel) error {
		switch state[k] {
		case visiting:
			return fmt.Errorf("lines loop through node %s", k)
		case done:
			return nil
		}
		state[k] = visiting
		for _, next := range t.nodes[k].next {
			if err := visit(next); err != nil {
				return err
			}
		}
		state[k] = done
		return nil
	}
	return visit(t.root)
}

// Walk runs the tree from its root, following after each node the line that matches its
// verdict, until no line matches; the last outcome is the result. Each node is handed
// deduct, the only way a walk touches stock.
func (t *Tree) Walk(ctx context.Context, deduct DeductFunc, in NodeInput) (Outcome, error) {
	n := t.nodes[t.root]
	for {
		out, err := n.rule.Eval(ctx, deduct, n.params, in)
		if err != nil {
			return Outcome{}, fmt.Errorf("tree %s node %s: %w", t.ID, n.key, err)
		}
		next, ok := n.next[out.Verdict]
		if !ok {
			return out, nil
		}
		n = t.nodes[next]
	}
}
