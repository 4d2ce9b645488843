package httpapi

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"testing"
	"testing/iotest"
)

// TestReadBody checks that readBody reads what io.ReadAll reads, whatever length the
// body declares, and fails where it fails.
func TestReadBody(t *testing.T) {
	t.Parallel()
	const body = `{"userId":"u1","sessionId":42}`
	for _, declared := range []int64{-1, 0, 1, 10, int64(len(body)) - 1, int64(len(body)), int64(len(body)) + 1, 1000, exactBodyBytes, exactBodyBytes + 1} {
		for name, r := range map[string]func() io.Reader{
			"whole":       func() io.Reader { return strings.NewReader(body) },
			"byte a time": func() io.Reader { return iotest.OneByteReader(strings.NewReader(body)) },
			"eof at last": func() io.Reader { return iotest.DataErrReader(strings.NewReader(body)) },
		} {
			got, err := readBody(r(), declared)
			if err != nil || string(got) != body {
				t.Errorf("%s declaring %d: %q, %v; want the whole body", name, declared, got, err)
			}
		}
		if got, err := readBody(strings.NewReader(""), declared); err != nil || len(got) != 0 {
			t.Errorf("empty body declaring %d: %q, %v", declared, got, err)
		}
		broken := errors.New("connection reset")
		if _, err := readBody(io.MultiReader(strings.NewReader(body[:5]), iotest.ErrReader(broken)), declared); !errors.Is(err, broken) {
			t.Errorf("body failing after 5 bytes, declaring %d: %v; want its error", declared, err)
		}
	}
}

// TestIsOperatorPathFastWay checks that the way without path.Clean answers as the clean
// way does, on clean paths and on crafted ones.
func TestIsOperatorPathFastWay(t *testing.T) {
	t.Parallel()
	cleanWay := func(p string) bool {
		clean := path.Clean("/" + p)
		if !strings.HasSuffix(clean, "/") {
			clean += "/"
		}
		for _, prefix := range operatorPrefixes {
			if strings.HasPrefix(clean, prefix) {
				return true
			}
		}
		return false
	}
	paths := []string{"", "/", "/api", "/api/", "/api/v1/rain/grab", "/api/v1/admin", "/api/v1/admin/", "/api/v1/admin/rain/sessions",
		"/api/v1/adminx", "/api/v1/raffle/dcc", "/api/v1/raffle/dcc/query_config", "/api/v1/raffle/erp/", "/api/v1/raffle/erpx/",
		"api/v1/admin/", "//api/v1/admin/", "/api//v1/admin/x", "/api/v1/./admin/x", "/api/v1/x/../admin/dlq", "/api/v1/admin/..",
		"/api/v1/admin/.", "/api/v1/admin/x/..", "/api/v1/raffle/dcc/..", "/x/../api/v1/raffle/erp", "/api/v1/admin/.hidden",
		"/api/v1/rain/.well-known"}
	for _, p := range paths {
		for _, q := range []string{p, p + "/"} {
			if got, want := isOperatorPath(q), cleanWay(q); got != want {
				t.Errorf("isOperatorPath(%q) = %t, the clean way %t", q, got, want)
			}
		}
	}
	for _, prefix := range operatorPrefixes {
		if !strings.HasSuffix(prefix, "/") {
			t.Errorf("operator prefix %q does not end in a slash, which the fast way needs", prefix)
		}
	}
}

// TestDecodeBodyShortWay checks that decodeBody, which tries one json.Unmarshal first,
// answers as its long way alone does: the same acceptance, values and words.
func TestDecodeBodyShortWay(t *testing.T) {
	t.Parallel()
	type tap struct {
		UserID    string `json:"userId"`
		SessionID ID     `json:"sessionId"`
	}
	for _, body := range []string{`{"userId":"u1","sessionId":42}`, ` {"userId":"u1","sessionId":"42"} `, "\n{}\t", `{"userId":"u1"}{}`,
		`{"userId":"u1"} x`, `[]`, `"x"`, ``, ` `, `{"userId":1}`, `{"sessionId":1.5}`, `{"userId":"u1",}`, `{"userId":"u1","sessionId":42,"extra":[1]}`,
		`{"userId":"u1","sessionId":9223372036854775808}`, "{\"userId\":\"\xff\"}", `{"userId":"u1"`} {
		var got, want tap
		err := decodeBody([]byte(body), &got)
		wantErr := decodeBodyWorded([]byte(body), &want)
		if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) || (err == nil && got != want) {
			t.Errorf("decodeBody(%q) = %+v, %v; the long way %+v, %v", body, got, err, want, wantErr)
		}
	}
}

// TestRainMissEncodedOnce checks that the miss written from its encoding is the bytes
// writeJSON writes for it.
func TestRainMissEncodedOnce(t *testing.T) {
	t.Parallel()
	w := httptest.NewRecorder()
	writeJSON(w, http.StatusOK, envelope{Code: CodeSuccess, Info: infos[CodeSuccess], Data: rainGrabResponse{}})
	if got := string(rainMiss.b); got != w.Body.String() || !strings.Contains(got, `"data":{"won":false}`) {
		t.Errorf("miss encoded once %q, writeJSON writes %q", got, w.Body.String())
	}
	h := New(Options{Strategies: newFake(), Rains: &fakeRains{}, PlainUserEndpoints: true})
	req := httptest.NewRequest(http.MethodPost, "/api/v1/rain/grab", strings.NewReader(`{"userId":"unlucky","sessionId":42}`))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Body.String() != w.Body.String() || rec.Header().Get("Content-Type") != "application/json;charset=utf-8" ||
		rec.Header().Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("miss answered %d %q with %v", rec.Code, rec.Body.String(), rec.Header())
	}
}
