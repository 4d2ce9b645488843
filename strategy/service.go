package strategy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bigmarket/bigmarket/internal/soldout"
	"github.com/bigmarket/bigmarket/internal/tick"
)

// Input is one draw as the engine sees it. The activity domain supplies Score (draws used
// in the activity before this one) and DrawsToday (draws completed today before this one);
// random_raffle draws as user "system" with both zero.
type Input struct {
	UserID     string
	StrategyID int64
	Score      int64
	DrawsToday int64
	// Durable makes the draw wait until a stock grant is durable in the sink (see
	// DurableSink) before it returns: for draws that write no record, random_raffle.
	Durable bool
}

// Result is a draw's award.
type Result struct {
	AwardID  int
	Title    string
	Subtitle string
	Sort     int // big-market's awardIndex on the 9-grid
	// RuleValue is the grant's parameters when a rule set them (the luck award's "1,100");
	// empty means the award's own award_config applies.
	RuleValue   string
	AwardKey    string
	AwardConfig string
	// Rule is the rule that decided the award: rule_blacklist, rule_stock (a stocked pick
	// by rule_weight or the default table) or rule_luck_award.
	Rule RuleModel
	// Chain is the chain rule that made the pick: rule_blacklist, rule_weight or rule_default.
	Chain RuleModel
	// Stocked says the award is a stocked award (Assembled.Stocked) granted from its stock:
	// what one win per user counts.
	Stocked bool
}

// Assembled is a strategy ready to draw: its tables, chain, trees and awards, immutable
// once built and shared by all draws.
type Assembled struct {
	StrategyID int64
	Awards     []Award // by sort
	Table      *Table
	Tiers      []Tier

	awards    map[int]*Award
	chain     []ChainRule
	trees     map[int]*Tree // by award id; awards without a tree use the implicit one
	blacklist *blacklist
	expireAt  time.Time
	// stocked holds the stocked awards (see Stocked); noFallback says no tree of the
	// strategy has a rule_luck_award.
	stocked    map[int]bool
	noFallback bool
	// cfg is the stored config it was assembled from, which Refresh compares.
	cfg Config
}

// classify finds the stocked awards and whether the strategy has a fallback, once its
// trees are built.
func (a *Assembled) classify() {
	fallback := map[int]bool{}
	a.noFallback = true
	for _, t := range a.trees {
		if id, ok := t.LuckAward(); ok {
			fallback[id] = true
			a.noFallback = false
		}
	}
	a.stocked = map[int]bool{}
	for _, aw := range a.Awards {
		if a.trees[aw.AwardID].Has(RuleStock) && !fallback[aw.AwardID] {
			a.stocked[aw.AwardID] = true
		}
	}
}

// Stocked lists, by sort, the strategy's stocked awards: those whose tree has a rule_stock
// node and that are no tree's fallback (rule_luck_award) award.
func (a *Assembled) Stocked() []int {
	var ids []int
	for _, aw := range a.Awards {
		if a.stocked[aw.AwardID] {
			ids = append(ids, aw.AwardID)
		}
	}
	return ids
}

// IsStocked reports whether the award is one of Stocked.
func (a *Assembled) IsStocked(awardID int) bool { return a.stocked[awardID] }

// NoFallback reports whether no tree of the strategy has a rule_luck_award: its awards
// without trees were given none (ImplicitLuckAward NoFallback), so a pick out of stock
// ends the draw with ErrSoldOut rather than a consolation award.
func (a *Assembled) NoFallback() bool { return a.noFallback }

// Award returns the strategy's award with the id, if any.
func (a *Assembled) Award(id int) (Award, bool) {
	aw, ok := a.awards[id]
	if !ok {
		return Award{}, false
	}
	return *aw, true
}

// Tree returns the rule tree an award's pick goes through.
func (a *Assembled) Tree(awardID int) *Tree { return a.trees[awardID] }

// Options configures a Service.
type Options struct {
	Configs ConfigStore
	Stock   Stock
	Sink    StockSink // may be nil
	Rand    Rand      // default GlobalRand; a seeded *rand.Rand is not safe for concurrent draws
	Now     func() time.Time
	Logger  *slog.Logger
	// DefaultStockTTL is how long stock keys live for a strategy with no activity.
	DefaultStockTTL time.Duration
	// ImplicitLuckAward is the rule_luck_award value used for awards that have no rule tree:
	// they still go through rule_stock, and fall back to this award when out of stock.
	// NoFallback ("none") gives them no fallback: a pick whose stock is out ends the draw
	// with ErrSoldOut.
	ImplicitLuckAward string
	// ImplicitLuckAwardFor overrides ImplicitLuckAward per strategy id; "none" there makes
	// that strategy's tree-less awards end in ErrSoldOut when out of stock.
	ImplicitLuckAwardFor map[int64]string
	ChainRules           ChainRules // default DefaultChainRules()
	TreeRules            TreeRules  // default DefaultTreeRules()
	// Recovery, when set, bounds preheated stock by durable grant records and rebuilds
	// stock found missing from the cache (a Redis loss).
	Recovery StockRecovery
	// Announcer, when set, tells the other nodes that Armory re-assembled a strategy so
	// that they Reload it.
	Announcer Announcer
	// StockStore, when set, lets AddStock top up award stock.
	StockStore StockStore
	// SoldOutTTL bounds how long this node answers an award it saw run out without asking
	// the stock (default 5s): a top-up clears the flags at once through the Announcer, and
	// a node that missed the announcement finds the new units within it.
	SoldOutTTL time.Duration
}

// StockRecovery keeps hot stock honest across a Redis loss.
type StockRecovery interface {
	// Surplus returns, per award, the units durable records still allow.
	Surplus(ctx context.Context, cfg Config) (map[int]int64, error)
	// Lost is told that an award's stock is missing from the cache; it rebuilds it in the
	// background and must not block.
	Lost(ref AwardRef, expireAt time.Time)
}

// Announcer broadcasts that a strategy was re-assembled from changed config.
type Announcer interface {
	AnnounceArmory(ctx context.Context, strategyID int64) error
}

// Service assembles strategies and draws from them.
type Service struct {
	opts     Options
	implicit TreeConfig
	// noFallbackRules are the tree rules with rule_stock allowed to end a walk without an
	// award: the implicit tree of a strategy whose ImplicitLuckAward is NoFallback.
	noFallbackRules TreeRules
	mu              sync.Mutex // serialises assembly
	assembled       sync.Map   // int64 → *Assembled
	// soldOut holds the awards this node saw run out: their draws go to the fallback
	// without a Redis round trip. An assembly (an armory or a top-up here, or another
	// node's through Reload) clears them; they lapse after SoldOutTTL anyway.
	soldOut *soldout.Flags[AwardRef]
	// deductFunc is s.deduct, the one function the rule trees are handed, bound once so
	// that a draw does not allocate a method value.
	deductFunc DeductFunc
	stats      struct {
		blacklist, stocked, luck, stockOut, stockMissing, failed, soldOutHits atomic.Int64
	}
}

// Stats counts draws by how they ended, for metrics.
type Stats struct {
	Blacklist    int64 // fallback grants by rule_blacklist
	Stocked      int64 // picks granted through rule_stock
	Luck         int64 // luck awards (locked, or the pick's stock was out)
	StockOut     int64 // deductions that found no stock left
	StockMissing int64 // deductions that found no stock in the cache
	Failed       int64 // draws that returned an error
	SoldOutHits  int64 // deductions answered by the in-process sold-out flag
}

// Stats returns the counters since the Service started.
func (s *Service) Stats() Stats {
	return Stats{
		Blacklist: s.stats.blacklist.Load(), Stocked: s.stats.stocked.Load(), Luck: s.stats.luck.Load(),
		StockOut: s.stats.stockOut.Load(), StockMissing: s.stats.stockMissing.Load(), Failed: s.stats.failed.Load(),
		SoldOutHits: s.stats.soldOutHits.Load(),
	}
}

// NewService returns a Service; Configs and Stock are required.
func NewService(opts Options) *Service {
	if opts.Rand == nil {
		opts.Rand = GlobalRand{}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.DefaultStockTTL <= 0 {
		opts.DefaultStockTTL = 30 * 24 * time.Hour
	}
	if opts.ImplicitLuckAward == "" {
		opts.ImplicitLuckAward = "101:1,100"
	}
	if opts.ChainRules == nil {
		opts.ChainRules = DefaultChainRules()
	}
	if opts.TreeRules == nil {
		opts.TreeRules = DefaultTreeRules()
	}
	if opts.SoldOutTTL <= 0 {
		opts.SoldOutTTL = 5 * time.Second
	}
	s := &Service{
		opts:     opts,
		soldOut:  soldout.New[AwardRef](opts.SoldOutTTL, opts.Now),
		implicit: implicitTree(opts.ImplicitLuckAward),
	}
	s.noFallbackRules = maps.Clone(opts.TreeRules)
	if stock, ok := s.noFallbackRules[RuleStock]; ok {
		stock.Needs = nil
		s.noFallbackRules[RuleStock] = stock
	}
	s.deductFunc = s.deduct
	return s
}

// NoFallback is the ImplicitLuckAward value that gives tree-less awards no fallback.
const NoFallback = "none"

// implicitTree is the tree of the awards without one: rule_stock, then the luck award
// when out of stock, or nothing for NoFallback.
func implicitTree(luckAward string) TreeConfig {
	if luckAward == NoFallback {
		return TreeConfig{ID: "implicit_stock_no_fallback", Root: RuleStock, Nodes: []TreeNode{{RuleKey: RuleStock}}}
	}
	return TreeConfig{
		ID:   "implicit_stock",
		Root: RuleStock,
		Nodes: []TreeNode{
			{RuleKey: RuleStock},
			{RuleKey: RuleLuckAward, Value: luckAward},
		},
		Lines: []TreeLine{{From: RuleStock, To: RuleLuckAward, LimitType: "EQUAL", LimitValue: string(Allow)}},
	}
}

// implicitFor is the implicit tree of a strategy's tree-less awards.
func (s *Service) implicitFor(strategyID int64) TreeConfig {
	if v, ok := s.opts.ImplicitLuckAwardFor[strategyID]; ok {
		return implicitTree(v)
	}
	return s.implicit
}

// Armory (re)assembles a strategy from its stored config, preheats its stock and tells
// the other nodes to reload it. It is idempotent: stock already in the cache is left as it
// is. A failed announcement is logged, not returned: this node's assembly stands, and the
// other nodes keep serving their last assembly.
func (s *Service) Armory(ctx context.Context, strategyID int64) (*Assembled, error) {
	s.mu.Lock()
	a, err := s.assemble(ctx, strategyID)
	s.mu.Unlock()
	if err != nil || s.opts.Announcer == nil {
		return a, err
	}
	if err := s.opts.Announcer.AnnounceArmory(ctx, strategyID); err != nil {
		s.opts.Logger.Warn("announce armory", "strategy_id", strategyID, "err", err)
	}
	return a, nil
}

// Reload re-assembles a strategy this node has assembled before, after another node's
// Armory; a strategy never used here is left to be assembled on first use.
func (s *Service) Reload(ctx context.Context, strategyID int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.assembled.Load(strategyID); !ok {
		return nil
	}
	_, err := s.assemble(ctx, strategyID)
	return err
}

// Assembled returns the strategy's assembly, building it on first use.
func (s *Service) Assembled(ctx context.Context, strategyID int64) (*Assembled, error) {
	if a, ok := s.assembled.Load(strategyID); ok {
		return a.(*Assembled), nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.assembled.Load(strategyID); ok {
		return a.(*Assembled), nil
	}
	return s.assemble(ctx, strategyID)
}

// assemble builds and stores an assembly; the caller holds s.mu.
func (s *Service) assemble(ctx context.Context, strategyID int64) (*Assembled, error) {
	cfg, err := s.opts.Configs.LoadStrategy(ctx, strategyID)
	if err != nil {
		return nil, fmt.Errorf("load strategy %d: %w", strategyID, err)
	}
	a, err := s.build(cfg)
	if err != nil {
		return nil, fmt.Errorf("assemble strategy %d: %w", strategyID, err)
	}
	if err := s.preheat(ctx, cfg, a); err != nil {
		return nil, fmt.Errorf("assemble strategy %d: %w", strategyID, err)
	}
	a.cfg = cfg
	s.assembled.Store(strategyID, a)
	s.soldOut.Reset()
	return a, nil
}

// Refresh re-assembles every strategy this node has assembled whose stored config is no
// longer the one it was assembled from, and returns how many it re-assembled. The armory
// announcement (core NATS, at most once) reaches every node that is connected at that
// moment; Refresh is the bound for one that missed it (disconnected, or too slow to take
// it), and makes a config changed in the store without an armory go live too. The
// surplus is not compared: the grants move it all the time, and the assembly does not
// use it for a counter that exists. A strategy that fails to load or build keeps its
// assembly and is tried again by the next run.
func (s *Service) Refresh(ctx context.Context) (int, error) {
	var ids []int64
	s.assembled.Range(func(k, _ any) bool {
		ids = append(ids, k.(int64))
		return true
	})
	var (
		n    int
		errs []error
	)
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		cfg, err := s.opts.Configs.LoadStrategy(ctx, id)
		if err != nil {
			errs = append(errs, fmt.Errorf("refresh strategy %d: %w", id, err))
			continue
		}
		v, ok := s.assembled.Load(id)
		if !ok || sameConfig(v.(*Assembled).cfg, cfg) {
			continue
		}
		s.mu.Lock()
		_, err = s.assemble(ctx, id)
		s.mu.Unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("refresh strategy %d: %w", id, err))
			continue
		}
		s.opts.Logger.Info("strategy re-assembled: its stored config changed", "strategy_id", id)
		n++
	}
	return n, errors.Join(errs...)
}

// RefreshEvery runs Refresh every interval until ctx ends.
func (s *Service) RefreshEvery(ctx context.Context, interval time.Duration) error {
	return tick.Every(ctx, interval, func(ctx context.Context) {
		if _, err := s.Refresh(ctx); err != nil {
			s.opts.Logger.Warn("strategy refresh", "err", err)
		}
	})
}

// sameConfig reports whether two stored configs assemble alike: equal but for the awards'
// surplus.
func sameConfig(a, b Config) bool {
	if len(a.Awards) != len(b.Awards) {
		return false
	}
	a.Awards, b.Awards = slices.Clone(a.Awards), slices.Clone(b.Awards)
	for i := range a.Awards {
		a.Awards[i].Surplus, b.Awards[i].Surplus = 0, 0
	}
	return reflect.DeepEqual(a, b)
}

// preheat puts the stock of every award missing from the cache into it. Counters that
// exist are left alone, so a re-armory costs one read per award; for missing ones the
// stock comes from Recovery when set — never from the SQL surplus alone, which lags the
// grants after a Redis loss.
func (s *Service) preheat(ctx context.Context, cfg Config, a *Assembled) error {
	var missing []Award
	for _, aw := range a.Awards {
		ok, err := s.opts.Stock.Exists(ctx, AwardRef{StrategyID: a.StrategyID, AwardID: aw.AwardID})
		if err != nil {
			return fmt.Errorf("read stock of award %d: %w", aw.AwardID, err)
		}
		if !ok {
			missing = append(missing, aw)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	surplus := make(map[int]int64, len(missing))
	for _, aw := range missing {
		surplus[aw.AwardID] = aw.Surplus
	}
	if s.opts.Recovery != nil {
		var err error
		if surplus, err = s.opts.Recovery.Surplus(ctx, cfg); err != nil {
			return fmt.Errorf("bound stock by grant records: %w", err)
		}
	}
	for _, aw := range missing {
		ref := AwardRef{StrategyID: a.StrategyID, AwardID: aw.AwardID}
		left := min(max(surplus[aw.AwardID], 0), aw.Count)
		if err := s.opts.Stock.Preheat(ctx, ref, aw.Count, left, a.expireAt); err != nil {
			return fmt.Errorf("preheat stock of award %d: %w", aw.AwardID, err)
		}
	}
	return nil
}

// build turns a config into an assembly without touching any store.
func (s *Service) build(cfg Config) (*Assembled, error) {
	if len(cfg.Awards) == 0 {
		return nil, ErrStrategyNotFound
	}
	a := &Assembled{
		StrategyID: cfg.StrategyID,
		Awards:     cfg.Awards,
		awards:     make(map[int]*Award, len(cfg.Awards)),
		trees:      make(map[int]*Tree, len(cfg.Awards)),
	}
	entries := make([]Entry, 0, len(cfg.Awards))
	rates := make(map[int]Rate, len(cfg.Awards))
	for i := range a.Awards {
		aw := &a.Awards[i]
		if _, dup := a.awards[aw.AwardID]; dup {
			return nil, fmt.Errorf("award %d listed twice: %w", aw.AwardID, ErrInvalidConfig)
		}
		a.awards[aw.AwardID] = aw
		entries = append(entries, Entry{AwardID: aw.AwardID, Rate: aw.Rate})
		rates[aw.AwardID] = aw.Rate
	}
	var err error
	if a.Table, err = NewTable(entries); err != nil {
		return nil, err
	}
	loaded := map[string]*Tree{}
	implicit := s.implicitFor(cfg.StrategyID)
	for _, aw := range a.Awards {
		id := aw.TreeID
		tc, ok := cfg.Trees[id]
		rules := s.opts.TreeRules
		if id == "" {
			tc, ok = implicit, true
			if len(tc.Lines) == 0 { // NoFallback: rule_stock alone
				rules = s.noFallbackRules
			}
		}
		if !ok {
			return nil, fmt.Errorf("award %d: tree %s not found: %w", aw.AwardID, id, ErrInvalidTree)
		}
		t, done := loaded[tc.ID]
		if !done {
			if t, err = NewTree(tc, rules); err != nil {
				return nil, err
			}
			loaded[tc.ID] = t
		}
		a.trees[aw.AwardID] = t
	}
	a.classify()
	for _, model := range cfg.RuleModels {
		link, ok := s.opts.ChainRules[model]
		if !ok {
			return nil, fmt.Errorf("unsupported chain rule %q: %w", model, ErrInvalidConfig)
		}
		value, found := ruleValue(cfg.Rules, model)
		switch model {
		case RuleBlacklist:
			if !found {
				return nil, fmt.Errorf("rule_blacklist has no strategy_rule row: %w", ErrInvalidConfig)
			}
			if a.blacklist, err = parseBlacklist(value); err != nil {
				return nil, err
			}
		case RuleWeight:
			if !found {
				return nil, ErrRuleWeightMissing
			}
			if a.Tiers, err = parseTiers(value, rates); err != nil {
				return nil, err
			}
		}
		a.chain = append(a.chain, link)
	}
	a.expireAt = s.opts.Now().Add(s.opts.DefaultStockTTL)
	if !cfg.ActivityEnd.IsZero() {
		a.expireAt = cfg.ActivityEnd.Add(24 * time.Hour)
	}
	return a, nil
}

func ruleValue(rules []Rule, model RuleModel) (string, bool) {
	for _, r := range rules {
		if r.Model == model {
			return r.Value, true
		}
	}
	return "", false
}

// Draw runs the chain, then the picked award's tree (unless the pick is a fallback), and
// returns the award granted.
func (s *Service) Draw(ctx context.Context, in Input) (Result, error) {
	r, err := s.draw(ctx, in)
	switch {
	case err != nil:
		s.stats.failed.Add(1)
	case r.Rule == RuleBlacklist:
		s.stats.blacklist.Add(1)
	case r.Rule == RuleStock:
		s.stats.stocked.Add(1)
	default:
		s.stats.luck.Add(1)
	}
	return r, err
}

func (s *Service) draw(ctx context.Context, in Input) (Result, error) {
	a, err := s.Assembled(ctx, in.StrategyID)
	if err != nil {
		return Result{}, err
	}
	pick := Pick{Rule: RuleDefault}
	matched := false
	for _, link := range a.chain {
		if pick, matched = link(a, in, s.opts.Rand); matched {
			break
		}
	}
	if !matched {
		pick = Pick{AwardID: a.Table.Pick(s.opts.Rand), Rule: RuleDefault}
	}
	if pick.Fallback {
		return a.result(pick.AwardID, "", pick.Rule, pick.Rule), nil
	}
	out, err := a.trees[pick.AwardID].Walk(ctx, s.deductFunc, NodeInput{
		Ref:        AwardRef{StrategyID: a.StrategyID, AwardID: pick.AwardID},
		DrawsToday: in.DrawsToday,
		ExpireAt:   a.expireAt,
		Durable:    in.Durable,
	})
	if err != nil {
		return Result{}, err
	}
	if out.AwardID == 0 {
		if out.Rule == RuleStock && a.noFallback {
			return Result{}, s.lostPick(ctx, AwardRef{StrategyID: a.StrategyID, AwardID: pick.AwardID})
		}
		return Result{}, fmt.Errorf("tree of award %d ended with %s and no award: %w", pick.AwardID, out.Rule, ErrInvalidTree)
	}
	return a.result(out.AwardID, out.RuleValue, out.Rule, pick.Rule), nil
}

// lostPick is the error of a draw of a strategy without fallback whose picked award had no
// stock to give: ErrSoldOut when the stock is known to be out, ErrStockMissing (retry)
// when the counter is missing from the cache, so that unknown stock is never answered as
// sold out.
func (s *Service) lostPick(ctx context.Context, ref AwardRef) error {
	if !s.soldOut.Out(ref) {
		ok, err := s.opts.Stock.Exists(ctx, ref)
		switch {
		case err != nil:
			return fmt.Errorf("award %d of strategy %d had no stock to give; reading it: %w", ref.AwardID, ref.StrategyID, err)
		case !ok:
			return fmt.Errorf("award %d of strategy %d: %w", ref.AwardID, ref.StrategyID, ErrStockMissing)
		}
	}
	return fmt.Errorf("award %d of strategy %d: %w", ref.AwardID, ref.StrategyID, ErrSoldOut)
}

func (a *Assembled) result(awardID int, ruleValue string, rule, chain RuleModel) Result {
	r := Result{AwardID: awardID, RuleValue: ruleValue, Rule: rule, Chain: chain}
	r.Stocked = rule == RuleStock && a.stocked[awardID]
	if aw, ok := a.awards[awardID]; ok {
		r.Title, r.Subtitle, r.Sort = aw.Title, aw.Subtitle, aw.Sort
		r.AwardKey, r.AwardConfig = aw.AwardKey, aw.AwardConfig
	}
	return r
}

// SoldOut reports whether every stocked award of a strategy without fallback is known to
// be out of stock, so that its draws can be refused before they take any quota. It
// answers from this node's sold-out flags when they cover every stocked award; otherwise
// it reads the counters of the others in one round trip (when Stock implements
// StockLevels) and flags those found out, so that every node learns it from the shared
// stock. A counter missing from the cache is unknown, never out: SoldOut is then false.
// A strategy with a fallback is never sold out: its draws end in the fallback award.
func (s *Service) SoldOut(ctx context.Context, strategyID int64) (bool, error) {
	a, err := s.Assembled(ctx, strategyID)
	if err != nil {
		return false, err
	}
	if !a.noFallback || len(a.stocked) == 0 {
		return false, nil
	}
	epoch := s.soldOut.Epoch()
	var ask []AwardRef
	for _, id := range a.Stocked() {
		ref := AwardRef{StrategyID: strategyID, AwardID: id}
		if !s.soldOut.Out(ref) {
			ask = append(ask, ref)
		}
	}
	if len(ask) == 0 {
		return true, nil
	}
	levels, ok := s.opts.Stock.(StockLevels)
	if !ok {
		return false, nil
	}
	states, err := levels.States(ctx, ask)
	if err != nil {
		return false, fmt.Errorf("read stock of strategy %d: %w", strategyID, err)
	}
	out := true
	for i, st := range states {
		if st == StockOut {
			s.soldOut.Mark(ask[i], epoch)
		} else {
			out = false
		}
	}
	return out, nil
}

// deduct is the Service's DeductFunc, handed to every tree walk: it takes one unit of an
// award's stock, answering from the sold-out flags when it can. It reports false when the
// stock is out, and an error wrapping ErrStockMissing when the counter is missing from the
// cache (the stock is unknown until it is rebuilt). With durable, a
// grant is made durable in the sink before deduct returns; if that fails the unit is
// spent (the sink retries it in the background) and the error is returned.
func (s *Service) deduct(ctx context.Context, ref AwardRef, expireAt time.Time, durable bool) (bool, error) {
	epoch := s.soldOut.Epoch()
	if s.soldOut.Out(ref) {
		s.stats.soldOutHits.Add(1)
		return false, nil
	}
	g, err := s.opts.Stock.Deduct(ctx, ref, expireAt)
	switch {
	case err == nil:
		if g.Remaining == 0 { // this grant took the last unit
			s.soldOut.Mark(ref, epoch)
		}
		if s.opts.Sink == nil {
			return true, nil
		}
		if d, ok := s.opts.Sink.(DurableSink); ok && durable {
			if err := d.Commit(ctx, ref, g); err != nil {
				return false, fmt.Errorf("grant %d of strategy %d award %d not durable: %w", g.Issued, ref.StrategyID, ref.AwardID, err)
			}
			return true, nil
		}
		s.opts.Sink.Consumed(ref, g)
		return true, nil
	case errors.Is(err, ErrStockOut):
		s.stats.stockOut.Add(1)
		s.soldOut.Mark(ref, epoch)
		return false, nil
	case errors.Is(err, ErrStockMissing):
		// Unknown stock is neither "out" nor a reason to give the luck award: the draw
		// fails with ErrStockMissing (retry; a flash draw stays pending and its retry
		// picks again) while the counter is rebuilt.
		s.stats.stockMissing.Add(1)
		s.opts.Logger.Warn("award stock missing from cache; draws on it answer retry until it is rebuilt",
			"strategy_id", ref.StrategyID, "award_id", ref.AwardID)
		if s.opts.Recovery != nil {
			s.opts.Recovery.Lost(ref, expireAt)
		}
		return false, fmt.Errorf("deduct stock of strategy %d award %d: %w", ref.StrategyID, ref.AwardID, err)
	default:
		return false, fmt.Errorf("deduct stock of strategy %d award %d: %w", ref.StrategyID, ref.AwardID, err)
	}
}

// AddStock tops up an award's stock by units and returns the award's new count. The
// units are added durably in SQL (award_count and award_count_surplus in one statement);
// once that has committed the top-up has happened, and AddStock says so whatever follows:
// an error would invite a retry, which would add the units again. What follows makes the
// units grantable at once: it raises the cache's total and clears the sold-out flags on
// this node and, through the Announcer, on every other. If that fails it is logged, and
// RaiseTotals (the stock reconcile job) raises the total later; flags lapse after
// SoldOutTTL. Units already granted stay granted: a grant is named by its sequence
// number, which a top-up does not change.
func (s *Service) AddStock(ctx context.Context, ref AwardRef, units int64) (int64, error) {
	if units <= 0 || units > MaxTopUp {
		return 0, fmt.Errorf("add %d units to award %d of strategy %d: %w", units, ref.AwardID, ref.StrategyID, ErrInvalidUnits)
	}
	if s.opts.StockStore == nil {
		return 0, errors.New("no stock store to top up")
	}
	// The strategy must exist (ErrStrategyNotFound), and its assembly gives the stock's
	// expiry; whether it has the award is the store's answer, which may be newer than
	// this node's assembly.
	a, err := s.Assembled(ctx, ref.StrategyID)
	if err != nil {
		return 0, err
	}
	total, err := s.opts.StockStore.AddAwardStock(ctx, ref, units)
	if err != nil {
		return 0, err
	}
	// The units are durable; the caller hanging up must not cut the rest short.
	ctx = context.WithoutCancel(ctx)
	if err := s.grantable(ctx, a, ref, total); err != nil {
		s.opts.Logger.Warn("award top-up is durable but not yet grantable everywhere; the stock reconcile job and the sold-out flags' lifetime catch up",
			"strategy_id", ref.StrategyID, "award_id", ref.AwardID, "award_count", total, "err", err)
	}
	return total, nil
}

// grantable makes a top-up to total visible: the cache first, then the flags, so that no
// node drops its flag and then sees the old count again. A counter missing from the cache
// is left to its rebuild, which reads the new count. Other nodes re-assemble the strategy
// on the announcement, which clears their flags.
func (s *Service) grantable(ctx context.Context, a *Assembled, ref AwardRef, total int64) error {
	if _, err := s.opts.Stock.TopUp(ctx, ref, total, a.expireAt); err != nil {
		return fmt.Errorf("raise cached total: %w", err)
	}
	s.soldOut.Reset()
	if s.opts.Announcer == nil {
		return nil
	}
	if err := s.opts.Announcer.AnnounceArmory(ctx, ref.StrategyID); err != nil {
		return fmt.Errorf("announce: %w", err)
	}
	return nil
}

// RaiseTotals raises the cached total of every award of the strategies assembled on this
// node to its count in the store. Stock.TopUp keeps the larger total and never touches
// the units granted, so this is idempotent and safe on every node at any time. The stock
// reconcile job runs it, so that a top-up cut off after its SQL step (a failed cache
// write, a killed process) becomes grantable within the job's period. A counter missing
// from the cache is left to its rebuild, which reads the store. It drops this node's
// sold-out flags (each costs one more cache round trip per run).
func (s *Service) RaiseTotals(ctx context.Context) error {
	var errs []error
	now := s.opts.Now()
	s.assembled.Range(func(_, v any) bool {
		a := v.(*Assembled)
		if !a.expireAt.After(now) { // its stock keys are gone
			return true
		}
		cfg, err := s.opts.Configs.LoadStrategy(ctx, a.StrategyID)
		if err != nil {
			errs = append(errs, fmt.Errorf("raise totals of strategy %d: %w", a.StrategyID, err))
			return ctx.Err() == nil
		}
		for _, aw := range cfg.Awards {
			ref := AwardRef{StrategyID: a.StrategyID, AwardID: aw.AwardID}
			if _, err := s.opts.Stock.TopUp(ctx, ref, aw.Count, a.expireAt); err != nil {
				errs = append(errs, fmt.Errorf("raise total of award %d of strategy %d: %w", aw.AwardID, a.StrategyID, err))
			}
		}
		return ctx.Err() == nil
	})
	// A flag set before a total was raised would hide the units until it lapses.
	s.soldOut.Reset()
	return errors.Join(errs...)
}

// AwardRefs lists the awards of every strategy assembled in this process, for jobs that
// reconcile their stock.
func (s *Service) AwardRefs() []AwardRef {
	var refs []AwardRef
	s.assembled.Range(func(_, v any) bool {
		a := v.(*Assembled)
		for _, aw := range a.Awards {
			refs = append(refs, AwardRef{StrategyID: a.StrategyID, AwardID: aw.AwardID})
		}
		return true
	})
	return refs
}
