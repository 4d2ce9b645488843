package strategy

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Pick is what the rule chain chose for a draw.
type Pick struct {
	AwardID int
	// Rule is the chain rule that decided: rule_blacklist, rule_weight or rule_default.
	Rule RuleModel
	// Fallback picks (the blacklist award) skip the award's tree and take no stock.
	Fallback bool
}

// ChainRule is one link of the rule chain. It returns ok=false to pass the draw on to the
// next link. It must be safe for concurrent use.
type ChainRule func(a *Assembled, in Input, rng Rand) (p Pick, ok bool)

// ChainRules maps a rule model named in strategy.rule_models to its link; a strategy
// naming a rule absent from the map is refused at assembly.
type ChainRules map[RuleModel]ChainRule

// DefaultChainRules returns the links big-market defines: the blacklist and the weight
// tiers. The default table always ends the chain and needs no entry.
func DefaultChainRules() ChainRules {
	return ChainRules{
		RuleBlacklist: blacklistRule,
		RuleWeight:    weightRule,
	}
}

// blacklistRule grants the rule's award to listed users, as a fallback.
func blacklistRule(a *Assembled, in Input, _ Rand) (Pick, bool) {
	if a.blacklist == nil {
		return Pick{}, false
	}
	if _, listed := a.blacklist.users[in.UserID]; !listed {
		return Pick{}, false
	}
	return Pick{AwardID: a.blacklist.awardID, Rule: RuleBlacklist, Fallback: true}, true
}

// weightRule draws in the highest tier whose threshold the user's score has reached.
func weightRule(a *Assembled, in Input, rng Rand) (Pick, bool) {
	for i := len(a.Tiers) - 1; i >= 0; i-- {
		if in.Score >= a.Tiers[i].Threshold {
			return Pick{AwardID: a.Tiers[i].table.Pick(rng), Rule: RuleWeight}, true
		}
	}
	return Pick{}, false
}

// blacklist is a parsed rule_blacklist value, "101:user001,user002".
type blacklist struct {
	awardID int
	users   map[string]struct{}
}

func parseBlacklist(value string) (*blacklist, error) {
	award, users, ok := strings.Cut(strings.TrimSpace(value), ":")
	id, err := strconv.Atoi(strings.TrimSpace(award))
	if !ok || err != nil || id <= 0 {
		return nil, fmt.Errorf("rule_blacklist value %q: want awardId:user,user: %w", value, ErrInvalidConfig)
	}
	b := &blacklist{awardID: id, users: map[string]struct{}{}}
	for _, u := range strings.Split(users, ",") {
		if u = strings.TrimSpace(u); u != "" {
			b.users[u] = struct{}{}
		}
	}
	return b, nil
}

// Tier is one rule_weight tier: users whose score reached Threshold draw among AwardIDs.
type Tier struct {
	Threshold int64
	AwardIDs  []int
	table     *Table
}

// Table returns the tier's probability table.
func (t Tier) Table() *Table { return t.table }

// parseTiers parses a rule_weight value, "60:102,103 200:106,107 1000:105", into tiers
// sorted by threshold, each with its own table over the strategy's rates of its awards.
func parseTiers(value string, rates map[int]Rate) ([]Tier, error) {
	var tiers []Tier
	for _, field := range strings.Fields(value) {
		score, list, ok := strings.Cut(field, ":")
		threshold, err := strconv.ParseInt(score, 10, 64)
		if !ok || err != nil || threshold < 0 {
			return nil, fmt.Errorf("rule_weight tier %q: want score:awardId,awardId: %w", field, ErrInvalidConfig)
		}
		tier := Tier{Threshold: threshold}
		var entries []Entry
		for _, s := range strings.Split(list, ",") {
			id, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil {
				return nil, fmt.Errorf("rule_weight tier %q: award %q: %w", field, s, ErrInvalidConfig)
			}
			rate, ok := rates[id]
			if !ok {
				return nil, fmt.Errorf("rule_weight tier %q: award %d is not in the strategy: %w", field, id, ErrInvalidConfig)
			}
			tier.AwardIDs = append(tier.AwardIDs, id)
			entries = append(entries, Entry{AwardID: id, Rate: rate})
		}
		if tier.table, err = NewTable(entries); err != nil {
			return nil, fmt.Errorf("rule_weight tier %q: %w", field, err)
		}
		tiers = append(tiers, tier)
	}
	if len(tiers) == 0 {
		return nil, fmt.Errorf("rule_weight value %q has no tier: %w", value, ErrInvalidConfig)
	}
	slices.SortFunc(tiers, func(a, b Tier) int { return cmp.Compare(a.Threshold, b.Threshold) })
	for i := 1; i < len(tiers); i++ {
		if tiers[i].Threshold == tiers[i-1].Threshold {
			return nil, fmt.Errorf("rule_weight value %q repeats threshold %d: %w", value, tiers[i].Threshold, ErrInvalidConfig)
		}
	}
	return tiers, nil
}
