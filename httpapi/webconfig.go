package httpapi

import (
	"net/http"
	"time"
)

// webConfigResponse is what the pages need to know before they sign anyone in.
type webConfigResponse struct {
	// Demo is true when POST /api/v1/demo/token mints tokens; in production the page
	// waits for the embedding app to hand it a token by postMessage.
	Demo bool `json:"demo"`
	// EmbedOrigins are the origins whose postMessage the page accepts a token from (and
	// that may frame it): BIGMARKET_WEB_EMBED_ORIGINS.
	EmbedOrigins []string `json:"embedOrigins"`
	ServerTime   int64    `json:"serverTime"` // unix ms
}

// webConfig answers GET /api/v1/web/config: public, as the pages read it before sign-in.
func (s *Server) webConfig(r *http.Request) (any, error) {
	now := time.Now
	if s.opts.Now != nil {
		now = s.opts.Now
	}
	origins := s.opts.EmbedOrigins
	if origins == nil {
		origins = []string{}
	}
	return webConfigResponse{Demo: s.opts.DemoTokens && len(s.opts.JWTSecret) > 0, EmbedOrigins: origins, ServerTime: now().UnixMilli()}, nil
}
