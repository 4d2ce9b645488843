// Package web serves the pages and static assets that the binary embeds, on the API's
// origin, with the cache headers and Content-Security-Policy the pages rely on.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var files embed.FS

// Pages maps each page path the binary serves to its HTML file under static/. The API
// mounts exactly these paths (and /static/) on this handler.
var Pages = map[string]string{
	"/":          "index.html",
	"/rain":      "rain.html",
	"/redpacket": "redpacket.html",
	"/admin":     "admin.html",
}

// contentTypes names the types of the files we embed; mime.TypeByExtension would read the
// system's tables, which differ between machines.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".json": "application/json",
}

// Assets are not fingerprinted (the committed source is what is served, with no build
// step to rename files), so they are cached for five minutes and then revalidated by their
// strong ETag: a deploy reaches every browser within that time, and a revalidation costs a
// 304. Pages are always revalidated, so a new page never pairs with stale assets for long.
const (
	assetCacheControl = "public, max-age=300"
	pageCacheControl  = "no-cache"
)

// file is one embedded file with its precomputed headers.
type file struct {
	body        []byte
	etag        string
	contentType string
	modTime     time.Time
}

// Options configures the handler.
type Options struct {
	// EmbedOrigins are the origins allowed to frame the pages (CSP frame-ancestors),
	// besides the page's own; BIGMARKET_WEB_EMBED_ORIGINS.
	EmbedOrigins []string
}

// Handler serves Pages and /static/ from the embedded files.
type Handler struct {
	files map[string]file // by name under static/
	csp   string
}

// New returns the handler with every file read and hashed once.
func New(opts Options) *Handler {
	h := &Handler{files: map[string]file{}, csp: CSP(opts.EmbedOrigins)}
	err := fs.WalkDir(files, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := contentTypes[path.Ext(p)]
		if ct == "" {
			ct = "application/octet-stream"
		}
		h.files[strings.TrimPrefix(p, "static/")] = file{body: b, etag: `"` + hex.EncodeToString(sum[:16]) + `"`, contentType: ct}
		return nil
	})
	if err != nil {
		panic("web: read embedded files: " + err.Error()) // the files are compiled in
	}
	return h
}

// CSP returns the Content-Security-Policy of every response: same-origin scripts, styles
// and connections only, no inline code, and framing by the page's own origin and the
// embed origins.
func CSP(embedOrigins []string) string {
	frame := "'self'"
	for _, o := range embedOrigins {
		if o = strings.TrimSpace(o); o != "" {
			frame += " " + o
		}
	}
	return "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors " + frame
}

// ServeHTTP serves a page or an asset; anything else is a plain 404.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", h.csp)
	hd.Set("X-Content-Type-Options", "nosniff")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name, cache := "", assetCacheControl
	if p, ok := Pages[r.URL.Path]; ok {
		name, cache = p, pageCacheControl
	} else if rest, ok := strings.CutPrefix(r.URL.Path, "/static/"); ok {
		name = rest
	}
	f, ok := h.files[name]
	if name == "" || !ok {
		http.NotFound(w, r)
		return
	}
	hd.Set("Cache-Control", cache)
	hd.Set("ETag", f.etag)
	if noneMatch(r.Header.Values("If-None-Match"), f.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hd.Set("Content-Type", f.contentType)
	http.ServeContent(w, r, "", f.modTime, bytes.NewReader(f.body))
}

// noneMatch reports whether an If-None-Match header names etag (or is "*"): RFC 9110
// compares weakly here, so W/"x" matches "x".
func noneMatch(values []string, etag string) bool {
	for _, v := range values {
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
			if t == "*" || t == etag {
				return true
			}
		}
	}
	return false
}
