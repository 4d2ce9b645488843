package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/redis"
)

// provisioned is the data of admin/activity/provision.
type provisioned struct {
	Provisioned int `json:"provisioned"`
	Repeated    int `json:"repeated"`
}

func provisionCall(t *testing.T, s stack, body map[string]any) (envelope, provisioned) {
	t.Helper()
	r := call(t, "POST", s.bases[0]+"/api/v1/admin/activity/provision", body, bearer(s.adminToken))
	var p provisioned
	if r.Code == "0000" {
		var err error
		if p, err = dataOf[provisioned](r); err != nil {
			t.Fatalf("provision data %s: %v", r.Data, err)
		}
	}
	return r, p
}

// skuLeft reads the units left of a SKU's hot stock.
func skuLeft(t *testing.T, s stack, sku int64) int64 {
	t.Helper()
	l, err := redis.NewSKUStock(s.redis, s.prefix).Remaining(context.Background(), sku)
	if err != nil || !l.HasCounter {
		t.Fatalf("sku %d stock: %+v %v", sku, l, err)
	}
	return l.Counter
}

// TestProvisionE2E provisions users in bulk on MariaDB, Redis and NATS: every user's
// account, month and day rows are those an operator recharge of the same SKU gives, a
// repeated or overlapping request recharges nobody twice, the SKU stock falls by one unit
// per user recharged, a request the stock cannot serve in full takes nothing, bad
// requests change nothing, and verify is clean afterwards.
func TestProvisionE2E(t *testing.T) {
	d := newDeployment(t, "")
	_, base := d.start(t)
	d.armory(t, base)
	s := d.stack(base)
	ctx := context.Background()

	ref := testenv.Unique("pr")[:14]
	if code := d.recharge(t, base, ref, 9011, "ref-"+ref).Code; code != "0000" {
		t.Fatalf("reference recharge: %s", code)
	}
	users := make([]string, 350)
	for i := range users {
		users[i] = fmt.Sprintf("pv%s_%d", ref[2:10], i)
	}
	left0 := skuLeft(t, s, 9011)
	req := func(batch string, us []string) map[string]any {
		return map[string]any{"activityId": faultActivity, "sku": 9011, "outBusinessNo": batch, "users": us}
	}
	if r, p := provisionCall(t, s, req("b1", users[:300])); r.Code != "0000" || p != (provisioned{300, 0}) {
		t.Fatalf("provision 300: %+v %+v", r, p)
	}
	if r, p := provisionCall(t, s, req("b1", users[:300])); r.Code != "0000" || p != (provisioned{0, 300}) {
		t.Errorf("repeated provision: %+v %+v, want 0 provisioned and 300 repeated", r, p)
	}
	if r, p := provisionCall(t, s, req("b1", users[250:])); r.Code != "0000" || p != (provisioned{50, 50}) {
		t.Errorf("overlapping provision: %+v %+v, want 50 and 50", r, p)
	}
	if left := skuLeft(t, s, 9011); left != left0-350 {
		t.Errorf("sku 9011 stock %d after provisioning 350 users from %d, want %d", left, left0, left0-350)
	}

	// Every account is the reference's, row for row.
	day, month := time.Now().In(shanghai(t)).Format("2006-01-02"), time.Now().In(shanghai(t)).Format("2006-01")
	quota := func(u string) activity.Quota {
		q, err := d.users.Quota(ctx, activity.QuotaKey{UserID: u, ActivityID: faultActivity, Day: day, Month: month})
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	// The rows as values (a recharge writes the account; month and day rows come with a
	// draw, so both must be absent or equal).
	show := func(q activity.Quota) string {
		var a, m, dd any = "no account", "no month", "no day"
		if q.Account != nil {
			a = *q.Account
		}
		if q.Month != nil {
			m = *q.Month
		}
		if q.Day != nil {
			dd = *q.Day
		}
		return fmt.Sprintf("%+v %+v %+v", a, m, dd)
	}
	want := show(quota(ref))
	if q := quota(ref); q.Account == nil || q.Account.Total != 150 {
		t.Fatalf("reference account %s, want sku 9011's 150", want)
	}
	for _, u := range users {
		if got := show(quota(u)); got != want {
			t.Errorf("%s: quota %s, want the recharge's %s", u, got, want)
		}
		orders, err := d.users.RechargeOrders(ctx, u)
		if err != nil || len(orders) != 1 || orders[0].OutBusinessNo != activity.ProvisionBusinessNo("b1", u) ||
			orders[0].State != activity.RechargeCompleted || orders[0].SKU != 9011 {
			t.Errorf("%s: recharge orders %+v %v, want one completed b1_%s", u, orders, err, u)
		}
	}
	if got, want := totalCount(t, base, users[7]), totalCount(t, base, ref); got != want {
		t.Errorf("query_user_activity_account totalCount %d, want %d", got, want)
	}

	// A SKU with 5 units left: 6 users take nothing, 5 take all.
	if _, err := s.db.ExecContext(ctx, `INSERT INTO raffle_activity_sku (sku, activity_id, activity_count_id, stock_count,
		stock_count_surplus, product_amount) VALUES (99021, 100301, 11103, 5, 5, '1.00')`); err != nil {
		t.Fatal(err)
	}
	d.armory(t, base)
	few := []string{ref + "a", ref + "b", ref + "c", ref + "d", ref + "e", ref + "f"}
	small := func(us []string) map[string]any {
		return map[string]any{"sku": 99021, "outBusinessNo": "b2", "users": us}
	}
	if r, _ := provisionCall(t, s, small(few)); r.Code != "ERR_BIZ_005" {
		t.Errorf("6 users on 5 units: %+v, want ERR_BIZ_005", r)
	}
	if left := skuLeft(t, s, 99021); left != 5 {
		t.Errorf("sku 99021 stock %d after a refused provisioning, want 5", left)
	}
	if r, p := provisionCall(t, s, small(few[:5])); r.Code != "0000" || p != (provisioned{5, 0}) {
		t.Errorf("5 users on 5 units: %+v %+v", r, p)
	}

	// Bad requests change nothing.
	for name, body := range map[string]map[string]any{
		"a user twice":          req("b3", []string{ref + "x", ref + "x"}),
		"sku of another":        {"activityId": 100401, "sku": 9011, "outBusinessNo": "b3", "users": []string{ref + "x"}},
		"unknown sku":           {"sku": 424242, "outBusinessNo": "b3", "users": []string{ref + "x"}},
		"one user id too long":  req("b3", []string{ref + "x", strings.Repeat("u", 40)}),
		"batch number too long": req(fmt.Sprintf("%032d", 0), []string{ref + "x"}),
	} {
		if r, _ := provisionCall(t, s, body); r.Code != "0002" {
			t.Errorf("%s: %+v, want 0002", name, r)
		}
	}
	if orders, err := d.users.RechargeOrders(ctx, ref+"x"); err != nil || len(orders) != 0 {
		t.Errorf("bad requests wrote %+v %v", orders, err)
	}
	if left := skuLeft(t, s, 9011); left != left0-350 {
		t.Errorf("sku 9011 stock %d after bad requests, want %d", left, left0-350)
	}
	out, clean := d.verify(t, nil, "-grace", "0s")
	if !clean {
		t.Errorf("verify after provisioning:\n%.3000s", out)
	}
}
