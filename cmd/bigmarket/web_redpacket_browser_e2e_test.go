package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/money"
)

// pageDo runs actions in the browser's tab within a generous deadline.
func (b *browser) pageDo(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.check(t)
		t.Fatalf("%s: %v", what, err)
	}
}

// pageWait polls the JavaScript expression js, which yields a string, until it is not
// empty, and returns it: the page's state arrives asynchronously.
func (b *browser) pageWait(t *testing.T, what, js string) string {
	t.Helper()
	var got string
	testenv.Eventually(t, 30*time.Second, what, func() bool {
		var err error
		if got, err = chromedp.Run(b.ctx, chromedp.Evaluate[string](js)); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return got != ""
	})
	return got
}

// pageEquals waits until the expression js yields want.
func (b *browser) pageEquals(t *testing.T, what, js, want string) {
	t.Helper()
	var got string
	testenv.Eventually(t, 30*time.Second, what, func() (bool, string) {
		var err error
		if got, err = chromedp.Run(b.ctx, chromedp.Evaluate[string](js)); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return got == want, fmt.Sprintf("page shows %q, want %q", got, want)
	})
}

// packetDetail is the part of redpacket/detail the test compares with the page.
type packetDetail struct {
	SenderID       string      `json:"senderId"`
	Greeting       string      `json:"greeting"`
	Mode           string      `json:"mode"`
	TotalAmount    money.Cents `json:"totalAmount"`
	Count          int         `json:"count"`
	GrabbedCount   int         `json:"grabbedCount"`
	RemainingCount int         `json:"remainingCount"`
	State          string      `json:"state"`
	Grabs          []struct {
		UserID string      `json:"userId"`
		Amount money.Cents `json:"amount"`
	} `json:"grabs"`
	Luckiest *struct {
		UserID string      `json:"userId"`
		Amount money.Cents `json:"amount"`
	} `json:"luckiest"`
}

func readDetail(t *testing.T, base, packetID string) packetDetail {
	t.Helper()
	r := call(t, "GET", base+"/api/v1/redpacket/detail?packetId="+packetID, nil)
	d, err := dataOf[packetDetail](r)
	if err != nil || r.Code != "0000" {
		t.Fatalf("detail of %s: %+v %v", packetID, r, err)
	}
	return d
}

// grabOf is the amount user grabbed of the packet as the detail records it.
func (d packetDetail) grabOf(user string) (money.Cents, bool) {
	for _, g := range d.Grabs {
		if g.UserID == user {
			return g.Amount, true
		}
	}
	return 0, false
}

func walletOf(t *testing.T, base, user string) money.Cents {
	t.Helper()
	r := call(t, "GET", base+"/api/v1/redpacket/wallet?userId="+user, nil)
	w, err := dataOf[struct {
		AvailableAmount money.Cents `json:"availableAmount"`
	}](r)
	if err != nil || r.Code != "0000" {
		t.Fatalf("wallet of %s: %+v %v", user, r, err)
	}
	return w.AvailableAmount
}

// The page's state, as it exposes it for tests.
const (
	jsWallet    = `document.querySelector("#wallet:not([hidden])")?.dataset.available ?? ""`
	jsMyGrab    = `document.querySelector("#my-grab:not([hidden])")?.dataset.amount ?? ""`
	jsGrabReady = `(() => { const b = document.querySelector("#grab"); return b && !b.hidden && !b.disabled ? "yes" : ""; })()`
	jsShareLink = `document.querySelector("#share:not([hidden]) #share-link")?.value ?? ""`
)

// TestRedPacketPageBrowser sends a red packet in one browser and grabs it in another.
// The sender gets credit from the daily sign-in rebate (sign → 10 credit, the seeded
// rebate), sends a lucky packet of three in the page and reads the share link from it; the
// grabber opens the link, signing in as a person following it would (in demo mode, the
// link plus &userId=), and opens the packet. The amount the page shows is the one the
// detail records, the grabber's wallet in the page shows it, the sender's credit dropped
// by the total; a grab the user already made elsewhere is answered in the page as already
// grabbed with its amount; a second grab changes nothing; once the last item is gone the
// page marks the luckiest grab the detail names. Neither page may log an error or fail a
// request.
func TestRedPacketPageBrowser(t *testing.T) {
	senderPage, grabberPage := newBrowser(t), newBrowser(t)
	// newBrowser's own screenshot has one name for every browser of a test: on failure,
	// each page is also kept under its role (this runs first, while both tabs live).
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for name, b := range map[string]*browser{"sender": senderPage, "grabber": grabberPage} {
			if png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100)); err == nil { // 100: PNG
				path := filepath.Join(t.ArtifactDir(), name+".png")
				if err := os.WriteFile(path, png, 0o644); err == nil {
					t.Logf("%s screenshot: %s", name, path)
				}
			}
		}
	})
	d := newDeployment(t, "")
	_, base := d.start(t)
	sender, grabber := testenv.Unique("rps"), testenv.Unique("rpg")
	other, last := testenv.Unique("rpc"), testenv.Unique("rpe")

	// The sender's credit: the daily sign-in rebate.
	if r := call(t, "POST", base+"/api/v1/raffle/activity/calendar_sign_rebate?userId="+sender, nil); r.Code != "0000" {
		t.Fatalf("calendar_sign_rebate: %+v", r)
	}
	testenv.Eventually(t, 30*time.Second, "sign-in credit of 10.00", func() bool { return creditOf(t, base, sender) == 10_00 })

	// The sender sends three lucky packets worth 3.00 in the page.
	senderPage.pageDo(t, "open /redpacket as the sender", chromedp.Navigate(base+"/redpacket?userId="+sender),
		chromedp.WaitVisible(chromedp.CSS("#who")))
	if fcp, err := chromedp.Run(senderPage.ctx, chromedp.Evaluate[float64](`performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? -1`)); err == nil {
		t.Logf("/redpacket first contentful paint: %.0f ms", fcp) // reported, not asserted
	}
	senderPage.pageEquals(t, "the sender's credit in the page", jsWallet, "10.00")
	// Refused sends change nothing: a malformed amount (the page's own check, no request)
	// and more than the credit (ERR_CREDIT_001), each said in the page.
	for _, tc := range []struct{ amount, code string }{{"1.234", "form"}, {"50.00", "ERR_CREDIT_001"}} {
		senderPage.pageDo(t, "send "+tc.amount,
			chromedp.SetValue(chromedp.CSS("#amount"), tc.amount),
			chromedp.SetValue(chromedp.CSS("#count"), "3"),
			chromedp.Click(chromedp.CSS("#send-button")))
		senderPage.pageEquals(t, "the refusal of "+tc.amount, `document.querySelector("#message")?.dataset.code ?? ""`, tc.code)
		if msg := senderPage.pageWait(t, "the refusal's sentence", `document.querySelector("#message")?.textContent ?? ""`); strings.Contains(msg, "ERR_") {
			t.Errorf("the page shows a code, not a sentence: %q", msg)
		}
		if hidden := senderPage.pageWait(t, "the share box", `String(document.querySelector("#share").hidden)`); hidden != "true" {
			t.Errorf("a refused send shows a share link")
		}
		if c := creditOf(t, base, sender); c != 10_00 {
			t.Fatalf("the sender's credit after a refused send of %s: %s", tc.amount, c)
		}
		senderPage.pageDo(t, "clear the message", chromedp.Evaluate[chromedp.Void](`document.querySelector("#message").dataset.code = ""`))
	}
	senderPage.pageDo(t, "fill and send the packet",
		chromedp.SetValue(chromedp.CSS("#amount"), "3.00"),
		chromedp.SetValue(chromedp.CSS("#count"), "3"),
		chromedp.SetValue(chromedp.CSS("#greeting"), "恭喜发财"),
		chromedp.Click(chromedp.CSS("#send-button")))
	link := senderPage.pageWait(t, "the share link", jsShareLink)
	m := regexp.MustCompile(`^` + regexp.QuoteMeta(base) + `/redpacket\?packet=(\d+)$`).FindStringSubmatch(link)
	if m == nil {
		t.Fatalf("share link %q: want %s/redpacket?packet=<id> and nothing else (no user)", link, base)
	}
	packetID := m[1]
	// The copy button copies, or (where the browser does not allow it) selects the link.
	senderPage.pageDo(t, "copy the link", chromedp.Click(chromedp.CSS("#copy")))
	senderPage.pageWait(t, "the copy's answer", `document.querySelector("#copy-result")?.textContent ?? ""`)
	senderPage.pageEquals(t, "the sender's credit after sending", jsWallet, "7.00")
	if c := creditOf(t, base, sender); c != 7_00 {
		t.Fatalf("the sender's credit after sending 3.00 of 10.00: %s", c)
	}
	if det := readDetail(t, base, packetID); det.SenderID != sender || det.TotalAmount != 3_00 || det.Count != 3 ||
		det.Mode != "random" || det.Greeting != "恭喜发财" || det.State != "open" || len(det.Grabs) != 0 {
		t.Fatalf("detail of the packet sent in the page: %+v", det)
	}

	// The grabber follows the link and opens the packet.
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("userId", grabber)
	u.RawQuery = q.Encode()
	grabberPage.pageDo(t, "open the share link as the grabber", chromedp.Navigate(u.String()),
		chromedp.WaitVisible(chromedp.CSS("#who")))
	grabberPage.pageWait(t, "the grab button", jsGrabReady)
	greeting := grabberPage.pageWait(t, "the greeting", `document.querySelector("#packet-greeting")?.textContent ?? ""`)
	if greeting != "恭喜发财" {
		t.Errorf("the grab page shows greeting %q", greeting)
	}
	grabberPage.pageEquals(t, "the grabber's empty wallet", jsWallet, "0.00")
	grabberPage.pageDo(t, "open the packet", chromedp.Click(chromedp.CSS("#grab")))
	shown := grabberPage.pageWait(t, "the amount won", jsMyGrab)
	if code := grabberPage.pageWait(t, "the grab's code", `document.querySelector("#grab-result")?.dataset.code ?? ""`); code != "0000" {
		t.Errorf("the grab answered %s in the page", code)
	}
	det := readDetail(t, base, packetID)
	won, ok := det.grabOf(grabber)
	if !ok || won.String() != shown {
		t.Fatalf("the page shows %s won; the detail records %+v", shown, det.Grabs)
	}
	grabberPage.pageEquals(t, "the grab in the page's grab list",
		fmt.Sprintf(`document.querySelector('#grabs li.grab[data-user-id=%q]')?.dataset.amount ?? ""`, grabber), won.String())
	// The wallet is read after the green channel: the grab is credited by the time it answers.
	grabberPage.pageEquals(t, "the grabber's wallet in the page", jsWallet, won.String())
	if w := walletOf(t, base, grabber); w != won {
		t.Fatalf("the grabber's wallet: %s, want %s", w, won)
	}

	// Another user who already grabbed on another device opens the packet in a page that
	// does not know it yet: the page says already grabbed, with that grab's amount.
	q.Set("userId", other)
	u.RawQuery = q.Encode()
	grabberPage.pageDo(t, "open the share link as another user", chromedp.Navigate(u.String()),
		chromedp.WaitVisible(chromedp.CSS("#who")))
	grabberPage.pageWait(t, "the grab button for the other user", jsGrabReady)
	elsewhere := grabOnce(t, base, other, packetID)
	if elsewhere.code != "0000" {
		t.Fatalf("the other user's grab: %+v", elsewhere)
	}
	grabberPage.pageDo(t, "open the packet grabbed elsewhere", chromedp.Click(chromedp.CSS("#grab")))
	if code := grabberPage.pageWait(t, "the repeated grab's code", `document.querySelector("#grab-result")?.dataset.code ?? ""`); code != "0003" {
		t.Errorf("a grab made elsewhere answered %s in the page, want 0003", code)
	}
	if got := grabberPage.pageWait(t, "the amount grabbed elsewhere", jsMyGrab); got != elsewhere.amount.String() {
		t.Errorf("the page shows %s for a grab of %s", got, elsewhere.amount)
	}
	if txt := grabberPage.pageWait(t, "the already-grabbed sentence", `document.querySelector("#grab-result")?.textContent ?? ""`); !strings.Contains(txt, elsewhere.amount.String()) {
		t.Errorf("the page says %q for an already grabbed packet", txt)
	}

	// A second grab by the grabber is 0003 with the first amount and changes nothing.
	r := call(t, "POST", base+"/api/v1/demo/token", map[string]string{"userId": grabber})
	tok, err := dataOf[struct {
		Token string `json:"token"`
	}](r)
	if err != nil || r.Code != "0000" || tok.Token == "" {
		t.Fatalf("demo token: %+v %v", r, err)
	}
	r = call(t, "POST", base+"/api/v1/redpacket/grab_by_token", map[string]string{"packetId": packetID}, bearer(tok.Token))
	again, err := dataOf[struct {
		Amount money.Cents `json:"amount"`
	}](r)
	if err != nil || r.Code != "0003" || r.Status != 200 || again.Amount != won {
		t.Fatalf("second grab: %+v, want 0003 with %s", r, won)
	}
	if det := readDetail(t, base, packetID); det.GrabbedCount != 2 || det.RemainingCount != 1 {
		t.Fatalf("after a second grab the detail has %d grabbed and %d left, want 2 and 1", det.GrabbedCount, det.RemainingCount)
	}
	if w := walletOf(t, base, grabber); w != won {
		t.Fatalf("after a second grab the grabber's wallet is %s, want %s", w, won)
	}

	// The last item goes; the grabber reopens the link: their grab, no button, the luckiest.
	if g := grabOnce(t, base, last, packetID); g.code != "0000" {
		t.Fatalf("last grab: %+v", g)
	}
	q.Set("userId", grabber)
	u.RawQuery = q.Encode()
	grabberPage.pageDo(t, "reopen the link as the grabber", chromedp.Navigate(u.String()),
		chromedp.WaitVisible(chromedp.CSS("#who")))
	if got := grabberPage.pageWait(t, "the grabber's own grab", jsMyGrab); got != won.String() {
		t.Errorf("the reopened page shows my grab as %s, want %s", got, won)
	}
	det = readDetail(t, base, packetID)
	if det.Luckiest == nil || det.RemainingCount != 0 || len(det.Grabs) != 3 {
		t.Fatalf("detail of the emptied packet: %+v", det)
	}
	lucky := grabberPage.pageWait(t, "the luckiest grab marked",
		`(() => { const li = document.querySelector('#grabs li[data-luckiest="true"]'); return li ? li.dataset.userId + " " + li.dataset.amount : ""; })()`)
	if want := det.Luckiest.UserID + " " + det.Luckiest.Amount.String(); lucky != want {
		t.Errorf("the page marks %q luckiest, the detail %q", lucky, want)
	}
	rows := grabberPage.pageWait(t, "the grab list", `[...document.querySelectorAll("#grabs li.grab")].map(li => li.dataset.userId + " " + li.dataset.amount).join(",")`)
	var want []string
	var sum money.Cents
	for _, g := range det.Grabs {
		want = append(want, g.UserID+" "+g.Amount.String())
		sum += g.Amount
	}
	if rows != strings.Join(want, ",") || sum != 3_00 {
		t.Errorf("the page lists %q; the detail %q (sum %s)", rows, want, sum)
	}
	if shownBtn, err := chromedp.Run(grabberPage.ctx, chromedp.Evaluate[string](jsGrabReady)); err != nil || shownBtn != "" {
		t.Errorf("the grab button shows on an emptied packet the user grabbed (%v)", err)
	}
	if c := creditOf(t, base, sender); c != 7_00 {
		t.Errorf("the sender's credit at the end: %s, want 7.00", c)
	}
	senderPage.check(t)
	grabberPage.check(t)
}

// TestRedPacketPageBrowserRetry opens a packet whose hot state Redis has lost: the grab
// waits for the rebuild and answers ERR_RP_004 (retry) until it is done. The page retries
// once by itself; if that is still too early it says so and keeps the button, and a
// person's next tap gets the item. Whichever happens, the page ends showing the amount
// the detail records, never a final refusal, and logs no error.
func TestRedPacketPageBrowserRetry(t *testing.T) {
	page := newBrowser(t)
	d := newDeployment(t, "")
	_, base := d.start(t)
	packetID := d.sendPacket(t, base, "", "2.00", 2) // an operator packet: no credit needed
	user := testenv.Unique("rpr")
	// Redis loses the packet: only this deployment's keys, under its own prefix.
	keys := []string{"items", "grabs", "meta", "eligible"}
	for i, k := range keys {
		keys[i] = d.prefix + ":rp:{" + packetID + "}:" + k
	}
	if n, err := d.redis.Del(t.Context(), keys...).Result(); err != nil || n == 0 {
		t.Fatalf("delete the packet's hot state: %d keys, %v", n, err)
	}
	page.pageDo(t, "open the packet", chromedp.Navigate(base+"/redpacket?packet="+packetID+"&userId="+user),
		chromedp.WaitVisible(chromedp.CSS("#who")))
	var codes []string
	var shown string
	testenv.Eventually(t, time.Minute, "the page shows the grab", func() (bool, string) {
		if ready, err := chromedp.Run(page.ctx, chromedp.Evaluate[string](jsGrabReady)); err != nil {
			t.Fatal(err)
		} else if ready != "" {
			page.pageDo(t, "tap the grab button", chromedp.Click(chromedp.CSS("#grab")))
			answer := page.pageWait(t, "the grab's answer", `(() => { const b = document.querySelector("#grab"), r = document.querySelector("#grab-result");
				return b.disabled || !r.dataset.code ? "" : r.dataset.code + " after " + r.dataset.tries; })()`)
			codes = append(codes, answer)
			code, tries, _ := strings.Cut(answer, " after ")
			if code != "0000" && code != "ERR_RP_004" && code != "0009" {
				t.Fatalf("a grab of a packet being rebuilt answered %s in the page", code)
			}
			// The rebuild waits RecoverGrace, longer than a grab waits for it
			// (PublishTimeout): the first tap's request is answered ERR_RP_004, and the
			// page asks again once by itself.
			if len(codes) == 1 && tries != "2" {
				t.Errorf("the first tap sent %s requests, want the grab and one retry", tries)
			}
		}
		var err error
		shown, err = chromedp.Run(page.ctx, chromedp.Evaluate[string](jsMyGrab))
		if err != nil {
			t.Fatal(err)
		}
		return shown != "", fmt.Sprintf("answers %v", codes)
	})
	det := readDetail(t, base, packetID)
	if won, ok := det.grabOf(user); !ok || won.String() != shown {
		t.Fatalf("the page shows %s; the detail records %+v", shown, det.Grabs)
	}
	t.Logf("the page's answers to the taps: %v", codes)
	page.check(t)
}
