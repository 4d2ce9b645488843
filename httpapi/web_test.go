package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/web"
)

func TestDemoToken(t *testing.T) {
	t.Parallel()
	demo := New(Options{Strategies: newFake(), JWTSecret: testSecret, DemoTokens: true, Now: func() time.Time { return testNow }})
	r := do(t, demo, http.MethodPost, "/api/v1/demo/token", "application/json", []byte(`{"userId":"xiaofuge"}`))
	if r.status != http.StatusOK || r.Code != "0000" {
		t.Fatalf("demo token: %d %s %s", r.status, r.Code, r.Info)
	}
	var data demoTokenResponse
	if err := json.Unmarshal(r.Data, &data); err != nil {
		t.Fatal(err)
	}
	v := tokenVerifier{secret: testSecret, now: func() time.Time { return testNow.Add(demoTokenTTL - time.Second) }}
	if user, err := v.verify(data.Token); err != nil || user != "xiaofuge" {
		t.Fatalf("minted token: user %q err %v", user, err)
	}
	v.now = func() time.Time { return testNow.Add(demoTokenTTL + time.Second) }
	if _, err := v.verify(data.Token); err == nil {
		t.Error("minted token outlives its TTL")
	}
	for _, body := range []string{`{}`, `{"userId":""}`, `{"userId":1}`, `not json`} {
		if r := do(t, demo, http.MethodPost, "/api/v1/demo/token", "application/json", []byte(body)); r.Code != "0002" {
			t.Errorf("demo token %s: code %s, want 0002", body, r.Code)
		}
	}

	// Production (DemoTokens off) answers the path as any unknown endpoint: 404, 0002.
	prod := New(Options{Strategies: newFake(), JWTSecret: testSecret, Now: func() time.Time { return testNow }})
	unknown := do(t, prod, http.MethodPost, "/api/v1/no/such", "application/json", []byte(`{}`))
	r = do(t, prod, http.MethodPost, "/api/v1/demo/token", "application/json", []byte(`{"userId":"xiaofuge"}`))
	if r.status != http.StatusNotFound || r.Code != "0002" || r.status != unknown.status || r.Code != unknown.Code {
		t.Fatalf("production demo token: %d %s, want 404 0002", r.status, r.Code)
	}
	if string(r.Data) != "null" && len(r.Data) != 0 {
		t.Errorf("production demo token leaked data %s", r.Data)
	}
}

func TestWebMounted(t *testing.T) {
	t.Parallel()
	s := New(Options{Strategies: newFake(), Web: web.New(web.Options{})})
	for _, p := range []string{"/", "/rain", "/static/rain.js", "/static/rain.css", "/static/grid.js", "/static/grid.css"} {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Security-Policy") == "" || rec.Header().Get("ETag") == "" {
			t.Errorf("GET %s: %d, CSP %q ETag %q", p, rec.Code, rec.Header().Get("Content-Security-Policy"), rec.Header().Get("ETag"))
		}
	}
	// "/" is the 9-grid page and only "/": other unknown paths, and / with another
	// method, stay the API's 404 envelope; unknown assets are 404.
	if rec := httptest.NewRecorder(); true {
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "/", nil))
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "text/html; charset=utf-8" {
			t.Errorf("HEAD /: %d %q", rec.Code, rec.Header().Get("Content-Type"))
		}
	}
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/nope"}, {http.MethodGet, "/index.html"}, {http.MethodGet, "/rain/x"}, {http.MethodGet, "/api/"},
		{http.MethodGet, "/api/v1/nope"}, {http.MethodPost, "/"}, {http.MethodDelete, "/"},
	} {
		if r := do(t, s, tc.method, tc.path, "", nil); r.status != http.StatusNotFound || r.Code != "0002" {
			t.Errorf("%s %s: %d %s, want the 404 envelope", tc.method, tc.path, r.status, r.Code)
		}
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/static/nope.js", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("unknown asset: %d", rec.Code)
	}
	// Without Web the pages are unknown paths.
	for _, p := range []string{"/", "/rain"} {
		if r := do(t, New(Options{Strategies: newFake()}), http.MethodGet, p, "", nil); r.status != http.StatusNotFound || r.Code != "0002" {
			t.Errorf("GET %s without Web: %d %s", p, r.status, r.Code)
		}
	}
}

func TestWebConfig(t *testing.T) {
	t.Parallel()
	now := func() time.Time { return testNow }
	demo := New(Options{Strategies: newFake(), JWTSecret: testSecret, DemoTokens: true, Now: now, Web: web.New(web.Options{})})
	r := do(t, demo, http.MethodGet, "/api/v1/web/config", "", nil)
	if r.Code != "0000" || string(r.Data) != fmt.Sprintf(`{"demo":true,"embedOrigins":[],"serverTime":%d}`, testNow.UnixMilli()) {
		t.Errorf("demo config: %s %s", r.Code, r.Data)
	}
	origins := []string{"https://app.example"}
	prod := New(Options{Strategies: newFake(), JWTSecret: testSecret, EmbedOrigins: origins, Now: now, Web: web.New(web.Options{EmbedOrigins: origins})})
	r = do(t, prod, http.MethodGet, "/api/v1/web/config", "", nil)
	if r.Code != "0000" || string(r.Data) != fmt.Sprintf(`{"demo":false,"embedOrigins":["https://app.example"],"serverTime":%d}`, testNow.UnixMilli()) {
		t.Errorf("production config: %s %s", r.Code, r.Data)
	}
}
