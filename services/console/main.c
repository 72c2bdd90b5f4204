/*  civicbus-console — the command center's one screen (一屏统管).

    Operator actions and views over HTTP: accept, reject, dispatch,
    reassign, approve, verify, close, reopen, merge, follow up.

    This binary is the service's skeleton: it reads its configuration,
    checks Redis, reports ready and stops cleanly on SIGTERM. The operator API arrives with issue 4. */

#include "civicbus/service.h"

static const cb_setting_t s_settings [] = {
    { "CIVICBUS_CONSOLE_LISTEN", "127.0.0.1:8090", CB_SETTING_HOSTPORT, 0, 0,
      "where the operator API listens" },
    CB_SETTINGS_COMMON,
    { NULL }
};

int
main (int argc, char **argv)
{
    const cb_service_info_t info = {
        "console",
        "The command center's operator API (一屏统管). (Skeleton: the operator actions arrive\nwith issue 4.)",
        NULL,
        s_settings
    };
    cb_config_t *config;
    int rc = cb_service_start (&info, argc, argv, &config);
    if (rc)
        return rc < 0 ? 2 : 0;
    rc = cb_service_idle (config, "operator API not built yet (issue 4)", 2000);
    cb_config_destroy (&config);
    return rc;
}
