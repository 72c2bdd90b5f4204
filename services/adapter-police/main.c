/*  civicbus-adapter-police — the police (公安) department adapter.

    Takes dispatch orders from the dispatcher (ZeroMQ DEALER, CURVE) and
    forwards them to the police incident system; turns its answers into replies.

    This binary is the service's skeleton: it reads its configuration,
    checks Redis, reports ready and stops cleanly on SIGTERM. The department protocol arrives with issue 4. */

#include "civicbus/service.h"

static const cb_setting_t s_settings [] = {
    { "CIVICBUS_ADAPTER_ENDPOINTS", "tcp://127.0.0.1:5552", CB_SETTING_ENDPOINTS, 0, 0,
      "the dispatchers' adapter endpoints (active and standby)" },
    { "CIVICBUS_DEPT_URL", "http://127.0.0.1:9101/incidents", CB_SETTING_STRING, 0, 0, "the department system's URL" },
    CB_SETTINGS_COMMON,
    { NULL }
};

int
main (int argc, char **argv)
{
    const cb_service_info_t info = {
        "adapter-police",
        "The police (公安) department adapter: forwards dispatch orders to the police incident system\nand its answers back to the dispatcher. (Skeleton: the department protocol arrives with issue 4.)",
        NULL,
        s_settings
    };
    cb_config_t *config;
    int rc = cb_service_start (&info, argc, argv, &config);
    if (rc)
        return rc < 0 ? 2 : 0;
    rc = cb_service_idle (config, "department protocol not built yet (issue 4)", 2000);
    cb_config_destroy (&config);
    return rc;
}
