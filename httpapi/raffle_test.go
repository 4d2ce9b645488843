package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/raffle"
	"github.com/bigmarket/bigmarket/strategy"
)

// fakeRaffles records calls; its Fn fields decide the answers.
type fakeRaffles struct {
	calls         atomic.Int64
	ArmoryFn      func(activityID int64) error
	DrawFn        func(userID string, activityID int64) (raffle.Result, error)
	AwardListFn   func(userID string, activityID int64) ([]raffle.AwardView, error)
	RuleWeightsFn func(userID string, activityID int64) ([]raffle.WeightView, error)
}

func (f *fakeRaffles) Armory(_ context.Context, activityID int64) error {
	f.calls.Add(1)
	return f.ArmoryFn(activityID)
}

func (f *fakeRaffles) Draw(_ context.Context, userID string, activityID int64) (raffle.Result, error) {
	f.calls.Add(1)
	return f.DrawFn(userID, activityID)
}

func (f *fakeRaffles) AwardList(_ context.Context, userID string, activityID int64) ([]raffle.AwardView, error) {
	f.calls.Add(1)
	return f.AwardListFn(userID, activityID)
}

func (f *fakeRaffles) RuleWeights(_ context.Context, userID string, activityID int64) ([]raffle.WeightView, error) {
	f.calls.Add(1)
	return f.RuleWeightsFn(userID, activityID)
}

// newFakeRaffles knows activity 100301 and user "xiaofuge".
func newFakeRaffles() *fakeRaffles {
	known := func(userID string, activityID int64) error {
		if activityID != 100301 {
			return fmt.Errorf("activity %d: %w", activityID, activity.ErrActivityNotFound)
		}
		if userID != "xiaofuge" {
			return fmt.Errorf("unexpected user %q", userID)
		}
		return nil
	}
	return &fakeRaffles{
		ArmoryFn: func(activityID int64) error { return known("xiaofuge", activityID) },
		DrawFn: func(userID string, activityID int64) (raffle.Result, error) {
			if err := known(userID, activityID); err != nil {
				return raffle.Result{}, err
			}
			return raffle.Result{AwardID: 101, AwardTitle: "随机积分", AwardIndex: 1}, nil
		},
		AwardListFn: func(userID string, activityID int64) ([]raffle.AwardView, error) {
			if err := known(userID, activityID); err != nil {
				return nil, err
			}
			return []raffle.AwardView{
				{AwardID: 101, Title: "随机积分", Subtitle: "", Sort: 1, Unlocked: true},
				{AwardID: 106, Title: "轻奢办公套件", Subtitle: "抽奖1次后解锁", Sort: 6, RuleLockCount: 1, Unlocked: false, WaitUnlockCount: 1},
			}, nil
		},
		RuleWeightsFn: func(userID string, activityID int64) ([]raffle.WeightView, error) {
			if err := known(userID, activityID); err != nil {
				return nil, err
			}
			return []raffle.WeightView{
				{Threshold: 4000, UsedTotal: 12, Awards: []strategy.Award{{AwardID: 102, Title: "OpenAI会员卡"}, {AwardID: 103, Title: "支付优惠券"}}},
				{Threshold: 5000, UsedTotal: 12},
			}, nil
		},
	}
}

// plainEndpoints are the userId-in-body endpoints, served only with PlainUserEndpoints.
var plainEndpoints = []string{
	"/api/v1/raffle/activity/draw",
	"/api/v1/raffle/activity/query_user_activity_account",
	"/api/v1/raffle/strategy/query_raffle_award_list",
	"/api/v1/raffle/strategy/query_raffle_strategy_rule_weight",
}

func TestRaffleEndpoints(t *testing.T) {
	t.Parallel()
	h := New(Options{Strategies: newFake(), Activities: newFakeActivities(), Raffles: newFakeRaffles(), PlainUserEndpoints: true})
	for _, tc := range []struct{ method, path, body, data string }{
		{"GET", "/api/v1/raffle/activity/armory?activityId=100301", "", `true`},
		{"POST", "/api/v1/raffle/activity/draw", `{"userId":"xiaofuge","activityId":100301}`,
			`{"awardId":101,"awardTitle":"随机积分","awardIndex":1}`},
		{"POST", "/api/v1/raffle/activity/draw", `{"userId":"xiaofuge","activityId":"100301"}`,
			`{"awardId":101,"awardTitle":"随机积分","awardIndex":1}`},
		{"POST", "/api/v1/raffle/strategy/query_raffle_award_list", `{"userId":"xiaofuge","activityId":100301}`,
			`[{"awardId":101,"awardTitle":"随机积分","awardSubtitle":"","sort":1,"awardRuleLockCount":0,"isAwardUnlock":true,"waitUnLockCount":0},` +
				`{"awardId":106,"awardTitle":"轻奢办公套件","awardSubtitle":"抽奖1次后解锁","sort":6,"awardRuleLockCount":1,"isAwardUnlock":false,"waitUnLockCount":1}]`},
		{"POST", "/api/v1/raffle/strategy/query_raffle_strategy_rule_weight", `{"userId":"xiaofuge","activityId":100301}`,
			`[{"ruleWeightCount":4000,"userActivityAccountTotalUseCount":12,"strategyAwards":[{"awardId":102,"awardTitle":"OpenAI会员卡"},{"awardId":103,"awardTitle":"支付优惠券"}]},` +
				`{"ruleWeightCount":5000,"userActivityAccountTotalUseCount":12,"strategyAwards":[]}]`},
	} {
		r := do(t, h, tc.method, tc.path, "application/json", []byte(tc.body))
		if r.status != 200 || r.Code != "0000" || string(r.Data) != tc.data {
			t.Errorf("%s %s %s: HTTP %d %s %s\nwant data %s", tc.method, tc.path, tc.body, r.status, r.Code, r.Data, tc.data)
		}
		if r.header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: no CORS header", tc.path)
		}
	}
	empty := newFakeRaffles()
	empty.AwardListFn = func(string, int64) ([]raffle.AwardView, error) { return nil, nil }
	h = New(Options{Strategies: newFake(), Raffles: empty, PlainUserEndpoints: true})
	if r := do(t, h, "POST", "/api/v1/raffle/strategy/query_raffle_award_list", "application/json", []byte(`{"userId":"xiaofuge","activityId":100301}`)); string(r.Data) != "[]" {
		t.Errorf("no awards: %s %s, want []", r.Code, r.Data)
	}
}

func TestActivityArmoryBadInput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		query string
		calls int64
	}{
		{"", 0}, {"?activityId=", 0}, {"?activityId=abc", 0}, {"?activityId=0", 0}, {"?activityId=-3", 0},
		{"?activityId=42", 1}, // unknown: the service says so
	} {
		f := newFakeRaffles()
		r := do(t, New(Options{Strategies: newFake(), Raffles: f}), "GET", "/api/v1/raffle/activity/armory"+tc.query, "", nil)
		if r.status != 200 || r.Code != "0002" || string(r.Data) != "null" {
			t.Errorf("armory %q: HTTP %d %s %s, want 200 0002", tc.query, r.status, r.Code, r.Data)
		}
		if f.calls.Load() != tc.calls {
			t.Errorf("armory %q: %d service calls, want %d", tc.query, f.calls.Load(), tc.calls)
		}
	}
}

// TestUserActivityBadInput sends bad bodies to every plain endpoint: each gets 0002 and
// reaches no service.
func TestUserActivityBadInput(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("u", 40)
	for _, tc := range []struct {
		name   string
		body   string
		status int
	}{
		{"malformed", `{"userId":"xiaofuge","activityId":`, 400},
		{"not json", `userId=xiaofuge&activityId=100301`, 400},
		{"empty body", ``, 400},
		{"non-numeric activityId", `{"userId":"xiaofuge","activityId":"abc"}`, 400},
		{"float activityId", `{"userId":"xiaofuge","activityId":1.5}`, 400},
		{"userId not a string", `{"userId":{},"activityId":100301}`, 400},
		{"missing userId", `{"activityId":100301}`, 200},
		{"empty userId", `{"userId":"","activityId":100301}`, 200},
		{"40-char userId", `{"userId":"` + long + `","activityId":100301}`, 200},
		{"missing activityId", `{"userId":"xiaofuge"}`, 200},
		{"zero activityId", `{"userId":"xiaofuge","activityId":0}`, 200},
		{"negative activityId", `{"userId":"xiaofuge","activityId":"-1"}`, 200},
	} {
		for _, path := range plainEndpoints {
			rf, af := newFakeRaffles(), newFakeActivities()
			h := New(Options{Strategies: newFake(), Activities: af, Raffles: rf, PlainUserEndpoints: true})
			r := do(t, h, "POST", path, "application/json", []byte(tc.body))
			if r.status != tc.status || r.Code != "0002" || string(r.Data) != "null" || r.Info == "" {
				t.Errorf("%s %s: HTTP %d %s %q %s, want HTTP %d 0002", path, tc.name, r.status, r.Code, r.Info, r.Data, tc.status)
			}
			if strings.Contains(r.Info, long) {
				t.Errorf("%s %s: info echoes the user id: %q", path, tc.name, r.Info)
			}
			if r.header.Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("%s %s: no CORS header", path, tc.name)
			}
			if n := rf.calls.Load() + af.calls.Load(); n != 0 {
				t.Errorf("%s %s: %d service calls, want 0", path, tc.name, n)
			}
		}
	}
}

// activityErrors are the activity sentinels with the HTTP status and code they answer.
var activityErrors = []struct {
	err  error
	code string
}{
	{activity.ErrActivityNotFound, "0002"},
	{activity.ErrNoStageActivity, "0002"},
	{activity.ErrSKUNotFound, "0002"},
	{activity.ErrInvalidUserID, "0002"},
	{activity.ErrInvalidBusinessNo, "0002"},
	{activity.ErrActivityNotOpen, "ERR_BIZ_003"},
	{activity.ErrOutsideDates, "ERR_BIZ_004"},
	{activity.ErrSKUStockExhausted, "ERR_BIZ_005"},
	{activity.ErrSKUStockMissing, "0009"},
	{activity.ErrTotalQuotaExhausted, "ERR_BIZ_006"},
	{activity.ErrMonthQuotaExhausted, "ERR_BIZ_007"},
	{activity.ErrDayQuotaExhausted, "ERR_BIZ_008"},
	{activity.ErrOrderUsed, "ERR_BIZ_009"},
	{activity.ErrDuplicateOrder, "0003"},
}

func TestActivityErrorCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range activityErrors {
		err := fmt.Errorf("participate xiaofuge in 100301: %w", tc.err)
		rf, af := newFakeRaffles(), newFakeActivities()
		rf.DrawFn = func(string, int64) (raffle.Result, error) { return raffle.Result{}, err }
		rf.AwardListFn = func(string, int64) ([]raffle.AwardView, error) { return nil, err }
		rf.RuleWeightsFn = func(string, int64) ([]raffle.WeightView, error) { return nil, err }
		af.AccountFn = func(string, int64) (activity.View, error) { return activity.View{}, err }
		af.RechargeFn = func(activity.RechargeRequest) (activity.RechargeOrder, error) { return activity.RechargeOrder{}, err }
		h := New(Options{Strategies: newFake(), Activities: af, Raffles: rf, PlainUserEndpoints: true, AdminToken: "s3cret"})
		for _, path := range plainEndpoints {
			r := do(t, h, "POST", path, "application/json", []byte(`{"userId":"xiaofuge","activityId":100301}`))
			if r.status != 200 || r.Code != tc.code || string(r.Data) != "null" || r.Info != infos[Code(tc.code)] {
				t.Errorf("%s %v: HTTP %d %s %q, want 200 %s %q", path, tc.err, r.status, r.Code, r.Info, tc.code, infos[Code(tc.code)])
			}
		}
		r := doAdmin(t, h, "POST", rechargePath, "Bearer s3cret", `{"userId":"xiaofuge","sku":9011,"outBusinessNo":"700091009111"}`)
		if r.status != 200 || r.Code != tc.code {
			t.Errorf("recharge %v: HTTP %d %s, want 200 %s", tc.err, r.status, r.Code, tc.code)
		}
	}
	for _, tc := range []struct {
		err  error
		code string
	}{
		{strategy.ErrRuleWeightMissing, "ERR_BIZ_001"},
		{strategy.ErrStrategyNotFound, "0002"},
		{strategy.ErrInvalidTree, "ERR_BIZ_002"},
	} {
		rf := newFakeRaffles()
		rf.RuleWeightsFn = func(string, int64) ([]raffle.WeightView, error) {
			return nil, fmt.Errorf("strategy 100006: %w", tc.err)
		}
		rf.ArmoryFn = func(int64) error { return fmt.Errorf("armory activity 100301: %w", tc.err) }
		h := New(Options{Strategies: newFake(), Raffles: rf, PlainUserEndpoints: true})
		if r := do(t, h, "POST", "/api/v1/raffle/strategy/query_raffle_strategy_rule_weight", "application/json", []byte(`{"userId":"xiaofuge","activityId":100301}`)); r.status != 200 || r.Code != tc.code {
			t.Errorf("rule weight %v: HTTP %d %s, want 200 %s", tc.err, r.status, r.Code, tc.code)
		}
		if r := do(t, h, "GET", "/api/v1/raffle/activity/armory?activityId=100301", "", nil); r.status != 200 || r.Code != tc.code {
			t.Errorf("armory %v: HTTP %d %s, want 200 %s", tc.err, r.status, r.Code, tc.code)
		}
	}
	rf := newFakeRaffles()
	rf.DrawFn = func(string, int64) (raffle.Result, error) {
		return raffle.Result{}, errors.New("redis: connection refused")
	}
	r := do(t, New(Options{Strategies: newFake(), Raffles: rf, PlainUserEndpoints: true}), "POST", "/api/v1/raffle/activity/draw", "application/json", []byte(`{"userId":"xiaofuge","activityId":100301}`))
	if r.status != 500 || r.Code != "0001" || strings.Contains(r.Info, "redis") {
		t.Errorf("internal error: HTTP %d %s %q, want 500 0001 without detail", r.status, r.Code, r.Info)
	}
}

// TestClassifyOrder checks that an error wrapping two sentinels gets the more specific code.
func TestClassifyOrder(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		code Code
	}{
		{fmt.Errorf("record award: %w: %w", activity.ErrOrderUsed, activity.ErrActivityNotFound), CodeOrderUsed},
		{errors.Join(activity.ErrActivityNotOpen, activity.ErrDayQuotaExhausted), CodeDayQuotaExhausted},
		{errors.Join(activity.ErrSKUNotFound, activity.ErrDuplicateOrder), CodeDuplicate},
	} {
		if got := classify(tc.err).code; got != tc.code {
			t.Errorf("%v: %s, want %s", tc.err, got, tc.code)
		}
	}
}

// TestClassifyTimeouts: a backend's timeout leaves the outcome unknown, 0009 with a
// Retry-After, never 500 0001 (a stock script may have run after its client gave up).
func TestClassifyTimeouts(t *testing.T) {
	t.Parallel()
	ioTimeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	for _, err := range []error{
		fmt.Errorf("deduct award 102 of strategy 900001: %w", ioTimeout),
		fmt.Errorf("record: %w", context.DeadlineExceeded),
	} {
		ae := classify(err)
		if ae.status != 200 || ae.code != CodeBusy || ae.retryAfter <= 0 {
			t.Errorf("%v: HTTP %d %s retry after %v, want 200 0009 with a retry-after", err, ae.status, ae.code, ae.retryAfter)
		}
	}
}

// TestPlainUserEndpointsOff checks that production mode does not serve the userId-in-body
// endpoints at all, while armory and the admin recharge stay.
func TestPlainUserEndpointsOff(t *testing.T) {
	t.Parallel()
	rf, af := newFakeRaffles(), newFakeActivities()
	h := New(Options{Strategies: newFake(), Activities: af, Raffles: rf, AdminToken: "s3cret"})
	for _, path := range plainEndpoints {
		r := do(t, h, "POST", path, "application/json", []byte(`{"userId":"xiaofuge","activityId":100301}`))
		if r.status != 404 || r.Code != "0002" || r.header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: HTTP %d %s CORS %q, want 404 0002 with CORS", path, r.status, r.Code, r.header.Get("Access-Control-Allow-Origin"))
		}
	}
	if n := rf.calls.Load() + af.calls.Load(); n != 0 {
		t.Errorf("%d service calls through disabled endpoints", n)
	}
	if r := do(t, h, "GET", "/api/v1/raffle/activity/armory?activityId=100301", "", nil); r.Code != "0000" {
		t.Errorf("armory: %s, want 0000", r.Code)
	}
	if r := doAdmin(t, h, "POST", rechargePath, "Bearer s3cret", `{"userId":"xiaofuge","sku":9011,"outBusinessNo":"1"}`); r.Code != "0000" {
		t.Errorf("recharge: %s, want 0000", r.Code)
	}
}

// TestWithoutServices checks that Options with only Strategies serves none of the
// activity endpoints.
func TestWithoutServices(t *testing.T) {
	t.Parallel()
	h := New(Options{Strategies: newFake(), PlainUserEndpoints: true, AdminToken: "s3cret"})
	for _, path := range plainEndpoints {
		if r := do(t, h, "POST", path, "application/json", []byte(`{"userId":"xiaofuge","activityId":100301}`)); r.status != 404 {
			t.Errorf("%s: HTTP %d, want 404", path, r.status)
		}
	}
	if r := do(t, h, "GET", "/api/v1/raffle/activity/armory?activityId=100301", "", nil); r.status != 404 {
		t.Errorf("armory: HTTP %d, want 404", r.status)
	}
	if r := doAdmin(t, h, "POST", rechargePath, "Bearer s3cret", `{}`); r.status != 404 {
		t.Errorf("recharge: HTTP %d, want 404", r.status)
	}
}
