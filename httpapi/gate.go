package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/bigmarket/bigmarket/gate"
)

// drawGate is what the settings, draw path and signed draw endpoints need of package gate.
type drawGate interface {
	Settings(ctx context.Context, activityID int64) (gate.Settings, error)
	SaveSettings(ctx context.Context, s gate.Settings) error
	IssuePath(ctx context.Context, userID string, activityID int64) (gate.Path, error)
	// CheckPath admits a draw by its signature, empty for the plain draw.
	CheckPath(ctx context.Context, userID string, activityID int64, signature string) error
}

// settingsBody is an activity's settings as the admin endpoints take and answer them.
type settingsBody struct {
	ActivityID        int64 `json:"activityId"`
	OneWin            bool  `json:"oneWin"`
	SignedPath        bool  `json:"signedPath"`
	PathWindowSeconds int64 `json:"pathWindowSeconds"`
}

func settingsOut(s gate.Settings) settingsBody {
	return settingsBody{ActivityID: s.ActivityID, OneWin: s.OneWin, SignedPath: s.SignedPath,
		PathWindowSeconds: int64(s.PathWindow / time.Second)}
}

// queryActivitySettings answers an activity's settings (the defaults without a row).
func (s *Server) queryActivitySettings(r *http.Request) (any, error) {
	id, err := queryID(r, "activityId")
	if err != nil {
		return nil, err
	}
	st, err := s.opts.Gate.Settings(r.Context(), id)
	if err != nil {
		return nil, err
	}
	return settingsOut(st), nil
}

// saveActivitySettings sets an activity's settings. A field left out keeps its value
// (the default for an activity without a row); the result is checked as a whole, and a
// refused request changes nothing.
func (s *Server) saveActivitySettings(r *http.Request) (any, error) {
	var req struct {
		ActivityID        ID     `json:"activityId"`
		OneWin            *bool  `json:"oneWin"`
		SignedPath        *bool  `json:"signedPath"`
		PathWindowSeconds *int64 `json:"pathWindowSeconds"`
	}
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.ActivityID <= 0 {
		return nil, badParam(http.StatusOK, "activityId must be a positive integer")
	}
	if req.OneWin == nil && req.SignedPath == nil && req.PathWindowSeconds == nil {
		return nil, badParam(http.StatusOK, "name at least one of oneWin, signedPath, pathWindowSeconds")
	}
	const maxWindow = int64(gate.MaxPathWindow / time.Second)
	if w := req.PathWindowSeconds; w != nil && (*w < 0 || *w > maxWindow) {
		return nil, badParam(http.StatusOK, "pathWindowSeconds must be an integer from 0 to %d", maxWindow)
	}
	st, err := s.opts.Gate.Settings(r.Context(), int64(req.ActivityID))
	if err != nil {
		return nil, err
	}
	if req.OneWin != nil {
		st.OneWin = *req.OneWin
	}
	if req.SignedPath != nil {
		st.SignedPath = *req.SignedPath
	}
	if req.PathWindowSeconds != nil {
		st.PathWindow = time.Duration(*req.PathWindowSeconds) * time.Second
	}
	if err := st.Validate(); err != nil {
		return nil, badParam(http.StatusOK, "%s", validationDetail(err))
	}
	if err := s.opts.Gate.SaveSettings(r.Context(), st); err != nil {
		return nil, err
	}
	return settingsOut(st), nil
}

// validationDetail is the client's part of a gate.ErrInvalidSettings error: its text
// before the sentinel's.
func validationDetail(err error) string {
	msg, suffix := err.Error(), ": "+gate.ErrInvalidSettings.Error()
	if len(msg) > len(suffix) && msg[len(msg)-len(suffix):] == suffix {
		return msg[:len(msg)-len(suffix)]
	}
	return msg
}

type drawPathResponse struct {
	Path      string `json:"path"`
	ExpiresAt int64  `json:"expiresAt"` // Unix milliseconds
}

// drawPath hands the token's user a signed draw path of the activity.
func (s *Server) drawPath(r *http.Request) (any, error) {
	userID, _ := tokenUser(r.Context())
	if err := checkUserID(userID); err != nil {
		return nil, err
	}
	id, err := queryID(r, "activityId")
	if err != nil {
		return nil, err
	}
	p, err := s.opts.Gate.IssuePath(r.Context(), userID, id)
	if err != nil {
		return nil, err
	}
	return drawPathResponse{Path: p.Path, ExpiresAt: p.ExpiresAt.UnixMilli()}, nil
}

// signedDraw is the draw through a signed path: the plain draw's body, the path's
// signature checked first.
func (s *Server) signedDraw(r *http.Request) (any, error) {
	return s.drawWith(r, r.PathValue("signature"))
}
