package reconcile

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/redpacket"
)

// Packet is a red_packet row with its red_packet_item rows, read from user database DB
// (from 0).
type Packet struct {
	ID       string
	SenderID string // empty for an operator packet
	DB       int
	Total    money.Cents
	Refund   money.Cents
	Count    int
	State    redpacket.State
	Created  time.Time
	Updated  time.Time
	Items    []Item
}

// Item is a red_packet_item row; UserID is empty until its grab is applied.
type Item struct {
	Index    int
	Amount   money.Cents
	UserID   string
	GrabTime time.Time
}

// Route returns the user database (from 0) and the table suffix holding userID's rows.
type Route func(userID string) (db int, table string)

// RedPackets checks red packets against their items, debits, grabs' credits and refunds.
// It is fed rows in the order they must be read: first the window's packets of every
// user database (AddWindow), then every credit order (AddOrders), then the packets named
// by the window's red packet credit orders that were not in the window (Named,
// AddNamed); Check then reports. Reading the packets before the credit orders means a
// grab applied in between shows as a credit whose item is not yet grabbed, which is why
// credits without their grab are only reported past the grace.
type RedPackets struct {
	w       Window
	route   Route
	only    map[string]bool
	packets map[string]*packet
	others  map[string][]CreditOrder // window's credit orders naming packets not loaded
}

// packet is a Packet with the credit orders whose business number names it.
type packet struct {
	Packet
	// inWindow is a packet created in the window, checked whole; one created before is
	// loaded only to explain the window's credit orders that name it.
	inWindow bool
	debits   []CreditOrder
	refunds  []CreditOrder
	grabs    map[string][]CreditOrder // by the user the business number names
}

// NewRedPackets returns an empty check over window w. A non-nil only limits it to those
// packet ids (a bench run's), and then credit orders naming other packets are ignored.
func NewRedPackets(w Window, route Route, only map[string]bool) *RedPackets {
	return &RedPackets{w: w, route: route, only: only, packets: map[string]*packet{}, others: map[string][]CreditOrder{}}
}

func (s *RedPackets) add(ps []Packet, inWindow bool) {
	for _, p := range ps {
		if _, dup := s.packets[p.ID]; dup { // ids name their database: a second one is not ours
			continue
		}
		if inWindow && s.only != nil && !s.only[p.ID] {
			continue
		}
		s.packets[p.ID] = &packet{Packet: p, inWindow: inWindow, grabs: map[string][]CreditOrder{}}
	}
}

// AddWindow adds the packets created in the window of one user database.
func (s *RedPackets) AddWindow(ps []Packet) { s.add(ps, true) }

// AddNamed adds packets created before the window that Named asked for.
func (s *RedPackets) AddNamed(ps []Packet) { s.add(ps, false) }

// Named returns the ids, sorted, of the packets the window's red packet credit orders
// name that were not added.
func (s *RedPackets) Named() []string { return slices.Sorted(maps.Keys(s.others)) }

// Kinds of red packet credit orders, by business number.
const (
	packetDebit  = iota // the bare packet id
	packetRefund        // redpacket.RefundBusinessNo
	packetGrab          // <packetId>_<userId>
)

// packetBizNo reads a red packet credit order's business number: the packet it names, the
// grabber for a grab's credit, and which kind of order it is.
func packetBizNo(no string) (packetID, user string, kind int) {
	if rest, ok := strings.CutPrefix(no, redpacket.RefundBusinessNo("")); ok {
		return rest, "", packetRefund
	}
	if id, user, ok := strings.Cut(no, "_"); ok {
		return id, user, packetGrab
	}
	return no, "", packetDebit
}

// attach files o under what its business number says it is: the debit, the refund or a
// grab's credit.
func (p *packet) attach(o CreditOrder) {
	switch _, user, kind := packetBizNo(o.BusinessNo); kind {
	case packetDebit:
		p.debits = append(p.debits, o)
	case packetRefund:
		p.refunds = append(p.refunds, o)
	default:
		p.grabs[user] = append(p.grabs[user], o)
	}
}

// AddOrders files credit orders whose business number names an added packet under it;
// those in the window, past the grace, that look like red packet orders (by trade name,
// or a refund's business number) but name another packet are kept for Named.
func (s *RedPackets) AddOrders(orders []CreditOrder) {
	for _, o := range orders {
		id, _, kind := packetBizNo(o.BusinessNo)
		if p := s.packets[id]; p != nil {
			p.attach(o)
			continue
		}
		looksRedPacket := o.Name == redpacket.NameGrab || o.Name == redpacket.NameSend || o.Name == redpacket.NameRefund ||
			(kind == packetRefund && id != "" && strings.Trim(id, "0123456789") == "")
		if s.only == nil && looksRedPacket && !o.Created.Before(s.w.Since) && s.w.isSettled(o.Created) {
			s.others[id] = append(s.others[id], o)
		}
	}
}

// describeOrders names the orders for a detail, or "none".
func describeOrders(orders []CreditOrder) string {
	if len(orders) == 0 {
		return "none"
	}
	s := make([]string, len(orders))
	for i, o := range orders {
		s[i] = o.String()
	}
	return strings.Join(s, "; ")
}

// String names the order and where it lies, for a detail.
func (o CreditOrder) String() string {
	return fmt.Sprintf("%s %s %s of user %s in database %02d table %s", o.Type, o.Name, o.Amount, o.UserID, o.DB+1, o.Table)
}

// Check reports what the rows show and how many packets and items of the window it checked.
func (s *RedPackets) Check() (ds []Discrepancy, packets, items int) {
	var f found
	for _, id := range s.Named() {
		p := s.packets[id]
		for _, o := range s.others[id] {
			if p == nil {
				f.report(KindRedPacketCreditOrphan, o.UserID, o.BusinessNo, "credit order %s (%s) names red packet %s, which no user database holds",
					o.OrderID, o, id)
				continue
			}
			p.attach(o)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(s.packets)) {
		p := s.packets[id]
		s.check(&f, p)
		if p.inWindow {
			packets++
			items += len(p.Items)
		}
	}
	return f, packets, items
}

// check reports the credit orders naming p that p does not explain and, for a packet in
// the window, checks its items, its grabs' credits, its debit and its state.
func (s *RedPackets) check(f *found, p *packet) {
	s.explain(f, p)
	if !p.inWindow {
		return
	}
	var sum, grabbed money.Cents
	for _, it := range p.Items {
		sum += it.Amount
		if it.UserID != "" {
			grabbed += it.Amount
			s.grabCredit(f, p, it)
		}
	}
	if len(p.Items) != p.Count || sum != p.Total {
		f.report(KindRedPacketSplit, p.SenderID, p.ID, "%d items summing to %s; the packet is %d items of %s", len(p.Items), sum, p.Count, p.Total)
	}
	if grabbed > p.Total {
		f.report(KindRedPacketOvergrabbed, p.SenderID, p.ID, "grabbed items sum to %s of a %s packet", grabbed, p.Total)
	}
	s.debit(f, p)
	s.state(f, p, grabbed)
}

// explain reports, past the grace, the credit orders naming p that p does not account
// for: grab credits of users no item names, debits of an operator packet, and refunds of
// a packet that states none.
func (s *RedPackets) explain(f *found, p *packet) {
	orphan := func(o CreditOrder, format string, args ...any) {
		if s.w.isSettled(o.Created) {
			f.report(KindRedPacketCreditOrphan, o.UserID, o.BusinessNo, "credit order %s (%s): %s", o.OrderID, o, fmt.Sprintf(format, args...))
		}
	}
	grabbers := map[string]bool{}
	for _, it := range p.Items {
		if it.UserID != "" {
			grabbers[it.UserID] = true
		}
	}
	for user, orders := range p.grabs {
		if !grabbers[user] {
			for _, o := range orders {
				orphan(o, "no item of red packet %s names user %s", p.ID, user)
			}
		}
	}
	if p.SenderID == "" {
		for _, o := range p.debits {
			orphan(o, "red packet %s is an operator packet, which debits nobody", p.ID)
		}
	}
	if p.SenderID == "" || p.State != redpacket.StateRefunded || p.Refund <= 0 {
		for _, o := range p.refunds {
			orphan(o, "red packet %s is %s with refund_amount %s", p.ID, p.State, p.Refund)
		}
	}
}

// grabCredit checks a grabbed item's credit: one forward order of the item's amount in
// the grabber's table, or none yet for a grab within the grace.
func (s *RedPackets) grabCredit(f *found, p *packet, it Item) {
	key := redpacket.Grab{PacketID: p.ID, UserID: it.UserID}.BusinessNo()
	orders := p.grabs[it.UserID]
	if len(orders) == 0 {
		if s.w.isSettled(it.GrabTime) {
			f.report(KindRedPacketGrabUncredited, it.UserID, key, "item %d (%s) of red packet %s grabbed at %s has no credit order",
				it.Index, it.Amount, p.ID, it.GrabTime.Format(time.DateTime))
		}
		return
	}
	if !s.isOrder(orders, it.UserID, credit.Forward, it.Amount) {
		db, table := s.route(it.UserID)
		f.report(KindRedPacketGrabCredit, it.UserID, key, "item %d of red packet %s is %s; want one %s order of it in database %02d table %s, have %s",
			it.Index, p.ID, it.Amount, credit.Forward, db+1, table, describeOrders(orders))
	}
}

// isOrder reports whether orders is exactly one order of userID, in userID's table, of
// the trade type and amount.
func (s *RedPackets) isOrder(orders []CreditOrder, userID string, tradeType credit.TradeType, amount money.Cents) bool {
	if len(orders) != 1 {
		return false
	}
	o := orders[0]
	db, table := s.route(userID)
	return o.UserID == userID && o.Type == tradeType && o.Amount == amount && o.DB == db && o.Table == table
}

// debit checks that a user's packet was paid for: one reverse order of the total in the
// sender's table, written with the packet.
func (s *RedPackets) debit(f *found, p *packet) {
	if p.SenderID == "" {
		return
	}
	switch {
	case len(p.debits) == 0:
		f.report(KindRedPacketDebitMissing, p.SenderID, p.ID, "red packet of %s has no %s credit order %s of its sender", p.Total, credit.Reverse, p.ID)
	case !s.isOrder(p.debits, p.SenderID, credit.Reverse, p.Total):
		f.report(KindRedPacketDebitAmount, p.SenderID, p.ID, "red packet of %s; want one %s order of it by the sender, have %s",
			p.Total, credit.Reverse, describeOrders(p.debits))
	}
}

// state checks where a packet's money went: an open packet has refunded nothing; a closed
// user's packet was grabbed whole; a refunded one was grabbed and refunded to its total,
// the refund credited to its sender. Sums of grabbed items are only expected to add up
// once the packet's last change is past the grace, as grabs taken before it closed may
// still be applied.
func (s *RedPackets) state(f *found, p *packet, grabbed money.Cents) {
	settled := s.w.isSettled(p.Updated)
	switch p.State {
	case redpacket.StateOpen:
		if p.Refund != 0 {
			f.report(KindRedPacketRefundAmount, p.SenderID, p.ID, "open red packet has refund_amount %s", p.Refund)
		}
	case redpacket.StateClosed:
		if p.SenderID == "" { // an operator packet closes with whatever is left
			return
		}
		if p.Refund != 0 {
			f.report(KindRedPacketClosedLeftover, p.SenderID, p.ID, "closed red packet has refund_amount %s; a closed packet refunds nothing", p.Refund)
		} else if grabbed != p.Total && settled {
			f.report(KindRedPacketClosedLeftover, p.SenderID, p.ID, "closed with %s grabbed of %s: %s neither grabbed nor refunded",
				grabbed, p.Total, p.Total-grabbed)
		}
	case redpacket.StateRefunded:
		if p.SenderID == "" {
			f.report(KindRedPacketRefundAmount, p.SenderID, p.ID, "operator red packet refunded %s, but it has no sender", p.Refund)
			return
		}
		if p.Refund < 0 || (grabbed+p.Refund != p.Total && settled) {
			f.report(KindRedPacketRefundAmount, p.SenderID, p.ID, "refunded %s with %s grabbed of %s", p.Refund, grabbed, p.Total)
		}
		switch {
		case p.Refund <= 0:
			// A refund of 0.00 has no order; explain reports any.
		case len(p.refunds) == 0:
			if settled {
				f.report(KindRedPacketRefundMissing, p.SenderID, redpacket.RefundBusinessNo(p.ID), "refunded %s at %s but the sender has no %s credit order",
					p.Refund, p.Updated.Format(time.DateTime), credit.Forward)
			}
		case !s.isOrder(p.refunds, p.SenderID, credit.Forward, p.Refund):
			f.report(KindRedPacketRefundAmount, p.SenderID, redpacket.RefundBusinessNo(p.ID), "refunded %s; want one %s order of it to the sender, have %s",
				p.Refund, credit.Forward, describeOrders(p.refunds))
		}
	default:
		f.report(KindRedPacketState, p.SenderID, p.ID, "packet_state %q", p.State)
	}
}
