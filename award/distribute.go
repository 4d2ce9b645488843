package award

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/money"
)

// Errors of distribution. Each means redelivery cannot help: the message is dead-lettered.
var (
	// ErrUnknownAward means the award id has no award row.
	ErrUnknownAward = errors.New("unknown award")
	// ErrNoDistributor means no distributor is registered for the award's key (an
	// external award with no webhook configured).
	ErrNoDistributor = errors.New("no distributor for award key")
	// ErrBadConfig means the award's config (or the rule's value) does not fit its key,
	// e.g. a credit range that is not "lo,hi" (ERR_CONFIG_001).
	ErrBadConfig = errors.New("award_config is not a range")
	// ErrBadMessage means a send_award message lacks its user, order or award.
	ErrBadMessage = errors.New("malformed send_award message")
)

// Award keys with built-in distributors.
const (
	KeyCreditRandom    = "user_credit_random"
	KeyCreditBlacklist = "user_credit_blacklist"
)

// Award is an award row: what an award id grants, by key, with the key's config.
type Award struct {
	ID     int
	Key    string
	Config string
	Desc   string
}

// Configs looks awards up; implementations cache (awards change rarely).
type Configs interface {
	Award(ctx context.Context, awardID int) (Award, error)
}

// Distributor hands one award to its user. Prepare does whatever happens outside the
// user's database (a webhook call) and returns the change that completes the award
// record there, with the credit trade if the award is credit. It must be idempotent: a
// message may be delivered again after Prepare succeeded.
type Distributor interface {
	Prepare(ctx context.Context, a Award, m SendAward) (credit.Change, error)
}

// DistributorFunc is a Distributor as a func.
type DistributorFunc func(ctx context.Context, a Award, m SendAward) (credit.Change, error)

// Prepare calls f.
func (f DistributorFunc) Prepare(ctx context.Context, a Award, m SendAward) (credit.Change, error) {
	return f(ctx, a, m)
}

// Pending lists a user's awards recorded but not yet distributed, as the send_award
// messages that will distribute them (the green channel's source).
type Pending interface {
	PendingAwards(ctx context.Context, userID string) ([]SendAward, error)
}

// Options configures a Service.
type Options struct {
	Configs Configs
	// Pending is read by Settle; nil: Settle does nothing.
	Pending Pending
	Credits interface {
		ApplyCredit(ctx context.Context, changes []credit.Change) []error
	}
	// Distributors by award key; the credit keys are registered by NewService unless set.
	Distributors map[string]Distributor
	// Fallback distributes any key without a distributor (the webhook); nil refuses them
	// with ErrNoDistributor.
	Fallback Distributor
	// Pick chooses a random credit amount in [lo, hi] for an order. The default is
	// uniform and derived from the order id, so a redelivered message picks the same.
	Pick func(orderID string, lo, hi money.Cents) money.Cents
	// Parallel bounds concurrent Prepare calls of one batch (default 16).
	Parallel int
	Now      func() time.Time
}

// Service distributes awards: the send_award consumer's business side.
type Service struct{ opts Options }

// NewService returns a Service with the credit distributors registered.
func NewService(opts Options) *Service {
	if opts.Pick == nil {
		opts.Pick = orderPick
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 16
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	ds := map[string]Distributor{}
	s := &Service{opts: opts}
	ds[KeyCreditRandom] = DistributorFunc(s.creditRandom)
	ds[KeyCreditBlacklist] = DistributorFunc(s.creditFixed)
	for k, d := range opts.Distributors {
		ds[k] = d
	}
	s.opts.Distributors = ds
	return s
}

// Distribute hands each message's award to its user and returns each one's outcome: nil
// when the award is distributed, now or by an earlier delivery; an error wrapping one of
// the package's errors (or credit.ErrAwardNotFound) when redelivery cannot help; another
// error otherwise. The credit side of the whole batch is one store call, which groups it
// per user database.
func (s *Service) Distribute(ctx context.Context, msgs []SendAward) []error {
	errs := make([]error, len(msgs))
	changes := make([]credit.Change, len(msgs))
	sem := make(chan struct{}, s.opts.Parallel)
	var wg sync.WaitGroup
	for i, m := range msgs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			changes[i], errs[i] = s.prepare(ctx, m)
		})
	}
	wg.Wait()
	var (
		ready []credit.Change
		at    []int
	)
	for i, err := range errs {
		if err == nil {
			ready = append(ready, changes[i])
			at = append(at, i)
		}
	}
	if len(ready) == 0 {
		return errs
	}
	for j, err := range s.opts.Credits.ApplyCredit(ctx, ready) {
		switch {
		case err == nil, errors.Is(err, credit.ErrDuplicate):
			// Distributed, now or by an earlier delivery.
		default:
			errs[at[j]] = fmt.Errorf("distribute award %d of order %s: %w", msgs[at[j]].AwardID, msgs[at[j]].OrderID, err)
		}
	}
	return errs
}

// creditKeys are the award keys Settle distributes: those that only move credit in the
// user's own database.
var creditKeys = map[string]bool{KeyCreditRandom: true, KeyCreditBlacklist: true}

// IsCredit reports whether an award key only moves credit in the user's own database:
// the awards the credit green channel distributes.
func IsCredit(key string) bool { return creditKeys[key] }

// Settle is the credit green channel of awards: before a user's credit is read, the
// user's credit awards recorded but not yet distributed are distributed now, from the
// same send_award messages the consumer will get, so under the same business number (the
// award's order id) and with the same amount. The consumer's delivery that follows, or
// one running at the same time, finds the trade applied and changes nothing; nor does
// this when the consumer came first. Other awards (a webhook's) are left to the
// consumer. An award that cannot be distributed (a bad config) is left to the consumer
// and its dead letters; any other failure is returned, and the consumer still credits it.
func (s *Service) Settle(ctx context.Context, userID string) error {
	if s.opts.Pending == nil {
		return nil
	}
	pending, err := s.opts.Pending.PendingAwards(ctx, userID)
	if err != nil || len(pending) == 0 {
		return err
	}
	var msgs []SendAward
	for _, m := range pending {
		a, err := s.opts.Configs.Award(ctx, m.AwardID)
		switch {
		case errors.Is(err, ErrUnknownAward):
			continue
		case err != nil:
			return fmt.Errorf("settle award %d of order %s: %w", m.AwardID, m.OrderID, err)
		case creditKeys[a.Key]:
			msgs = append(msgs, m)
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	var errs []error
	for i, err := range s.Distribute(ctx, msgs) {
		if err != nil && !Permanent(err) {
			errs = append(errs, fmt.Errorf("settle order %s: %w", msgs[i].OrderID, err))
		}
	}
	return errors.Join(errs...)
}

// Permanent reports whether a distribution error cannot be fixed by trying again.
func Permanent(err error) bool {
	for _, target := range []error{ErrUnknownAward, ErrNoDistributor, ErrBadConfig, ErrBadMessage} {
		if errors.Is(err, target) {
			return true
		}
	}
	return credit.IsPermanent(err)
}

func (s *Service) prepare(ctx context.Context, m SendAward) (credit.Change, error) {
	if m.UserID == "" || m.OrderID == "" || m.AwardID == 0 {
		return credit.Change{}, fmt.Errorf("%+v: %w", m, ErrBadMessage)
	}
	a, err := s.opts.Configs.Award(ctx, m.AwardID)
	if err != nil {
		return credit.Change{}, fmt.Errorf("award %d of order %s: %w", m.AwardID, m.OrderID, err)
	}
	d := s.opts.Distributors[a.Key]
	if d == nil {
		d = s.opts.Fallback
	}
	if d == nil {
		return credit.Change{}, fmt.Errorf("award %d key %q: %w", a.ID, a.Key, ErrNoDistributor)
	}
	ch, err := d.Prepare(ctx, a, m)
	if err != nil {
		return credit.Change{}, fmt.Errorf("distribute award %d (%s) of order %s: %w", a.ID, a.Key, m.OrderID, err)
	}
	ch.UserID, ch.AwardOrderID = m.UserID, m.OrderID
	return ch, nil
}

// creditRandom credits an amount drawn uniformly, in cents, from the rule's range (the
// luck award's "1,100") or else the award's config.
func (s *Service) creditRandom(_ context.Context, a Award, m SendAward) (credit.Change, error) {
	raw := m.AwardConfig
	if raw == "" {
		raw = a.Config
	}
	lo, hi, err := ParseRange(raw)
	if err != nil {
		return credit.Change{}, err
	}
	return s.creditChange(m, s.opts.Pick(m.OrderID, lo, hi)), nil
}

// creditFixed credits the award's config as a fixed amount (the blacklist's "1").
func (s *Service) creditFixed(_ context.Context, a Award, m SendAward) (credit.Change, error) {
	amount, err := money.Parse(strings.TrimSpace(a.Config))
	if err != nil || amount <= 0 {
		return credit.Change{}, fmt.Errorf("award %d config %q is not a positive amount: %w", a.ID, a.Config, ErrBadConfig)
	}
	return s.creditChange(m, amount), nil
}

// creditChange is the forward trade of an award: its business number is the award's
// order id, so the trade happens once however often the message comes.
func (s *Service) creditChange(m SendAward, amount money.Cents) credit.Change {
	return credit.Change{Order: &credit.Order{
		UserID: m.UserID, OrderID: activity.NewOrderID(s.opts.Now()), Name: credit.NameAward, Type: credit.Forward,
		Amount: amount, OutBusinessNo: m.OrderID,
	}}
}

// ParseRange reads a credit range "lo,hi" in yuan with at most two decimals, 0 < lo ≤ hi.
func ParseRange(s string) (lo, hi money.Cents, err error) {
	a, b, ok := strings.Cut(s, ",")
	if !ok {
		return 0, 0, fmt.Errorf("range %q: %w", s, ErrBadConfig)
	}
	lo, err1 := money.Parse(strings.TrimSpace(a))
	hi, err2 := money.Parse(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || lo <= 0 || hi < lo {
		return 0, 0, fmt.Errorf("range %q: %w", s, ErrBadConfig)
	}
	return lo, hi, nil
}

// orderPick draws uniformly from [lo, hi] with a generator seeded by the order id.
func orderPick(orderID string, lo, hi money.Cents) money.Cents {
	h := fnv.New64a()
	h.Write([]byte(orderID))
	r := rand.New(rand.NewPCG(h.Sum64(), 0x9e3779b97f4a7c15))
	return lo + money.Cents(r.Int64N(int64(hi-lo)+1))
}
