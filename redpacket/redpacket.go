package redpacket

import (
	"errors"
	"time"

	"github.com/bigmarket/bigmarket/money"
)

// Outcomes of sending and grabbing, mapped to codes by httpapi.
var (
	// ErrNotFound is an unknown packet id.
	ErrNotFound = errors.New("red packet not found")
	// ErrEmpty is a packet with no item left (ERR_RP_001).
	ErrEmpty = errors.New("red packet empty")
	// ErrClosed is a packet past its expiry or closed (ERR_RP_002).
	ErrClosed = errors.New("red packet expired or closed")
	// ErrNotEligible is a user outside an operator packet's eligible list (ERR_RP_003).
	ErrNotEligible = errors.New("user not eligible for this red packet")
	// ErrAlreadyGrabbed is a user's second grab; the result carries the first one's item.
	ErrAlreadyGrabbed = errors.New("red packet already grabbed by this user")
	// ErrConflict is a grab the recorded items contradict (its item is someone else's, or
	// the packet has no such item): it can never apply.
	ErrConflict = errors.New("red packet grab conflicts with the recorded items")
	// ErrUnavailable is a packet whose hot state is lost or not loaded: retry later.
	ErrUnavailable = errors.New("red packet temporarily unavailable")
	// ErrUnconfirmed is a grab the hot state took but could not confirm durable there (its
	// replicas did not acknowledge it: the master may be cut off, and the grab lost when it
	// rejoins). It comes wrapped with ErrUnavailable (retry) but asks for no rebuild: the
	// hot state is whole where it stands. The grab is not published; a retry that finds it
	// again publishes it once it is confirmed, and a packet's refund credits it if it stays.
	ErrUnconfirmed = errors.New("red packet grab not confirmed by the hot state's replicas")
)

// State is red_packet.packet_state.
type State string

// Packet states.
const (
	StateOpen State = "open"
	// StateClosed is a packet past its expiry with nothing to give back: fully grabbed,
	// or an operator campaign.
	StateClosed State = "closed"
	// StateRefunded is a user's packet whose remainder went back to its sender.
	StateRefunded State = "refunded"
)

// Cursor is where a sweep of expired packets stands: a user database and the last row id
// read in it.
type Cursor struct {
	DB  int
	Row int64
}

// Packet is a red packet: a total split into Count items, grabbable until ExpireAt.
type Packet struct {
	ID       string
	SenderID string // empty for an operator campaign
	Total    money.Cents
	Count    int
	Mode     Mode
	Greeting string
	// Eligible restricts an operator packet to these users; empty means anyone.
	Eligible []string
	State    State
	Refund   money.Cents
	ExpireAt time.Time
	Created  time.Time
}

// Item is one pre-split share of a packet; UserID and GrabTime are set once its grab is
// applied.
type Item struct {
	Index    int
	Amount   money.Cents
	UserID   string
	GrabTime time.Time
}

// Grab is one user's item of a packet: the durable event a grab publishes and the credit
// it leads to.
type Grab struct {
	PacketID string      `json:"packetId"`
	UserID   string      `json:"userId"`
	Index    int         `json:"index"`
	Amount   money.Cents `json:"amount"`
	Time     time.Time   `json:"time"`
}

// MsgID is the grab's idempotency key: one grab per user and packet.
func (g Grab) MsgID() string { return g.PacketID + ":" + g.UserID }

// BusinessNo is the out_business_no of the grabber's credit order.
func (g Grab) BusinessNo() string { return g.PacketID + "_" + g.UserID }

// RefundBusinessNo is the out_business_no of a packet's refund to its sender. It starts
// with a letter, so no grab's number (packet id, "_", user id) can ever equal it.
func RefundBusinessNo(packetID string) string { return "refund_" + packetID }

// TopicGrab is the topic of the grab events.
const TopicGrab = "red_packet_grab"

// Credit trade names of red packets.
const (
	NameSend   = "发红包"
	NameGrab   = "抢红包"
	NameRefund = "红包退款"
)
