package reconcile

import "testing"

// grabRun is two packets of 2 items and 3.00; the answers granted all of the first and
// one item (1.00) of the second.
func grabRun() GrabRun {
	return GrabRun{Packets: 2, Items: 2, Amount: 300, Grabs: 3, Granted: 400,
		PerPacket: []PacketGrabs{{PacketID: "p1", Grabs: 2, Amount: 300}, {PacketID: "p2", Grabs: 1, Amount: 100}}}
}

func grabbed() []Grabbed {
	return []Grabbed{{"p1", "a", 100}, {"p1", "b", 200}, {"p2", "a", 100}}
}

func TestGrabAnswers(t *testing.T) {
	wantFailed(t, "within the packets", GrabAnswers(grabRun()))
	over := grabRun()
	over.PerPacket[1] = PacketGrabs{PacketID: "p2", Grabs: 3, Amount: 300}
	over.Grabs = 5
	wantFailed(t, "a packet granted beyond its items", GrabAnswers(over), "grants")
	short := grabRun()
	short.PerPacket[0].Amount = 200
	wantFailed(t, "a packet emptied without its total", GrabAnswers(short), "grants")
	other := grabRun()
	other.Grabs = 4
	wantFailed(t, "a grant of another packet", GrabAnswers(other), "grants")
}

func TestGrabItems(t *testing.T) {
	wantFailed(t, "items match, all credited", GrabItems(grabRun(), grabbed(), 3, 1))
	wantFailed(t, "one uncredited", GrabItems(grabRun(), grabbed(), 2, 1), "credits")
	wantFailed(t, "an item without its answer", GrabItems(grabRun(), append(grabbed(), Grabbed{"p2", "c", 200}), 4, 1), "items")
	lost := grabRun()
	lost.Unknown = 1
	wantFailed(t, "an item of a lost answer", GrabItems(lost, append(grabbed(), Grabbed{"p2", "c", 200}), 4, 1))
	wantFailed(t, "an answer without its item", GrabItems(lost, grabbed()[:2], 2, 1), "items")
}

func TestGrabPackets(t *testing.T) {
	wantFailed(t, "clean", GrabPackets(nil, 2, 4, 2))
	wantFailed(t, "a packet not found", GrabPackets(nil, 1, 2, 2), "red packets")
	wantFailed(t, "a discrepancy", GrabPackets([]Discrepancy{{Kind: KindRedPacketSplit}}, 2, 4, 2), "red packets")
}

func TestGrabbedBusinessNo(t *testing.T) {
	if no := (Grabbed{PacketID: "p1", UserID: "u1"}).BusinessNo(); no != "p1_u1" {
		t.Errorf("BusinessNo = %q, want p1_u1", no)
	}
}
