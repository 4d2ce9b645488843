package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/bigmarket/bigmarket/ident"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/redpacket"
)

// redPackets is what the red packet endpoints need of the red packet service.
type redPackets interface {
	Send(ctx context.Context, req redpacket.SendRequest) (redpacket.Packet, error)
	Grab(ctx context.Context, userID, packetID string) (redpacket.Grab, error)
	Settle(ctx context.Context, userID string) error
	Detail(ctx context.Context, packetID string) (redpacket.Detail, error)
}

// yuan is an amount as sent, a JSON number or string, parsed by the handler so that a bad
// one is a 0002 that names its field.
type yuan string

// UnmarshalJSON keeps the text of a number or string; null leaves it empty.
func (y *yuan) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		return nil
	}
	*y = yuan(strings.Trim(s, `"`))
	return nil
}

// maxExpireMinutes bounds expireMinutes before it becomes a duration (a year; the service
// applies its own, smaller limit), so that no value can overflow into a short one.
const maxExpireMinutes = 366 * 24 * 60

// sendBody is the body of both send endpoints; UserID is absent from the operator's.
type sendBody struct {
	UserID        string   `json:"userId"`
	TotalAmount   yuan     `json:"totalAmount"`
	Count         int      `json:"count"`
	Mode          string   `json:"mode"`
	Greeting      string   `json:"greeting"`
	ExpireMinutes int      `json:"expireMinutes"`
	EligibleUsers []string `json:"eligibleUsers"`
}

// request checks the body's amounts and turns it into a SendRequest; the service checks
// the limits.
func (b sendBody) request() (redpacket.SendRequest, error) {
	total, err := money.Parse(string(b.TotalAmount))
	if err != nil || total <= 0 {
		return redpacket.SendRequest{}, badParam(http.StatusOK, "totalAmount must be a positive amount in yuan with at most two decimals")
	}
	if b.ExpireMinutes < 0 || b.ExpireMinutes > maxExpireMinutes {
		return redpacket.SendRequest{}, badParam(http.StatusOK, "expireMinutes must be between 0 (the default) and %d", maxExpireMinutes)
	}
	mode := redpacket.Mode(b.Mode)
	if mode == "" {
		mode = redpacket.ModeRandom
	}
	return redpacket.SendRequest{
		SenderID: b.UserID, Total: total, Count: b.Count, Mode: mode, Greeting: b.Greeting,
		Expiry: time.Duration(b.ExpireMinutes) * time.Minute, Eligible: b.EligibleUsers,
	}, nil
}

type sendResponse struct {
	PacketID string `json:"packetId"`
}

// sendRedPacket sends a user's packet, debiting the sender's credit.
func (s *Server) sendRedPacket(r *http.Request) (any, error) { return s.send(r, false) }

// sendCampaignPacket sends an operator packet: no sender, no debit.
func (s *Server) sendCampaignPacket(r *http.Request) (any, error) { return s.send(r, true) }

// send serves both send endpoints: a user's packet names its sender (the token's under a
// _by_token route) and no eligible users; an operator's names no sender.
func (s *Server) send(r *http.Request, operator bool) (any, error) {
	var body sendBody
	if err := decodeJSON(r, &body); err != nil {
		return nil, err
	}
	if operator {
		if body.UserID != "" {
			return nil, badParam(http.StatusOK, "an operator packet has no userId")
		}
	} else {
		if u, ok := tokenUser(r.Context()); ok {
			body.UserID = u
		}
		if err := checkUserID(body.UserID); err != nil {
			return nil, err
		}
		if len(body.EligibleUsers) > 0 {
			return nil, badParam(http.StatusOK, "eligibleUsers is for operator packets only")
		}
	}
	for i, u := range body.EligibleUsers {
		if err := checkID(fmt.Sprintf("eligibleUsers[%d]", i), u, ident.MaxUserID); err != nil {
			return nil, err
		}
	}
	req, err := body.request()
	if err != nil {
		return nil, err
	}
	p, err := s.opts.RedPackets.Send(r.Context(), req)
	if err != nil {
		return nil, err
	}
	return sendResponse{PacketID: p.ID}, nil
}

type grabResponse struct {
	PacketID string      `json:"packetId"`
	Amount   money.Cents `json:"amount"`
}

// grabRedPacket takes an item of the packet for the user; a second grab answers 0003 with
// the first grab's amount.
func (s *Server) grabRedPacket(r *http.Request) (any, error) {
	var body struct {
		UserID   string `json:"userId"`
		PacketID string `json:"packetId"`
	}
	if err := decodeJSON(r, &body); err != nil {
		return nil, err
	}
	if u, ok := tokenUser(r.Context()); ok {
		body.UserID = u
	}
	if err := checkUserID(body.UserID); err != nil {
		return nil, err
	}
	if err := checkID("packetId", body.PacketID, ident.MaxPacketID); err != nil {
		return nil, err
	}
	g, err := s.opts.RedPackets.Grab(r.Context(), body.UserID, body.PacketID)
	if errors.Is(err, redpacket.ErrAlreadyGrabbed) {
		return nil, &apiError{status: http.StatusOK, code: CodeDuplicate, data: grabResponse{PacketID: g.PacketID, Amount: g.Amount}}
	}
	if err != nil {
		return nil, err
	}
	return grabResponse{PacketID: g.PacketID, Amount: g.Amount}, nil
}

type walletResponse struct {
	UserID          string      `json:"userId"`
	TotalAmount     money.Cents `json:"totalAmount"`
	AvailableAmount money.Cents `json:"availableAmount"`
}

// wallet answers the user's credit account after the green channel.
func (s *Server) wallet(r *http.Request) (any, error) {
	userID, err := formUserID(r)
	if err != nil {
		return nil, err
	}
	a, err := s.account(r, userID)
	if err != nil {
		return nil, err
	}
	return walletResponse{UserID: userID, TotalAmount: a.Total, AvailableAmount: a.Available}, nil
}

type grabView struct {
	UserID   string      `json:"userId"`
	Amount   money.Cents `json:"amount"`
	GrabTime *int64      `json:"grabTime"` // unix ms; null only for a grab whose time is not known
}

type detailResponse struct {
	PacketID        string      `json:"packetId"`
	SenderID        string      `json:"senderId"`
	Greeting        string      `json:"greeting"`
	Mode            string      `json:"mode"`
	TotalAmount     money.Cents `json:"totalAmount"`
	Count           int         `json:"count"`
	GrabbedCount    int         `json:"grabbedCount"`
	GrabbedAmount   money.Cents `json:"grabbedAmount"`
	RemainingCount  int         `json:"remainingCount"`
	RemainingAmount money.Cents `json:"remainingAmount"`
	RefundAmount    money.Cents `json:"refundAmount"`
	State           string      `json:"state"` // open, expired, closed, refunded
	ExpireTime      int64       `json:"expireTime"`
	Grabs           []grabView  `json:"grabs"`
	Luckiest        *grabView   `json:"luckiest"`
}

// redPacketDetail shows a packet: totals, what is left, its state, every grab and the
// luckiest once nothing is left to grab.
func (s *Server) redPacketDetail(r *http.Request) (any, error) {
	id := r.URL.Query().Get("packetId")
	if err := checkID("packetId", id, ident.MaxPacketID); err != nil {
		return nil, err
	}
	d, err := s.opts.RedPackets.Detail(r.Context(), id)
	if err != nil {
		return nil, err
	}
	view := func(g redpacket.Grab) grabView {
		v := grabView{UserID: g.UserID, Amount: g.Amount}
		if !g.Time.IsZero() {
			ms := g.Time.UnixMilli()
			v.GrabTime = &ms
		}
		return v
	}
	p := d.Packet
	out := detailResponse{
		PacketID: p.ID, SenderID: p.SenderID, Greeting: p.Greeting, Mode: string(p.Mode), TotalAmount: p.Total,
		Count: p.Count, GrabbedCount: len(d.Grabs), GrabbedAmount: d.GrabbedAmount, RemainingCount: d.RemainingCount,
		RemainingAmount: d.RemainingAmount, RefundAmount: p.Refund, State: string(p.State), ExpireTime: p.ExpireAt.UnixMilli(),
		Grabs: make([]grabView, 0, len(d.Grabs)),
	}
	if d.Expired {
		out.State = "expired"
	}
	for _, g := range d.Grabs {
		out.Grabs = append(out.Grabs, view(g))
	}
	if d.Luckiest != nil {
		l := view(*d.Luckiest)
		out.Luckiest = &l
	}
	return out, nil
}
