package activity

import (
	"context"
	"errors"
	"fmt"

	"github.com/bigmarket/bigmarket/ident"
)

// IssuedSyncer copies a SKU's high watermark of grants to SQL with the monotone update of
// the stock reconcile job (stock_count_surplus = min(surplus, stock_count − issued));
// sqlstore.ActivityStore implements it. When Options.StockStore implements it too,
// ReserveSKU makes its units durable at once instead of at the job's next pass.
type IssuedSyncer interface {
	SyncSKUIssued(ctx context.Context, sku, issued int64) error
}

// ReserveSKU takes units of the SKU's stock at once, all or none, for prizes that grant
// the SKU later without taking stock (a rain session's SKU prizes, taken when the session
// is armed; each win is then GrantReserved). The SKU must exist and its activity be open
// now. Fewer units left than asked is ErrSKUStockExhausted and takes nothing; a counter
// lost from the cache is ErrSKUStockMissing (its rebuild is asked for). The take that
// leaves none announces it as a recharge does.
//
// Units taken this way have no recharge order until they are granted, so a rebuild of
// the counter from the orders alone would hand them out again; the new watermark is
// therefore written to SQL before ReserveSKU returns, when Options.StockStore can
// (IssuedSyncer). If that write fails the units stay taken and the error is returned:
// the caller does not arm the prizes, and the units are undersold, never sold twice.
func (s *Service) ReserveSKU(ctx context.Context, sku, units int64) error {
	if units <= 0 || units > MaxTopUp {
		return fmt.Errorf("reserve %d units of sku %d: %w", units, sku, ErrInvalidUnits)
	}
	k, err := s.sku(ctx, sku)
	if err != nil {
		return err
	}
	a, err := s.open(ctx, k.ActivityID, s.opts.Now())
	if err != nil {
		return err
	}
	epoch := s.soldOut.Epoch()
	if s.soldOut.Out(sku) {
		return fmt.Errorf("reserve %d units of sku %d (sold out): %w", units, sku, ErrSKUStockExhausted)
	}
	left, issued, err := s.opts.SKUStock.DeductN(ctx, sku, units, stockExpiry(a))
	if err != nil {
		// Fewer units than asked is not necessarily none: the SKU is not flagged.
		if errors.Is(err, ErrSKUStockMissing) && s.opts.Recovery != nil {
			s.opts.Recovery.SKULost(sku, stockExpiry(a))
		}
		return fmt.Errorf("reserve %d units of sku %d: %w", units, sku, err)
	}
	if left == 0 {
		s.soldOut.Mark(sku, epoch)
		s.stockZero(ctx, sku, issued)
	}
	if syncer, ok := s.opts.StockStore.(IssuedSyncer); ok {
		// The units are gone from the cache whatever the caller does now.
		if err := syncer.SyncSKUIssued(context.WithoutCancel(ctx), sku, issued); err != nil {
			return fmt.Errorf("reserve %d units of sku %d: taken but not yet durable: %w", units, sku, err)
		}
	}
	return nil
}

// GrantReserved recharges the SKU's count to the user as a PolicyFree Recharge does (the
// same order and quota writes, the hot quota raised after), for a unit ReserveSKU took
// before: it takes no stock and checks neither the activity's state nor its dates, since
// the unit was reserved while the activity was open and the prize has been promised. A
// repeated out_business_no is nil and changes nothing, so a redelivered win grants once.
func (s *Service) GrantReserved(ctx context.Context, userID string, sku int64, outBusinessNo string) error {
	if err := CheckUserID(userID); err != nil {
		return err
	}
	if err := ident.Check(outBusinessNo, ident.MaxBusinessNo); err != nil {
		return fmt.Errorf("out_business_no %w: %w", err, ErrInvalidBusinessNo)
	}
	k, err := s.sku(ctx, sku)
	if err != nil {
		return err
	}
	a, err := s.Activity(ctx, k.ActivityID)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		now := s.opts.Now()
		day, month := s.Periods(now)
		order := RechargeOrder{
			UserID: userID, SKU: k.SKU, ActivityID: a.ID, ActivityName: a.Name, StrategyID: a.StrategyID,
			OrderID: NewOrderID(now), OrderTime: now, Count: k.Count, State: RechargeCompleted, OutBusinessNo: outBusinessNo,
		}
		key := QuotaKey{UserID: userID, ActivityID: a.ID, Day: day, Month: month}
		var after Quota
		err := s.opts.Users.Recharge(ctx, key, order, func(q *Quota) { q.Add(k.Count); after = q.Clone() })
		if err == nil {
			s.raiseHot(ctx, key, after)
			return nil
		}
		if !errors.Is(err, ErrDuplicateOrder) {
			return fmt.Errorf("grant reserved sku %d to %s: %w", k.SKU, userID, err)
		}
		// A duplicate is the business number granted before, or a random order id that
		// another order of the same millisecond took: only the first is done.
		done, xerr := s.opts.Users.RechargeExists(ctx, userID, outBusinessNo)
		if xerr != nil {
			return fmt.Errorf("grant reserved sku %d to %s: %w", k.SKU, userID, xerr)
		}
		if done {
			return nil
		}
		if attempt == 2 {
			return fmt.Errorf("grant reserved sku %d to %s: %w", k.SKU, userID, err)
		}
	}
}
