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
	// ErrAwardNotFound means the strategy has no such award.
	ErrAwardNotFound = errors.New("award not found in strategy")
	// ErrSoldOut means a draw of a strategy without fallback (see Assembled.NoFallback)
	// picked an award whose stock is out: the draw has no award.
	ErrSoldOut = errors.New("no award left to win")
	// ErrInvalidUnits means a stock top-up's units are not a positive integer up to
	// MaxTopUp, or would take the count past what the store holds.
	ErrInvalidUnits = errors.New("invalid stock units")
)

// MaxTopUp bounds the units one stock top-up adds.
const MaxTopUp = 100_000_000

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

// Grant is one unit taken from a stock.
type Grant struct {
	// Remaining is the units left after it.
	Remaining int64
	// Issued is its sequence number, the units granted so far with it (1 for the first):
	// what names the unit. total − remaining before a top-up, it is not changed by one.
	Issued int64
}

// Stock is the hot award stock; it is implemented by the redis adapter with one Lua
// script per deduction.
type Stock interface {
	// Exists reports whether the award's counter is in the cache.
	Exists(ctx context.Context, ref AwardRef) (bool, error)
	// Preheat creates the award's counter, total units (award_count) of which remaining
	// are left, unless the counter already exists.
	Preheat(ctx context.Context, ref AwardRef, total, remaining int64, expireAt time.Time) error
	// Deduct takes one unit. It returns ErrStockOut when none is left and
	// ErrStockMissing when the counter is absent. A unit (its Issued) once granted is
	// never granted again, even if the counter is later set back up or topped up.
	Deduct(ctx context.Context, ref AwardRef, expireAt time.Time) (Grant, error)
	// TopUp raises the counter's total to total, the award's new award_count, keeping the
	// units granted; false when the counter is absent (a rebuild reads the new count).
	TopUp(ctx context.Context, ref AwardRef, total int64, expireAt time.Time) (bool, error)
}

// StockState is what the cache knows of an award's stock.
type StockState int

// Stock states.
const (
	StockLeft    StockState = iota // units are left
	StockOut                       // no unit is left to grant
	StockMissing                   // the counter is not in the cache: unknown
)

// StockLevels is a Stock that can tell several awards' states in one round trip; the
// sold-out check of strategies without fallback uses it.
type StockLevels interface {
	States(ctx context.Context, refs []AwardRef) ([]StockState, error)
}

// StockSink receives successful deductions so that the SQL surplus can be synced off the
// draw path. Consumed must not block.
type StockSink interface {
	Consumed(ref AwardRef, g Grant)
}

// DurableSink is a StockSink that can also make one grant durable before it returns: a
// draw that writes no record (random_raffle) waits for it, so that a Redis loss right
// after cannot give the unit again.
type DurableSink interface {
	StockSink
	Commit(ctx context.Context, ref AwardRef, g Grant) error
}

// StockStore adds units to an award's stock in SQL: award_count and award_count_surplus
// both grow by units, in one statement. It returns the new award_count, an error
// wrapping ErrAwardNotFound for an unknown award and ErrInvalidUnits when the count would
// overflow.
type StockStore interface {
	AddAwardStock(ctx context.Context, ref AwardRef, units int64) (total int64, err error)
}

// SurplusStore applies synced stock to SQL. Both updates are monotone (the surplus only
// goes down), idempotent and order-insensitive.
type SurplusStore interface {
	// SyncAwardIssued records that issued units were granted: the surplus becomes
	// min(surplus, award_count − issued). A top-up raises both columns, so a sync from
	// before it cannot take the new units back.
	SyncAwardIssued(ctx context.Context, ref AwardRef, issued int64) error
	// SyncAwardSurplus applies a remaining count of the old form (a stock log message
	// written before grants were numbered): surplus becomes min(surplus, remaining).
	SyncAwardSurplus(ctx context.Context, ref AwardRef, remaining int64) error
}
