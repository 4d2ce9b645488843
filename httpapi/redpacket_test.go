package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/redpacket"
)

// fakeRedPackets records the requests that reach it; its Fn fields decide the answers.
type fakeRedPackets struct {
	mu       sync.Mutex
	sends    []redpacket.SendRequest
	settled  []string
	GrabFn   func(userID, packetID string) (redpacket.Grab, error)
	DetailFn func(packetID string) (redpacket.Detail, error)
}

func (f *fakeRedPackets) Send(_ context.Context, req redpacket.SendRequest) (redpacket.Packet, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sends = append(f.sends, req)
	return redpacket.Packet{ID: "0012345678901234567890"}, nil
}

func (f *fakeRedPackets) Grab(_ context.Context, userID, packetID string) (redpacket.Grab, error) {
	return f.GrabFn(userID, packetID)
}

func (f *fakeRedPackets) Settle(_ context.Context, userID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.settled = append(f.settled, userID)
	return nil
}

func (f *fakeRedPackets) Detail(_ context.Context, packetID string) (redpacket.Detail, error) {
	return f.DetailFn(packetID)
}

func redPacketServer(t *testing.T) (http.Handler, *fakeRedPackets) {
	t.Helper()
	rp := &fakeRedPackets{
		GrabFn: func(userID, packetID string) (redpacket.Grab, error) {
			g := redpacket.Grab{PacketID: packetID, UserID: userID, Amount: 1_23}
			switch userID {
			case "again":
				return g, fmt.Errorf("second grab: %w", redpacket.ErrAlreadyGrabbed)
			case "late":
				return redpacket.Grab{}, redpacket.ErrEmpty
			case "expired":
				return redpacket.Grab{}, redpacket.ErrClosed
			case "outsider":
				return redpacket.Grab{}, redpacket.ErrNotEligible
			case "during-recovery":
				return redpacket.Grab{}, redpacket.ErrUnavailable
			case "unknown":
				return redpacket.Grab{}, redpacket.ErrNotFound
			}
			return g, nil
		},
		DetailFn: func(packetID string) (redpacket.Detail, error) {
			if packetID != "0012345678901234567890" {
				return redpacket.Detail{}, redpacket.ErrNotFound
			}
			at := time.UnixMilli(1_700_000_000_000)
			g := redpacket.Grab{UserID: "ann", Amount: 60, Time: at}
			return redpacket.Detail{
				Packet:  redpacket.Packet{ID: packetID, Total: 1_00, Count: 2, Mode: redpacket.ModeRandom, State: redpacket.StateOpen, ExpireAt: at},
				Grabs:   []redpacket.Grab{g, {UserID: "ben", Amount: 40}},
				Expired: true, GrabbedAmount: 1_00, Luckiest: &g,
			}, nil
		},
	}
	cf := &fakeCredits{AccountFn: func(userID string) (credit.Account, error) {
		return credit.Account{UserID: userID, Total: 5_00, Available: 3_21}, nil
	}}
	return New(Options{Strategies: newFake(), RedPackets: rp, Credits: cf, PlainUserEndpoints: true, AdminToken: "rp-admin-token-123"}), rp
}

func TestRedPacketSendAndGrab(t *testing.T) {
	t.Parallel()
	h, rp := redPacketServer(t)
	post := func(path, auth, body string) reply {
		return doAdmin(t, h, "POST", path, auth, body)
	}
	if r := post("/api/v1/redpacket/send", "", `{"userId":"u1","totalAmount":"10.50","count":3,"mode":"fixed","greeting":"hi","expireMinutes":90}`); r.Code != "0000" ||
		string(r.Data) != `{"packetId":"0012345678901234567890"}` {
		t.Fatalf("send: %+v", r)
	}
	want := redpacket.SendRequest{SenderID: "u1", Total: 10_50, Count: 3, Mode: redpacket.ModeFixed, Greeting: "hi", Expiry: 90 * time.Minute}
	if got := rp.sends[0]; got.SenderID != want.SenderID || got.Total != want.Total || got.Count != 3 || got.Mode != want.Mode || got.Expiry != want.Expiry || got.Greeting != "hi" {
		t.Fatalf("send request %+v, want %+v", got, want)
	}
	if r := post("/api/v1/redpacket/send", "", `{"userId":"u1","totalAmount":1,"count":1}`); r.Code != "0000" || rp.sends[1].Mode != redpacket.ModeRandom || rp.sends[1].Total != 1_00 {
		t.Fatalf("send with a number amount and no mode: %+v %+v", r, rp.sends[1])
	}
	for _, bad := range []struct{ path, auth, body, says string }{
		{"/api/v1/redpacket/send", "", `{"userId":"u1","totalAmount":"1.005","count":1}`, "totalAmount"},
		{"/api/v1/redpacket/send", "", `{"userId":"u1","totalAmount":"-1","count":1}`, "totalAmount"},
		{"/api/v1/redpacket/send", "", `{"userId":"u1","count":1}`, "totalAmount"},
		{"/api/v1/redpacket/send", "", `{"userId":"u1","totalAmount":"1","count":1,"expireMinutes":-5}`, "expireMinutes"},
		{"/api/v1/redpacket/send", "", `{"userId":"u1","totalAmount":"1","count":1,"eligibleUsers":["x"]}`, "operator"},
		{"/api/v1/redpacket/send", "", `{"totalAmount":"1","count":1}`, "userId"},
		{"/api/v1/redpacket/send", "", `{"userId":"u1","totalAmount":"1","count":"two"}`, "count"},
		{"/api/v1/admin/redpacket/send", "Bearer rp-admin-token-123", `{"userId":"u1","totalAmount":"1","count":1}`, "userId"},
		{"/api/v1/redpacket/grab", "", `{"userId":"u1"}`, "packetId"},
		{"/api/v1/redpacket/grab", "", `{"packetId":"1"}`, "userId"},
	} {
		if r := post(bad.path, bad.auth, bad.body); r.Code != "0002" || !strings.Contains(r.Info, bad.says) {
			t.Errorf("%s %s: %s %s, want 0002 about %s", bad.path, bad.body, r.Code, r.Info, bad.says)
		}
	}
	if len(rp.sends) != 2 {
		t.Fatalf("refused sends reached the service: %d", len(rp.sends))
	}
	if r := post("/api/v1/admin/redpacket/send", "", `{"totalAmount":"1","count":1}`); r.status != http.StatusUnauthorized || r.Code != "0003" {
		t.Fatalf("operator send without the admin token: %d %s", r.status, r.Code)
	}
	if r := post("/api/v1/admin/redpacket/send", "Bearer rp-admin-token-123", `{"totalAmount":"100","count":10,"eligibleUsers":["a","b"]}`); r.Code != "0000" ||
		rp.sends[2].SenderID != "" || len(rp.sends[2].Eligible) != 2 {
		t.Fatalf("operator send: %+v %+v", r, rp.sends[2])
	}
	for user, code := range map[string]string{
		"u1": "0000", "again": "0003", "late": "ERR_RP_001", "expired": "ERR_RP_002", "outsider": "ERR_RP_003",
		"during-recovery": "ERR_RP_004", "unknown": "0002",
	} {
		r := post("/api/v1/redpacket/grab", "", `{"userId":"`+user+`","packetId":"0012345678901234567890"}`)
		if r.Code != code {
			t.Errorf("grab by %s: %s %s, want %s", user, r.Code, r.Info, code)
		}
		if (code == "0000" || code == "0003") && string(r.Data) != `{"packetId":"0012345678901234567890","amount":1.23}` {
			t.Errorf("grab by %s: data %s, want the amount", user, r.Data)
		}
	}
}

func TestRedPacketWalletAndDetail(t *testing.T) {
	t.Parallel()
	h, rp := redPacketServer(t)
	r := do(t, h, "GET", "/api/v1/redpacket/wallet?userId=ann", "", nil)
	if r.Code != "0000" || string(r.Data) != `{"userId":"ann","totalAmount":5.00,"availableAmount":3.21}` {
		t.Fatalf("wallet: %+v %s", r, r.Data)
	}
	if r := do(t, h, "POST", "/api/v1/raffle/activity/query_user_credit_account?userId=ben", "", nil); r.Code != "0000" || string(r.Data) != "3.21" {
		t.Fatalf("credit account: %+v", r)
	}
	if fmt.Sprint(rp.settled) != "[ann ben]" {
		t.Fatalf("green channel ran for %v, want ann then ben", rp.settled)
	}
	r = do(t, h, "GET", "/api/v1/redpacket/detail?packetId=0012345678901234567890", "", nil)
	want := `{"packetId":"0012345678901234567890","senderId":"","greeting":"","mode":"random","totalAmount":1.00,"count":2,` +
		`"grabbedCount":2,"grabbedAmount":1.00,"remainingCount":0,"remainingAmount":0.00,"refundAmount":0.00,"state":"expired",` +
		`"expireTime":1700000000000,"grabs":[{"userId":"ann","amount":0.60,"grabTime":1700000000000},{"userId":"ben","amount":0.40,"grabTime":null}],` +
		`"luckiest":{"userId":"ann","amount":0.60,"grabTime":1700000000000}}`
	if r.Code != "0000" || string(r.Data) != want {
		t.Fatalf("detail:\n%s\nwant\n%s", r.Data, want)
	}
	for _, q := range []string{"", "?packetId=99"} {
		if r := do(t, h, "GET", "/api/v1/redpacket/detail"+q, "", nil); r.Code != "0002" {
			t.Errorf("detail%s: %+v", q, r)
		}
	}
}
