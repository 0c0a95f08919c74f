/* unit_net.c - loopback listeners for the suites that play a server. */
#include "unit_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "unit.h"

int unit_listen_local(struct config_address *address)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    /* SO_REUSEADDR on both listeners lets unit_relisten take the port back past
     * the connections this one leaves in TIME_WAIT. */
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 16) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
        CHECK_MSG(false, "listen: %s", strerror(errno));
        return -1;
    }
    memset(address, 0, sizeof(*address));
    memcpy(&address->addr, &sin, sizeof(sin));
    address->addr_len = sizeof(sin);
    snprintf(address->text, sizeof(address->text), "127.0.0.1:%u", ntohs(sin.sin_port));
    return fd;
}

/* Listens again on the port of address, once unit_listen_local's is closed. */
int unit_relisten(const struct config_address *address)
{
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (const struct sockaddr *)&address->addr, address->addr_len) < 0 || listen(fd, 16) < 0) {
        CHECK_MSG(false, "listen again: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}
