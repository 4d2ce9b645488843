package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/bigmarket/bigmarket/internal/testenv"
)

// chromiumPath finds Debian's chromium; without it the browser tests fail in CI (.ci/run
// installs it) and skip elsewhere.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not on PATH: the browser tests need it in CI (.ci/run installs it with apt)")
	}
	t.Skip("chromium is not on PATH")
	return ""
}

// browser is a headless chromium tab that records every console error, uncaught exception,
// failed request and answer ≥ 400, and leaves a screenshot when the test fails.
type browser struct {
	ctx      context.Context
	mu       sync.Mutex
	problems []string
}

// browserSeq numbers the browsers, so that their screenshots do not overwrite each other.
var browserSeq atomic.Int64

func newBrowser(t *testing.T) *browser {
	t.Helper()
	exe := chromiumPath(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(412, 915)) // a phone's viewport
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	b := &browser{}
	// The listener runs on the tab's reading goroutine: it only notes what it sees.
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithListener(func(ev any) {
		var p string
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var args []string
				for _, a := range ev.Args {
					args = append(args, fmt.Sprintf("%s%s", a.Value, a.Description))
				}
				p = "console " + string(ev.Type) + ": " + strings.Join(args, " ")
			}
		case *runtime.EventExceptionThrown:
			p = "exception: " + ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				p += " " + ev.ExceptionDetails.Exception.Description
			}
		case *network.EventLoadingFailed:
			p = fmt.Sprintf("request failed: %s %s", ev.ErrorText, ev.BlockedReason)
		case *network.EventResponseReceived:
			if ev.Response != nil && ev.Response.Status >= 400 {
				p = fmt.Sprintf("HTTP %d %s", ev.Response.Status, ev.Response.URL)
			}
		}
		if p != "" {
			b.mu.Lock()
			b.problems = append(b.problems, p)
			b.mu.Unlock()
		}
	}))
	b.ctx = ctx
	seq := browserSeq.Add(1)
	// The first call starts the browser, which lives as long as ctx: no timeout on it.
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		cancelTab()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			// Quality 100 is a PNG; each browser of a test writes its own file.
			if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
				path := filepath.Join(t.ArtifactDir(), fmt.Sprintf("screenshot-%d.png", seq))
				if err := os.WriteFile(path, png, 0o644); err == nil {
					t.Logf("screenshot: %s (kept with go test -artifacts)", path)
				}
			}
		}
		cancelTab()
		cancelAlloc()
	})
	return b
}

// check fails the test on every problem the page has had.
func (b *browser) check(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		t.Errorf("page: %s", p)
	}
}

// pageWin is a win as the rain page lists it.
type pageWin struct {
	SessionID string `json:"sessionId"`
	N         string `json:"n"`
	Kind      string `json:"kind"`
	Amount    string `json:"amount"`
	SKU       string `json:"sku"`
	AwardID   string `json:"awardId"`
}

// TestRainPageBrowser signs in on /rain as a demo user through the query string, waits for
// a short session to go live on the server's clock, taps falling packets until a win shows,
// and checks that the page's win is the one rain/wins records; the page may log no error
// and no request may fail.
func TestRainPageBrowser(t *testing.T) {
	b := newBrowser(t)
	d := newDeployment(t, "")
	_, base := d.start(t)
	start := time.Now().Add(2 * time.Second)
	end := start.Add(10 * time.Second)
	id := createRain(t, base, d.adminToken, fmt.Sprintf(`{"title":"浏览器红包雨","startTime":%d,"endTime":%d,"userCap":2,
		"prizes":[{"kind":"cash","amount":"1.00","count":200},{"kind":"cash","min":"0.50","max":"2.00","count":100}]}`,
		start.UnixMilli(), end.UnixMilli()))
	user := testenv.Unique("web")

	open, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	err := chromedp.Do(open, chromedp.Navigate(base+"/rain?userId="+user),
		chromedp.WaitVisible(chromedp.CSS("#who")), chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#sessions li[data-session-id="%d"]`, id))))
	cancel()
	if err != nil {
		b.check(t)
		t.Fatalf("open /rain: %v", err)
	}
	// Reported, not asserted: a time depends on the machine.
	if fcp, err := chromedp.Run(b.ctx, chromedp.Evaluate[float64](`performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? -1`)); err == nil {
		t.Logf("/rain first contentful paint: %.0f ms", fcp)
	}
	// The rain starts when the page's server clock says so; tap whatever packet is falling
	// (a pointerdown, as a finger's) until a win is listed or the session is over.
	const tapJS = `(() => { const p = document.querySelector("#sky .packet");
		if (p) p.dispatchEvent(new PointerEvent("pointerdown", {bubbles: true}));
		return document.querySelectorAll("#wins li.win").length; })()`
	deadline := end.Add(3 * time.Second)
	var listed int
	for listed == 0 && time.Now().Before(deadline) {
		var err error
		if listed, err = chromedp.Run(b.ctx, chromedp.Evaluate[int](tapJS)); err != nil {
			t.Fatalf("tap: %v", err)
		}
		if listed == 0 {
			time.Sleep(100 * time.Millisecond) // the pace of a finger, not a wait for an effect
		}
	}
	if listed == 0 {
		b.check(t)
		t.Fatal("no win showed in the page before the session ended")
	}
	shown, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]pageWin](`[...document.querySelectorAll("#wins li.win")].map(li => ({...li.dataset}))`))
	if err != nil {
		t.Fatal(err)
	}
	recorded, err := dataOf[[]rainTap](call(t, "GET", fmt.Sprintf("%s/api/v1/rain/wins?userId=%s&sessionId=%d", base, user, id), nil))
	if err != nil {
		t.Fatalf("rain/wins: %v", err)
	}
	for _, w := range shown {
		if w.SessionID != fmt.Sprint(id) || w.Kind != "cash" {
			t.Errorf("page shows %+v, not a cash win of session %d", w, id)
			continue
		}
		found := false
		for _, r := range recorded {
			if fmt.Sprint(r.N) == w.N && r.Kind == w.Kind && r.Amount != nil && r.Amount.String() == w.Amount {
				found = true
			}
		}
		if !found {
			t.Errorf("page shows win %+v, rain/wins records %+v", w, recorded)
		}
	}
	t.Logf("page shows %+v; rain/wins records %d", shown, len(recorded))
	if len(recorded) < len(shown) {
		t.Errorf("page shows %d wins, rain/wins records %d", len(shown), len(recorded))
	}
	b.check(t)
}
