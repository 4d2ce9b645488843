package sqlstore_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/sqlstore"
	"github.com/bigmarket/bigmarket/sqlstore/sqltest"
	"github.com/bigmarket/bigmarket/strategy"
)

// TestContract runs the store contract on SQLite and, when BIGMARKET_TEST_MYSQL_DSN is set,
// on MySQL/MariaDB.
func TestContract(t *testing.T) {
	t.Parallel()
	sqltest.Run(t, testContract)
}

func testContract(t *testing.T, db *sqlstore.DB) {
	ctx := t.Context()
	for range 2 {
		if err := sqlstore.MigrateConfig(ctx, db); err != nil {
			t.Fatalf("MigrateConfig: %v", err)
		}
		if err := sqlstore.SeedDemo(ctx, db); err != nil {
			t.Fatalf("SeedDemo: %v", err)
		}
	}
	store := sqlstore.NewConfigStore(db)

	t.Run("seed row counts", func(t *testing.T) { testSeedCounts(t, db) })
	t.Run("seed exact values", func(t *testing.T) { testSeedValues(t, db) })
	t.Run("load strategy 100006", func(t *testing.T) { testLoad100006(t, store) })
	t.Run("load other strategies", func(t *testing.T) { testLoadOthers(t, store) })
	t.Run("load errors", func(t *testing.T) { testLoadErrors(t, db, store) })
	t.Run("sync award surplus", func(t *testing.T) { testSyncSurplus(t, db, store) })
	t.Run("top-up and sync issued", func(t *testing.T) { testTopUpAndSyncIssued(t, db, store) })
	t.Run("is duplicate", func(t *testing.T) { testIsDuplicate(t, db) })
	t.Run("migrate user", func(t *testing.T) { testMigrateUser(t, db) })
}

func count(t *testing.T, db *sqlstore.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.SQL.QueryRowContext(t.Context(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func testSeedCounts(t *testing.T, db *sqlstore.DB) {
	tables := map[string]int{
		"strategy":              7,
		"strategy_award":        37,
		"strategy_rule":         4,
		"award":                 18,
		"rule_tree":             4,
		"rule_tree_node":        11,
		"rule_tree_node_line":   10,
		"raffle_activity":       2,
		"raffle_activity_count": 7,
		"raffle_activity_sku":   7,
		"raffle_activity_stage": 1,
		"daily_behavior_rebate": 4,
	}
	for table, want := range tables {
		if got := count(t, db, "SELECT COUNT(*) FROM "+table); got != want {
			t.Errorf("%s has %d rows, want %d", table, got, want)
		}
	}
	perStrategy := map[int64]int{100001: 9, 100002: 3, 100003: 3, 100004: 1, 100005: 5, 100006: 8, 10007: 8}
	for id, want := range perStrategy {
		if got := count(t, db, "SELECT COUNT(*) FROM strategy_award WHERE strategy_id = ?", id); got != want {
			t.Errorf("strategy %d has %d awards, want %d", id, got, want)
		}
	}
}

func testSeedValues(t *testing.T, db *sqlstore.DB) {
	ctx := t.Context()
	strings := []struct {
		query string
		args  []any
		want  string
	}{
		{"SELECT award_rate FROM strategy_award WHERE strategy_id = ? AND award_id = ?", []any{100006, 108}, "0.0003"},
		{"SELECT award_rate FROM strategy_award WHERE strategy_id = ? AND award_id = ?", []any{100004, 109}, "1.0000"},
		{"SELECT award_rate FROM strategy_award WHERE strategy_id = ? AND award_id = ?", []any{10007, 113}, "0.0002"},
		{"SELECT product_amount FROM raffle_activity_sku WHERE sku = ?", []any{9011}, "200.00"},
		{"SELECT product_amount FROM raffle_activity_sku WHERE sku = ?", []any{9014}, "5.00"},
		{"SELECT award_title FROM strategy_award WHERE strategy_id = ? AND award_id = ?", []any{100001, 106}, "增加dall-e-2画图模型"},
		{"SELECT award_config FROM award WHERE award_id = ?", []any{109}, "gpt-4,dall-e-2,dall-e-3"},
		{"SELECT rebate_config FROM daily_behavior_rebate WHERE behavior_type = ? AND rebate_type = ?", []any{"sign", "sku"}, "9014"},
		{"SELECT state FROM raffle_activity_stage WHERE channel = ? AND source = ? AND activity_id = ?", []any{"c01", "s01", 100401}, "active"},
		{"SELECT rule_value FROM strategy_rule WHERE strategy_id = ? AND rule_model = ?", []any{100001, "rule_weight"}, "60:102,103,104,105 200:106,107 1000:105"},
	}
	for _, c := range strings {
		var got string
		if err := db.SQL.QueryRowContext(ctx, c.query, c.args...).Scan(&got); err != nil {
			t.Fatalf("%s %v: %v", c.query, c.args, err)
		}
		if got != c.want {
			t.Errorf("%s %v = %q, want %q", c.query, c.args, got, c.want)
		}
	}
	var total, day, month int
	if err := db.SQL.QueryRowContext(ctx, "SELECT total_count, day_count, month_count FROM raffle_activity_count WHERE activity_count_id = ?", 11101).Scan(&total, &day, &month); err != nil {
		t.Fatal(err)
	}
	if total != 150 || day != 150 || month != 150 {
		t.Errorf("activity count 11101 = %d/%d/%d, want 150/150/150", total, day, month)
	}
	var begin, end time.Time
	if err := db.SQL.QueryRowContext(ctx, "SELECT begin_date_time, end_date_time FROM raffle_activity WHERE activity_id = ?", 100401).Scan(&begin, &end); err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2024, 10, 6, 0, 0, 0, 0, time.UTC); !begin.Equal(want) {
		t.Errorf("activity 100401 begins %v, want %v", begin, want)
	}
	if want := time.Date(2036, 10, 6, 0, 0, 0, 0, time.UTC); !end.Equal(want) {
		t.Errorf("activity 100401 ends %v, want %v", end, want)
	}
}

// lockTree is tree_lock_n of the demo.
func lockTree(n string, desc string) strategy.TreeConfig {
	return strategy.TreeConfig{
		ID: "tree_lock_" + n, Name: "规则树", Desc: desc, Root: strategy.RuleLock,
		Nodes: []strategy.TreeNode{
			{RuleKey: strategy.RuleLock, Desc: "限定用户已完成" + n + "次抽奖后解锁", Value: n},
			{RuleKey: strategy.RuleStock, Desc: "库存扣减规则", Value: ""},
			{RuleKey: strategy.RuleLuckAward, Desc: "兜底奖品随机积分", Value: "101:1,100"},
		},
		Lines: []strategy.TreeLine{
			{From: strategy.RuleLock, To: strategy.RuleStock, LimitType: "EQUAL", LimitValue: "ALLOW"},
			{From: strategy.RuleLock, To: strategy.RuleLuckAward, LimitType: "EQUAL", LimitValue: "TAKE_OVER"},
			{From: strategy.RuleStock, To: strategy.RuleLuckAward, LimitType: "EQUAL", LimitValue: "ALLOW"},
		},
	}
}

var luckTree = strategy.TreeConfig{
	ID: "tree_luck_award", Name: "规则树-兜底奖励", Desc: "库存不足时兜底奖励", Root: strategy.RuleStock,
	Nodes: []strategy.TreeNode{
		{RuleKey: strategy.RuleStock, Desc: "库存扣减规则", Value: ""},
		{RuleKey: strategy.RuleLuckAward, Desc: "兜底奖品随机积分", Value: "101:1,100"},
	},
	Lines: []strategy.TreeLine{
		{From: strategy.RuleStock, To: strategy.RuleLuckAward, LimitType: "EQUAL", LimitValue: "ALLOW"},
	},
}

func testLoad100006(t *testing.T, store *sqlstore.ConfigStore) {
	got, err := store.LoadStrategy(t.Context(), 100006)
	if err != nil {
		t.Fatalf("LoadStrategy(100006): %v", err)
	}
	if want := time.Date(2034, 3, 9, 10, 15, 10, 0, time.UTC); !got.ActivityEnd.Equal(want) {
		t.Errorf("ActivityEnd = %v, want %v", got.ActivityEnd, want)
	}
	got.ActivityEnd = time.Time{}
	want := strategy.Config{
		StrategyID: 100006,
		Desc:       "抽奖策略-规则树",
		RuleModels: []strategy.RuleModel{strategy.RuleBlacklist, strategy.RuleWeight},
		Awards: []strategy.Award{
			{AwardID: 101, Title: "随机积分", Count: 10000, Surplus: 9982, Rate: 7900, TreeID: "tree_luck_award", Sort: 1, AwardKey: "user_credit_random", AwardConfig: "1,100"},
			{AwardID: 102, Title: "OpenAI会员卡", Count: 100, Surplus: 15, Rate: 300, Sort: 2, AwardKey: "openai_use_count", AwardConfig: "5"},
			{AwardID: 103, Title: "支付优惠券", Count: 100, Surplus: 38, Rate: 300, Sort: 3, AwardKey: "openai_use_count", AwardConfig: "10"},
			{AwardID: 104, Title: "小米台灯", Count: 100, Surplus: 28, Rate: 300, Sort: 4, AwardKey: "openai_use_count", AwardConfig: "20"},
			{AwardID: 105, Title: "小米su7周体验", Subtitle: "抽奖3次后解锁", Count: 100, Surplus: 37, Rate: 300, TreeID: "tree_lock_3", Sort: 5, AwardKey: "openai_model", AwardConfig: "gpt-4"},
			{AwardID: 106, Title: "轻奢办公椅", Subtitle: "抽奖2次后解锁", Count: 100, Surplus: 22, Rate: 300, TreeID: "tree_lock_2", Sort: 6, AwardKey: "openai_model", AwardConfig: "dall-e-2"},
			{AwardID: 107, Title: "小霸王游戏机", Subtitle: "抽奖1次后解锁", Count: 100, Surplus: 21, Rate: 300, TreeID: "tree_lock_1", Sort: 7, AwardKey: "openai_model", AwardConfig: "dall-e-3"},
			{AwardID: 108, Title: "暴走玩偶", Count: 100, Surplus: 25, Rate: 3, TreeID: "tree_luck_award", Sort: 8, AwardKey: "openai_use_count", AwardConfig: "100"},
		},
		Rules: []strategy.Rule{
			{Type: 1, Model: strategy.RuleBlacklist, Value: "101:user001,user002,user003", Desc: "黑名单抽奖，名单内用户直接获得随机积分"},
			{Type: 1, Model: strategy.RuleWeight, Value: "10:102,103 70:106,107 1000:104,105", Desc: "权重抽奖，抽奖次数达到阈值后在指定奖品范围内抽奖"},
		},
		Trees: map[string]strategy.TreeConfig{
			"tree_luck_award": luckTree,
			"tree_lock_1":     lockTree("1", "抽奖1次后解锁，否则兜底奖励"),
			"tree_lock_2":     lockTree("2", "抽奖2次后解锁，否则兜底奖励"),
			"tree_lock_3":     lockTree("3", "抽奖3次后解锁，否则兜底奖励"),
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("LoadStrategy(100006) =\n%+v\nwant\n%+v", got, want)
	}
	if got.Awards[0].Rate != strategy.Rate(7900) || got.Awards[7].Rate != strategy.Rate(3) {
		t.Errorf("rates of 101 and 108 = %v, %v; want 0.7900, 0.0003", got.Awards[0].Rate, got.Awards[7].Rate)
	}
}

func testLoadOthers(t *testing.T, store *sqlstore.ConfigStore) {
	ctx := t.Context()
	c, err := store.LoadStrategy(ctx, 10007)
	if err != nil {
		t.Fatalf("LoadStrategy(10007): %v", err)
	}
	if want := time.Date(2036, 10, 6, 0, 0, 0, 0, time.UTC); !c.ActivityEnd.Equal(want) {
		t.Errorf("10007 ActivityEnd = %v, want %v", c.ActivityEnd, want)
	}
	if len(c.RuleModels) != 0 || len(c.Rules) != 0 {
		t.Errorf("10007 rule models %v rules %v, want none", c.RuleModels, c.Rules)
	}
	var ids []int
	var sum strategy.Rate
	for _, a := range c.Awards {
		ids = append(ids, a.AwardID)
		sum += a.Rate
		if a.Count != 1000000 || a.Surplus != 1000000 {
			t.Errorf("10007 award %d stock %d/%d, want 1000000/1000000", a.AwardID, a.Count, a.Surplus)
		}
	}
	if want := []int{101, 110, 111, 112, 113, 114, 115, 116}; !reflect.DeepEqual(ids, want) {
		t.Errorf("10007 awards %v, want %v", ids, want)
	}
	if sum != 10000 {
		t.Errorf("10007 rates sum to %v, want 1.0000", sum)
	}
	if c.Awards[0].TreeID != "" || c.Awards[4].TreeID != "tree_lock_3" || c.Awards[4].Rate != 2 {
		t.Errorf("10007 awards 101/113 = %+v / %+v", c.Awards[0], c.Awards[4])
	}
	if len(c.Trees) != 3 || !reflect.DeepEqual(c.Trees["tree_lock_2"], lockTree("2", "抽奖2次后解锁，否则兜底奖励")) {
		t.Errorf("10007 trees = %+v", c.Trees)
	}

	c, err = store.LoadStrategy(ctx, 100002)
	if err != nil {
		t.Fatalf("LoadStrategy(100002): %v", err)
	}
	if !c.ActivityEnd.IsZero() || len(c.Trees) != 0 || len(c.RuleModels) != 0 {
		t.Errorf("100002 = %+v, want no activity, trees or rule models", c)
	}
	if len(c.Awards) != 3 || c.Awards[2].AwardID != 106 || c.Awards[2].Title != "增加dall-e-2画图模型" || c.Awards[2].Rate != 100 || c.Awards[2].Sort != 3 {
		t.Errorf("100002 awards = %+v", c.Awards)
	}

	c, err = store.LoadStrategy(ctx, 100001)
	if err != nil {
		t.Fatalf("LoadStrategy(100001): %v", err)
	}
	if a := c.Awards[8]; a.AwardID != 109 || a.Rate != 1 || a.Count != 1 || a.Surplus != 1 || a.Title != "解锁全部模型" {
		t.Errorf("100001 award 109 = %+v", a)
	}
	if a := c.Awards[0]; a.Surplus != 79998 || a.Rate != 3000 {
		t.Errorf("100001 award 101 = %+v", a)
	}
	if len(c.Trees) != 1 || !reflect.DeepEqual(c.Trees["tree_luck_award"], luckTree) {
		t.Errorf("100001 trees = %+v", c.Trees)
	}
}

func testLoadErrors(t *testing.T, db *sqlstore.DB, store *sqlstore.ConfigStore) {
	ctx := t.Context()
	if _, err := store.LoadStrategy(ctx, 999); !errors.Is(err, strategy.ErrStrategyNotFound) {
		t.Errorf("LoadStrategy(999) error = %v, want ErrStrategyNotFound", err)
	}
	mustExec(t, db, "INSERT INTO strategy (strategy_id, strategy_desc, rule_models) VALUES (?, ?, ?)", 999001, "no awards", "")
	if _, err := store.LoadStrategy(ctx, 999001); !errors.Is(err, strategy.ErrStrategyNotFound) {
		t.Errorf("LoadStrategy(strategy without awards) error = %v, want ErrStrategyNotFound", err)
	}
	mustExec(t, db, "INSERT INTO strategy (strategy_id, strategy_desc, rule_models) VALUES (?, ?, ?)", 999002, "missing tree", " rule_weight , ")
	mustExec(t, db, `INSERT INTO strategy_award (strategy_id, award_id, award_title, award_count, award_count_surplus, award_rate, rule_models, sort)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, 999002, 999, "no award row", 1, 1, "0.5", "tree_missing", 1)
	_, err := store.LoadStrategy(ctx, 999002)
	if !errors.Is(err, strategy.ErrInvalidTree) {
		t.Errorf("LoadStrategy(strategy with a missing tree) error = %v, want ErrInvalidTree", err)
	}
	// Without the tree the strategy loads; the award has no award row, so key and config
	// stay empty, and the padded rule_models is trimmed.
	mustExec(t, db, "UPDATE strategy_award SET rule_models = '' WHERE strategy_id = ?", 999002)
	c, err := store.LoadStrategy(ctx, 999002)
	if err != nil {
		t.Fatalf("LoadStrategy(999002): %v", err)
	}
	if a := c.Awards[0]; a.AwardKey != "" || a.AwardConfig != "" || a.Rate != 5000 {
		t.Errorf("award without award row = %+v", a)
	}
	if !reflect.DeepEqual(c.RuleModels, []strategy.RuleModel{strategy.RuleWeight}) {
		t.Errorf("rule models = %q, want [rule_weight]", c.RuleModels)
	}
}

func mustExec(t *testing.T, db *sqlstore.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.SQL.ExecContext(t.Context(), query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func testSyncSurplus(t *testing.T, db *sqlstore.DB, store *sqlstore.ConfigStore) {
	ctx := t.Context()
	ref := strategy.AwardRef{StrategyID: 100006, AwardID: 102}
	surplus := func() int {
		return count(t, db, "SELECT award_count_surplus FROM strategy_award WHERE strategy_id = ? AND award_id = ?", ref.StrategyID, ref.AwardID)
	}
	for _, step := range []struct {
		remaining int64
		want      int
	}{{10, 10}, {12, 10}, {10, 10}, {16, 10}, {0, 0}, {5, 0}} {
		if err := store.SyncAwardSurplus(ctx, ref, step.remaining); err != nil {
			t.Fatalf("SyncAwardSurplus(%d): %v", step.remaining, err)
		}
		if got := surplus(); got != step.want {
			t.Fatalf("after SyncAwardSurplus(%d) surplus = %d, want %d", step.remaining, got, step.want)
		}
	}
	// Seeding again keeps the synced value, and other awards are untouched.
	if err := sqlstore.SeedDemo(ctx, db); err != nil {
		t.Fatalf("SeedDemo: %v", err)
	}
	if got := surplus(); got != 0 {
		t.Errorf("surplus after reseed = %d, want 0", got)
	}
	if got := count(t, db, "SELECT award_count_surplus FROM strategy_award WHERE strategy_id = ? AND award_id = ?", 100006, 103); got != 38 {
		t.Errorf("award 103 surplus = %d, want 38", got)
	}
	if err := store.SyncAwardSurplus(ctx, strategy.AwardRef{StrategyID: 1, AwardID: 1}, 1); err != nil {
		t.Errorf("SyncAwardSurplus of an unknown award: %v", err)
	}
}

// testTopUpAndSyncIssued tops up award 104 of 100006 (count 100, surplus 28: 72 granted)
// and checks that a sync of a grant made before the top-up never takes the new units
// back, while later grants lower the surplus as usual.
func testTopUpAndSyncIssued(t *testing.T, db *sqlstore.DB, store *sqlstore.ConfigStore) {
	ctx := t.Context()
	ref := strategy.AwardRef{StrategyID: 100006, AwardID: 104}
	level := func() (int, int) {
		return count(t, db, "SELECT award_count FROM strategy_award WHERE strategy_id = ? AND award_id = ?", ref.StrategyID, ref.AwardID),
			count(t, db, "SELECT award_count_surplus FROM strategy_award WHERE strategy_id = ? AND award_id = ?", ref.StrategyID, ref.AwardID)
	}
	// Grants up to number 100 sell it out.
	for _, issued := range []int64{80, 100, 90} {
		if err := store.SyncAwardIssued(ctx, ref, issued); err != nil {
			t.Fatal(err)
		}
	}
	if c, s := level(); c != 100 || s != 0 {
		t.Fatalf("after grants up to 100: count %d surplus %d, want 100 and 0", c, s)
	}
	total, err := store.AddAwardStock(ctx, ref, 10)
	if err != nil || total != 110 {
		t.Fatalf("AddAwardStock: %d %v", total, err)
	}
	// Late syncs of grants before the top-up (the reconcile job's old watermark, a
	// redelivered message) leave the new units alone.
	for _, issued := range []int64{100, 95, 0} {
		if err := store.SyncAwardIssued(ctx, ref, issued); err != nil {
			t.Fatal(err)
		}
		if c, s := level(); c != 110 || s != 10 {
			t.Fatalf("sync of issued %d after the top-up: count %d surplus %d, want 110 and 10", issued, c, s)
		}
	}
	for _, step := range []struct{ issued, want int64 }{{104, 6}, {102, 6}, {110, 0}, {500, 0}} {
		if err := store.SyncAwardIssued(ctx, ref, step.issued); err != nil {
			t.Fatal(err)
		}
		if _, s := level(); int64(s) != step.want {
			t.Fatalf("sync of issued %d: surplus %d, want %d", step.issued, s, step.want)
		}
	}
	// Unknown awards and counts past the column's range change nothing.
	if _, err := store.AddAwardStock(ctx, strategy.AwardRef{StrategyID: 100006, AwardID: 999}, 1); !errors.Is(err, strategy.ErrAwardNotFound) {
		t.Errorf("top-up of an unknown award: %v", err)
	}
	if _, err := store.AddAwardStock(ctx, ref, 1<<31-100); !errors.Is(err, strategy.ErrInvalidUnits) {
		t.Errorf("top-up past the column's range: %v", err)
	}
	if c, s := level(); c != 110 || s != 0 {
		t.Errorf("after refused top-ups: count %d surplus %d, want 110 and 0", c, s)
	}
}

func testIsDuplicate(t *testing.T, db *sqlstore.DB) {
	ctx := t.Context()
	_, err := db.SQL.ExecContext(ctx, "INSERT INTO strategy (strategy_id, strategy_desc, rule_models) VALUES (?, ?, ?)", 100001, "dup", "")
	if !sqlstore.IsDuplicate(err) {
		t.Errorf("IsDuplicate(%v) = false for a duplicate strategy_id", err)
	}
	_, err = db.SQL.ExecContext(ctx, "INSERT INTO no_such_table (x) VALUES (?)", 1)
	if err == nil || sqlstore.IsDuplicate(err) {
		t.Errorf("IsDuplicate(%v) = true for a missing table", err)
	}
	if sqlstore.IsDuplicate(nil) {
		t.Error("IsDuplicate(nil) = true")
	}
	// The insert-ignore seam skips the duplicate without error.
	res, err := db.SQL.ExecContext(ctx, db.Dialect.InsertIgnore("strategy", 2, "strategy_id", "strategy_desc", "rule_models"),
		100001, "dup", "", 999100, "new", "")
	if err != nil {
		t.Fatalf("InsertIgnore: %v", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Errorf("InsertIgnore affected %d rows, want 1", n)
	}
}

func testMigrateUser(t *testing.T, db *sqlstore.DB) {
	ctx := t.Context()
	for range 2 {
		if err := sqlstore.MigrateUser(ctx, db, 4); err != nil {
			t.Fatalf("MigrateUser(4): %v", err)
		}
	}
	if err := sqlstore.MigrateUser(ctx, db, 3); err == nil {
		t.Error("MigrateUser(3) succeeded, want an error for a table count that is not a power of two")
	}
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range 4 {
		suffix := sqlstore.TableSuffix(i)
		mustExec(t, db, `INSERT INTO user_raffle_order`+suffix+` (user_id, activity_id, activity_name, strategy_id, order_id, order_time, order_state)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, "xiaofuge", 100301, "测试活动", 100006, "order"+suffix, at, "create")
		var orderID string
		var orderTime time.Time
		if err := db.SQL.QueryRowContext(ctx, "SELECT order_id, order_time FROM user_raffle_order"+suffix+" WHERE user_id = ? AND activity_id = ? AND order_state = ?",
			"xiaofuge", 100301, "create").Scan(&orderID, &orderTime); err != nil {
			t.Fatalf("select user_raffle_order%s: %v", suffix, err)
		}
		if orderID != "order"+suffix || !orderTime.Equal(at) {
			t.Errorf("user_raffle_order%s row = %s %v, want order%s %v", suffix, orderID, orderTime, suffix, at)
		}
		for _, table := range []string{"raffle_activity_order", "user_award_record", "user_behavior_rebate_order", "user_credit_order"} {
			count(t, db, "SELECT COUNT(*) FROM "+table+suffix)
		}
	}
	_, err := db.SQL.ExecContext(ctx, `INSERT INTO user_raffle_order_000 (user_id, activity_id, activity_name, strategy_id, order_id, order_time, order_state)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, "xfg", 100301, "测试活动", 100006, "order_000", at, "create")
	if !sqlstore.IsDuplicate(err) {
		t.Errorf("duplicate order_id: IsDuplicate(%v) = false", err)
	}
	if _, err := db.SQL.ExecContext(ctx, "SELECT COUNT(*) FROM user_raffle_order_004"); err == nil {
		t.Error("user_raffle_order_004 exists with 4 tables")
	}

	// Money reads back exactly, and the per-database tables exist.
	mustExec(t, db, "INSERT INTO user_credit_account (user_id, total_amount, available_amount, account_status) VALUES (?, ?, ?, ?)", "xiaofuge", "10.19", "0.01", "open")
	var total, available string
	if err := db.SQL.QueryRowContext(ctx, "SELECT total_amount, available_amount FROM user_credit_account WHERE user_id = ?", "xiaofuge").Scan(&total, &available); err != nil {
		t.Fatal(err)
	}
	if total != "10.19" || available != "0.01" {
		t.Errorf("credit account amounts = %s, %s; want 10.19, 0.01", total, available)
	}
	for _, table := range []string{"raffle_activity_account", "raffle_activity_account_day", "raffle_activity_account_month", "task"} {
		count(t, db, "SELECT COUNT(*) FROM "+table)
	}

	// CURRENT_TIMESTAMP defaults are UTC on both dialects, like the times Go writes.
	var created time.Time
	if err := db.SQL.QueryRowContext(ctx, "SELECT create_time FROM user_credit_account WHERE user_id = ?", "xiaofuge").Scan(&created); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(created); d < -time.Hour || d > time.Hour {
		t.Errorf("create_time default %v is %v away from now; the session time zone is not UTC", created, d)
	}

	// Raising the table count creates the new tables.
	if err := sqlstore.MigrateUser(ctx, db, 8); err != nil {
		t.Fatalf("MigrateUser(8): %v", err)
	}
	count(t, db, "SELECT COUNT(*) FROM user_credit_order_007")
}

func TestInsertIgnore(t *testing.T) {
	t.Parallel()
	tests := []struct {
		d    sqlstore.Dialect
		rows int
		want string
	}{
		{sqlstore.MySQL, 1, "INSERT IGNORE INTO t (a, b) VALUES (?, ?)"},
		{sqlstore.SQLite, 2, "INSERT OR IGNORE INTO t (a, b) VALUES (?, ?), (?, ?)"},
	}
	for _, tt := range tests {
		if got := tt.d.InsertIgnore("t", tt.rows, "a", "b"); got != tt.want {
			t.Errorf("%s.InsertIgnore = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestOpenSQLitePragmas(t *testing.T) {
	t.Parallel()
	db := sqltest.OpenSQLite(t)
	ctx := t.Context()
	// Hold several connections at once so the pragmas are checked beyond the first one.
	var conns []interface{ Close() error }
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 3 {
		conn, err := db.SQL.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		var mode string
		var timeout, sync int
		if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&timeout); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
			t.Fatal(err)
		}
		if mode != "wal" || timeout != 10000 || sync != 1 {
			t.Errorf("journal_mode=%s busy_timeout=%d synchronous=%d, want wal 10000 1 (NORMAL)", mode, timeout, sync)
		}
	}
}
