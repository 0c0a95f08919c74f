/* unit_net.h - loopback listeners for the suites that play a server. */
#ifndef SLUICE_UNIT_NET_H
#define SLUICE_UNIT_NET_H

#include "config.h"

/* A non-blocking listener on 127.0.0.1 at a port the kernel picks, written
 * into address. Returns it, or -1 after a failed check. */
int unit_listen_local(struct config_address *address);

/* Listens again on the port of address, once the first listener is closed.
 * Returns it, or -1 after a failed check. */
int unit_relisten(const struct config_address *address);

#endif
