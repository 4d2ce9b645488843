package activity

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/bigmarket/bigmarket/ident"
)

// MaxProvisionUsers bounds the users of one provisioning request.
const MaxProvisionUsers = 1000

// MaxProvisionBatchNo is the longest batch number: with "_" and a user id of 32 it fills
// the 64 of out_business_no.
const MaxProvisionBatchNo = ident.MaxBusinessNo - 1 - 32

// ErrInvalidProvision means a provisioning request is malformed: no users, too many, a
// user twice.
var ErrInvalidProvision = errors.New("invalid provisioning request")

// ProvisionRequest grants one SKU to many users: each user gets the recharge an operator
// recharge would give, with the out_business_no BatchNo + "_" + user id.
type ProvisionRequest struct {
	ActivityID int64 // optional: when set, the SKU must be the activity's
	SKU        int64
	BatchNo    string
	Users      []string
}

// Provisioned is what a provisioning did: the users recharged now, and those that already
// had the batch's recharge (a repeated request) and were left alone.
type Provisioned struct {
	Provisioned int `json:"provisioned"`
	Repeated    int `json:"repeated"`
}

// ProvisionBusinessNo is the out_business_no of user's recharge in a provisioning batch.
func ProvisionBusinessNo(batchNo, userID string) string { return batchNo + "_" + userID }

// Provision recharges the SKU to every user of the request as Recharge does under
// PolicyFree (the same checks, SKU stock, order and quota code, so the accounts and their
// day and month rows are those a recharge gives), in bulk: the users that already have
// their batch recharge are skipped first, then the SKU stock of the rest is taken in one
// step, all or none (ERR_SKU_STOCK when fewer units are left, nothing taken), and the
// orders and quotas are written several users to a transaction. A repeated request
// recharges nobody twice. A bad request (no users, more than MaxProvisionUsers, a user
// twice, a bad user id or batch number) changes nothing.
func (s *Service) Provision(ctx context.Context, req ProvisionRequest) (Provisioned, error) {
	if err := ident.Check(req.BatchNo, MaxProvisionBatchNo); err != nil {
		return Provisioned{}, fmt.Errorf("batch number %w: %w", err, ErrInvalidBusinessNo)
	}
	if len(req.Users) == 0 || len(req.Users) > MaxProvisionUsers {
		return Provisioned{}, fmt.Errorf("%d users, want 1 to %d: %w", len(req.Users), MaxProvisionUsers, ErrInvalidProvision)
	}
	numbers := make(map[string]string, len(req.Users))
	for _, u := range req.Users {
		if err := CheckUserID(u); err != nil {
			return Provisioned{}, err
		}
		if _, ok := numbers[u]; ok {
			return Provisioned{}, fmt.Errorf("user %s twice: %w", u, ErrInvalidProvision)
		}
		numbers[u] = ProvisionBusinessNo(req.BatchNo, u)
	}
	sku, err := s.sku(ctx, req.SKU)
	if err != nil {
		return Provisioned{}, err
	}
	if req.ActivityID != 0 && req.ActivityID != sku.ActivityID {
		return Provisioned{}, fmt.Errorf("sku %d is of activity %d, not %d: %w", sku.SKU, sku.ActivityID, req.ActivityID, ErrInvalidProvision)
	}
	now := s.opts.Now()
	a, err := s.open(ctx, sku.ActivityID, now)
	if err != nil {
		return Provisioned{}, err
	}
	// Repeats are skipped before stock is taken, so that they change nothing; two
	// identical requests racing each other may still cost units: undersell.
	done, err := s.opts.Users.RechargesExist(ctx, numbers)
	if err != nil {
		return Provisioned{}, fmt.Errorf("provision: %w", err)
	}
	var fresh []string
	for _, u := range req.Users {
		if !done[u] {
			fresh = append(fresh, u)
		}
	}
	out := Provisioned{Repeated: len(req.Users) - len(fresh)}
	if len(fresh) == 0 {
		return out, nil
	}
	epoch := s.soldOut.Epoch()
	if s.soldOut.Out(sku.SKU) {
		return Provisioned{}, fmt.Errorf("provision sku %d (sold out): %w", sku.SKU, ErrSKUStockExhausted)
	}
	left, issued, err := s.opts.SKUStock.DeductN(ctx, sku.SKU, int64(len(fresh)), stockExpiry(a))
	if err != nil {
		switch {
		case errors.Is(err, ErrSKUStockMissing):
			if s.opts.Recovery != nil {
				s.opts.Recovery.SKULost(sku.SKU, stockExpiry(a))
			}
		case errors.Is(err, ErrSKUStockExhausted):
			// Fewer units than users: not necessarily none, so the SKU is not flagged.
		}
		return Provisioned{}, fmt.Errorf("provision %d users with sku %d: %w", len(fresh), sku.SKU, err)
	}
	if left == 0 {
		s.soldOut.Mark(sku.SKU, epoch)
		s.stockZero(ctx, sku.SKU, issued)
	}
	day, month := s.Periods(now)
	items := make([]Recharging, len(fresh))
	for i, u := range fresh {
		items[i] = Recharging{
			Key: QuotaKey{UserID: u, ActivityID: a.ID, Day: day, Month: month},
			Order: RechargeOrder{
				UserID: u, SKU: sku.SKU, ActivityID: a.ID, ActivityName: a.Name, StrategyID: a.StrategyID,
				OrderTime: now, Count: sku.Count, State: RechargeCompleted, OutBusinessNo: numbers[u],
			},
		}
	}
	// The stock is taken; the orders are written, again with new order ids when a write
	// fails (an order id another request took in the same millisecond): orders already
	// written are found by their business numbers and skipped.
	var written []Recharged
	for attempt := 0; ; attempt++ {
		for i, id := range newOrderIDs(s.opts.Now(), len(items)) {
			items[i].Order.OrderID = id
		}
		var done []Recharged
		done, err = s.opts.Users.RechargeMany(ctx, items, func(q *Quota) { q.Add(sku.Count) })
		written = append(written, done...)
		if err == nil || attempt == 2 || ctx.Err() != nil {
			break
		}
	}
	// What SQL committed reaches the flash draw's hot copies now, as an operator
	// recharge's does, failed request or not.
	s.raiseHotMany(ctx, written)
	if err != nil {
		return Provisioned{}, fmt.Errorf("provision %d users with sku %d (%d written): %w", len(fresh), sku.SKU, len(written), err)
	}
	out.Provisioned = len(written)
	out.Repeated += len(fresh) - len(written)
	return out, nil
}

// raiseParallel bounds the concurrent raises of one provisioning; the flash draw's Redis
// client pipelines concurrent calls, so they share round trips.
const raiseParallel = 32

// raiseHotMany raises the hot copies of committed recharges (raiseHot, for many users).
func (s *Service) raiseHotMany(ctx context.Context, done []Recharged) {
	if s.opts.Hot == nil || len(done) == 0 {
		return
	}
	sem := make(chan struct{}, raiseParallel)
	var wg sync.WaitGroup
	for _, r := range done {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s.raiseHot(ctx, r.Key, r.Quota)
		})
	}
	wg.Wait()
}

// newOrderIDs returns n distinct order ids of NewOrderID's form: the millisecond, then a
// run of consecutive 7-digit numbers from a random start, so that a batch never repeats
// an id and two batches of the same millisecond rarely meet.
func newOrderIDs(now time.Time, n int) []string {
	const space = 10_000_000
	start := rand.IntN(space)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%013d%07d", now.UnixMilli(), (start+i)%space)
	}
	return ids
}
