/*  cmd_certs.c — `civicbus certs new` and `civicbus adapters
    register|unregister|list`: the CURVE keys of department adapters.

    Each adapter has a client certificate whose public key is registered for
    exactly one department:
        adapters:keys  hash  public key (Z85, 40 characters) -> department
    The dispatcher refuses an unknown key and a key that claims another
    department (DESIGN.md principle 6). The secret half never leaves the
    adapter's machine: `certs new` writes it with mode 0600 and `adapters
    register` reads only the public half. */

#include "cli.h"
#include "civicbus/citydata.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_ADAPTER_KEYS "adapters:keys"
#define S_Z85_KEY_LEN 40
#define S_NAME_MAX 64

typedef struct {
    const char *department;
    const char *key;
} s_registration_t;

/* ---- private ---- */

static bool
s_valid_name (const char *name, const char *extra)
{
    size_t len = strlen (name);
    if (len == 0 || len >= S_NAME_MAX || name [0] == '.' || name [0] == '-')
        return false;
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || strchr (extra, *c)))
            return false;
    return true;
}

static bool
s_is_z85_key (const char *text)
{
    static const char z85 [] =
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
    return strlen (text) == S_Z85_KEY_LEN && strspn (text, z85) == S_Z85_KEY_LEN;
}

//  Creates `path` empty with `mode`, refusing one that exists, so the
//  secret is never readable by others, not even for a moment, and nothing
//  is overwritten. 0 or -1 after printing why.
static int
s_create_exclusive (const char *path, mode_t mode)
{
    int fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        if (errno == EEXIST)
            cli_fail ("%s exists; choose another name or move it away "
                      "(certificates are never overwritten)", path);
        else
            cli_fail ("cannot create %s: %s", path, strerror (errno));
        return -1;
    }
    close (fd);
    return 0;
}

static int
s_certs_new (cli_t *cli, const cli_command_t *cmd, int argc, char **argv)
{
    const char *dir = NULL;
    const cli_opt_t opts [] = { { "out", &dir, NULL }, CLI_OPTS_END };
    const char *name = NULL;
    int rc = cli_parse_one (cli, cmd, argc, argv, opts,
                            "give the certificate a NAME, e.g. adapter-police-1", &name);
    if (rc != CLI_PROCEED)
        return rc;
    if (!s_valid_name (name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ._-"))
        return cli_usage_error (cmd, "NAME '%s' must be 1..63 of A-Z a-z 0-9 . _ - "
                                "and not start with '.' or '-'", name);
    if (!dir)
        return cli_usage_error (cmd, "missing --out DIR (where to write the two files)");
    if (mkdir (dir, 0700) && errno != EEXIST)
        return cli_fail ("cannot create directory %s: %s", dir, strerror (errno));
    struct stat st;
    if (stat (dir, &st) || !S_ISDIR (st.st_mode))
        return cli_fail ("%s is not a directory", dir);

    char public_path [4096], secret_path [4096];
    snprintf (public_path, sizeof public_path, "%s/%s.cert", dir, name);
    snprintf (secret_path, sizeof secret_path, "%s/%s.cert_secret", dir, name);
    if (s_create_exclusive (public_path, 0644))
        return CLI_FAIL;
    if (s_create_exclusive (secret_path, 0600)) {
        unlink (public_path);
        return CLI_FAIL;
    }
    errno = 0;
    zcert_t *cert = zcert_new ();
    rc = cert ? 0 : -1;
    if (rc == 0) {
        zcert_set_meta (cert, "name", "%s", name);
        zcert_set_meta (cert, "role", "civicbus department adapter");
        //  Both write into the files made above: fopen ("w") keeps their mode.
        rc = zcert_save_public (cert, public_path);
        if (rc == 0)
            rc = zcert_save_secret (cert, secret_path);
        if (rc == 0)
            rc = chmod (secret_path, 0600);
    }
    if (rc) {
        zcert_destroy (&cert);
        unlink (public_path);
        unlink (secret_path);
        return cli_fail ("cannot write the certificate to %s (%s)", dir,
                         errno ? strerror (errno) : "CURVE key generation failed");
    }
    printf ("public key: %s\n", zcert_public_txt (cert));
    fprintf (stderr, "wrote %s (public) and %s (secret, mode 0600)\n", public_path, secret_path);
    fprintf (stderr, "next: civicbus adapters register DEPT %s\n", public_path);
    zcert_destroy (&cert);
    return CLI_OK;
}

//  The Z85 public key of a certificate file, or `arg` itself when it is a
//  key and no such file exists. 0 or -1 after printing why.
static int
s_public_key_of (const char *arg, char *key, size_t cap)
{
    if (access (arg, F_OK) != 0 && s_is_z85_key (arg)) {
        snprintf (key, cap, "%s", arg);
        return 0;
    }
    if (access (arg, R_OK) != 0) {
        cli_fail ("cannot read certificate %s: %s", arg, strerror (errno));
        return -1;
    }
    zcert_t *cert = zcert_load (arg);
    if (!cert) {
        cli_fail ("%s is not a certificate (make one with 'civicbus certs new NAME --out DIR')",
                  arg);
        return -1;
    }
    //  A file without a public key loads with an all-zero key.
    const char *text = zcert_public_txt (cert);
    bool ok = text && s_is_z85_key (text)
           && strcmp (text, "0000000000000000000000000000000000000000") != 0;
    if (ok)
        snprintf (key, cap, "%s", text);
    zcert_destroy (&cert);
    if (!ok) {
        cli_fail ("%s has no public key", arg);
        return -1;
    }
    return 0;
}

static int
s_adapters_register (cli_t *cli, const cli_command_t *cmd, int argc, char **argv)
{
    const char *pos [2];
    int npos = 0;
    int rc = cli_parse (cli, cmd, argc, argv, NULL, pos, 0, 2, &npos);
    if (rc != CLI_PROCEED)
        return rc;
    if (npos < 2)
        return cli_usage_error (cmd, "give the department and the adapter's certificate file");
    const char *dept = pos [0];
    if (!s_valid_name (dept, "_-"))
        return cli_usage_error (cmd, "DEPT '%s' is not a department code (a-z 0-9 _ -)", dept);
    char key [S_Z85_KEY_LEN + 1];
    if (s_public_key_of (pos [1], key, sizeof key))
        return CLI_FAIL;

    int64_t version;
    catalog_t *catalog = cli_load_catalog (cli, &version);
    if (!catalog && version < 0)
        return CLI_FAIL;
    if (catalog && !catalog_department (catalog, dept)) {
        char known [512] = "";
        for (size_t i = 0; i < catalog_department_count (catalog); i++) {
            size_t used = strlen (known);
            snprintf (known + used, sizeof known - used, "%s%s", i ? ", " : "",
                      catalog_department_at (catalog, i)->code);
        }
        catalog_destroy (&catalog);
        return cli_fail ("department '%s' is not in the catalogue (version %lld); "
                         "known: %s", dept, (long long) version, known);
    }
    if (!catalog)
        cli_note ("no catalogue is loaded, so '%s' could not be checked", dept);
    catalog_destroy (&catalog);

    cb_redis_t *redis = cli_redis (cli);
    if (!redis)
        return CLI_FAIL;
    //  HSETNX, then a look at the owner on a clash: a key never silently
    //  moves from one department to another.
    redisReply *reply = cb_redis_command (redis, "HSETNX " S_ADAPTER_KEYS " %s %s", key, dept);
    if (!reply || reply->type != REDIS_REPLY_INTEGER) {
        if (reply)
            freeReplyObject (reply);
        return cli_redis_failed (cli, "registering the key");
    }
    bool added = reply->integer == 1;
    freeReplyObject (reply);
    if (!added) {
        reply = cb_redis_command (redis, "HGET " S_ADAPTER_KEYS " %s", key);
        if (!reply)
            return cli_redis_failed (cli, "registering the key");
        char owner [S_NAME_MAX] = "?";
        if (reply->type == REDIS_REPLY_STRING)
            snprintf (owner, sizeof owner, "%s", reply->str);
        freeReplyObject (reply);
        if (strcmp (owner, dept) != 0)
            return cli_fail ("key %s is registered for department '%s'; a key belongs to one "
                             "department: 'civicbus adapters unregister %s' first",
                             key, owner, pos [1]);
        printf ("key %s was already registered for department '%s'\n", key, dept);
        return CLI_OK;
    }
    printf ("registered key %s for department '%s'\n", key, dept);
    return CLI_OK;
}

static int
s_adapters_unregister (cli_t *cli, const cli_command_t *cmd, int argc, char **argv)
{
    const char *arg = NULL;
    int rc = cli_parse_one (cli, cmd, argc, argv, NULL,
                            "give the certificate file or its public key", &arg);
    if (rc != CLI_PROCEED)
        return rc;
    char key [S_Z85_KEY_LEN + 1];
    if (s_public_key_of (arg, key, sizeof key))
        return CLI_FAIL;
    cb_redis_t *redis = cli_redis (cli);
    if (!redis)
        return CLI_FAIL;
    redisReply *reply = cb_redis_command (redis, "HDEL " S_ADAPTER_KEYS " %s", key);
    if (!reply || reply->type != REDIS_REPLY_INTEGER) {
        if (reply)
            freeReplyObject (reply);
        return cli_redis_failed (cli, "unregistering the key");
    }
    bool removed = reply->integer == 1;
    freeReplyObject (reply);
    if (!removed)
        return cli_fail ("key %s is not registered", key);
    printf ("unregistered key %s\n", key);
    cli_note ("adapters already connected with it stay connected until they reconnect");
    return CLI_OK;
}

static int
s_compare_registrations (const void *a, const void *b)
{
    const s_registration_t *x = a, *y = b;
    int order = strcmp (x->department, y->department);
    return order ? order : strcmp (x->key, y->key);
}

static int
s_adapters_list (cli_t *cli, const cli_command_t *cmd, int argc, char **argv)
{
    bool as_json = false;
    const cli_opt_t opts [] = { { "json", NULL, &as_json }, CLI_OPTS_END };
    cb_redis_t *redis = NULL;
    int rc = cli_parse_connect (cli, cmd, argc, argv, opts, &redis);
    if (rc != CLI_PROCEED)
        return rc;
    redisReply *reply = cb_redis_command (redis, "HGETALL " S_ADAPTER_KEYS);
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        if (reply)
            freeReplyObject (reply);
        return cli_redis_failed (cli, "listing adapter keys");
    }
    size_t count = reply->elements / 2;
    s_registration_t *list = calloc (count ? count : 1, sizeof *list);
    if (!list) {
        freeReplyObject (reply);
        return cli_fail ("out of memory");
    }
    for (size_t i = 0; i < count; i++) {
        list [i].key = reply->element [2 * i]->str ? reply->element [2 * i]->str : "";
        list [i].department = reply->element [2 * i + 1]->str
                            ? reply->element [2 * i + 1]->str : "";
    }
    qsort (list, count, sizeof *list, s_compare_registrations);
    if (as_json) {
        json_t *array = json_array ();
        for (size_t i = 0; array && i < count; i++)
            json_array_append_new (array, json_pack ("{s:s, s:s}", "department",
                                   list [i].department, "public_key", list [i].key));
        free (list);
        freeReplyObject (reply);
        return cli_print_json (array);
    }
    const char *headers [] = { "DEPARTMENT", "PUBLIC KEY" };
    cli_table_t *table = cli_table_new (2, headers);
    for (size_t i = 0; table && i < count; i++) {
        const char *cells [] = { list [i].department, list [i].key };
        if (cli_table_add (table, cells))
            cli_table_destroy (&table);
    }
    free (list);
    freeReplyObject (reply);
    if (!table)
        return cli_fail ("out of memory");
    if (count == 0)
        cli_note ("no adapter keys are registered; "
                  "'civicbus adapters register DEPT CERTFILE' adds one");
    else
        cli_table_print (table, stdout);
    cli_table_destroy (&table);
    return CLI_OK;
}

/* ---- public ---- */

const cli_command_t cli_certs_commands [] = {
    { "new", "make a CURVE certificate for a department adapter", "NAME --out DIR",
      "Writes DIR/NAME.cert (the public key: register it with 'civicbus adapters\n"
      "register') and DIR/NAME.cert_secret (both keys, mode 0600: it stays with\n"
      "the adapter). Never overwrites a file. Prints the public key on stdout:\n"
      "    public key: <40 Z85 characters>\n\n"
      "Options:\n"
      "  --out DIR     the directory (made with mode 0700 if missing)\n\n"
      "Example:\n"
      "  civicbus certs new adapter-police-1 --out .civicbus/certs\n",
      s_certs_new, NULL, "certs new" },
    CLI_COMMANDS_END
};

const cli_command_t cli_adapters_commands [] = {
    { "register", "allow an adapter's key to speak for one department", "DEPT CERTFILE",
      "Reads the public key from CERTFILE (a .cert file made by 'civicbus certs\n"
      "new') and registers it for DEPT. When a catalogue is loaded, DEPT must be\n"
      "one of its departments. A key already registered for another department\n"
      "is refused: unregister it first.\n",
      s_adapters_register, NULL, "adapters register" },
    { "unregister", "withdraw an adapter's key", "CERTFILE|KEY",
      "Removes the key (read from CERTFILE, or given as its 40 Z85 characters);\n"
      "the dispatcher refuses it from then on.\n",
      s_adapters_unregister, NULL, "adapters unregister" },
    { "list", "registered adapter keys and their departments", "[--json]",
      "Prints department and public key of every registered adapter key.\n\n"
      "Options:\n"
      "  --json        a JSON array of {department, public_key}\n",
      s_adapters_list, NULL, "adapters list" },
    CLI_COMMANDS_END
};
