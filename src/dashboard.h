/* dashboard.h - the admin server's page for people (GET /). */
#ifndef SLUICE_DASHBOARD_H
#define SLUICE_DASHBOARD_H

#include <stddef.h>

/* The page's HTML (static, never freed) and its length in *len. */
const char *dashboard_page(size_t *len);

#endif
