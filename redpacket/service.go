package redpacket

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/guard"
	"github.com/bigmarket/bigmarket/internal/rebuild"
	"github.com/bigmarket/bigmarket/internal/seeded"
	"github.com/bigmarket/bigmarket/money"
)

// Store keeps packets, their items and the grabbers' credit in the sharded user databases.
type Store interface {
	// PacketID returns a new packet id that names the packet's home database: the
	// sender's, or for an operator packet (empty sender) the one its id hashes to.
	PacketID(senderID string, now time.Time) string
	// SendRedPacket writes the packet and its items and, when debit is set, the sender's
	// reverse credit order, in one transaction of the home database; too little credit is
	// credit.ErrInsufficient and writes nothing.
	SendRedPacket(ctx context.Context, p Packet, items []Item, debit *credit.Order) error
	// RedPacket returns a packet and its items; an unknown id wraps ErrNotFound.
	RedPacket(ctx context.Context, packetID string) (Packet, []Item, error)
	// ApplyGrabs records each grab on its item and credits its grabber, idempotently: a
	// grab applied before is nil again. It returns each grab's outcome.
	ApplyGrabs(ctx context.Context, grabs []Grab) []error
	// ExpiredRedPackets pages through open packets expired by now, after the cursor;
	// fewer than limit ids means the sweep is complete.
	ExpiredRedPackets(ctx context.Context, now time.Time, after Cursor, limit int) ([]string, Cursor, error)
	// RefundRedPacket gives an open packet's total minus its recorded grabs back to its
	// sender and closes it, once; done is false when it was no longer open.
	RefundRedPacket(ctx context.Context, packetID string) (refund money.Cents, done bool, err error)
}

// Hot is the packets' hot state: the items left and who grabbed what, one atomic script
// per grab.
type Hot interface {
	// Load puts a packet's items not yet grabbed, its grabs and its expiry in place.
	Load(ctx context.Context, packetID string, items []Item, grabs []Grab, expireAt time.Time, eligible []string) error
	// Grab takes an item for userID, or returns the one it took before with again set;
	// ErrEmpty, ErrClosed, ErrNotEligible, or ErrUnavailable when the packet is not there.
	Grab(ctx context.Context, packetID, userID string, now time.Time) (item Item, again bool, err error)
	// AddPending notes a grab under its user until DonePending: the green channel's list
	// of what a user's wallet still lacks.
	AddPending(ctx context.Context, g Grab) error
	// Pending returns the user's noted grabs.
	Pending(ctx context.Context, userID string) ([]Grab, error)
	// DonePending forgets grabs that are credited.
	DonePending(ctx context.Context, grabs []Grab) error
	// Close stops a packet's grabs atomically; ErrUnavailable when the packet is not
	// there. What is left is refunded from the database, which counts the grabs.
	Close(ctx context.Context, packetID string) error
	// Grabs returns every grab the hot state holds for a packet; ErrUnavailable when the
	// packet is not there.
	Grabs(ctx context.Context, packetID string) ([]Grab, error)
}

// Drainer waits until every grab event published so far has been applied.
type Drainer interface {
	WaitApplied(ctx context.Context) error
}

// Publisher makes a grab durable: it returns once the broker has stored the event.
type Publisher interface {
	PublishGrab(ctx context.Context, g Grab) error
}

// Limits bound what a send may ask for.
type Limits struct {
	MaxCount  int         // items per packet (default 1,000)
	MaxAmount money.Cents // total per packet (default 20,000.00)
	// DefaultExpiry applies when a send names none (default 24h); MaxExpiry bounds it
	// (default 7 days).
	DefaultExpiry, MaxExpiry time.Duration
	MaxGreeting              int // runes (default 64)
	MaxEligible              int // users of an operator packet's list (default 5,000)
}

func (l Limits) withDefaults() Limits {
	if l.MaxCount <= 0 {
		l.MaxCount = 1000
	}
	if l.MaxAmount <= 0 {
		l.MaxAmount = 20_000_00
	}
	if l.DefaultExpiry <= 0 {
		l.DefaultExpiry = 24 * time.Hour
	}
	if l.MaxExpiry <= 0 {
		l.MaxExpiry = 7 * 24 * time.Hour
	}
	if l.MaxGreeting <= 0 {
		l.MaxGreeting = 64
	}
	if l.MaxEligible <= 0 {
		l.MaxEligible = 5_000
	}
	return l
}

// Options configure a Service.
type Options struct {
	Store  Store
	Hot    Hot
	Events Publisher
	// Drain is waited for before a lost packet is rebuilt from the database.
	Drain  Drainer
	Limits Limits
	// PublishTimeout bounds how long a grab waits for the broker to store its event
	// (default 2s); past it the grab answers ErrUnavailable and its retry publishes again.
	PublishTimeout time.Duration
	// RecoverGrace is how long a rebuild waits before it drains the grab events, so that
	// grabs in flight when Redis lost the packet have published or failed (default 3s;
	// at least PublishTimeout plus a second).
	RecoverGrace time.Duration
	// RecoverTimeout bounds a rebuild (default 15s); a grab waits for it at most
	// PublishTimeout and then answers ErrUnavailable, and a retry finds the packet back.
	RecoverTimeout time.Duration
	Now            func() time.Time
	// Rand returns the randomness of one split; nil seeds a fresh generator from
	// crypto/rand for each packet.
	Rand   func() *rand.Rand
	Logger *slog.Logger
}

// Service sends and grabs red packets.
type Service struct {
	opts    Options
	rebuild rebuild.Group // one rebuild per packet at a time on this node
}

// NewService returns a Service; Store, Hot and Events are required.
func NewService(opts Options) *Service {
	opts.Limits = opts.Limits.withDefaults()
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = seeded.Rand
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.PublishTimeout, opts.RecoverGrace, opts.RecoverTimeout = rebuild.Timing(opts.PublishTimeout, opts.RecoverGrace, opts.RecoverTimeout)
	return &Service{opts: opts}
}

// SendRequest asks for a packet. SenderID is empty for an operator campaign, which costs
// no credit and may name its Eligible users.
type SendRequest struct {
	SenderID string
	Total    money.Cents
	Count    int
	Mode     Mode
	Greeting string
	// Expiry is how long the packet can be grabbed; zero means the default.
	Expiry   time.Duration
	Eligible []string
}

// check refuses a request the limits do not allow.
func (s *Service) check(req SendRequest) error {
	l := s.opts.Limits
	switch {
	case req.SenderID != "" && activity.CheckUserID(req.SenderID) != nil:
		return fmt.Errorf("sender id too long or empty: %w", ErrInvalid)
	case req.Count < 1 || req.Count > l.MaxCount:
		return fmt.Errorf("count %d: want 1 to %d: %w", req.Count, l.MaxCount, ErrInvalid)
	case req.Total <= 0 || req.Total > l.MaxAmount:
		return fmt.Errorf("total amount %s: want above 0 and at most %s: %w", req.Total, l.MaxAmount, ErrInvalid)
	case req.Expiry < 0 || req.Expiry > l.MaxExpiry:
		return fmt.Errorf("expiry %s: want at most %s: %w", req.Expiry, l.MaxExpiry, ErrInvalid)
	case utf8.RuneCountInString(req.Greeting) > l.MaxGreeting:
		return fmt.Errorf("greeting longer than %d characters: %w", l.MaxGreeting, ErrInvalid)
	case !req.Mode.Valid():
		return fmt.Errorf("mode %q: want random or fixed: %w", req.Mode, ErrInvalid)
	case req.SenderID != "" && len(req.Eligible) > 0:
		return fmt.Errorf("only operator packets name eligible users: %w", ErrInvalid)
	case len(req.Eligible) > l.MaxEligible:
		return fmt.Errorf("%d eligible users: want at most %d: %w", len(req.Eligible), l.MaxEligible, ErrInvalid)
	}
	for _, u := range req.Eligible {
		if activity.CheckUserID(u) != nil {
			return fmt.Errorf("an eligible user id is empty or too long: %w", ErrInvalid)
		}
	}
	return nil
}

// Send splits the total, writes the packet (debiting the sender) and puts it in the hot
// state. A packet written but not loaded is rebuilt from the database by its first grab.
func (s *Service) Send(ctx context.Context, req SendRequest) (Packet, error) {
	if err := s.check(req); err != nil {
		return Packet{}, err
	}
	shares, err := Split(req.Total, req.Count, req.Mode, s.opts.Rand())
	if err != nil {
		return Packet{}, err
	}
	now := s.opts.Now()
	if req.Expiry == 0 {
		req.Expiry = s.opts.Limits.DefaultExpiry
	}
	p := Packet{
		ID: s.opts.Store.PacketID(req.SenderID, now), SenderID: req.SenderID, Total: req.Total, Count: req.Count,
		Mode: req.Mode, Greeting: req.Greeting, Eligible: req.Eligible, State: StateOpen,
		// Whole seconds, as every SQL backend keeps them.
		ExpireAt: now.Add(req.Expiry).Truncate(time.Second), Created: now,
	}
	items := make([]Item, len(shares))
	for i, c := range shares {
		items[i] = Item{Index: i, Amount: c}
	}
	var debit *credit.Order
	if req.SenderID != "" {
		debit = &credit.Order{
			UserID: req.SenderID, OrderID: activity.NewOrderID(now), Name: NameSend, Type: credit.Reverse,
			Amount: req.Total, OutBusinessNo: p.ID,
		}
	}
	// The commit point: the transaction debits the sender. Behind the guard, a send over
	// its budget stops here having written nothing (0006); from here on it is waited for.
	ctx, err = guard.Commit(ctx)
	if err != nil {
		return Packet{}, fmt.Errorf("send red packet: %w", err)
	}
	if err := s.opts.Store.SendRedPacket(ctx, p, items, debit); err != nil {
		return Packet{}, fmt.Errorf("send red packet: %w", err)
	}
	if err := s.opts.Hot.Load(ctx, p.ID, items, nil, p.ExpireAt, p.Eligible); err != nil {
		// The packet and the debit are committed: answer with it, and let its first grab
		// rebuild it from the database like any packet Redis lost.
		s.opts.Logger.Warn("red packet written but not loaded; its first grab loads it", "packet_id", p.ID, "err", err)
	}
	return p, nil
}

// Grab takes an item of the packet for the user and makes the grab durable before it
// answers. A user's second grab answers ErrAlreadyGrabbed with the first grab, and
// publishes that grab again: a grab whose event failed to publish becomes durable on the
// user's retry (the broker and the credit drop the repeat).
func (s *Service) Grab(ctx context.Context, userID, packetID string) (Grab, error) {
	if err := activity.CheckUserID(userID); err != nil {
		return Grab{}, err
	}
	if !validID(packetID) {
		return Grab{}, fmt.Errorf("red packet %q: %w", packetID, ErrNotFound)
	}
	// The commit point: the grab script takes an item. Behind the guard, a grab over its
	// budget stops here having taken nothing (0006); from here on it is waited for, and
	// answers ERR_RP_004 itself when its event cannot be made durable in time.
	ctx, err := guard.Commit(ctx)
	if err != nil {
		return Grab{}, fmt.Errorf("grab red packet %s: %w", packetID, err)
	}
	now := s.opts.Now()
	item, again, err := s.opts.Hot.Grab(ctx, packetID, userID, now)
	if errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrUnconfirmed) {
		// Not in the hot state: an unknown id, a packet whose keys Redis lost, or one
		// fenced after a Redis failover (its copy may lack grabs already answered). An
		// unconfirmed grab is answered retry as it is: the packet is whole where it was
		// taken, and a rebuild would only keep it.
		if rerr := s.recover(ctx, packetID, err); rerr != nil {
			return Grab{}, rerr
		}
		item, again, err = s.opts.Hot.Grab(ctx, packetID, userID, now)
	}
	if err != nil {
		return Grab{}, fmt.Errorf("grab red packet %s: %w", packetID, err)
	}
	g := Grab{PacketID: packetID, UserID: userID, Index: item.Index, Amount: item.Amount, Time: now}
	// The note for the green channel and the durable event go out together: both round
	// trips in the time of one. A repeat is not noted again: it was noted when taken, or
	// its event credits it.
	var noted error
	var wg sync.WaitGroup
	if !again {
		wg.Go(func() { noted = s.opts.Hot.AddPending(ctx, g) })
	}
	pctx, cancel := context.WithTimeout(ctx, s.opts.PublishTimeout)
	err = s.opts.Events.PublishGrab(pctx, g)
	cancel()
	wg.Wait()
	if err != nil {
		return Grab{}, fmt.Errorf("grab of red packet %s taken but not yet durable, retry: %w (%w)", packetID, ErrUnavailable, err)
	}
	if noted != nil {
		return Grab{}, fmt.Errorf("grab of red packet %s taken but not yet noted, retry: %w (%w)", packetID, ErrUnavailable, noted)
	}
	if again {
		return g, fmt.Errorf("user %s in red packet %s: %w", userID, packetID, ErrAlreadyGrabbed)
	}
	return g, nil
}

// validID reports whether id can be a packet id: 1 to 32 digits (Store.PacketID makes
// them so), which keeps anything else away from the stores.
func validID(id string) bool {
	if id == "" || len(id) > 32 {
		return false
	}
	for _, c := range id {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// ApplyGrabs credits grabs (the consumer of the grab events) and forgets the ones done.
func (s *Service) ApplyGrabs(ctx context.Context, grabs []Grab) []error {
	errs := s.opts.Store.ApplyGrabs(ctx, grabs)
	s.forget(ctx, grabs, errs)
	return errs
}

// forget drops from the pending lists the grabs that are credited, and those that never
// can be (they are logged and dead-lettered by the consumer), so that a wallet read does
// not retry them forever. A failure only costs a later no-op retry.
func (s *Service) forget(ctx context.Context, grabs []Grab, errs []error) {
	var done []Grab
	for i, err := range errs {
		if err == nil || Permanent(err) {
			done = append(done, grabs[i])
		}
	}
	if err := s.opts.Hot.DonePending(ctx, done); err != nil {
		s.opts.Logger.Warn("forget credited grabs", "err", err)
	}
}

// Permanent reports whether a grab's error is one no retry can fix.
func Permanent(err error) bool {
	return errors.Is(err, ErrConflict) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalid) ||
		credit.IsPermanent(err)
}

// Settle is the green channel: before a user's wallet is read, the user's grabs not yet
// credited are applied now, with the same idempotency key as their events, so the events
// that arrive later change nothing. It returns the first error of a grab that could not
// be applied now (the event still will be).
func (s *Service) Settle(ctx context.Context, userID string) error {
	pending, err := s.opts.Hot.Pending(ctx, userID)
	if err != nil || len(pending) == 0 {
		return err
	}
	errs := s.opts.Store.ApplyGrabs(ctx, pending)
	s.forget(ctx, pending, errs)
	for i, err := range errs {
		if err != nil && !Permanent(err) {
			return fmt.Errorf("settle grab %s: %w", pending[i].MsgID(), err)
		}
	}
	return nil
}

// recover rebuilds a packet the hot state lost, from the database once every grab event
// already published has been applied there: the items not recorded as grabbed go back to
// the list, the recorded grabs to the map, so no item is paid twice. A grab taken in
// Redis whose event never reached the broker was answered with an error, and its item is
// free again. Until the rebuild is done, grabs answer ErrUnavailable.
//
// cause is the hot state's error that asked for the rebuild; the rebuild logs it.
func (s *Service) recover(ctx context.Context, packetID string, cause error) error {
	p, _, err := s.opts.Store.RedPacket(ctx, packetID)
	if err != nil {
		return err // ErrNotFound for an unknown id
	}
	if p.State != StateOpen || !s.opts.Now().Before(p.ExpireAt) {
		return fmt.Errorf("red packet %s: %w", packetID, ErrClosed)
	}
	if err := s.rebuildOnce(ctx, packetID, cause); err != nil {
		return fmt.Errorf("red packet %s being rebuilt: %w (%w)", packetID, ErrUnavailable, err)
	}
	return nil
}

// rebuildOnce runs reload for the packet, one at a time per packet on this node however
// many grabs ask for it, bounded by RecoverTimeout; a grab waits at most PublishTimeout
// and the rebuild goes on without it.
func (s *Service) rebuildOnce(ctx context.Context, packetID string, cause error) error {
	if s.opts.Drain == nil {
		return fmt.Errorf("red packet %s lost from the cache and no rebuild configured: %w", packetID, ErrUnavailable)
	}
	return s.rebuild.Do(ctx, packetID, s.opts.RecoverTimeout, s.opts.PublishTimeout,
		func(ctx context.Context) error { return s.reload(ctx, packetID, cause) },
		func(err error) { s.opts.Logger.Warn("rebuild red packet", "packet_id", packetID, "err", err) })
}

// reload lets the grabs in flight finish, waits for their events to be applied, then
// loads the packet from the database.
func (s *Service) reload(ctx context.Context, packetID string, cause error) error {
	if err := rebuild.Settle(ctx, s.opts.RecoverGrace, s.opts.Drain.WaitApplied); err != nil {
		return fmt.Errorf("rebuild red packet %s: %w", packetID, err)
	}
	p, items, err := s.opts.Store.RedPacket(ctx, packetID)
	if err != nil {
		return fmt.Errorf("rebuild red packet %s: %w", packetID, err)
	}
	var (
		left  []Item
		grabs []Grab
	)
	for _, it := range items {
		if it.UserID == "" {
			left = append(left, it)
			continue
		}
		grabs = append(grabs, Grab{PacketID: packetID, UserID: it.UserID, Index: it.Index, Amount: it.Amount, Time: it.GrabTime})
	}
	if err := s.opts.Hot.Load(ctx, packetID, left, grabs, p.ExpireAt, p.Eligible); err != nil {
		return fmt.Errorf("rebuild red packet %s: %w", packetID, err)
	}
	s.opts.Logger.Info("red packet rebuilt from the database", "packet_id", packetID, "left", len(left), "grabbed", len(grabs),
		"cause", cause)
	return nil
}

// Refund closes an expired packet and gives what is left back to its sender, exactly
// once: the hot state is closed atomically (no grab after it), every grab it holds is
// applied to the database (a grab whose event is still in flight, or never made it,
// included), and then the database refunds total − grabbed in one transaction.
func (s *Service) Refund(ctx context.Context, packetID string) (money.Cents, error) {
	var grabs []Grab
	err := s.opts.Hot.Close(ctx, packetID)
	switch {
	case errors.Is(err, ErrUnavailable):
		// Lost, or expired out of Redis long ago: no grab can happen any more, so the
		// database is the whole truth once the grab events in flight are applied.
		if err := s.drain(ctx); err != nil {
			return 0, fmt.Errorf("refund red packet %s: %w", packetID, err)
		}
	case err != nil:
		return 0, fmt.Errorf("close red packet %s: %w", packetID, err)
	default:
		if grabs, err = s.opts.Hot.Grabs(ctx, packetID); err != nil {
			return 0, fmt.Errorf("grabs of red packet %s: %w", packetID, err)
		}
	}
	late, err := s.applyUnrecorded(ctx, packetID, grabs)
	if err != nil {
		return 0, err
	}
	refund, done, err := s.opts.Store.RefundRedPacket(ctx, packetID)
	if err != nil {
		return 0, fmt.Errorf("refund red packet %s: %w", packetID, err)
	}
	if done {
		s.opts.Logger.Info("red packet expired", "packet_id", packetID, "refund", refund.String(), "late_grabs", late)
	}
	return refund, nil
}

// drain waits, at most RecoverTimeout, for every grab event published so far to be applied.
func (s *Service) drain(ctx context.Context) error {
	if s.opts.Drain == nil {
		return fmt.Errorf("no drain configured: %w", ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.RecoverTimeout)
	defer cancel()
	return s.opts.Drain.WaitApplied(ctx)
}

// applyUnrecorded applies the grabs the hot state holds that the database lacks — events
// still in flight, or never published — and returns how many there were. A grab that can
// never apply (the records give its item to someone else) is logged and left to verify;
// any other failure stops the refund until the next sweep.
func (s *Service) applyUnrecorded(ctx context.Context, packetID string, grabs []Grab) (int, error) {
	if len(grabs) == 0 {
		return 0, nil
	}
	_, items, err := s.opts.Store.RedPacket(ctx, packetID)
	if err != nil {
		return 0, fmt.Errorf("refund red packet %s: %w", packetID, err)
	}
	recorded := make(map[int]string, len(items))
	for _, it := range items {
		recorded[it.Index] = it.UserID
	}
	var missing []Grab
	now := s.opts.Now()
	for _, g := range grabs {
		if recorded[g.Index] != g.UserID {
			if g.Time.IsZero() {
				g.Time = now
			}
			missing = append(missing, g)
		}
	}
	if len(missing) == 0 {
		return 0, nil
	}
	errs := s.opts.Store.ApplyGrabs(ctx, missing)
	s.forget(ctx, missing, errs)
	for i, err := range errs {
		switch {
		case err == nil:
		case Permanent(err):
			s.opts.Logger.Error("grab held in the cache cannot be applied; refunding without it", "grab", missing[i].MsgID(), "err", err)
		default:
			return 0, fmt.Errorf("refund of red packet %s waits for grab %s: %w", packetID, missing[i].MsgID(), err)
		}
	}
	return len(missing), nil
}

// Sweep refunds every packet expired by now, a page at a time by cursor. It returns how
// many packets it handled (refunded or closed, here or already by another node) and the
// first error; a packet that failed is retried by the next sweep.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	var (
		cur      Cursor
		n        int
		firstErr error
	)
	const page = 100
	for {
		ids, next, err := s.opts.Store.ExpiredRedPackets(ctx, s.opts.Now(), cur, page)
		if err != nil {
			return n, err
		}
		for _, id := range ids {
			if _, err := s.Refund(ctx, id); err != nil {
				s.opts.Logger.Warn("refund red packet", "packet_id", id, "err", err)
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			n++
		}
		if len(ids) < page {
			return n, firstErr
		}
		cur = next
	}
}

// Detail is what a packet's page shows.
type Detail struct {
	Packet Packet
	// Grabs are every grab so far, recorded or still on its way to the database (the
	// hot state keeps its time), oldest first; a grab whose time is not known (kept in the
	// hot state before it kept times) has none and comes last.
	Grabs           []Grab
	GrabbedAmount   money.Cents
	RemainingCount  int
	RemainingAmount money.Cents
	// Expired is an open packet past its expiry whose refund has not run yet.
	Expired bool
	// Luckiest is the largest grab once nothing is left to grab (all grabbed, or the
	// packet closed); the earliest wins a tie.
	Luckiest *Grab
}

// Detail returns the packet with its grabs: the database's, plus those the hot state holds
// that are not recorded yet.
func (s *Service) Detail(ctx context.Context, packetID string) (Detail, error) {
	if !validID(packetID) {
		return Detail{}, fmt.Errorf("red packet %q: %w", packetID, ErrNotFound)
	}
	p, items, err := s.opts.Store.RedPacket(ctx, packetID)
	if err != nil {
		return Detail{}, err
	}
	d := Detail{Packet: p, Expired: p.State == StateOpen && !s.opts.Now().Before(p.ExpireAt)}
	seen := map[int]bool{}
	for _, it := range items {
		if it.UserID != "" {
			d.Grabs = append(d.Grabs, Grab{PacketID: packetID, UserID: it.UserID, Index: it.Index, Amount: it.Amount, Time: it.GrabTime})
			seen[it.Index] = true
		}
	}
	if p.State == StateOpen {
		hot, err := s.opts.Hot.Grabs(ctx, packetID)
		if err != nil && !errors.Is(err, ErrUnavailable) {
			return Detail{}, err
		}
		for _, g := range hot {
			if !seen[g.Index] {
				d.Grabs = append(d.Grabs, g)
			}
		}
	}
	slices.SortStableFunc(d.Grabs, func(a, b Grab) int {
		switch {
		case a.Time.IsZero() != b.Time.IsZero():
			if a.Time.IsZero() {
				return 1
			}
			return -1
		case !a.Time.Equal(b.Time):
			return a.Time.Compare(b.Time)
		}
		return a.Index - b.Index
	})
	for _, g := range d.Grabs {
		d.GrabbedAmount += g.Amount
	}
	if p.State == StateOpen {
		d.RemainingCount, d.RemainingAmount = p.Count-len(d.Grabs), p.Total-d.GrabbedAmount
	}
	if len(d.Grabs) > 0 && (d.RemainingCount == 0 || p.State != StateOpen) {
		best := d.Grabs[0]
		for _, g := range d.Grabs[1:] {
			if g.Amount > best.Amount {
				best = g
			}
		}
		d.Luckiest = &best
	}
	return d, nil
}
