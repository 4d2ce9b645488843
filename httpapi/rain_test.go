package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/rain"
)

// fakeRains records the requests that reach it and answers by user id.
type fakeRains struct {
	mu      sync.Mutex
	creates []rain.CreateRequest
	quotas  []rain.QuotaRequest
}

func (f *fakeRains) Create(_ context.Context, req rain.CreateRequest) (rain.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates = append(f.creates, req)
	return rain.Session{ID: 42}, nil
}

func (f *fakeRains) UpdateQuota(_ context.Context, id int64, req rain.QuotaRequest) (rain.Quota, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.quotas = append(f.quotas, req)
	if id != 42 {
		return rain.Quota{}, rain.ErrNotFound
	}
	return rain.Quota{SessionID: 42, SeqNo: 2, Start: time.UnixMilli(1_800_000_000_000), End: time.UnixMilli(1_800_000_600_000), Total: 10, UserCap: 2}, nil
}

func (f *fakeRains) Grab(_ context.Context, userID string, sessionID int64) (rain.GrabResult, error) {
	switch userID {
	case "early":
		return rain.GrabResult{}, rain.ErrNotStarted
	case "late":
		return rain.GrabResult{}, fmt.Errorf("session %d: %w", sessionID, rain.ErrEnded)
	case "greedy":
		return rain.GrabResult{}, rain.ErrCapReached
	case "unlucky", "held":
		return rain.GrabResult{}, nil
	case "during-recovery":
		return rain.GrabResult{}, rain.ErrUnavailable
	case "sku":
		return rain.GrabResult{Won: true, Win: rain.Win{N: 2, Prize: rain.Prize{Kind: rain.KindSKU, SKU: 9011}}}, nil
	}
	return rain.GrabResult{Won: true, Win: rain.Win{N: 1, Prize: rain.Prize{Kind: rain.KindCash, Amount: 1_05}}}, nil
}

// GrabRetry answers a held win to "held", whose plain tap is a miss.
func (f *fakeRains) GrabRetry(ctx context.Context, userID string, sessionID int64) (rain.GrabResult, error) {
	if userID == "held" {
		return rain.GrabResult{Won: true, Win: rain.Win{N: 3, Prize: rain.Prize{Kind: rain.KindCash, Amount: 7}}}, nil
	}
	return f.Grab(ctx, userID, sessionID)
}

func (f *fakeRains) Sessions(context.Context) ([]rain.Session, time.Time, error) {
	now := time.UnixMilli(1_800_000_000_000)
	return []rain.Session{
		{ID: 1, Title: "live", Quota: rain.Quota{Start: now.Add(-time.Minute), End: now.Add(time.Minute), Total: 5, UserCap: 1, SeqNo: 1}},
		{ID: 2, Title: "next", Quota: rain.Quota{Start: now.Add(time.Hour), End: now.Add(2 * time.Hour), Total: 5, UserCap: 1, SeqNo: 3}},
	}, now, nil
}

// SessionsEndingAfter answers session 42, whose report the fake has.
func (f *fakeRains) SessionsEndingAfter(context.Context, time.Time) ([]rain.Session, error) {
	return []rain.Session{{ID: 42, Title: "t", State: rain.StateArmed}}, nil
}

func (f *fakeRains) Wins(_ context.Context, userID string, sessionID int64) ([]rain.Win, error) {
	return []rain.Win{{SessionID: 7, UserID: userID, N: 1, Time: time.UnixMilli(1_800_000_000_123),
		Prize: rain.Prize{Kind: rain.KindAward, AwardID: 102}}}, nil
}

func (f *fakeRains) Report(_ context.Context, id int64) (rain.Report, error) {
	if id != 42 {
		return rain.Report{}, rain.ErrNotFound
	}
	start := time.UnixMilli(1_800_000_000_000)
	return rain.Report{
		ServerTime: start.Add(2 * time.Second), Session: rain.Session{ID: 42, Title: "t", State: rain.StateArmed, Armed: 10,
			Quota: rain.Quota{SessionID: 42, SeqNo: 2, Start: start, End: start.Add(10 * time.Second), Total: 10, UserCap: 2}},
		Total: 10, Released: 2, Granted: 1, SeqNo: 2, Nodes: []rain.NodeSeq{{NodeID: "a", SeqNo: 2}},
		SliceSeconds: 1, Slices: []rain.Slice{{Start: start, Allowed: 1, Granted: 1}},
	}, nil
}

func TestRainEndpoints(t *testing.T) {
	t.Parallel()
	f := &fakeRains{}
	h := New(Options{Strategies: newFake(), Rains: f, PlainUserEndpoints: true, AdminToken: "rain-admin-token-1"})
	const admin = "Bearer rain-admin-token-1"
	r := doAdmin(t, h, "POST", "/api/v1/admin/rain/sessions", admin, `{"title":"t","startTime":1800000000000,"endTime":1800000600000,
		"userCap":2,"burst":0,"weights":[1,3],"budget":"100.00","prizes":[{"kind":"cash","amount":"1.50","count":3},
		{"kind":"cash","min":0.5,"max":"2","count":2},{"kind":"sku","sku":9011,"count":1},{"kind":"award","awardId":"102","count":4}]}`)
	if r.Code != "0000" || string(r.Data) != `{"sessionId":42}` {
		t.Fatalf("create: %+v %s", r, r.Data)
	}
	got := f.creates[0]
	if got.Title != "t" || got.UserCap != 2 || got.Burst == nil || *got.Burst != 0 || len(got.Weights) != 2 || got.Budget != 100_00 ||
		!got.Start.Equal(time.UnixMilli(1_800_000_000_000)) || len(got.Prizes) != 4 ||
		got.Prizes[0] != (rain.PrizeSpec{Kind: rain.KindCash, Amount: 1_50, Count: 3}) ||
		got.Prizes[1] != (rain.PrizeSpec{Kind: rain.KindCash, Min: 50, Max: 2_00, Count: 2}) ||
		got.Prizes[2] != (rain.PrizeSpec{Kind: rain.KindSKU, SKU: 9011, Count: 1}) ||
		got.Prizes[3] != (rain.PrizeSpec{Kind: rain.KindAward, AwardID: 102, Count: 4}) {
		t.Fatalf("create request %+v", got)
	}
	for _, bad := range []struct{ body, says string }{
		{`{"startTime":1800000000,"endTime":1800000600000,"prizes":[{"kind":"cash","amount":1,"count":1}]}`, "startTime"},
		{`{"startTime":1800000000000,"endTime":1800000600000,"prizes":[]}`, "prizes"},
		{`{"startTime":1800000000000,"endTime":1800000600000,"prizes":[{"kind":"cash","amount":1,"min":1,"max":2,"count":1}]}`, "prizes[0]"},
		{`{"startTime":1800000000000,"endTime":1800000600000,"prizes":[{"kind":"cash","min":3,"max":2,"count":1}]}`, "min"},
		{`{"startTime":1800000000000,"endTime":1800000600000,"prizes":[{"kind":"cash","amount":"0.001","count":1}]}`, "amount"},
		{`{"startTime":1800000000000,"endTime":1800000600000,"prizes":[{"kind":"sku","sku":9011,"amount":1,"count":1}]}`, "sku"},
		{`{"startTime":1800000000000,"endTime":1800000600000,"prizes":[{"kind":"award","count":1}]}`, "awardId"},
		{`{"startTime":1800000000000,"endTime":1800000600000,"prizes":[{"kind":"gold","count":1}]}`, "kind"},
		{`{"startTime":1800000000000,"endTime":1800000600000,"prizes":[{"kind":"cash","amount":1,"count":0}]}`, "count"},
		{`{"startTime":1800000000000,"endTime":1800000600000,"budget":"-1","prizes":[{"kind":"cash","amount":1,"count":1}]}`, "budget"},
	} {
		if r := doAdmin(t, h, "POST", "/api/v1/admin/rain/sessions", admin, bad.body); r.Code != "0002" || !strings.Contains(r.Info, bad.says) {
			t.Errorf("create %s: %s %s, want 0002 about %s", bad.body, r.Code, r.Info, bad.says)
		}
	}
	if len(f.creates) != 1 {
		t.Fatalf("refused creates reached the service: %d", len(f.creates))
	}
	if r := doAdmin(t, h, "POST", "/api/v1/admin/rain/sessions", "", `{}`); r.status != http.StatusUnauthorized || r.Code != "0003" {
		t.Fatalf("create without the admin token: %d %s", r.status, r.Code)
	}

	// Quota change: fields left out stay nil (kept).
	r = doAdmin(t, h, "PUT", "/api/v1/admin/rain/sessions/42/quota", admin, `{"userCap":3,"prizes":[{"kind":"cash","amount":"0.20","count":5}]}`)
	if r.Code != "0000" || !strings.Contains(string(r.Data), `"seqNo":2`) {
		t.Fatalf("quota: %+v %s", r, r.Data)
	}
	if q := f.quotas[0]; q.UserCap == nil || *q.UserCap != 3 || q.Burst != nil || q.Total != nil || q.Weights != nil || q.End != nil || len(q.Prizes) != 1 {
		t.Fatalf("quota request %+v", q)
	}
	if r := doAdmin(t, h, "PUT", "/api/v1/admin/rain/sessions/x/quota", admin, `{}`); r.Code != "0002" {
		t.Fatalf("quota of a bad id: %+v", r)
	}
	if r := doAdmin(t, h, "PUT", "/api/v1/admin/rain/sessions/7/quota", admin, `{}`); r.Code != "0002" {
		t.Fatalf("quota of an unknown session: %+v", r)
	}

	for user, want := range map[string]string{
		"u1":              `{"code":"0000","data":{"won":true,"n":1,"kind":"cash","amount":1.05}}`,
		"sku":             `{"code":"0000","data":{"won":true,"n":2,"kind":"sku","sku":9011}}`,
		"unlucky":         `{"code":"0000","data":{"won":false}}`,
		"early":           "ERR_RAIN_001",
		"late":            "ERR_RAIN_002",
		"greedy":          "ERR_RAIN_003",
		"during-recovery": "0009",
	} {
		r := doAdmin(t, h, "POST", "/api/v1/rain/grab", "", `{"userId":"`+user+`","sessionId":"42"}`)
		if strings.HasPrefix(want, "{") {
			if got := fmt.Sprintf(`{"code":%q,"data":%s}`, r.Code, r.Data); got != want {
				t.Errorf("tap by %s: %s, want %s", user, got, want)
			}
		} else if r.Code != want {
			t.Errorf("tap by %s: %s %s, want %s", user, r.Code, r.Info, want)
		}
	}
	// A tap repeating one answered 0009 asks for the held win.
	if r := doAdmin(t, h, "POST", "/api/v1/rain/grab", "", `{"userId":"held","sessionId":42}`); r.Code != "0000" || string(r.Data) != `{"won":false}` {
		t.Fatalf("plain tap of a holder: %+v %s", r, r.Data)
	}
	if r := doAdmin(t, h, "POST", "/api/v1/rain/grab", "", `{"userId":"held","sessionId":42,"retry":true}`); r.Code != "0000" ||
		string(r.Data) != `{"won":true,"n":3,"kind":"cash","amount":0.07}` {
		t.Fatalf("retried tap of a holder: %+v %s", r, r.Data)
	}
	if r := doAdmin(t, h, "POST", "/api/v1/rain/grab", "", `{"userId":"u1"}`); r.Code != "0002" || !strings.Contains(r.Info, "sessionId") {
		t.Fatalf("tap without a session: %+v", r)
	}

	r = do(t, h, "GET", "/api/v1/rain/sessions", "", nil)
	if r.Code != "0000" || !strings.Contains(string(r.Data), `"serverTime":1800000000000`) ||
		!strings.Contains(string(r.Data), `"sessionId":1,"title":"live","startTime":1799999940000,"endTime":1800000060000,"total":5,"userCap":1,"seqNo":1,"state":"live"`) ||
		!strings.Contains(string(r.Data), `"state":"upcoming"`) {
		t.Fatalf("sessions: %+v %s", r, r.Data)
	}
	r = do(t, h, "GET", "/api/v1/rain/wins?userId=ann&sessionId=7", "", nil)
	if r.Code != "0000" || string(r.Data) != `[{"sessionId":7,"n":1,"winTime":1800000000123,"kind":"award","awardId":102}]` {
		t.Fatalf("wins: %+v %s", r, r.Data)
	}
	r = doAdmin(t, h, "GET", "/api/v1/admin/rain/sessions/42", admin, "")
	if r.Code != "0000" || !strings.Contains(string(r.Data), `"released":2,"granted":1,"seqNo":2`) ||
		!strings.Contains(string(r.Data), `"nodes":[{"nodeId":"a","seqNo":2}],"sliceSeconds":1,"slices":[{"start":1800000000000,"allowed":1,"granted":1}]`) {
		t.Fatalf("report: %+v %s", r, r.Data)
	}
	// The public view: the same progress without the operator's quota, budget and ledger.
	r = do(t, h, "GET", "/api/v1/rain/sessions/42", "", nil)
	if r.Code != "0000" || !strings.Contains(string(r.Data), `"serverTime":1800000002000`) ||
		!strings.Contains(string(r.Data), `"released":2,"granted":1,"seqNo":2,"nodes":[{"nodeId":"a","seqNo":2}],"sliceSeconds":1`) ||
		strings.Contains(string(r.Data), `"quota"`) || strings.Contains(string(r.Data), `"budget"`) {
		t.Fatalf("public session: %+v %s", r, r.Data)
	}
	if r := do(t, h, "GET", "/api/v1/rain/sessions/7", "", nil); r.Code != "0002" {
		t.Fatalf("public view of an unknown session: %+v", r)
	}
}
