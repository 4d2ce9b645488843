package redis

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/redpacket"
)

// RedPacketHot is RedPackets in the red packet domain's terms: its items, grabs and errors.
type RedPacketHot struct{ *RedPackets }

var _ redpacket.Hot = RedPacketHot{}

// Load implements redpacket.Hot: items not yet grabbed go to the list, grabs to the map.
func (h RedPacketHot) Load(ctx context.Context, packetID string, items []redpacket.Item, grabs []redpacket.Grab, expireAt time.Time, eligible []string) error {
	left := make([]RPItem, 0, len(items))
	for _, it := range items {
		left = append(left, RPItem{Index: it.Index, Cents: int64(it.Amount)})
	}
	taken := make(map[string]RPItem, len(grabs))
	for _, g := range grabs {
		taken[g.UserID] = RPItem{Index: g.Index, Cents: int64(g.Amount)}
	}
	return h.RedPackets.Load(ctx, packetID, left, taken, expireAt, eligible)
}

// Grab implements redpacket.Hot.
func (h RedPacketHot) Grab(ctx context.Context, packetID, userID string, now time.Time) (redpacket.Item, bool, error) {
	res, err := h.RedPackets.Grab(ctx, packetID, userID, now)
	switch {
	case err == nil:
		return redpacket.Item{Index: res.Item.Index, Amount: money.Cents(res.Item.Cents), UserID: userID}, res.Again, nil
	case errors.Is(err, ErrRPEmpty):
		return redpacket.Item{}, false, fmt.Errorf("%w (%w)", redpacket.ErrEmpty, err)
	case errors.Is(err, ErrRPClosed):
		return redpacket.Item{}, false, fmt.Errorf("%w (%w)", redpacket.ErrClosed, err)
	case errors.Is(err, ErrRPNotEligible):
		return redpacket.Item{}, false, fmt.Errorf("%w (%w)", redpacket.ErrNotEligible, err)
	case errors.Is(err, ErrRPMissing):
		return redpacket.Item{}, false, fmt.Errorf("%w (%w)", redpacket.ErrUnavailable, err)
	}
	return redpacket.Item{}, false, err
}
