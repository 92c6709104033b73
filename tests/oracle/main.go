// Command oracle answers every HTTP/1.1 request with what Debian's docker-registry 2.8.2 would
// act on when it received the same bytes: the route its v2 router picks, the route variables
// (repository name, reference, digest, upload id), the handler its method table runs, and every
// request value those handlers read (form values from the query *and* the body, the headers
// that steer them).
//
// It is built from the registry's own sources (golang-github-docker-distribution-dev, the same
// source as the docker-registry binary) and Go's net/http, so the bytes are read exactly as the
// registry reads them: same HTTP parser, same gorilla/mux router with the same path cleaning and
// StrictSlash redirects, same r.FormValue. tests/differential.rs puts it where the registry
// would be, behind portcullis, and checks that what it reads is what portcullis authorized.
//
// Modes:
//
//	oracle -listen 127.0.0.1:0   serve; print "listening ADDR", then one JSON reading per request
//	oracle -stdin                read raw HTTP/1.1 requests from stdin, print one JSON reading each
//
// The answer to every request is 200 with the reading as base64 JSON in the X-Oracle header
// (so HEAD works too) and, except for HEAD, as the JSON body (with an empty "repositories"
// list, so a catalog fetch made by the proxy itself parses).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"

	"github.com/docker/distribution/reference"
	v2 "github.com/docker/distribution/registry/api/v2"
	"github.com/gorilla/handlers"
	"github.com/gorilla/mux"
)

// maxBody bounds what one request body may be buffered to (the tests send small ones).
const maxBody = 16 << 20

// Reading is what the registry would act on for one request.
type Reading struct {
	Seq    int64  `json:"seq"`
	Method string `json:"method"`
	// RequestURI is the request target as it arrived; Path is Go's decoded path, the one mux
	// routes on.
	RequestURI string `json:"request_uri"`
	Path       string `json:"path"`
	RawQuery   string `json:"raw_query"`
	Host       string `json:"host"`
	// Route is the v2 route name ("base", "catalog", "manifest", "blob", "blob-upload",
	// "blob-upload-chunk", "tags"), "alive" for "/", "redirect" when mux answers 301 (path
	// cleaning or StrictSlash), or "" when nothing matches (404).
	Route    string            `json:"route"`
	Redirect string            `json:"redirect,omitempty"`
	Vars     map[string]string `json:"vars,omitempty"`
	// NameValid: reference.WithName(vars.name) succeeds, as the dispatcher requires for every
	// route but base and catalog (otherwise it answers NAME_INVALID and does nothing).
	NameValid bool `json:"name_valid"`
	// Handler is the function the route's method table runs ("" when it answers 405).
	Handler string `json:"handler"`
	// Upload routes: r.FormValue("_state") when the route has an upload id (the dispatcher
	// reads it before any handler); StartBlobUpload: r.FormValue("from"), r.FormValue("mount")
	// and whether it would try to mount (both non-empty); PutBlobUploadComplete:
	// r.FormValue("digest").
	State  *string `json:"state,omitempty"`
	From   *string `json:"from,omitempty"`
	Mount  *string `json:"mount,omitempty"`
	Mounts bool    `json:"mounts"`
	Digest *string `json:"digest,omitempty"`
	// AuthFrom: r.FormValue("from") as app.authorized() reads it for every route with a name
	// when the registry has an access controller (it then asks for pull on that repository).
	AuthFrom *string `json:"auth_from,omitempty"`
	// Catalog (and tags, which 2.8.2 ignores): r.URL.Query().Get("n"/"last").
	N    *string `json:"n,omitempty"`
	Last *string `json:"last,omitempty"`
	// ContentType: r.Header.Get("Content-Type") where a handler reads it (manifest PUT stores
	// it as the media type; PATCH refuses anything but application/octet-stream). Headers:
	// every header as Go parsed it (registryHeadersRead lists the ones registry code reads).
	ContentType   *string             `json:"content_type,omitempty"`
	Headers       map[string][]string `json:"headers,omitempty"`
	ContentLength int64               `json:"content_length"`
	Chunked       bool                `json:"chunked"`
	// PostForm: the pairs r.FormValue took from the body (urlencoded or multipart), if it read
	// the body as a form at all; FormError: why parsing the form failed, if it did.
	PostForm  map[string][]string `json:"post_form,omitempty"`
	FormError string              `json:"form_error,omitempty"`
	// BodyLen: the bytes left for the handler after any form parsing (what PATCH/PUT would
	// write into the upload).
	BodyLen int `json:"body_len"`
	// Status the registry's routing layer itself would answer (301, 404, 405), else 200.
	Status int `json:"status"`
}

type readingKey struct{}

var seq int64

// registryHeadersRead are the request headers some registry code reads: Content-Type
// (manifest PUT, PATCH), Accept and If-None-Match (manifest GET), the conditional and Range
// headers of http.ServeContent (blob GET), the forwarding headers of the URL builder
// (Location answers) and of the request logger, Authorization (only with an access
// controller). A reading carries every header, so hop-by-hop ones show up too; this list is
// what a reviewer checks the proxy's header handling against.
var registryHeadersRead = []string{
	"Content-Type", "Accept", "If-None-Match", "If-Match", "If-Modified-Since",
	"If-Unmodified-Since", "If-Range", "Range", "Forwarded", "X-Forwarded-Proto",
	"X-Forwarded-Host", "X-Forwarded-For", "X-Real-Ip", "Authorization",
}

func str(s string) *string { return &s }

// setBody buffers the body so that it can be read more than once (once as the registry
// would, once more for the access controller's read).
func setBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b, err
}

// clone is r with a fresh copy of its body and no parsed form, for a read that must not
// change what the registry's own reads see.
func clone(r *http.Request, body []byte) *http.Request {
	c := r.Clone(r.Context())
	c.Body = io.NopCloser(bytes.NewReader(body))
	c.Form, c.PostForm, c.MultipartForm = nil, nil, nil
	return c
}

// dispatch mirrors registry/handlers: app.dispatcher (authorized, nameRequired) and each
// route's dispatcher with its handlers.MethodHandler table (readOnly off, as in the tests).
func dispatch(route string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rd := r.Context().Value(readingKey{}).(*Reading)
		rd.Route = route
		rd.Vars = mux.Vars(r)
		body, err := setBody(r)
		if err != nil {
			rd.FormError = "reading body: " + err.Error()
		}
		name := rd.Vars["name"]
		if route != v2.RouteNameBase && route != v2.RouteNameCatalog {
			_, err := reference.WithName(name)
			rd.NameValid = err == nil
			// app.authorized(), when an access controller is configured.
			rd.AuthFrom = str(clone(r, body).FormValue("from"))
		}
		table := map[string]string{}
		switch route {
		case v2.RouteNameBase:
			// apiBase answers every method.
			rd.Handler = "apiBase"
		case v2.RouteNameCatalog:
			table = map[string]string{"GET": "GetCatalog"}
		case v2.RouteNameTags:
			table = map[string]string{"GET": "GetTags"}
		case v2.RouteNameManifest:
			table = map[string]string{"GET": "GetManifest", "HEAD": "GetManifest",
				"PUT": "PutManifest", "DELETE": "DeleteManifest"}
		case v2.RouteNameBlob:
			table = map[string]string{"GET": "GetBlob", "HEAD": "GetBlob", "DELETE": "DeleteBlob"}
		case v2.RouteNameBlobUpload, v2.RouteNameBlobUploadChunk:
			table = map[string]string{"GET": "GetUploadStatus", "HEAD": "GetUploadStatus",
				"POST": "StartBlobUpload", "PATCH": "PatchBlobData",
				"PUT": "PutBlobUploadComplete", "DELETE": "CancelBlobUpload"}
			// blobUploadDispatcher reads the state before choosing the handler.
			if rd.Vars["uuid"] != "" {
				rd.State = str(r.FormValue("_state"))
			}
		}
		if route != v2.RouteNameBase {
			mh := handlers.MethodHandler{}
			for m, h := range table {
				h := h
				mh[m] = http.HandlerFunc(func(http.ResponseWriter, *http.Request) { rd.Handler = h })
			}
			mh.ServeHTTP(w, r)
		}
		if rd.Handler == "" {
			return
		}
		q := r.URL.Query()
		switch rd.Handler {
		case "GetCatalog", "GetTags":
			rd.N, rd.Last = str(q.Get("n")), str(q.Get("last"))
		case "StartBlobUpload":
			rd.From, rd.Mount = str(r.FormValue("from")), str(r.FormValue("mount"))
			rd.Mounts = *rd.From != "" && *rd.Mount != ""
		case "PutBlobUploadComplete":
			rd.Digest = str(r.FormValue("digest"))
		case "PutManifest", "PatchBlobData":
			rd.ContentType = str(r.Header.Get("Content-Type"))
		}
		if len(r.PostForm) > 0 {
			rd.PostForm = r.PostForm
		}
		if r.MultipartForm != nil {
			rd.PostForm = r.MultipartForm.Value
		}
		if r.Form != nil {
			// FormValue ignores parse errors; say what they were, from a second parse.
			err := clone(r, body).ParseMultipartForm(32 << 20)
			if err != nil && err != http.ErrNotMultipart {
				rd.FormError = err.Error()
			}
		}
		rest, _ := io.ReadAll(r.Body)
		rd.BodyLen = len(rest)
	})
}

// registry builds the handler chain of registry.NewRegistry: alive("/") in front of the
// app, whose ServeHTTP runs the v2 router (prefix "", StrictSlash) with one dispatcher per
// route.
func registry() http.Handler {
	router := v2.Router()
	for _, name := range []string{v2.RouteNameBase, v2.RouteNameManifest, v2.RouteNameCatalog,
		v2.RouteNameTags, v2.RouteNameBlob, v2.RouteNameBlobUpload, v2.RouteNameBlobUploadChunk} {
		router.GetRoute(name).Handler(dispatch(name))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			r.Context().Value(readingKey{}).(*Reading).Route = "alive"
			return
		}
		router.ServeHTTP(w, r)
	})
}

// read runs one request through the registry's routing and handlers and says what they read.
func read(h http.Handler, r *http.Request) *Reading {
	rd := &Reading{
		Seq:           atomic.AddInt64(&seq, 1),
		Method:        r.Method,
		RequestURI:    r.RequestURI,
		Path:          r.URL.Path,
		RawQuery:      r.URL.RawQuery,
		Host:          r.Host,
		ContentLength: r.ContentLength,
		Headers:       r.Header,
	}
	for _, te := range r.TransferEncoding {
		rd.Chunked = rd.Chunked || te == "chunked"
	}
	r = r.WithContext(context.WithValue(r.Context(), readingKey{}, rd))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	rd.Status = rec.Code
	if rd.Route == "" && rec.Code == http.StatusMovedPermanently {
		rd.Route = "redirect"
		rd.Redirect = rec.Header().Get("Location")
	}
	return rd
}

var out = struct {
	sync.Mutex
	w *bufio.Writer
}{w: bufio.NewWriter(os.Stdout)}

// emit prints one reading as a JSON line (stdout is the test's log of every request read).
func emit(rd *Reading) []byte {
	j, _ := json.Marshal(rd)
	out.Lock()
	out.w.Write(j)
	out.w.WriteByte('\n')
	out.w.Flush()
	out.Unlock()
	return j
}

func answer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rd := read(h, r)
		j := emit(rd)
		w.Header().Set("X-Oracle", base64.StdEncoding.EncodeToString(j))
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		// Everything a proxied request may still send is read, so the connection stays usable.
		io.Copy(io.Discard, r.Body)
		var body map[string]interface{}
		json.Unmarshal(j, &body)
		body["repositories"] = []string{}
		b, _ := json.Marshal(body)
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			w.Write(b)
		}
	})
}

func main() {
	listen := flag.String("listen", "", "serve HTTP/1.1 on this address (port 0: any)")
	stdin := flag.Bool("stdin", false, "read raw requests from stdin instead")
	flag.Parse()
	h := registry()
	switch {
	case *stdin:
		br := bufio.NewReader(os.Stdin)
		for {
			r, err := http.ReadRequest(br)
			if err == io.EOF {
				return
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "unreadable request: %v\n", err)
				os.Exit(1)
			}
			emit(read(h, r))
			io.Copy(io.Discard, r.Body)
		}
	case *listen != "":
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("listening %s\n", ln.Addr())
		// The registry's server: net/http defaults, HTTP/1.1 only (no TLS, so no h2).
		srv := &http.Server{Handler: answer(h)}
		fmt.Fprintln(os.Stderr, srv.Serve(ln))
		os.Exit(1)
	default:
		flag.Usage()
		os.Exit(2)
	}
}
