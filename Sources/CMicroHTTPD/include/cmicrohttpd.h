#ifndef CMICROHTTPD_H
#define CMICROHTTPD_H

/*
 * Typed wrappers around the parts of libmicrohttpd 0.9.75 that Swift cannot call directly.
 * Swift cannot call C variadic functions: MHD_start_daemon, MHD_get_daemon_info and
 * MHD_get_connection_info are variadic, so each gets a fixed-signature cmhd_ function here.
 * Everything else in <microhttpd.h> (MHD_queue_response, MHD_create_response_from_buffer,
 * MHD_get_connection_values, MHD_quiesce_daemon, MHD_stop_daemon, ...) is called from Swift.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <microhttpd.h>

/*
 * Everything cmhd_start_daemon hands to MHD_start_daemon. A struct rather than a long
 * parameter list so that optional settings (bind address, inherited socket) stay explicit.
 */
typedef struct cmhd_daemon_options {
    /* MHD_FLAG bits (threading model, IPv6). */
    unsigned int flags;
    /* Port to bind when neither bind_address nor listen_fd is given. */
    uint16_t port;
    /* Address (with port) to bind; NULL to let MHD bind every address on `port`. */
    const struct sockaddr *bind_address;
    /* An already listening socket (systemd socket activation) to serve on, or -1. */
    int listen_fd;
    /* Seconds of inactivity after which MHD closes a connection (MHD's default is never). */
    unsigned int connection_timeout_seconds;
    /* Most connections served at once; past it MHD stops accepting (clients wait in the backlog). */
    unsigned int connection_limit;
    /* Most connections from one client address (MHD_OPTION_PER_IP_CONNECTION_LIMIT); 0: no limit. */
    unsigned int per_ip_connection_limit;
    /* Non-zero: hand the URL path and query arguments to the application still
     * percent-encoded, so that "%2F" inside a path segment cannot be mistaken for "/". */
    int keep_url_escaped;
    /* Threads of an internal epoll thread pool (MHD_OPTION_THREAD_POOL_SIZE); 0: not a pool. */
    unsigned int thread_pool_size;
    MHD_AccessHandlerCallback access_handler;
    void *access_handler_context;
    MHD_RequestCompletedCallback request_completed;
    void *request_completed_context;
    /* Told when a connection is accepted and when it is closed (MHD_OPTION_NOTIFY_CONNECTION); may be NULL. */
    MHD_NotifyConnectionCallback notify_connection;
    void *notify_connection_context;
} cmhd_daemon_options;

/* MHD_start_daemon is variadic. Returns NULL when the daemon cannot start (port taken, bad fd). */
struct MHD_Daemon *cmhd_start_daemon(const cmhd_daemon_options *options);

/* MHD_get_daemon_info is variadic. The port the daemon listens on (useful when port 0 asked the
 * kernel to choose), read from the listening socket with getsockname; 0 if unknown. */
uint16_t cmhd_daemon_bound_port(struct MHD_Daemon *daemon);

/* MHD_get_connection_info is variadic. Writes the client's numeric address into `buffer`
 * (NUL-terminated); returns 1 on success, 0 when it is unknown or not IPv4/IPv6. */
int cmhd_connection_client_address(struct MHD_Connection *connection, char *buffer, size_t capacity);

/* MHD_get_connection_info is variadic. The connection's socket, or -1. */
int cmhd_connection_fd(struct MHD_Connection *connection);

/* An unnamed file in `directory` for a request body too large to keep in memory: O_TMPFILE where the
 * file system has it, else mkstemp and an immediate unlink. Either way nothing is left behind when the
 * descriptor is closed, even by a crash. Returns the descriptor, or -1 with errno set. (Here rather than
 * in Swift because O_TMPFILE is a compound macro Swift does not import.) */
int cmhd_open_unnamed_file(const char *directory);

#endif /* CMICROHTTPD_H */
