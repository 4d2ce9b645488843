package main

import (
	"context"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/bigmarket/bigmarket/httpapi"
	"github.com/bigmarket/bigmarket/internal/testenv"
)

// TestEmbeddedPagesTakeTheAppsToken runs the production handoff: a serve process in
// production mode names an embedding app's origin in BIGMARKET_WEB_EMBED_ORIGINS; the app
// frames a page whose URL names no user, waits for the page's "bigmarket:ready", posts it
// a user token, and the page, signed in as that user, says so back. Demo sign-in is off
// there: the demo token endpoint is the API's 404 and the page offers no sign-in box.
func TestEmbeddedPagesTakeTheAppsToken(t *testing.T) {
	b := newBrowser(t)
	d := newDeployment(t, "")
	user := testenv.Unique("embed")
	token := httpapi.SignToken([]byte(e2eJWTSecret), user, time.Now().Add(time.Hour))

	// The embedding app: another origin (another port) on the same host.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	appOrigin := "http://" + ln.Addr().String()
	var bmOrigin string // set before the app serves a page
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/favicon.ico" {
			w.Header().Set("Content-Type", "image/x-icon")
			return
		}
		page := r.URL.Query().Get("page")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"></head><body>
<p id="state">waiting</p>
<iframe id="bm" src="%s%s" width="412" height="800"></iframe>
<script>
const bm = %q, token = %q;
window.addEventListener("message", (ev) => {
  if (ev.origin !== bm) return;
  if (ev.data && ev.data.type === "bigmarket:ready") {
    document.getElementById("bm").contentWindow.postMessage({type: "bigmarket:token", token}, bm);
  }
  if (ev.data && ev.data.type === "bigmarket:signedIn") {
    document.getElementById("state").textContent = "signed in as " + ev.data.user;
  }
});
</script></body></html>`, html.EscapeString(bmOrigin), html.EscapeString(page), bmOrigin, token)
	})}
	go app.Serve(ln)
	t.Cleanup(func() { app.Close() })

	_, base := d.start(t, "BIGMARKET_MODE=production", "BIGMARKET_JWT_SECRET="+e2eJWTSecret,
		"BIGMARKET_WEB_EMBED_ORIGINS="+appOrigin)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	bmOrigin = u.Scheme + "://" + u.Host

	// Production refuses demo tokens.
	if r := call(t, "POST", base+"/api/v1/demo/token", map[string]any{"userId": user}); r.Status != http.StatusNotFound || r.Code != "0002" {
		t.Fatalf("demo token in production: %d %s", r.Status, r.Code)
	}

	for _, page := range []string{"/", "/rain", "/redpacket"} {
		ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
		var state string
		err := chromedp.Do(ctx, chromedp.Navigate(appOrigin+"/?page="+url.QueryEscape(page)))
		if err == nil {
			state, err = chromedp.Run(ctx, chromedp.Poll[string](`(() => { const s = document.getElementById("state").textContent;
				return s.startsWith("signed in") ? s : null; })()`))
		}
		cancel()
		if err != nil {
			b.check(t)
			t.Fatalf("%s in the app's frame: no sign-in: %v", page, err)
		}
		if want := "signed in as " + user; state != want {
			t.Errorf("%s: app reads %q, want %q", page, state, want)
		}
		if strings.Contains(page, "userId") {
			t.Errorf("the framed URL %s names a user", page)
		}
	}
	// Every request the framed page made with the token was answered (no 401s), and no
	// console error or CSP violation fired.
	b.check(t)
}
