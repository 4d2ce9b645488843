package activity

import (
	"context"
	"errors"
	"time"
)

// ErrDuplicateOrder means a recharge with the same out_business_no was already made.
var ErrDuplicateOrder = errors.New("duplicate out_business_no")

// ErrRechargeNotFound means the user has no recharge order with the out_business_no.
var ErrRechargeNotFound = errors.New("recharge order not found")

// QuotaKey names one user's quota in one activity for a day and a month.
type QuotaKey struct {
	UserID     string
	ActivityID int64
	Day        string // "2006-01-02"
	Month      string // "2006-01"
}

// UserStore keeps users' quotas and orders in the sharded user databases; sqlstore
// implements it. Every method routes by the user id.
type UserStore interface {
	// Quota reads the user's account and the key's month and day rows, without locks.
	Quota(ctx context.Context, key QuotaKey) (Quota, error)
	// RechargeExists reports whether the user already has a recharge order with the
	// out_business_no.
	RechargeExists(ctx context.Context, userID, outBusinessNo string) (bool, error)
	// Recharge, in one transaction, inserts order and — when its state is completed —
	// loads the key's quota rows locked, runs add on them and writes them. A repeated
	// out_business_no returns an error wrapping ErrDuplicateOrder and changes nothing.
	Recharge(ctx context.Context, key QuotaKey, order RechargeOrder, add func(*Quota)) error
	// RechargesExist returns which of the users' out_business_nos (user id → number)
	// already have a recharge order, by user id.
	RechargesExist(ctx context.Context, numbers map[string]string) (map[string]bool, error)
	// RechargeMany is Recharge for many users' completed orders (one per user), several
	// in a transaction: each order inserted and add run on its key's locked quota rows,
	// as Recharge does. An order whose out_business_no is already there is skipped and
	// changes nothing. It returns the orders it wrote, each with its key's quota as
	// committed (on error too: those of the transactions that committed).
	RechargeMany(ctx context.Context, items []Recharging, add func(*Quota)) ([]Recharged, error)
	// CompleteRecharge, in one transaction, moves the user's wait_pay recharge order with
	// the out_business_no to completed and runs add with its count on the locked quota
	// rows of day and month (add is told the key). It reports false and changes nothing
	// when the order is already completed, and wraps ErrRechargeNotFound when there is no
	// such order.
	CompleteRecharge(ctx context.Context, userID, outBusinessNo, day, month string, add func(QuotaKey, *Quota, Count)) (bool, error)
	// UnpaidOrder returns the user's newest wait_pay recharge order of the SKU made at or
	// after since that no credit trade has paid yet, and whether there is one.
	UnpaidOrder(ctx context.Context, userID string, sku int64, since time.Time) (RechargeOrder, bool, error)
	// RecentRaffleOrders returns the newest raffle orders, newest first, at most limit: of
	// one user when userID is set, otherwise across every shard.
	RecentRaffleOrders(ctx context.Context, userID string, limit int) ([]RaffleOrder, error)
}

// Recharging is one order of UserStore.RechargeMany with the quota it adds to.
type Recharging struct {
	Key   QuotaKey
	Order RechargeOrder
}

// Recharged is an order UserStore.RechargeMany wrote, with its key's quota rows as the
// transaction committed them.
type Recharged struct {
	Key   QuotaKey
	Quota Quota
}

// SKUStock is the hot SKU stock; the redis adapter implements it with the same
// never-regrant script as award stock.
type SKUStock interface {
	Exists(ctx context.Context, sku int64) (bool, error)
	// Preheat creates the SKU's counter, total units (stock_count) of which remaining are
	// left, unless it exists.
	Preheat(ctx context.Context, sku, total, remaining int64, expireAt time.Time) error
	// Deduct takes one unit and returns the units left and the grant's sequence number
	// (the units granted so far with it, which a top-up does not change); it returns an
	// error wrapping ErrSKUStockExhausted when none is left and ErrSKUStockMissing when the
	// stock is not in the cache.
	Deduct(ctx context.Context, sku int64, expireAt time.Time) (left, issued int64, err error)
	// DeductN is Deduct of units at once, all or none: fewer left than units wraps
	// ErrSKUStockExhausted and takes nothing. issued is the last unit's sequence number.
	DeductN(ctx context.Context, sku, units int64, expireAt time.Time) (left, issued int64, err error)
	// TopUp raises the counter's total to total, the SKU's new stock_count, keeping the
	// units granted; false when the counter is absent (a rebuild reads the new count).
	TopUp(ctx context.Context, sku, total int64, expireAt time.Time) (bool, error)
}

// StockStore adds units to a SKU's stock in SQL: stock_count and stock_count_surplus
// both grow by units in one statement. It returns the new stock_count, an error wrapping
// ErrSKUNotFound for an unknown SKU and ErrInvalidUnits when the count would overflow.
type StockStore interface {
	AddSKUStock(ctx context.Context, sku, units int64) (total int64, err error)
}

// StockAnnouncer tells the other nodes that a SKU's stock was topped up, so that they
// drop their sold-out flag at once.
type StockAnnouncer interface {
	AnnounceSKUStock(ctx context.Context, sku int64) error
}

// StockZeroPublisher announces that a SKU's hot stock ran out, so that its SQL stock is
// cleared at once (big-market's activity_sku_stock_zero event); the nats adapter
// implements it. Implementations bound their own wait: the caller's context may have no
// deadline.
type StockZeroPublisher interface {
	// PublishSKUStockZero announces that the grant numbered issued took the SKU's last
	// unit; the SQL surplus becomes stock_count − issued, which a later top-up survives.
	PublishSKUStockZero(ctx context.Context, sku, issued int64) error
}

// ErrOrderUsed means the raffle order was already used by another draw.
var ErrOrderUsed = errors.New("raffle order already used")
