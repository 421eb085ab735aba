/* O_TMPFILE and mkostemp are GNU extensions in glibc. */
#define _GNU_SOURCE

#include "cmicrohttpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Unescape callback that leaves the text as it came (its length is unchanged). MHD otherwise
 * decodes "%XX" in the path before the application sees it, which would turn an encoded "/" in
 * a route parameter into a path separator; MicroHTTP decodes each segment itself, once. */
static size_t cmhd_keep_escaped(void *cls, struct MHD_Connection *connection, char *s) {
    (void) cls;
    (void) connection;
    return strlen(s);
}

struct MHD_Daemon *cmhd_start_daemon(const cmhd_daemon_options *o) {
    /* MHD_OPTION_ARRAY lets optional options be left out without a combinatorial set of
     * variadic calls. Two-pointer options carry the function pointer cast to intptr_t in
     * `value`, as <microhttpd.h> documents for MHD_OPTION_ARRAY. */
    struct MHD_OptionItem items[10];
    size_t n = 0;
    items[n++] = (struct MHD_OptionItem){ MHD_OPTION_CONNECTION_TIMEOUT,
                                          (intptr_t) o->connection_timeout_seconds, NULL };
    items[n++] = (struct MHD_OptionItem){ MHD_OPTION_CONNECTION_LIMIT,
                                          (intptr_t) o->connection_limit, NULL };
    if (o->per_ip_connection_limit > 0)
        items[n++] = (struct MHD_OptionItem){ MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                              (intptr_t) o->per_ip_connection_limit, NULL };
    if (o->notify_connection != NULL)
        items[n++] = (struct MHD_OptionItem){ MHD_OPTION_NOTIFY_CONNECTION,
                                              (intptr_t) o->notify_connection,
                                              o->notify_connection_context };
    if (o->request_completed != NULL)
        items[n++] = (struct MHD_OptionItem){ MHD_OPTION_NOTIFY_COMPLETED,
                                              (intptr_t) o->request_completed,
                                              o->request_completed_context };
    if (o->keep_url_escaped)
        items[n++] = (struct MHD_OptionItem){ MHD_OPTION_UNESCAPE_CALLBACK,
                                              (intptr_t) &cmhd_keep_escaped, NULL };
    if (o->thread_pool_size > 0)
        items[n++] = (struct MHD_OptionItem){ MHD_OPTION_THREAD_POOL_SIZE, (intptr_t) o->thread_pool_size, NULL };
    if (o->listen_fd >= 0)
        items[n++] = (struct MHD_OptionItem){ MHD_OPTION_LISTEN_SOCKET, (intptr_t) o->listen_fd, NULL };
    else if (o->bind_address != NULL)
        items[n++] = (struct MHD_OptionItem){ MHD_OPTION_SOCK_ADDR, 0, (void *) o->bind_address };
    items[n++] = (struct MHD_OptionItem){ MHD_OPTION_END, 0, NULL };

    return MHD_start_daemon(o->flags, o->port,
                            NULL, NULL, /* accept every client: no accept policy callback */
                            o->access_handler, o->access_handler_context,
                            MHD_OPTION_ARRAY, items,
                            MHD_OPTION_END);
}

uint16_t cmhd_daemon_bound_port(struct MHD_Daemon *daemon) {
    /* The listening socket is the truth: MHD_DAEMON_INFO_BIND_PORT reports the port argument
     * as given when the socket was inherited through MHD_OPTION_LISTEN_SOCKET. */
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_LISTEN_FD);
    if (info != NULL && info->listen_fd >= 0) {
        struct sockaddr_storage address;
        socklen_t length = sizeof address;
        memset(&address, 0, sizeof address);
        if (getsockname(info->listen_fd, (struct sockaddr *) &address, &length) == 0) {
            if (address.ss_family == AF_INET)
                return ntohs(((const struct sockaddr_in *) &address)->sin_port);
            if (address.ss_family == AF_INET6)
                return ntohs(((const struct sockaddr_in6 *) &address)->sin6_port);
        }
    }
    info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    return info != NULL ? info->port : 0;
}

int cmhd_connection_client_address(struct MHD_Connection *connection, char *buffer, size_t capacity) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (info == NULL || info->client_addr == NULL || capacity == 0)
        return 0;
    const struct sockaddr *address = info->client_addr;
    const void *raw;
    if (address->sa_family == AF_INET)
        raw = &((const struct sockaddr_in *) address)->sin_addr;
    else if (address->sa_family == AF_INET6)
        raw = &((const struct sockaddr_in6 *) address)->sin6_addr;
    else
        return 0;
    return inet_ntop(address->sa_family, raw, buffer, (socklen_t) capacity) != NULL ? 1 : 0;
}

int cmhd_connection_fd(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    return info != NULL ? info->connect_fd : -1;
}

int cmhd_open_unnamed_file(const char *directory) {
#ifdef O_TMPFILE
    int unnamed = open(directory, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (unnamed >= 0)
        return unnamed;
    /* EISDIR/EOPNOTSUPP: a kernel or file system without O_TMPFILE; anything else is a real error. */
    if (errno != EISDIR && errno != EOPNOTSUPP && errno != EINVAL)
        return -1;
#endif
    char path[4096];
    if (snprintf(path, sizeof path, "%s/.body.XXXXXX", directory) >= (int) sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (unlink(path) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}
