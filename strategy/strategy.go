// Package strategy is big-market's strategy engine: probability tables, the rule chain,
// the rule tree and award stock, as pure domain logic behind small interfaces.
package strategy

import (
	"context"
	"errors"
	"time"
)

// Domain errors. Adapters wrap them with %w; httpapi maps them to big-market codes.
var (
	// ErrStrategyNotFound means no strategy row (or no awards) exists for the id.
	ErrStrategyNotFound = errors.New("strategy not found")
	// ErrRuleWeightMissing means a strategy lists rule_weight but has no such rule row.
	ErrRuleWeightMissing = errors.New("rule_weight not configured")
	// ErrInvalidTree means a rule tree was refused at load time.
	ErrInvalidTree = errors.New("invalid rule tree")
	// ErrInvalidConfig means a strategy row holds a value the engine cannot use.
	ErrInvalidConfig = errors.New("invalid strategy config")
	// ErrStockOut means an award's stock is exhausted.
	ErrStockOut = errors.New("award stock exhausted")
	// ErrStockMissing means an award's hot stock is not in the cache (never preheated, or
	// lost with Redis). Draws treat it as out of stock: undersell, never oversell.
	ErrStockMissing = errors.New("award stock not preheated")
)

// RuleModel names a rule in strategy.rule_models, strategy_rule.rule_model or
// rule_tree_node.rule_key.
type RuleModel string

// Rule models known to the engine.
const (
	RuleBlacklist RuleModel = "rule_blacklist"
	RuleWeight    RuleModel = "rule_weight"
	RuleDefault   RuleModel = "rule_default"
	RuleLock      RuleModel = "rule_lock"
	RuleStock     RuleModel = "rule_stock"
	RuleLuckAward RuleModel = "rule_luck_award"
)

// Config is one strategy's configuration as stored in the config database.
type Config struct {
	StrategyID int64
	Desc       string
	// RuleModels is strategy.rule_models split on commas, in chain order.
	RuleModels []RuleModel
	// Awards are the strategy_award rows joined with award (award_key, award_config).
	Awards []Award
	// Rules are the strategy_rule rows of the strategy.
	Rules []Rule
	// Trees holds every rule tree referenced by an award's TreeID, by tree id.
	Trees map[string]TreeConfig
	// ActivityEnd is the end of the raffle_activity using this strategy (zero if none);
	// stock keys live until one day after it.
	ActivityEnd time.Time
}

// Award is a strategy_award row joined with its award row.
type Award struct {
	AwardID     int
	Title       string
	Subtitle    string
	Count       int64
	Surplus     int64
	Rate        Rate
	TreeID      string // strategy_award.rule_models; empty when the award has no tree
	Sort        int
	AwardKey    string // award.award_key, e.g. user_credit_random
	AwardConfig string // award.award_config, e.g. "1,100"
}

// Rule is a strategy_rule row.
type Rule struct {
	AwardID int // zero for strategy-level rules
	Type    int // 1 strategy, 2 award
	Model   RuleModel
	Value   string
	Desc    string
}

// TreeConfig is a rule_tree with its nodes and lines.
type TreeConfig struct {
	ID    string
	Name  string
	Desc  string
	Root  RuleModel
	Nodes []TreeNode
	Lines []TreeLine
}

// TreeNode is a rule_tree_node row.
type TreeNode struct {
	RuleKey RuleModel
	Desc    string
	Value   string
}

// TreeLine is a rule_tree_node_line row.
type TreeLine struct {
	From       RuleModel
	To         RuleModel
	LimitType  string // only EQUAL is accepted
	LimitValue string // ALLOW or TAKE_OVER
}

// AwardRef names one award of one strategy: the unit of stock.
type AwardRef struct {
	StrategyID int64
	AwardID    int
}

// ConfigStore loads strategy configuration; it is implemented by sqlstore.
type ConfigStore interface {
	// LoadStrategy returns the strategy's config or an error wrapping ErrStrategyNotFound.
	LoadStrategy(ctx context.Context, strategyID int64) (Config, error)
}

// Stock is the hot award stock; it is implemented by the redis adapter with one Lua
// script per deduction.
type Stock interface {
	// Exists reports whether the award's counter is in the cache.
	Exists(ctx context.Context, ref AwardRef) (bool, error)
	// Preheat sets the award's counter to surplus unless the counter already exists.
	Preheat(ctx context.Context, ref AwardRef, surplus int64, expireAt time.Time) error
	// Deduct takes one unit and returns the units remaining after it. It returns
	// ErrStockOut when none is left and ErrStockMissing when the counter is absent. A unit
	// once granted is never granted again, even if the counter is later set back up.
	Deduct(ctx context.Context, ref AwardRef, expireAt time.Time) (remaining int64, err error)
}

// StockSink receives successful deductions so that the SQL surplus can be synced off the
// draw path. Consumed must not block.
type StockSink interface {
	Consumed(ref AwardRef, remaining int64)
}

// SurplusStore applies synced stock to SQL: surplus becomes min(surplus, remaining), which
// is idempotent and order-insensitive.
type SurplusStore interface {
	SyncAwardSurplus(ctx context.Context, ref AwardRef, remaining int64) error
}
