// Command receiver is the award receiver of the cluster test (deploy/cluster-test): the
// operator's system that the serve nodes' webhook (BIGMARKET_WEBHOOK_URL) delivers the
// external awards to. It checks every delivery's signature with the shared secret (from
// BM_RECEIVER_SECRET) and its Idempotency-Key, answers 204 to a good one and 400 to a
// bad one, and counts them: GET /stats answers {"deliveries", "orders", "repeats", "bad"}.
//
//	BM_RECEIVER_SECRET=… receiver -addr 127.0.0.1:18130
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/bigmarket/bigmarket/webhook"
)

type receiver struct {
	secret string

	mu         sync.Mutex
	orders     map[string]int // deliveries by order id
	deliveries int
	bad        int
}

func (r *receiver) hook(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	var d webhook.Delivery
	ok := err == nil && webhook.Verify(r.secret, req.Header.Get(webhook.HeaderTimestamp), req.Header.Get(webhook.HeaderSignature), body) &&
		json.Unmarshal(body, &d) == nil && d.OrderID != "" && req.Header.Get(webhook.HeaderIdempotencyKey) == d.OrderID
	r.mu.Lock()
	defer r.mu.Unlock()
	if !ok {
		r.bad++
		http.Error(w, "bad delivery", http.StatusBadRequest)
		return
	}
	r.deliveries++
	r.orders[d.OrderID]++ // granted once per order id, however often delivered
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) stats(w http.ResponseWriter, _ *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	repeats := 0
	for _, n := range r.orders {
		repeats += n - 1
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]int{"deliveries": r.deliveries, "orders": len(r.orders), "repeats": repeats, "bad": r.bad})
}

func main() {
	addr := flag.String("addr", "127.0.0.1:18130", "listen address")
	flag.Parse()
	secret := os.Getenv("BM_RECEIVER_SECRET")
	if len(secret) < 16 {
		fmt.Fprintln(os.Stderr, "receiver: BM_RECEIVER_SECRET must hold the webhook secret (at least 16 characters)")
		os.Exit(2)
	}
	r := &receiver{secret: secret, orders: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hook", r.hook)
	mux.HandleFunc("GET /stats", r.stats)
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
