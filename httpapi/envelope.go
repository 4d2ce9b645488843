// Package httpapi serves big-market's HTTP contract: the {code, info, data} envelope,
// error-to-code mapping, CORS and the handlers.
package httpapi

import (
	"bytes"
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/nats-io/nats.go"
	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/flash"
	"github.com/bigmarket/bigmarket/gate"
	"github.com/bigmarket/bigmarket/guard"
	"github.com/bigmarket/bigmarket/outbox"
	"github.com/bigmarket/bigmarket/rain"
	"github.com/bigmarket/bigmarket/rebate"
	"github.com/bigmarket/bigmarket/redpacket"
	"github.com/bigmarket/bigmarket/strategy"
)

// Code is a big-market response code.
type Code string

// Response codes of API.md.
const (
	CodeSuccess             Code = "0000"
	CodeUnknown             Code = "0001"
	CodeIllegalParam        Code = "0002"
	CodeDuplicate           Code = "0003"
	CodeDegraded            Code = "0004"
	CodeRateLimited         Code = "0005"
	CodeTimeout             Code = "0006"
	CodeGateway             Code = "0007"
	CodeBadAppToken         Code = "0008"
	CodeBusy                Code = "0009"
	CodeRuleWeightEmpty     Code = "ERR_BIZ_001"
	CodeNotAssembled        Code = "ERR_BIZ_002"
	CodeActivityNotOpen     Code = "ERR_BIZ_003"
	CodeOutsideDates        Code = "ERR_BIZ_004"
	CodeSKUStockExhausted   Code = "ERR_BIZ_005"
	CodeTotalQuotaExhausted Code = "ERR_BIZ_006"
	CodeMonthQuotaExhausted Code = "ERR_BIZ_007"
	CodeDayQuotaExhausted   Code = "ERR_BIZ_008"
	CodeOrderUsed           Code = "ERR_BIZ_009"
	CodeSoldOut             Code = "ERR_BIZ_010"
	CodeAlreadyWon          Code = "ERR_BIZ_011"
	CodeBadDrawPath         Code = "ERR_BIZ_012"
	CodeConfigNotRange      Code = "ERR_CONFIG_001"
	CodeCreditInsufficient  Code = "ERR_CREDIT_001"
	CodeRedPacketEmpty      Code = "ERR_RP_001"
	CodeRedPacketClosed     Code = "ERR_RP_002"
	CodeRedPacketIneligible Code = "ERR_RP_003"
	CodeRedPacketRetry      Code = "ERR_RP_004"
	CodeRainNotStarted      Code = "ERR_RAIN_001"
	CodeRainEnded           Code = "ERR_RAIN_002"
	CodeRainCapReached      Code = "ERR_RAIN_003"
)

var infos = map[Code]string{
	CodeSuccess:             "成功",
	CodeUnknown:             "未知失败",
	CodeIllegalParam:        "非法参数",
	CodeDuplicate:           "唯一索引冲突",
	CodeDegraded:            "活动已降级",
	CodeRateLimited:         "访问限流拦截",
	CodeTimeout:             "超时",
	CodeGateway:             "网关异常",
	CodeBadAppToken:         "应用令牌错误",
	CodeBusy:                "系统繁忙，结果未知，请稍后重试",
	CodeRuleWeightEmpty:     "业务异常，策略规则中 rule_weight 权重规则已适用但未配置",
	CodeNotAssembled:        "策略未装配，请通过装配接口初始化",
	CodeActivityNotOpen:     "活动未开启（非open状态）",
	CodeOutsideDates:        "非活动日期范围",
	CodeSKUStockExhausted:   "活动库存不足",
	CodeTotalQuotaExhausted: "账户总额度不足",
	CodeMonthQuotaExhausted: "账户月额度不足",
	CodeDayQuotaExhausted:   "账户日额度不足",
	CodeOrderUsed:           "用户抽奖单已使用过，不可重复抽奖",
	CodeSoldOut:             "奖品已抽完，本次抽奖不计次数 (no award left to win; this draw is not counted)",
	CodeAlreadyWon:          "每位用户限中奖一次，您已中过奖 (one win per user: you already won in this activity)",
	CodeBadDrawPath:         "抽奖链接无效、已过期或已使用，请重新获取 (draw path missing, invalid, expired or used; get a new one)",
	CodeConfigNotRange:      "奖品配置不是一个范围值，如1,100",
	CodeCreditInsufficient:  "用户积分账户额度不足",
	CodeRedPacketEmpty:      "红包已抢完",
	CodeRedPacketClosed:     "红包已过期或已关闭",
	CodeRedPacketIneligible: "不在红包的领取名单内",
	CodeRedPacketRetry:      "红包暂不可用，请稍后重试",
	CodeRainNotStarted:      "红包雨尚未开始 (the rain session has not started)",
	CodeRainEnded:           "红包雨已结束或红包已抢完 (the rain session has ended or its pool is empty)",
	CodeRainCapReached:      "本场红包雨已达领取上限 (you have won this session's limit)",
}

// envelope is every response body.
type envelope struct {
	Code Code   `json:"code"`
	Info string `json:"info"`
	Data any    `json:"data"`
}

// apiError is a request that ends in a non-success code.
type apiError struct {
	status int
	code   Code
	info   string // empty: the code's standard text
	err    error  // cause, logged for internal errors
	data   any    // data answered with the code (a repeated grab's amount); usually nil
	// retryAfter, when positive, is sent as the Retry-After header (whole seconds,
	// rounded up): the system could not answer yet and the client may try again then.
	retryAfter time.Duration
}

// retryAfterer is an error that knows when a retry may succeed (the breaker's remaining
// open time, a rebuild's grace); classify puts it on the answer as Retry-After.
type retryAfterer interface {
	error
	RetryAfter() time.Duration
}

// defaultRetryAfter is the Retry-After of a system refusal (0006, 0009) whose error does
// not say better.
const defaultRetryAfter = time.Second

func (e *apiError) Error() string {
	if e.err != nil {
		return fmt.Sprintf("%s: %v", e.code, e.err)
	}
	return string(e.code) + ": " + e.info
}

func (e *apiError) Unwrap() error { return e.err }

// badParam is a 0002 with the given detail, shown to the client.
func badParam(status int, format string, args ...any) *apiError {
	return &apiError{status: status, code: CodeIllegalParam, info: infos[CodeIllegalParam] + ": " + fmt.Sprintf(format, args...)}
}

// errorCodes maps domain sentinels to codes; the first match wins, so the outcome of the
// request itself (a repeat, a used order, a quota or stock running out) comes before the
// state of the activity it names, and that before unknown ids and bad input. Business
// outcomes are HTTP 200, as in big-market.
var errorCodes = []struct {
	err    error
	status int
	code   Code
}{
	{guard.ErrDegraded, http.StatusOK, CodeDegraded},
	{guard.ErrRateLimited, http.StatusOK, CodeRateLimited},
	{guard.ErrTimeout, http.StatusOK, CodeTimeout},
	{guard.ErrOutcomeUnknown, http.StatusOK, CodeBusy},
	{gate.ErrBadPath, http.StatusOK, CodeBadDrawPath},
	{gate.ErrAlreadyWon, http.StatusOK, CodeAlreadyWon},
	{gate.ErrBusy, http.StatusOK, CodeBusy},
	{gate.ErrRebuilding, http.StatusOK, CodeBusy},
	{strategy.ErrSoldOut, http.StatusOK, CodeSoldOut},
	{strategy.ErrStockMissing, http.StatusOK, CodeBusy},
	{rain.ErrNotStarted, http.StatusOK, CodeRainNotStarted},
	{rain.ErrEnded, http.StatusOK, CodeRainEnded},
	{rain.ErrCapReached, http.StatusOK, CodeRainCapReached},
	{rain.ErrUnavailable, http.StatusOK, CodeBusy},
	{rain.ErrConflict, http.StatusOK, CodeBusy},
	{rain.ErrNotFound, http.StatusOK, CodeIllegalParam},
	{rain.ErrInvalid, http.StatusOK, CodeIllegalParam},
	{redpacket.ErrEmpty, http.StatusOK, CodeRedPacketEmpty},
	{redpacket.ErrClosed, http.StatusOK, CodeRedPacketClosed},
	{redpacket.ErrNotEligible, http.StatusOK, CodeRedPacketIneligible},
	{redpacket.ErrUnavailable, http.StatusOK, CodeRedPacketRetry},
	{redpacket.ErrAlreadyGrabbed, http.StatusOK, CodeDuplicate},
	{redpacket.ErrNotFound, http.StatusOK, CodeIllegalParam},
	{redpacket.ErrInvalid, http.StatusOK, CodeIllegalParam},
	{activity.ErrDuplicateOrder, http.StatusOK, CodeDuplicate},
	{rebate.ErrDuplicate, http.StatusOK, CodeDuplicate},
	{credit.ErrDuplicate, http.StatusOK, CodeDuplicate},
	{credit.ErrInsufficient, http.StatusOK, CodeCreditInsufficient},
	{activity.ErrOrderUsed, http.StatusOK, CodeOrderUsed},
	{activity.ErrDayQuotaExhausted, http.StatusOK, CodeDayQuotaExhausted},
	{activity.ErrMonthQuotaExhausted, http.StatusOK, CodeMonthQuotaExhausted},
	{activity.ErrTotalQuotaExhausted, http.StatusOK, CodeTotalQuotaExhausted},
	{activity.ErrStockUnknown, http.StatusOK, CodeBusy},
	{flash.ErrUnavailable, http.StatusOK, CodeBusy},
	{activity.ErrSKUStockExhausted, http.StatusOK, CodeSKUStockExhausted},
	{activity.ErrOutsideDates, http.StatusOK, CodeOutsideDates},
	{activity.ErrActivityNotOpen, http.StatusOK, CodeActivityNotOpen},
	{activity.ErrInvalidUserID, http.StatusOK, CodeIllegalParam},
	{activity.ErrInvalidBusinessNo, http.StatusOK, CodeIllegalParam},
	{activity.ErrSKUNotFound, http.StatusOK, CodeIllegalParam},
	{activity.ErrActivityNotFound, http.StatusOK, CodeIllegalParam},
	{activity.ErrNoStageActivity, http.StatusOK, CodeIllegalParam},
	{activity.ErrStageNotFound, http.StatusOK, CodeIllegalParam},
	{strategy.ErrStrategyNotFound, http.StatusOK, CodeIllegalParam},
	{strategy.ErrAwardNotFound, http.StatusOK, CodeIllegalParam},
	{strategy.ErrInvalidUnits, http.StatusOK, CodeIllegalParam},
	{activity.ErrInvalidUnits, http.StatusOK, CodeIllegalParam},
	{activity.ErrInvalidProvision, http.StatusOK, CodeIllegalParam},
	{rebate.ErrInvalid, http.StatusOK, CodeIllegalParam},
	{rebate.ErrNoRebate, http.StatusOK, CodeIllegalParam},
	{credit.ErrInvalidTrade, http.StatusOK, CodeIllegalParam},
	{outbox.ErrNoDeadLetter, http.StatusOK, CodeIllegalParam},
	{outbox.ErrUnknownStream, http.StatusOK, CodeIllegalParam},
	{gate.ErrInvalidSettings, http.StatusOK, CodeIllegalParam},
	{gate.ErrPathsOff, http.StatusOK, CodeIllegalParam},
	{award.ErrBadConfig, http.StatusOK, CodeConfigNotRange},
	{strategy.ErrRuleWeightMissing, http.StatusOK, CodeRuleWeightEmpty},
	{strategy.ErrInvalidTree, http.StatusOK, CodeNotAssembled},
	{strategy.ErrInvalidConfig, http.StatusOK, CodeNotAssembled},
}

// classify turns any error into the apiError to answer with. System refusals (0006
// timeout or breaker, 0009 busy) carry a Retry-After: the error's own when it has one,
// else defaultRetryAfter.
func classify(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	for _, m := range errorCodes {
		if errors.Is(err, m.err) {
			ae = &apiError{status: m.status, code: m.code, err: err}
			break
		}
	}
	if ae == nil && (timedOut(err) || unreachable(err)) {
		// A backend that did not answer in time may or may not have done what it was
		// asked (a stock script run after its client gave up): the outcome is unknown,
		// which is 0009 (retry), never an "unknown failure". So is a backend that
		// dropped the connection, refused it or is failing over: a retry can pass.
		ae = &apiError{status: http.StatusOK, code: CodeBusy, err: err}
	}
	if ae == nil {
		return &apiError{status: http.StatusInternalServerError, code: CodeUnknown, err: err}
	}
	if ra, ok := errors.AsType[retryAfterer](err); ok && ra.RetryAfter() > 0 {
		ae.retryAfter = ra.RetryAfter()
	} else if ae.code == CodeTimeout || ae.code == CodeBusy || ae.code == CodeRedPacketRetry {
		ae.retryAfter = defaultRetryAfter
	}
	return ae
}

// timedOut reports an error caused by a deadline: a network read or write that timed out
// (a Redis or database client's own timeout) or a context deadline.
func timedOut(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}

// unreachable reports an error of a backend that could not be reached or was lost in the
// middle of a call: a connection refused, reset or closed (a Redis master or a MariaDB
// server killed, a NATS server restarting), or a Redis Cluster answer that the slot has no
// writable master for the moment (a failover under way). A call that never reached the
// backend did nothing, one cut off may have done it: either way the answer is "retry".
func unreachable(err error) bool {
	for _, e := range unreachableErrs {
		if errors.Is(err, e) {
			return true
		}
	}
	if re, ok := errors.AsType[redisError](err); ok {
		msg := re.Error()
		for _, prefix := range redisRetryPrefixes {
			if strings.HasPrefix(msg, prefix) {
				return true
			}
		}
	}
	return false
}

// unreachableErrs are the errors of a connection lost or refused, from the operating
// system and the backends' clients.
var unreachableErrs = []error{
	syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE,
	io.EOF, io.ErrUnexpectedEOF, net.ErrClosed, // a server closing the connection mid-call
	driver.ErrBadConn, mysql.ErrInvalidConn,
	goredis.ErrClosed, goredis.ErrPoolTimeout,
	nats.ErrConnectionClosed, nats.ErrConnectionReconnecting, nats.ErrNoServers, nats.ErrNoResponders,
}

// redisError is an error reply from a Redis server (go-redis's proto.RedisError).
type redisError interface {
	error
	RedisError()
}

// redisRetryPrefixes are the error replies with which a Redis server says it cannot serve
// the slot or the write now but will: the cluster is re-forming, a replica is being
// promoted, the data set is loading, a read-only replica still answers as the old master.
var redisRetryPrefixes = []string{"CLUSTERDOWN", "TRYAGAIN", "LOADING", "READONLY", "MASTERDOWN", "NOREPLICAS"}

// retryAfterHeader renders d as whole seconds, rounded up, at least 1.
func retryAfterHeader(d time.Duration) string {
	return strconv.FormatInt(max(int64((d+time.Second-1)/time.Second), 1), 10)
}

// jsonContentType is the Content-Type of every envelope, one slice for all responses
// rather than one made by Header.Set for each. Sharing it is safe: net/http copies the
// header's values when the status is written, Set replaces a value's slice, and Add
// appends to a slice that is full, so that nobody writes into this one.
var jsonContentType = []string{"application/json;charset=utf-8"}

// encodedEnvelope is a whole success envelope encoded once, as writeJSON writes it: a
// handler returns it as its data for an answer that never changes, which is then written
// as it is instead of encoded again on every request. A pointer, so that returning it as
// an any costs nothing.
type encodedEnvelope struct{ b []byte }

// encodeSuccess returns the success envelope of data, encoded.
func encodeSuccess(data any) *encodedEnvelope {
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(envelope{Code: CodeSuccess, Info: infos[CodeSuccess], Data: data}); err != nil {
		panic(err) // a fixed value that does not encode is a bug
	}
	return &encodedEnvelope{b.Bytes()}
}

// writeJSON writes an envelope.
func writeJSON(w http.ResponseWriter, status int, env envelope) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(env)
}

// ID is a numeric id that clients may send as a JSON number or a numeric string, as
// big-market's Jackson binding accepts both.
type ID int64

// idType tells decodeJSON that a type error is ID's, whose Value says what was sent.
var idType = reflect.TypeFor[ID]()

// UnmarshalJSON accepts a decimal integer as a JSON number, 100006, or string, "100006";
// null and "" leave the id zero, that is absent. Anything else (a fraction, an exponent,
// a '+' sign, blanks, hexadecimal, a value beyond int64, a boolean, an object, an array)
// is a *json.UnmarshalTypeError whose Value says what was sent, so that decodeJSON can
// name the field and the problem.
func (id *ID) UnmarshalJSON(b []byte) error {
	// A plain number of up to 18 digits, as nearly every client sends, cannot overflow
	// and is read in place, without the copy to a string the cases below work on.
	if len(b) > 0 && len(b) <= 18 {
		var v int64
		for _, c := range b {
			if c < '0' || c > '9' {
				v = -1
				break
			}
			v = v*10 + int64(c-'0')
		}
		if v >= 0 {
			*id = ID(v)
			return nil
		}
	}
	refuse := func(what string) error {
		return &json.UnmarshalTypeError{Value: what, Type: idType}
	}
	text := string(b)
	switch {
	case text == "null":
		return nil
	case text == "":
		return refuse("nothing")
	case text[0] == 't' || text[0] == 'f':
		return refuse("a boolean")
	case text[0] == '{':
		return refuse("an object")
	case text[0] == '[':
		return refuse("an array")
	case text[0] == '"':
		if err := json.Unmarshal(b, &text); err != nil {
			return refuse("a malformed string")
		}
		if text == "" {
			return nil
		}
		if strings.TrimSpace(text) != text {
			return refuse("a string padded with blanks")
		}
	}
	digits := strings.TrimPrefix(text, "-")
	switch {
	case strings.HasPrefix(text, "+"):
		return refuse("a number with a '+' sign")
	case isDecimal(digits):
		v, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return refuse("an out-of-range number")
		}
		*id = ID(v)
		return nil
	case strings.HasPrefix(digits, "0x") || strings.HasPrefix(digits, "0X"):
		return refuse("a hexadecimal number")
	case strings.Trim(digits, "0123456789.eE+-") != "" || !isNumber(digits):
		return refuse("a non-numeric string")
	case strings.ContainsAny(digits, "eE"):
		return refuse("a number with an exponent")
	default:
		return refuse("a number with a decimal point")
	}
}

// isDecimal reports whether s is a non-empty run of ASCII digits.
func isDecimal(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// isNumber reports whether s, made of digits, dots, signs and exponents, is a number.
func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil || errors.Is(err, strconv.ErrRange)
}
