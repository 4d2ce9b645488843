// Command bare is the ceiling of an HTTP figure: a net/http handler that answers every
// request with a fixed success envelope, driven by the same generator as the server
// (bench/sitting.sh builds and runs it). Usage: bare 127.0.0.1:18099
package main

import (
	"log"
	"net/http"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: bare ADDR")
	}
	body := []byte(`{"code":"0000","info":"成功","data":{"awardId":101,"awardTitle":"x","awardIndex":1}}`)
	log.Fatal(http.ListenAndServe(os.Args[1], http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})))
}
