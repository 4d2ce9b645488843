package redis

import (
	"context"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/redpacket"
)

// TestRedPacketPending checks the green channel's per-user list on every backend: grabs
// noted for a user come back with their amounts and times, and credited ones go away.
func TestRedPacketPending(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			client := b.client(t)
			prefix := testenv.Unique("bmtest_rpp_")
			h := RedPacketHot{RedPackets: NewRedPackets(client, prefix)}
			ctx := context.Background()
			t.Cleanup(func() { client.Del(context.Background(), h.pendingKey("ann"), h.pendingKey("ben")) })
			at := time.UnixMilli(time.Now().UnixMilli())
			grabs := []redpacket.Grab{
				{PacketID: "0012345678901234567890", UserID: "ann", Index: 3, Amount: 1_23, Time: at},
				{PacketID: "0112345678901234567891", UserID: "ann", Index: 0, Amount: 99_00, Time: at},
				{PacketID: "0012345678901234567890", UserID: "ben", Index: 4, Amount: 7, Time: at},
			}
			for _, g := range grabs {
				if err := h.AddPending(ctx, g); err != nil {
					t.Fatal(err)
				}
			}
			got, err := h.Pending(ctx, "ann")
			if err != nil || len(got) != 2 {
				t.Fatalf("pending of ann: %v %v", got, err)
			}
			for _, g := range got {
				want := grabs[0]
				if g.PacketID == grabs[1].PacketID {
					want = grabs[1]
				}
				if g.UserID != "ann" || g.Index != want.Index || g.Amount != want.Amount || !g.Time.Equal(want.Time) {
					t.Fatalf("pending %+v, want %+v", g, want)
				}
			}
			if err := h.DonePending(ctx, grabs[:1]); err != nil {
				t.Fatal(err)
			}
			if got, _ := h.Pending(ctx, "ann"); len(got) != 1 || got[0].PacketID != grabs[1].PacketID {
				t.Fatalf("after done: %v", got)
			}
			if got, _ := h.Pending(ctx, "nobody"); len(got) != 0 {
				t.Fatalf("pending of nobody: %v", got)
			}
		})
	}
}
