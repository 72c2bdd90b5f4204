/*  civicbus-notifier — tells people what happened to their tickets.

    Status pushes to the 12345 hotline, SMS to reporters, alerts to
    supervisors, webhooks; from an outbox in Redis, with retries.

    This binary is the service's skeleton: it reads its configuration,
    checks Redis, reports ready and stops cleanly on SIGTERM. Delivery arrives with issue 5. */

#include "civicbus/service.h"

static const cb_setting_t s_settings [] = {
    { "CIVICBUS_NOTIFIER_BIND", "tcp://127.0.0.1:5554", CB_SETTING_ENDPOINTS, 0, 0,
      "where the dispatcher rings the notifier" },
    CB_SETTINGS_COMMON,
    { NULL }
};

int
main (int argc, char **argv)
{
    const cb_service_info_t info = {
        "notifier",
        "Tells people what happened: hotline push-back, SMS, supervisor alerts and webhooks\nfrom the Redis outbox. (Skeleton: delivery arrives with issue 5.)",
        NULL,
        s_settings
    };
    cb_config_t *config;
    int rc = cb_service_start (&info, argc, argv, &config);
    if (rc)
        return rc < 0 ? 2 : 0;
    rc = cb_service_idle (config, "delivery not built yet (issue 5)", 2000);
    cb_config_destroy (&config);
    return rc;
}
