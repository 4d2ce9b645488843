package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/bigmarket/bigmarket/internal/testenv"
)

// plotted reads the values the console's chart svg (a CSS selector) plots, "" (unknown)
// as -1.
func plotted(t *testing.T, b *browser, selector string) []float64 {
	t.Helper()
	raw, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector(%q)?.dataset.values ?? ""`, selector)))
	if err != nil {
		t.Fatalf("read %s: %v", selector, err)
	}
	var vs []float64
	for _, s := range strings.Split(raw, ",") {
		if s == "" {
			vs = append(vs, -1)
			continue
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("%s plots %q", selector, raw)
		}
		vs = append(vs, v)
	}
	return vs
}

func maxSum(vs []float64) (m, sum float64) {
	for _, v := range vs {
		m = max(m, v)
		if v > 0 {
			sum += v
		}
	}
	return m, sum
}

// pageDo runs actions in the page within a generous deadline.
func pageDo(t *testing.T, b *browser, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.check(t)
		t.Fatalf("%s: %v", what, err)
	}
}

// TestConsolePageBrowser signs in to /admin with the deployment's admin token (after a
// wrong one is refused with a sentence), reads the draws/s plot, runs a load of draws by
// many recharged users for about 8 s and waits for the plotted draws/s to rise above what
// they were and to add up to the draws answered; then it opens the user view of one of
// those users (their awards listed), the strategy view (Redis stock per award) and runs a
// reconcile (ok). The page may log no error and no request may fail, but for the wrong
// token's 401.
func TestConsolePageBrowser(t *testing.T) {
	b := newBrowser(t)
	d := newDeployment(t, "")
	_, base := d.start(t)
	if r := call(t, "GET", base+"/api/v1/raffle/activity/armory?activityId=100301", nil); r.Code != "0000" {
		t.Fatalf("activity armory: %s", r)
	}
	users := make([]string, 12)
	for i := range users {
		users[i] = testenv.Unique("con")
		rc := map[string]any{"userId": users[i], "sku": 9011, "outBusinessNo": users[i] + "-1"}
		if r := call(t, "POST", base+"/api/v1/admin/activity/recharge", rc, bearer(d.adminToken)); r.Code != "0000" {
			t.Fatalf("recharge %s: %s", users[i], r)
		}
	}

	// A wrong token: the page says so and shows no console.
	pageDo(t, b, "open /admin", chromedp.Navigate(base+"/admin"), chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), "not-"+d.adminToken), chromedp.Click(chromedp.CSS(`#signin-form button[type="submit"]`)),
		chromedp.Poll[chromedp.Void](`document.querySelector("#message").textContent !== ""`, chromedp.WithPollingTimeout(20*time.Second)))
	// Reported, not asserted: a time depends on the machine.
	if fcp, err := chromedp.Run(b.ctx, chromedp.Evaluate[float64](`performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? -1`)); err == nil {
		t.Logf("/admin first contentful paint: %.0f ms", fcp)
	}
	msg, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.querySelector("#message").textContent + "|" + document.querySelector("#console").hidden`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(msg, "|true") || strings.Contains(msg, "0003") || strings.HasPrefix(msg, "|") {
		t.Fatalf("after a wrong token the page shows %q, want a sentence and no console", msg)
	}
	// The refused token's 401 is the one failed request this test asks for.
	b.mu.Lock()
	for _, p := range b.problems {
		if !strings.Contains(p, "HTTP 401") || !strings.Contains(p, "/api/v1/admin/stats") {
			t.Errorf("page: %s", p)
		}
	}
	b.problems = nil
	b.mu.Unlock()

	pageDo(t, b, "sign in", chromedp.SendKeys(chromedp.CSS("#token"), d.adminToken),
		chromedp.Click(chromedp.CSS(`#signin-form button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS("#console")),
		chromedp.Poll[chromedp.Void](`(document.querySelector("#chart-draws").dataset.values || "").split(",").length >= 60`,
			chromedp.WithPollingTimeout(20*time.Second)))
	if v, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.querySelector("#token").value`)); err != nil || v != "" {
		t.Errorf("the token field keeps %d characters after sign-in (%v)", len(v), err)
	}
	before, _ := maxSum(plotted(t, b, "#chart-draws"))
	t.Logf("draws/s plotted before the load: max %v", before)

	// The load: one goroutine per user drawing for 8 s at a paced 15 draws/s, so that a
	// user's 150 draws a day last it (unpaced, the users run out within two seconds and
	// the rest are quota answers).
	ctx, stop := context.WithTimeout(context.Background(), 8*time.Second)
	defer stop()
	var answered, won atomic.Int64
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Go(func() {
			pace := time.NewTicker(time.Second / 15)
			defer pace.Stop()
			for ; ctx.Err() == nil; <-pace.C {
				r := call(t, "POST", base+"/api/v1/raffle/activity/draw", drawReq{u, 100301})
				if r.Status != 0 {
					answered.Add(1)
				}
				if r.Code == "0000" {
					won.Add(1)
				}
			}
		})
	}
	loadStart := time.Now()
	var rose time.Duration
	deadline := time.Now().Add(40 * time.Second)
	for rose == 0 && time.Now().Before(deadline) {
		if m, _ := maxSum(plotted(t, b, "#chart-draws")); m > before {
			rose = time.Since(loadStart)
			break
		}
		time.Sleep(200 * time.Millisecond) // a reader's glance, not a wait for an effect: the loop polls
	}
	wg.Wait()
	if rose == 0 {
		b.check(t)
		t.Fatalf("the plotted draws/s never rose above %v while %d draws were answered: %v", before, answered.Load(), plotted(t, b, "#chart-draws"))
	}
	t.Logf("the plotted draws/s rose %v after the load began; %d draws answered (%d awarded) in 8 s", rose.Round(time.Millisecond), answered.Load(), won.Load())
	if won.Load() == 0 {
		t.Fatalf("no draw of the load was awarded (%d answered)", answered.Load())
	}
	// Every draw answered is counted in the node's seconds, and the page plots them all.
	var shown float64
	deadline = time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, shown = maxSum(plotted(t, b, "#chart-draws")); shown == float64(answered.Load()) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if shown != float64(answered.Load()) {
		t.Errorf("the draws/s plot adds up to %v, the load had %d draws answered", shown, answered.Load())
	}
	for _, sel := range []string{"#chart-requests", "#chart-latency", "#chart-backlogs", "#chart-award-stock", "#chart-sku-stock", "#chart-codes"} {
		if vs := plotted(t, b, sel); len(vs) == 0 || vs[0] == -1 && len(vs) == 1 {
			t.Errorf("%s plots nothing", sel)
		}
	}
	// The other language: every label changes, the plots are drawn again, nothing breaks.
	const labels = `[...document.querySelectorAll("[data-t]")].map(e => e.textContent).join("|")`
	labelsBefore, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](labels))
	if err != nil {
		t.Fatal(err)
	}
	pageDo(t, b, "switch language", chromedp.Click(chromedp.CSS("#lang")),
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`%s !== %q && document.querySelector("#chart-draws").dataset.values !== ""`, labels, labelsBefore), chromedp.WithPollingTimeout(10*time.Second)),
		chromedp.Click(chromedp.CSS("#lang")),
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`%s === %q`, labels, labelsBefore), chromedp.WithPollingTimeout(10*time.Second)))
	badges, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`["#breaker", "#degrade"].map(s => document.querySelector(s).dataset.state).join(",")`))
	if err != nil || badges != "closed,close" {
		t.Errorf("breaker and degrade badges %q (%v), want closed,close", badges, err)
	}

	// The user view lists the user's awards.
	user := users[0]
	pageDo(t, b, "user view", chromedp.Click(chromedp.CSS(`#views button[data-view="user"]`)),
		chromedp.SendKeys(chromedp.CSS("#user-id"), user), chromedp.Click(chromedp.CSS(`#user-form button[type="submit"]`)),
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.querySelector("#user-shown")?.dataset.userId === %q && document.querySelectorAll("#user-out tr.award").length > 0`, user),
			chromedp.WithPollingTimeout(20*time.Second)))
	type shownAccount struct {
		ActivityID string `json:"activityId"`
		Cells      []string
	}
	accounts, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]shownAccount](`[...document.querySelectorAll("#user-out tr.account")].map(tr => ({activityId: tr.dataset.activityId, Cells: [...tr.cells].map(c => c.textContent)}))`))
	if err != nil || len(accounts) == 0 || accounts[0].ActivityID != "100301" {
		t.Errorf("user view accounts %+v (%v), want activity 100301", accounts, err)
	} else if c := accounts[0].Cells; len(c) < 3 || c[1] != "150" || c[2] == "150" {
		t.Errorf("user view account of 100301 %q: want a total of 150 and draws taken", c)
	}

	// A recharge through the page, confirmed in the page, adds SKU 9011's 150 draws.
	pageDo(t, b, "recharge", chromedp.Click(chromedp.CSS(`#recharge-form button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS("#confirm")),
		chromedp.Click(chromedp.CSS("#confirm-yes")),
		chromedp.Poll[chromedp.Void](`document.querySelector("#user-out tr.account")?.cells[1]?.textContent === "300"`, chromedp.WithPollingTimeout(20*time.Second)))

	// The strategy view shows the Redis stock of each award of the armed strategy.
	pageDo(t, b, "strategy view", chromedp.Click(chromedp.CSS(`#views button[data-view="strategy"]`)),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll("#strategy-out tr.award").length > 0 &&
			[...document.querySelectorAll("#strategy-out tr.award")].every(tr => tr.dataset.stockLeft !== "")`,
			chromedp.WithPollingTimeout(20*time.Second)))
	stock, err := chromedp.Run(b.ctx, chromedp.Evaluate[map[string]string](`Object.fromEntries([...document.querySelectorAll("#strategy-out tr.award")].map(tr => [tr.dataset.awardId, tr.dataset.stockLeft]))`))
	if err != nil {
		t.Fatal(err)
	}
	for award, left := range stock {
		key := fmt.Sprintf("%s:award_stock:{100006_%s}", d.prefix, award)
		if inRedis, err := d.redis.Get(context.Background(), key).Result(); err != nil || inRedis != left {
			t.Errorf("strategy view: award %s stock %s, Redis %s %s (%v)", award, left, key, inRedis, err)
		}
	}
	t.Logf("strategy 100006 stock left as the page shows it: %v", stock)
	// A top-up of award 101 by 10, confirmed in the page, shows in its stock left.
	want, err := strconv.Atoi(stock["101"])
	if err != nil {
		t.Fatalf("award 101's stock left %q", stock["101"])
	}
	want += 10
	pageDo(t, b, "award top-up", chromedp.Click(chromedp.CSS(`#strategy-out tr.award[data-award-id="101"] button`)),
		chromedp.WaitVisible(chromedp.CSS("#confirm")), chromedp.Click(chromedp.CSS("#confirm-yes")),
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.querySelector('#strategy-out tr.award[data-award-id="101"]')?.dataset.stockLeft === "%d"`, want),
			chromedp.WithPollingTimeout(20*time.Second)))

	// A reconcile of the last hour is clean once the load's awards are distributed: run it
	// until it is (distribution is asynchronous), within a generous deadline.
	pageDo(t, b, "reconcile view", chromedp.Click(chromedp.CSS(`#views button[data-view="reconcile"]`)))
	deadline = time.Now().Add(60 * time.Second)
	var result string
	for time.Now().Before(deadline) {
		pageDo(t, b, "reconcile", chromedp.Click(chromedp.CSS(`#reconcile-form button[type="submit"]`)),
			chromedp.Poll[chromedp.Void](`document.querySelector("#reconcile-out [data-ok]") !== null || document.querySelector("#message").textContent !== ""`,
				chromedp.WithPollingTimeout(30*time.Second)))
		if result, err = chromedp.Run(b.ctx, chromedp.Evaluate[string](`(document.querySelector("#reconcile-out [data-ok]")?.dataset.ok ?? "none") + " " +
			[...document.querySelectorAll("#reconcile-out .check")].map(c => c.dataset.name + "=" + c.dataset.ok).join(",") + " " + document.querySelector("#message").textContent`)); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(result, "true ") {
			break
		}
		time.Sleep(time.Second)
	}
	if !strings.HasPrefix(result, "true ") {
		t.Errorf("reconcile in the page: %s", result)
	}
	t.Logf("reconcile: %s", result)

	// A campaign red packet sent through the page is listed; a rain session created through
	// the page is listed at quota SeqNo 1, and a quota change makes it 2; no dead letters.
	pageDo(t, b, "campaign packet", chromedp.Click(chromedp.CSS(`#views button[data-view="redpacket"]`)),
		chromedp.Click(chromedp.CSS(`#packet-form button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS("#confirm")),
		chromedp.Click(chromedp.CSS("#confirm-yes")),
		chromedp.Poll[chromedp.Void](`[...document.querySelectorAll("#packets-out tr.packet")].some(tr => document.querySelector("#message").textContent.includes(tr.dataset.packetId))`,
			chromedp.WithPollingTimeout(20*time.Second)))
	pageDo(t, b, "rain session", chromedp.Click(chromedp.CSS(`#views button[data-view="rain"]`)),
		chromedp.Click(chromedp.CSS(`#rain-form button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS("#confirm")),
		chromedp.Click(chromedp.CSS("#confirm-yes")),
		chromedp.Poll[chromedp.Void](`document.querySelector("#rain-out tr.session")?.dataset.seqNo === "1"`, chromedp.WithPollingTimeout(20*time.Second)),
		chromedp.SendKeys(chromedp.CSS(`#rain-out tr.session input[aria-label]:nth-of-type(2)`), "5"),
		chromedp.Click(chromedp.CSS(`#rain-out tr.session .inline button`)), chromedp.WaitVisible(chromedp.CSS("#confirm")),
		chromedp.Click(chromedp.CSS("#confirm-yes")),
		chromedp.Poll[chromedp.Void](`document.querySelector("#rain-out tr.session")?.dataset.seqNo === "2"`, chromedp.WithPollingTimeout(20*time.Second)))
	pageDo(t, b, "dead letters", chromedp.Click(chromedp.CSS(`#views button[data-view="dlq"]`)),
		chromedp.Poll[chromedp.Void](`document.querySelector("#dlq-out p.muted") !== null`, chromedp.WithPollingTimeout(20*time.Second)))

	// The degrade switch set through the settings view, confirmed in the page, is in force
	// (the row and the dashboard's badge say so); reset, it is back to close.
	const degradeRow = `document.querySelector('#settings-table tr[data-key="degradeSwitch"]')`
	pageDo(t, b, "degrade", chromedp.Click(chromedp.CSS(`#views button[data-view="settings"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#settings-table tr[data-key="degradeSwitch"]`)),
		chromedp.Click(chromedp.CSS(`#settings-table tr[data-key="degradeSwitch"] td:last-child button`)),
		chromedp.WaitVisible(chromedp.CSS("#confirm")), chromedp.Click(chromedp.CSS("#confirm-yes")),
		chromedp.Poll[chromedp.Void](degradeRow+`?.dataset.value === "open" && document.querySelector("#degrade").dataset.state === "open"`,
			chromedp.WithPollingTimeout(20*time.Second)))
	pageDo(t, b, "reset degrade", chromedp.Click(chromedp.CSS(`#settings-table tr[data-key="degradeSwitch"] td:last-child button:last-child`)),
		chromedp.WaitVisible(chromedp.CSS("#confirm")), chromedp.Click(chromedp.CSS("#confirm-yes")),
		chromedp.Poll[chromedp.Void](degradeRow+`?.dataset.value === "close" && document.querySelector("#degrade").dataset.state === "close"`,
			chromedp.WithPollingTimeout(20*time.Second)))
	b.check(t)
}
