package httpapi

import (
	"strings"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/redpacket"
)

// TestIdentifiersRefused sends every string id of the API malformed in each way the rule
// refuses: each is a 0002 naming its field, and no service is called.
func TestIdentifiersRefused(t *testing.T) {
	t.Parallel()
	var seen []string
	opts := tokenOptions(&seen)
	rp := &fakeRedPackets{
		GrabFn: func(userID, _ string) (redpacket.Grab, error) {
			seen = append(seen, userID)
			return redpacket.Grab{}, nil
		},
		DetailFn: func(id string) (redpacket.Detail, error) {
			seen = append(seen, "detail "+id)
			return redpacket.Detail{}, nil
		},
	}
	opts.RedPackets, opts.PlainUserEndpoints, opts.AdminToken = rp, true, "s3cret"
	opts.AppTokens = map[string]string{"pay": "t0k"}
	h := New(opts)
	af, cf, rb := opts.Activities.(*fakeActivities), opts.Credits.(*fakeCredits), opts.Rebates.(*fakeRebates)

	const raffle = "/api/v1/raffle/"
	bad := []struct{ name, json, form string }{ // the same bad id as a JSON string and form-encoded
		{"empty", `""`, ""},
		{"invalid UTF-8", "\"\xff\"", "%FF"},
		{"replacement char", `"a\ufffd"`, "a%EF%BF%BD"},
		{"NUL", `"nul\u0000user"`, "nul%00user"},
		{"zero-width space", `"alice\u200b"`, "alice%E2%80%8B"},
		{"bidi override", `"a\u202eb"`, "a%E2%80%AEb"},
		{"trailing space", `"pad763_2 "`, "pad763_2+"},
		{"leading tab", `"\tpad763_2"`, "%09pad763_2"},
		{"trailing no-break space", `"u\u00a0"`, "u%C2%A0"},
		{"too long", `"` + strings.Repeat("u", 65) + `"`, strings.Repeat("u", 65)},
	}
	for _, b := range bad {
		cases := []struct {
			field, method, path, body string
			admin                     bool
		}{
			{"userId", "POST", raffle + "activity/draw", `{"userId":` + b.json + `,"activityId":100301}`, false},
			{"userId", "POST", raffle + "activity/query_user_activity_account", `{"userId":` + b.json + `,"activityId":100301}`, false},
			{"userId", "POST", raffle + "strategy/query_raffle_award_list", `{"userId":` + b.json + `,"activityId":100301}`, false},
			{"userId", "POST", raffle + "activity/credit_pay_exchange_sku", `{"userId":` + b.json + `,"sku":9011}`, false},
			{"userId", "POST", raffle + "activity/query_user_credit_account?userId=" + b.form, "", false},
			{"userId", "POST", raffle + "activity/calendar_sign_rebate?userId=" + b.form, "", false},
			{"userId", "POST", raffle + "activity/is_calendar_sign_rebate?userId=" + b.form, "", false},
			{"userId", "GET", "/api/v1/redpacket/wallet?userId=" + b.form, "", false},
			{"userId", "POST", "/api/v1/redpacket/grab", `{"userId":` + b.json + `,"packetId":"0012345678901234567890"}`, false},
			{"userId", "POST", "/api/v1/redpacket/send", `{"userId":` + b.json + `,"totalAmount":1,"count":1}`, false},
			{"packetId", "POST", "/api/v1/redpacket/grab", `{"userId":"xiaofuge","packetId":` + b.json + `}`, false},
			{"packetId", "GET", "/api/v1/redpacket/detail?packetId=" + b.form, "", false},
			{"channel", "GET", raffle + "activity/query_stage_activity_id?source=s01&channel=" + b.form, "", false},
			{"source", "GET", raffle + "activity/query_stage_activity_id?channel=c01&source=" + b.form, "", false},
			{"appId", "POST", "/api/v1/rebate/behavior", `{"appId":` + b.json + `,"appToken":"t0k","data":{"userId":"u1","behaviorType":"sign","outBusinessNo":"1"}}`, false},
			{"data.userId", "POST", "/api/v1/rebate/behavior", `{"appId":"pay","appToken":"t0k","data":{"userId":` + b.json + `,"behaviorType":"sign","outBusinessNo":"1"}}`, false},
			{"data.behaviorType", "POST", "/api/v1/rebate/behavior", `{"appId":"pay","appToken":"t0k","data":{"userId":"u1","behaviorType":` + b.json + `,"outBusinessNo":"1"}}`, false},
			{"data.outBusinessNo", "POST", "/api/v1/rebate/behavior", `{"appId":"pay","appToken":"t0k","data":{"userId":"u1","behaviorType":"sign","outBusinessNo":` + b.json + `}}`, false},
			{"userId", "POST", rechargePath, `{"userId":` + b.json + `,"sku":9011,"outBusinessNo":"1"}`, true},
			{"outBusinessNo", "POST", rechargePath, `{"userId":"u1","sku":9011,"outBusinessNo":` + b.json + `}`, true},
			{"eligibleUsers[1]", "POST", "/api/v1/admin/redpacket/send", `{"totalAmount":1,"count":1,"eligibleUsers":["u1",` + b.json + `]}`, true},
		}
		for _, c := range cases {
			if b.name == "too long" && c.field == "appId" {
				continue // 65 bytes is within no bound of an app id (64): see the case below
			}
			auth := ""
			if c.admin {
				auth = "Bearer s3cret"
			}
			r := doAdmin(t, h, c.method, c.path, auth, c.body)
			if r.status != 200 || r.Code != "0002" || !strings.Contains(r.Info, ": "+c.field+" ") {
				t.Errorf("%s %s with %s %s: HTTP %d %s %q, want 200 0002 naming %s", c.method, c.path, c.field, b.name, r.status, r.Code, r.Info, c.field)
			}
			if strings.ContainsRune(r.Info, 0) || strings.Contains(r.Info, "pad763_2") {
				t.Errorf("%s %s: info %q echoes the id", c.method, c.path, r.Info)
			}
		}
	}
	if r := doAdmin(t, h, "POST", "/api/v1/rebate/behavior", "", `{"appId":"`+strings.Repeat("a", 65)+`","appToken":"t0k","data":{}}`); r.Code != "0002" {
		t.Errorf("appId of 65 bytes: %s %q", r.Code, r.Info)
	}
	// A token whose openId breaks the rule is refused like any bad token.
	for _, openID := range []string{"pad763_2 ", "nul\x00user", "alice\u200b", "\xff"} {
		tok := SignToken(testSecret, openID, testNow.Add(time.Minute))
		r := doAdmin(t, h, "POST", raffle+"activity/draw_by_token", "Bearer "+tok, `{"activityId":100301}`)
		if r.status != 401 || r.Code != "0003" {
			t.Errorf("token with openId %q: HTTP %d %s, want 401 0003", openID, r.status, r.Code)
		}
	}
	if len(seen) != 0 || af.calls.Load() != 0 || cf.calls.Load() != 0 || rb.calls.Load() != 0 || len(rp.sends) != 0 {
		t.Errorf("refused ids reached the services: users %q, activity calls %d, credit calls %d, rebate calls %d, sends %d",
			seen, af.calls.Load(), cf.calls.Load(), rb.calls.Load(), len(rp.sends))
	}
	// The rule accepts what it should: inner spaces, Chinese, the longest user id.
	for _, id := range []string{"li lei", "小傅哥", strings.Repeat("u", 32)} {
		r := do(t, h, "POST", raffle+"activity/query_user_activity_account", "application/json", []byte(`{"userId":"`+id+`","activityId":100301}`))
		if r.Code != "0000" {
			t.Errorf("userId %q: %s %q, want 0000", id, r.Code, r.Info)
		}
	}
}
