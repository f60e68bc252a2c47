package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/zhimaq/zhimaq/internal/zhima"
)

// maxAdminBytes bounds an admin request body.
const maxAdminBytes = 1 << 16

func (s *Server) serveStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}

func (s *Server) serveGetFaults(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Faults())
}

// servePutFaults replaces the faults with the JSON body; fields left out are
// zero. Unknown fields, bad JSON and out-of-range values are refused with 400
// and the faults stay as they were.
func (s *Server) servePutFaults(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAdminBytes))
	if err != nil {
		adminError(w, http.StatusBadRequest, "faults: cannot read the body: "+err.Error())
		return
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var f Faults
	if err := dec.Decode(&f); err != nil {
		adminError(w, http.StatusBadRequest, fmt.Sprintf("faults: body is not a Faults JSON object (%v); fields: system_error_rate, unavailable_rate, http_502_rate, hang_rate, bad_sign_rate, rogue_cert_rate (0..1, certificate mode only), latency (\"100ms\")", err))
		return
	}
	if dec.More() {
		adminError(w, http.StatusBadRequest, "faults: body holds more than one JSON value")
		return
	}
	if err := s.validFaults(f); err != nil {
		adminError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.SetFaults(f)
	writeJSON(w, http.StatusOK, s.Faults())
}

func (s *Server) serveCalls(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	method, txid := q.Get("method"), q.Get("transaction_id")
	if method == "" || txid == "" {
		adminError(w, http.StatusBadRequest, "calls: query parameters method and transaction_id are required")
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"calls": s.Calls(method, txid)})
}

func (s *Server) serveReset(w http.ResponseWriter, _ *http.Request) {
	s.Reset()
	w.WriteHeader(http.StatusNoContent)
}

// serveRotateCert rotates the Alipay certificate and answers
// {"alipay_cert_sn":"<new>"}; 409 in public key mode.
func (s *Server) serveRotateCert(w http.ResponseWriter, _ *http.Request) {
	sn, err := s.RotateCert()
	switch {
	case errors.Is(err, ErrNotCertMode):
		adminError(w, http.StatusConflict, "rotate-cert: the sandbox is in public key mode; certificates rotate in certificate mode only (--cert-mode)")
	case err != nil:
		adminError(w, http.StatusInternalServerError, err.Error())
	default:
		writeJSON(w, http.StatusOK, map[string]string{zhima.ParamAlipayCertSN: sn})
	}
}

func (s *Server) servePublicKey(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Write(s.AlipayPublicKeyPEM())
}

func (s *Server) serveHealth(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok\n")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "sandbox: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func adminError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
