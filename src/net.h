/* net.h - socket helpers. Each returns a file descriptor or -errno and
 * leaves printing to the caller. */
#ifndef SLUICE_NET_H
#define SLUICE_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "config.h"

/* A non-blocking listening socket; reuse_port lets every worker own one. */
int net_listen(const struct config_address *address, int backlog, bool reuse_port);

/* Starts a non-blocking connect. *in_progress is set when the result will
 * come as writability (EINPROGRESS). nodelay turns Nagle off, for
 * connections that write more than once. */
int net_connect(const struct config_address *address, bool nodelay, bool *in_progress);
/* Connects fd, a TCP socket left unconnected by a failed attempt (see
 * net_dissolve and net_connect_result), to address again: cheaper than a
 * new socket. Returns 0 (with *in_progress as for net_connect) or -errno;
 * fd is the caller's either way. */
int net_reconnect(int fd, const struct config_address *address, bool *in_progress);
/* Where a connect in progress stands, asked with a second connect():
 * 0 connected, -EALREADY still going, else its failure (-ECONNREFUSED...),
 * after which the kernel has already left fd ready for net_reconnect. */
int net_connect_result(int fd, const struct config_address *address);
/* Leaves fd, whose connect failed and was reported some other way (by a
 * write, say), ready for net_reconnect. 0 or -errno. */
int net_dissolve(int fd);

/* The pending error of a socket whose connect finished (0 = connected). */
int net_socket_error(int fd);

/* The textual IP address of a peer ("127.0.0.1", "::1"). */
void net_format_ip(const struct sockaddr_storage *addr, char *out, size_t out_len);

#endif
