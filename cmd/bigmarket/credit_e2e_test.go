package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/outbox"
	"github.com/bigmarket/bigmarket/webhook"
)

// e2eAppID and e2eAppToken are the service-to-service credentials the test stacks accept.
const (
	e2eAppID    = "e2e"
	e2eAppToken = "e2e-app-token"
)

// creditOf reads the user's available credit through the API.
func creditOf(t *testing.T, base, userID string) money.Cents {
	t.Helper()
	r := call(t, "POST", base+"/api/v1/raffle/activity/query_user_credit_account?userId="+userID, nil)
	c, err := dataOf[money.Cents](r)
	if err != nil || r.Code != "0000" {
		t.Fatalf("query_user_credit_account %s: %+v %v", userID, r, err)
	}
	return c
}

// totalCount reads the user's totalCount in activity 100301 through the API.
func totalCount(t *testing.T, base, userID string) int64 {
	t.Helper()
	r := call(t, "POST", base+"/api/v1/raffle/activity/query_user_activity_account", drawReq{userID, 100301})
	v, err := dataOf[map[string]int64](r)
	if err != nil || r.Code != "0000" {
		t.Fatalf("query_user_activity_account %s: %+v %v", userID, r, err)
	}
	return v["totalCount"]
}

// countTasks counts the user's outbox tasks.
func countTasks(t *testing.T, s stack, userID string) int {
	t.Helper()
	tasks, err := s.users.Tasks(context.Background(), userID)
	if err != nil {
		t.Fatal(err)
	}
	return len(tasks)
}

// checkSignInAndExchange is the credit walk of issue 4 as xiaofuge: the daily sign-in adds
// 10 credit and one draw, a second sign-in the same day is 0003 and writes nothing,
// exchanging SKU 9014 (5.00) takes 5 credit and adds the draw once the payment event is
// applied, and an exchange the credit cannot pay is ERR_CREDIT_001 and writes nothing.
// Asynchronous effects are polled; "writes nothing" is checked on the durable rows every
// effect comes from (orders and outbox tasks).
func checkSignInAndExchange(t *testing.T, s stack) {
	const raffle = "/api/v1/raffle/"
	base, user := s.bases[len(s.bases)-1], "xiaofuge"
	if r := call(t, "GET", s.bases[0]+raffle+"activity/armory?activityId=100301", nil); r.Code != "0000" {
		t.Fatalf("armory: %+v", r)
	}
	credit0, count0 := creditOf(t, base, user), totalCount(t, base, user)
	if r := call(t, "POST", base+raffle+"activity/is_calendar_sign_rebate?userId="+user, nil); r.Code != "0000" || string(r.Data) != "false" {
		t.Fatalf("is_calendar_sign_rebate before signing in: %+v", r)
	}
	if r := call(t, "POST", s.bases[0]+raffle+"activity/calendar_sign_rebate?userId="+user, nil); r.Code != "0000" || string(r.Data) != "true" {
		t.Fatalf("calendar_sign_rebate: %+v", r)
	}
	testenv.Eventually(t, 30*time.Second, "sign-in credit 10 and one draw", func() bool {
		return creditOf(t, base, user) == credit0+1000 && totalCount(t, base, user) == count0+1
	})
	tasks := countTasks(t, s, user)
	if r := call(t, "POST", base+raffle+"activity/calendar_sign_rebate?userId="+user, nil); r.Code != "0003" {
		t.Fatalf("second sign-in the same day: %+v, want 0003", r)
	}
	if r := call(t, "POST", base+raffle+"activity/is_calendar_sign_rebate?userId="+user, nil); r.Code != "0000" || string(r.Data) != "true" {
		t.Fatalf("is_calendar_sign_rebate after signing in: %+v", r)
	}
	if n := countTasks(t, s, user); n != tasks {
		t.Fatalf("second sign-in wrote %d tasks", n-tasks)
	}

	exchange := func(sku int64) envelope {
		return call(t, "POST", base+raffle+"activity/credit_pay_exchange_sku", map[string]any{"userId": user, "sku": sku})
	}
	if r := exchange(9014); r.Code != "0000" || string(r.Data) != "true" {
		t.Fatalf("exchange sku 9014: %+v", r)
	}
	if c := creditOf(t, base, user); c != credit0+500 {
		t.Fatalf("credit after paying 5.00: %s, want %s", c, credit0+500)
	}
	testenv.Eventually(t, 30*time.Second, "the paid draw added", func() bool { return totalCount(t, base, user) == count0+2 })

	orders, err := s.users.RechargeOrders(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	tasks = countTasks(t, s, user)
	if r := exchange(9011); r.Code != "ERR_CREDIT_001" { // 200.00
		t.Fatalf("exchange sku 9011 with %s credit: %+v, want ERR_CREDIT_001", credit0+500, r)
	}
	after, err := s.users.RechargeOrders(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(orders) || countTasks(t, s, user) != tasks || creditOf(t, base, user) != credit0+500 {
		t.Fatalf("refused exchange changed something: orders %d → %d, credit %s", len(orders), len(after), creditOf(t, base, user))
	}
	if r := exchange(424242); r.Code != "0002" {
		t.Fatalf("exchange of an unknown sku: %+v, want 0002", r)
	}
}

// checkAwardDistribution draws for a fresh user and waits until every award record is
// distributed: completed, and each credit award credited once (the balance is the sum of
// the credited awards).
func checkAwardDistribution(t *testing.T, s stack) {
	const raffle = "/api/v1/raffle/"
	user := fmt.Sprintf("dist%d", time.Now().UnixNano()%1_000_000_000)
	if r := call(t, "POST", s.bases[0]+"/api/v1/admin/activity/recharge", map[string]any{"userId": user, "sku": 9013, "outBusinessNo": user}, bearer(s.adminToken)); r.Code != "0000" {
		t.Fatalf("recharge: %+v", r)
	}
	for range 5 {
		if r := call(t, "POST", s.bases[0]+raffle+"activity/draw", drawReq{user, 100301}); r.Code != "0000" {
			t.Fatalf("draw: %+v", r)
		}
	}
	ctx := context.Background()
	// The flash draw writes its records behind the answers: wait for them too.
	testenv.Eventually(t, 30*time.Second, "every award record written and completed", func() bool {
		recs, err := s.users.AwardRecords(ctx, user, 100301)
		if err != nil || len(recs) > 5 {
			t.Fatalf("award records: %d, %v", len(recs), err)
		}
		if len(recs) < 5 {
			return false
		}
		for _, r := range recs {
			if r.State != award.StateCompleted {
				return false
			}
		}
		return true
	})
	orders, err := s.users.CreditOrders(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	var sum money.Cents
	for _, o := range orders {
		sum += o.Amount
	}
	if c := creditOf(t, s.bases[0], user); c != sum || len(orders) == 0 {
		t.Errorf("credit %s from %d credit orders summing %s", c, len(orders), sum)
	}
	testenv.Eventually(t, 30*time.Second, "every task marked completed", func() bool {
		tasks, err := s.users.Tasks(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range tasks {
			if tk.State != outbox.Completed {
				return false
			}
		}
		return len(tasks) == 5
	})
}

// checkBehaviorRebate calls the service-to-service rebate: a wrong app token is 0008 and
// writes nothing, a right one grants the openai_pay rebates (SKU 9901's draw and 10
// credit), a repeat is 0003.
func checkBehaviorRebate(t *testing.T, s stack) {
	base, user := s.bases[0], fmt.Sprintf("pay%d", time.Now().UnixNano()%1_000_000_000)
	body := func(token string) map[string]any {
		return map[string]any{"appId": e2eAppID, "appToken": token,
			"data": map[string]string{"userId": user, "behaviorType": "openai_pay", "outBusinessNo": "pay-0001"}}
	}
	if r := call(t, "POST", base+"/api/v1/rebate/behavior", body("wrong")); r.Code != "0008" {
		t.Fatalf("behaviour rebate with a wrong token: %+v, want 0008", r)
	}
	if n := countTasks(t, s, user); n != 0 {
		t.Fatalf("refused rebate wrote %d tasks", n)
	}
	if r := call(t, "POST", base+"/api/v1/rebate/behavior", body(e2eAppToken)); r.Code != "0000" {
		t.Fatalf("behaviour rebate: %+v", r)
	}
	if r := call(t, "POST", base+"/api/v1/rebate/behavior", body(e2eAppToken)); r.Code != "0003" {
		t.Fatalf("repeated behaviour rebate: %+v, want 0003", r)
	}
	testenv.Eventually(t, 30*time.Second, "openai_pay rebate: 10 credit and SKU 9901's draw", func() bool {
		r := call(t, "POST", base+"/api/v1/raffle/activity/query_user_activity_account", drawReq{user, 100401})
		v, _ := dataOf[map[string]int64](r)
		return creditOf(t, base, user) == 1000 && v["totalCount"] == 1
	})
}

// e2eWebhookSecret signs the test stacks' webhook deliveries.
const e2eWebhookSecret = "e2e-webhook-secret-0123456789"

// receiver is a webhook receiver for external awards: it checks every delivery's
// signature and answers 503 while down, 200 otherwise, counting both by order id and
// keeping each body by its Idempotency-Key.
type receiver struct {
	url string

	mu       sync.Mutex
	down     bool
	refused  map[string]int
	accepted map[string]int
	bodies   map[string][]string // every well-signed delivery's body, by Idempotency-Key
	bad      int                 // deliveries with a wrong signature or body
}

func startReceiver(t *testing.T) *receiver {
	t.Helper()
	r := &receiver{refused: map[string]int{}, accepted: map[string]int{}, bodies: map[string][]string{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var d webhook.Delivery
		r.mu.Lock()
		defer r.mu.Unlock()
		if !webhook.Verify(e2eWebhookSecret, req.Header.Get(webhook.HeaderTimestamp), req.Header.Get(webhook.HeaderSignature), body) ||
			json.Unmarshal(body, &d) != nil || d.OrderID == "" || req.Header.Get(webhook.HeaderIdempotencyKey) != d.OrderID {
			r.bad++
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		key := req.Header.Get(webhook.HeaderIdempotencyKey)
		r.bodies[key] = append(r.bodies[key], string(body))
		if r.down {
			r.refused[d.OrderID]++
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		r.accepted[d.OrderID]++
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

func (r *receiver) setDown(down bool) {
	r.mu.Lock()
	r.down = down
	r.mu.Unlock()
}

// deliveries returns the bodies of every well-signed delivery with Idempotency-Key key.
func (r *receiver) deliveries(key string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.bodies[key])
}

// total returns how many deliveries of any kind the receiver got.
func (r *receiver) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.bad
	for _, b := range r.bodies {
		n += len(b)
	}
	return n
}

// counts returns how many orders were refused and accepted at least once, and how many
// deliveries were malformed.
func (r *receiver) counts() (refused, accepted, bad int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.refused), len(r.accepted), r.bad
}
