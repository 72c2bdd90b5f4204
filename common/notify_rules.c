/*  notify_rules.c — the notifier's configuration and its decisions (see
    notify_rules.h for who hears what).

    The configuration is kept as the parsed JSON tree: every string the
    rules hand out points into it, so nothing is copied and everything is
    freed with the tree. Secrets named by *_env are copied into the tree at
    load, so they live as long as the rules do.

    Templates are looked up as templates.CHANNEL.EVENT, then
    templates.CHANNEL."*", then the built-in Chinese defaults below; so a
    city that configures nothing still tells its citizens in words. */

#include "civicbus/notify_rules.h"
#include "civicbus/ticket_json.h"
#include "civicbus/mask.h"
#include "civicbus/clock.h"

#include <assert.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    notify_webhook_t pub;
    json_t *events;             //  array of names, or NULL = "*"
    json_t *departments;        //  array or NULL = any
    json_t *areas;              //  array or NULL = any
} s_webhook_t;

typedef struct {
    const char *name;
    int level;                  //  0: every level
    const char *area;           //  "": the whole city
    const char *email;
    const char *phone;
} s_supervisor_t;

typedef struct {
    const char *code;
    const char *name;
    const char *email;
    const char *phone;
} s_department_t;

struct _notify_rules_t {
    json_t *root;
    json_t *templates;          //  channel -> event -> text | {subject, text}; may be NULL
    notify_endpoints_t endpoints;
    s_webhook_t *webhooks;
    size_t n_webhooks;
    s_supervisor_t *supervisors;
    size_t n_supervisors;
    s_department_t *departments;
    size_t n_departments;
};

//  Built-in templates (channel, event, subject, text).
typedef struct {
    notify_channel_t channel;
    const char *event;
    const char *subject;
    const char *text;
} s_default_template_t;

static const s_default_template_t s_defaults [] = {
    { NOTIFY_SMS, "accept", NULL,
      "【一网统管】您反映的问题已受理，工单号{ticket_id}，我们将尽快派单处理。" },
    { NOTIFY_SMS, "reject", NULL,
      "【一网统管】很抱歉，您反映的问题（工单号{ticket_id}）不予受理，原因：{reason}。" },
    { NOTIFY_SMS, "resolve", NULL,
      "【一网统管】您反映的问题（工单号{ticket_id}）已由{department}办结：{resolution}。" },
    { NOTIFY_SMS, "verify", NULL,
      "【一网统管】您的工单{ticket_id}已核查结案。问题是否已解决？您对处理结果是否满意？"
      "请回复1至5分（5分为非常满意）。" },
    { NOTIFY_SMS, "urge", NULL,
      "【一网统管】催办：工单{ticket_id}（{category}）请尽快处理，办理时限{due}。" },
    { NOTIFY_SMS, "warning", NULL,
      "【一网统管】预警：工单{ticket_id}（{category}）即将超期，时限{due}，请抓紧办理。" },
    { NOTIFY_SMS, "overdue", NULL,
      "【一网统管】超期：工单{ticket_id}（{department}）已超过办理时限{due}。" },
    { NOTIFY_SMS, "escalate", NULL,
      "【一网统管】督办（第{level}级）：工单{ticket_id}（{department}）已升级督办，请关注。" },
    { NOTIFY_SMS, "*", NULL, "【一网统管】工单{ticket_id}：{event_label}。" },
    { NOTIFY_EMAIL, "urge", "催办：工单{ticket_id}",
      "工单{ticket_id}（{category}，{address}）收到催办，请尽快处理。\n办理时限：{due}\n当前状态：{state}\n" },
    { NOTIFY_EMAIL, "warning", "预警：工单{ticket_id}即将超期",
      "工单{ticket_id}（{category}，{address}）即将超过办理时限。\n时限：{due}\n当前状态：{state}\n" },
    { NOTIFY_EMAIL, "overdue", "超期：工单{ticket_id}",
      "工单{ticket_id}（{category}）已超过办理时限{due}。\n承办部门：{department}\n当前状态：{state}\n" },
    { NOTIFY_EMAIL, "escalate", "督办（第{level}级）：工单{ticket_id}",
      "工单{ticket_id}（{category}，{address}）已升级督办至第{level}级。\n承办部门：{department}\n"
      "办理时限：{due}\n当前状态：{state}\n" },
    { NOTIFY_EMAIL, "*", "工单{ticket_id}：{event_label}",
      "工单{ticket_id}：{event_label}（{time}）。\n当前状态：{state}\n{note}\n" },
};

static const char *const s_placeholders [] = {
    "ticket_id", "external_id", "category", "department", "department_code", "state",
    "state_code", "event", "event_label", "time", "due", "resolution", "reason", "note",
    "level", "address", "satisfaction", "extension_days", NULL
};

static const char *const s_hotline_events [] = {
    "accept", "reject", "dispatch", "reassign", "sign", "return", "request_extension",
    "approve_extension", "refuse_extension", "request_suspension", "approve_suspension",
    "refuse_suspension", "resume", "progress", "resolve", "verify", "reopen", "merge",
    "cancel", "follow_up", NULL
};

static const struct { const char *name, *label; } s_event_labels [] = {
    { "received", "已收到" }, { "accept", "已受理立案" }, { "reject", "不予受理" },
    { "dispatch", "已派单" }, { "reassign", "已改派" }, { "sign", "已签收" },
    { "return", "已退单" }, { "request_extension", "申请延期" },
    { "approve_extension", "同意延期" }, { "refuse_extension", "不同意延期" },
    { "request_suspension", "申请挂账" }, { "approve_suspension", "同意挂账" },
    { "refuse_suspension", "不同意挂账" }, { "resume", "恢复办理" },
    { "progress", "办理进展" }, { "resolve", "已办结" }, { "verify", "已核查结案" },
    { "reopen", "重办" }, { "merge", "已并单" }, { "cancel", "已撤回" },
    { "follow_up", "已回访" }, { "escalate", "督办" }, { "urge", "催办" },
    { "supplement", "补充材料" }, { "warning", "即将超期预警" }, { "overdue", "已超期" },
    { NULL, NULL }
};

/* ---- private: small helpers ---- */

static void
s_err (char *err, size_t cap, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    vsnprintf (err, cap, fmt, args);
    va_end (args);
}

static bool
s_in_list (const char *const *list, const char *name)
{
    for (size_t i = 0; name && list [i]; i++)
        if (strcmp (list [i], name) == 0)
            return true;
    return false;
}

static bool
s_empty (const char *s)
{
    return !s || !*s;
}

static const char *
s_text (const char *s)
{
    return s ? s : "";
}

static bool
s_is_http_url (const char *url)
{
    return url && (strncmp (url, "http://", 7) == 0 || strncmp (url, "https://", 8) == 0)
        && strlen (url) > 8 && !strpbrk (url, " \t\r\n");
}

static uint32_t
s_fnv1a (const char *text)
{
    uint32_t hash = 2166136261u;
    for (const unsigned char *p = (const unsigned char *) text; *p; p++) {
        hash ^= *p;
        hash *= 16777619u;
    }
    return hash;
}

/* ---- private: configuration ---- */

//  A string member: absent -> *out NULL and 0; present and not a string ->
//  error. `required` makes absence an error.
static int
s_string (json_t *obj, const char *key, const char *path, bool required, const char **out,
          char *err, size_t cap)
{
    json_t *value = json_object_get (obj, key);
    *out = NULL;
    if (!value || json_is_null (value)) {
        if (required) {
            s_err (err, cap, "%s.%s: missing", path, key);
            return -1;
        }
        return 0;
    }
    if (!json_is_string (value)) {
        s_err (err, cap, "%s.%s: must be a string", path, key);
        return -1;
    }
    *out = json_string_value (value);
    return 0;
}

//  A secret: "KEY" in the file, or "KEY_env" naming an environment
//  variable. The value from the environment is stored in the tree as "KEY".
static int
s_secret (json_t *obj, const char *key, const char *path, bool required, const char **out,
          char *err, size_t cap)
{
    if (s_string (obj, key, path, false, out, err, cap))
        return -1;
    char env_key [64];
    snprintf (env_key, sizeof env_key, "%s_env", key);
    const char *env_name = NULL;
    if (s_string (obj, env_key, path, false, &env_name, err, cap))
        return -1;
    if (env_name) {
        const char *value = getenv (env_name);
        if (s_empty (value)) {
            s_err (err, cap, "%s.%s: the environment variable %s is not set", path, env_key,
                   env_name);
            return -1;
        }
        if (json_object_set_new (obj, key, json_string (value))) {
            s_err (err, cap, "%s.%s: not valid UTF-8 or out of memory", path, env_key);
            return -1;
        }
        *out = json_string_value (json_object_get (obj, key));
    }
    if (required && s_empty (*out)) {
        s_err (err, cap, "%s.%s: missing (give %s or %s)", path, key, key, env_key);
        return -1;
    }
    return 0;
}

static int
s_known_keys (json_t *obj, const char *path, const char *const *known, char *err, size_t cap)
{
    if (!json_is_object (obj)) {
        s_err (err, cap, "%s: must be an object", path);
        return -1;
    }
    const char *key;
    json_t *value;
    json_object_foreach (obj, key, value) {
        if (!s_in_list (known, key)) {
            s_err (err, cap, "%s.%s: unknown field", path, key);
            return -1;
        }
    }
    return 0;
}

//  Checks that every {name} in a template is a known placeholder.
static int
s_check_template (const char *text, const char *path, char *err, size_t cap)
{
    for (const char *p = strchr (text, '{'); p; p = strchr (p + 1, '{')) {
        const char *end = strchr (p, '}');
        if (!end) {
            s_err (err, cap, "%s: '{' without '}'", path);
            return -1;
        }
        char name [40];
        size_t len = (size_t) (end - p - 1);
        if (len >= sizeof name) {
            s_err (err, cap, "%s: unknown placeholder {%.*s}", path, (int) (len > 30 ? 30 : len),
                   p + 1);
            return -1;
        }
        memcpy (name, p + 1, len);
        name [len] = 0;
        if (!s_in_list (s_placeholders, name)) {
            s_err (err, cap, "%s: unknown placeholder {%s}", path, name);
            return -1;
        }
    }
    return 0;
}

//  An optional array of non-empty strings; `events` also checks names.
static int
s_string_array (json_t *obj, const char *key, const char *path, bool events, json_t **out,
                char *err, size_t cap)
{
    json_t *array = json_object_get (obj, key);
    *out = NULL;
    if (!array || json_is_null (array))
        return 0;
    if (!json_is_array (array)) {
        s_err (err, cap, "%s.%s: must be an array of strings", path, key);
        return -1;
    }
    size_t i;
    json_t *item;
    json_array_foreach (array, i, item) {
        const char *text = json_string_value (item);
        if (s_empty (text)) {
            s_err (err, cap, "%s.%s[%zu]: must be a non-empty string", path, key, i);
            return -1;
        }
        if (events && strcmp (text, "*") != 0 && !notify_event_known (text)) {
            s_err (err, cap, "%s.%s[%zu]: unknown event '%s'", path, key, i, text);
            return -1;
        }
    }
    *out = json_array_size (array) ? array : NULL;
    return 0;
}

static int
s_load_endpoints (notify_rules_t *self, char *err, size_t cap)
{
    notify_endpoints_t *e = &self->endpoints;
    json_t *hotline = json_object_get (self->root, "hotline");
    if (hotline) {
        static const char *const known [] = { "url", "secret", "secret_env", NULL };
        if (s_known_keys (hotline, "hotline", known, err, cap)
        ||  s_string (hotline, "url", "hotline", true, &e->hotline_url, err, cap)
        ||  s_secret (hotline, "secret", "hotline", true, &e->hotline_secret, err, cap))
            return -1;
        if (!s_is_http_url (e->hotline_url)) {
            s_err (err, cap, "hotline.url: must be an http:// or https:// URL");
            return -1;
        }
    }
    json_t *sms = json_object_get (self->root, "sms");
    if (sms) {
        static const char *const known [] = { "url", "token", "token_env", NULL };
        if (s_known_keys (sms, "sms", known, err, cap)
        ||  s_string (sms, "url", "sms", true, &e->sms_url, err, cap)
        ||  s_secret (sms, "token", "sms", true, &e->sms_token, err, cap))
            return -1;
        if (!s_is_http_url (e->sms_url)) {
            s_err (err, cap, "sms.url: must be an http:// or https:// URL");
            return -1;
        }
    }
    json_t *smtp = json_object_get (self->root, "smtp");
    if (smtp) {
        static const char *const known [] = { "url", "from", "username", "password",
                                              "password_env", NULL };
        if (s_known_keys (smtp, "smtp", known, err, cap)
        ||  s_string (smtp, "url", "smtp", true, &e->smtp_url, err, cap)
        ||  s_string (smtp, "from", "smtp", true, &e->smtp_from, err, cap)
        ||  s_string (smtp, "username", "smtp", false, &e->smtp_username, err, cap)
        ||  s_secret (smtp, "password", "smtp", false, &e->smtp_password, err, cap))
            return -1;
        if (strncmp (e->smtp_url, "smtp://", 7) != 0 && strncmp (e->smtp_url, "smtps://", 8) != 0) {
            s_err (err, cap, "smtp.url: must be an smtp:// or smtps:// URL");
            return -1;
        }
        if (!strchr (e->smtp_from, '@')) {
            s_err (err, cap, "smtp.from: must be an e-mail address");
            return -1;
        }
    }
    return 0;
}

static int
s_load_webhooks (notify_rules_t *self, char *err, size_t cap)
{
    json_t *list = json_object_get (self->root, "webhooks");
    if (!list)
        return 0;
    if (!json_is_array (list)) {
        s_err (err, cap, "webhooks: must be an array");
        return -1;
    }
    self->webhooks = calloc (json_array_size (list) + 1, sizeof *self->webhooks);
    if (!self->webhooks) {
        s_err (err, cap, "out of memory");
        return -1;
    }
    static const char *const known [] = { "name", "url", "secret", "secret_env", "events",
                                          "departments", "areas", NULL };
    size_t i;
    json_t *item;
    json_array_foreach (list, i, item) {
        char path [48];
        snprintf (path, sizeof path, "webhooks[%zu]", i);
        s_webhook_t *w = &self->webhooks [i];
        if (s_known_keys (item, path, known, err, cap)
        ||  s_string (item, "name", path, true, &w->pub.name, err, cap)
        ||  s_string (item, "url", path, true, &w->pub.url, err, cap)
        ||  s_secret (item, "secret", path, true, &w->pub.secret, err, cap)
        ||  s_string_array (item, "events", path, true, &w->events, err, cap)
        ||  s_string_array (item, "departments", path, false, &w->departments, err, cap)
        ||  s_string_array (item, "areas", path, false, &w->areas, err, cap))
            return -1;
        size_t len = strlen (w->pub.name);
        if (len == 0 || len > 63 || strspn (w->pub.name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                "abcdefghijklmnopqrstuvwxyz0123456789._-") != len) {
            s_err (err, cap, "%s.name: 1..63 of A-Z a-z 0-9 . _ -", path);
            return -1;
        }
        if (!s_is_http_url (w->pub.url)) {
            s_err (err, cap, "%s.url: must be an http:// or https:// URL", path);
            return -1;
        }
        for (size_t k = 0; k < i; k++)
            if (strcmp (self->webhooks [k].pub.name, w->pub.name) == 0) {
                s_err (err, cap, "%s.name: '%s' is used twice", path, w->pub.name);
                return -1;
            }
        self->n_webhooks++;
    }
    return 0;
}

static int
s_load_people (notify_rules_t *self, char *err, size_t cap)
{
    json_t *list = json_object_get (self->root, "supervisors");
    if (list) {
        if (!json_is_array (list)) {
            s_err (err, cap, "supervisors: must be an array");
            return -1;
        }
        self->supervisors = calloc (json_array_size (list) + 1, sizeof *self->supervisors);
        if (!self->supervisors) {
            s_err (err, cap, "out of memory");
            return -1;
        }
        static const char *const known [] = { "name", "level", "area", "email", "phone", NULL };
        size_t i;
        json_t *item;
        json_array_foreach (list, i, item) {
            char path [48];
            snprintf (path, sizeof path, "supervisors[%zu]", i);
            s_supervisor_t *s = &self->supervisors [i];
            if (s_known_keys (item, path, known, err, cap)
            ||  s_string (item, "name", path, true, &s->name, err, cap)
            ||  s_string (item, "area", path, false, &s->area, err, cap)
            ||  s_string (item, "email", path, false, &s->email, err, cap)
            ||  s_string (item, "phone", path, false, &s->phone, err, cap))
                return -1;
            json_t *level = json_object_get (item, "level");
            if (level && (!json_is_integer (level) || json_integer_value (level) < 0
                          || json_integer_value (level) > TICKET_ESCALATION_MAX)) {
                s_err (err, cap, "%s.level: must be a whole number 0..%d (0: every level)",
                       path, TICKET_ESCALATION_MAX);
                return -1;
            }
            s->level = level ? (int) json_integer_value (level) : 0;
            if (s_empty (s->email) && s_empty (s->phone)) {
                s_err (err, cap, "%s: needs an email or a phone", path);
                return -1;
            }
            if (!s->area)
                s->area = "";
            self->n_supervisors++;
        }
    }
    json_t *departments = json_object_get (self->root, "departments");
    if (departments) {
        if (!json_is_object (departments)) {
            s_err (err, cap, "departments: must be an object of department code -> contact");
            return -1;
        }
        self->departments = calloc (json_object_size (departments) + 1,
                                    sizeof *self->departments);
        if (!self->departments) {
            s_err (err, cap, "out of memory");
            return -1;
        }
        static const char *const known [] = { "name", "email", "phone", NULL };
        const char *code;
        json_t *item;
        json_object_foreach (departments, code, item) {
            char path [96];
            snprintf (path, sizeof path, "departments.%.80s", code);
            s_department_t *d = &self->departments [self->n_departments];
            d->code = code;
            if (s_known_keys (item, path, known, err, cap)
            ||  s_string (item, "name", path, false, &d->name, err, cap)
            ||  s_string (item, "email", path, false, &d->email, err, cap)
            ||  s_string (item, "phone", path, false, &d->phone, err, cap))
                return -1;
            self->n_departments++;
        }
    }
    return 0;
}

static int
s_load_templates (notify_rules_t *self, char *err, size_t cap)
{
    json_t *templates = json_object_get (self->root, "templates");
    if (!templates)
        return 0;
    static const char *const channels [] = { "sms", "email", "hotline", NULL };
    if (s_known_keys (templates, "templates", channels, err, cap))
        return -1;
    const char *channel;
    json_t *events;
    json_object_foreach (templates, channel, events) {
        char path [96];
        snprintf (path, sizeof path, "templates.%s", channel);
        if (!json_is_object (events)) {
            s_err (err, cap, "%s: must be an object of event -> template", path);
            return -1;
        }
        const char *event;
        json_t *value;
        json_object_foreach (events, event, value) {
            snprintf (path, sizeof path, "templates.%s.%.40s", channel, event);
            if (strcmp (event, "*") != 0 && !notify_event_known (event)) {
                s_err (err, cap, "%s: unknown event '%s'", path, event);
                return -1;
            }
            const char *text = json_string_value (value), *subject = NULL;
            if (json_is_object (value)) {
                static const char *const known [] = { "subject", "text", NULL };
                if (s_known_keys (value, path, known, err, cap)
                ||  s_string (value, "text", path, true, &text, err, cap)
                ||  s_string (value, "subject", path, false, &subject, err, cap))
                    return -1;
                if (subject && strcmp (channel, "email") != 0) {
                    s_err (err, cap, "%s.subject: only e-mail templates have a subject", path);
                    return -1;
                }
            }
            if (s_empty (text)) {
                s_err (err, cap, "%s: must be a non-empty string or {\"subject\", \"text\"}", path);
                return -1;
            }
            if (s_check_template (text, path, err, cap)
            ||  (subject && s_check_template (subject, path, err, cap)))
                return -1;
        }
    }
    self->templates = templates;
    return 0;
}

/* ---- private: decisions ---- */

static const char *
s_event_label (const char *type)
{
    for (size_t i = 0; s_event_labels [i].name; i++)
        if (strcmp (s_event_labels [i].name, type) == 0)
            return s_event_labels [i].label;
    return type;
}

static const char *
s_state_label (int state)
{
    switch (state) {
        case CIVICBUS__V1__TICKET_STATE__RECEIVED:    return "待受理";
        case CIVICBUS__V1__TICKET_STATE__ACCEPTED:    return "已立案";
        case CIVICBUS__V1__TICKET_STATE__DISPATCHED:  return "待签收";
        case CIVICBUS__V1__TICKET_STATE__IN_PROGRESS: return "办理中";
        case CIVICBUS__V1__TICKET_STATE__RESOLVED:    return "已办结";
        case CIVICBUS__V1__TICKET_STATE__CLOSED:      return "已结案";
        case CIVICBUS__V1__TICKET_STATE__REJECTED:    return "不予受理";
        case CIVICBUS__V1__TICKET_STATE__RETURNED:    return "已退单";
        case CIVICBUS__V1__TICKET_STATE__SUSPENDED:   return "挂账";
        case CIVICBUS__V1__TICKET_STATE__MERGED:      return "已并单";
        case CIVICBUS__V1__TICKET_STATE__CANCELLED:   return "已撤回";
        default:                                      return "未知";
    }
}

//  The event's JSON payload member `key` (string), or NULL.
static json_t *
s_payload (const cb_event_t *ev)
{
    if (!ev->payload.len || !ev->payload.data)
        return NULL;
    json_t *root = json_loadb ((const char *) ev->payload.data, ev->payload.len, 0, NULL);
    if (root && !json_is_object (root)) {
        json_decref (root);
        root = NULL;
    }
    return root;
}

//  The department this event concerns: the payload's (a dispatch names its
//  department), else the ticket's current one. Copied into buf.
static const char *
s_event_department (const cb_ticket_t *t, const cb_event_t *ev, char *buf, size_t cap)
{
    json_t *payload = s_payload (ev);
    const char *dept = json_string_value (json_object_get (payload, "department"));
    snprintf (buf, cap, "%s", dept ? dept : s_text (t->department));
    json_decref (payload);
    return buf;
}

static int
s_level_at (cb_event_t *const *history, size_t index)
{
    const cb_event_t *ev = history [index];
    json_t *payload = s_payload (ev);
    json_t *level = json_object_get (payload, "level");
    int result = -1;
    if (json_is_integer (level))
        result = (int) json_integer_value (level);
    json_decref (payload);
    if (result < 0) {
        result = 0;
        for (size_t i = 0; i <= index; i++)
            if (history [i] && strcmp (s_text (history [i]->type), "escalate") == 0)
                result++;
    }
    if (result > TICKET_ESCALATION_MAX)
        result = TICKET_ESCALATION_MAX;
    if (result < 1 && strcmp (s_text (ev->type), "overdue") == 0)
        result = 1;
    return result;
}

static const s_department_t *
s_department (const notify_rules_t *self, const char *code)
{
    for (size_t i = 0; code && i < self->n_departments; i++)
        if (strcmp (self->departments [i].code, code) == 0)
            return &self->departments [i];
    return NULL;
}

//  "2026-10-09 17:30" in Asia/Shanghai, or "" for 0.
static void
s_short_time (int64_t ms, char *buf, size_t cap)
{
    char iso [40];
    if (ms <= 0 || cap < 17) {
        if (cap)
            buf [0] = 0;
        return;
    }
    cb_time_format_iso (ms, iso, sizeof iso);
    snprintf (buf, cap, "%.10s %.5s", iso, iso + 11);
}

//  The deadline of the stage that started last and has a limit.
static int64_t
s_due_ms (const cb_ticket_t *t)
{
    int64_t due = 0, started = -1;
    for (size_t i = 0; i < t->n_deadlines; i++) {
        const Civicbus__V1__Deadline *d = t->deadlines [i];
        if (d && d->due_ms > 0 && d->started_ms > started) {
            started = d->started_ms;
            due = d->due_ms;
        }
    }
    return due;
}

//  True when `area` is "" or names one of the ticket's grid path codes or
//  is a prefix of its grid code.
static bool
s_area_matches (const cb_ticket_t *t, const char *area)
{
    if (s_empty (area))
        return true;
    const Civicbus__V1__Location *where = t->location;
    if (!where)
        return false;
    for (size_t i = 0; i < where->n_grid_path; i++)
        if (where->grid_path [i] && strcmp (where->grid_path [i], area) == 0)
            return true;
    return !s_empty (where->grid_code) && strncmp (where->grid_code, area, strlen (area)) == 0;
}

static bool
s_array_has (json_t *array, const char *value)
{
    size_t i;
    json_t *item;
    json_array_foreach (array, i, item)
        if (value && strcmp (json_string_value (item), value) == 0)
            return true;
    return false;
}

static bool
s_webhook_matches (const s_webhook_t *w, const cb_ticket_t *t, const char *type,
                   const char *dept)
{
    if (w->events && !s_array_has (w->events, "*")) {
        if (!notify_event_known (type) || !s_array_has (w->events, type))
            return false;
    }
    if (w->departments && !s_array_has (w->departments, dept)
    &&  !s_array_has (w->departments, t->department))
        return false;
    if (w->areas) {
        size_t i;
        json_t *item;
        bool any = false;
        json_array_foreach (w->areas, i, item)
            any = any || s_area_matches (t, json_string_value (item));
        if (!any)
            return false;
    }
    return true;
}

//  The template text (and subject) for channel and event.
static const char *
s_template (const notify_rules_t *self, notify_channel_t channel, const char *type,
            const char **subject, const char **chosen)
{
    *subject = NULL;
    json_t *events = json_object_get (self->templates, notify_channel_name (channel));
    const char *keys [] = { type, "*" };
    for (size_t k = 0; k < 2; k++) {
        json_t *value = json_object_get (events, keys [k]);
        if (json_is_string (value)) {
            *chosen = keys [k];
            return json_string_value (value);
        }
        if (json_is_object (value)) {
            *subject = json_string_value (json_object_get (value, "subject"));
            *chosen = keys [k];
            return json_string_value (json_object_get (value, "text"));
        }
    }
    for (size_t k = 0; k < 2; k++)
        for (size_t i = 0; i < sizeof s_defaults / sizeof s_defaults [0]; i++)
            if (s_defaults [i].channel == channel && strcmp (s_defaults [i].event, keys [k]) == 0) {
                *subject = s_defaults [i].subject;
                *chosen = keys [k];
                return s_defaults [i].text;
            }
    return NULL;
}

//  Replaces every occurrence of `phone` in *text by its mask (the phone in
//  a spelling cb_mask_text does not catch: a landline, a foreign number).
static int
s_mask_phone_in (char **text, const char *phone)
{
    if (!phone || strlen (phone) < 5 || !strstr (*text, phone))
        return 0;
    char masked [64];
    cb_mask_phone (phone, masked, sizeof masked);
    size_t plen = strlen (phone), mlen = strlen (masked), count = 0;
    for (const char *p = strstr (*text, phone); p; p = strstr (p + plen, phone))
        count++;
    size_t len = strlen (*text);
    char *out = malloc (len + count * (mlen > plen ? mlen - plen : 0) + 1);
    if (!out)
        return -1;
    char *w = out;
    const char *r = *text;
    for (const char *p = strstr (r, phone); p; p = strstr (r, phone)) {
        memcpy (w, r, (size_t) (p - r));
        w += p - r;
        memcpy (w, masked, mlen);
        w += mlen;
        r = p + plen;
    }
    strcpy (w, r);
    free (*text);
    *text = out;
    return 0;
}

//  Masks every mobile number and the reporter's phone in a JSON body.
static char *
s_masked_dump (json_t *root, const cb_ticket_t *t)
{
    char *text = json_dumps (root, JSON_COMPACT);
    if (!text)
        return NULL;
    size_t len = strlen (text);
    char *masked = malloc (len + 1);
    if (!masked) {
        free (text);
        return NULL;
    }
    cb_mask_text (text, masked, len + 1);
    free (text);
    if (t->reporter && s_mask_phone_in (&masked, t->reporter->phone)) {
        free (masked);
        return NULL;
    }
    return masked;
}

static int
s_add (notify_plan_t *plan, notify_channel_t channel, const char *ticket_id, int seq,
       const char *recipient, const char *template_name, const char *subject, char *body)
{
    char did [NOTIFY_DID_MAX];
    notify_delivery_id (did, sizeof did, ticket_id, seq, channel, recipient);
    for (size_t i = 0; i < plan->count; i++)
        if (strcmp (plan->items [i].did, did) == 0) {
            free (body);         //  the same person by two routes hears once
            return 0;
        }
    if (plan->count == plan->cap) {
        size_t cap = plan->cap ? plan->cap * 2 : 8;
        notify_delivery_t *items = realloc (plan->items, cap * sizeof *items);
        if (!items) {
            free (body);
            return -1;
        }
        plan->items = items;
        plan->cap = cap;
    }
    notify_delivery_t *d = &plan->items [plan->count];
    memset (d, 0, sizeof *d);
    d->channel = channel;
    snprintf (d->did, sizeof d->did, "%s", did);
    d->recipient = strdup (recipient);
    d->template_name = strdup (template_name);
    d->subject = strdup (subject ? subject : "");
    d->body = body;
    if (!d->recipient || !d->template_name || !d->subject || !body) {
        free (d->recipient);
        free (d->template_name);
        free (d->subject);
        free (body);
        return -1;
    }
    plan->count++;
    return 1;
}

//  A text delivery (sms, email) rendered from its template.
static int
s_add_text (const notify_rules_t *self, notify_plan_t *plan, notify_channel_t channel,
            const cb_ticket_t *t, const cb_event_t *ev, int level, const char *recipient)
{
    const char *subject_template = NULL, *chosen = NULL;
    const char *text = s_template (self, channel, ev->type, &subject_template, &chosen);
    if (!text)
        return 0;
    char *body = malloc (2048);
    if (!body)
        return -1;
    notify_rules_render (self, text, t, ev, level, body, 2048);
    char subject [512] = "";
    if (channel == NOTIFY_EMAIL)
        notify_rules_render (self, subject_template ? subject_template : "工单{ticket_id}",
                             t, ev, level, subject, sizeof subject);
    char template_name [64];
    snprintf (template_name, sizeof template_name, "%s.%.40s", notify_channel_name (channel),
              chosen);
    int rc = s_add (plan, channel, t->id, ev->sequence, recipient, template_name, subject, body);
    return rc < 0 ? -1 : rc;
}

static int
s_add_contact (const notify_rules_t *self, notify_plan_t *plan, const cb_ticket_t *t,
               const cb_event_t *ev, int level, const char *email, const char *phone)
{
    int added = 0, rc = 0;
    if (!s_empty (email)) {
        if ((rc = s_add_text (self, plan, NOTIFY_EMAIL, t, ev, level, email)) < 0)
            return -1;
        added += rc;
    }
    if (!s_empty (phone)) {
        if ((rc = s_add_text (self, plan, NOTIFY_SMS, t, ev, level, phone)) < 0)
            return -1;
        added += rc;
    }
    return added;
}

static int
s_set (json_t *obj, const char *key, json_t *value)
{
    return value ? json_object_set_new (obj, key, value) : -1;
}

static int
s_add_hotline (const notify_rules_t *self, notify_plan_t *plan, const cb_ticket_t *t,
               const cb_event_t *ev, int level, const char *dept)
{
    const char *type = ev->type;
    const char *chosen = "text";
    json_t *events = json_object_get (self->templates, "hotline");
    const char *text_template = json_string_value (json_object_get (events, type));
    if (!text_template)
        text_template = json_string_value (json_object_get (events, "*"));
    char text [2048];
    if (text_template) {
        notify_rules_render (self, text_template, t, ev, level, text, sizeof text);
        chosen = type;
    }
    else
    if (!s_empty (ev->note))
        cb_mask_text (ev->note, text, sizeof text);
    else
        snprintf (text, sizeof text, "%s", s_event_label (type));

    char did [NOTIFY_DID_MAX], when [40];
    notify_delivery_id (did, sizeof did, t->id, ev->sequence, NOTIFY_HOTLINE, "12345");
    cb_time_format_iso (ev->time_ms, when, sizeof when);
    const s_department_t *d = s_department (self, dept);
    json_t *root = json_object ();
    int rc = root ? 0 : -1;
    rc |= s_set (root, "delivery_id", json_string (did));
    rc |= s_set (root, "ticket_id", json_string (s_text (t->id)));
    rc |= s_set (root, "hotline_ticket_id", json_string (s_text (t->external_id)));
    rc |= s_set (root, "sequence", json_integer (ev->sequence));
    rc |= s_set (root, "event", json_string (type));
    rc |= s_set (root, "event_label", json_string (s_event_label (type)));
    rc |= s_set (root, "time", json_string (when));
    rc |= s_set (root, "state", json_string (ticket_state_name (ev->to_state)));
    rc |= s_set (root, "department", json_string (dept));
    rc |= s_set (root, "department_name", json_string (d && d->name ? d->name : dept));
    rc |= s_set (root, "text", json_stringn_nocheck (text, strlen (text)));
    if (strcmp (type, "resolve") == 0) {
        char resolution [2048];
        cb_mask_text (!s_empty (ev->note) ? ev->note : s_text (t->resolution), resolution,
                      sizeof resolution);
        rc |= s_set (root, "resolution", json_string (resolution));
    }
    if (strcmp (type, "reject") == 0 || strcmp (type, "return") == 0) {
        char reason [1024];
        cb_mask_text (strcmp (type, "reject") == 0 && !s_empty (t->reject_reason)
                      ? t->reject_reason : s_text (ev->note), reason, sizeof reason);
        rc |= s_set (root, "reason", json_string (reason));
    }
    if (strstr (type, "extension"))
        rc |= s_set (root, "extension_days", json_integer (t->extension_days));
    if (strcmp (type, "follow_up") == 0)
        rc |= s_set (root, "satisfaction", json_integer (t->satisfaction));
    char *body = rc == 0 ? s_masked_dump (root, t) : NULL;
    json_decref (root);
    if (!body)
        return -1;
    char template_name [64];
    snprintf (template_name, sizeof template_name, "hotline.%.40s", chosen);
    return s_add (plan, NOTIFY_HOTLINE, t->id, ev->sequence, "12345", template_name, NULL, body);
}

static int
s_add_webhook (notify_plan_t *plan, const s_webhook_t *w, const cb_ticket_t *t,
               const cb_event_t *ev)
{
    char did [NOTIFY_DID_MAX];
    notify_delivery_id (did, sizeof did, t->id, ev->sequence, NOTIFY_WEBHOOK, w->pub.name);
    json_t *root = json_object ();
    int rc = root ? 0 : -1;
    rc |= s_set (root, "delivery_id", json_string (did));
    rc |= s_set (root, "subscription", json_string (w->pub.name));
    rc |= s_set (root, "event", ticket_event_to_json (ev));
    rc |= s_set (root, "ticket", ticket_to_json (t, TICKET_JSON_MASK_PERSONAL));
    char *body = rc == 0 ? s_masked_dump (root, t) : NULL;
    json_decref (root);
    if (!body)
        return -1;
    return s_add (plan, NOTIFY_WEBHOOK, t->id, ev->sequence, w->pub.name, "webhook", NULL, body);
}

/* ---- public ---- */

const char *
notify_channel_name (notify_channel_t channel)
{
    switch (channel) {
        case NOTIFY_SMS:     return "sms";
        case NOTIFY_EMAIL:   return "email";
        case NOTIFY_WEBHOOK: return "webhook";
        case NOTIFY_HOTLINE: return "hotline";
        default:             return NULL;
    }
}

int
notify_channel_from_name (const char *name)
{
    for (int c = 0; name && c < NOTIFY_CHANNEL_COUNT; c++)
        if (strcmp (notify_channel_name ((notify_channel_t) c), name) == 0)
            return c;
    return -1;
}

bool
notify_event_known (const char *name)
{
    if (!name)
        return false;
    if (strcmp (name, "received") == 0 || strcmp (name, "warning") == 0
    ||  strcmp (name, "overdue") == 0)
        return true;
    return ticket_event_from_name (name) >= 0;
}

void
notify_delivery_id (char *buf, size_t cap, const char *ticket_id, int seq,
                    notify_channel_t channel, const char *recipient)
{
    snprintf (buf, cap, "%s#%d#%s#%08x", s_text (ticket_id), seq,
              s_text (notify_channel_name (channel)), s_fnv1a (s_text (recipient)));
}

notify_rules_t *
notify_rules_new (const char *json_text, size_t len, char *err, size_t errcap)
{
    notify_rules_t *self = calloc (1, sizeof *self);
    if (!self) {
        s_err (err, errcap, "out of memory");
        return NULL;
    }
    json_error_t jerr;
    self->root = json_loadb (json_text, len, JSON_REJECT_DUPLICATES, &jerr);
    static const char *const known [] = { "hotline", "sms", "smtp", "webhooks", "supervisors",
                                          "departments", "templates", "comment", NULL };
    if (!self->root)
        s_err (err, errcap, "not JSON: %s (line %d, column %d)", jerr.text, jerr.line,
               jerr.column);
    if (!self->root
    ||  s_known_keys (self->root, "(top)", known, err, errcap)
    ||  s_load_endpoints (self, err, errcap)
    ||  s_load_webhooks (self, err, errcap)
    ||  s_load_people (self, err, errcap)
    ||  s_load_templates (self, err, errcap))
        notify_rules_destroy (&self);
    return self;
}

void
notify_rules_destroy (notify_rules_t **self_p)
{
    assert (self_p);
    notify_rules_t *self = *self_p;
    if (self) {
        free (self->webhooks);
        free (self->supervisors);
        free (self->departments);
        json_decref (self->root);
        free (self);
        *self_p = NULL;
    }
}

const notify_endpoints_t *
notify_rules_endpoints (const notify_rules_t *self)
{
    assert (self);
    return &self->endpoints;
}

const notify_webhook_t *
notify_rules_webhook (const notify_rules_t *self, const char *name)
{
    assert (self);
    for (size_t i = 0; name && i < self->n_webhooks; i++)
        if (strcmp (self->webhooks [i].pub.name, name) == 0)
            return &self->webhooks [i].pub;
    return NULL;
}

size_t
notify_rules_webhook_count (const notify_rules_t *self)
{
    assert (self);
    return self->n_webhooks;
}

void
notify_plan_reset (notify_plan_t *plan)
{
    for (size_t i = 0; plan && i < plan->count; i++) {
        free (plan->items [i].recipient);
        free (plan->items [i].template_name);
        free (plan->items [i].subject);
        free (plan->items [i].body);
    }
    if (plan) {
        free (plan->items);
        memset (plan, 0, sizeof *plan);
    }
}

void
notify_rules_render (const notify_rules_t *self, const char *template_text,
                     const cb_ticket_t *t, const cb_event_t *ev, int level,
                     char *out, size_t cap)
{
    assert (self && template_text && t && ev && out && cap);
    size_t used = 0;
    out [0] = 0;
    char dept_buf [128], value_buf [2048];
    const char *dept = s_event_department (t, ev, dept_buf, sizeof dept_buf);
    for (const char *p = template_text; *p; ) {
        const char *value = NULL;
        size_t advance = 1;
        if (*p == '{') {
            const char *end = strchr (p, '}');
            char name [40] = "";
            if (end && (size_t) (end - p - 1) < sizeof name) {
                memcpy (name, p + 1, (size_t) (end - p - 1));
                name [end - p - 1] = 0;
            }
            value = value_buf;
            value_buf [0] = 0;
            if (strcmp (name, "ticket_id") == 0)
                value = s_text (t->id);
            else if (strcmp (name, "external_id") == 0)
                value = s_text (t->external_id);
            else if (strcmp (name, "category") == 0)
                value = s_text (t->category);
            else if (strcmp (name, "department") == 0) {
                const s_department_t *d = s_department (self, dept);
                value = d && d->name ? d->name : dept;
            }
            else if (strcmp (name, "department_code") == 0)
                value = dept;
            else if (strcmp (name, "state") == 0)
                value = s_state_label (ev->to_state ? (int) ev->to_state : (int) t->state);
            else if (strcmp (name, "state_code") == 0)
                value = ticket_state_name (ev->to_state ? ev->to_state : t->state);
            else if (strcmp (name, "event") == 0)
                value = s_text (ev->type);
            else if (strcmp (name, "event_label") == 0)
                value = s_event_label (s_text (ev->type));
            else if (strcmp (name, "time") == 0)
                s_short_time (ev->time_ms, value_buf, sizeof value_buf);
            else if (strcmp (name, "due") == 0)
                s_short_time (s_due_ms (t), value_buf, sizeof value_buf);
            else if (strcmp (name, "resolution") == 0)
                cb_mask_text (strcmp (s_text (ev->type), "resolve") == 0 && !s_empty (ev->note)
                              ? ev->note : s_text (t->resolution), value_buf, sizeof value_buf);
            else if (strcmp (name, "reason") == 0)
                cb_mask_text (strcmp (s_text (ev->type), "reject") == 0 && !s_empty (t->reject_reason)
                              ? t->reject_reason : s_text (ev->note), value_buf, sizeof value_buf);
            else if (strcmp (name, "note") == 0)
                cb_mask_text (s_text (ev->note), value_buf, sizeof value_buf);
            else if (strcmp (name, "level") == 0)
                snprintf (value_buf, sizeof value_buf, "%d", level);
            else if (strcmp (name, "address") == 0)
                cb_mask_text (t->location ? s_text (t->location->address) : "", value_buf,
                              sizeof value_buf);
            else if (strcmp (name, "satisfaction") == 0) {
                if (t->satisfaction)
                    snprintf (value_buf, sizeof value_buf, "%d", t->satisfaction);
            }
            else if (strcmp (name, "extension_days") == 0) {
                if (t->extension_days)
                    snprintf (value_buf, sizeof value_buf, "%d", t->extension_days);
            }
            else
                value = NULL;       //  not a placeholder: copy the brace
            if (value)
                advance = (size_t) (end - p + 1);
        }
        const char *piece = value ? value : p;
        size_t len = 1;
        if (value)
            len = strlen (value);
        else {
            //  Literal text goes one whole UTF-8 character at a time.
            while (len < 4 && (((unsigned char) p [len]) & 0xC0) == 0x80)
                len++;
            advance = len;
        }
        if (used + len >= cap) {
            //  Cut at a character boundary: drop continuation bytes.
            len = cap - 1 - used;
            while (len > 0 && ((unsigned char) piece [len] & 0xC0) == 0x80)
                len--;
            memcpy (out + used, piece, len);
            used += len;
            break;
        }
        memcpy (out + used, piece, len);
        used += len;
        p += advance;
    }
    out [used] = 0;
}

int
notify_rules_decide (const notify_rules_t *self, const cb_ticket_t *t,
                     cb_event_t *const *history, size_t n_history, size_t index,
                     notify_plan_t *plan)
{
    assert (self && t && history && plan && index < n_history);
    (void) n_history;           //  only the assert reads it
    const cb_event_t *ev = history [index];
    const char *type = s_text (ev->type);
    int level = s_level_at (history, index);
    char dept_buf [128];
    const char *dept = s_event_department (t, ev, dept_buf, sizeof dept_buf);
    size_t before = plan->count;
    int rc = 0;

    //  The reporter.
    const char *phone = t->reporter ? t->reporter->phone : NULL;
    bool reporter_event = strcmp (type, "accept") == 0 || strcmp (type, "reject") == 0
                       || strcmp (type, "verify") == 0
                       || (strcmp (type, "resolve") == 0 && ev->from_state != ev->to_state);
    if (reporter_event && !s_empty (phone))
        rc = s_add_text (self, plan, NOTIFY_SMS, t, ev, level, phone);
    //  The reporters of tickets merged into this one (并单) hear its outcome:
    //  resolution and closure, in the same words (one delivery per phone).
    bool outcome = strcmp (type, "verify") == 0
                || (strcmp (type, "resolve") == 0 && ev->from_state != ev->to_state);
    for (size_t i = 0; outcome && rc >= 0 && i < t->n_merged_from; i++) {
        const Civicbus__V1__MergedReport *m = t->merged_from [i];
        const char *merged_phone = m && m->reporter ? m->reporter->phone : NULL;
        if (!s_empty (merged_phone) && (s_empty (phone) || strcmp (merged_phone, phone)))
            rc = s_add_text (self, plan, NOTIFY_SMS, t, ev, level, merged_phone);
    }

    //  The hotline, for its own tickets.
    if (rc >= 0 && t->source == CIVICBUS__V1__SOURCE__SOURCE_HOTLINE
    &&  self->endpoints.hotline_url && s_in_list (s_hotline_events, type))
        rc = s_add_hotline (self, plan, t, ev, level, dept);

    //  The department, on reminders.
    if (rc >= 0 && (strcmp (type, "urge") == 0 || strcmp (type, "warning") == 0)) {
        const s_department_t *d = s_department (self, dept);
        if (d)
            rc = s_add_contact (self, plan, t, ev, level, d->email, d->phone);
    }

    //  Supervisors of that level and area, on overdue and escalation.
    if (strcmp (type, "escalate") == 0 || strcmp (type, "overdue") == 0)
        for (size_t i = 0; rc >= 0 && i < self->n_supervisors; i++) {
            const s_supervisor_t *s = &self->supervisors [i];
            if ((s->level == 0 || s->level == level) && s_area_matches (t, s->area))
                rc = s_add_contact (self, plan, t, ev, level, s->email, s->phone);
        }

    //  Webhook subscribers.
    for (size_t i = 0; rc >= 0 && i < self->n_webhooks; i++)
        if (s_webhook_matches (&self->webhooks [i], t, type, dept))
            rc = s_add_webhook (plan, &self->webhooks [i], t, ev);

    return rc < 0 ? -1 : (int) (plan->count - before);
}
