/* version.h - the version sluice reports (--version, the start line, the
 * metrics' sluice_build_info). */
#ifndef SLUICE_VERSION_H
#define SLUICE_VERSION_H

#define SLUICE_VERSION "0.1.0"

#endif
