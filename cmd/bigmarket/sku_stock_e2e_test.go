package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/money"
)

// TestRechargeRightAfterStart starts serve on new databases and a Redis prefix no process
// has used and recharges at once, without any armory: serve arms the SKU stock of the open
// activities before it serves, so the README's first recharge succeeds.
func TestRechargeRightAfterStart(t *testing.T) {
	d := newDeployment(t, "")
	_, base := d.start(t)
	if r := d.recharge(t, base, "fresh1", 9011, "fresh-1"); r.Code != "0000" {
		t.Fatalf("first recharge after start, no armory: %s %q, want 0000", r.Code, r.Info)
	}
	for _, sku := range []int64{9011, 9012, 9013, 9014, 9901, 9902, 9903} {
		key := fmt.Sprintf("%s:sku_stock:{%d}", d.prefix, sku)
		n, err := d.redis.Get(t.Context(), key).Int64()
		if err != nil {
			t.Fatalf("sku %d counter after start: %v", sku, err)
		}
		if want := int64(100000); sku == 9011 && n != want-1 || sku != 9011 && n != want {
			t.Errorf("sku %d counter %d after start", sku, n)
		}
	}
	// The credit-paid exchange works at once too.
	buyer := "fresh2"
	d.topUp(t, buyer, 1000)
	if r := call(t, "POST", base+"/api/v1/raffle/activity/credit_pay_exchange_sku", map[string]any{"userId": buyer, "sku": 9014}); r.Code != "0000" {
		t.Fatalf("first exchange after start: %s %q, want 0000", r.Code, r.Info)
	}
}

// TestSKUStockUnknownWhileRebuilt FLUSHALLs the Redis a serve process uses. Until the lost
// SKU counter is rebuilt from the orders (the recovery grace), the stock is unknown:
// recharges and credit-paid exchanges answer the retryable 0009 with Retry-After, never
// ERR_BIZ_005, and an exchange answered 0009 debits no credit and writes no order; a
// sign-in's SKU rebate met by the rebuild is redelivered, not dropped. Once rebuilt, both
// succeed, and the exchange debits its price once.
func TestSKUStockUnknownWhileRebuilt(t *testing.T) {
	d := newDeployment(t, startPrivateRedis(t))
	_, base := d.start(t, "BIGMARKET_RECOVERY_GRACE=5s")
	s := d.stack(base)
	ctx := context.Background()
	d.armory(t, base)
	if r := d.recharge(t, base, "unk0", 9011, "unk-0"); r.Code != "0000" {
		t.Fatalf("recharge before the flush: %s %q", r.Code, r.Info)
	}
	buyer, signer := "unkbuyer", "unksigner"
	d.topUp(t, buyer, 1000)
	credit0 := creditOf(t, base, buyer)

	if err := d.redis.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	r := d.recharge(t, base, "unk1", 9011, "unk-1")
	retry := r.Header.Get("Retry-After")
	if r.Code != "0009" || retry == "" {
		t.Fatalf("recharge while the sku counter is lost: %s %q (Retry-After %q), want 0009 with Retry-After", r.Code, r.Info, retry)
	}
	if r := call(t, "POST", base+"/api/v1/raffle/activity/credit_pay_exchange_sku", map[string]any{"userId": buyer, "sku": 9014}); r.Code != "0009" {
		t.Fatalf("exchange while the sku counter is lost: %s %q, want 0009", r.Code, r.Info)
	}
	if c := creditOf(t, base, buyer); c != credit0 {
		t.Fatalf("exchange answered 0009 changed the credit: %s → %s", credit0, c)
	}
	if orders, err := s.users.RechargeOrders(ctx, buyer); err != nil || len(orders) != 0 {
		t.Fatalf("exchange answered 0009 wrote orders %+v %v", orders, err)
	}
	if n := countTasks(t, s, buyer); n != 0 {
		t.Fatalf("exchange answered 0009 wrote %d tasks", n)
	}
	// The sign-in is accepted (its rebates are orders and tasks in SQL); the SKU rebate's
	// delivery meets the lost counter and must be redelivered until it is rebuilt.
	if r := call(t, "POST", base+"/api/v1/raffle/activity/calendar_sign_rebate?userId="+signer, nil); r.Code != "0000" {
		t.Fatalf("sign-in while the sku counter is lost: %+v", r)
	}

	// Every answer until the rebuild is 0009; then the recharge succeeds.
	i := 2
	testenv.Eventually(t, 60*time.Second, "recharge after the sku counter is rebuilt", func() bool {
		r := d.recharge(t, base, fmt.Sprint("unk", i), 9011, fmt.Sprint("unk-", i))
		i++
		switch r.Code {
		case "0000":
			return true
		case "0009":
			return false
		}
		t.Fatalf("recharge while the sku counter is rebuilt: %s %q, want 0009 or 0000", r.Code, r.Info)
		return false
	})
	if r := call(t, "POST", base+"/api/v1/raffle/activity/credit_pay_exchange_sku", map[string]any{"userId": buyer, "sku": 9014}); r.Code != "0000" {
		t.Fatalf("exchange after the rebuild: %s %q", r.Code, r.Info)
	}
	if c := creditOf(t, base, buyer); c != credit0-money.Cents(500) {
		t.Fatalf("credit after one paid exchange: %s, want %s", c, credit0-500)
	}
	testenv.Eventually(t, 60*time.Second, "the exchanged draw added", func() bool { return totalCount(t, base, buyer) == 1 })
	testenv.Eventually(t, 90*time.Second, "the sign-in's sku rebate delivered after the rebuild", func() bool {
		return totalCount(t, base, signer) == 1
	})
}
