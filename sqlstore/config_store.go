package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bigmarket/bigmarket/strategy"
)

// ConfigStore reads strategy configuration from the config database and writes synced
// award stock back to it. It implements strategy.ConfigStore and strategy.SurplusStore.
type ConfigStore struct {
	db  *DB
	now func() time.Time
}

var (
	_ strategy.ConfigStore  = (*ConfigStore)(nil)
	_ strategy.SurplusStore = (*ConfigStore)(nil)
	_ strategy.StockStore   = (*ConfigStore)(nil)
)

// NewConfigStore returns a ConfigStore on a migrated config database.
func NewConfigStore(db *DB) *ConfigStore {
	return &ConfigStore{db: db, now: time.Now}
}

// LoadStrategy returns the strategy's row, its awards (joined with award, in sort order),
// its rules, every rule tree its awards reference, and the end of the activity that uses
// it. It runs at armory time, in six queries; a missing strategy, or one without awards,
// is strategy.ErrStrategyNotFound, and a referenced tree that does not exist is
// strategy.ErrInvalidTree.
func (s *ConfigStore) LoadStrategy(ctx context.Context, strategyID int64) (strategy.Config, error) {
	cfg, err := s.loadStrategy(ctx, strategyID)
	if err != nil {
		return strategy.Config{}, fmt.Errorf("load strategy %d: %w", strategyID, err)
	}
	return cfg, nil
}

func (s *ConfigStore) loadStrategy(ctx context.Context, strategyID int64) (strategy.Config, error) {
	cfg := strategy.Config{StrategyID: strategyID, Trees: map[string]strategy.TreeConfig{}}
	var (
		ruleModels string
		end        NullTime
	)
	err := s.db.SQL.QueryRowContext(ctx, `
		SELECT COALESCE(s.strategy_desc, ''), COALESCE(s.rule_models, ''), a.end_date_time
		FROM strategy s LEFT JOIN raffle_activity a ON a.strategy_id = s.strategy_id
		WHERE s.strategy_id = ?`, strategyID).Scan(&cfg.Desc, &ruleModels, &end)
	if errors.Is(err, sql.ErrNoRows) {
		return strategy.Config{}, strategy.ErrStrategyNotFound
	}
	if err != nil {
		return strategy.Config{}, fmt.Errorf("query strategy: %w", err)
	}
	cfg.RuleModels = splitRuleModels(ruleModels)
	cfg.ActivityEnd = end.Time

	if cfg.Awards, err = s.loadAwards(ctx, strategyID); err != nil {
		return strategy.Config{}, err
	}
	if len(cfg.Awards) == 0 {
		return strategy.Config{}, fmt.Errorf("no awards: %w", strategy.ErrStrategyNotFound)
	}
	if cfg.Rules, err = s.loadRules(ctx, strategyID); err != nil {
		return strategy.Config{}, err
	}
	var treeIDs []string
	for _, a := range cfg.Awards {
		if a.TreeID == "" {
			continue
		}
		if _, ok := cfg.Trees[a.TreeID]; !ok {
			cfg.Trees[a.TreeID] = strategy.TreeConfig{}
			treeIDs = append(treeIDs, a.TreeID)
		}
	}
	if len(treeIDs) > 0 {
		if cfg.Trees, err = s.loadTrees(ctx, treeIDs); err != nil {
			return strategy.Config{}, err
		}
	}
	return cfg, nil
}

// splitRuleModels splits a comma list of rule models, trimming blanks.
func splitRuleModels(s string) []strategy.RuleModel {
	var models []strategy.RuleModel
	for m := range strings.SplitSeq(s, ",") {
		if m = strings.TrimSpace(m); m != "" {
			models = append(models, strategy.RuleModel(m))
		}
	}
	return models
}

func (s *ConfigStore) loadAwards(ctx context.Context, strategyID int64) ([]strategy.Award, error) {
	rows, err := s.db.SQL.QueryContext(ctx, `
		SELECT sa.award_id, COALESCE(sa.award_title, ''), COALESCE(sa.award_subtitle, ''),
			sa.award_count, sa.award_count_surplus, sa.award_rate, COALESCE(sa.rule_models, ''),
			sa.sort, COALESCE(a.award_key, ''), COALESCE(a.award_config, '')
		FROM strategy_award sa LEFT JOIN award a ON a.award_id = sa.award_id
		WHERE sa.strategy_id = ?
		ORDER BY sa.sort, sa.award_id`, strategyID)
	if err != nil {
		return nil, fmt.Errorf("query awards: %w", err)
	}
	defer rows.Close()
	var awards []strategy.Award
	for rows.Next() {
		var (
			a    strategy.Award
			rate string
		)
		if err := rows.Scan(&a.AwardID, &a.Title, &a.Subtitle, &a.Count, &a.Surplus, &rate,
			&a.TreeID, &a.Sort, &a.AwardKey, &a.AwardConfig); err != nil {
			return nil, fmt.Errorf("scan award: %w", err)
		}
		a.TreeID = strings.TrimSpace(a.TreeID)
		if a.Rate, err = strategy.ParseRate(rate); err != nil {
			return nil, fmt.Errorf("award %d: %w", a.AwardID, err)
		}
		awards = append(awards, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read awards: %w", err)
	}
	return awards, nil
}

func (s *ConfigStore) loadRules(ctx context.Context, strategyID int64) ([]strategy.Rule, error) {
	rows, err := s.db.SQL.QueryContext(ctx, `
		SELECT COALESCE(award_id, 0), rule_type, rule_model, COALESCE(rule_value, ''), COALESCE(rule_desc, '')
		FROM strategy_rule WHERE strategy_id = ? ORDER BY id`, strategyID)
	if err != nil {
		return nil, fmt.Errorf("query rules: %w", err)
	}
	defer rows.Close()
	var rules []strategy.Rule
	for rows.Next() {
		var r strategy.Rule
		if err := rows.Scan(&r.AwardID, &r.Type, &r.Model, &r.Value, &r.Desc); err != nil {
			return nil, fmt.Errorf("scan rule: %w", err)
		}
		rules = append(rules, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	return rules, nil
}

// loadTrees loads the named rule trees with their nodes and lines in three queries.
func (s *ConfigStore) loadTrees(ctx context.Context, ids []string) (map[string]strategy.TreeConfig, error) {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	in := Placeholders(1, len(ids))

	trees := make(map[string]strategy.TreeConfig, len(ids))
	err := queryEach(ctx, s.db.SQL, `
		SELECT tree_id, COALESCE(tree_name, ''), COALESCE(tree_desc, ''), tree_node_rule_key
		FROM rule_tree WHERE tree_id IN `+in, args, func(rows *sql.Rows) error {
		var t strategy.TreeConfig
		if err := rows.Scan(&t.ID, &t.Name, &t.Desc, &t.Root); err != nil {
			return err
		}
		trees[t.ID] = t
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("query rule trees: %w", err)
	}
	for _, id := range ids {
		if _, ok := trees[id]; !ok {
			return nil, fmt.Errorf("rule tree %q does not exist: %w", id, strategy.ErrInvalidTree)
		}
	}

	err = queryEach(ctx, s.db.SQL, `
		SELECT tree_id, rule_key, COALESCE(rule_desc, ''), COALESCE(rule_value, '')
		FROM rule_tree_node WHERE tree_id IN `+in+` ORDER BY id`, args, func(rows *sql.Rows) error {
		var (
			id string
			n  strategy.TreeNode
		)
		if err := rows.Scan(&id, &n.RuleKey, &n.Desc, &n.Value); err != nil {
			return err
		}
		t := trees[id]
		t.Nodes = append(t.Nodes, n)
		trees[id] = t
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("query rule tree nodes: %w", err)
	}

	err = queryEach(ctx, s.db.SQL, `
		SELECT tree_id, rule_node_from, rule_node_to, rule_limit_type, rule_limit_value
		FROM rule_tree_node_line WHERE tree_id IN `+in+` ORDER BY id`, args, func(rows *sql.Rows) error {
		var (
			id string
			l  strategy.TreeLine
		)
		if err := rows.Scan(&id, &l.From, &l.To, &l.LimitType, &l.LimitValue); err != nil {
			return err
		}
		t := trees[id]
		t.Lines = append(t.Lines, l)
		trees[id] = t
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("query rule tree lines: %w", err)
	}
	return trees, nil
}

// queryEach runs query and calls fn for every row.
func queryEach(ctx context.Context, db queryer, query string, args []any, fn func(*sql.Rows) error) error {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// SyncAwardSurplus lowers the award's SQL surplus to remaining unless it is already lower:
// surplus becomes min(surplus, remaining), so replays and out-of-order syncs are harmless.
// A negative remaining is treated as zero.
func (s *ConfigStore) SyncAwardSurplus(ctx context.Context, ref strategy.AwardRef, remaining int64) error {
	remaining = max(remaining, 0)
	_, err := s.db.SQL.ExecContext(ctx, `
		UPDATE strategy_award SET award_count_surplus = ?, update_time = ?
		WHERE strategy_id = ? AND award_id = ? AND award_count_surplus > ?`,
		remaining, s.now().UTC(), ref.StrategyID, ref.AwardID, remaining)
	if err != nil {
		return fmt.Errorf("sync award surplus %d/%d: %w", ref.StrategyID, ref.AwardID, err)
	}
	return nil
}

// SyncAwardIssued records that issued units of the award were granted: its surplus becomes
// min(surplus, award_count − issued) (at least 0). A top-up adds to award_count and
// award_count_surplus in one statement, so a sync of a grant made before it lowers the
// surplus only as far as that grant allows: it never takes the new units back.
func (s *ConfigStore) SyncAwardIssued(ctx context.Context, ref strategy.AwardRef, issued int64) error {
	issued = max(issued, 0)
	_, err := s.db.SQL.ExecContext(ctx, `
		UPDATE strategy_award
		SET award_count_surplus = CASE WHEN award_count > ? THEN award_count - ? ELSE 0 END, update_time = ?
		WHERE strategy_id = ? AND award_id = ?
		AND award_count_surplus > CASE WHEN award_count > ? THEN award_count - ? ELSE 0 END`,
		issued, issued, s.now().UTC(), ref.StrategyID, ref.AwardID, issued, issued)
	if err != nil {
		return fmt.Errorf("sync award issued %d/%d: %w", ref.StrategyID, ref.AwardID, err)
	}
	return nil
}

// maxCount is the largest award_count or stock_count the int columns hold.
const maxCount = 1<<31 - 1

// AddAwardStock adds units to the award's award_count and award_count_surplus in one
// statement and returns the new award_count. An unknown award is
// strategy.ErrAwardNotFound; a count that would pass the column's range is
// strategy.ErrInvalidUnits, and changes nothing.
func (s *ConfigStore) AddAwardStock(ctx context.Context, ref strategy.AwardRef, units int64) (int64, error) {
	total, err := addStock(ctx, s.db, `
		UPDATE strategy_award SET award_count = award_count + ?, award_count_surplus = award_count_surplus + ?, update_time = ?
		WHERE strategy_id = ? AND award_id = ? AND award_count <= ?`,
		`SELECT award_count FROM strategy_award WHERE strategy_id = ? AND award_id = ?`,
		units, s.now().UTC(), []any{ref.StrategyID, ref.AwardID})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, fmt.Errorf("add stock to award %d of strategy %d: %w", ref.AwardID, ref.StrategyID, strategy.ErrAwardNotFound)
	case errors.Is(err, errCountRange):
		return 0, fmt.Errorf("add %d units to award %d of strategy %d: %w: %w", units, ref.AwardID, ref.StrategyID, strategy.ErrInvalidUnits, err)
	case err != nil:
		return 0, fmt.Errorf("add stock to award %d of strategy %d: %w", ref.AwardID, ref.StrategyID, err)
	}
	return total, nil
}

var errCountRange = fmt.Errorf("the count would pass %d", maxCount)

// addStock runs a top-up's update (whose parameters are units, units, now, the key and
// the largest count allowed before it) and reads the new count in one transaction. It
// returns sql.ErrNoRows for an unknown key and errCountRange when the update was refused
// for the count's range.
func addStock(ctx context.Context, db *DB, update, read string, units int64, now time.Time, key []any) (int64, error) {
	tx, err := db.SQL.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	args := append([]any{units, units, now}, key...)
	res, err := tx.ExecContext(ctx, update, append(args, maxCount-units)...)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	var total int64
	if err := tx.QueryRowContext(ctx, read, key...).Scan(&total); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, errCountRange
	}
	return total, tx.Commit()
}

// NullTime scans a nullable DATETIME from either driver: MySQL (parseTime) and SQLite hand
// back time.Time, but SQLite returns text when it cannot see the column's declared type;
// NULL (an outer join's missing row) is the zero time.
type NullTime struct {
	time.Time
}

// Scan implements sql.Scanner.
func (t *NullTime) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		t.Time = time.Time{}
	case time.Time:
		t.Time = v
	case string:
		return t.parse(v)
	case []byte:
		return t.parse(string(v))
	default:
		return fmt.Errorf("scan datetime: unsupported type %T", v)
	}
	return nil
}

func (t *NullTime) parse(s string) error {
	for _, layout := range []string{time.DateTime, "2006-01-02 15:04:05.999999999", time.RFC3339Nano, time.DateOnly} {
		if v, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			t.Time = v
			return nil
		}
	}
	return fmt.Errorf("scan datetime: cannot parse %q", s)
}
