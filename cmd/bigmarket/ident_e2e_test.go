package main

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// TestIdentifiersRefusedAtTheEdge sends malformed identifiers to a serve process on
// MariaDB: each is a 0002 that names its field, never a 500 from the database, and a
// padded user id never reads the unpadded user's data (utf8mb4_bin ignores trailing
// spaces in comparisons).
func TestIdentifiersRefusedAtTheEdge(t *testing.T) {
	d := newDeployment(t, "")
	_, base := d.start(t)
	s := d.stack(base)
	const raffle = "/api/v1/raffle/"
	d.topUp(t, "pad763_2", 1234)
	if c := creditOf(t, base, "pad763_2"); c != 1234 {
		t.Fatalf("credit of pad763_2: %s", c)
	}
	refused := func(what string, status int, r envelope, field string) {
		t.Helper()
		if status != 200 || r.Code != "0002" || !strings.Contains(r.Info, field+" ") {
			t.Errorf("%s: HTTP %d %s %q data %s, want 200 0002 naming %s", what, status, r.Code, r.Info, r.Data, field)
		}
	}
	form := func(path, userID string) envelope {
		return call(t, "POST", base+raffle+path+"?userId="+url.QueryEscape(userID), nil)
	}

	// Invalid UTF-8 in a form parameter reached MySQL (Error 1366, HTTP 500).
	r := call(t, "POST", base+raffle+"activity/query_user_credit_account?userId=%FF", nil)
	refused("form userId %FF", r.Status, r, "userId")
	r = call(t, "POST", base+raffle+"activity/calendar_sign_rebate?userId=ab%FF", nil)
	refused("sign-in userId ab%FF", r.Status, r, "userId")
	// A NUL byte was accepted as part of a user id.
	for _, path := range []string{"activity/query_user_activity_account", "activity/draw"} {
		raw, _ := json.Marshal(map[string]any{"userId": "nul\x00user", "activityId": 100301})
		r = call(t, "POST", base+raffle+path, raw)
		refused(path+" userId with NUL", r.Status, r, "userId")
	}
	// Trailing and leading blanks: MariaDB would find pad763_2's rows.
	for _, id := range []string{"pad763_2 ", " pad763_2", "pad763_2\t"} {
		r = form("activity/query_user_credit_account", id)
		refused("credit of "+strconvQuote(id), r.Status, r, "userId")
		r = call(t, "GET", base+"/api/v1/redpacket/wallet?userId="+url.QueryEscape(id), nil)
		refused("wallet of "+strconvQuote(id), r.Status, r, "userId")
	}
	// Other ids of the same requests.
	rc := call(t, "POST", s.bases[0]+"/api/v1/admin/activity/recharge", map[string]any{"userId": "pad763_2", "sku": 9011, "outBusinessNo": "biz\x00no"}, bearer(s.adminToken))
	refused("recharge outBusinessNo with NUL", 200, rc, "outBusinessNo")
	r = call(t, "GET", base+raffle+"activity/query_stage_activity_id?channel=c%FF&source=s", nil)
	refused("stage channel %FF", r.Status, r, "channel")
	raw, _ := json.Marshal(map[string]any{"userId": "pad763_2", "packetId": "0012345 "})
	r = call(t, "POST", base+"/api/v1/redpacket/grab", raw)
	refused("grab packetId with a trailing blank", r.Status, r, "packetId")

	// Nothing of pad763_2 changed.
	if c := creditOf(t, base, "pad763_2"); c != 1234 {
		t.Errorf("credit of pad763_2 after the refusals: %s", c)
	}
	if orders, err := d.users.RechargeOrders(t.Context(), "pad763_2"); err != nil || len(orders) != 0 {
		t.Errorf("recharge orders of pad763_2: %+v %v", orders, err)
	}
}

// strconvQuote quotes an id for a message.
func strconvQuote(s string) string { b, _ := json.Marshal(s); return string(b) }
