package reconcile

import (
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/redpacket"
)

// PacketGrabs is what a grab run's answers (or its items) granted of one packet.
type PacketGrabs struct {
	PacketID string      `json:"packetId"`
	Grabs    int64       `json:"grabs"`
	Amount   money.Cents `json:"amount"`
}

// Grabbed is an item of a packet that names its grabber.
type Grabbed struct {
	PacketID, UserID string
	Amount           money.Cents
}

// BusinessNo is the out_business_no of the grab's credit order.
func (g Grabbed) BusinessNo() string {
	return redpacket.Grab{PacketID: g.PacketID, UserID: g.UserID}.BusinessNo()
}

// GrabRun is what a grab bench sent and was answered: packets of items summing to
// amount each, the answers' grants of every packet (PerPacket), and the grants in total
// (Grabs, Granted, counting grants of other packets too) and grabs of unknown outcome.
type GrabRun struct {
	Packets   int
	Items     int
	Amount    money.Cents
	PerPacket []PacketGrabs
	Grabs     int64
	Granted   money.Cents
	Unknown   int64
}

// GrabAnswers checks that the answers granted no packet beyond its items and total, and
// every packet emptied its total.
func GrabAnswers(r GrabRun) Checks {
	over, unfinished := 0, 0
	var grants int64
	for _, p := range r.PerPacket {
		grants += p.Grabs
		switch {
		case p.Grabs > int64(r.Items) || p.Amount > r.Amount:
			over++
		case p.Grabs == int64(r.Items) && p.Amount != r.Amount:
			unfinished++
		}
	}
	var c Checks
	c.Add("grants", over == 0 && unfinished == 0 && grants == r.Grabs,
		"%d grabs granted %s of %d packets of %d items and %s; %d packets over, %d emptied without their total; %d grants of other packets",
		grants, r.Granted, r.Packets, r.Items, r.Amount, over, unfinished, r.Grabs-grants)
	return c
}

// GrabItems checks the run's packets' grabbed items against the answers, and that
// credited of them were credited (after seconds). Without unknown outcomes the items are
// exactly the grants; with them, they may be more, by grabs whose answer was lost.
func GrabItems(r GrabRun, items []Grabbed, credited int64, seconds float64) Checks {
	byPacket := map[string]PacketGrabs{}
	for _, it := range items {
		p := byPacket[it.PacketID]
		p.Grabs++
		p.Amount += it.Amount
		byPacket[it.PacketID] = p
	}
	mismatched := 0
	for _, p := range r.PerPacket {
		got := byPacket[p.PacketID]
		inexact := r.Unknown == 0 && got != (PacketGrabs{Grabs: p.Grabs, Amount: p.Amount})
		if inexact || got.Grabs < p.Grabs || got.Grabs > p.Grabs+r.Unknown {
			mismatched++
		}
	}
	var c Checks
	c.Add("items", mismatched == 0, "%d items grabbed for %d granted grabs and %d unknown outcomes; %d packets whose items differ from the answers",
		len(items), r.Grabs, r.Unknown, mismatched)
	c.Add("credits", credited == int64(len(items)), "%d of %d grabbed items credited after %.1fs", credited, len(items), seconds)
	return c
}

// GrabPackets checks that the red packet checks (RedPackets limited to the run's
// packets) found nothing in every one of the run's packets.
func GrabPackets(ds []Discrepancy, packets, items, want int) Checks {
	var c Checks
	c.Add("red packets", len(ds) == 0 && packets == want,
		"%d discrepancies in %d of %d packets, %d items", len(ds), packets, want, items)
	return c
}
