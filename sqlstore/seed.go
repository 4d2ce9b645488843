package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// seedTable is one table's demo rows.
type seedTable struct {
	table   string
	columns []string
	rows    [][]any
}

// SeedDemo inserts the demo configuration of DATA.md (strategies 100001–100006 and 10007,
// their awards, rules and rule trees, activities 100301 and 100401 with their SKUs, the
// sign-in rebates and the activity stage) into a migrated config database. Rows are
// inserted with insert-ignore on their unique keys in one transaction, so running it again
// changes nothing, including rows the application has since updated (such as surplus).
func SeedDemo(ctx context.Context, db *DB) error {
	tx, err := db.SQL.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("seed demo: begin: %w", err)
	}
	defer tx.Rollback()
	for _, t := range demoData() {
		if err := insertIgnoreRows(ctx, tx, db.Dialect, t); err != nil {
			return fmt.Errorf("seed demo: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("seed demo: commit: %w", err)
	}
	return nil
}

// insertIgnoreRows inserts t's rows in one multi-row statement.
func insertIgnoreRows(ctx context.Context, tx *sql.Tx, d Dialect, t seedTable) error {
	args := make([]any, 0, len(t.rows)*len(t.columns))
	for _, r := range t.rows {
		if len(r) != len(t.columns) {
			return fmt.Errorf("insert %s: row %v has %d values for %d columns", t.table, r, len(r), len(t.columns))
		}
		args = append(args, r...)
	}
	if _, err := tx.ExecContext(ctx, d.InsertIgnore(t.table, len(t.rows), t.columns...), args...); err != nil {
		return fmt.Errorf("insert %s: %w", t.table, err)
	}
	return nil
}

// demoAward is one strategy_award row of the demo.
type demoAward struct {
	awardID  int
	title    string
	subtitle string
	count    int
	surplus  int
	rate     string
	tree     string
}

// Award titles the demo reuses: 100001's list, and short titles for 10007's use-count
// awards, which DATA.md leaves untitled.
var demoTitles = map[int]string{
	101: "随机积分",
	102: "5次使用",
	103: "10次使用",
	104: "20次使用",
	105: "增加gpt-4对话模型",
	106: "增加dall-e-2画图模型",
	107: "增加dall-e-3画图模型",
	108: "增加100次使用",
	109: "解锁全部模型",
	110: "OpenAI 1次使用",
	111: "OpenAI 5次使用",
	112: "OpenAI 10次使用",
	113: "OpenAI 15次使用",
	114: "OpenAI 20次使用",
	115: "OpenAI 25次使用",
	116: "OpenAI 50次使用",
}

// titled returns an award with its demo title and surplus equal to count.
func titled(awardID, count int, rate, tree string) demoAward {
	return demoAward{awardID: awardID, title: demoTitles[awardID], count: count, surplus: count, rate: rate, tree: tree}
}

// demoStrategyAwards lists each strategy's awards in sort order.
func demoStrategyAwards() map[int64][]demoAward {
	const luck, lock1, lock2, lock3 = "tree_luck_award", "tree_lock_1", "tree_lock_2", "tree_lock_3"
	const openAIStock = 1000000
	return map[int64][]demoAward{
		100001: {
			{awardID: 101, title: "随机积分", count: 80000, surplus: 79998, rate: "0.3000", tree: luck},
			{awardID: 102, title: "5次使用", count: 10000, surplus: 9999, rate: "0.2000", tree: luck},
			{awardID: 103, title: "10次使用", count: 5000, surplus: 4998, rate: "0.2000", tree: luck},
			{awardID: 104, title: "20次使用", count: 4000, surplus: 3999, rate: "0.1000", tree: luck},
			{awardID: 105, title: "增加gpt-4对话模型", count: 600, surplus: 600, rate: "0.1000", tree: luck},
			{awardID: 106, title: "增加dall-e-2画图模型", count: 200, surplus: 200, rate: "0.0500", tree: luck},
			{awardID: 107, title: "增加dall-e-3画图模型", count: 200, surplus: 200, rate: "0.0400", tree: luck},
			{awardID: 108, title: "增加100次使用", count: 199, surplus: 199, rate: "0.0099", tree: luck},
			{awardID: 109, title: "解锁全部模型", count: 1, surplus: 1, rate: "0.0001", tree: luck},
		},
		100002: {
			titled(101, 1, "0.5000", ""),
			titled(102, 1, "0.1000", ""),
			titled(106, 1, "0.0100", ""),
		},
		100003: {
			titled(107, 200, "0.0400", ""),
			titled(108, 199, "0.0099", ""),
			titled(109, 1, "0.0001", ""),
		},
		100004: {
			titled(109, 1, "1.0000", ""),
		},
		100005: {
			titled(101, 80000, "0.0300", ""),
			titled(102, 80000, "0.0300", ""),
			titled(103, 80000, "0.0300", ""),
			titled(104, 80000, "0.0300", ""),
			titled(105, 80000, "0.0010", ""),
		},
		100006: {
			{awardID: 101, title: "随机积分", count: 10000, surplus: 9982, rate: "0.7900", tree: luck},
			{awardID: 102, title: "OpenAI会员卡", count: 100, surplus: 15, rate: "0.0300"},
			{awardID: 103, title: "支付优惠券", count: 100, surplus: 38, rate: "0.0300"},
			{awardID: 104, title: "小米台灯", count: 100, surplus: 28, rate: "0.0300"},
			{awardID: 105, title: "小米su7周体验", subtitle: "抽奖3次后解锁", count: 100, surplus: 37, rate: "0.0300", tree: lock3},
			{awardID: 106, title: "轻奢办公椅", subtitle: "抽奖2次后解锁", count: 100, surplus: 22, rate: "0.0300", tree: lock2},
			{awardID: 107, title: "小霸王游戏机", subtitle: "抽奖1次后解锁", count: 100, surplus: 21, rate: "0.0300", tree: lock1},
			{awardID: 108, title: "暴走玩偶", count: 100, surplus: 25, rate: "0.0003", tree: luck},
		},
		10007: {
			titled(101, openAIStock, "0.1000", ""),
			titled(110, openAIStock, "0.8000", ""),
			titled(111, openAIStock, "0.0800", ""),
			titled(112, openAIStock, "0.0100", ""),
			titled(113, openAIStock, "0.0002", lock3),
			titled(114, openAIStock, "0.0040", lock2),
			titled(115, openAIStock, "0.0008", lock1),
			titled(116, openAIStock, "0.0050", ""),
		},
	}
}

// demoData returns every demo table in insertion order.
func demoData() []seedTable {
	strategies := seedTable{
		table:   "strategy",
		columns: []string{"strategy_id", "strategy_desc", "rule_models"},
		rows: [][]any{
			{100001, "抽奖策略", "rule_blacklist,rule_weight"},
			{100002, "抽奖策略-验证概率计算", ""},
			{100003, "抽奖策略-验证规则", ""},
			{100004, "抽奖策略-单一奖品", ""},
			{100005, "抽奖策略-测试概率计算", ""},
			{100006, "抽奖策略-规则树", "rule_blacklist,rule_weight"},
			{10007, "OpenAI抽奖策略", ""},
		},
	}

	awards := seedTable{
		table: "strategy_award",
		columns: []string{"strategy_id", "award_id", "award_title", "award_subtitle", "award_count",
			"award_count_surplus", "award_rate", "rule_models", "sort"},
	}
	byStrategy := demoStrategyAwards()
	for _, s := range strategies.rows {
		id := int64(s[0].(int))
		for i, a := range byStrategy[id] {
			awards.rows = append(awards.rows, []any{id, a.awardID, a.title, a.subtitle, a.count, a.surplus, a.rate, a.tree, i + 1})
		}
	}

	const blacklist = "101:user001,user002,user003"
	rules := seedTable{
		table:   "strategy_rule",
		columns: []string{"strategy_id", "award_id", "rule_type", "rule_model", "rule_value", "rule_desc"},
		rows: [][]any{
			{100001, nil, 1, "rule_blacklist", blacklist, "黑名单抽奖，名单内用户直接获得随机积分"},
			{100001, nil, 1, "rule_weight", "60:102,103,104,105 200:106,107 1000:105", "权重抽奖，抽奖次数达到阈值后在指定奖品范围内抽奖"},
			{100006, nil, 1, "rule_blacklist", blacklist, "黑名单抽奖，名单内用户直接获得随机积分"},
			{100006, nil, 1, "rule_weight", "10:102,103 70:106,107 1000:104,105", "权重抽奖，抽奖次数达到阈值后在指定奖品范围内抽奖"},
		},
	}

	awardRows := seedTable{
		table:   "award",
		columns: []string{"award_id", "award_key", "award_config", "award_desc"},
		rows: [][]any{
			{100, "user_credit_blacklist", "1", "黑名单积分"},
			{101, "user_credit_random", "1,100", "用户积分，随机1到100"},
		},
	}
	for _, a := range []struct {
		id     int
		config string
	}{{102, "5"}, {103, "10"}, {104, "20"}, {108, "100"}, {110, "1"}, {111, "5"}, {112, "10"},
		{113, "15"}, {114, "20"}, {115, "25"}, {116, "50"}, {117, "100"}} {
		awardRows.rows = append(awardRows.rows, []any{a.id, "openai_use_count", a.config, "OpenAI增加使用次数"})
	}
	for _, a := range []struct {
		id     int
		config string
	}{{105, "gpt-4"}, {106, "dall-e-2"}, {107, "dall-e-3"}, {109, "gpt-4,dall-e-2,dall-e-3"}} {
		awardRows.rows = append(awardRows.rows, []any{a.id, "openai_model", a.config, "OpenAI增加模型"})
	}

	trees := seedTable{
		table:   "rule_tree",
		columns: []string{"tree_id", "tree_name", "tree_desc", "tree_node_rule_key"},
	}
	nodes := seedTable{
		table:   "rule_tree_node",
		columns: []string{"tree_id", "rule_key", "rule_desc", "rule_value"},
	}
	lines := seedTable{
		table:   "rule_tree_node_line",
		columns: []string{"tree_id", "rule_node_from", "rule_node_to", "rule_limit_type", "rule_limit_value"},
	}
	const luckValue = "101:1,100"
	for n := 1; n <= 3; n++ {
		id := fmt.Sprintf("tree_lock_%d", n)
		trees.rows = append(trees.rows, []any{id, "规则树", fmt.Sprintf("抽奖%d次后解锁，否则兜底奖励", n), "rule_lock"})
		nodes.rows = append(nodes.rows,
			[]any{id, "rule_lock", fmt.Sprintf("限定用户已完成%d次抽奖后解锁", n), fmt.Sprint(n)},
			[]any{id, "rule_stock", "库存扣减规则", ""},
			[]any{id, "rule_luck_award", "兜底奖品随机积分", luckValue},
		)
		lines.rows = append(lines.rows,
			[]any{id, "rule_lock", "rule_stock", "EQUAL", "ALLOW"},
			[]any{id, "rule_lock", "rule_luck_award", "EQUAL", "TAKE_OVER"},
			[]any{id, "rule_stock", "rule_luck_award", "EQUAL", "ALLOW"},
		)
	}
	trees.rows = append(trees.rows, []any{"tree_luck_award", "规则树-兜底奖励", "库存不足时兜底奖励", "rule_stock"})
	nodes.rows = append(nodes.rows,
		[]any{"tree_luck_award", "rule_stock", "库存扣减规则", ""},
		[]any{"tree_luck_award", "rule_luck_award", "兜底奖品随机积分", luckValue},
	)
	lines.rows = append(lines.rows, []any{"tree_luck_award", "rule_stock", "rule_luck_award", "EQUAL", "ALLOW"})

	activities := seedTable{
		table:   "raffle_activity",
		columns: []string{"activity_id", "activity_name", "activity_desc", "begin_date_time", "end_date_time", "strategy_id", "state"},
		rows: [][]any{
			{100301, "测试活动", "测试活动", demoTime(2024, 3, 9, 10, 15, 10), demoTime(2034, 3, 9, 10, 15, 10), 100006, "open"},
			{100401, "OpenAi抽奖活动", "OpenAi抽奖活动", demoTime(2024, 10, 6, 0, 0, 0), demoTime(2036, 10, 6, 0, 0, 0), 10007, "open"},
		},
	}

	counts := seedTable{
		table:   "raffle_activity_count",
		columns: []string{"activity_count_id", "total_count", "day_count", "month_count"},
		rows: [][]any{
			{11101, 150, 150, 150},
			{11102, 50, 50, 50},
			{11103, 5, 5, 5},
			{11104, 1, 1, 1},
			{22201, 1, 1, 1},
			{22202, 5, 5, 5},
			{22203, 10, 10, 10},
		},
	}

	skus := seedTable{
		table:   "raffle_activity_sku",
		columns: []string{"sku", "activity_id", "activity_count_id", "stock_count", "stock_count_surplus", "product_amount"},
		rows: [][]any{
			{9011, 100301, 11101, 100000, 100000, "200.00"},
			{9012, 100301, 11102, 100000, 100000, "100.00"},
			{9013, 100301, 11103, 100000, 100000, "20.00"},
			{9014, 100301, 11104, 100000, 100000, "5.00"},
			{9901, 100401, 22201, 100000, 100000, "5.00"},
			{9902, 100401, 22202, 100000, 100000, "10.00"},
			{9903, 100401, 22203, 100000, 100000, "20.00"},
		},
	}

	rebates := seedTable{
		table:   "daily_behavior_rebate",
		columns: []string{"behavior_type", "rebate_desc", "rebate_type", "rebate_config", "state"},
		rows: [][]any{
			{"sign", "签到返利-积分", "integral", "10", "open"},
			{"sign", "签到返利-sku额度", "sku", "9014", "open"},
			{"openai_pay", "OpenAI支付返利-sku额度", "sku", "9901", "open"},
			{"openai_pay", "OpenAI支付返利-积分", "integral", "10", "open"},
		},
	}

	stages := seedTable{
		table:   "raffle_activity_stage",
		columns: []string{"channel", "source", "activity_id", "state"},
		rows:    [][]any{{"c01", "s01", 100401, "active"}},
	}

	return []seedTable{strategies, awards, rules, awardRows, trees, nodes, lines, activities, counts, skus, rebates, stages}
}

// demoTime is a demo datetime; DATETIME columns hold UTC.
func demoTime(y int, mo time.Month, d, h, mi, s int) time.Time {
	return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
}
