package redpacket

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"
	"unicode/utf8"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/credit"
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
	MaxEligible              int // users of an operator packet's list (default 100,000)
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
		l.MaxEligible = 100_000
	}
	return l
}

// Options configure a Service.
type Options struct {
	Store  Store
	Hot    Hot
	Events Publisher
	Limits Limits
	Now    func() time.Time
	// Rand returns the randomness of one split; nil seeds a fresh generator from
	// crypto/rand for each packet.
	Rand   func() *rand.Rand
	Logger *slog.Logger
}

// Service sends and grabs red packets.
type Service struct {
	opts Options
}

// NewService returns a Service; Store, Hot and Events are required.
func NewService(opts Options) *Service {
	opts.Limits = opts.Limits.withDefaults()
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = func() *rand.Rand {
			var seed [16]byte
			_, _ = crand.Read(seed[:])
			return rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:])))
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
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
// state. A packet written but not loaded is in SQL only: its grabs answer ErrUnavailable
// until it is loaded, and its sender is refunded at expiry.
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
	if err := s.opts.Store.SendRedPacket(ctx, p, items, debit); err != nil {
		return Packet{}, fmt.Errorf("send red packet: %w", err)
	}
	if err := s.opts.Hot.Load(ctx, p.ID, items, nil, p.ExpireAt, p.Eligible); err != nil {
		return Packet{}, fmt.Errorf("red packet %s written but not loaded: %w", p.ID, err)
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
	now := s.opts.Now()
	item, again, err := s.opts.Hot.Grab(ctx, packetID, userID, now)
	if errors.Is(err, ErrUnavailable) {
		// Not in the hot state: an unknown id, or a packet to recover.
		if _, _, ferr := s.opts.Store.RedPacket(ctx, packetID); ferr != nil {
			return Grab{}, ferr
		}
		return Grab{}, err
	}
	if err != nil {
		return Grab{}, fmt.Errorf("grab red packet %s: %w", packetID, err)
	}
	g := Grab{PacketID: packetID, UserID: userID, Index: item.Index, Amount: item.Amount, Time: now}
	if !item.GrabTime.IsZero() {
		g.Time = item.GrabTime
	}
	if err := s.opts.Hot.AddPending(ctx, g); err != nil {
		return Grab{}, fmt.Errorf("grab of red packet %s taken but not yet noted, retry: %w", packetID, err)
	}
	if err := s.opts.Events.PublishGrab(ctx, g); err != nil {
		return Grab{}, fmt.Errorf("grab of red packet %s taken but not yet durable, retry: %w", packetID, err)
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
