package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

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
	if err != nil {
		return redpacket.Item{}, false, hotError(err)
	}
	return redpacket.Item{Index: res.Item.Index, Amount: money.Cents(res.Item.Cents), UserID: userID}, res.Again, nil
}

// pendingKey is the user's grabs not yet known to be credited: packetId →
// "index:cents:grabUnixMs". It lives under the user's hash tag, apart from the packets.
func (h RedPacketHot) pendingKey(userID string) string {
	return h.prefix + "rp:pending:{" + userID + "}"
}

// pendingTTL bounds how long a pending entry outlives its credit; the consumer removes it
// once the grab is applied, the TTL only cleans up after a lost removal.
const pendingTTL = 8 * 24 * time.Hour

// addPendingScript sets a pending grab and renews the key's TTL in one command.
var addPendingScript = goredis.NewScript(`
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

// AddPending implements redpacket.Hot: it notes g under its user, for the green channel.
func (h RedPacketHot) AddPending(ctx context.Context, g redpacket.Grab) error {
	v := formatRPItem(RPItem{Index: g.Index, Cents: int64(g.Amount)}) + ":" + strconv.FormatInt(g.Time.UnixMilli(), 10)
	err := addPendingScript.Run(ctx, h.client, []string{h.pendingKey(g.UserID)}, g.PacketID, v, pendingTTL.Milliseconds()).Err()
	if err != nil {
		return fmt.Errorf("note pending grab %s: %w", g.MsgID(), err)
	}
	return nil
}

// Pending implements redpacket.Hot: the user's grabs not yet known to be credited.
func (h RedPacketHot) Pending(ctx context.Context, userID string) ([]redpacket.Grab, error) {
	m, err := h.client.HGetAll(ctx, h.pendingKey(userID)).Result()
	if err != nil {
		return nil, fmt.Errorf("pending grabs of %s: %w", userID, err)
	}
	grabs := make([]redpacket.Grab, 0, len(m))
	for packetID, v := range m {
		cut := strings.LastIndexByte(v, ':')
		if cut < 0 {
			return nil, fmt.Errorf("pending grab %s of %s: bad value %q", packetID, userID, v)
		}
		at, err := strconv.ParseInt(v[cut+1:], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("pending grab %s of %s: bad value %q", packetID, userID, v)
		}
		it, err := parseRPItem(v[:cut])
		if err != nil {
			return nil, fmt.Errorf("pending grab %s of %s: %w", packetID, userID, err)
		}
		grabs = append(grabs, redpacket.Grab{PacketID: packetID, UserID: userID, Index: it.Index,
			Amount: money.Cents(it.Cents), Time: time.UnixMilli(at)})
	}
	return grabs, nil
}

// DonePending implements redpacket.Hot: it forgets grabs that are credited, one
// pipelined round trip for all their users.
func (h RedPacketHot) DonePending(ctx context.Context, grabs []redpacket.Grab) error {
	if len(grabs) == 0 {
		return nil
	}
	_, err := h.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, g := range grabs {
			p.HDel(ctx, h.pendingKey(g.UserID), g.PacketID)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("forget %d credited grabs: %w", len(grabs), err)
	}
	return nil
}

// Close implements redpacket.Hot.
func (h RedPacketHot) Close(ctx context.Context, packetID string) error {
	if _, _, err := h.RedPackets.Close(ctx, packetID); err != nil {
		return hotError(err)
	}
	return nil
}

// Grabs implements redpacket.Hot; the hot state keeps no grab times.
func (h RedPacketHot) Grabs(ctx context.Context, packetID string) ([]redpacket.Grab, error) {
	m, err := h.RedPackets.Grabs(ctx, packetID)
	if err != nil {
		return nil, hotError(err)
	}
	grabs := make([]redpacket.Grab, 0, len(m))
	for user, it := range m {
		grabs = append(grabs, redpacket.Grab{PacketID: packetID, UserID: user, Index: it.Index, Amount: money.Cents(it.Cents)})
	}
	return grabs, nil
}

// hotError words the hot state's errors in the domain's sentinels.
func hotError(err error) error {
	for _, m := range []struct{ from, to error }{
		{ErrRPEmpty, redpacket.ErrEmpty}, {ErrRPClosed, redpacket.ErrClosed},
		{ErrRPNotEligible, redpacket.ErrNotEligible}, {ErrRPMissing, redpacket.ErrUnavailable},
	} {
		if errors.Is(err, m.from) {
			return fmt.Errorf("%w (%w)", m.to, err)
		}
	}
	return err
}
