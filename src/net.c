/* net.c - socket helpers; see net.h. */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int set_option(int fd, int level, int name, int value)
{
    return setsockopt(fd, level, name, &value, sizeof(value));
}

int net_listen(const struct config_address *address, int backlog, bool reuse_port)
{
    int family = address->addr.ss_family;
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (set_option(fd, SOL_SOCKET, SO_REUSEADDR, 1) < 0 ||
        (reuse_port && set_option(fd, SOL_SOCKET, SO_REUSEPORT, 1) < 0) ||
        (family == AF_INET6 && set_option(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1) < 0) ||
        bind(fd, (const struct sockaddr *)&address->addr, address->addr_len) < 0 ||
        listen(fd, backlog) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    /* Wake the worker only once a request has arrived: saves a wakeup and
     * a read on every new connection. */
    set_option(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, 1);
    return fd;
}

int net_connect(const struct config_address *address, bool nodelay, bool *in_progress)
{
    int fd = socket(address->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* Nagle would hold the second small write of a request for an ACK. */
    if (nodelay)
        set_option(fd, IPPROTO_TCP, TCP_NODELAY, 1);
    *in_progress = false;
    if (connect(fd, (const struct sockaddr *)&address->addr, address->addr_len) < 0) {
        if (errno != EINPROGRESS) {
            int err = -errno;
            close(fd);
            return err;
        }
        *in_progress = true;
    }
    return fd;
}

int net_reconnect(int fd, const struct config_address *address, bool *in_progress)
{
    *in_progress = false;
    if (connect(fd, (const struct sockaddr *)&address->addr, address->addr_len) < 0) {
        if (errno != EINPROGRESS)
            return -errno;
        *in_progress = true;
    }
    return 0;
}

int net_connect_result(int fd, const struct config_address *address)
{
    /* A second connect() reports the first one's outcome and, when it
     * failed, disconnects the socket in the same call: one system call
     * where getsockopt(SO_ERROR) plus connect(AF_UNSPEC) would be two. */
    if (connect(fd, (const struct sockaddr *)&address->addr, address->addr_len) == 0 || errno == EISCONN)
        return 0;
    return -errno;
}

int net_dissolve(int fd)
{
    /* Connecting to AF_UNSPEC dissolves what the failed attempt left
     * (connect(2)); the socket can then connect anew. */
    struct sockaddr none = {.sa_family = AF_UNSPEC};
    return connect(fd, &none, sizeof(none)) < 0 ? -errno : 0;
}

int net_socket_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return errno;
    return err;
}

void net_format_ip(const struct sockaddr_storage *addr, char *out, size_t out_len)
{
    const void *src = addr->ss_family == AF_INET6
                          ? (const void *)&((const struct sockaddr_in6 *)addr)->sin6_addr
                          : (const void *)&((const struct sockaddr_in *)addr)->sin_addr;
    if (!inet_ntop(addr->ss_family, src, out, (socklen_t)out_len))
        snprintf(out, out_len, "-");
}
