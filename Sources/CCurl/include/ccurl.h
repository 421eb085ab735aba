#ifndef CCURL_H
#define CCURL_H

// Typed, non-variadic doors into libcurl for Swift. Swift cannot call C variadic functions, and
// curl_easy_setopt / curl_easy_getinfo are variadic: each wrapper below fixes one argument kind so the
// compiler passes it the way libcurl reads it with va_arg (a long is not a curl_off_t is not a pointer).
// Everything else in <curl/curl.h> that Swift can call directly (curl_easy_init, curl_easy_perform,
// curl_easy_reset, curl_slist_append, curl_url_*...) is used as is.

#include <curl/curl.h>

// One-time process-wide initialisation. curl_global_init is not thread-safe and must run once before any
// other libcurl call; pthread_once makes the first caller run it and every other caller wait for it.
CURLcode ccurl_global_init_once(void);

// curl_easy_setopt is variadic: one wrapper per argument kind.
// Options documented as taking a `long` (numbers, booleans, enums such as CURLOPT_NOSIGNAL).
CURLcode ccurl_easy_setopt_long(CURL *handle, CURLoption option, long value);
// Options ending in _LARGE take a curl_off_t (64-bit) and read garbage if handed a long on 32-bit ABIs.
CURLcode ccurl_easy_setopt_off_t(CURL *handle, CURLoption option, curl_off_t value);
// Options taking a C string (libcurl copies it, except CURLOPT_POSTFIELDS which we do not use).
CURLcode ccurl_easy_setopt_string(CURL *handle, CURLoption option, const char *value);
// Options taking an opaque pointer (callback user data, CURLOPT_ERRORBUFFER).
CURLcode ccurl_easy_setopt_pointer(CURL *handle, CURLoption option, void *value);
// Options taking a header list (CURLOPT_HTTPHEADER); the list must outlive the transfer.
CURLcode ccurl_easy_setopt_slist(CURL *handle, CURLoption option, struct curl_slist *value);

// Function-pointer options, one per callback type so Swift sees the exact @convention(c) signature.
// CURLOPT_WRITEFUNCTION, CURLOPT_HEADERFUNCTION and CURLOPT_READFUNCTION share one shape
// (char *buffer, size_t size, size_t nitems, void *userdata) -> size_t.
CURLcode ccurl_easy_setopt_data_function(CURL *handle, CURLoption option, curl_write_callback callback);
// CURLOPT_XFERINFOFUNCTION.
CURLcode ccurl_easy_setopt_xferinfo_function(CURL *handle, CURLoption option, curl_xferinfo_callback callback);
// CURLOPT_SEEKFUNCTION: lets libcurl rewind an upload (it resends a PUT when a reused keep-alive
// connection turns out to be dead, and fails with CURLE_SEND_FAIL_REWIND without one).
CURLcode ccurl_easy_setopt_seek_function(CURL *handle, CURLoption option, curl_seek_callback callback);
// CURLOPT_OPENSOCKETFUNCTION: the address guard runs here, after DNS and before connect.
CURLcode ccurl_easy_setopt_opensocket_function(CURL *handle, CURLoption option, curl_opensocket_callback callback);

// curl_easy_getinfo is variadic too: one wrapper per result kind.
CURLcode ccurl_easy_getinfo_long(CURL *handle, CURLINFO info, long *value);
CURLcode ccurl_easy_getinfo_off_t(CURL *handle, CURLINFO info, curl_off_t *value);
CURLcode ccurl_easy_getinfo_double(CURL *handle, CURLINFO info, double *value);
// The string stays owned by the handle and may be NULL (e.g. CURLINFO_REDIRECT_URL without a redirect).
CURLcode ccurl_easy_getinfo_string(CURL *handle, CURLINFO info, const char **value);

// Macros Swift does not import (or imports with the wrong type): exposed as functions.
// CURL_SOCKET_BAD is `-1` on POSIX but spelled INVALID_SOCKET elsewhere; keep one source of truth.
curl_socket_t ccurl_socket_bad(void);
// CURL_WRITEFUNC_PAUSE / CURL_READFUNC_ABORT are #defines with hex values; typed as size_t here.
size_t ccurl_writefunc_pause(void);
size_t ccurl_readfunc_abort(void);

// Copies the peer IP out of libcurl's curl_sockaddr. Its `addr` member is declared as a 16-byte
// `struct sockaddr` but holds a sockaddr_in6 (28 bytes) for IPv6, which Swift cannot read past without
// pointer arithmetic on an imported struct. Writes 4 (IPv4) or 16 (IPv6) bytes in network order into
// `out` and returns that count, or 0 for any other family.
int ccurl_sockaddr_ip(const struct curl_sockaddr *address, unsigned char out[16]);

#endif
