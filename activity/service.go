package activity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bigmarket/bigmarket/ident"
	"github.com/bigmarket/bigmarket/internal/soldout"
)

// Errors of the activity checks.
var (
	// ErrActivityNotOpen means the activity's state is not open.
	ErrActivityNotOpen = errors.New("activity not open")
	// ErrOutsideDates means now is before the activity's begin or after its end.
	ErrOutsideDates = errors.New("outside activity dates")
	// ErrSKUNotFound means no raffle_activity_sku row has the sku.
	ErrSKUNotFound = errors.New("sku not found")
	// ErrSKUStockExhausted means the SKU has no stock left (or none in the cache).
	ErrSKUStockExhausted = errors.New("sku stock exhausted")
	// ErrStockUnknown means how much stock is left is not known at the moment (its hot
	// counter is lost and being rebuilt from the orders): nothing was taken, and the same
	// request may succeed once the rebuild is done. It is never "out of stock".
	ErrStockUnknown = errors.New("sku stock unknown while it is rebuilt")
	// ErrSKUStockMissing means the SKU's stock is not in the cache (a Redis loss, or an
	// activity never armed); it wraps ErrStockUnknown, and the recharge that meets it asks
	// Recovery to rebuild the counter.
	ErrSKUStockMissing = fmt.Errorf("sku stock missing from cache: %w", ErrStockUnknown)
	// ErrInvalidUnits means a stock top-up's units are not a positive integer up to
	// MaxTopUp, or would take the count past what the store holds.
	ErrInvalidUnits = errors.New("invalid stock units")
	// ErrInvalidUserID means a user id breaks the identifier rule (ident.Check): empty,
	// longer than the user_id columns, not UTF-8, with control characters or padded.
	ErrInvalidUserID = errors.New("invalid user id")
	// ErrInvalidBusinessNo means an out_business_no breaks the identifier rule.
	ErrInvalidBusinessNo = errors.New("invalid out_business_no")
	// ErrInvalidPolicy means a recharge names an unknown trade policy.
	ErrInvalidPolicy = errors.New("invalid trade policy")
)

// CheckUserID refuses user ids that break the identifier rule (ident.Check) with the
// width of the user_id columns; the error wraps ErrInvalidUserID and says what is wrong
// without repeating the id.
func CheckUserID(userID string) error {
	if err := ident.Check(userID, ident.MaxUserID); err != nil {
		return fmt.Errorf("user id %w: %w", err, ErrInvalidUserID)
	}
	return nil
}

// Options configures a Service.
type Options struct {
	Configs  ConfigStore
	Users    UserStore
	SKUStock SKUStock
	Now      func() time.Time
	// Location is the zone of day and month quotas and of the activities' dates.
	Location *time.Location
	// CacheTTL bounds how long activity and SKU config is served from memory (default 5s).
	CacheTTL time.Duration
	Logger   *slog.Logger
	// Recovery, when set, bounds preheated SKU stock by durable orders and rebuilds SKU
	// stock found missing from the cache.
	Recovery Recovery
	// StockZero, when set, is told when a recharge takes a SKU's last unit of hot stock.
	// Without it (or when it fails) the SQL stock follows at the next reconcile.
	StockZero StockZeroPublisher
	// StockStore, when set, lets AddSKUStock top up SKU stock.
	StockStore StockStore
	// Announcer, when set, tells the other nodes about a top-up.
	Announcer StockAnnouncer
	// Hot, when set, is the flash draw's hot copy of the quotas: recharges raise it in
	// the same step as SQL, and quota reads prefer it.
	Hot HotQuota
}

// HotQuota is the flash draw's hot copy of users' quotas (redis.DrawQuota).
type HotQuota interface {
	// Raise brings a hot copy, if present, up to the counts of q, the key's quota as SQL
	// holds it after a recharge: the difference in the account's total, month and day
	// counts is added as Quota.Add adds it. It is idempotent, so a recharge whose hot step
	// was lost is caught up by any later raise.
	Raise(ctx context.Context, key QuotaKey, q Quota) error
	// Read returns the hot copy of the key's quota, and false when there is none.
	Read(ctx context.Context, key QuotaKey) (Quota, bool, error)
}

// MaxTopUp bounds the units one stock top-up adds.
const MaxTopUp = 100_000_000

// Recovery keeps SKU stock honest across a Redis loss.
type Recovery interface {
	SKUSurplus(ctx context.Context, sku SKU) (int64, error)
	SKULost(sku int64, expireAt time.Time)
}

// Service runs the activity use cases: armory, recharge, the quota a draw takes from and
// account views.
type Service struct {
	opts  Options
	cache sync.Map // cacheKey → cached
	// soldOut holds SKUs this node saw run out: their recharges are refused without a
	// Redis round trip. A top-up (here or announced by another node) or an armory that
	// preheats a counter clears them; they lapse after CacheTTL anyway, like the SKU config.
	soldOut *soldout.Flags[int64]
}

type cacheKey struct {
	kind string
	id   int64
}

type cached struct {
	value any
	until time.Time
}

// NewService returns a Service; Configs and Users are required.
func NewService(opts Options) *Service {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Service{opts: opts, soldOut: soldout.New[int64](opts.CacheTTL, opts.Now)}
}

// Periods returns the day ("2006-01-02") and month ("2006-01") keys of t in the zone.
func (s *Service) Periods(t time.Time) (day, month string) {
	t = t.In(s.opts.Location)
	return t.Format(time.DateOnly), t.Format("2006-01")
}

// Activity returns the activity's config, from memory when fresh.
func (s *Service) Activity(ctx context.Context, activityID int64) (Activity, error) {
	key := cacheKey{"activity", activityID}
	if c, ok := s.cache.Load(key); ok && s.opts.Now().Before(c.(cached).until) {
		return c.(cached).value.(Activity), nil
	}
	a, err := s.opts.Configs.Activity(ctx, activityID)
	if err != nil {
		return Activity{}, err
	}
	s.cache.Store(key, cached{value: a, until: s.opts.Now().Add(s.opts.CacheTTL)})
	return a, nil
}

func (s *Service) sku(ctx context.Context, sku int64) (SKU, error) {
	key := cacheKey{"sku", sku}
	if c, ok := s.cache.Load(key); ok && s.opts.Now().Before(c.(cached).until) {
		return c.(cached).value.(SKU), nil
	}
	k, err := s.opts.Configs.SKU(ctx, sku)
	if err != nil {
		return SKU{}, err
	}
	s.cache.Store(key, cached{value: k, until: s.opts.Now().Add(s.opts.CacheTTL)})
	return k, nil
}

// open returns the activity if it is open and now is within its dates.
func (s *Service) open(ctx context.Context, activityID int64, now time.Time) (Activity, error) {
	a, err := s.Activity(ctx, activityID)
	if err != nil {
		return Activity{}, err
	}
	if a.State != StateOpen {
		return Activity{}, fmt.Errorf("activity %d is %s: %w", activityID, a.State, ErrActivityNotOpen)
	}
	if now.Before(a.Begin) || now.After(a.End) {
		return Activity{}, fmt.Errorf("activity %d runs %s to %s: %w", activityID,
			a.Begin.Format(time.DateTime), a.End.Format(time.DateTime), ErrOutsideDates)
	}
	return a, nil
}

// stockExpiry is when an activity's stock keys may go: a day after it ends.
func stockExpiry(a Activity) time.Time { return a.End.Add(24 * time.Hour) }

// Armory loads the activity fresh, caches it and preheats the stock of its SKUs missing
// from the cache (existing stock is kept; missing stock comes from Recovery when set). The
// caller assembles the activity's strategy.
func (s *Service) Armory(ctx context.Context, activityID int64) (Activity, error) {
	a, err := s.opts.Configs.Activity(ctx, activityID)
	if err != nil {
		return Activity{}, err
	}
	if err := s.preheatSKUs(ctx, a); err != nil {
		return Activity{}, err
	}
	s.cache.Store(cacheKey{"activity", activityID}, cached{value: a, until: s.opts.Now().Add(s.opts.CacheTTL)})
	return a, nil
}

// ArmOpen preheats, as Armory does, the SKU stock of those of the activities that are open
// and not yet over, and returns how many it armed. serve runs it before it serves, so
// that a recharge right after a start finds its stock in the cache instead of waiting
// for a rebuild; a counter another node already has is kept.
func (s *Service) ArmOpen(ctx context.Context, activityIDs []int64) (int, error) {
	now, armed := s.opts.Now(), 0
	for _, id := range activityIDs {
		a, err := s.opts.Configs.Activity(ctx, id)
		if err != nil {
			return armed, err
		}
		if a.State != StateOpen || now.After(a.End) {
			continue
		}
		if err := s.preheatSKUs(ctx, a); err != nil {
			return armed, err
		}
		armed++
	}
	return armed, nil
}

// preheatSKUs preheats the activity's SKUs missing from the cache and caches their config.
func (s *Service) preheatSKUs(ctx context.Context, a Activity) error {
	skus, err := s.opts.Configs.SKUs(ctx, a.ID)
	if err != nil {
		return fmt.Errorf("armory activity %d: %w", a.ID, err)
	}
	until := s.opts.Now().Add(s.opts.CacheTTL)
	for _, k := range skus {
		exists, err := s.opts.SKUStock.Exists(ctx, k.SKU)
		if err != nil {
			return fmt.Errorf("armory activity %d: %w", a.ID, err)
		}
		s.cache.Store(cacheKey{"sku", k.SKU}, cached{value: k, until: until})
		if exists {
			continue
		}
		surplus := k.StockSurplus
		if s.opts.Recovery != nil {
			if surplus, err = s.opts.Recovery.SKUSurplus(ctx, k); err != nil {
				return fmt.Errorf("armory activity %d: bound sku %d by orders: %w", a.ID, k.SKU, err)
			}
		}
		total := max(k.Stock, 0)
		if err := s.opts.SKUStock.Preheat(ctx, k.SKU, total, min(max(surplus, 0), total), stockExpiry(a)); err != nil {
			return fmt.Errorf("armory activity %d: preheat sku %d: %w", a.ID, k.SKU, err)
		}
		s.soldOut.Reset()
	}
	return nil
}

// TradePolicy is how a SKU recharge is paid for (big-market's names).
type TradePolicy string

// Trade policies.
const (
	// PolicyFree completes at once: operator grants and behaviour rebates.
	PolicyFree TradePolicy = "rebate_no_pay_trade"
	// PolicyCreditPay leaves the order wait_pay, priced at the SKU's amount, until the
	// credit side confirms the debit and calls CompletePaid.
	PolicyCreditPay TradePolicy = "credit_pay_trade"
)

// RechargeRequest asks for a SKU's count to be added to a user's quota.
type RechargeRequest struct {
	UserID        string
	SKU           int64
	OutBusinessNo string
	Policy        TradePolicy // empty: PolicyFree
}

// Recharge sells a SKU's count to the user: it checks the activity, takes a unit of SKU
// stock and writes the order. Under PolicyFree (operator grants, rebates) the order is
// completed with the quota in the same transaction; under PolicyCreditPay it waits in
// wait_pay, priced at the SKU's amount, until CompletePaid. A repeated out_business_no
// returns ErrDuplicateOrder and changes nothing. The recharge that takes the SKU's last
// unit announces it through Options.StockZero. While the SKU's hot counter is lost and
// being rebuilt it returns an error wrapping ErrStockUnknown and changes nothing.
func (s *Service) Recharge(ctx context.Context, req RechargeRequest) (RechargeOrder, error) {
	if err := CheckUserID(req.UserID); err != nil {
		return RechargeOrder{}, err
	}
	if err := ident.Check(req.OutBusinessNo, ident.MaxBusinessNo); err != nil {
		return RechargeOrder{}, fmt.Errorf("out_business_no %w: %w", err, ErrInvalidBusinessNo)
	}
	if req.Policy == "" {
		req.Policy = PolicyFree
	}
	if req.Policy != PolicyFree && req.Policy != PolicyCreditPay {
		return RechargeOrder{}, fmt.Errorf("trade policy %q: %w", req.Policy, ErrInvalidPolicy)
	}
	sku, err := s.sku(ctx, req.SKU)
	if err != nil {
		return RechargeOrder{}, err
	}
	now := s.opts.Now()
	a, err := s.open(ctx, sku.ActivityID, now)
	if err != nil {
		return RechargeOrder{}, err
	}
	// A repeat is refused before it takes stock, so that it changes nothing; two
	// identical requests racing each other may still cost one unit: undersell.
	dup, err := s.opts.Users.RechargeExists(ctx, req.UserID, req.OutBusinessNo)
	if err != nil {
		return RechargeOrder{}, fmt.Errorf("recharge: %w", err)
	}
	if dup {
		return RechargeOrder{}, fmt.Errorf("recharge %s for %s: %w", req.OutBusinessNo, req.UserID, ErrDuplicateOrder)
	}
	// The epoch is read before the deduction: if a top-up clears the flags while it runs,
	// its sold-out answer (from the old count) must not flag the SKU again.
	epoch := s.soldOut.Epoch()
	if s.soldOut.Out(sku.SKU) {
		return RechargeOrder{}, fmt.Errorf("recharge sku %d (sold out): %w", sku.SKU, ErrSKUStockExhausted)
	}
	left, issued, err := s.opts.SKUStock.Deduct(ctx, sku.SKU, stockExpiry(a))
	if err != nil {
		switch {
		case errors.Is(err, ErrSKUStockMissing):
			if s.opts.Recovery != nil {
				s.opts.Recovery.SKULost(sku.SKU, stockExpiry(a))
			}
		case errors.Is(err, ErrSKUStockExhausted):
			s.soldOut.Mark(sku.SKU, epoch)
		}
		return RechargeOrder{}, fmt.Errorf("recharge sku %d: %w", sku.SKU, err)
	}
	if left == 0 {
		s.soldOut.Mark(sku.SKU, epoch)
		s.stockZero(ctx, sku.SKU, issued)
	}
	day, month := s.Periods(now)
	order := RechargeOrder{
		UserID: req.UserID, SKU: sku.SKU, ActivityID: a.ID, ActivityName: a.Name, StrategyID: a.StrategyID,
		OrderID: NewOrderID(now), OrderTime: now, Count: sku.Count, State: RechargeCompleted,
		OutBusinessNo: req.OutBusinessNo,
	}
	if req.Policy == PolicyCreditPay {
		order.State, order.PayAmount = RechargeWaitPay, sku.Price
	}
	key := QuotaKey{UserID: req.UserID, ActivityID: a.ID, Day: day, Month: month}
	var after Quota
	if err := s.opts.Users.Recharge(ctx, key, order, func(q *Quota) { q.Add(sku.Count); after = q.Clone() }); err != nil {
		return RechargeOrder{}, fmt.Errorf("recharge sku %d for %s: %w", sku.SKU, req.UserID, err)
	}
	if order.State == RechargeCompleted {
		s.raiseHot(ctx, key, after)
	}
	return order, nil
}

// stockZero announces that this recharge took the SKU's last unit: the stock never grants
// a unit twice, so one recharge sees zero left. The unit is gone whether or not
// the order is written or the caller still waits, so the announcement ignores the
// caller's cancellation. A failure is only logged: the reconcile job, which copies the
// Redis watermark to SQL, is the backstop.
func (s *Service) stockZero(ctx context.Context, sku, issued int64) {
	if s.opts.StockZero == nil {
		return
	}
	if err := s.opts.StockZero.PublishSKUStockZero(context.WithoutCancel(ctx), sku, issued); err != nil {
		s.opts.Logger.Warn("announce sku stock zero failed; the reconcile job will clear it", "sku", sku, "err", err)
	}
}

// AddSKUStock tops up a SKU's stock by units and returns the new stock_count. The units
// are added durably in SQL (stock_count and stock_count_surplus in one statement); once
// that has committed the top-up has happened, and AddSKUStock says so whatever follows: an
// error would invite a retry, which would add the units again. What follows makes the
// units grantable at once: it raises the cache's total and clears the sold-out flags on
// this node and, through the Announcer, on every other. If that fails it is logged, and
// RaiseSKUTotals (the stock reconcile job) raises the total later; flags lapse after
// CacheTTL. Units already sold stay sold: a grant is named by its sequence number, which a
// top-up does not change.
func (s *Service) AddSKUStock(ctx context.Context, sku, units int64) (int64, error) {
	if units <= 0 || units > MaxTopUp {
		return 0, fmt.Errorf("add %d units to sku %d: %w", units, sku, ErrInvalidUnits)
	}
	if s.opts.StockStore == nil {
		return 0, errors.New("no stock store to top up")
	}
	k, err := s.opts.Configs.SKU(ctx, sku)
	if err != nil {
		return 0, err
	}
	a, err := s.opts.Configs.Activity(ctx, k.ActivityID)
	if err != nil {
		return 0, err
	}
	total, err := s.opts.StockStore.AddSKUStock(ctx, sku, units)
	if err != nil {
		return 0, err
	}
	// The units are durable; the caller hanging up must not cut the rest short.
	ctx = context.WithoutCancel(ctx)
	if err := s.grantable(ctx, sku, total, stockExpiry(a)); err != nil {
		s.opts.Logger.Warn("sku top-up is durable but not yet grantable everywhere; the stock reconcile job and the sold-out flags' lifetime catch up",
			"sku", sku, "stock_count", total, "err", err)
	}
	return total, nil
}

// grantable makes a top-up to total visible: the cache first, then the flags, so that no
// node drops its flag and then sees the old count again. A counter missing from the cache
// is left to its rebuild, which reads the new count.
func (s *Service) grantable(ctx context.Context, sku, total int64, expireAt time.Time) error {
	if _, err := s.opts.SKUStock.TopUp(ctx, sku, total, expireAt); err != nil {
		return fmt.Errorf("raise cached total: %w", err)
	}
	s.StockAdded(sku)
	if s.opts.Announcer == nil {
		return nil
	}
	if err := s.opts.Announcer.AnnounceSKUStock(ctx, sku); err != nil {
		return fmt.Errorf("announce: %w", err)
	}
	return nil
}

// StockAdded drops this node's sold-out flags and cached config of a SKU whose stock was
// topped up (here or on another node).
func (s *Service) StockAdded(sku int64) {
	s.soldOut.Reset()
	s.cache.Delete(cacheKey{"sku", sku})
}

// RaiseSKUTotals raises the cached total of each SKU to its stock_count in the store.
// SKUStock.TopUp keeps the larger total and never touches the units sold, so this is
// idempotent and safe on every node at any time. The stock reconcile job runs it, so that
// a top-up cut off after its SQL step (a failed cache write, a killed process) becomes
// grantable within the job's period. A counter missing from the cache is left to its
// rebuild, and SKUs of activities whose stock keys have expired are skipped. It drops this
// node's sold-out flags.
func (s *Service) RaiseSKUTotals(ctx context.Context, skus []int64) error {
	var errs []error
	now := s.opts.Now()
	activities := map[int64]Activity{}
	for _, sku := range skus {
		if ctx.Err() != nil {
			break
		}
		k, err := s.opts.Configs.SKU(ctx, sku)
		if err != nil {
			errs = append(errs, fmt.Errorf("raise total of sku %d: %w", sku, err))
			continue
		}
		a, ok := activities[k.ActivityID]
		if !ok {
			if a, err = s.opts.Configs.Activity(ctx, k.ActivityID); err != nil {
				errs = append(errs, fmt.Errorf("raise total of sku %d: %w", sku, err))
				continue
			}
			activities[k.ActivityID] = a
		}
		if !stockExpiry(a).After(now) {
			continue
		}
		if _, err := s.opts.SKUStock.TopUp(ctx, sku, max(k.Stock, 0), stockExpiry(a)); err != nil {
			errs = append(errs, fmt.Errorf("raise total of sku %d: %w", sku, err))
		}
	}
	// A flag set before a total was raised would hide the units until it lapses.
	s.soldOut.Reset()
	return errors.Join(errs...)
}

// SKU returns the SKU's config, from memory when fresh; an unknown SKU wraps
// ErrSKUNotFound.
func (s *Service) SKU(ctx context.Context, sku int64) (SKU, error) { return s.sku(ctx, sku) }

// unpaidWindow is how old an unpaid order may be and still be paid instead of a new one.
const unpaidWindow = 30 * 24 * time.Hour

// UnpaidOrder returns the user's newest unpaid credit-pay order of the SKU younger than a
// month, which an exchange pays instead of taking another unit of stock.
func (s *Service) UnpaidOrder(ctx context.Context, userID string, sku int64) (RechargeOrder, bool, error) {
	if err := CheckUserID(userID); err != nil {
		return RechargeOrder{}, false, err
	}
	return s.opts.Users.UnpaidOrder(ctx, userID, sku, s.opts.Now().Add(-unpaidWindow))
}

// CompletePaid adds a paid order's count to the user's quota once the credit side has
// confirmed the debit; it is idempotent, so a redelivered confirmation changes nothing.
func (s *Service) CompletePaid(ctx context.Context, userID, outBusinessNo string) error {
	if err := CheckUserID(userID); err != nil {
		return err
	}
	day, month := s.Periods(s.opts.Now())
	var (
		key   QuotaKey
		after Quota
	)
	done, err := s.opts.Users.CompleteRecharge(ctx, userID, outBusinessNo, day, month, func(k QuotaKey, q *Quota, c Count) {
		q.Add(c)
		key, after = k, q.Clone()
	})
	if err == nil && done {
		s.raiseHot(ctx, key, after)
	}
	return err
}

// raiseHot adds a committed recharge to the flash draw's hot copy, after SQL: a crash
// between the two leaves the hot copy short, never over, and the next raise (a recharge,
// or a draw that finds the hot quota exhausted) catches it up. A failure is only logged.
func (s *Service) raiseHot(ctx context.Context, key QuotaKey, q Quota) {
	if s.opts.Hot == nil {
		return
	}
	if err := s.opts.Hot.Raise(context.WithoutCancel(ctx), key, q); err != nil {
		s.opts.Logger.Warn("recharge committed but not yet in the hot quota; a later raise catches up",
			"user_id", key.UserID, "activity_id", key.ActivityID, "err", err)
	}
}

// Account returns the user's quota view in the activity (zeros without an account).
func (s *Service) Account(ctx context.Context, userID string, activityID int64) (View, error) {
	q, err := s.Quota(ctx, userID, activityID)
	return q.View(), err
}

// Quota returns the user's quota rows for today in the activity: the flash draw's hot
// copy when there is one (it holds every draw already answered, while SQL may lag behind
// the draw writer), otherwise SQL.
func (s *Service) Quota(ctx context.Context, userID string, activityID int64) (Quota, error) {
	if err := CheckUserID(userID); err != nil {
		return Quota{}, err
	}
	if _, err := s.Activity(ctx, activityID); err != nil {
		return Quota{}, err
	}
	day, month := s.Periods(s.opts.Now())
	key := QuotaKey{UserID: userID, ActivityID: activityID, Day: day, Month: month}
	if s.opts.Hot != nil {
		q, ok, err := s.opts.Hot.Read(ctx, key)
		if err != nil {
			return Quota{}, fmt.Errorf("hot quota of %s in %d: %w", userID, activityID, err)
		}
		if ok {
			return q, nil
		}
	}
	return s.StoredQuota(ctx, userID, activityID, day, month)
}

// StoredQuota returns the user's quota rows of the day and month in the activity as SQL
// holds them: what the flash draw loads into its hot copy.
func (s *Service) StoredQuota(ctx context.Context, userID string, activityID int64, day, month string) (Quota, error) {
	q, err := s.opts.Users.Quota(ctx, QuotaKey{UserID: userID, ActivityID: activityID, Day: day, Month: month})
	if err != nil {
		return Quota{}, fmt.Errorf("quota of %s in %d: %w", userID, activityID, err)
	}
	return q, nil
}

// Open returns the activity when it is open and today is within its dates, as a draw
// needs it.
func (s *Service) Open(ctx context.Context, activityID int64) (Activity, error) {
	return s.open(ctx, activityID, s.opts.Now())
}
