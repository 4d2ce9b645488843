package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/bigmarket/bigmarket/internal/testenv"
)

// netLog records, from the tab's network events, the bytes each request transferred and
// the requests of the draws (the plain and the signed path), so that a test can read the
// API's own answer to each draw the page made.
type netLog struct {
	mu       sync.Mutex
	urls     map[network.RequestID]string
	bytes    map[network.RequestID]float64
	draws    []network.RequestID // in the order the answers arrived
	finished map[network.RequestID]bool
}

func listenNet(t *testing.T, b *browser) *netLog {
	t.Helper()
	n := &netLog{urls: map[network.RequestID]string{}, bytes: map[network.RequestID]float64{}, finished: map[network.RequestID]bool{}}
	err := chromedp.Listen(b.ctx, func(ev any) {
		n.mu.Lock()
		defer n.mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			if ev.Request != nil {
				n.urls[ev.RequestID] = ev.Request.URL
			}
		case *network.EventResponseReceived:
			if ev.Response != nil && isDrawURL(ev.Response.URL) {
				n.draws = append(n.draws, ev.RequestID)
			}
		case *network.EventLoadingFinished:
			n.bytes[ev.RequestID] += ev.EncodedDataLength
			n.finished[ev.RequestID] = true
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// isDrawURL reports a draw: activity/draw_by_token or a signed path activity/draw/{sig}.
func isDrawURL(u string) bool {
	return strings.Contains(u, "/api/v1/raffle/activity/draw_by_token") || strings.Contains(u, "/api/v1/raffle/activity/draw/")
}

// transferred sums the bytes of every finished request so far (data: URLs send none).
func (n *netLog) transferred() (total float64, requests int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for id, b := range n.bytes {
		if !strings.HasPrefix(n.urls[id], "data:") {
			total += b
			requests++
		}
	}
	return total, requests
}

// drawAnswer is the API's answer to one draw request of the page.
type drawAnswer struct {
	URL      string
	Envelope struct {
		Code string `json:"code"`
		Data *struct {
			AwardID    int    `json:"awardId"`
			AwardTitle string `json:"awardTitle"`
			AwardIndex int    `json:"awardIndex"`
		} `json:"data"`
	}
}

// drawAnswers reads the bodies of the draw answers from the from-th on, once loaded.
func (n *netLog) drawAnswers(t *testing.T, ctx context.Context, from int) []drawAnswer {
	t.Helper()
	var ids []network.RequestID
	testenv.Eventually(t, 30*time.Second, "the draw answers finished loading", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		ids = append(ids[:0], n.draws[min(from, len(n.draws)):]...)
		for _, id := range ids {
			if !n.finished[id] {
				return false
			}
		}
		return true
	})
	var out []drawAnswer
	for _, id := range ids {
		res, err := chromedp.Call(ctx, network.GetResponseBody, network.GetResponseBodyParams{RequestID: id})
		if err != nil {
			t.Fatalf("body of draw answer %s: %v", id, err)
		}
		a := drawAnswer{}
		n.mu.Lock()
		a.URL = n.urls[id]
		n.mu.Unlock()
		if err := json.Unmarshal(res.Body, &a.Envelope); err != nil {
			t.Fatalf("draw answer %s is not an envelope: %s", a.URL, res.Body)
		}
		out = append(out, a)
	}
	return out
}

// allFinished reports whether every request seen so far has finished loading.
func (n *netLog) allFinished() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for id, u := range n.urls {
		if !n.finished[id] && !strings.HasPrefix(u, "data:") {
			return false
		}
	}
	return true
}

func (n *netLog) drawCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.draws)
}

// eval runs js in the page and returns its value.
func eval[T any](t *testing.T, b *browser, js string) T {
	t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js))
	if err != nil {
		b.check(t)
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// click clicks the element sel names, as a finger would.
func click(t *testing.T, b *browser, sel string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		b.check(t)
		t.Fatalf("click %s: %v", sel, err)
	}
}

// textOf is the text of the element sel names ("" when there is none).
func textOf(t *testing.T, b *browser, sel string) string {
	t.Helper()
	return eval[string](t, b, fmt.Sprintf(`document.querySelector(%q)?.textContent ?? ""`, sel))
}

// awaitText waits until the element sel names reads want, clicking the page's refresh
// button now and then (what the page reads arrives through the broker a moment later).
func awaitText(t *testing.T, b *browser, sel, want, what string) {
	t.Helper()
	last := time.Now()
	testenv.Eventually(t, 30*time.Second, what, func() (bool, string) {
		got := textOf(t, b, sel)
		if got == want {
			return true, ""
		}
		if time.Since(last) > 2*time.Second {
			click(t, b, "#refresh")
			last = time.Now()
		}
		return false, fmt.Sprintf("%s reads %q, want %q; message %q", sel, got, want, textOf(t, b, "#message"))
	})
}

// setLang switches the page to lang with its language button.
func setLang(t *testing.T, b *browser, lang string) {
	t.Helper()
	for range 2 {
		if eval[string](t, b, `document.documentElement.lang`) == lang {
			return
		}
		click(t, b, "#lang")
	}
	t.Fatalf("the language button does not switch to %s", lang)
}

// gridCell is an award cell of the 9-grid as the page shows it.
type gridCell struct {
	Ring    string `json:"ring"`
	AwardID string `json:"awardId"`
	Locked  string `json:"locked"`
	Text    string `json:"text"`
}

const cellsJS = `[...document.querySelectorAll("#grid .cell")].map(c => ({ring: c.dataset.ring, awardId: c.dataset.awardId || "",
	locked: c.dataset.locked || "", text: c.textContent}))`

// TestGridPageBrowser opens the 9-grid as a demo user through the query string; gives the
// user draws with the admin recharge of SKU 9011; signs in daily and exchanges credit in
// the page; and draws 12 times, half through plain draws and half through signed draw
// paths once the activity requires them. After each draw the highlight must rest on the
// cell of the award the API answered (read from the browser's own network log); the lock
// texts and the progress must change, the recent awards must list each draw once. No
// console error, no failed request; / transfers at most 300 KB.
func TestGridPageBrowser(t *testing.T) {
	b := newBrowser(t)
	net := listenNet(t, b)
	d := newDeployment(t, "")
	_, base := d.start(t)
	user := testenv.Unique("grid")

	open, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	err := chromedp.Do(open, chromedp.Navigate(base+"/?userId="+user+"&activityId=100301"),
		chromedp.WaitVisible(chromedp.CSS("#who")),
		chromedp.WaitVisible(chromedp.CSS(`#grid .cell[data-award-id="108"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#progress li[data-threshold="10"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#skus li[data-sku="9014"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#records[data-count="0"]`)),
		chromedp.WaitEnabled(chromedp.CSS("#draw")))
	cancel()
	if err != nil {
		b.check(t)
		t.Fatalf("open /: %v", err)
	}
	// Reported, not asserted: a time depends on the machine.
	if fcp, err := chromedp.Run(b.ctx, chromedp.Evaluate[float64](`performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? -1`)); err == nil {
		t.Logf("/ first contentful paint: %.0f ms", fcp)
	}
	// Everything the first view loaded: the page, its assets and its API calls.
	testenv.Eventually(t, 30*time.Second, "the first view's requests finished", net.allFinished)
	total, requests := net.transferred()
	t.Logf("/ transferred %.1f KB in %d requests", total/1024, requests)
	if total <= 0 || total > 300*1024 {
		t.Errorf("/ transferred %.0f bytes, want more than none and at most 300 KB", total)
	}
	if who := textOf(t, b, "#who"); !strings.Contains(who, user) {
		t.Errorf("signed in as %q, want %s", who, user)
	}
	if got := textOf(t, b, "#nav-rain"); got == "" || !strings.Contains(eval[string](t, b, `document.querySelector("#nav-rain").href`), "userId="+user) {
		t.Errorf("the rain link does not carry the demo user: %q", eval[string](t, b, `document.querySelector("#nav-rain").href`))
	}

	// The lock texts of a user who has not drawn, in both languages.
	setLang(t, b, "zh")
	cells := eval[[]gridCell](t, b, cellsJS)
	lockedBefore := map[string]string{}
	for _, c := range cells {
		if c.Locked != "" {
			lockedBefore[c.AwardID] = c.Locked
			if want := "再抽奖" + c.Locked + "次解锁"; !strings.Contains(c.Text, want) {
				t.Errorf("locked cell %+v does not read %q", c, want)
			}
		}
	}
	if len(cells) != 8 || lockedBefore["105"] != "3" || lockedBefore["106"] != "2" || lockedBefore["107"] != "1" {
		t.Fatalf("cells %+v: want 8 awards, 105/106/107 locked for 3/2/1 more draws", cells)
	}
	setLang(t, b, "en")
	if got := textOf(t, b, `#grid .cell[data-award-id="105"] .lock`); got != "Unlocks after 3 more draws" {
		t.Errorf("English lock text %q", got)
	}
	if got := textOf(t, b, "#draw"); got != "Draw" {
		t.Errorf("English draw button %q", got)
	}
	if used := eval[string](t, b, `document.querySelector("#progress").dataset.used`); used != "0" {
		t.Errorf("progress before drawing: %s draws used", used)
	}

	// A draw without draws left: the sentence, and no cell lands.
	click(t, b, "#draw")
	testenv.Eventually(t, 30*time.Second, "the refused draw ends", func() (bool, string) {
		seq := eval[string](t, b, `document.querySelector("#grid").dataset.drawSeq`)
		return seq == "1", "draw seq " + seq
	})
	if msg, landed := textOf(t, b, "#message"), eval[int](t, b, `document.querySelectorAll("#grid .cell.landed, #grid .cell.hot, #grid[data-landed-award-id]").length`); msg != "You have no draws left" || landed != 0 {
		t.Errorf("a draw without draws left: message %q, %d landed or highlighted cells", msg, landed)
	}

	// Draws through the admin recharge; the page reads them on refresh.
	if r := call(t, "POST", base+"/api/v1/admin/activity/recharge",
		map[string]any{"userId": user, "sku": 9011, "outBusinessNo": user + "-9011"}, bearer(d.adminToken)); r.Code != "0000" {
		t.Fatalf("recharge 9011: %v", r)
	}
	awaitText(t, b, "#total-left", "150", "the recharged 150 draws show")
	if got := textOf(t, b, "#day-left"); got != "150" {
		t.Errorf("draws left today %q, want 150", got)
	}

	// The daily sign-in: 10 credit at once and one draw (SKU 9014) a moment later; then
	// the button says it is done.
	if got := textOf(t, b, "#credit"); got != "0.00" {
		t.Errorf("credit before signing in: %q", got)
	}
	click(t, b, "#sign")
	awaitText(t, b, "#credit", "10.00", "the sign-in's 10 credit shows")
	awaitText(t, b, "#total-left", "151", "the sign-in's draw shows")
	if signed := eval[string](t, b, `document.querySelector("#sign").dataset.signed + (document.querySelector("#sign").disabled ? " disabled" : "")`); signed != "true disabled" {
		t.Errorf("sign-in button after signing in: %s", signed)
	}

	// The exchange: 200.00 for SKU 9011 is more than the credit; 5.00 for SKU 9014 buys a draw.
	click(t, b, `#skus li[data-sku="9011"] button`)
	awaitText(t, b, "#message", "Not enough credit", "the refused exchange's sentence")
	if got := textOf(t, b, "#credit"); got != "10.00" {
		t.Errorf("credit after a refused exchange: %q", got)
	}
	click(t, b, `#skus li[data-sku="9014"] button`)
	awaitText(t, b, "#credit", "5.00", "the exchange's price paid")
	awaitText(t, b, "#total-left", "152", "the exchanged draw shows")

	// Twelve draws; from the seventh on the activity draws through signed paths only.
	drawRequests0 := net.drawCount()
	var landed []string
	for i := 1; i <= 12; i++ {
		if i == 7 {
			if r := call(t, "POST", base+"/api/v1/admin/activity/settings",
				[]byte(`{"activityId":100301,"signedPath":true,"pathWindowSeconds":60}`), bearer(d.adminToken)); r.Code != "0000" {
				t.Fatalf("require signed paths: %v", r)
			}
		}
		before := net.drawCount()
		click(t, b, "#draw")
		testenv.Eventually(t, 60*time.Second, fmt.Sprintf("draw %d lands", i), func() (bool, string) {
			seq := eval[string](t, b, `document.querySelector("#grid").dataset.drawSeq`)
			return seq == fmt.Sprint(i+1), "draw seq " + seq
		})
		if msg := textOf(t, b, "#message"); msg != "" {
			t.Fatalf("draw %d: the page says %q", i, msg)
		}
		answers := net.drawAnswers(t, b.ctx, before)
		if len(answers) == 0 {
			t.Fatalf("draw %d: no draw request seen", i)
		}
		last := answers[len(answers)-1]
		if last.Envelope.Code != "0000" || last.Envelope.Data == nil {
			t.Fatalf("draw %d: the API answered %+v", i, last)
		}
		signed := strings.Contains(last.URL, "/activity/draw/")
		if i >= 7 != signed {
			t.Errorf("draw %d went to %s: signed path %v, want %v", i, last.URL, signed, i >= 7)
		}
		for _, a := range answers[:len(answers)-1] { // only the plain draw refused once paths are required
			if a.Envelope.Code != "ERR_BIZ_012" || i != 7 {
				t.Errorf("draw %d: an extra draw request %s answered %s", i, a.URL, a.Envelope.Code)
			}
		}
		want := fmt.Sprint(last.Envelope.Data.AwardID)
		shown := eval[map[string]string](t, b, `(() => { const g = document.querySelector("#grid"), c = g.querySelectorAll(".cell.landed");
			return {landed: g.dataset.landedAwardId || "", cell: c.length === 1 ? c[0].dataset.awardId : "cells:" + c.length,
				sort: c.length === 1 ? c[0].dataset.sort : ""}; })()`)
		if shown["landed"] != want || shown["cell"] != want || shown["sort"] != fmt.Sprint(last.Envelope.Data.AwardIndex) {
			t.Errorf("draw %d: the API answered award %s (index %d), the page landed on %v",
				i, want, last.Envelope.Data.AwardIndex, shown)
		}
		landed = append(landed, want)
		// The just-drawn award is listed at once, before its record is written.
		if top := eval[string](t, b, `document.querySelector("#records li.record")?.dataset.awardId ?? ""`); top != want {
			t.Errorf("draw %d: the newest listed award is %s, want %s", i, top, want)
		}
		if i == 3 {
			// The lock texts change with the draws: after 3 every lock is open.
			testenv.Eventually(t, 30*time.Second, "the lock texts change after 3 draws", func() (bool, string) {
				cells := eval[[]gridCell](t, b, cellsJS)
				for _, c := range cells {
					if c.Locked != "" {
						return false, fmt.Sprintf("%+v", cells)
					}
				}
				return true, ""
			})
		}
	}
	if n := net.drawCount() - drawRequests0; n != 13 {
		t.Errorf("%d draw requests for 12 draws, want 13 (one plain draw refused when paths became required)", n)
	}
	t.Logf("the page landed on %v", landed)

	// The counts, the progress and the recent awards follow: 152-12 draws left, 12 used
	// (the 10-draw stage reached), and each draw listed once, in the records' order.
	awaitText(t, b, "#total-left", "140", "the draws left after 12 draws")
	testenv.Eventually(t, 30*time.Second, "the progress shows 12 draws", func() (bool, string) {
		p := eval[string](t, b, `(() => { const p = document.querySelector("#progress");
			return p.dataset.used + " " + p.querySelector('li[data-threshold="10"]').dataset.reached; })()`)
		return p == "12 true", p
	})
	var records []struct {
		AwardID int `json:"awardId"`
	}
	testenv.Eventually(t, 30*time.Second, "the award records written and listed once each", func() (bool, string) {
		r := call(t, "POST", base+"/api/v1/raffle/activity/query_user_award_record", map[string]any{"userId": user, "activityId": 100301})
		var err error
		if records, err = dataOf[[]struct {
			AwardID int `json:"awardId"`
		}](r); err != nil || r.Code != "0000" {
			return false, r.String()
		}
		listed := eval[[]string](t, b, `[...document.querySelectorAll("#records li.record:not(.pending)")].map(li => li.dataset.awardId)`)
		pending := eval[int](t, b, `document.querySelectorAll("#records li.record.pending").length`)
		if len(records) != 12 || len(listed) != 12 || pending != 0 {
			click(t, b, "#refresh")
			return false, fmt.Sprintf("%d records, page lists %v and %d pending", len(records), listed, pending)
		}
		for i, rec := range records {
			if listed[i] != fmt.Sprint(rec.AwardID) {
				return false, fmt.Sprintf("page lists %v, records %+v", listed, records)
			}
		}
		return true, ""
	})
	for i, rec := range records { // newest first
		if want := landed[len(landed)-1-i]; fmt.Sprint(rec.AwardID) != want {
			t.Errorf("record %d (newest first) is award %d, the page landed on %s", i, rec.AwardID, want)
		}
	}

	// Without a user in the query string the demo offers its "sign in as" box. (Leave
	// once the page's requests are done: one cut short by the navigation would count as
	// failed.)
	testenv.Eventually(t, 30*time.Second, "the page's requests finished", net.allFinished)
	for _, step := range []struct {
		what string
		do   chromedp.Action[chromedp.Void]
	}{
		{"open / without a user", chromedp.Navigate(base + "/")},
		{"the sign-in box shows", chromedp.WaitVisible(chromedp.CSS("#signin-form"))},
		{"type the user", chromedp.SendKeys(chromedp.CSS("#user"), user)},
		{"sign in", chromedp.Click(chromedp.CSS(`#signin-form button[type="submit"]`))},
		{"signed in", chromedp.WaitVisible(chromedp.CSS("#who"))},
		{"the awards listed", chromedp.WaitVisible(chromedp.CSS(`#records[data-count="12"]`))},
	} {
		ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
		err := chromedp.Do(ctx, step.do)
		cancel()
		if err != nil {
			b.check(t)
			t.Fatalf("sign in with the box: %s: %v (message %q)", step.what, err, textOf(t, b, "#message"))
		}
	}
	if got := textOf(t, b, "#total-left"); got != "140" {
		t.Errorf("signed in with the box: %q draws left, want 140", got)
	}
	b.check(t)
}
