// Package recovery rebuilds hot stock in Redis from durable records of every grant, so
// that a Redis loss never resurrects a granted unit. A unit is named by its grant sequence
// number, so what a stock may still give is its count less the most any durable source
// says was granted: count − synced SQL surplus, the grants on record in every user
// database, and (for awards) the highest sequence number in the broker's sync log. A
// top-up raises count and surplus together and changes none of these.
package recovery

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/strategy"
)

type configs interface {
	LoadStrategy(ctx context.Context, strategyID int64) (strategy.Config, error)
	SKU(ctx context.Context, sku int64) (activity.SKU, error)
}

type grants interface {
	AwardRecordCounts(ctx context.Context, strategyID int64) (map[int]int64, error)
	SKUOrderCount(ctx context.Context, sku int64) (int64, error)
}

type stockLog interface {
	// MaxIssued returns the highest grant sequence number logged for the award; an
	// old-form message (a remaining count) counts as total − remaining.
	MaxIssued(ctx context.Context, ref strategy.AwardRef, total int64) (int64, bool, error)
}

type awardStock interface {
	Preheat(ctx context.Context, ref strategy.AwardRef, total, remaining int64, expireAt time.Time) error
}

type skuStock interface {
	Preheat(ctx context.Context, sku, total, remaining int64, expireAt time.Time) error
}

// Options configures a Service.
type Options struct {
	Configs  configs
	Grants   grants
	Log      stockLog // may be nil: the SQL surplus and the records still bound the stock
	Awards   awardStock
	SKUStock skuStock
	// Grace is how long a rebuild waits after a loss is seen before it counts, so that
	// draws in flight at the loss have written their records and sync messages (default 3s).
	Grace time.Duration
	// Drain, when set, is waited for after the grace and before the count: the flash
	// draw writes its award records behind its answers, so a rebuild counts them only
	// once the draw writer has applied every draw published before (nats.EventDrain).
	Drain  func(ctx context.Context) error
	Logger *slog.Logger
}

// Service computes safe stock levels and rebuilds lost ones in the background.
type Service struct {
	opts    Options
	mu      sync.Mutex
	running map[any]bool
	wg      sync.WaitGroup
}

// NewService returns a Service.
func NewService(opts Options) *Service {
	if opts.Grace <= 0 {
		opts.Grace = 3 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Service{opts: opts, running: map[any]bool{}}
}

// Surplus returns, per award of the strategy, the units durable records still allow:
// award_count − max(award_count − award_count_surplus, award records, highest sequence
// number in the sync log), at least 0. Count and surplus come from the one row read of
// cfg, so a top-up is either in both or in neither. Records of a fallback award count
// against its stock too, which can only undersell.
func (s *Service) Surplus(ctx context.Context, cfg strategy.Config) (map[int]int64, error) {
	records, err := s.opts.Grants.AwardRecordCounts(ctx, cfg.StrategyID)
	if err != nil {
		return nil, err
	}
	out := make(map[int]int64, len(cfg.Awards))
	for _, aw := range cfg.Awards {
		issued := max(aw.Count-aw.Surplus, records[aw.AwardID])
		if s.opts.Log != nil {
			logged, ok, err := s.opts.Log.MaxIssued(ctx, strategy.AwardRef{StrategyID: cfg.StrategyID, AwardID: aw.AwardID}, aw.Count)
			if err != nil {
				return nil, err
			}
			if ok {
				issued = max(issued, logged)
			}
		}
		out[aw.AwardID] = max(aw.Count-issued, 0)
	}
	return out, nil
}

// SKUSurplus returns the units of a SKU durable records still allow:
// stock_count − max(stock_count − stock_count_surplus, recharge orders of the SKU).
func (s *Service) SKUSurplus(ctx context.Context, k activity.SKU) (int64, error) {
	orders, err := s.opts.Grants.SKUOrderCount(ctx, k.SKU)
	if err != nil {
		return 0, err
	}
	return max(min(k.StockSurplus, k.Stock-orders), 0), nil
}

// Lost is told that an award's hot stock is missing. Once per award at a time, it waits
// the grace period, recounts from durable records and preheats the counter (which does
// nothing if another node restored it first). Draws on the award meanwhile get no stock.
func (s *Service) Lost(ref strategy.AwardRef, expireAt time.Time) {
	s.once(ref, func(ctx context.Context) error {
		cfg, err := s.opts.Configs.LoadStrategy(ctx, ref.StrategyID)
		if err != nil {
			return err
		}
		safe, err := s.Surplus(ctx, cfg)
		if err != nil {
			return err
		}
		for _, aw := range cfg.Awards {
			if aw.AwardID == ref.AwardID {
				n := min(safe[ref.AwardID], aw.Count)
				s.opts.Logger.Warn("rebuilding lost award stock", "strategy_id", ref.StrategyID, "award_id", ref.AwardID,
					"count", aw.Count, "remaining", n)
				return s.opts.Awards.Preheat(ctx, ref, aw.Count, n, expireAt)
			}
		}
		return fmt.Errorf("award %d is no longer in strategy %d", ref.AwardID, ref.StrategyID)
	})
}

// SKULost is Lost for a SKU's stock.
func (s *Service) SKULost(sku int64, expireAt time.Time) {
	s.once(sku, func(ctx context.Context) error {
		k, err := s.opts.Configs.SKU(ctx, sku)
		if err != nil {
			return err
		}
		n, err := s.SKUSurplus(ctx, k)
		if err != nil {
			return err
		}
		n = min(n, max(k.Stock, 0))
		s.opts.Logger.Warn("rebuilding lost sku stock", "sku", sku, "count", k.Stock, "remaining", n)
		return s.opts.SKUStock.Preheat(ctx, sku, max(k.Stock, 0), n, expireAt)
	})
}

// once runs rebuild in the background unless one for key is running.
func (s *Service) once(key any, rebuild func(context.Context) error) {
	s.mu.Lock()
	if s.running[key] {
		s.mu.Unlock()
		return
	}
	s.running[key] = true
	s.mu.Unlock()
	s.wg.Go(func() {
		defer func() {
			s.mu.Lock()
			delete(s.running, key)
			s.mu.Unlock()
		}()
		time.Sleep(s.opts.Grace)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if s.opts.Drain != nil {
			if err := s.opts.Drain(ctx); err != nil {
				s.opts.Logger.Error("rebuild lost stock: wait for the draw writer", "key", key, "err", err)
				return
			}
		}
		if err := rebuild(ctx); err != nil {
			s.opts.Logger.Error("rebuild lost stock", "key", key, "err", err)
		}
	})
}

// Wait blocks until running rebuilds finish (shutdown and tests).
func (s *Service) Wait() { s.wg.Wait() }
