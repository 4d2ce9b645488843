package web

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, path string, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestCSP(t *testing.T) {
	t.Parallel()
	base := "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors "
	for _, tc := range []struct {
		origins []string
		want    string
	}{
		{nil, base + "'self'"},
		{[]string{"https://a.example", " https://b.example ", ""}, base + "'self' https://a.example https://b.example"},
	} {
		if got := CSP(tc.origins); got != tc.want {
			t.Errorf("CSP(%q) = %q, want %q", tc.origins, got, tc.want)
		}
	}
}

func TestPageHeaders(t *testing.T) {
	t.Parallel()
	for page, module := range map[string]string{"/": "grid.js", "/rain": "rain.js"} {
		t.Run(page, func(t *testing.T) { checkPage(t, page, module) })
	}
}

func checkPage(t *testing.T, page, module string) {
	h := New(Options{EmbedOrigins: []string{"https://app.example"}})
	w := get(t, h, page, nil)
	if w.Code != http.StatusOK {
		t.Fatalf("GET %s: %d", page, w.Code)
	}
	if got, want := w.Header().Get("Content-Security-Policy"), CSP([]string{"https://app.example"}); got != want {
		t.Errorf("CSP %q, want %q", got, want)
	}
	if !strings.HasSuffix(w.Header().Get("Content-Security-Policy"), "frame-ancestors 'self' https://app.example") {
		t.Errorf("frame-ancestors missing the embed origin: %q", w.Header().Get("Content-Security-Policy"))
	}
	for k, want := range map[string]string{
		"X-Content-Type-Options": "nosniff",
		"Content-Type":           "text/html; charset=utf-8",
		"Cache-Control":          "no-cache",
	} {
		if got := w.Header().Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	body := w.Body.String()
	if !strings.Contains(body, `src="/static/`+module+`"`) {
		t.Errorf("page does not load its module")
	}
	// The CSP forbids inline code: every script has a src and no element has a style.
	if strings.Contains(body, "<script>") || strings.Contains(body, "style=") || strings.Contains(body, "<style") || strings.Contains(body, "onclick") {
		t.Errorf("page has inline script or style")
	}
	// A favicon request would be a failed request: the page names an empty one.
	if !strings.Contains(body, `<link rel="icon" href="data:,">`) {
		t.Errorf("page without the empty favicon")
	}
	// Every asset the page names is served.
	for _, ref := range regexp.MustCompile(`(?:src|href)="(/static/[^"]+)"`).FindAllStringSubmatch(body, -1) {
		if w := get(t, h, ref[1], nil); w.Code != http.StatusOK {
			t.Errorf("%s names %s: %d", page, ref[1], w.Code)
		}
	}
}

func TestAssetETag(t *testing.T) {
	t.Parallel()
	h := New(Options{})
	w := get(t, h, "/static/rain.js", nil)
	if w.Code != http.StatusOK || w.Body.Len() == 0 {
		t.Fatalf("GET rain.js: %d, %d bytes", w.Code, w.Body.Len())
	}
	etag := w.Header().Get("ETag")
	if !strings.HasPrefix(etag, `"`) || len(etag) != 34 {
		t.Fatalf("ETag %q is not a strong content hash", etag)
	}
	for k, want := range map[string]string{
		"Content-Type":           "text/javascript; charset=utf-8",
		"Cache-Control":          "public, max-age=300",
		"X-Content-Type-Options": "nosniff",
	} {
		if got := w.Header().Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if w.Header().Get("Content-Security-Policy") == "" {
		t.Error("asset without CSP")
	}
	if css := get(t, h, "/static/rain.css", nil); css.Header().Get("ETag") == etag {
		t.Error("two files share an ETag")
	}
	for _, inm := range []string{etag, "W/" + etag, `"other", ` + etag, "*"} {
		w := get(t, h, "/static/rain.js", map[string]string{"If-None-Match": inm})
		if w.Code != http.StatusNotModified || w.Body.Len() != 0 {
			t.Errorf("If-None-Match %s: %d with %d bytes, want 304 and none", inm, w.Code, w.Body.Len())
		}
		if w.Header().Get("ETag") != etag || w.Header().Get("Cache-Control") == "" {
			t.Errorf("304 without ETag or Cache-Control")
		}
	}
	if w := get(t, h, "/static/rain.js", map[string]string{"If-None-Match": `"stale"`}); w.Code != http.StatusOK || w.Body.Len() == 0 {
		t.Errorf("stale If-None-Match: %d", w.Code)
	}
	if w := get(t, h, "/rain", map[string]string{"If-None-Match": get(t, h, "/rain", nil).Header().Get("ETag")}); w.Code != http.StatusNotModified {
		t.Errorf("page revalidation: %d, want 304", w.Code)
	}
}

func TestUnknown(t *testing.T) {
	t.Parallel()
	h := New(Options{})
	for _, p := range []string{"/static/nope.js", "/static/", "/static/../web.go", "/nope", "/rain/x", "/static/rain.html/x", "/index.html", "//"} {
		w := get(t, h, p, nil)
		if w.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, w.Code)
		}
		if w.Header().Get("X-Content-Type-Options") != "nosniff" || w.Header().Get("Content-Security-Policy") == "" {
			t.Errorf("GET %s: 404 without security headers", p)
		}
	}
	r := httptest.NewRequest(http.MethodPost, "/rain", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /rain: %d, want 405", w.Code)
	}
}

// TestPagesLoadOnlyWhatIsServed checks every page: served as HTML with no inline script or
// style (the CSP forbids them), the "data:," icon (no favicon request that would fail),
// and every /static/ file it or its modules name served too.
func TestPagesLoadOnlyWhatIsServed(t *testing.T) {
	t.Parallel()
	h := New(Options{})
	ref := regexp.MustCompile(`(?:src|href)="(/static/[^"]+)"|from "(/static/[^"]+)"`)
	handler := regexp.MustCompile(`\son[a-z]+=`)
	for page := range Pages {
		w := get(t, h, page, nil)
		if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "text/html; charset=utf-8" {
			t.Fatalf("GET %s: %d %s", page, w.Code, w.Header().Get("Content-Type"))
		}
		body := w.Body.String()
		if strings.Contains(body, "<script>") || strings.Contains(body, "style=") || strings.Contains(body, "<style") || handler.MatchString(body) {
			t.Errorf("%s has inline script or style", page)
		}
		if !strings.Contains(body, `<link rel="icon" href="data:,">`) {
			t.Errorf("%s does not set the data:, icon", page)
		}
		seen := map[string]bool{}
		queue := []string{body}
		for len(queue) > 0 {
			text := queue[0]
			queue = queue[1:]
			for _, m := range ref.FindAllStringSubmatch(text, -1) {
				p := m[1] + m[2]
				if seen[p] {
					continue
				}
				seen[p] = true
				a := get(t, h, p, nil)
				if a.Code != http.StatusOK {
					t.Errorf("%s names %s: %d", page, p, a.Code)
					continue
				}
				if strings.HasSuffix(p, ".js") {
					queue = append(queue, a.Body.String())
				}
			}
		}
		if len(seen) < 2 {
			t.Errorf("%s names %v: want its module and stylesheet", page, seen)
		}
	}
}

// TestAdminPage checks the console as served: its module and the modules it imports are
// embedded, nothing is inline (the CSP would refuse it), and its script keeps the admin
// token out of storage, cookies and URLs.
func TestAdminPage(t *testing.T) {
	t.Parallel()
	h := New(Options{})
	w := get(t, h, "/admin", nil)
	if w.Code != http.StatusOK || w.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("GET /admin: %d, Cache-Control %q", w.Code, w.Header().Get("Cache-Control"))
	}
	page := w.Body.String()
	for _, want := range []string{`src="/static/admin.js"`, `href="/static/admin.css"`, `type="password"`} {
		if !strings.Contains(page, want) {
			t.Errorf("/admin lacks %s", want)
		}
	}
	if strings.Contains(page, "<script>") || strings.Contains(page, "style=") || strings.Contains(page, "<style") || strings.Contains(page, "onclick") {
		t.Errorf("/admin has inline script or style")
	}
	js := get(t, h, "/static/admin.js", nil).Body.String()
	for _, mod := range []string{"/static/common.js", "/static/chart.js"} {
		if !strings.Contains(js, `from "`+mod+`"`) {
			t.Errorf("admin.js does not import %s", mod)
		}
		if w := get(t, h, mod, nil); w.Code != http.StatusOK || w.Header().Get("Content-Type") != "text/javascript; charset=utf-8" {
			t.Errorf("GET %s: %d %q", mod, w.Code, w.Header().Get("Content-Type"))
		}
	}
	for _, banned := range []string{"localStorage", "sessionStorage", "document.cookie", "innerHTML", "history.pushState", "location.hash"} {
		if strings.Contains(js, banned) {
			t.Errorf("admin.js uses %s", banned)
		}
	}
}

// TestAdminTextKeys checks that every [data-t] key of the console's page has a text in
// both languages of admin.js (a missing one would leave the other language's words).
func TestAdminTextKeys(t *testing.T) {
	t.Parallel()
	h := New(Options{})
	page := get(t, h, "/admin", nil).Body.String()
	js := get(t, h, "/static/admin.js", nil).Body.String()
	zh, en, ok := strings.Cut(js, "\n  en: {")
	if !ok {
		t.Fatal("admin.js has no en texts")
	}
	rest := page
	n := 0
	for {
		_, after, found := strings.Cut(rest, `data-t="`)
		if !found {
			break
		}
		key, tail, _ := strings.Cut(after, `"`)
		rest = tail
		n++
		for lang, texts := range map[string]string{"zh": zh, "en": en} {
			if !strings.Contains(texts, " "+key+": ") {
				t.Errorf("data-t %q has no %s text", key, lang)
			}
		}
	}
	if n < 20 {
		t.Errorf("only %d data-t keys found", n)
	}
}
