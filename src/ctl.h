/* ctl.h - `sluice ctl`: the admin API from the command line.
 *
 *   sluice ctl [-c FILE] [--admin ADDR] [--token T] [--json]
 *              list | show NAME | drain NAME [--force] | enable NAME | reload
 *
 * The address and token default to the [admin] section of FILE (default
 * applications.toml). A blocking HTTP/1.1 client: it is a command, not a
 * worker. Exit status 0 on success, 1 when sluice cannot be reached or
 * refuses (its error text is printed), 2 on bad usage.
 */
#ifndef SLUICE_CTL_H
#define SLUICE_CTL_H

/* argv[0] is "ctl". Returns the exit status. */
int ctl_main(int argc, char **argv);

/* ---- exposed for the unit tests ---- */

/* A parsed JSON value: what ctl reads from the admin API's answers. */
enum ctl_json_type { CTL_JSON_NULL, CTL_JSON_BOOL, CTL_JSON_NUMBER, CTL_JSON_STRING, CTL_JSON_ARRAY,
                     CTL_JSON_OBJECT };

struct ctl_json {
    enum ctl_json_type type;
    char *key;                  /* as a member of an object; owned */
    char *string;               /* CTL_JSON_STRING, decoded; owned */
    double number;              /* CTL_JSON_NUMBER, CTL_JSON_BOOL (0 or 1) */
    struct ctl_json *items;     /* CTL_JSON_ARRAY / OBJECT members; owned */
    int count;
};

/* Parses text; NULL when it is not JSON (or memory ran out). */
struct ctl_json *ctl_json_parse(const char *text);
void ctl_json_free(struct ctl_json *v);
/* An object's member, or NULL. */
const struct ctl_json *ctl_json_get(const struct ctl_json *object, const char *key);

#endif
