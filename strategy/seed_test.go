package strategy

import "time"

// Seed configs from DATA.md, for tests that need no database.

func rate(s string) Rate {
	r, err := ParseRate(s)
	if err != nil {
		panic(err)
	}
	return r
}

func awards(spec ...any) []Award {
	var out []Award
	for i := 0; i < len(spec); i += 4 {
		out = append(out, Award{
			AwardID: spec[i].(int), Count: int64(spec[i+1].(int)), Surplus: int64(spec[i+1].(int)),
			Rate: rate(spec[i+2].(string)), TreeID: spec[i+3].(string), Sort: len(out) + 1,
			Title: "award", AwardKey: "k", AwardConfig: "c",
		})
	}
	return out
}

func lockTree(id, n string) TreeConfig {
	return TreeConfig{ID: id, Root: RuleLock,
		Nodes: []TreeNode{{RuleKey: RuleLock, Value: n}, {RuleKey: RuleStock}, {RuleKey: RuleLuckAward, Value: "101:1,100"}},
		Lines: []TreeLine{
			{From: RuleLock, To: RuleStock, LimitType: "EQUAL", LimitValue: "ALLOW"},
			{From: RuleLock, To: RuleLuckAward, LimitType: "EQUAL", LimitValue: "TAKE_OVER"},
			{From: RuleStock, To: RuleLuckAward, LimitType: "EQUAL", LimitValue: "ALLOW"},
		}}
}

var luckTree = TreeConfig{ID: "tree_luck_award", Root: RuleStock,
	Nodes: []TreeNode{{RuleKey: RuleStock}, {RuleKey: RuleLuckAward, Value: "101:1,100"}},
	Lines: []TreeLine{{From: RuleStock, To: RuleLuckAward, LimitType: "EQUAL", LimitValue: "ALLOW"}}}

func seedTrees() map[string]TreeConfig {
	return map[string]TreeConfig{
		"tree_lock_1": lockTree("tree_lock_1", "1"), "tree_lock_2": lockTree("tree_lock_2", "2"),
		"tree_lock_3": lockTree("tree_lock_3", "3"), "tree_luck_award": luckTree,
	}
}

func seedConfig(id int64) Config {
	switch id {
	case 100001:
		return Config{StrategyID: id, RuleModels: []RuleModel{RuleBlacklist, RuleWeight}, Trees: seedTrees(),
			Awards: awards(101, 80000, "0.3000", "tree_luck_award", 102, 10000, "0.2000", "tree_luck_award",
				103, 5000, "0.2000", "tree_luck_award", 104, 4000, "0.1000", "tree_luck_award",
				105, 600, "0.1000", "tree_luck_award", 106, 200, "0.0500", "tree_luck_award",
				107, 200, "0.0400", "tree_luck_award", 108, 199, "0.0099", "tree_luck_award",
				109, 1, "0.0001", "tree_luck_award"),
			Rules: []Rule{{Type: 1, Model: RuleBlacklist, Value: "101:user001,user002,user003"},
				{Type: 1, Model: RuleWeight, Value: "60:102,103,104,105 200:106,107 1000:105"}}}
	case 100002:
		return Config{StrategyID: id, Trees: seedTrees(), Awards: awards(101, 1, "0.5000", "", 102, 1, "0.1000", "", 106, 1, "0.0100", "")}
	case 100005:
		return Config{StrategyID: id, Trees: seedTrees(), Awards: awards(101, 80000, "0.0300", "", 102, 80000, "0.0300", "",
			103, 80000, "0.0300", "", 104, 80000, "0.0300", "", 105, 80000, "0.0010", "")}
	case 100006:
		return Config{StrategyID: id, RuleModels: []RuleModel{RuleBlacklist, RuleWeight}, Trees: seedTrees(),
			ActivityEnd: time.Date(2034, 3, 9, 10, 15, 10, 0, time.UTC),
			Awards: awards(101, 10000, "0.7900", "tree_luck_award", 102, 100, "0.0300", "tree_luck_award",
				103, 100, "0.0300", "tree_luck_award", 104, 100, "0.0300", "tree_luck_award",
				105, 100, "0.0300", "tree_lock_3", 106, 100, "0.0300", "tree_lock_2",
				107, 100, "0.0300", "tree_lock_1", 108, 100, "0.0003", "tree_luck_award"),
			Rules: []Rule{{Type: 1, Model: RuleBlacklist, Value: "101:user001,user002,user003"},
				{Type: 1, Model: RuleWeight, Value: "10:102,103 70:106,107 1000:104,105"}}}
	}
	panic("no seed config")
}
