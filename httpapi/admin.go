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

type provisionRequest struct {
	ActivityID    ID       `json:"activityId"`
	SKU           ID       `json:"sku"`
	OutBusinessNo string   `json:"outBusinessNo"`
	Users         []string `json:"users"`
}

// provision recharges a SKU to many users in one request (bulk provisioning for load
// tests and campaigns): each user gets what admin/activity/recharge gives, under the
// out_business_no outBusinessNo_userId, so a repeated request recharges nobody twice. It
// answers {provisioned, repeated}. A bad request (no users, more than
// activity.MaxProvisionUsers, a user twice, a bad id) is 0002 and changes nothing; too
// little SKU stock for the users not yet recharged is ERR_SKU_STOCK and takes nothing.
func (s *Server) provision(r *http.Request) (any, error) {
	var req provisionRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.SKU <= 0 {
		return nil, badParam(http.StatusOK, "sku must be a positive integer")
	}
	if req.ActivityID < 0 {
		return nil, badParam(http.StatusOK, "activityId must be a positive integer")
	}
	if len(req.Users) == 0 || len(req.Users) > activity.MaxProvisionUsers {
		return nil, badParam(http.StatusOK, "users must list 1 to %d user ids", activity.MaxProvisionUsers)
	}
	for i, u := range req.Users {
		if err := checkUserID(u); err != nil {
			return nil, badParam(http.StatusOK, "users[%d]: %v", i, err)
		}
	}
	if err := checkID("outBusinessNo", req.OutBusinessNo, activity.MaxProvisionBatchNo); err != nil {
		return nil, err
	}
	return s.opts.Activities.Provision(r.Context(), activity.ProvisionRequest{
		ActivityID: int64(req.ActivityID), SKU: int64(req.SKU), BatchNo: req.OutBusinessNo, Users: req.Users,
	})
}
