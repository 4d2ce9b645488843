package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/ident"
)

// adminPrefix is the path of the operator endpoints, all behind the admin token.
const adminPrefix = "/api/v1/admin/"

// errAdminToken answers a missing or wrong admin token: HTTP 401 with 0003, as API.md asks.
var errAdminToken = &apiError{status: http.StatusUnauthorized, code: CodeDuplicate, info: "管理员令牌缺失或错误"}

// admin wraps an operator endpoint so that it runs only with the admin token.
func (s *Server) admin(h handlerFunc) handlerFunc {
	return func(r *http.Request) (any, error) {
		if err := s.checkAdmin(r); err != nil {
			return nil, err
		}
		return h(r)
	}
}

// checkAdmin accepts "Authorization: Bearer <AdminToken>". It compares digests in
// constant time, so that neither the token's bytes nor its length leak through timing; an
// empty configured token refuses everything.
func (s *Server) checkAdmin(r *http.Request) error {
	if s.opts.AdminToken == "" {
		return errAdminToken
	}
	const scheme = "Bearer "
	h := r.Header.Get("Authorization")
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return errAdminToken
	}
	if !tokenEqual(h[len(scheme):], s.opts.AdminToken) {
		return errAdminToken
	}
	return nil
}

// tokenEqual compares a presented token with the configured one through their digests in
// constant time, so that neither the token's bytes nor its length leak through timing.
func tokenEqual(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// userSKURequest is the body part of the endpoints that name a user and a SKU.
type userSKURequest struct {
	UserID string `json:"userId"`
	SKU    ID     `json:"sku"`
}

// check refuses a bad user id or SKU with a 0002 that says why.
func (q userSKURequest) check() error {
	if err := checkUserID(q.UserID); err != nil {
		return err
	}
	if q.SKU <= 0 {
		return badParam(http.StatusOK, "sku must be a positive integer")
	}
	return nil
}

type rechargeRequest struct {
	userSKURequest
	OutBusinessNo string `json:"outBusinessNo"`
}

// recharge grants a SKU's count to a user through the normal recharge path; a repeated
// outBusinessNo is 0003 and changes nothing.
func (s *Server) recharge(r *http.Request) (any, error) {
	var req rechargeRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	if err := req.check(); err != nil {
		return nil, err
	}
	if err := checkID("outBusinessNo", req.OutBusinessNo, ident.MaxBusinessNo); err != nil {
		return nil, err
	}
	_, err := s.opts.Activities.Recharge(r.Context(), activity.RechargeRequest{
		UserID: req.UserID, SKU: int64(req.SKU), OutBusinessNo: req.OutBusinessNo,
	})
	if err != nil {
		return nil, err
	}
	return true, nil
}
